"""Building blocks shared by the clean-room transformer ports (MS-CLAP's HTS-AT, Synchformer, ImageBind).

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones.layers import Mlp
    >>> Mlp(8, 32)(torch.zeros(2, 5, 8)).shape
    torch.Size([2, 5, 8])
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Mlp(nn.Module):
    """The transformer feed-forward ``fc2(GELU(fc1(x)))``, exact (erf) GELU, no dropout (eval only).

    The parameter names ``fc1.*`` / ``fc2.*`` are those of timm's ``Mlp``, which the official checkpoints use.

    Args:
        dim: input and output width.
        hidden: inner width (4 x ``dim`` in every model here).
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., dim) -> (..., dim)``."""
        return self.fc2(F.gelu(self.fc1(x)))
