"""FD∞ / KAD∞ vs fadtk / kadtk score_inf (estimators golden): sizes, draws, points, fit; plus the fit vs np.polyfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import golden_path
from tests.estimators_inputs import checked_embeddings
from torchmetrics_av.functional import fd_infinity, kad_infinity, median_pairwise_distance
from torchmetrics_av.functional.infinity import fit_inverse_n, infinity_draws, infinity_sizes

# Golden README §7 (estimators).
FDINF_RTOL = 2e-6  # points, intercept, slope
FDINF_R2_ATOL = 1e-6
FIT_RTOL = 1e-10  # the fit alone, from the stored points
KAD_ATOL = 1e-4  # KAD∞ points and intercept (float32 reference)
BANDWIDTH_RTOL = 1e-6
FDINF_CASES = [
    "fdinf_full_defaults",
    "fdinf_full",
    "fdinf_gen_rankdef",
    "fdinf_both_rankdef",
    "fdinf_defaults_n_lt_min",
]


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(golden_path("estimators") / "estimators.pt", weights_only=True)


@pytest.fixture(scope="module")
def embeddings(golden: dict) -> dict:
    return {name: checked_embeddings(spec) for name, spec in golden["embeddings"].items()}


@pytest.mark.parametrize("case", FDINF_CASES + ["kadinf_full"])
def test_sizes_and_seeded_draws_are_fadtks(golden: dict, case: str) -> None:
    ref = golden["kadinf" if case.startswith("kad") else "fdinf"][case]
    ns = infinity_sizes(ref["n_eval"], ref["steps"], ref["min_n"])
    assert ns == ref["ns"]
    draws = infinity_draws(ref["n_eval"], ns, ref["seed"])
    assert all(torch.equal(a, b) for a, b in zip(draws, ref["indices"]))


def test_sizes_keep_numpy_truncation() -> None:
    # README §2.3: np.linspace(415, 15, 25)[15] truncates to 164 where the exact rational value is 165.
    assert infinity_sizes(15, 25, 415)[15] == 164


def _fd_method_cases() -> list[tuple[str, str]]:
    cases = [(c, "auto") for c in FDINF_CASES]
    # eigh on the D = 128 sets (full rank and both rank-deficient kinds); scipy on the smallest
    cases += [(c, "eigh") for c in ("fdinf_full", "fdinf_gen_rankdef", "fdinf_both_rankdef")]
    return cases + [("fdinf_both_rankdef", "scipy")]


@pytest.mark.parametrize(("case", "method"), _fd_method_cases())
def test_fd_infinity_matches_fadtk(golden: dict, embeddings: dict, case: str, method: str) -> None:
    ref = golden["fdinf"][case]
    target, preds = embeddings[ref["data"]]
    out = fd_infinity(preds, target, steps=ref["steps"], min_n=ref["min_n"], seed=ref["seed"], method=method)
    points = torch.tensor(ref["points"], dtype=torch.float64)
    assert torch.equal(out["points"][:, 0], points[:, 0])
    torch.testing.assert_close(out["points"][:, 1], points[:, 1], rtol=FDINF_RTOL, atol=0.0)
    assert float(out["value"]) == pytest.approx(ref["score"], rel=FDINF_RTOL)
    assert float(out["slope"]) == pytest.approx(ref["slope"], rel=FDINF_RTOL)
    assert float(out["r2"]) == pytest.approx(ref["r2"], abs=FDINF_R2_ATOL)
    assert out["seed"] == ref["seed"]


def test_explicit_indices_equal_the_seeded_run(golden: dict, embeddings: dict) -> None:
    ref = golden["fdinf"]["fdinf_both_rankdef"]
    target, preds = embeddings[ref["data"]]
    seeded = fd_infinity(preds, target, steps=ref["steps"], min_n=ref["min_n"], seed=ref["seed"])
    given = fd_infinity(preds, target, indices=ref["indices"])
    assert torch.equal(seeded["points"], given["points"]) and given["seed"] is None


@pytest.mark.parametrize("case", FDINF_CASES + ["kadinf_full"])
def test_fit_of_the_stored_points_is_fadtks(golden: dict, case: str) -> None:
    ref = golden["kadinf" if case.startswith("kad") else "fdinf"][case]
    ns, values = zip(*ref["points"])
    intercept, slope, r2 = fit_inverse_n(ns, values)
    assert intercept == pytest.approx(ref["score"], rel=FIT_RTOL)
    assert slope == pytest.approx(ref["slope"], rel=FIT_RTOL)
    assert r2 == pytest.approx(ref["r2"], rel=FIT_RTOL)
    np_slope, np_intercept = np.polyfit(1.0 / np.asarray(ns, dtype=np.float64), np.asarray(values), 1)
    assert (intercept, slope) == pytest.approx((np_intercept, np_slope), rel=FIT_RTOL)


def _fit_weights(ns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    # Least squares is linear in the points: intercept = Σ wi·y, slope = Σ ws·y (bounds the fit from point errors).
    x = 1.0 / np.asarray(ns, dtype=np.float64)
    ws = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
    return 1.0 / len(x) - x.mean() * ws, ws


def test_kad_infinity_matches_kadtk(golden: dict, embeddings: dict) -> None:
    ref = golden["kadinf"]["kadinf_full"]
    target, preds = embeddings[ref["data"]]
    for idx, bw in zip(ref["indices"], ref["bandwidths"]):  # kadtk recomputes the median on every resample
        assert median_pairwise_distance(preds[idx]) == pytest.approx(bw, rel=BANDWIDTH_RTOL)
    out = kad_infinity(preds, target, steps=ref["steps"], min_n=ref["min_n"], seed=ref["seed"])
    points = torch.tensor(ref["points"], dtype=torch.float64)
    assert torch.equal(out["points"][:, 0], points[:, 0])
    torch.testing.assert_close(out["points"][:, 1], points[:, 1], rtol=0.0, atol=KAD_ATOL)
    assert float(out["value"]) == pytest.approx(ref["score"], abs=KAD_ATOL)
    _, ws = _fit_weights(ref["ns"])
    assert float(out["slope"]) == pytest.approx(ref["slope"], abs=KAD_ATOL * float(np.abs(ws).sum()))


def test_min_n_above_n_rows_oversamples_downwards() -> None:
    ns = infinity_sizes(150, 25, 500)
    assert ns[0] == 500 and ns[-1] == 150 and ns == sorted(ns, reverse=True)
    assert len(infinity_draws(150, ns, 0)[0]) == 500


def test_unseeded_run_reports_a_reproducible_seed() -> None:
    g = torch.Generator().manual_seed(0)
    target, preds = torch.randn(80, 3, generator=g), torch.randn(60, 3, generator=g)
    first = fd_infinity(preds, target, steps=4, min_n=20)
    again = fd_infinity(preds, target, steps=4, min_n=20, seed=first["seed"])
    assert isinstance(first["seed"], int) and torch.equal(first["points"], again["points"])


def test_bad_input_raises() -> None:
    x = torch.randn(40, 3)
    with pytest.raises(ValueError, match="min_n"):
        fd_infinity(x, x, min_n=40, steps=5, seed=0)  # all sizes equal N: degenerate fit
    with pytest.raises(ValueError, match="steps"):
        fd_infinity(x, x, min_n=10, steps=1, seed=0)
    with pytest.raises(ValueError, match="not both"):
        fd_infinity(x, x, seed=0, indices=[torch.arange(5), torch.arange(6)])
    with pytest.raises(ValueError, match=r"indices\[1\].*outside"):
        fd_infinity(x, x, indices=[torch.arange(5), torch.arange(35, 41)])
    with pytest.raises(ValueError, match="two different sizes"):
        kad_infinity(x, x, indices=[torch.arange(5), torch.arange(5, 10)])
    with pytest.raises(ValueError, match="features"):
        fd_infinity(x, torch.randn(40, 4), min_n=10, seed=0)
    with pytest.raises(ValueError, match="same value"):
        fit_inverse_n([10, 20], [1.0, 1.0])
