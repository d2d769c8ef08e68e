"""Backbones, one file per model: ``PaSST``, ``CLAP``, ``ImageBind``, ``Synchformer``, ``Whisper``, ``Audiobox``,
``MSCLAP``.

Each takes ``(weights=None, pretrained=True, ...)``; ``pretrained=False`` builds the architecture without network.
``.model`` has exactly the official checkpoint's ``state_dict`` keys and shapes. Imported lazily.

Example:
    >>> from torchmetrics_av import backbones
    >>> backbones.PaSST.sample_rate
    32000
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PaSST": "torchmetrics_av.backbones.passt",
    "CLAP": "torchmetrics_av.backbones.clap",
    "ImageBind": "torchmetrics_av.backbones.imagebind",
    "Synchformer": "torchmetrics_av.backbones.synchformer",
    "Whisper": "torchmetrics_av.backbones.whisper",
    "Audiobox": "torchmetrics_av.backbones.audiobox",
    "MSCLAP": "torchmetrics_av.backbones.msclap",
    "PANNs": "torchmetrics_av.backbones.panns",
    "VGGish": "torchmetrics_av.backbones.vggish",
    "ASRBackbone": "torchmetrics_av.backbones.asr",
    "HFWhisper": "torchmetrics_av.backbones.hf_whisper",
    "GLMASR": "torchmetrics_av.backbones.glm_asr",
    "SenseVoice": "torchmetrics_av.backbones.sensevoice",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'torchmetrics_av.backbones' has no attribute {name!r}")
