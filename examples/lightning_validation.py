"""Log torchmetrics-av metrics from a LightningModule's validation step (single device or DDP).

The "generator" here is a toy (a learnable gain and low-pass on reference audio) so the example runs anywhere; swap
in your model. Every metric is updated in ``validation_step`` and logged as a metric *object*, so Lightning calls
``compute()`` (DDP-synced) at the end of the epoch and resets the metric. Dataset indices are passed as ``ids`` so the
samples ``DistributedSampler`` repeats to even out ranks are counted once.

    python examples/lightning_validation.py --tiny               # 1 CPU process
    python examples/lightning_validation.py --tiny --devices 2   # 2 CPU processes (ddp_spawn, gloo)

``--tiny`` uses a tiny RANDOM PaSST: the numbers only exercise the pipeline.
"""

from __future__ import annotations

import argparse
import math

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from torchmetrics_av import FrechetAudioDistance, PaSSTKLDivergence
from torchmetrics_av.backbones import PaSST

SAMPLE_RATE = 16000


class ToyAudio(Dataset):
    """``n`` reference clips (tones + noise), returned as ``(index, clip)``."""

    def __init__(self, n: int = 7, seconds: float = 1.0) -> None:
        g = torch.Generator().manual_seed(0)
        t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        f0 = torch.empty(n).uniform_(150, 600, generator=g)
        self.clips = 0.4 * torch.sin(2 * math.pi * f0[:, None] * t) + 0.05 * torch.randn(n, t.numel(), generator=g)

    def __len__(self) -> int:
        return self.clips.shape[0]

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return i, self.clips[i]


class ToyGenerator(L.LightningModule):
    """A toy audio "generator" validated with FD_PaSST and KL_PaSST sharing one PaSST."""

    def __init__(self, tiny: bool = True) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(0.8))
        torch.manual_seed(0)
        passt = PaSST(pretrained=False, embed_dim=32, depth=1, num_heads=2) if tiny else PaSST()
        self.fd = FrechetAudioDistance(sample_rate=SAMPLE_RATE, backbone=passt)
        self.kl = PaSSTKLDivergence(sample_rate=SAMPLE_RATE, backbone=passt)

    def forward(self, ref: torch.Tensor) -> torch.Tensor:
        smooth = torch.nn.functional.avg_pool1d(ref.unsqueeze(1), 5, stride=1, padding=2).squeeze(1)
        return (self.gain * smooth).clamp(-1, 1)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        ids, ref = batch
        gen = self(ref)
        self.fd.update(preds=gen, target=ref, ids=ids, target_ids=ids)
        self.kl.update(gen, ref, ids=ids)
        self.log("val/fd_passt", self.fd)
        self.log("val/kl_passt", self.kl)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def validate(devices: int = 1, tiny: bool = True, n: int = 7, batch_size: int = 2) -> dict[str, float]:
    """Run ``Trainer.validate`` on CPU; return the logged values."""
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(ToyAudio(n), batch_size=batch_size)
    (logged,) = trainer.validate(ToyGenerator(tiny), dataloaders=loader, verbose=False)
    return {k: float(v) for k, v in logged.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--tiny", action="store_true", help="tiny random PaSST")
    args = p.parse_args()
    if args.tiny:
        print("!! RANDOM WEIGHTS: tiny random PaSST; the values are not FD_PaSST/KL_PaSST")
    print(validate(args.devices, args.tiny))


if __name__ == "__main__":
    main()
