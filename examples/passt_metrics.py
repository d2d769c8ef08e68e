"""Compute FD_PaSST and KL_PaSST on small synthetic audio (both protocols), the way a validation loop would.

The "generated" set is a copy of the reference set with added noise and a pitch shift, so both metrics should rise
with the perturbation strength. Run:

    python examples/passt_metrics.py              # official PaSST weights if available, else RANDOM weights
    python examples/passt_metrics.py --tiny       # a tiny random PaSST (seconds, for CI)

Without the official checkpoint (no download possible) the numbers come from RANDOM weights and mean nothing beyond
exercising the pipeline; the script says so loudly.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from torchmetrics_av import FrechetAudioDistance, PaSSTKLDivergence
from torchmetrics_av.backbones import PaSST
from torchmetrics_av.weights import WeightsNotFoundError

SAMPLE_RATE = 16000


def synth_clips(n: int, seconds: float, pitch: float, noise: float, seed: int) -> torch.Tensor:
    """``(n, T)`` harmonic tones with vibrato plus white noise, at ``SAMPLE_RATE``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    clips = []
    for _ in range(n):
        f0 = float(torch.empty(1).uniform_(150, 600, generator=g)) * pitch
        vib = 1 + 0.01 * torch.sin(2 * math.pi * 5 * t)
        wave = sum(torch.sin(2 * math.pi * f0 * k * vib * t) / k for k in range(1, 4))
        wave = wave + noise * torch.randn(t.shape, generator=g)
        clips.append(0.5 * wave / wave.abs().max())
    return torch.stack(clips)


def load_backbone(tiny: bool) -> tuple[PaSST, bool]:
    if tiny:
        torch.manual_seed(0)
        return PaSST(pretrained=False, embed_dim=32, depth=2, num_heads=2), False
    try:
        return PaSST(), True
    except WeightsNotFoundError as err:
        print(f"!! {err}", file=sys.stderr)
        torch.manual_seed(0)
        return PaSST(pretrained=False), False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random PaSST (fast; numbers are meaningless)")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    backbone, real = load_backbone(args.tiny)
    if not real:
        print(
            "!! RANDOM WEIGHTS: the official PaSST checkpoint is not available; numbers below are NOT FD_PaSST/KL_PaSST"
        )
    reference = synth_clips(args.clips, args.seconds, pitch=1.0, noise=0.01, seed=0)
    for protocol in ("fastvideo", "av-benchmark"):
        for strength in (0.0, 0.3):
            generated = synth_clips(args.clips, args.seconds, pitch=1.0 + strength, noise=0.01 + strength, seed=0)
            fd = FrechetAudioDistance(sample_rate=SAMPLE_RATE, protocol=protocol, backbone=backbone)
            kl = PaSSTKLDivergence(sample_rate=SAMPLE_RATE, protocol=protocol, backbone=backbone)
            for start in range(0, args.clips, 2):  # as a validation loop would, batch by batch
                fd.update(preds=generated[start : start + 2], target=reference[start : start + 2])
                kl.update(generated[start : start + 2], reference[start : start + 2])
            print(
                f"{protocol:>12}  perturbation={strength:.1f}  FD_PaSST={float(fd.compute()):10.4f}  "
                f"KL_PaSST={float(kl.compute()):.4f}  (n={fd.details['n_preds']}/{fd.details['n_target']})"
            )


if __name__ == "__main__":
    main()
