r"""KL divergence between classifier outputs of paired clips (KL_PaSST), from logits.

.. math::
    KL_{softmax}(t \Vert p) = \sum_c q^t_c (\log q^t_c - \log q^p_c), \quad q = \operatorname{softmax}(z)

    KL_{sigmoid}(t \Vert p) = \sum_c \sigma(z^t_c)(\log\sigma(z^t_c) - \log\sigma(z^p_c))

Direction is KL(target ‖ preds), summed over classes, no eps — exactly FastVideo's ``_kl_softmax``/``_kl_sigmoid``
and av-benchmark's ``compute_kl`` per pair. The sigmoid variant is *not* a Bernoulli KL (the ``1-σ`` terms are
missing, as in both references) and can be negative; it is reported as a detail only.

Example:
    >>> import torch
    >>> from torchmetrics_av.functional import kl_divergence_from_logits
    >>> z = torch.tensor([[2.0, 0.0, -1.0]])
    >>> float(kl_divergence_from_logits(z, z)[0])
    0.0
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def kl_divergence_from_logits(
    preds_logits: Tensor, target_logits: Tensor, kind: Literal["softmax", "sigmoid"] = "softmax"
) -> Tensor:
    """Per-pair KL(target ‖ preds) over the class axis, computed in float64.

    Args:
        preds_logits: ``(N, C)`` logits of the generated clips.
        target_logits: ``(N, C)`` logits of the paired reference clips.
        kind: ``"softmax"`` (the reported KL_PaSST) or ``"sigmoid"`` (the references' per-class variant).

    Returns:
        ``(N,)`` float64 tensor.
    """
    if preds_logits.shape != target_logits.shape or preds_logits.ndim != 2:
        raise ValueError(
            f"`preds_logits` and `target_logits` must both be (N, C), got {tuple(preds_logits.shape)} and "
            f"{tuple(target_logits.shape)}"
        )
    p, t = preds_logits.to(torch.float64), target_logits.to(torch.float64)
    if kind == "softmax":
        log_p, log_t = F.log_softmax(p, dim=-1), F.log_softmax(t, dim=-1)
    elif kind == "sigmoid":
        log_p, log_t = F.logsigmoid(p), F.logsigmoid(t)
    else:
        raise ValueError(f"`kind` must be 'softmax' or 'sigmoid', got {kind!r}")
    return (log_t.exp() * (log_t - log_p)).sum(dim=-1)
