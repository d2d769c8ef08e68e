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
        kwargs: forwarded to :class:`torchmetrics.Metric` (``dist_sync_on_step``, ``process_group``, ...).

    Raises:
        ValueError: an unknown protocol, a ``backbone`` that is not a module, or ``weights`` that is not a path.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = get_protocol(protocol)
        self.protocol = self.spec.name
        if backbone is not None and not isinstance(backbone, nn.Module):
            raise ValueError(f"`backbone` must be a torch.nn.Module (torchmetrics_av.backbones), got {backbone!r:.100}")
        if weights is not None and not isinstance(weights, str | os.PathLike):
            raise ValueError(f"`weights` must be a local checkpoint path (str or os.PathLike), got {weights!r:.100}")
        self.weights = weights
        self.__dict__["_backbone"] = freeze(backbone) if backbone is not None else None
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
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            process_group=self.process_group,
            should_sync=self._to_sync,
            should_unsync=self._should_unsync,
            distributed_available=self.distributed_available_fn,
        ):
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
