"""FD compute speed: our trace-sqrt routes vs scipy ``sqrtm`` and torchmetrics' ``_compute_fid``, in one run.

1. Full rank, D = 2048 (moments of 5000 / 4000 rows): ``method="eigh"`` (Cholesky, two triangular products, one
   eigenvalues-only symmetric solve) vs ``scipy.linalg.sqrtm(S1 S2)`` (the references) and torchmetrics
   ``_compute_fid`` (``eigvals`` of the non-symmetric ``S1 S2``). Targets: ≥ 10× scipy, ≥ 2× torchmetrics,
   |rel. diff| ≤ 1e-9.
2. Rank-deficient, N = 300 / 400 rows, D = 2048, no eps: ``method="lowrank"`` (one 300×400 SVD) vs scipy's sqrtm of
   the same float64 moments. Target: ≥ 20× scipy. Its gap to the exact value is scipy's null-space round-off.

Times are the best of ``repeat`` runs (after one warm-up for the fast routes); ratios come from the same process.
``quick=True`` runs each once at D = 1024 (N = 150 / 200 for the low-rank case) for a smoke run.

    python benchmarks/bench_fd_compute.py [--quick]     # prints one JSON object
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
from torchmetrics.image.fid import _compute_fid

from torchmetrics_av.functional.fad import (
    _sqrtm_scipy,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_from_sums,
)

FULL_D, FULL_N = 2048, (5000, 4000)
LOW_D, LOW_N = 2048, (300, 400)
QUICK_D, QUICK_FULL_N, QUICK_LOW_N = 1024, (2500, 2000), (150, 200)
# Scale of the random (full-rank) mixing matrix: keeps the covariances well conditioned and FD around 1e3.
LATENT_SCALE = 45.0


def _best(fn: Callable[[], object], repeat: int, warmup: bool) -> tuple[float, object]:
    if warmup:
        fn()
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _rows(n: int, d: int, shift: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / LATENT_SCALE
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + shift


def _scipy_trace_fd(mu1: torch.Tensor, s1: torch.Tensor, mu2: torch.Tensor, s2: torch.Tensor) -> float:
    # The references' formula with their real-part rule, timed without our imaginary-part check raising.
    covmean = _sqrtm_scipy(s1.numpy() @ s2.numpy())
    diff = (mu1 - mu2).numpy()
    return float(diff @ diff + np.trace(s1.numpy()) + np.trace(s2.numpy()) - 2.0 * np.trace(covmean).real)


def bench_full_rank(d: int, ns: tuple[int, int], repeat: int) -> dict:
    x, y = _rows(ns[0], d, 0.0, 0), _rows(ns[1], d, 0.1, 1)
    m1, s1 = gaussian_from_sums(x.sum(0), x.T @ x, len(x))
    m2, s2 = gaussian_from_sums(y.sum(0), y.T @ y, len(y))
    t_eigh, v_eigh = _best(lambda: float(frechet_distance(m1, s1, m2, s2, eps_policy="never")), repeat, True)
    t_tm, v_tm = _best(lambda: float(_compute_fid(m1, s1, m2, s2)), repeat, False)
    t_scipy, v_scipy = _best(lambda: _scipy_trace_fd(m1, s1, m2, s2), 1, False)
    return {
        "D": d,
        "N": list(ns),
        "eigh_s": t_eigh,
        "torchmetrics_s": t_tm,
        "scipy_s": t_scipy,
        "speedup_vs_scipy": t_scipy / t_eigh,
        "speedup_vs_torchmetrics": t_tm / t_eigh,
        "rel_diff_vs_scipy": abs(v_eigh - v_scipy) / abs(v_scipy),
        "rel_diff_vs_torchmetrics": abs(v_eigh - v_tm) / abs(v_tm),
    }


def bench_low_rank(d: int, ns: tuple[int, int], repeat: int) -> dict:
    x, y = _rows(ns[0], d, 0.0, 2), _rows(ns[1], d, 0.1, 3)

    def lowrank() -> float:
        return float(frechet_distance_from_features(x, y, eps_policy="never", method="lowrank"))

    def eigh_from_rows() -> float:
        return float(frechet_distance_from_features(x, y, eps_policy="never", method="eigh"))

    def scipy_from_rows() -> float:
        m1, s1 = gaussian_from_sums(x.sum(0), x.T @ x, len(x))
        m2, s2 = gaussian_from_sums(y.sum(0), y.T @ y, len(y))
        return _scipy_trace_fd(m1, s1, m2, s2)

    t_low, v_low = _best(lowrank, repeat, True)
    t_eigh, v_eigh = _best(eigh_from_rows, 1, False)
    t_scipy, v_scipy = _best(scipy_from_rows, 1, False)
    return {
        "D": d,
        "N": list(ns),
        "lowrank_s": t_low,
        "eigh_s": t_eigh,
        "scipy_s": t_scipy,
        "speedup_vs_scipy": t_scipy / t_low,
        "speedup_vs_eigh": t_eigh / t_low,
        "exact_minus_scipy": v_low - v_scipy,
        "exact_minus_eigh": v_low - v_eigh,
        "rel_diff_vs_scipy": abs(v_low - v_scipy) / abs(v_scipy),
    }


def run(quick: bool = False) -> dict:
    """Both comparisons; returns a JSON-serialisable dict (times in seconds, CPU, float64)."""
    repeat = 1 if quick else 3
    full = bench_full_rank(QUICK_D if quick else FULL_D, QUICK_FULL_N if quick else FULL_N, repeat)
    low = bench_low_rank(QUICK_D if quick else LOW_D, QUICK_LOW_N if quick else LOW_N, repeat)
    return {
        "fd_compute_full_rank": full,
        "fd_compute_low_rank": low,
        "torch_threads": torch.get_num_threads(),
        "quick": quick,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="D = 1024, one run each")
    args = p.parse_args()
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
