"""ImageBindScore.update() throughput: batched vs one pair at a time vs one clip per forward, plus peak memory.

Usage:
    python benchmarks/bench_imagebind.py                       # small random model on CPU (quick, ratios only)
    python benchmarks/bench_imagebind.py --size huge --device cuda --pairs 16
    python benchmarks/bench_imagebind.py --size huge --weights /path/imagebind_huge.pth

The random-weight model runs the same graph and preprocessing as the real one, so clips/s does not depend on the
weights. "clips" counts vision clips (15 per pair for fastvideo, 9 for av-benchmark at 8 s), which dominate the cost.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from torchmetrics_av import ImageBindScore
from torchmetrics_av.backbones import ImageBind
from torchmetrics_av.backbones.imagebind import (
    imagebind_audio_clips,
    imagebind_avbench_clips,
    imagebind_fastvideo_clips,
)

SMALL = dict(
    vision_embed_dim=64, vision_num_blocks=2, vision_num_heads=4,
    audio_embed_dim=64, audio_num_blocks=2, audio_num_heads=4, out_embed_dim=32,
)  # fmt: skip
VISION_CLIPS = {"fastvideo": 15, "av-benchmark": 9}


def _data(n: int, seconds: float = 8.0, fps: float = 25.0, sr: int = 16000) -> tuple[list, list]:
    g = torch.Generator().manual_seed(0)
    audio = [torch.rand(1, int(seconds * sr), generator=g) - 0.5 for _ in range(n)]
    video = [torch.randint(0, 256, (int(seconds * fps), 3, 256, 456), generator=g, dtype=torch.uint8) for _ in range(n)]
    return audio, video


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _run(metric: ImageBindScore, audio: list, video: list, per_pair: bool, device: torch.device) -> float:
    metric.reset()
    _sync(device)
    t0 = time.perf_counter()
    if per_pair:
        for a, v in zip(audio, video):
            metric.update([a], [v])
    else:
        metric.update(audio, video)
    metric.compute()
    _sync(device)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["small", "huge"], default="small")
    parser.add_argument("--weights", default=None, help="imagebind_huge.pth (default: random init)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--protocol", choices=["fastvideo", "av-benchmark"], default="fastvideo")
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings (the machine may be shared)")
    args = parser.parse_args()
    device = torch.device(args.device)

    kwargs = SMALL if args.size == "small" else {}
    net = ImageBind(weights=args.weights, pretrained=args.weights is not None, **kwargs).to(device)
    audio, video = _data(args.pairs)
    n_clips = args.pairs * VISION_CLIPS[args.protocol]

    def preprocess() -> None:
        for a, v in zip(audio, video):
            imagebind_audio_clips(a, 16000)
            if args.protocol == "fastvideo":
                imagebind_fastvideo_clips(v, 25.0)
            else:
                imagebind_avbench_clips(v, 25.0)

    preprocess()  # warm-up (lazy imports, resampling kernels)
    prep = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        preprocess()
        prep = min(prep, time.perf_counter() - t0)

    def metric(clip_batch_size: int) -> ImageBindScore:
        m = ImageBindScore(16000, 25.0, protocol=args.protocol, backbone=net, clip_batch_size=clip_batch_size)
        return m.to(device)

    _run(metric(32), audio[:1], video[:1], False, device)  # warm-up (kernels, allocator)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    batched = _run(metric(32), audio, video, False, device)
    peak = (
        f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB CUDA"
        if device.type == "cuda"
        else f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB "
        f"(+{(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2**20:.2f})"
    )
    batched = min([batched] + [_run(metric(32), audio, video, False, device) for _ in range(args.repeats - 1)])
    per_pair = min(_run(metric(32), audio, video, True, device) for _ in range(args.repeats))
    per_clip = min(_run(metric(1), audio, video, True, device) for _ in range(args.repeats))

    print(f"ImageBindScore {args.protocol}, {args.size} model on {device}, {args.pairs} pairs ({n_clips} vision clips)")
    print(f"  preprocessing only      : {n_clips / prep:8.2f} clips/s")
    print(f"  batched update          : {n_clips / batched:8.2f} clips/s   (1.00x)   peak memory {peak}")
    print(f"  one pair per update     : {n_clips / per_pair:8.2f} clips/s   ({per_pair / batched:.2f}x slower)")
    print(f"  one clip per forward    : {n_clips / per_clip:8.2f} clips/s   ({per_clip / batched:.2f}x slower)")


if __name__ == "__main__":
    main()
