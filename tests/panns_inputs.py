"""The PANNs/VGGish golden's clips: PCM16 FLAC files in tests/golden/panns/clips, decoded as av-benchmark did."""

from __future__ import annotations

from typing import Any

import soundfile as sf
import torch

from tests.conftest import golden_path

# AudioDataset's torchaudio.load of PCM16: code / 32768.
PCM16_SCALE = 32768.0


def load_clip(entry: dict[str, Any]) -> torch.Tensor:
    """``(C, T)`` float32 = PCM16 codes / 32768 of one golden clip (an entry of ``golden["clips"]``)."""
    codes, rate = sf.read(golden_path("panns") / entry["file"], dtype="int16", always_2d=True)
    assert rate == entry["sample_rate"] and codes.shape == (entry["num_samples"], entry["channels"])
    return torch.from_numpy(codes.T.copy()).to(torch.float32) / PCM16_SCALE


def clip_entries(golden: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``"side/stem"`` -> clip entry."""
    return {f"{c['side']}/{c['name']}": c for c in golden["clips"]}


def row_names(golden: dict[str, Any]) -> list[str]:
    """Every item, predictions then references, each in av-benchmark's sorted row order."""
    order = golden["avbench"]["row_order"]
    return [f"pred/{s}" for s in order["pred"]] + [f"gt/{s}" for s in order["gt"]]
