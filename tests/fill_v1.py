"""fill-v1: the deterministic, name-based weight fill that every golden in tests/golden was produced with.

Real checkpoints cannot be downloaded where the goldens were made, so each reference model had its parameters filled
from their *names*; a port whose module graph has the official parameter names and shapes therefore gets exactly the
same weights. This is an implementation of the rule as the goldens' ``fill.py`` docstring states it:

* every floating tensor of ``named_parameters()`` becomes ``randn(shape) * 0.02`` drawn in float32 from a generator
  seeded with ``zlib.crc32(name)``, plus 1.0 when the tensor is 1-D and its name ends with ``"weight"`` (norm scales);
* buffers whose name ends with ``running_mean`` become zeros, with ``running_var`` ones;
* every other tensor (integer parameters, all other buffers) is left as the constructor made it.

Names are relative to the module the fill is applied to (each golden's README names that root).
"""

from __future__ import annotations

import zlib

import torch

# fill-v1's constants, from the rule in the goldens' fill.py docstring.
FILL_STD = 0.02
NORM_SCALE_OFFSET = 1.0


@torch.no_grad()
def fill_v1(module: torch.nn.Module) -> torch.nn.Module:
    """Fill ``module`` in place with the fill-v1 weights and return it.

    Example:
        >>> import zlib
        >>> import torch
        >>> net = fill_v1(torch.nn.LayerNorm(3))
        >>> g = torch.Generator().manual_seed(zlib.crc32(b"weight"))
        >>> torch.equal(net.weight, torch.randn(3, generator=g) * 0.02 + 1.0)
        True
    """
    for name, param in module.named_parameters():
        if not param.is_floating_point():
            continue
        generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        value = torch.randn(tuple(param.shape), generator=generator, dtype=torch.float32) * FILL_STD
        if param.dim() == 1 and name.endswith("weight"):
            value += NORM_SCALE_OFFSET
        param.copy_(value.to(param.dtype))
    for name, buffer in module.named_buffers():
        if name.endswith("running_mean"):
            buffer.zero_()
        elif name.endswith("running_var"):
            buffer.fill_(1.0)
    return module
