"""The output memo of the backbones that FD, KL and IS share (PaSST, PANNs): one forward per model input.

A backbone shared by several metrics sees the same inputs once per metric; :class:`MemoisedBackbone` keeps the
``(embedding, logits)`` of the last ``cache_size`` inputs, keyed by their content (SHA-256 of the float32 samples)
and by the precision the encoders run at (:func:`~torchmetrics_av.precision.memo_tag`), so a bf16 metric never gets
an fp32 metric's outputs.

Example:
    >>> import torch
    >>> from torchmetrics_av.testing import tiny_backbone
    >>> net = tiny_backbone("panns", cache_size=2)
    >>> x = torch.rand(8000) - 0.5
    >>> first, _ = net.embed([x])
    >>> again, _ = net.embed([x])  # answered from the memo: no second forward
    >>> len(net._cache), torch.equal(first, again)
    (1, True)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from torchmetrics_av.precision import memo_tag
from torchmetrics_av.preprocessing import held_token


def content_key(wave: Tensor) -> str:
    """``"<length>:<sha256>"`` of a 1-D input's float32 samples: equal inputs, equal keys, on any device.

    Under ``torchmetrics-av evaluate`` a window its loader cache holds is named instead
    (:func:`~torchmetrics_av.preprocessing.held_token`): FD and KL are handed that same window object, so they still
    share one forward, and no sample is hashed.
    """
    token = held_token(wave)
    if token is not None:
        return token
    data = wave.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return f"{wave.shape[-1]}:{hashlib.sha256(data).hexdigest()}"


class MemoisedBackbone(nn.Module):
    """Base of a backbone whose ``forward`` maps a batch to ``(embeddings, logits)``: an LRU memo around it.

    :meth:`_embed_memoised` answers each input from the memo or runs it, batching equal lengths together; ``.to()``,
    ``.half()`` and the like empty the memo (its outputs belong to the old device and dtype).

    Args:
        cache_size: how many recent inputs' outputs are kept (0 disables the memo); settable later as
            ``self.cache_size``.

    Raises:
        ValueError: ``cache_size`` is not a non-negative int.
    """

    def __init__(self, cache_size: int) -> None:
        super().__init__()
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"`cache_size` must be a non-negative int (0 disables the memo), got {cache_size!r}")
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()

    def _embed_memoised(
        self,
        inputs: Sequence[Tensor],
        batch_size: int,
        device: torch.device,
        widths: tuple[int, int],
        dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(embeddings (N, widths[0]), logits (N, widths[1]))`` of 1-D inputs, in their order, on ``device``.

        Inputs missing from the memo go through ``self(...)`` ``batch_size`` at a time, equal lengths together.
        """
        tag = memo_tag()  # outputs at another precision are other outputs
        keys = [f"{tag}:{content_key(w)}" if self.cache_size > 0 else "" for w in inputs]
        emb = torch.empty(len(inputs), widths[0], device=device, dtype=dtype)
        logits = torch.empty(len(inputs), widths[1], device=device, dtype=dtype)
        by_length: dict[int, list[int]] = {}
        for i, (w, key) in enumerate(zip(inputs, keys)):
            hit = self._cache.get(key) if key else None
            if hit is not None:
                emb[i], logits[i] = hit[0].to(device), hit[1].to(device)
                self._cache.move_to_end(key)
            else:
                by_length.setdefault(w.shape[-1], []).append(i)
        for idx in by_length.values():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                e, z = self(torch.stack([inputs[i].to(device) for i in chunk]))
                emb[chunk], logits[chunk] = e, z
                for row, i in enumerate(chunk):
                    self._remember(keys[i], e[row], z[row])
        return emb, logits

    def _remember(self, key: str, emb: Tensor, logits: Tensor) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = (emb.detach().clone(), logits.detach().clone())
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        """Forget memoised outputs (call after changing the weights in place)."""
        self._cache.clear()

    def _apply(self, fn: Callable[[Tensor], Tensor], *args: object, **kwargs: object) -> nn.Module:
        # Cached outputs were computed under the old device/dtype: drop them rather than mix precisions.
        self.__dict__.get("_cache", OrderedDict()).clear()
        return super()._apply(fn, *args, **kwargs)
