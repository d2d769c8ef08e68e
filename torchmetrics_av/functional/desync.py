r"""DeSync from Synchformer offset logits: the offset grid, per-window offsets and the per-clip DeSync in seconds.

Synchformer classifies a 14-segment (4.8 s) window into 21 audio-visual offsets on the grid -2.0, -1.8, ..., +2.0 s.
DeSync scores a clip by its first and last window (front and back):

.. math::
    \mathrm{DeSync} = \tfrac{1}{2}\left(|g_{\arg\max z^{front}}| + |g_{\arg\max z^{back}}|\right)

with the grid ``g = float32(numpy.linspace(-2, 2, 21))`` (so 0.8 reads as 0.800000011920929, as in both references)
and ties going to the first maximal class (``torch.argmax``). A positive offset means the audio starts earlier than
the video (Synchformer's convention); DeSync ignores the sign.

The score keeps the references' float32 grid so that published numbers reproduce to the last digit. A per-window
*offset* reported to a user is the class's exact value instead (:func:`exact_offset_grid`: float64 ``-1.4``, not the
float32 ``-1.399999976``), chosen by the same argmax index (:func:`offset_classes`).

Example:
    >>> import torch
    >>> from torchmetrics_av.functional.desync import desync_from_logits
    >>> front = torch.zeros(1, 21); front[0, 6] = 1.0    # -0.8 s
    >>> back = torch.zeros(1, 21); back[0, 10] = 1.0     # 0.0 s
    >>> round(float(desync_from_logits(front, back)[0]), 6)
    0.4
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch
from torch import Tensor

# Synchformer's class grid (make_class_grid(-2, 2, 21)): 0.2 s steps over +-2 s.
OFFSET_RANGE_S = (-2.0, 2.0)
NUM_OFFSET_CLASSES = 21


def offset_grid(
    low: float = OFFSET_RANGE_S[0], high: float = OFFSET_RANGE_S[1], num: int = NUM_OFFSET_CLASSES
) -> Tensor:
    """The offset (seconds) of each class: ``torch.from_numpy(np.linspace(low, high, num)).float()``.

    Example:
        >>> offset_grid()[[0, 6, 10, 16]].tolist()
        [-2.0, -0.800000011920929, 0.0, 1.2000000476837158]
    """
    return torch.from_numpy(np.linspace(low, high, num)).float()


def exact_offset_grid(
    low: float = OFFSET_RANGE_S[0], high: float = OFFSET_RANGE_S[1], num: int = NUM_OFFSET_CLASSES
) -> Tensor:
    """The offset (seconds) of each class from its definition ``low + k (high - low) / (num - 1)``, in float64.

    Computed in exact rational arithmetic and rounded once, so every value is the float64 nearest to the class's
    offset (``numpy.linspace`` in float64 gives ``-0.7999999999999998``; the references' float32 gives
    ``-0.800000011920929``). Rounded to float32 it equals :func:`offset_grid` value for value.

    Example:
        >>> exact_offset_grid()[[0, 3, 6, 10, 16]].tolist()
        [-2.0, -1.4, -0.8, 0.0, 1.2]
    """
    if num < 2:
        raise ValueError(f"`num` must be >= 2 classes, got {num}")
    lo, step = Fraction(low), (Fraction(high) - Fraction(low)) / (num - 1)
    return torch.tensor([float(lo + k * step) for k in range(num)], dtype=torch.float64)


def offset_classes(logits: Tensor, num_classes: int = NUM_OFFSET_CLASSES) -> Tensor:
    """Predicted class of each window: ``argmax(logits)`` (ties to the first maximal class, as the references).

    Args:
        logits: ``(N, num_classes)`` Synchformer offset logits.
        num_classes: the grid size (21).

    Returns:
        ``(N,)`` int64 class indices, on ``logits``' device.

    Example:
        >>> import torch
        >>> z = torch.zeros(1, 21); z[0, 3] = 1.0
        >>> exact_offset_grid()[offset_classes(z)].tolist()
        [-1.4]
    """
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"`logits` must be (N, {num_classes}), got {tuple(logits.shape)}")
    return logits.argmax(dim=-1)


def offsets_from_logits(logits: Tensor, grid: Tensor | None = None) -> Tensor:
    """Predicted signed offset of each window: ``grid[argmax(logits)]``.

    Args:
        logits: ``(N, 21)`` Synchformer offset logits.
        grid: ``(21,)`` offsets in seconds (default :func:`offset_grid`, the references' float32 values; pass
            :func:`exact_offset_grid` for the exact float64 ones).

    Returns:
        ``(N,)`` seconds in ``grid``'s dtype, on ``logits``' device.

    Example:
        >>> import torch
        >>> z = torch.zeros(1, 21); z[0, 3] = 1.0
        >>> offsets_from_logits(z).tolist(), offsets_from_logits(z, exact_offset_grid()).tolist()
        ([-1.399999976158142], [-1.4])
    """
    grid = offset_grid() if grid is None else grid
    return grid.to(logits.device)[offset_classes(logits, grid.shape[0])]


def desync_from_logits(front_logits: Tensor, back_logits: Tensor | None = None, grid: Tensor | None = None) -> Tensor:
    """Per-clip DeSync in seconds from the front- and back-window logits.

    Args:
        front_logits: ``(N, 21)`` logits of each clip's first 14 segments.
        back_logits: ``(N, 21)`` logits of its last 14 segments; ``None`` scores the front window alone.
        grid: ``(21,)`` offsets in seconds (default :func:`offset_grid`).

    Returns:
        ``(N,)`` float64: ``(|offset_front| + |offset_back|) / 2`` from the float32 grid values (FastVideo's per-sample
        score; its mean over clips equals av-benchmark's mean over the 2N windows).
    """
    front = offsets_from_logits(front_logits, grid).abs().to(torch.float64)
    if back_logits is None:
        return front
    if back_logits.shape != front_logits.shape:
        raise ValueError(
            f"`back_logits` {tuple(back_logits.shape)} must match `front_logits` {tuple(front_logits.shape)}"
        )
    return (front + offsets_from_logits(back_logits, grid).abs().to(torch.float64)) / 2
