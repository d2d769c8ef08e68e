r"""Inception Score over classifier logits (ISC-PaSST, ISC-PANNs), exactly as av-benchmark's ``compute_isc``.

.. math::
    IS_k = \exp\Big( \frac{1}{|S_k|} \sum_{r \in S_k} \sum_c p_{rc} (\log p_{rc} - \log \bar p_{kc}) \Big),
    \qquad \bar p_k = \frac{1}{|S_k|} \sum_{r \in S_k} p_r, \quad p = \operatorname{softmax}(z)

Protocol (av-benchmark ``av_bench/metrics/isc.py``, lineage audioldm_eval / torch-fidelity): the rows are permuted with
``np.random.RandomState(2020).permutation(N)`` (legacy Mersenne-Twister stream), cast to float64, split into 10 parts
``[i·N // 10, (i+1)·N // 10)`` (floor division, so sizes differ by at most one), and the score is the mean and the
*population* standard deviation (``ddof=0``) of the 10 per-split scores. ``p`` and ``log p`` are two separate softmax
/ log-softmax calls, as in the reference (their rounding residue is why ``N = 10`` gives a std of ~1e-17, not 0).

The whole generated set is needed at once (the permutation and the splits are global), so a metric keeps all logits.

Example:
    >>> import torch
    >>> from torchmetrics_av.functional import inception_score
    >>> logits = torch.full((20, 4), -10.0)
    >>> logits[torch.arange(20), torch.arange(20) % 4] = 10.0  # confident; every 4 rows cover the 4 classes
    >>> mean, std = inception_score(logits, splits=5, shuffle_seed=None)
    >>> round(float(mean), 4), round(float(std), 4)
    (4.0, 0.0)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# av-benchmark's evaluate.py calls compute_isc(..., rng_seed=2020, samples_shuffle=True, splits=10) for both ISC lines.
DEFAULT_SPLITS = 10
DEFAULT_SHUFFLE_SEED = 2020


def inception_score(
    logits: Tensor, splits: int = DEFAULT_SPLITS, shuffle_seed: int | None = DEFAULT_SHUFFLE_SEED
) -> tuple[Tensor, Tensor]:
    """Inception Score (mean, population std over ``splits`` parts) of a set of pre-softmax logits.

    Args:
        logits: ``(N, C)`` classifier logits of the *generated* set (pre-sigmoid PaSST / PANNs logits in av-benchmark),
            any float dtype; computed in float64.
        splits: number of parts (``N // splits`` rows each, floor-division bounds); av-benchmark uses 10.
        shuffle_seed: seed of the legacy ``np.random.RandomState`` permutation applied to the rows before splitting
            (2020 in av-benchmark); ``None`` splits in the given order.

    Returns:
        ``(mean, std)``: scalar float64 tensors on ``logits``' device. ``std`` is the population std (``ddof=0``).

    Raises:
        ValueError: ``logits`` is not a finite ``(N, C)`` tensor, ``splits < 1``, or ``N < splits`` (some part would be
            empty; av-benchmark then silently returns NaN for both numbers).
    """
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"`logits` must be (N, C) with C >= 1, got shape {tuple(logits.shape)}")
    if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
        raise ValueError(f"`splits` must be a positive integer, got {splits!r}")
    n = logits.shape[0]
    if n < splits:
        raise ValueError(
            f"`logits` has {n} rows but `splits={splits}` needs at least one row per split; pass more samples or a "
            f"smaller `splits` (av-benchmark returns NaN here)"
        )
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("`logits` contains NaN or Inf")
    if shuffle_seed is not None:
        perm = torch.from_numpy(np.random.RandomState(shuffle_seed).permutation(n)).to(logits.device)
        logits = logits[perm]
    z = logits.to(torch.float64)
    p = z.softmax(dim=1)
    log_p = z.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        q = p[lo:hi].mean(dim=0, keepdim=True)
        scores.append((p[lo:hi] * (log_p[lo:hi] - q.log())).sum(dim=1).mean().exp())
    s = torch.stack(scores)
    return s.mean(), s.std(correction=0)
