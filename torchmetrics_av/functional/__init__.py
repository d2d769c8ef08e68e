"""Pure tensor functions behind the metrics (no state, no models).

Example:
    >>> from torchmetrics_av.functional import frechet_distance, kl_divergence_from_logits
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "frechet_distance": "torchmetrics_av.functional.fad",
    "frechet_distance_from_features": "torchmetrics_av.functional.fad",
    "gaussian_from_sums": "torchmetrics_av.functional.fad",
    "fd_infinity": "torchmetrics_av.functional.infinity",
    "kad_infinity": "torchmetrics_av.functional.infinity",
    "kernel_audio_distance": "torchmetrics_av.functional.kad",
    "median_pairwise_distance": "torchmetrics_av.functional.kad",
    "bootstrap_indices": "torchmetrics_av.functional.bootstrap",
    "bootstrap_ci": "torchmetrics_av.functional.bootstrap",
    "bootstrap_statistic": "torchmetrics_av.functional.bootstrap",
    "paired_bootstrap": "torchmetrics_av.functional.bootstrap",
    "frechet_distance_bootstrap": "torchmetrics_av.functional.bootstrap",
    "kl_divergence_from_logits": "torchmetrics_av.functional.kl",
    "inception_score": "torchmetrics_av.functional.isc",
    "speech_word_error_rate": "torchmetrics_av.functional.wer",
    "normalize_text": "torchmetrics_av.functional.wer",
    "score_transcript": "torchmetrics_av.functional.wer",
    "resolve_char_level": "torchmetrics_av.functional.wer",
    "offset_grid": "torchmetrics_av.functional.desync",
    "exact_offset_grid": "torchmetrics_av.functional.desync",
    "offset_classes": "torchmetrics_av.functional.desync",
    "offsets_from_logits": "torchmetrics_av.functional.desync",
    "desync_from_logits": "torchmetrics_av.functional.desync",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'torchmetrics_av.functional' has no attribute {name!r}")
