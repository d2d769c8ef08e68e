"""FD compute routes: the exact low-rank trace (mpmath, an independent Helmert-basis route, the goldens), the
triangular congruence of method="eigh", and the automatic choice. Speed is measured in benchmarks/bench_fd_compute.py.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.linalg
import torch

from tests.conftest import golden_path, load_golden
from tests.estimators_inputs import checked_embeddings
from tests.test_fad import FORMULA_ATOL, _make_set
from torchmetrics_av.functional import frechet_distance_from_features
from torchmetrics_av.functional.fad import _congruence_lower, _resolve_method

# Golden README §7 (estimators): fadtk FAD on the full sets.
FADTK_FULL_RTOL = 5e-6
# Two exact float64 routes (different factorisations) agree to round-off of a ~1e2 value.
EXACT_RTOL = 1e-12
RANK_DEFICIENT_SETS = ["e128", "e128_small", "e768", "e2048"]
# Documented in torchmetrics_av/functional/fad.py: reference − exact on the rank-deficient goldens (the references
# add √ of D − rank round-off eigenvalues, which only lowers FD). Bounds = the documented magnitudes, rounded up.
FADTK_BELOW_EXACT = {"e128": 3e-5, "e128_small": 1e-5, "e768": 4e-4, "e2048": 4e-3}
AVBENCH_BELOW_EXACT = 5e-5  # PaSST fd_formula.rank_deficient, documented −3.9e-5


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(golden_path("estimators") / "estimators.pt", weights_only=True)


def _helmert(n: int) -> np.ndarray:
    # Orthonormal basis of the vectors orthogonal to 1: the centred rows without the centring null direction.
    return np.linalg.qr((np.eye(n) - 1.0 / n)[:, : n - 1])[0]


def _exact_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """Independent exact FD for N < D: eigenvalues of the (n−1)×(n−1) form in a Helmert basis (no null space)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    if len(x) > len(y):
        x, y = y, x
    z1, z2 = _helmert(len(x)).T @ x, _helmert(len(y)).T @ y
    a = z1 @ (z2.T @ z2 / (len(y) - 1)) @ z1.T / (len(x) - 1)
    tr = np.sqrt(np.linalg.eigvalsh((a + a.T) / 2)).sum()
    d = x.mean(0) - y.mean(0)
    return float(d @ d + (z1**2).sum() / (len(x) - 1) + (z2**2).sum() / (len(y) - 1) - 2 * tr)


def test_lowrank_equals_40_digit_mpmath() -> None:
    rng = np.random.default_rng(1)
    d = 20
    a, b = rng.normal(size=(5, d)), rng.normal(size=(7, d)) * 1.3 + 0.2
    mpmath.mp.dps = 40

    def moments(rows: np.ndarray) -> tuple[list, mpmath.matrix]:
        m = mpmath.matrix(rows.tolist())
        mu = [mpmath.fsum(m[i, j] for i in range(m.rows)) / m.rows for j in range(d)]
        c = mpmath.matrix([[m[i, j] - mu[j] for j in range(d)] for i in range(m.rows)])
        return mu, (c.T * c) / (m.rows - 1)

    (mu1, s1), (mu2, s2) = moments(a), moments(b)
    ev = mpmath.eig(s1 * s2, left=False, right=False)
    tr = mpmath.fsum(mpmath.sqrt(max(mpmath.re(e), 0)) for e in ev)
    exact = mpmath.fsum((mu1[j] - mu2[j]) ** 2 for j in range(d)) + sum(s1[i, i] + s2[i, i] for i in range(d)) - 2 * tr
    value = frechet_distance_from_features(
        torch.from_numpy(a), torch.from_numpy(b), eps_policy="never", method="lowrank"
    )
    assert float(value) == pytest.approx(float(exact), rel=1e-13)


@pytest.mark.parametrize("data", RANK_DEFICIENT_SETS)
def test_lowrank_exact_and_within_fadtk_tolerance(golden: dict, data: str) -> None:
    ref, gen = checked_embeddings(golden["embeddings"][data])
    value = float(frechet_distance_from_features(gen, ref, eps_policy="never", method="lowrank"))
    assert value == pytest.approx(_exact_numpy(gen.numpy(), ref.numpy()), rel=EXACT_RTOL)
    fadtk = golden["fd_full"][data]["value"]
    assert value == pytest.approx(fadtk, rel=FADTK_FULL_RTOL)
    assert 0.0 < value - fadtk < FADTK_BELOW_EXACT[data]


