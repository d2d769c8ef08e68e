r"""Metric suites: every number of a reference harness from one ``update`` loop, on shared backbones.

:func:`av_benchmark_suite` is hkchengrex/av-benchmark's ``evaluate()`` (MMAudio's Table 1) as one
:class:`torchmetrics.MetricCollection`: its ``compute()`` returns av-benchmark's ``output_metrics.json`` keys
(:data:`AVBENCH_KEYS`), each from the library's metric under ``protocol="av-benchmark"``:

====================  =====================================================  ==========================================
key                   metric (backbone)                                       samples (av-benchmark ``evaluate.py``)
====================  =====================================================  ==========================================
FD-VGG                ``FrechetAudioDistance`` (VGGish, 0.96 s example rows)  every generated vs every reference clip
FD-PANN               ``FrechetAudioDistance`` (PANNs Cnn14 16 kHz)           every generated vs every reference clip
FD-PASST              ``FrechetAudioDistance`` (PaSST)                        pairs (generated with its reference)
KL-PANNS-softmax      ``KLDivergence`` (PANNs)                                pairs
KL-PASST-softmax      ``KLDivergence`` (PaSST)                                pairs
ISC-PANNS-mean / -std ``InceptionScore`` (PANNs), one metric for both keys    every generated clip
ISC-PASST-mean / -std ``InceptionScore`` (PaSST), one metric for both keys    generated clips of the pairs
IB-Score              ``ImageBindScore`` (ImageBind)                          generated audio with its video
DeSync                ``DeSync`` (Synchformer)                                generated audio with its video
LAION-CLAP-Score      ``CLAPScore(model="laion")`` (laion_clap HTSAT-base)    generated audio with its caption
MS-CLAP-Score         ``CLAPScore(model="ms-clap-2023")`` (MS-CLAP 2023)      generated audio with its caption
====================  =====================================================  ==========================================

Pairing is explicit (av-benchmark matches file names with a VGGSound-specific ``clean_sample_name``): in one
``update`` call, ``preds[i]`` is paired with ``target[i]``, ``text[i]`` and ``video[i]``. A call may give
``preds`` alone (generated clips without a reference: FD-VGG / FD-PANN generated side and ISC-PANNS only) or
``target`` alone (references without a generated clip: the FD-VGG / FD-PANN reference side only), which is how
av-benchmark treats unmatched files. Values are the raw ones (IB-Score is not ×100: MMAudio's table prints 100×).

Each model runs once per clip: the metrics of a backbone share one instance, and PaSST / PANNs memoise their outputs
by input content (``cache_size``), which the suite raises for the call when a batch has more inputs than it holds.
Two ISC keys come from one :class:`~torchmetrics_av.audio.isc.InceptionScore` whose value is the dict of both.

Example:
    >>> import torch
    >>> from torchmetrics_av import av_benchmark_suite
    >>> from torchmetrics_av.testing import tiny_backbone
    >>> names = ("passt", "panns", "vggish")
    >>> suite = av_benchmark_suite({n: tiny_backbone(n) for n in names}, sample_rate=16000)  # random weights: demo
    >>> g = torch.Generator().manual_seed(0)
    >>> suite.update(preds=torch.rand(10, 16000, generator=g) - 0.5, target=torch.rand(10, 16000, generator=g) - 0.5)
    >>> list(suite.compute())  # no text, no video: the nine audio keys  # doctest: +NORMALIZE_WHITESPACE
    ['FD-VGG', 'FD-PANN', 'FD-PASST', 'KL-PANNS-softmax', 'KL-PASST-softmax', 'ISC-PANNS-mean', 'ISC-PANNS-std',
     'ISC-PASST-mean', 'ISC-PASST-std']
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities.distributed import gather_all_tensors

from torchmetrics_av.audio.isc import InceptionScore
from torchmetrics_av.base import Rows, resolve_rates
from torchmetrics_av.preprocessing import (
    AudioInput,
    VideoInput,
    as_clip_list,
    as_text_list,
    as_video_list,
    check_frame_rate,
    check_positive_int,
    check_sample_rate,
)
from torchmetrics_av.protocols import AV_BENCHMARK

__all__ = ["AVBENCH_KEYS", "SUITE_BACKBONES", "AVBenchmarkSuite", "av_benchmark_suite"]

# av-benchmark 050a5cdb `evaluate.py`: the keys of `output_metrics` (written to output_metrics.json), in its order.
AVBENCH_KEYS: tuple[str, ...] = (
    "FD-VGG",
    "FD-PANN",
    "FD-PASST",
    "KL-PANNS-softmax",
    "KL-PASST-softmax",
    "ISC-PANNS-mean",
    "ISC-PANNS-std",
    "ISC-PASST-mean",
    "ISC-PASST-std",
    "IB-Score",
    "DeSync",
    "LAION-CLAP-Score",
    "MS-CLAP-Score",
)
# `backbones=` keys of av_benchmark_suite (DESIGN.md), one model each.
SUITE_BACKBONES: tuple[str, ...] = ("passt", "panns", "vggish", "clap", "msclap", "imagebind", "synchformer")
# Backbones that memoise outputs by input content (`cache_size`), which is how FD, KL and IS share one forward.
_MEMO_BACKBONES: tuple[str, ...] = ("passt", "panns")

# What an update call gave: generated audio, reference audio, both paired, captions, videos.
_PREDS, _TARGET, _PAIRS, _TEXT, _VIDEO = "preds", "target", "pairs", "text", "video"
_ROLES: tuple[str, ...] = (_PREDS, _TARGET, _PAIRS, _TEXT, _VIDEO)


def _backbone_classes() -> dict[str, type[nn.Module]]:
    from torchmetrics_av.backbones import CLAP, MSCLAP, ImageBind, PANNs, PaSST, Synchformer, VGGish

    return {
        "passt": PaSST,
        "panns": PANNs,
        "vggish": VGGish,
        "clap": CLAP,
        "msclap": MSCLAP,
        "imagebind": ImageBind,
        "synchformer": Synchformer,
    }


def _build_official(name: str, crop_seed: int) -> nn.Module:
    """The official checkpoint of backbone ``name`` (cache, else a verified download), as av-benchmark runs it."""
    cls = _backbone_classes()[name]
    if name == "clap":
        return cls(protocol=AV_BENCHMARK.name, crop_seed=crop_seed)
    if name == "msclap":
        return cls(crop_seed=crop_seed)
    return cls()


class _SharedBackbones:
    """The suite's backbones: the given instances, and the missing ones built once, on first use, for every member."""

    def __init__(self, given: Mapping[str, nn.Module], crop_seed: int) -> None:
        self.modules: dict[str, nn.Module] = dict(given)
        self.crop_seed = crop_seed

    def get(self, name: str) -> nn.Module:
        if name not in self.modules:
            self.modules[name] = _build_official(name, self.crop_seed)
        return self.modules[name]


