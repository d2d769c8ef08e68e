"""torchmetrics-av: TorchMetrics-compatible metrics for generated audio and audio-with-video.

Metrics (all ``torchmetrics.Metric`` subclasses, imported lazily so ``import torchmetrics_av`` stays cheap):
``FrechetAudioDistance`` (FD_PaSST, FD_PANNs, FD_VGG), ``KernelAudioDistance``, ``KLDivergence`` (KL_PaSST, KL_PANNs),
``PaSSTKLDivergence``, ``InceptionScore`` (IS_PANNs, IS_PaSST), ``CLAPScore``, ``AudioboxAesthetics``,
``SpeechWordErrorRate``, ``ImageBindScore``, ``DeSync``; ``av_benchmark_suite`` (av-benchmark's 13 keys at once).

Example:
    >>> import torchmetrics_av
    >>> torchmetrics_av.FrechetAudioDistance.__name__
    'FrechetAudioDistance'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "FrechetAudioDistance": "torchmetrics_av.audio.fad",
    "PaSSTKLDivergence": "torchmetrics_av.audio.kl",
    "KLDivergence": "torchmetrics_av.audio.kl",
    "InceptionScore": "torchmetrics_av.audio.isc",
    "KernelAudioDistance": "torchmetrics_av.audio.kad",
    "CLAPScore": "torchmetrics_av.audio.clap",
    "AudioboxAesthetics": "torchmetrics_av.audio.aesthetics",
    "SpeechWordErrorRate": "torchmetrics_av.audio.wer",
    "ImageBindScore": "torchmetrics_av.av.imagebind",
    "DeSync": "torchmetrics_av.av.desync",
    "av_benchmark_suite": "torchmetrics_av.suites",
    "AVBenchmarkSuite": "torchmetrics_av.suites",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'torchmetrics_av' has no attribute {name!r}")
