"""Shared machinery of every torchmetrics-av metric: a frozen, lazily built backbone kept out of ``state_dict``,
float64 states that survive dtype casts, per-sample "cat" states that sync safely across DDP ranks, and the
``details`` API.

Details API (the same for every metric): after ``compute()``, ``metric.details`` is a dict of DDP-synced extras —
per-sample tensors (in the order the samples were seen on rank 0, then rank 1, ...; ``merge_state`` puts the
incoming metric's samples first, as torchmetrics does), counts of skipped or dropped
samples, and secondary values such as the sigmoid KL. It is rebuilt by every ``compute()``.

Example:
    >>> import torch
    >>> from torchmetrics_av.base import check_protocol
    >>> check_protocol("av-benchmark")
    'av-benchmark'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchmetrics import Metric

Protocol = Literal["fastvideo", "av-benchmark"]
PROTOCOLS: tuple[str, ...] = ("fastvideo", "av-benchmark")


def check_protocol(protocol: str) -> str:
    """Return ``protocol`` if it is known, else raise ``ValueError`` listing the choices."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"`protocol` must be one of {PROTOCOLS}, got {protocol!r}")
    return protocol


def freeze(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode with ``requires_grad=False`` everywhere (metrics never train their backbone).

    Also detaches tensors that modules cache as plain attributes with an autograd history (``weight_norm`` computes
    its ``weight`` when the model is built): such a backbone could not be pickled by ``ddp_spawn`` or deep-copied by
    ``Metric.clone()``. Values are unchanged.
    """
    module.eval()
    module.requires_grad_(False)
    for sub in module.modules():
        for name, value in list(vars(sub).items()):
            if isinstance(value, Tensor) and not isinstance(value, nn.Parameter) and value.grad_fn is not None:
                setattr(sub, name, value.detach())
    return module


def resolve_rates(
    call_rate: int | Sequence[int] | None,
    call_target_rate: int | Sequence[int] | None,
    rate: int | Sequence[int] | None,
    target_rate: int | Sequence[int] | None,
) -> tuple[int | Sequence[int] | None, int | Sequence[int] | None]:
    """Sample rates for one ``update`` call: per-call values win, then the constructor's; reference audio defaults to
    the generated audio's rate unless a target rate was given (DESIGN.md "Common constructor arguments").

    Returns:
        ``(rate for preds, rate for target)``; either may be ``None`` (the caller then raises a clear error).
    """
    preds_rate = call_rate if call_rate is not None else rate
    if call_target_rate is not None:
        return preds_rate, call_target_rate
    return preds_rate, target_rate if target_rate is not None else preds_rate


def unique_sample_order(ids: Tensor) -> Tensor:
    """Indices that keep the first occurrence of every id >= 0, sorted by id, then every id -1 in original order.

    ``DistributedSampler`` pads the last batch of some ranks with repeats of earlier samples; giving ``update`` the
    dataset indices as ``ids`` drops those repeats at compute time, and sorting by id makes the result independent of
    how samples were split across ranks.

    Example:
        >>> import torch
        >>> unique_sample_order(torch.tensor([4, 1, 4, -1, 0])).tolist()
        [4, 1, 0, 3]
    """
    idx = torch.arange(ids.numel(), device=ids.device)
    has_id = ids >= 0
    anon = idx[~has_id]
    named = idx[has_id]
    if named.numel() == 0:
        return anon
    order = torch.argsort(ids[named], stable=True)  # stable: the first occurrence of an id comes first
    named, sorted_ids = named[order], ids[named][order]
    first = torch.ones_like(sorted_ids, dtype=torch.bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return torch.cat([named[first], anon])


class BackboneMetric(Metric):
    """Base class of the torchmetrics-av metrics.

    Subclasses implement ``_build_backbone()`` (called lazily on first use when no backbone was injected), and add
    states with :meth:`add_state` / :meth:`add_sample_state`. The backbone is held outside the module tree, so it is
    not in ``state_dict()`` (a Lightning checkpoint does not grow by 300 MB per metric) and is not wrapped by DDP; it
    still follows ``.to(device)`` / ``.cuda()`` / dtype casts of the metric.

    Args:
        backbone: an instance from :mod:`torchmetrics_av.backbones`, so one loaded model can serve several metrics.
        weights: local checkpoint path in the official format, used when ``backbone`` is not given.
        kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, backbone: nn.Module | None = None, weights: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weights = weights
        self.__dict__["_backbone"] = freeze(backbone) if backbone is not None else None
        self._float64_states: list[str] = []
        self._float64_buffers: list[str] = []
        self._float64_sample_states: list[str] = []
        self._sample_states: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        self._details: dict[str, Any] | None = None

    # ----------------------------------------------------------------------------------------------------------------
    # backbone

    def _build_backbone(self) -> nn.Module:
        raise NotImplementedError

    @property
    def backbone(self) -> nn.Module:
        """The frozen backbone on the metric's device, built on first access when none was injected."""
        bb = self.__dict__["_backbone"]
        if bb is None:
            bb = freeze(self._build_backbone())
            self.__dict__["_backbone"] = bb
        try:
            dev = next(bb.parameters()).device
        except StopIteration:
            dev = self.device
        if dev != self.device:
            bb.to(self.device)
        return bb

    def _apply(self, fn: Callable[[Tensor], Tensor], exclude_state: Sequence[str] = ()) -> Metric:
        # float64 accumulators lose digits in bf16/fp16 and overflow in fp16: whatever `.to(dtype)`, a parent
        # LightningModule's `.half()` or DeepSpeed does, they only change device. The backbone likewise only follows
        # the device (cast it yourself, e.g. under autocast, if you want low-precision inference).
        protected = [*getattr(self, "_float64_states", []), *getattr(self, "_float64_sample_states", [])]
        stash = {name: getattr(self, name) for name in getattr(self, "_float64_buffers", [])}
        out = super()._apply(fn, exclude_state=(*exclude_state, *protected))
        device = fn(torch.zeros(1, device=self.device)).device
        for name in protected:
            value = getattr(self, name)
            if isinstance(value, Tensor):
                setattr(self, name, value.to(device))
                self._defaults[name] = self._defaults[name].to(device)
            else:
                setattr(self, name, [v.to(device) for v in value])
        for name, value in stash.items():
            setattr(self, name, value.to(device))
        bb = self.__dict__.get("_backbone")
        if bb is not None:
            bb.to(device)
        return out

    # ----------------------------------------------------------------------------------------------------------------
    # states

    def add_float64_state(self, name: str, shape: tuple[int, ...] = ()) -> None:
        """A float64 zero tensor state reduced by sum across ranks."""
        self.add_state(name, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self._float64_states.append(name)

    def add_sample_state(
        self, name: str, trailing_shape: tuple[int, ...] = (), dtype: torch.dtype = torch.float64
    ) -> None:
        """A per-sample ``cat`` list state holding ``(n, *trailing_shape)`` tensors.

        A rank with no samples contributes a correctly shaped empty tensor at sync, so gathering never fails on a
        rank mismatch (torchmetrics' own 1-D placeholder breaks 2-D states, reference/torchmetrics.md §1.8).
        """
        self.add_state(name, [], dist_reduce_fx="cat")
        self._sample_states[name] = (trailing_shape, dtype)
        if dtype == torch.float64:
            self._float64_sample_states.append(name)

    def _sync_dist(self, dist_sync_fn: Callable | None = None, process_group: Any | None = None) -> None:
        for name, (shape, dtype) in self._sample_states.items():
            value = getattr(self, name)
            if isinstance(value, list) and len(value) == 0:
                value.append(torch.zeros((0, *shape), dtype=dtype, device=self.device))
        super()._sync_dist(dist_sync_fn=dist_sync_fn, process_group=process_group)

    def _cat(self, name: str) -> Tensor:
        """A per-sample state as one tensor (lists before sync, tensors after)."""
        shape, dtype = self._sample_states[name]
        value = getattr(self, name)
        if isinstance(value, Tensor):
            return value
        if len(value) == 0:
            return torch.zeros((0, *shape), dtype=dtype, device=self.device)
        return torch.cat(value, dim=0)

    def _ids_tensor(self, ids: Sequence[int] | Tensor | None, n: int) -> Tensor:
        """Validate optional per-sample ids for ``n`` samples -> int64 ``(n,)`` on the metric's device.

        Samples without ids get -1 and are never treated as duplicates.

        Raises:
            ValueError: wrong count, negative or non-integer ids.
        """
        if ids is None:
            return torch.full((n,), -1, dtype=torch.int64, device=self.device)
        out = torch.as_tensor(ids, device=self.device)
        if out.ndim != 1 or out.numel() != n:
            raise ValueError(f"`ids` must hold one integer per sample ({n}), got shape {tuple(out.shape)}")
        if out.is_floating_point() or out.dtype == torch.bool or bool((out < 0).any()):
            raise ValueError("`ids` must be non-negative integers (dataset indices), one per sample")
        return out.to(torch.int64)

    # ----------------------------------------------------------------------------------------------------------------
    # details

    @property
    def details(self) -> dict[str, Any]:
        """DDP-synced per-sample values and counts from the last ``compute()`` (see the module docstring)."""
        if self._details is None:
            raise RuntimeError(f"{type(self).__name__}.details is filled by compute(); call compute() first")
        return self._details

    def reset(self) -> None:
        """Clear the accumulated states and the last details."""
        super().reset()
        self._details = None
