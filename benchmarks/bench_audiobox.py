"""AudioboxAesthetics.update() throughput: all clips' 10-s windows batched vs one clip per update, same clips.

Usage:
    python benchmarks/bench_audiobox.py                            # full-size model, random weights, CPU
    python benchmarks/bench_audiobox.py --device cuda --clips 32 --batch-size 16
    python benchmarks/bench_audiobox.py --weights /path/to/audiobox-aesthetics    # hub folder or checkpoint.pt

Random weights run the same graph as the real checkpoint, so the timing does not depend on them. Every window is
padded to 10 s, so both modes do the same work per window; batching only changes how windows share a forward.
"""

from __future__ import annotations

import argparse
import time

import torch

from torchmetrics_av import AudioboxAesthetics
from torchmetrics_av.backbones import Audiobox


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _run(metric: AudioboxAesthetics, audio: list, per_clip: bool, device: torch.device) -> float:
    metric.reset()
    _sync(device)
    t0 = time.perf_counter()
    if per_clip:
        for a in audio:
            metric.update([a])
    else:
        metric.update(audio)
    metric.compute()
    _sync(device)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="hub folder / model.safetensors / checkpoint.pt")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="clip length (<= 10 s: one window per clip)")
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--batch-size", type=int, default=8, help="windows per model call")
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    net = Audiobox(weights=args.weights, pretrained=args.weights is not None, batch_size=args.batch_size)
    metric = AudioboxAesthetics(sample_rate=args.sample_rate, backbone=net).to(device)
    audio = [0.1 * torch.randn(2, int(args.seconds * args.sample_rate)) for _ in range(args.clips)]

    _run(metric, audio[:1], per_clip=False, device=device)  # warm-up: resampling kernels, allocator
    t_single = _run(metric, audio, per_clip=True, device=device)
    single = metric.details["scores"]
    t_batched = _run(metric, audio, per_clip=False, device=device)
    diff = float((metric.details["scores"] - single).abs().max())

    print(
        f"device={device} ({net.checkpoint_id}) clips={args.clips} x {args.seconds:g} s stereo at "
        f"{args.sample_rate} Hz, batch_size={args.batch_size} windows, threads={torch.get_num_threads()}"
    )
    print(f"one clip per update : {t_single:8.2f} s  {args.clips / t_single:7.2f} clips/s")
    print(f"batched             : {t_batched:8.2f} s  {args.clips / t_batched:7.2f} clips/s")
    print(f"speed-up (batched / one-at-a-time): {t_single / t_batched:.2f}x; max |score difference|: {diff:.2e}")


if __name__ == "__main__":
    main()
