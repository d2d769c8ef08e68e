"""CLAPScore.update() throughput: clips batched through CLAP vs one clip per update, same clips, same numbers.

Usage:
    python benchmarks/bench_clap.py                                   # both protocols, full-size random models, CPU
    python benchmarks/bench_clap.py --protocol fastvideo --device cuda --clips 32 --batch-size 16
    python benchmarks/bench_clap.py --protocol av-benchmark --weights music_speech_audioset_epoch_15_esc_89.98.pt

Random weights run the same graph as the real checkpoints (fastvideo: fused HTSAT-tiny; av-benchmark: HTSAT-base),
so the timing does not depend on them. Every clip becomes one 10 s window, so both modes do the same work per clip;
batching only changes how clips share the STFT and the model forward. The per-clip cosines of the two modes are
checked to agree (the metric is batch-independent), then the throughput ratio is printed.
"""

from __future__ import annotations

import argparse
import time

import torch

from torchmetrics_av import CLAPScore
from torchmetrics_av.backbones import CLAP

# A fixed 12-token prompt: the benchmark measures audio throughput, and no tokenizer files are needed.
_PROMPT_IDS = [0, *range(1000, 1012), 2]


def fixed_tokenizer(texts: list[str], **_: object) -> dict[str, torch.Tensor]:
    """Stand-in tokenizer: the same ids for every prompt (no vocabulary files needed)."""
    ids = torch.tensor([_PROMPT_IDS] * len(texts))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _run(metric: CLAPScore, audio: list[torch.Tensor], per_clip: bool, device: torch.device) -> float:
    metric.reset()
    _sync(device)
    t0 = time.perf_counter()
    if per_clip:
        for a in audio:
            metric.update([a], ["a prompt"])
    else:
        metric.update(audio, ["a prompt"] * len(audio))
    metric.compute()
    _sync(device)
    return time.perf_counter() - t0


def bench(protocol: str, args: argparse.Namespace, device: torch.device) -> None:
    torch.manual_seed(0)
    net = CLAP(weights=args.weights, pretrained=args.weights is not None, protocol=protocol, tokenizer=fixed_tokenizer)
    metric = CLAPScore(sample_rate=args.sample_rate, protocol=protocol, backbone=net, batch_size=args.batch_size)
    metric = metric.to(device)
    g = torch.Generator().manual_seed(1)
    audio = [0.1 * torch.randn(2, int(args.seconds * args.sample_rate), generator=g) for _ in range(args.clips)]

    _run(metric, audio[:1], per_clip=False, device=device)  # warm-up: mel banks, resampling kernels, allocator
    t_single = _run(metric, audio, per_clip=True, device=device)
    single = metric.details["score"].clone()
    t_batched = _run(metric, audio, per_clip=False, device=device)
    batched = metric.details["score"]
    max_diff = float((single - batched).abs().max())
    if max_diff > 1e-5:
        raise AssertionError(f"batched and per-clip cosines differ by {max_diff:.2e}")
    n = len(audio)
    print(
        f"{protocol:>13} on {device}: {n} clips x {args.seconds:g} s, batch {args.batch_size} | "
        f"one clip per update {n / t_single:6.2f} clips/s | batched {n / t_batched:6.2f} clips/s | "
        f"ratio {t_single / t_batched:5.2f}x | max |cos diff| {max_diff:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=["fastvideo", "av-benchmark", "both"], default="both")
    parser.add_argument("--weights", default=None, help="from_pretrained folder or laion .pt")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--batch-size", type=int, default=8, help="clips per model call")
    args = parser.parse_args()
    device = torch.device(args.device)
    for protocol in ["fastvideo", "av-benchmark"] if args.protocol == "both" else [args.protocol]:
        bench(protocol, args, device)


if __name__ == "__main__":
    main()
