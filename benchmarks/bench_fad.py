"""Benchmarks for FD_PaSST / KL_PaSST (ratios against a baseline measured in the same run).

1. FD ``compute()``: the eigen path vs scipy ``sqrtm`` at D = 768 (speed ratio and relative agreement).
2. PaSST ``update()``: batched vs a one-clip-at-a-time loop over the same clips.
3. ``update()`` overhead: full ``update()`` time vs the bare backbone forward on the same preprocessed batch.

    python benchmarks/bench_fad.py [--clips 8] [--device cpu|cuda] [--tiny]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from torchmetrics_av import FrechetAudioDistance
from torchmetrics_av.backbones import PaSST
from torchmetrics_av.backbones.passt import passt_windows
from torchmetrics_av.functional.fad import frechet_distance, gaussian_from_sums


def timeit(fn: Callable[[], object], repeat: int, device: str) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_compute(device: str) -> None:
    g = torch.Generator().manual_seed(0)
    d = 768
    x = torch.randn(4000, d, generator=g, dtype=torch.float64) @ (
        torch.randn(d, d, generator=g, dtype=torch.float64) / 30
    )
    y = (
        torch.randn(3000, d, generator=g, dtype=torch.float64)
        @ (torch.randn(d, d, generator=g, dtype=torch.float64) / 30)
        + 0.1
    )
    m1, s1 = gaussian_from_sums(x.sum(0), x.T @ x, len(x))
    m2, s2 = gaussian_from_sums(y.sum(0), y.T @ y, len(y))
    m1, s1, m2, s2 = (t.to(device) for t in (m1, s1, m2, s2))
    for policy in ("always", "on_failure"):
        t_eigh = timeit(
            lambda policy=policy: frechet_distance(m1, s1, m2, s2, eps_policy=policy, method="eigh"), 5, device
        )
        t_scipy = timeit(
            lambda policy=policy: frechet_distance(m1, s1, m2, s2, eps_policy=policy, method="scipy"), 3, device
        )
        a = float(frechet_distance(m1, s1, m2, s2, eps_policy=policy, method="eigh"))
        b = float(frechet_distance(m1, s1, m2, s2, eps_policy=policy, method="scipy"))
        print(
            f"FD compute D=768 eps={policy:>10}: eigh {t_eigh * 1e3:7.1f} ms, scipy sqrtm {t_scipy * 1e3:7.1f} ms, "
            f"speed-up x{t_scipy / t_eigh:.1f}, rel. diff {abs(a - b) / abs(b):.1e}"
        )


def bench_update(n: int, device: str, tiny: bool) -> None:
    torch.manual_seed(0)
    kw = dict(embed_dim=64, depth=2, num_heads=4) if tiny else {}
    # No window memoisation: every timed update() must run its forwards (the cache would turn repeats into lookups).
    net = PaSST(pretrained=False, cache_size=0, **kw).to(device)
    audio = (torch.rand(n, 32000 * 10) - 0.5) * 0.5

    def batched() -> None:
        fd = FrechetAudioDistance(sample_rate=32000, backbone=net, batch_size=n).to(device)
        fd.update(preds=audio)

    def loop() -> None:
        fd = FrechetAudioDistance(sample_rate=32000, backbone=net, batch_size=1).to(device)
        for i in range(n):
            fd.update(preds=audio[i : i + 1])

    windows = torch.stack([passt_windows(c.unsqueeze(0), 32000, "fastvideo", "fd")[0] for c in audio]).to(device)

    def bare() -> None:
        with torch.no_grad():
            net(windows)

    t_batched, t_loop, t_bare = timeit(batched, 3, device), timeit(loop, 3, device), timeit(bare, 3, device)
    label = "tiny PaSST" if tiny else "full PaSST (random weights)"
    print(
        f"update() {n} x 10 s clips, {label}, {device}: batched {t_batched:.3f} s, per-clip loop {t_loop:.3f} s "
        f"-> batched speed-up x{t_loop / t_batched:.2f}"
    )
    print(
        f"update() overhead vs bare forward on the preprocessed batch: {t_batched:.3f} s vs {t_bare:.3f} s "
        f"-> +{100 * (t_batched / t_bare - 1):.1f} %"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true")
    args = p.parse_args()
    bench_compute(args.device)
    bench_update(args.clips, args.device, args.tiny)


if __name__ == "__main__":
    main()
