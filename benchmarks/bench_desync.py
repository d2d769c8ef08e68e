"""DeSync throughput: batched ``update()`` vs a one-clip-at-a-time loop, peak memory, and the bf16 shift (GPU).

Usage:
    python benchmarks/bench_desync.py                      # tiny random Synchformer on CPU (pipeline overhead)
    python benchmarks/bench_desync.py --full --device cuda # full-size architecture (random weights), GPU
    python benchmarks/bench_desync.py --full --device cuda --bf16   # also measures the bf16 logit shift

Weights are random (fill-free init): timings do not depend on them. Clips are 8 s, 25 fps, 360x640 uint8 video with
16 kHz audio (24 segments each, all encoded).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from torchmetrics_av import DeSync
from torchmetrics_av.backbones import Synchformer

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "sync_depth": 1, "sync_heads": 2}


def make_clips(n: int, seconds: float, fps: float, sr: int, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    audio = torch.rand(n, round(seconds * sr), generator=g) - 0.5
    video = torch.randint(0, 256, (n, round(seconds * fps), 3, *hw), generator=g, dtype=torch.uint8)
    return audio, video


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(metric: DeSync, audio: torch.Tensor, video: torch.Tensor, batched: bool, device: torch.device) -> float:
    metric.reset()
    sync(device)
    start = time.perf_counter()
    if batched:
        metric.update(audio, video)
    else:
        for i in range(audio.shape[0]):
            metric.update(audio[i : i + 1], video[i : i + 1])
    metric.compute()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--full", action="store_true", help="full-size architecture (slow on CPU: ~10 s/segment)")
    parser.add_argument("--segment-batch", type=int, default=16)
    parser.add_argument("--bf16", action="store_true", help="also run with bf16 autocast and report the logit shift")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = {} if args.full else TINY
    net = Synchformer(pretrained=False, segment_batch=args.segment_batch, **config).to(device)
    audio, video = make_clips(args.clips, args.seconds, 25.0, 16000, (360, 640))
    metric = DeSync(sample_rate=16000, video_fps=25.0, backbone=net, keep_logits=True).to(device)
    run(metric, audio[:1], video[:1], True, device)  # warm-up (kernels, mel bank, resampler caches)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_loop = run(metric, audio, video, False, device)
    t_batch = run(metric, audio, video, True, device)
    fp32_logits = metric.details["logits_front"].clone()
    print(f"device={device} config={'full' if args.full else 'tiny'} clips={args.clips} x {args.seconds} s")
    print(f"one clip at a time: {args.clips / t_loop:8.3f} clips/s")
    print(f"batched update():   {args.clips / t_batch:8.3f} clips/s   ratio batched/loop = {t_loop / t_batch:.2f}x")
    print(f"peak memory: {peak_memory_mb(device):.0f} MiB ({'CUDA allocated' if device.type == 'cuda' else 'RSS'})")
    if args.bf16:
        net.bf16 = True
        t_bf16 = run(metric, audio, video, True, device)
        shift = (metric.details["logits_front"] - fp32_logits).abs().max().item()
        print(f"bf16 autocast:      {args.clips / t_bf16:8.3f} clips/s   ratio bf16/fp32 = {t_batch / t_bf16:.2f}x")
        print(f"bf16 max |logit shift| vs float32: {shift:.3e} (random weights; argmax changes with margins below it)")


if __name__ == "__main__":
    main()
