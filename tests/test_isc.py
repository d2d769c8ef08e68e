"""Inception Score vs av-benchmark's compute_isc (estimators golden) and an independent NumPy formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.conftest import golden_path
from tests.estimators_inputs import checked_logits
from torchmetrics_av.functional import inception_score

# Golden README §7: both sides compute in float64 from the same float32 logits.
ISC_RTOL = 1e-9
ISC_ATOL = 1e-12
FULL_CASES = ["isc_main", "isc_nondiv", "isc_n10", "isc_peaky"]


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(golden_path("estimators") / "isc.pt", weights_only=True)["isc"]


@pytest.mark.parametrize("case", FULL_CASES)
def test_matches_compute_isc(golden: dict, case: str) -> None:
    ref = golden[case]
    mean, std = inception_score(checked_logits(ref))
    assert mean.dtype == torch.float64 and std.dtype == torch.float64
    assert math.isclose(float(mean), ref["mean"], rel_tol=ISC_RTOL, abs_tol=ISC_ATOL)
    assert math.isclose(float(std), ref["std"], rel_tol=ISC_RTOL, abs_tol=ISC_ATOL)


def test_noshuffle_matches_compute_isc(golden: dict) -> None:
    ref = golden["isc_main_noshuffle"]
    mean, std = inception_score(checked_logits(golden[ref["of"]]), shuffle_seed=None)
    assert math.isclose(float(mean), ref["mean"], rel_tol=ISC_RTOL, abs_tol=ISC_ATOL)
    assert math.isclose(float(std), ref["std"], rel_tol=ISC_RTOL, abs_tol=ISC_ATOL)


@pytest.mark.parametrize("case", FULL_CASES + ["isc_lt10"])
def test_permutation_and_split_bounds_are_the_references(golden: dict, case: str) -> None:
    ref = golden[case]
    n = ref["n"]
    assert np.array_equal(np.random.RandomState(ref["rng_seed"]).permutation(n), ref["perm"].numpy())
    assert [i * n // ref["splits"] for i in range(ref["splits"] + 1)] == ref["split_bounds"]


def test_fewer_rows_than_splits_raises_where_reference_gives_nan(golden: dict) -> None:
    ref = golden["isc_lt10"]
    assert math.isnan(ref["mean"]) and math.isnan(ref["std"])
    with pytest.raises(ValueError, match="splits"):
        inception_score(checked_logits(ref))


def _numpy_isc(logits: np.ndarray, splits: int, seed: int) -> tuple[float, float]:
    z = logits[np.random.RandomState(seed).permutation(len(logits))].astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for part_p, part_log in zip(np.array_split(p, splits), np.array_split(log_p, splits)):
        kl = (part_p * (part_log - np.log(part_p.mean(axis=0)))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def test_matches_independent_numpy_on_other_splits() -> None:
    # np.array_split puts the longer parts first, so it equals floor-division bounds only when splits | N.
    logits = np.random.default_rng(7).normal(0.0, 3.0, (60, 11)).astype(np.float32)
    for splits in (1, 3, 6):
        mean, std = inception_score(torch.from_numpy(logits), splits=splits, shuffle_seed=5)
        ref_mean, ref_std = _numpy_isc(logits, splits, 5)
        assert math.isclose(float(mean), ref_mean, rel_tol=ISC_RTOL)
        assert math.isclose(float(std), ref_std, rel_tol=ISC_RTOL, abs_tol=ISC_ATOL)


def test_invariants() -> None:
    logits = torch.from_numpy(np.random.default_rng(3).normal(0.0, 2.0, (40, 9)))  # float64: +5 is exact
    mean, _ = inception_score(logits)
    assert 1.0 <= float(mean) <= 9.0  # IS lies in [1, C]
    shifted, _ = inception_score(logits + 5.0)  # softmax is shift-invariant per row
    assert math.isclose(float(shifted), float(mean), rel_tol=1e-12)
    uniform, _ = inception_score(torch.zeros(30, 9))
    assert math.isclose(float(uniform), 1.0, abs_tol=1e-12)


@pytest.mark.parametrize(
    ("logits", "kwargs", "match"),
    [
        (torch.zeros(10), {}, "logits"),
        (torch.zeros(20, 3), {"splits": 0}, "splits"),
        (torch.zeros(20, 3), {"splits": 2.0}, "splits"),
        (torch.full((20, 3), float("nan")), {}, "NaN"),
    ],
)
def test_bad_input_raises(logits: torch.Tensor, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        inception_score(logits, **kwargs)