@pytest.mark.parametrize(
    ("data", "method"),
    [(d, m) for d in ("e128", "e128_small", "e128_big") for m in ("eigh", "scipy", "lowrank", "auto")]
    + [("e768", "eigh"), ("e768", "auto")],  # scipy sqrtm at D = 768 is slow; the D = 128 sets cover it
)
def test_every_method_matches_fadtk_full_sets(golden: dict, data: str, method: str) -> None:
    ref, gen = checked_embeddings(golden["embeddings"][data])
    value = float(frechet_distance_from_features(gen, ref, eps_policy="on_failure", method=method))
    assert value == pytest.approx(golden["fd_full"][data]["value"], rel=FADTK_FULL_RTOL)


def test_lowrank_on_the_passt_rank_deficient_golden() -> None:
    formula = load_golden("passt", "passt_golden.pt")["fd_formula"]
    case = formula["cases"]["rank_deficient"]
    x = _make_set(formula, case["n_gen"], case["seed_gen"], formula["params_gen"])
    y = _make_set(formula, case["n_ref"], case["seed_ref"], formula["params_ref"])
    value = float(frechet_distance_from_features(x, y, eps_policy="never", method="lowrank"))
    assert value == pytest.approx(_exact_numpy(x.numpy(), y.numpy()), rel=EXACT_RTOL)
    # av-benchmark's scipy sqrtm and the float64 scipy / eigvals variants all sit just below the exact value.
    for ref in (case["avbench"], case["stream64"]["fd_noeps"], case["stream64"]["fd_eigvals_noeps"]):
        assert 0.0 < value - ref < AVBENCH_BELOW_EXACT
    # eps_policy="on_failure" never retries on this route (it is always finite), so it is the no-eps value;
    # FastVideo's always-eps value is a different quantity (eps·I changes it by 0.07 here).
    on_failure = frechet_distance_from_features(x, y, eps_policy="on_failure", method="lowrank")
    assert float(on_failure) == value
    assert abs(value - case["fastvideo"]) > 100 * FORMULA_ATOL


def test_lowrank_equals_scipy_on_full_rank() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(400, 12, generator=g, dtype=torch.float64) @ torch.randn(12, 12, generator=g, dtype=torch.float64)
    y = torch.randn(300, 12, generator=g, dtype=torch.float64) + 0.2
    xn, yn = x.numpy(), y.numpy()
    s1, s2 = np.cov(xn, rowvar=False), np.cov(yn, rowvar=False)
    d = xn.mean(0) - yn.mean(0)
    expected = d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    value = frechet_distance_from_features(x, y, eps_policy="never", method="lowrank")
    assert float(value) == pytest.approx(expected, rel=1e-10)


def test_triangular_congruence_equals_dense_product() -> None:
    g = torch.Generator().manual_seed(5)
    a = torch.randn(64, 64, generator=g, dtype=torch.float64)
    s1, s2 = a @ a.T / 64 + torch.eye(64, dtype=torch.float64), torch.cov(torch.randn(64, 200, generator=g).double())
    factor = torch.linalg.cholesky(s1)
    dense = factor.T @ s2 @ factor
    torch.testing.assert_close(_congruence_lower(factor, s2), dense, rtol=1e-13, atol=1e-13)
    # float32 and non-CPU-float64 inputs take the plain matmul route
    torch.testing.assert_close(_congruence_lower(factor.float(), s2.float()), dense.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("method", "policy", "n1", "n2", "d", "route"),
    [
        ("auto", "never", 300, 400, 2048, "lowrank"),
        ("auto", "on_failure", 60, 60, 2048, "lowrank"),
        ("auto", "always", 60, 60, 2048, "eigh"),  # eps·I makes the covariances full rank
        ("auto", "never", 5000, 4000, 2048, "eigh"),  # full rank
        ("auto", "never", 1000, 100000, 768, "eigh"),  # n1·n2 > D²: the D×D route is cheaper
        ("eigh", "never", 10, 10, 2048, "eigh"),
        ("lowrank", "on_failure", 5000, 4000, 2048, "lowrank"),
    ],
)
def test_auto_route(method: str, policy: str, n1: int, n2: int, d: int, route: str) -> None:
    assert _resolve_method(method, policy, n1, n2, d) == route


def test_lowrank_rejects_always_eps_and_unknown_method() -> None:
    x = torch.randn(5, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="lowrank.*eps_policy"):
        frechet_distance_from_features(x, x + 1, eps_policy="always", method="lowrank")
    with pytest.raises(ValueError, match="method"):
        frechet_distance_from_features(x, x + 1, method="svd")
    with pytest.raises(ValueError, match="eps_policy"):
        frechet_distance_from_features(x, x + 1, eps_policy="sometimes")
