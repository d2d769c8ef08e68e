"""SpeechWordErrorRate.update() throughput: clips transcribed in batches vs one clip per update, same clips.

Usage:
    python benchmarks/bench_wer.py                          # Whisper "tiny" architecture, random weights, CPU
    python benchmarks/bench_wer.py --model base --device cuda --clips 32 --sample-len 64
    python benchmarks/bench_wer.py --weights /path/base.pt  # official checkpoint (decodes stop at EOT: real speed)

With random weights Whisper never emits end-of-text, so every clip decodes exactly ``--sample-len`` tokens in both
modes: the comparison is at equal work. The transcripts of both modes are checked to be identical.
"""

from __future__ import annotations

import argparse
import time

import torch

from torchmetrics_av import SpeechWordErrorRate
from torchmetrics_av.backbones import Whisper


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _run(metric: SpeechWordErrorRate, audio: list, refs: list, per_clip: bool, device: torch.device) -> float:
    metric.reset()
    _sync(device)
    t0 = time.perf_counter()
    if per_clip:
        for a, r in zip(audio, refs):
            metric.update([a], [r], language="en")
    else:
        metric.update(audio, refs, language="en")
    metric.compute()
    _sync(device)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="official Whisper size (architecture of the random model)")
    parser.add_argument("--weights", default=None, help="official {dims, model_state_dict} .pt (default: random init)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sample-len", type=int, default=32, help="max tokens per clip")
    parser.add_argument("--batch-size", type=int, default=16, help="clips per whisper.decode call")
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    net = Whisper(
        weights=args.weights,
        pretrained=args.weights is not None,
        name=args.model,
        sample_len=args.sample_len,
        batch_size=args.batch_size,
    )
    metric = SpeechWordErrorRate(sample_rate=16000, backbone=net).to(device)
    audio = [0.1 * torch.randn(int(args.seconds * 16000)) for _ in range(args.clips)]
    refs = ["the quick brown fox jumps over the lazy dog"] * args.clips

    _run(metric, audio[:2], refs[:2], per_clip=False, device=device)  # warm-up: tokenizer, mel filters, kernels
    t_single = _run(metric, audio, refs, per_clip=True, device=device)
    single_texts = metric.details["transcript"]
    t_batched = _run(metric, audio, refs, per_clip=False, device=device)
    same = metric.details["transcript"] == single_texts

    print(
        f"device={device} model={args.model} ({net.checkpoint_id}) clips={args.clips} x {args.seconds:g} s, "
        f"sample_len={args.sample_len}, batch_size={args.batch_size}, threads={torch.get_num_threads()}"
    )
    print(f"one clip per update : {t_single:8.2f} s  {args.clips / t_single:7.2f} clips/s")
    print(f"batched             : {t_batched:8.2f} s  {args.clips / t_batched:7.2f} clips/s")
    print(f"speed-up (batched / one-at-a-time): {t_single / t_batched:.2f}x; identical transcripts: {same}")


if __name__ == "__main__":
    main()
