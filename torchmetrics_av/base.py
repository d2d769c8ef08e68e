r"""The one life cycle of every torchmetrics-av metric: score a batch into per-sample rows, append them, reduce.

A metric subclasses :class:`BackboneMetric` and writes only two things:

* ``_score(batch...) -> rows``: validate the whole batch, run the model, and return the batch's per-sample rows
  (``{"ids": (n,) int64, "kept": (n,) bool (optional), column: (n_kept, ...) tensor or list of str}``). It must not
  touch the metric state, so a batch that raises leaves the state exactly as it was.
* ``_reduce(rows) -> Tensor | dict[str, Tensor]``: the metric's value as a pure function of de-duplicated rows (the
  rows of every rank, sorted by id). ``bootstrap()`` can resample rows and call it again.

The base does the rest, identically for every metric:

* ``update`` appends the rows only after ``_score`` succeeded; a sample whose ``kept`` flag is False (e.g. a silent
  clip that cannot be peak-normalised) is not a row: it is counted (``details["n_skipped_silent"]``) and its id listed
  (``details["skipped_ids"]``).
* ``forward`` scores the batch once, appends it, and returns ``_reduce`` of this batch's rows alone (gathered from
  every rank first when ``dist_sync_on_step=True``), or ``None`` when the batch has no row; it never resets or
  recomputes the accumulated state, so a batch that raises cannot corrupt it.
* ``compute`` syncs the states across ranks, de-duplicates by id (a ``DistributedSampler`` pads ranks with repeats;
  pass dataset indices as ``ids``), sorts by id (samples without an id follow in arrival order, rank 0 first), fills
  :attr:`details` and returns ``_reduce(rows)``.
* ``per_sample()`` returns exactly those rows; ``plot()`` draws a value torchmetrics-style.

States are per-sample ``cat`` lists whose dtypes never follow a cast of the metric (``.half()``, ``.to(bfloat16)``,
``set_dtype``: the metric's values are float64 reductions), and which gather safely when a rank has no sample.

Details vocabulary (every metric): ``n_samples`` (rows reduced), ``n_skipped_silent``, ``n_duplicates_dropped``,
``skipped_ids``, ``protocol``, ``ids`` and the per-sample columns, plus the metric's secondary values. Keys of older
releases are still there and warn ``FutureWarning`` when read.

Example:
    >>> import torch
    >>> from torchmetrics_av.base import unique_sample_order
    >>> unique_sample_order(torch.tensor([2, 0, 2, -1])).tolist()
    [1, 0, 3]
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import warnings
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities.distributed import gather_all_tensors
from torchmetrics.utilities.exceptions import TorchMetricsUserError

from torchmetrics_av.precision import check_precision, install, precision_scope
from torchmetrics_av.protocols import PROTOCOLS, ProtocolName, ProtocolSpec, get_protocol

# Old names of the protocol helpers, kept for existing imports (protocols.py owns them now).
Protocol = ProtocolName
__all__ = [
    "PROTOCOLS",
    "BackboneMetric",
    "Details",
    "Protocol",
    "Rows",
    "check_protocol",
    "freeze",
    "require_extra",
    "resolve_rates",
    "unique_sample_order",
]

Rows = dict[str, Any]
# State names the base adds to every per-sample metric.
_IDS, _KEPT, _TEXT_BYTES, _TEXT_LENGTHS = "sample_id", "sample_kept", "text_bytes", "text_lengths"


def check_protocol(protocol: str) -> str:
    """Return ``protocol`` if it is known, else raise ``ValueError`` listing the choices (see ``get_protocol``)."""
    return get_protocol(protocol).name


def require_extra(owner: str, modules: Sequence[str], extra: str) -> None:
    """Raise ``ModuleNotFoundError`` naming the pip command when one of ``modules`` cannot be imported.

    Called in constructors, so a missing optional dependency fails at once and not at the first ``update``.

    Args:
        owner: the class that needs the modules (for the message).
        modules: top-level import names.
        extra: the ``torchmetrics-av`` extra that installs them.

    Example:
        >>> require_extra("FrechetAudioDistance", ["torch"], "passt")
    """
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ValueError:  # a module whose __spec__ is None (e.g. __main__) is importable
            found = True
        if not found:
            missing.append(module)
    if missing:
        names = ", ".join(f"`{m}`" for m in missing)
        raise ModuleNotFoundError(
            f"{owner} requires {names}; install it with `pip install 'torchmetrics-av[{extra}]'`", name=missing[0]
        )


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


def row_keys(ids: Tensor, example: Tensor) -> Tensor:
    """One de-duplication key per embedding row: ``-1`` without an id, else ordered by (clip id, example index).

    A clip is identified by its id; VGGish gives it several rows (its 0.96 s examples, ``example = 0, 1, ...``), and a
    repeat of the clip repeats all of them, so rows are de-duplicated by the pair. The key is
    ``id · (max example + 1) + example``, which sorts like the pair.

    Example:
        >>> row_keys(torch.tensor([3, 3, -1, 0]), torch.tensor([0, 1, 0, 0])).tolist()
        [6, 7, -1, 0]
    """
    width = int(example.max()) + 1 if example.numel() else 1
    return torch.where(ids >= 0, ids * width + example, torch.full_like(ids, -1))


def clip_groups(example: Tensor) -> Tensor:
    """Clip index of every row of a de-duplicated table whose clips' rows are contiguous (a clip starts at example 0).

    Example:
        >>> clip_groups(torch.tensor([0, 1, 2, 0, 0, 1])).tolist()
        [0, 0, 0, 1, 2, 2]
    """
    return torch.cumsum((example == 0).to(torch.int64), 0) - 1


def dedup_rows(ids: Tensor, example: Tensor, *columns: Tensor) -> tuple[Tensor, Tensor, list[Tensor], int]:
    """Rows of one side with repeated clips dropped (by id and example), sorted by id, rows without id after in
    arrival order: ``(ids, example, columns, n_rows_dropped)``.

    Example:
        >>> ids, ex, (x,), dropped = dedup_rows(torch.tensor([5, 5, 2, 5, 5]), torch.tensor([0, 1, 0, 0, 1]),
        ...                                     torch.arange(5.0))
        >>> ids.tolist(), ex.tolist(), x.tolist(), dropped
        ([2, 5, 5], [0, 0, 1], [2.0, 0.0, 1.0], 2)
    """
    order = unique_sample_order(row_keys(ids, example))
    return ids[order], example[order], [c[order] for c in columns], int(ids.numel() - order.numel())


def _encode_texts(columns: list[list[str]], n: int) -> tuple[Tensor, Tensor]:
    """``k`` columns of ``n`` strings -> (UTF-8 bytes ``(B,)`` uint8, byte lengths ``(n, k)`` int64), row-major."""
    blobs = [[col[i].encode("utf-8") for col in columns] for i in range(n)]
    lengths = torch.tensor([[len(b) for b in row] for row in blobs], dtype=torch.int64).reshape(n, len(columns))
    data = b"".join(b for row in blobs for b in row)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8), lengths


def _decode_texts(data: Tensor, lengths: Tensor) -> list[list[str]]:
    """Inverse of :func:`_encode_texts`: ``k`` columns of strings."""
    raw = bytes(data.cpu().numpy().tobytes())
    columns: list[list[str]] = [[] for _ in range(lengths.shape[1])]
    pos = 0
    for row in lengths.cpu().tolist():
        for col, n in enumerate(row):
            columns[col].append(raw[pos : pos + n].decode("utf-8"))
            pos += n
    return columns


class Details(dict):
    """The ``details`` dict: a plain ``dict`` whose keys from older releases warn ``FutureWarning`` when read.

    Example:
        >>> d = Details({"n_samples": 3}, deprecated={"n_pairs": (3, "details['n_samples']")})
        >>> d["n_samples"]
        3
    """

    def __init__(self, data: Mapping[str, Any], deprecated: Mapping[str, tuple[Any, str]] | None = None) -> None:
        super().__init__(data)
        self._deprecated = {k: hint for k, (_, hint) in (deprecated or {}).items()}
        for key, (value, _) in (deprecated or {}).items():
            self.setdefault(key, value)

    @property
    def deprecated_keys(self) -> frozenset[str]:
        """Keys kept only for compatibility (reading them warns)."""
        return frozenset(self._deprecated)

    def __getitem__(self, key: str) -> Any:
        hint = self._deprecated.get(key)
        if hint is not None:
            warnings.warn(f"details[{key!r}] is deprecated; use {hint}", FutureWarning, stacklevel=2)
        return super().__getitem__(key)


# bootstrap() defaults (DESIGN.md): 1000 draws, seed 0, a 95 % percentile interval; a percentile interval needs at
# least two draws.
BOOTSTRAP_NUM = 1000
BOOTSTRAP_SEED = 0
BOOTSTRAP_CI = 0.95
BOOTSTRAP_MIN_NUM = 2


class BackboneMetric(Metric):
    """Base class of the torchmetrics-av metrics (see the module docstring for the life cycle).

    Subclasses implement ``_build_backbone()`` (called lazily on first use when no backbone was injected),
    declare their per-sample columns with :meth:`add_rows`, and implement ``_score`` and ``_reduce``. The backbone is
    held outside the module tree, so it is not in ``state_dict()`` (a Lightning checkpoint does not grow by 300 MB per
    metric) and is not wrapped by DDP; it follows ``.to(device)`` / ``.cuda()`` of the metric, never a dtype cast.

    Args:
        backbone: an instance from :mod:`torchmetrics_av.backbones`, so one loaded model can serve several metrics.
        weights: local checkpoint path in the official format, used when ``backbone`` is not given.
        protocol: a name of :data:`~torchmetrics_av.protocols.PROTOCOLS`; stored as ``self.protocol`` (the name) and
            ``self.spec`` (the :class:`~torchmetrics_av.protocols.ProtocolSpec`).
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``: the backbone's encoders run under autocast at that
            dtype, front ends and heads in float32, reductions in float64 (:mod:`torchmetrics_av.precision`); any
            autocast around ``update`` (e.g. Lightning's ``bf16-mixed``) is switched off inside it. Low precision
            moves the values (README, "Precision"): report fp32 numbers.
        kwargs: forwarded to :class:`torchmetrics.Metric` (``dist_sync_on_step``, ``process_group``, ...).

    Raises:
        ValueError: an unknown protocol or precision, a ``backbone`` that is not a module, or ``weights`` that is not
            a path.
    """

    is_differentiable = False
    full_state_update = False
    # Per output key of a dict-valued metric (e.g. Audiobox's axes): True, False, or None (not a quality scale).
    higher_is_better_per_output: ClassVar[dict[str, bool | None] | None] = None
    # What update() needs, for the "nothing to reduce" message.
    _input_hint: ClassVar[str] = "audio"

    def __init__(
        self,
        backbone: nn.Module | None = None,
        weights: str | os.PathLike | None = None,
        protocol: str | ProtocolSpec = "fastvideo",
        *,
        precision: str = "fp32",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.precision = check_precision(precision)
        self.spec = get_protocol(protocol)
        self.protocol = self.spec.name
        if backbone is not None and not isinstance(backbone, nn.Module):
            raise ValueError(f"`backbone` must be a torch.nn.Module (torchmetrics_av.backbones), got {backbone!r:.100}")
        if weights is not None and not isinstance(weights, str | os.PathLike):
            raise ValueError(f"`weights` must be a local checkpoint path (str or os.PathLike), got {weights!r:.100}")
        self.weights = weights
        self.__dict__["_backbone"] = install(freeze(backbone)) if backbone is not None else None
        self._float64_buffers: list[str] = []
        self._sample_states: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        self._columns: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        self._text_columns: tuple[str, ...] = ()
        self._details: Details | None = None
        self._last_record: dict[str, Tensor] | None = None

    # ----------------------------------------------------------------------------------------------------------------
    # backbone

    def _build_backbone(self) -> nn.Module:
        raise NotImplementedError

    @property
    def backbone(self) -> nn.Module:
        """The frozen backbone on the metric's device, built on first access when none was injected."""
        bb = self.__dict__["_backbone"]
        if bb is None:
            bb = install(freeze(self._build_backbone()))
            self.__dict__["_backbone"] = bb
        try:
            dev = next(bb.parameters()).device
        except StopIteration:
            dev = self.device
        if dev != self.device:
            bb.to(self.device)
        return bb

    def _wrap_update(self, update: Callable) -> Callable:
        # Every update (and forward, which calls it) runs its backbone calls at the metric's precision.
        wrapped = super()._wrap_update(update)

        @functools.wraps(update)
        def at_precision(*args: Any, **kwargs: Any) -> None:
            with precision_scope(getattr(self, "precision", "fp32")):
                return wrapped(*args, **kwargs)

        return at_precision

    def _apply(self, fn: Callable[[Tensor], Tensor], exclude_state: Sequence[str] = ()) -> Metric:
        # Every state has the dtype its reduction needs (float64 values, int64 ids and counts, uint8 text): whatever
        # `.to(dtype)`, `set_dtype`, a parent LightningModule's `.half()` or DeepSpeed does, states, loaded statistics
        # and the cached compute()/forward() values only change device. The backbone likewise only follows the device
        # (cast it yourself, e.g. under autocast, if you want low-precision inference).
        states = [*self._defaults, *exclude_state]
        stash = {name: getattr(self, name) for name in self.__dict__.get("_float64_buffers", [])}
        computed, cache = self._computed, self._forward_cache
        self._computed = self._forward_cache = None
        out = super()._apply(fn, exclude_state=states)
        device = fn(torch.zeros(1, device=self.device)).device
        self._device = device

        def move(x: Any) -> Any:
            if isinstance(x, Tensor):
                return x.to(device)
            if isinstance(x, dict):
                return {k: move(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return type(x)(move(v) for v in x)
            return x

        for name in self._defaults:
            setattr(self, name, move(getattr(self, name)))
            self._defaults[name] = move(self._defaults[name])
        for name, value in stash.items():
            setattr(self, name, value.to(device))
        self._computed, self._forward_cache = move(computed), move(cache)
        bb = self.__dict__.get("_backbone")
        if bb is not None:
            bb.to(device)
        return out

    # ----------------------------------------------------------------------------------------------------------------
    # states

    def add_float64_state(self, name: str, shape: tuple[int, ...] = ()) -> None:
        """A float64 zero tensor state reduced by sum across ranks."""
        self.add_state(name, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")

    def add_sample_state(
        self, name: str, trailing_shape: tuple[int, ...] = (), dtype: torch.dtype = torch.float64
    ) -> None:
        """A per-sample ``cat`` list state holding ``(n, *trailing_shape)`` tensors.

        A rank with no samples contributes a correctly shaped empty tensor at sync, so gathering never fails on a
        rank mismatch (torchmetrics' own 1-D placeholder breaks 2-D states, reference/torchmetrics.md §1.8).
        """
        self.add_state(name, [], dist_reduce_fx="cat")
        self._sample_states[name] = (trailing_shape, dtype)

    def add_rows(self, columns: Mapping[str, tuple[tuple[int, ...], torch.dtype]], texts: Sequence[str] = ()) -> None:
        """Declare the per-sample row columns ``_score`` returns (call once, in ``__init__``).

        Args:
            columns: name -> ``(trailing shape, dtype)``; each becomes a per-sample state of that name.
            texts: names of string columns (stored as UTF-8 bytes so that they gather across ranks like tensors).
        """
        if self._columns or self._text_columns:
            raise RuntimeError("add_rows() declares every column at once; call it a single time")
        self.add_sample_state(_IDS, (), torch.int64)
        self.add_sample_state(_KEPT, (), torch.bool)
        for name, (shape, dtype) in columns.items():
            self.add_sample_state(name, tuple(shape), dtype)
        self._columns = {name: (tuple(shape), dtype) for name, (shape, dtype) in columns.items()}
        if texts:
            self.add_sample_state(_TEXT_BYTES, (), torch.uint8)
            self.add_sample_state(_TEXT_LENGTHS, (len(texts),), torch.int64)
            self._text_columns = tuple(texts)

    def _sync_dist(self, dist_sync_fn: Callable | None = None, process_group: Any | None = None) -> None:
        for name, (shape, dtype) in self._sample_states.items():
            value = getattr(self, name)
            if isinstance(value, list) and len(value) == 0:
                value.append(torch.zeros((0, *shape), dtype=dtype, device=self.device))
        super()._sync_dist(dist_sync_fn=dist_sync_fn, process_group=process_group)

    @contextlib.contextmanager
    def sync_context(
        self,
        dist_sync_fn: Callable | None = None,
        process_group: Any | None = None,
        should_sync: bool = True,
        should_unsync: bool = True,
        distributed_available: Callable | None = None,
    ) -> Generator:
        """Sync the states for the body, then restore the local ones, even when the body raises.

        (torchmetrics leaves a metric synced after a failing ``compute()``; a later ``update`` would then append to
        the gathered states.)
        """
        self.sync(
            dist_sync_fn=dist_sync_fn,
            process_group=process_group,
            should_sync=should_sync,
            distributed_available=distributed_available,
        )
        try:
            yield
        finally:
            self.unsync(should_unsync=self._is_synced and should_unsync)

    def _synced(self) -> contextlib.AbstractContextManager:
        """:meth:`sync_context` with the metric's own sync settings, as ``compute`` syncs (``per_sample`` and the
        like).
        """
        return self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            process_group=self.process_group,
            should_sync=self._to_sync,
            should_unsync=self._should_unsync,
            distributed_available=self.distributed_available_fn,
        )

    def _cat(self, name: str) -> Tensor:
        """A per-sample state as one tensor (lists before sync, tensors after)."""
        shape, dtype = self._sample_states[name]
        value = getattr(self, name)
        if isinstance(value, Tensor):
            return value
        if len(value) == 0:
            return torch.zeros((0, *shape), dtype=dtype, device=self.device)
        return torch.cat(value, dim=0)

    def _ids_tensor(self, ids: Sequence[int] | Tensor | None, n: int, name: str = "ids") -> Tensor:
        """Validate optional per-sample ids for ``n`` samples -> int64 ``(n,)`` on the metric's device.

        Samples without ids get -1 and are never treated as duplicates.

        Raises:
            ValueError: wrong count, negative or non-integer ids.
        """
        if ids is None:
            return torch.full((n,), -1, dtype=torch.int64, device=self.device)
        try:
            out = torch.as_tensor(ids, device=self.device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"`{name}` must be non-negative integers (dataset indices), one per sample") from err
        if out.ndim != 1 or out.numel() != n:
            raise ValueError(f"`{name}` must hold one integer per sample ({n}), got shape {tuple(out.shape)}")
        if out.is_floating_point() or out.is_complex() or out.dtype == torch.bool or bool((out < 0).any()):
            raise ValueError(f"`{name}` must be non-negative integers (dataset indices), one per sample")
        return out.to(torch.int64)

    # ----------------------------------------------------------------------------------------------------------------
    # life cycle

    def _score(self, *args: Any, **kwargs: Any) -> Rows:
        """Validate a batch and return its rows (see the module docstring); must not touch the state."""
        raise NotImplementedError

    def _reduce(self, rows: Rows) -> Tensor | dict[str, Tensor]:
        """The metric value of de-duplicated rows (a pure function: no state, no side effects)."""
        raise NotImplementedError

    def _summary(self, rows: Rows) -> dict[str, Any]:
        """Secondary values for :attr:`details` (e.g. the sigmoid KL mean); rows are never empty here."""
        return {}

    def _deprecated_details(self, rows: Rows, kept: Tensor) -> dict[str, tuple[Any, str]]:
        """Detail keys of older releases: name -> (value, what to read instead). ``kept``: bool per unique sample."""
        return {}

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Score a batch and add its rows (subclasses give this method their documented signature)."""
        self._add(self._score(*args, **kwargs))

    def _add(self, batch: Rows) -> None:
        """Append a scored batch to the states; the only place rows enter the state."""
        record = self._to_record(batch)
        self._last_record = record
        for name, value in record.items():
            getattr(self, name).append(value)

    def _to_record(self, batch: Rows) -> dict[str, Tensor]:
        """Rows of one batch -> one full-length tensor per state (zeros / empty strings where a sample is skipped)."""
        ids = batch["ids"].to(self.device, torch.int64)
        n = ids.numel()
        kept = batch.get("kept")
        kept = torch.ones(n, dtype=torch.bool, device=self.device) if kept is None else kept.to(self.device).bool()
        n_kept = int(kept.sum())
        record = {_IDS: ids, _KEPT: kept}
        for name, (shape, dtype) in self._columns.items():
            value = batch[name].to(self.device, dtype)
            if tuple(value.shape) != (n_kept, *shape):
                raise RuntimeError(
                    f"{type(self).__name__}._score: column {name!r} has shape {tuple(value.shape)}, "
                    f"expected {(n_kept, *shape)}"
                )
            full = torch.zeros((n, *shape), dtype=dtype, device=self.device)
            full[kept] = value
            record[name] = full
        if self._text_columns:
            positions = torch.nonzero(kept).flatten().tolist()
            columns = []
            for name in self._text_columns:
                col = [""] * n
                for pos, text in zip(positions, batch[name], strict=True):
                    col[pos] = text
                columns.append(col)
            data, lengths = _encode_texts(columns, n)
            record[_TEXT_BYTES], record[_TEXT_LENGTHS] = data.to(self.device), lengths.to(self.device)
        return record

    def _record(self) -> dict[str, Tensor]:
        """The accumulated states as one tensor each (synced when called inside ``compute``)."""
        names = [_IDS, _KEPT, *self._columns, *((_TEXT_BYTES, _TEXT_LENGTHS) if self._text_columns else ())]
        return {name: self._cat(name) for name in names}

    def _tail(self, record: dict[str, Tensor]) -> tuple[Rows, dict[str, Any], Tensor]:
        """De-duplicate by id and drop skipped samples: ``(rows, counts, kept flag per unique sample)``."""
        ids, kept = record[_IDS], record[_KEPT].bool()
        order = unique_sample_order(ids)
        first_kept = kept[order]
        idx = order[first_kept]
        rows: Rows = {"ids": ids[idx]}
        for name in self._columns:
            rows[name] = record[name][idx]
        if self._text_columns:
            texts = _decode_texts(record[_TEXT_BYTES], record[_TEXT_LENGTHS])
            picks = idx.tolist()
            for name, column in zip(self._text_columns, texts):
                rows[name] = [column[i] for i in picks]
        counts = {
            "n_samples": int(idx.numel()),
            "n_skipped_silent": int((~first_kept).sum()),
            "n_duplicates_dropped": int(ids.numel() - order.numel()),
            "skipped_ids": ids[order[~first_kept]],
        }
        return rows, counts, first_kept

    @staticmethod
    def _dedup(ids: Tensor, *columns: Tensor) -> tuple[Tensor, list[Tensor], int]:
        """Rows of a side table with repeated ids dropped, sorted by id: ``(ids, columns, n_dropped)``.

        For metrics that keep more than one row table (FD's two sides); the main table goes through :meth:`_tail`.
        """
        order = unique_sample_order(ids)
        return ids[order], [c[order] for c in columns], int(ids.numel() - order.numel())

    def _nothing_to_reduce(self, counts: Mapping[str, Any]) -> ValueError:
        skipped = counts.get("n_skipped_silent", 0)
        because = f" ({skipped} silent clips skipped)" if skipped else ""
        return ValueError(
            f"{type(self).__name__} has no scored samples{because}; call update() with {self._input_hint}"
        )

    def compute(self) -> Tensor | dict[str, Tensor]:
        """The metric over every rank's rows, repeats of an id counted once; fills :attr:`details`.

        Raises:
            ValueError: there is no row to reduce (no ``update`` yet, or every sample was skipped).
        """
        rows, counts, kept = self._tail(self._record())
        if counts["n_samples"] == 0:
            self._details = Details({**counts, "protocol": self.protocol})
            raise self._nothing_to_reduce(counts)
        value = self._reduce(rows)
        data = {**counts, "protocol": self.protocol, **rows, **self._summary(rows)}
        legacy = {"sample_id": (rows["ids"], "per_sample()['ids']"), **self._deprecated_details(rows, kept)}
        self._details = Details(data, legacy)
        return value

    def per_sample(self) -> dict[str, Tensor | list[str]]:
        """The de-duplicated rows ``compute()`` reduces, in the same order, from every rank.

        Returns:
            ``{"ids": (N,) int64 (-1 where no id was given), column: (N, ...) tensor or list of N str}``, sorted by
            id, then the samples without an id in arrival order (rank 0's first). Skipped samples are not rows (see
            ``details["skipped_ids"]``).

        Example:
            >>> import torch
            >>> from torchmetrics_av import SpeechWordErrorRate
            >>> wer = SpeechWordErrorRate(sample_rate=16000, asr=lambda audio, hints: ["a cat"] * len(audio))
            >>> wer.update(torch.zeros(2, 1600), ["a cat", "the cat"], ids=[7, 3])
            >>> rows = wer.per_sample()
            >>> rows["ids"].tolist(), rows["wer"].tolist()
            ([3, 7], [0.5, 0.0])
        """
        with self._synced():
            rows, _, _ = self._tail(self._record())
        return rows

    def _syncs_on_step(self) -> bool:
        return bool(self.dist_sync_on_step) and bool(self.distributed_available_fn())

    def _gather(self, value: Tensor) -> Tensor:
        """This batch's tensor from every rank, concatenated in rank order (identity without ``dist_sync_on_step``)."""
        if not self._syncs_on_step():
            return value
        fn = self.dist_sync_fn or gather_all_tensors
        return torch.cat([part.to(value.device) for part in fn(value, group=self.process_group)])

    def _batch_value(self, record: dict[str, Tensor]) -> Tensor | dict[str, Tensor] | None:
        """``forward``'s value: ``_reduce`` of this batch's rows (all ranks' with ``dist_sync_on_step``), or None."""
        record = {name: self._gather(record[name]) for name in sorted(record)}
        rows, counts, _ = self._tail(record)
        if counts["n_samples"] == 0:
            return None
        return self._reduce(rows)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Update with the batch and return the metric of this batch alone.

        The batch is scored once (torchmetrics' default ``forward`` would run the model twice, or recompute from a
        reset state and lose the accumulated one when the batch cannot be reduced). With ``dist_sync_on_step=True``
        the value covers this step's batches of every rank (every rank must call ``forward`` together). ``None`` when
        the batch has nothing to reduce (e.g. every clip was skipped as silent).
        """
        if self._is_synced:
            raise TorchMetricsUserError(
                "The Metric shouldn't be synced when performing ``forward``. HINT: Did you forget to call ``unsync`` ?."
            )
        self._last_record = None
        self.update(*args, **kwargs)
        record, self._last_record = self._last_record, None
        if record is None:
            raise RuntimeError(f"{type(self).__name__}.update did not add a scored batch")
        value = self._batch_value(record)
        self._forward_cache = value
        return value

    # ----------------------------------------------------------------------------------------------------------------
    # details, plot

    @property
    def details(self) -> Details:
        """DDP-synced counts, per-sample values and secondary values from the last ``compute()``."""
        if self._details is None:
            raise RuntimeError(f"{type(self).__name__}.details is filled by compute(); call compute() first")
        return self._details

    def reset(self) -> None:
        """Clear the accumulated states and the last details."""
        super().reset()
        self._details = None

    def plot(self, val: Any = None, ax: Any = None) -> tuple[Any, Any]:
        """Plot a value (default: ``compute()``) or a list of values, torchmetrics-style.

        Args:
            val: a result of ``compute()`` / ``forward()``, or a list of them (a series over steps).
            ax: a matplotlib axis to draw on (default: a new figure).

        Returns:
            ``(figure, axis)``; the figure is ``None`` when ``ax`` was given.

        Raises:
            ModuleNotFoundError: matplotlib is not installed (``pip install 'torchmetrics-av[all]'``).

        Example:
            >>> import torch
            >>> from torchmetrics_av import DeSync
            >>> fig, ax = DeSync().plot([torch.tensor(0.4), torch.tensor(0.2)])  # two steps; bounds 0-2 s
            >>> ax.get_ylabel()
            'DeSync'
        """
        require_extra(f"{type(self).__name__}.plot", ["matplotlib"], "all")
        return self._plot(val, ax)

    # ----------------------------------------------------------------------------------------------------------------
    # bootstrap

    def _bootstrap_tables(self, rows: Rows) -> list[tuple[tuple[str, ...], Tensor | None]]:
        """How :meth:`bootstrap` resamples the rows of ``per_sample()``: ``[(columns drawn together, units), ...]``.

        ``units`` is ``None`` (every row is a unit) or the ``(n,)`` int64 unit index of each row, contiguous and
        numbered from 0 (e.g. VGGish's examples of one clip, drawn together). The default is one table of every column
        (one row per sample); set metrics (FD, KAD) return one table per side, drawn independently.
        """
        return [(tuple(rows), None)]

    def bootstrap(
        self, num: int = BOOTSTRAP_NUM, seed: int = BOOTSTRAP_SEED, ci: float = BOOTSTRAP_CI
    ) -> dict[str, Tensor] | dict[str, dict[str, Tensor]]:
        """Percentile bootstrap interval of the metric from its de-duplicated per-sample rows (every rank's).

        Resampling unit: one row of :meth:`per_sample` — a pair for KL / CLAP / ImageBind / DeSync, a clip for IS
        (its logits), WER and Audiobox; a clip's embedding rows per side for FD and KAD (the generated and reference
        sets are resampled independently, generated first, from one random stream; a reference loaded from
        statistics stays fixed). Each of the ``num`` draws takes as many units as there are, with replacement, from
        ``np.random.RandomState(seed)`` (:func:`~torchmetrics_av.functional.bootstrap.bootstrap_indices`), and calls
        the metric's own reduction on them: no model forward, no copy of the metric. The draws depend only on
        ``seed`` and the synced rows, so every DDP rank returns the same numbers, whatever the sharding.

        The interval is the percentile one (``(1 − ci)/2`` and ``(1 + ci)/2`` quantiles of the ``num`` values,
        linear interpolation); ``std`` is the bootstrap standard error (``ddof=1``); ``value`` is the metric on all
        rows (``compute()``'s value). It describes sampling variability only: a biased estimator stays biased. FD in
        particular is biased upwards for small N (a resample holds ~63 % distinct rows, so resampled FDs sit above
        the point estimate when N is small against the embedding width): see ``FrechetAudioDistance.fd_infinity``.

        Args:
            num: number of bootstrap draws (at least 2; the metric is reduced ``num`` times).
            seed: seed of the legacy NumPy ``RandomState`` (``0 <= seed < 2**32``).
            ci: coverage of the two-sided interval, in (0, 1).

        Returns:
            ``{"value", "low", "high", "std"}`` float64 scalars, or one such dict per key for a dict-valued metric
            (Audiobox's axes).

        Raises:
            ValueError: bad arguments, no rows to resample (nothing updated, or a metric that kept only sums: see its
                docstring), or a resample the metric cannot reduce.

        Example:
            >>> import torch
            >>> from torchmetrics_av import PaSSTKLDivergence
            >>> from torchmetrics_av.testing import tiny_backbone
            >>> kl = PaSSTKLDivergence(sample_rate=16000, backbone=tiny_backbone("passt"))  # random weights: demo
            >>> g = torch.Generator().manual_seed(0)
            >>> kl.update(torch.rand(6, 8000, generator=g) - 0.5, torch.rand(6, 8000, generator=g) - 0.5)
            >>> out = kl.bootstrap(num=50, seed=0)
            >>> sorted(out), bool(out["low"] <= out["value"] <= out["high"])
            (['high', 'low', 'std', 'value'], True)
        """
        import numpy as np

        from torchmetrics_av.functional.bootstrap import bootstrap_ci, bootstrap_indices

        if isinstance(num, bool) or not isinstance(num, int) or num < BOOTSTRAP_MIN_NUM:
            raise ValueError(
                f"`num` (number of bootstrap draws) must be an integer >= {BOOTSTRAP_MIN_NUM}, got {num!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ValueError(f"`seed` must be an integer in [0, 2**32) (a NumPy RandomState seed), got {seed!r}")
        if isinstance(ci, bool) or not isinstance(ci, int | float) or not 0.0 < float(ci) < 1.0:
            raise ValueError(f"`ci` must be a coverage level in (0, 1), e.g. 0.95, got {ci!r}")
        rows = self.per_sample()
        tables = self._bootstrap_tables(rows)
        plans = [_unit_plan(rows, columns, units) for columns, units in tables]
        if all(plan is None for plan in plans):
            raise ValueError(
                f"{type(self).__name__}.bootstrap has no per-sample rows to resample; call update() with "
                f"{self._input_hint} first"
            )
        point = self._reduce(rows)
        stream = np.random.RandomState(seed)
        draws = [None if plan is None else bootstrap_indices(plan[0], num, stream) for plan in plans]
        values: list[Tensor | dict[str, Tensor]] = []
        for b in range(num):
            resampled = dict(rows)
            for (columns, _), plan, drawn in zip(tables, plans, draws):
                if plan is None or drawn is None:
                    continue
                picks = _unit_rows(plan, drawn[b])
                for name in columns:
                    resampled[name] = _take(rows[name], picks)
            values.append(self._reduce(resampled))
        if isinstance(point, dict):
            return {
                key: bootstrap_ci(torch.stack([v[key].double().cpu() for v in values]), point[key].cpu(), ci)
                for key in point
            }
        return bootstrap_ci(torch.stack([v.double().cpu() for v in values]), point.cpu(), ci)


def _column_length(column: Tensor | list[str]) -> int:
    return int(column.shape[0]) if isinstance(column, Tensor) else len(column)


def _unit_plan(rows: Rows, columns: Sequence[str], units: Tensor | None) -> tuple[int, Tensor, Tensor] | None:
    """``(number of units, first row of each unit, rows per unit)`` of one table, or ``None`` when it has no row."""
    n = _column_length(rows[columns[0]]) if columns else 0
    if n == 0:
        return None
    if units is None:
        return n, torch.arange(n), torch.ones(n, dtype=torch.int64)
    units = units.to("cpu", torch.int64)
    counts = torch.bincount(units)
    starts = torch.cumsum(counts, 0) - counts
    return int(counts.numel()), starts, counts


def _unit_rows(plan: tuple[int, Tensor, Tensor], drawn: Tensor) -> Tensor:
    """Row indices of the drawn units, each unit's rows in order."""
    _, starts, counts = plan
    if bool((counts == 1).all()):
        return starts[drawn]
    size = counts[drawn]
    offsets = torch.arange(int(size.sum())) - torch.repeat_interleave(torch.cumsum(size, 0) - size, size)
    return torch.repeat_interleave(starts[drawn], size) + offsets


def _take(column: Tensor | list[str], picks: Tensor) -> Tensor | list[str]:
    if isinstance(column, Tensor):
        return column[picks.to(column.device)]
    return [column[i] for i in picks.tolist()]