class _SharedBuilder:
    """A member's ``_build_backbone``: the suite's shared instance of ``name`` (picklable, for ``ddp_spawn``)."""

    def __init__(self, shared: _SharedBackbones, name: str) -> None:
        self.shared, self.name = shared, name

    def __call__(self) -> nn.Module:
        return self.shared.get(self.name)


class InceptionScoreMeanStd(InceptionScore):
    """:class:`~torchmetrics_av.audio.isc.InceptionScore` whose value is ``{"<key>-mean": mean, "<key>-std": std}``.

    Same rows, states and numbers; the std (``details["inception_score_std"]`` of the plain metric) becomes a value,
    so that ``compute``, ``forward`` and ``bootstrap`` give both of av-benchmark's keys from one set of logits.
    """

    def __init__(self, key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.higher_is_better_per_output = {f"{key}-mean": True, f"{key}-std": None}

    def _reduce(self, rows: Rows) -> dict[str, Tensor]:
        mean, std = self._scores(rows)
        return {f"{self.key}-mean": mean, f"{self.key}-std": std}


@dataclass(frozen=True)
class _Batch:
    """One validated ``update`` call: clips as lists, resolved rates, ids."""

    preds: list[Tensor] | None
    target: list[Tensor] | None
    text: list[str] | None
    video: list[Tensor] | None
    rate: Any
    target_rate: Any
    fps: Any
    ids: Any

    @property
    def paired(self) -> bool:
        return self.preds is not None and self.target is not None

    @property
    def roles(self) -> frozenset[str]:
        given = {_PREDS: self.preds, _TARGET: self.target, _TEXT: self.text, _VIDEO: self.video}
        return frozenset({k for k, v in given.items() if v is not None} | ({_PAIRS} if self.paired else set()))


def _all_vs_all(b: _Batch) -> dict[str, Any] | None:
    """FD-VGG / FD-PANN: every generated clip and every reference clip, each side by itself."""
    kw: dict[str, Any] = {}
    if b.preds is not None:
        kw.update(preds=b.preds, sample_rate=b.rate, ids=b.ids)
    if b.target is not None:
        kw.update(target=b.target, target_sample_rate=b.target_rate, target_ids=b.ids)
    return kw


def _kl_pairs(b: _Batch) -> dict[str, Any] | None:
    """KL-PANNS / KL-PASST: the (generated, reference) pairs, one id per pair."""
    if not b.paired:
        return None
    return {
        "preds": b.preds,
        "target": b.target,
        "sample_rate": b.rate,
        "target_sample_rate": b.target_rate,
        "ids": b.ids,
    }


def _fd_pairs(b: _Batch) -> dict[str, Any] | None:
    """FD-PASST: the pairs only (av-benchmark's unroll_paired_dict), each side keeping the pair's id."""
    kw = _kl_pairs(b)
    return None if kw is None else {**kw, "target_ids": b.ids}


def _generated(b: _Batch) -> dict[str, Any] | None:
    return None if b.preds is None else {"preds": b.preds, "sample_rate": b.rate, "ids": b.ids}


def _generated_of_pairs(b: _Batch) -> dict[str, Any] | None:
    return _generated(b) if b.paired else None


def _with_text(b: _Batch) -> dict[str, Any] | None:
    return None if b.text is None else {"preds": b.preds, "target": b.text, "sample_rate": b.rate, "ids": b.ids}


def _with_video(b: _Batch) -> dict[str, Any] | None:
    if b.video is None:
        return None
    return {"preds": b.preds, "target": b.video, "sample_rate": b.rate, "video_fps": b.fps, "ids": b.ids}


@dataclass(frozen=True)
class _Member:
    """One metric of the suite: its key, output keys, backbone, which inputs it reads and what it needs to compute."""

    key: str
    outputs: tuple[str, ...]
    backbone: str
    feed: Callable[[_Batch], dict[str, Any] | None]
    needs: frozenset[str]


# The pairing table of av-benchmark's `evaluate()` (reference/avbench.md §0): the one place that says which samples
# each key uses. Video and text members come first so that a clip they reject fails before the audio models run.
MEMBERS: tuple[_Member, ...] = (
    _Member("DeSync", ("DeSync",), "synchformer", _with_video, frozenset({_VIDEO})),
    _Member("IB-Score", ("IB-Score",), "imagebind", _with_video, frozenset({_VIDEO})),
    _Member("LAION-CLAP-Score", ("LAION-CLAP-Score",), "clap", _with_text, frozenset({_TEXT})),
    _Member("MS-CLAP-Score", ("MS-CLAP-Score",), "msclap", _with_text, frozenset({_TEXT})),
    _Member("FD-VGG", ("FD-VGG",), "vggish", _all_vs_all, frozenset({_PREDS, _TARGET})),
    _Member("FD-PANN", ("FD-PANN",), "panns", _all_vs_all, frozenset({_PREDS, _TARGET})),
    _Member("FD-PASST", ("FD-PASST",), "passt", _fd_pairs, frozenset({_PAIRS})),
    _Member("KL-PANNS-softmax", ("KL-PANNS-softmax",), "panns", _kl_pairs, frozenset({_PAIRS})),
    _Member("KL-PASST-softmax", ("KL-PASST-softmax",), "passt", _kl_pairs, frozenset({_PAIRS})),
    _Member("ISC-PANNS", ("ISC-PANNS-mean", "ISC-PANNS-std"), "panns", _generated, frozenset({_PREDS})),
    _Member("ISC-PASST", ("ISC-PASST-mean", "ISC-PASST-std"), "passt", _generated_of_pairs, frozenset({_PAIRS})),
)


def _snapshot(metric: Metric) -> dict[str, Any]:
    """A metric's states and update bookkeeping, so that a failed suite update can put every member back."""
    states = {}
    for name in metric._defaults:
        value = getattr(metric, name)
        states[name] = list(value) if isinstance(value, list) else value.clone()
    return {"states": states, "count": metric._update_count, "computed": metric._computed}


def _restore(metric: Metric, snap: dict[str, Any]) -> None:
    for name, value in snap["states"].items():
        setattr(metric, name, value)
    metric._update_count, metric._computed = snap["count"], snap["computed"]


class AVBenchmarkSuite(MetricCollection):
    """av-benchmark's ``evaluate()`` as a :class:`torchmetrics.MetricCollection` (built by :func:`av_benchmark_suite`).

    The modules are the member metrics, keyed ``FD-VGG``, ``FD-PANN``, ``FD-PASST``, ``KL-PANNS-softmax``,
    ``KL-PASST-softmax``, ``ISC-PANNS``, ``ISC-PASST``, ``IB-Score``, ``DeSync``, ``LAION-CLAP-Score``,
    ``MS-CLAP-Score`` (``suite["FD-PANN"]`` is the metric itself: ``per_sample()``, ``details``, ``bootstrap()``);
    ``compute()`` and ``forward()`` return the :data:`AVBENCH_KEYS` (ISC as ``-mean`` / ``-std``), in that order.

    ``update(preds=None, target=None, text=None, video=None, video_fps=None, sample_rate=None,
    target_sample_rate=None, ids=None)``:

    * ``preds``: generated audio, ``(B, T)`` / ``(B, C, T)`` or a list of clips; ``target``: reference audio, paired
      1:1 with ``preds`` when both are given (then ``B`` equal), else alone.
    * ``text``: one caption per generated clip (CLAP keys); ``video``: the video of each generated clip,
      ``(B, F, 3, H, W)`` or a list of ``(F, 3, H, W)`` (IB-Score, DeSync); both need ``preds``.
    * ``sample_rate`` / ``target_sample_rate`` / ``video_fps``: per call, overriding the suite's.
    * ``ids``: one non-negative int per sample (``preds``, or ``target`` when given alone), e.g. dataset indices;
      a repeated id (``DistributedSampler`` padding) is counted once and per-sample rows are sorted by id (the ISC
      permutation then does not depend on sharding). A reference given alone must not reuse a paired sample's id.

    An update either adds the batch to every member it concerns or, if one of them raises, to none. ``compute()``
    leaves out the keys whose inputs were never given on any rank (no ``video``: no IB-Score / DeSync; no ``text``:
    no CLAP keys; no ``target``: only ISC-PANNS); a key whose inputs were given but cannot be computed (e.g. fewer
    than 10 clips for the ISC splits) raises ``ValueError`` naming the key (compute the others one by one:
    ``suite["FD-PANN"].compute()``). With ``dist_sync_on_step=True`` every rank must give the same kinds of inputs
    in each ``forward``.
    """

    def __init__(
        self,
        members: Mapping[str, Metric],
        shared: _SharedBackbones,
        *,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        video_fps: float | Sequence[float] | None = None,
        sync_group: Any = None,
    ) -> None:
        super().__init__(dict(members), compute_groups=False)
        self.sample_rate, self.target_sample_rate, self.video_fps = sample_rate, target_sample_rate, video_fps
        self._shared = shared
        self._sync_group = sync_group
        self._seen: set[str] = set()

    # ----------------------------------------------------------------------------------------------------------------
    # inputs

    def _batch(
        self,
        preds: AudioInput | None,
        target: AudioInput | None,
        text: Sequence[str] | None,
        video: VideoInput | None,
        video_fps: float | Sequence[float] | None,
        sample_rate: int | Sequence[int] | None,
        target_sample_rate: int | Sequence[int] | None,
        ids: Sequence[int] | Tensor | None,
    ) -> _Batch:
        if preds is None and target is None:
            raise ValueError("give `preds` (generated audio) and/or `target` (reference audio) to update()")
        p = None if preds is None else as_clip_list(preds, "preds")
        t = None if target is None else as_clip_list(target, "target")
        if p is not None and t is not None and len(p) != len(t):
            raise ValueError(
                f"`preds` has {len(p)} clips and `target` {len(t)}; in one call they are pairs (preds[i] with "
                "target[i]): give unpaired clips in calls of their own"
            )
        for name, value in (("text", text), ("video", video)):
            if value is not None and p is None:
                raise ValueError(f"`{name}` belongs to generated clips: give it with `preds`")
        n = len(p) if p is not None else len(t)  # type: ignore[arg-type]
        texts = None if text is None else as_text_list(text, "text", n, allow_blank=False)
        videos = None if video is None else as_video_list(video, "video")
        if videos is not None and len(videos) != n:
            raise ValueError(f"`video` has {len(videos)} videos for {n} clips; give one per generated clip")
        if ids is not None:
            # Checked here (count, sign) so that a bad id fails before any model runs; members convert it again.
            self._first_member()._ids_tensor(ids, n)
        rate, target_rate = resolve_rates(sample_rate, target_sample_rate, self.sample_rate, self.target_sample_rate)
        fps = video_fps if video_fps is not None else self.video_fps
        return _Batch(p, t, texts, videos, rate, target_rate, fps, ids)

    def _first_member(self) -> Any:
        return next(iter(self.values(copy_state=False)))

    @contextlib.contextmanager
    def _one_forward_per_clip(self, batch: _Batch, names: Iterable[str]) -> Generator[None, None, None]:
        """Let the memo of PaSST / PANNs hold every input of the call (generated + reference), then restore it."""
        n = len(batch.preds or []) + len(batch.target or [])
        raised = []
        for name in names:
            bb = self._shared.get(name)
            if bb.cache_size < n:
                raised.append((bb, bb.cache_size))
                bb.cache_size = n
        try:
            yield
        finally:
            for bb, size in raised:
                bb.cache_size = size
                bb.clear_cache()  # entries beyond the user's limit; a later call re-embeds new clips anyway

    def _run(self, batch: _Batch, method: str) -> dict[str, Any]:
        """Feed every member that takes this batch (``update`` or ``forward``); all of them or, on an error, none."""
        calls = [(m, kw) for m in MEMBERS if (kw := m.feed(batch))]
        memo = {m.backbone for m, _ in calls} & set(_MEMO_BACKBONES)
        metrics = {m.key: self.__getitem__(m.key, copy_state=False) for m, _ in calls}
        snaps = {key: _snapshot(metric) for key, metric in metrics.items()}
        out: dict[str, Any] = {}
        try:
            with self._one_forward_per_clip(batch, sorted(memo)):
                for member, kw in calls:
                    metric = metrics[member.key]
                    out[member.key] = metric(**kw) if method == "forward" else metric.update(**kw)
        except BaseException:
            for key, snap in snaps.items():
                _restore(metrics[key], snap)
            raise
        self._seen |= batch.roles
        return out

    def update(
        self,
        preds: AudioInput | None = None,
        target: AudioInput | None = None,
        text: Sequence[str] | None = None,
        video: VideoInput | None = None,
        video_fps: float | Sequence[float] | None = None,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Add a batch to every member it concerns (see the class docstring); nothing is added if it raises.

        Raises:
            ValueError: no audio, ``preds`` / ``target`` / ``text`` / ``video`` counts that differ, ``text`` or
                ``video`` without ``preds``, bad ids, or any member's own check (its message).
        """
        self._run(self._batch(preds, target, text, video, video_fps, sample_rate, target_sample_rate, ids), "update")

    def forward(
        self,
        preds: AudioInput | None = None,
        target: AudioInput | None = None,
        text: Sequence[str] | None = None,
        video: VideoInput | None = None,
        video_fps: float | Sequence[float] | None = None,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Update with the batch and return each member's value of this batch alone (one forward per model).

        Keys the batch cannot give (no input for them, or too few clips: e.g. FD needs two per side, ISC ten) are
        left out.
        """
        batch = self._batch(preds, target, text, video, video_fps, sample_rate, target_sample_rate, ids)
        return self._flatten(self._run(batch, "forward"))

    # ----------------------------------------------------------------------------------------------------------------
    # results

    def _flatten(self, values: Mapping[str, Any]) -> dict[str, Tensor]:
        flat: dict[str, Tensor] = {}
        for value in values.values():
            if isinstance(value, Mapping):
                flat.update(value)
        flat.update({k: v for k, v in values.items() if isinstance(v, Tensor)})
        return {self._set_name(k): flat[k] for k in AVBENCH_KEYS if k in flat}

    def _seen_everywhere(self) -> set[str]:
        """The input roles given on any rank (what ``compute`` can report is the same on every rank)."""
        flags = torch.tensor([role in self._seen for role in _ROLES], dtype=torch.int64)
        metric = self._first_member()
        if metric.sync_on_compute and metric.distributed_available_fn():
            flags = flags.to(metric.device)
            gathered = gather_all_tensors(flags, group=self._sync_group)
            flags = torch.stack([g.to(flags.device) for g in gathered]).amax(dim=0)
        return {role for role, flag in zip(_ROLES, flags.tolist()) if flag}

    def compute(self) -> dict[str, Tensor]:
        """av-benchmark's output keys whose inputs were given (synced across ranks), in :data:`AVBENCH_KEYS` order.

        Raises:
            ValueError: nothing was given to ``update``, or a key whose inputs were given cannot be computed (the
                message starts with the key).
        """
        seen = self._seen_everywhere()
        if not seen:
            raise ValueError("AVBenchmarkSuite has nothing to compute: call update() with audio first")
        values: dict[str, Any] = {}
        for member in MEMBERS:
            if not member.needs <= seen:
                continue
            try:
                values[member.key] = self.__getitem__(member.key, copy_state=False).compute()
            except ValueError as err:
                raise ValueError(f"{member.key}: {err}") from err
        return self._flatten(values)

    def plot(self, val: Mapping[str, Tensor] | None = None, ax: Any = None, together: bool = False) -> Any:
        """Plot a ``compute()`` / ``forward()`` result (default: ``compute()``), torchmetrics-style.

        ``together=False``: one ``(figure, axis)`` per member whose keys are in ``val`` (the two ISC keys on one
        axis), in :data:`MEMBERS` order; ``ax`` is then a sequence of axes of that length, or ``None``.
        ``together=True``: every key on one axis.

        Raises:
            ModuleNotFoundError: matplotlib is not installed (``pip install 'torchmetrics-av[all]'``).
            ValueError: ``ax`` does not have one axis per plotted member.
        """
        from torchmetrics.utilities.plot import plot_single_or_multi_val

        from torchmetrics_av.base import require_extra

        require_extra(type(self).__name__, ["matplotlib"], "all")
        val = self.compute() if val is None else val
        if together:
            return plot_single_or_multi_val(dict(val), ax=ax)
        groups = []
        for member in MEMBERS:
            keys = [self._set_name(k) for k in member.outputs]
            if all(k in val for k in keys):
                groups.append((member.key, val[keys[0]] if len(keys) == 1 else {k: val[k] for k in keys}))
        if ax is not None and len(ax) != len(groups):
            raise ValueError(f"`ax` has {len(ax)} axes for {len(groups)} plotted members ({[g for g, _ in groups]})")
        axes = ax if ax is not None else [None] * len(groups)
        return [self.__getitem__(key, copy_state=False).plot(v, ax=a) for (key, v), a in zip(groups, axes)]

    def reset(self) -> None:
        """Reset every member and forget which inputs were given."""
        super().reset()
        self._seen = set()

    @property
    def backbones(self) -> dict[str, nn.Module]:
        """The backbones given or built so far, by :data:`SUITE_BACKBONES` key (one instance per model)."""
        return dict(self._shared.modules)


def _check_backbones(backbones: Mapping[str, nn.Module] | None) -> dict[str, nn.Module]:
    if backbones is None:
        return {}
    if not isinstance(backbones, Mapping):
        raise ValueError(f"`backbones` must be a dict {{name: backbone}} with names in {SUITE_BACKBONES}")
    classes = _backbone_classes()
    for name, module in backbones.items():
        if name not in classes:
            raise ValueError(f"`backbones` has an unknown key {name!r}; valid keys: {SUITE_BACKBONES}")
        if not isinstance(module, classes[name]):
            raise ValueError(
                f"`backbones[{name!r}]` must be a torchmetrics_av.backbones.{classes[name].__name__}, "
                f"got {type(module).__name__}"
            )
        if name in _MEMO_BACKBONES and module.cache_size < 1:
            raise ValueError(
                f"`backbones[{name!r}].cache_size` is 0: FD, KL and IS share one forward per clip through that memo; "
                "build it with cache_size >= 1"
            )
        if name == "clap" and module.spec != AV_BENCHMARK:
            raise ValueError(
                f"`backbones['clap']` was built for protocol {module.protocol!r}; av-benchmark's LAION-CLAP-Score "
                "needs CLAP(protocol='av-benchmark') (laion_clap HTSAT-base)"
            )
    return dict(backbones)


def av_benchmark_suite(
    backbones: dict[str, nn.Module] | None = None,
    sample_rate: int | Sequence[int] | None = None,
    *,
    target_sample_rate: int | Sequence[int] | None = None,
    video_fps: float | Sequence[float] | None = None,
    duration: float | None = None,
    batch_size: int = 8,
    crop_seed: int | None = None,
    **kwargs: Any,
) -> AVBenchmarkSuite:
    r"""hkchengrex/av-benchmark's 13 numbers (MMAudio's Table 1 and more) as one ``MetricCollection``.

    See :mod:`torchmetrics_av.suites` for which metric and which samples give each key, and
    :class:`AVBenchmarkSuite` for ``update`` / ``compute``. Every member runs under ``protocol="av-benchmark"``.

    Args:
        backbones: instances to use, by name in :data:`SUITE_BACKBONES` (``passt``, ``panns``, ``vggish``, ``clap``
            (``CLAP(protocol="av-benchmark")``), ``msclap``, ``imagebind``, ``synchformer``); a missing one is built
            with its official checkpoint (cache, else a verified download) when a member first needs it, once for
            all members.
        sample_rate: rate in Hz of ``preds`` (and of ``target`` unless ``target_sample_rate`` is given).
        target_sample_rate: rate in Hz of ``target``.
        video_fps: frame rate of ``video``.
        duration: av-benchmark's ``--audio_length`` in seconds (default 8.0) for FD / KL / IS, LAION-CLAP,
            IB-Score's frames and DeSync; MS-CLAP reads whole clips (as av-benchmark does).
        batch_size: most clips per forward of the audio models.
        crop_seed: seed of LAION-CLAP's crop of clips over 10 s and MS-CLAP's 7 s crop (both unseeded upstream);
            default: the given ``clap`` / ``msclap`` backbone's, else 0.
        kwargs: forwarded to every member :class:`torchmetrics.Metric` (``dist_sync_on_step``, ``process_group``,
            ``sync_on_compute``, ...).

    Returns:
        An :class:`AVBenchmarkSuite`.

    Raises:
        ValueError: an unknown backbone key, a backbone of the wrong class (or a CLAP of the other protocol, or a
            PaSST / PANNs with ``cache_size=0``), a ``protocol`` argument (the suite is av-benchmark's), or a bad
            argument of a member (named in its message).
        ModuleNotFoundError: an optional dependency of a member is missing (every member is built, so the suite
            needs ``pip install 'torchmetrics-av[all]'``; use the metrics one by one for a subset).

    Example:
        >>> import torch
        >>> from torchmetrics_av.testing import tiny_backbone
        >>> names = ("passt", "panns", "vggish", "clap", "msclap")
        >>> suite = av_benchmark_suite({n: tiny_backbone(n, **({"protocol": "av-benchmark"} if n == "clap" else {}))
        ...                             for n in names}, sample_rate=16000)
        >>> g = torch.Generator().manual_seed(0)
        >>> audio = torch.rand(10, 16000, generator=g) - 0.5
        >>> suite.update(preds=audio[:2], text=["a dog barks", "rain"])   # generated clips with captions only
        >>> suite.update(preds=audio[2:])
        >>> list(suite.compute())
        ['ISC-PANNS-mean', 'ISC-PANNS-std', 'LAION-CLAP-Score', 'MS-CLAP-Score']
    """
    if "protocol" in kwargs:
        raise ValueError("av_benchmark_suite is av-benchmark's protocol; drop `protocol` (see torchmetrics_av.suites)")
    given = _check_backbones(backbones)
    check_sample_rate(sample_rate, "sample_rate")
    check_sample_rate(target_sample_rate, "target_sample_rate")
    check_frame_rate(video_fps, "video_fps")
    batch_size = check_positive_int(batch_size, "batch_size")
    if crop_seed is not None and (isinstance(crop_seed, bool) or not isinstance(crop_seed, int)):
        raise ValueError(f"`crop_seed` must be an int or None, got {crop_seed!r}")
    shared = _SharedBackbones(given, 0 if crop_seed is None else crop_seed)
    protocol = AV_BENCHMARK.name
    audio = {"sample_rate": sample_rate, "protocol": protocol, "duration": duration, **kwargs}
    rates = {**audio, "target_sample_rate": target_sample_rate, "batch_size": batch_size}

    def seed_of(name: str) -> int:
        if crop_seed is not None:
            return crop_seed
        return int(given[name].crop_seed) if name in given else 0

    from torchmetrics_av import CLAPScore, DeSync, FrechetAudioDistance, ImageBindScore, KLDivergence

    def name_or_instance(name: str) -> str | nn.Module:
        return given.get(name, name)

    members: dict[str, Metric] = {
        "FD-VGG": FrechetAudioDistance(backbone=name_or_instance("vggish"), **rates),
        "FD-PANN": FrechetAudioDistance(backbone=name_or_instance("panns"), **rates),
        "FD-PASST": FrechetAudioDistance(backbone=name_or_instance("passt"), **rates),
        "KL-PANNS-softmax": KLDivergence(backbone=name_or_instance("panns"), **rates),
        "KL-PASST-softmax": KLDivergence(backbone=name_or_instance("passt"), **rates),
        "ISC-PANNS": InceptionScoreMeanStd(
            "ISC-PANNS", backbone=name_or_instance("panns"), batch_size=batch_size, **audio
        ),
        "ISC-PASST": InceptionScoreMeanStd(
            "ISC-PASST", backbone=name_or_instance("passt"), batch_size=batch_size, **audio
        ),
        "IB-Score": ImageBindScore(
            video_fps=video_fps, backbone=given.get("imagebind"), **{k: v for k, v in audio.items() if v is not None}
        ),
        "DeSync": DeSync(video_fps=video_fps, backbone=given.get("synchformer"), **audio),
        "LAION-CLAP-Score": CLAPScore(
            backbone=given.get("clap"), crop_seed=seed_of("clap"), batch_size=batch_size, **audio
        ),
        "MS-CLAP-Score": CLAPScore(
            model="ms-clap-2023",
            backbone=given.get("msclap"),
            crop_seed=seed_of("msclap"),
            batch_size=batch_size,
            sample_rate=sample_rate,
            protocol=protocol,
            **kwargs,
        ),
    }
    for member in MEMBERS:
        if member.backbone not in given:
            # Built on first use, once, for every member of that backbone (FD, KL and IS share one PaSST / PANNs).
            members[member.key]._build_backbone = _SharedBuilder(shared, member.backbone)
    return AVBenchmarkSuite(
        members,
        shared,
        sample_rate=sample_rate,
        target_sample_rate=target_sample_rate,
        video_fps=video_fps,
        sync_group=kwargs.get("process_group"),
    )
