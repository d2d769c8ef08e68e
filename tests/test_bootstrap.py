"""Bootstrap helpers vs an independent NumPy implementation on the same draws, and CI coverage on a known case."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from torchmetrics_av.functional import (
    bootstrap_ci,
    bootstrap_indices,
    bootstrap_statistic,
    frechet_distance_bootstrap,
    paired_bootstrap,
)

EXACT = dict(rel=1e-12, abs=1e-12)


def _np_ci(values: np.ndarray, ci: float) -> tuple[float, float, float]:
    alpha = (1 - ci) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high), float(np.std(values, ddof=1))


def test_indices_are_the_legacy_randomstate_stream() -> None:
    idx = bootstrap_indices(37, 5, seed=3)
    assert idx.dtype == torch.int64 and idx.shape == (5, 37)
    assert np.array_equal(idx.numpy(), np.random.RandomState(3).randint(0, 37, size=(5, 37)))
    assert torch.equal(idx, bootstrap_indices(37, 5, seed=3))
    rs = np.random.RandomState(3)
    first, second = bootstrap_indices(37, 2, rs), bootstrap_indices(37, 3, rs)  # a RandomState continues
    assert torch.equal(torch.cat([first, second]).flatten(), idx.flatten())


def test_ci_matches_numpy_percentile() -> None:
    values = np.random.default_rng(0).gamma(2.0, size=501)
    out = bootstrap_ci(torch.from_numpy(values), 1.5, ci=0.9)
    low, high, std = _np_ci(values, 0.9)
    assert float(out["value"]) == 1.5
    assert (float(out["low"]), float(out["high"]), float(out["std"])) == pytest.approx((low, high, std), **EXACT)


def test_statistic_matches_numpy_on_the_same_draws() -> None:
    x = np.random.default_rng(1).standard_t(3, size=80)
    idx = bootstrap_indices(len(x), 300, seed=7)
    tx = torch.from_numpy(x)
    out = bootstrap_statistic(lambda i: tx[i].median(), len(x), num=300, seed=7)
    # torch.median is the lower middle value; NumPy's equivalent is the "lower" percentile method.
    values = np.array([np.percentile(x[r], 50, method="lower") for r in idx.numpy()])
    low, high, std = _np_ci(values, 0.95)
    assert float(out["value"]) == np.percentile(x, 50, method="lower")
    assert (float(out["low"]), float(out["high"]), float(out["std"])) == pytest.approx((low, high, std), **EXACT)
    given = bootstrap_statistic(lambda i: tx[i].median(), len(x), indices=idx)
    assert all(torch.equal(given[k], out[k]) for k in out)


def test_paired_bootstrap_matches_numpy_on_the_same_draws() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(0.50, 0.2, size=120)
    b = a - 0.02 + rng.normal(0, 0.1, size=120)
    out = paired_bootstrap(torch.from_numpy(a), torch.from_numpy(b), num=2000, seed=5, ci=0.9)
    idx = np.random.RandomState(5).randint(0, 120, size=(2000, 120))
    d = a - b
    boot = d[idx].mean(axis=1)
    low, high, std = _np_ci(boot, 0.9)
    p = (1 + np.sum(np.abs(boot - d.mean()) >= abs(d.mean()))) / (2000 + 1)
    got = [float(out[k]) for k in ("difference", "low", "high", "std", "p_value")]
    assert got == pytest.approx([d.mean(), low, high, std, p], **EXACT)


def test_paired_bootstrap_with_a_custom_reduce() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
    idx = bootstrap_indices(60, 200, seed=1)

    def reduce(rows: torch.Tensor) -> torch.Tensor:
        return rows.norm(dim=1).max()

    out = paired_bootstrap(torch.from_numpy(a), torch.from_numpy(b), indices=idx, reduce=reduce)
    boot = np.array([np.linalg.norm(a[r], axis=1).max() - np.linalg.norm(b[r], axis=1).max() for r in idx.numpy()])
    diff = np.linalg.norm(a, axis=1).max() - np.linalg.norm(b, axis=1).max()
    low, high, std = _np_ci(boot, 0.95)
    p = (1 + np.sum(np.abs(boot - diff) >= abs(diff))) / 201
    got = [float(out[k]) for k in ("difference", "low", "high", "std", "p_value")]
    assert got == pytest.approx([diff, low, high, std, p], **EXACT)


def test_p_value_limits() -> None:
    a = torch.rand(50, dtype=torch.float64)
    assert float(paired_bootstrap(a, a, num=99)["p_value"]) == 1.0  # no difference at all
    assert float(paired_bootstrap(a + 1.0, a, num=99)["p_value"]) == pytest.approx(1 / 100)  # never 0


def test_percentile_ci_covers_a_known_mean_at_its_nominal_rate() -> None:
    """200 seeded trials of a normal mean (n = 100): the 95 % interval must cover the truth about 95 % of the time."""
    trials, n, num, mu = 200, 100, 1000, 0.3
    rng = np.random.default_rng(2024)
    covered = 0
    for t in range(trials):
        x = torch.from_numpy(rng.normal(mu, 1.0, size=n))
        idx = bootstrap_indices(n, num, seed=t)
        out = bootstrap_ci(x[idx].mean(1), x.mean(), 0.95)
        covered += int(out["low"] <= mu <= out["high"])
    lo, hi = scipy.stats.binom.interval(0.999, trials, 0.95)
    assert lo <= covered <= hi, f"{covered}/{trials} intervals covered the mean; 99.9 % binomial range [{lo}, {hi}]"


def _np_fd(x: np.ndarray, y: np.ndarray) -> float:
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    d = x.mean(0) - y.mean(0)
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real))


@pytest.mark.parametrize("resample", ["both", "preds"])
def test_frechet_distance_bootstrap_matches_numpy_on_the_same_draws(resample: str) -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(150, 5)), rng.normal(size=(120, 5)) * 1.3 + 0.4
    out = frechet_distance_bootstrap(
        torch.from_numpy(x), torch.from_numpy(y), 60, 9, 0.9, resample=resample, eps_policy="never"
    )
    rs = np.random.RandomState(9)
    pi = rs.randint(0, 150, size=(60, 150))
    ti = rs.randint(0, 120, size=(60, 120)) if resample == "both" else None
    values = np.array([_np_fd(x[pi[i]], y if ti is None else y[ti[i]]) for i in range(60)])
    low, high, std = _np_ci(values, 0.9)
    got = [float(out[k]) for k in ("value", "low", "high", "std")]
    assert got == pytest.approx([_np_fd(x, y), low, high, std], rel=1e-9)


def test_bad_input_raises() -> None:
    a = torch.rand(10)
    with pytest.raises(ValueError, match="ci"):
        paired_bootstrap(a, a, ci=95)
    with pytest.raises(ValueError, match="num"):
        paired_bootstrap(a, a, num=1)
    with pytest.raises(ValueError, match="equal shape"):
        paired_bootstrap(a, a[:9])
    with pytest.raises(ValueError, match="NaN"):
        paired_bootstrap(a, torch.full((10,), float("nan")))
    with pytest.raises(ValueError, match="outside"):
        paired_bootstrap(a, a, indices=torch.full((5, 10), 10))
    with pytest.raises(ValueError, match="NaN or Inf"):
        bootstrap_ci(torch.tensor([1.0, float("nan"), 2.0]), 1.0)
    with pytest.raises(ValueError, match="`n`"):
        bootstrap_indices(0, 5)
    with pytest.raises(ValueError, match="resample"):
        frechet_distance_bootstrap(torch.rand(10, 2), torch.rand(10, 2), 5, resample="target")
