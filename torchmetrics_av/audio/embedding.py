"""The audio classifiers/embedders behind FD, KAD, KL and IS: one adapter per backbone, so metrics never branch on it.

``backbone=`` of :class:`~torchmetrics_av.audio.fad.FrechetAudioDistance`, ``KernelAudioDistance``,
``KLDivergence`` and ``InceptionScore`` is a name of :data:`AUDIO_BACKBONES` or an instance of the matching class
(so that one loaded model serves several metrics). What each backbone gives a metric:

=========  ========  ===========================================================  ================================
name       rate      model input of one clip (``protocol``'s loader first)        rows / logits
=========  ========  ===========================================================  ================================
passt      32 kHz    the FD window: first 10 s, zero-padded to 10 s                one 768-d row; 527 logits
panns      16 kHz    the whole (truncated) clip, never padded, >= 0.31 s            one 2048-d row; 527 logits
vggish     16 kHz    the whole (truncated) clip, >= 0.975 s                          one 128-d row per 0.96 s example
=========  ========  ===========================================================  ================================

The protocol's loader (:func:`torchmetrics_av.preprocessing.protocol_waveform`) is applied before the model:
``"av-benchmark"`` = channel mean, DC removal, ``torchaudio`` Resample, first ``duration`` (8 s), which is exactly
``PANNs.prepare`` / ``VGGish.prepare`` (av-benchmark's ``AudioDataset``); ``"fastvideo"`` = channel mean, soxr-HQ
resampling, whole clip, peak −1 dBFS (silent clips skipped). FastVideo has no PANNs or VGGish metric: under
``"fastvideo"`` those backbones see FastVideo's loader, with no reference harness behind the number.

Example:
    >>> import torch
    >>> from torchmetrics_av.audio.embedding import embed_rows, model_input, resolve_backbone
    >>> from torchmetrics_av.protocols import get_protocol
    >>> from torchmetrics_av.testing import tiny_backbone
    >>> name, net = resolve_backbone(tiny_backbone("vggish"), ("passt", "panns", "vggish"), "FrechetAudioDistance")
    >>> wave = model_input(name, torch.rand(1, 32000) - 0.5, 16000, get_protocol("av-benchmark"))
    >>> [tuple(r.shape) for r in embed_rows(name, net, [wave])]  # 2 s: two 0.96 s examples
    [(2, 128)]
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.base import (  # noqa: F401 - clip_groups, dedup_rows, row_keys re-exported
    BackboneMetric,
    clip_groups,
    dedup_rows,
    require_extra,
    resolve_rates,
    row_keys,
)
from torchmetrics_av.preprocessing import RESAMPLERS, AudioInput, Resampler, all_finite, as_clip_list, sample_rates
from torchmetrics_av.protocols import ProtocolSpec

# The two sides of a set metric (FD, KAD): generated and reference clips.
SIDES: tuple[str, ...] = ("preds", "target")
# Every audio embedder a set metric (FD, KAD) or a classifier metric (KL, IS) accepts, by name.
AUDIO_BACKBONES: tuple[str, ...] = ("passt", "panns", "vggish")
# Backbones with AudioSet class logits (VGGish has none).
CLASSIFIER_BACKBONES: tuple[str, ...] = ("passt", "panns")
# Default embedding widths, for states declared before a lazily built backbone exists: PaSST's (CLS+DIST)/2, PANNs'
# relu(fc1), VGGish's last Linear.
DEFAULT_DIMS = {"passt": 768, "panns": 2048, "vggish": 128}


def _classes() -> dict[str, type[nn.Module]]:
    from torchmetrics_av.backbones.panns import PANNs
    from torchmetrics_av.backbones.passt import PaSST
    from torchmetrics_av.backbones.vggish import VGGish

    return {"passt": PaSST, "panns": PANNs, "vggish": VGGish}


def backbone_name(backbone: nn.Module) -> str | None:
    """The :data:`AUDIO_BACKBONES` name of an instance, seen through a ``torch.compile`` wrapper (``None`` for any
    other module).
    """
    inner = getattr(backbone, "_orig_mod", backbone)
    for name, cls in _classes().items():
        if isinstance(inner, cls):
            return name
    return None


def resolve_backbone(backbone: str | nn.Module, allowed: Sequence[str], owner: str) -> tuple[str, nn.Module | None]:
    """Check a metric's ``backbone=`` argument: ``(name, instance or None)``.

    Any other module is used as PaSST is (the duck-typed contract of earlier releases): it gets the 32 kHz FD window
    and must implement ``embed(windows, batch_size) -> (embeddings (N, embed_dim), logits (N, 527))``.

    Args:
        backbone: a name of ``allowed``, an instance of ``PaSST`` / ``PANNs`` / ``VGGish`` (or of a PaSST-compatible
            module).
        allowed: the names this metric accepts.
        owner: the metric's class name (for the messages).

    Raises:
        ValueError: an unknown name, something that is not a module, or a backbone this metric cannot use (e.g.
            VGGish for KL: it has no class logits).
    """
    if isinstance(backbone, str):
        if backbone not in allowed:
            raise ValueError(f"`backbone` of {owner} must be one of {tuple(allowed)} or an instance, got {backbone!r}")
        return backbone, None
    if not isinstance(backbone, nn.Module):
        raise ValueError(
            f"`backbone` must be a torch.nn.Module (a backbone instance) or one of {tuple(allowed)}, "
            f"got {backbone!r:.100}"
        )
    name = backbone_name(backbone)
    if name is None:
        if "passt" not in allowed:
            expected = ", ".join(f"backbones.{_classes()[n].__name__}" for n in allowed)
            raise ValueError(f"`backbone` of {owner} must be one of {expected}, got {type(backbone).__name__}")
        return "passt", backbone
    if name not in allowed:
        why = " (it has no class logits)" if name not in CLASSIFIER_BACKBONES else ""
        raise ValueError(f"{owner} cannot use a {type(backbone).__name__} backbone{why}; use one of {tuple(allowed)}")
    return name, backbone


def require_backbone_extra(name: str, owner: str) -> None:
    """Fail in the constructor when the backbone ``name`` will be built and its optional dependency is missing."""
    if name == "passt":
        require_extra(owner, ["hear21passt", "timm"], "passt")


def build_backbone(name: str, weights: str | os.PathLike | None) -> nn.Module:
    """The full-size backbone ``name`` (official checkpoint: ``weights``, else the cache, else a verified download)."""
    return _classes()[name](weights=weights)


def embedding_dim(name: str, backbone: nn.Module | None) -> int:
    """Width of the rows ``name`` gives (the instance's, else the official model's)."""
    return int(getattr(backbone, "embed_dim", DEFAULT_DIMS[name]))


def sample_rate_of(name: str) -> int:
    """The model's input rate in Hz."""
    return int(_classes()[name].sample_rate)


def min_samples_of(name: str) -> int:
    """The shortest model input (samples at :func:`sample_rate_of`) after the protocol's loader (PaSST pads to 10 s)."""
    return int(getattr(_classes()[name], "min_samples", 1))


def model_input(
    name: str,
    clip: Tensor,
    sample_rate: int,
    spec: ProtocolSpec,
    *,
    resampler: str | None = None,
    duration: float | None = None,
    label: str = "preds[0]",
) -> Tensor | None:
    """One ``(C, T)`` clip -> the 1-D model input of backbone ``name`` under ``spec`` (``None``: a silent clip the
    protocol skips).

    PaSST: :func:`~torchmetrics_av.backbones.passt.passt_windows` ``kind="fd"`` (the single 10 s window, also KL's
    window under av-benchmark). PANNs / VGGish: :func:`~torchmetrics_av.preprocessing.protocol_waveform` at 16 kHz.

    Raises:
        ValueError: the loaded clip is shorter than the model accepts (the message names ``label``).
    """
    if name == "passt":
        from torchmetrics_av.backbones.passt import passt_windows

        windows = passt_windows(clip, sample_rate, spec, "fd", resampler=resampler, duration=duration)
        return None if windows is None else windows[0]
    from torchmetrics_av.preprocessing import protocol_waveform

    rate = sample_rate_of(name)
    x = protocol_waveform(clip, sample_rate, rate, spec, resampler=resampler, duration=duration)
    minimum = min_samples_of(name)
    if x is not None and x.shape[-1] < minimum:
        model = _classes()[name].__name__
        raise ValueError(
            f"`{label}` lasts {x.shape[-1] / rate:.4f} s at {rate} Hz; {model} needs at least {minimum / rate:.4f} s "
            f"({minimum} samples): drop or pad the clip"
        )
    return x


def embed_rows(name: str, backbone: nn.Module, waves: Sequence[Tensor], batch_size: int = 8) -> list[Tensor]:
    """Model inputs -> one ``(n_i, D)`` tensor of embedding rows per clip (``n_i = 1`` except VGGish's examples).

    Rows are in the backbone's dtype on its device, in the order of ``waves``.
    """
    if not waves:
        return []
    if name == "vggish":
        # VGGish batches examples, not clips: 64 examples ~ 8 clips of 8 s.
        return list(backbone.embed(list(waves)))
    emb, _ = backbone.embed(list(waves), batch_size)
    return list(emb.split(1))


def clip_logits(name: str, backbone: nn.Module, waves: Sequence[Tensor], batch_size: int = 8) -> Tensor:
    """Model inputs -> ``(N, num_classes)`` pre-sigmoid AudioSet logits, one row per clip (PaSST / PANNs)."""
    if name not in CLASSIFIER_BACKBONES:
        raise ValueError(f"backbone {name!r} has no class logits; use one of {CLASSIFIER_BACKBONES}")
    _, logits = backbone.embed(list(waves), batch_size)
    return logits


def prepare_set(
    name: str,
    clips: Sequence[Tensor],
    rates: Sequence[int],
    spec: ProtocolSpec,
    *,
    resampler: str | None,
    duration: float | None,
    side: str,
) -> tuple[list[Tensor], list[int]]:
    """Model inputs of one side of a set metric: ``(inputs, index in the batch of each)``; silent clips are left out.

    Every clip is prepared (and checked) before any forward, so a bad clip raises before the model runs.
    """
    waves, kept = [], []
    for i, (clip, sr) in enumerate(zip(clips, rates)):
        x = model_input(name, clip, sr, spec, resampler=resampler, duration=duration, label=f"{side}[{i}]")
        if x is not None:
            waves.append(x)
            kept.append(i)
    return waves, kept


def embed_set(
    name: str,
    backbone: nn.Module,
    waves: Sequence[Tensor],
    kept: Sequence[int],
    n_clips: int,
    ids: Tensor | None,
    *,
    batch_size: int,
    device: torch.device,
) -> dict[str, Tensor | int]:
    """Embedding rows of one side of a batch, with their ids and example indices, and its counts of dropped clips.

    Returns:
        ``{"emb": (n, D) float64, "ids": (n,) int64 (-1 without ids), "example": (n,) int64 (the row's 0.96 s
        example for VGGish, else 0), "silent": clips skipped as silent, "nonfinite": rows dropped}``. A clip with a
        NaN/Inf row is dropped whole (every row of it is counted in ``"nonfinite"``), so a clip's rows stay together.
    """
    per_clip = [r.to(device, torch.float64) for r in embed_rows(name, backbone, waves, batch_size)]
    width = per_clip[0].shape[1] if per_clip else embedding_dim(name, backbone)
    finite = [all_finite(r) for r in per_clip]
    good = [r for r, ok in zip(per_clip, finite) if ok]
    clip_ids = torch.full((n_clips,), -1, dtype=torch.int64, device=device) if ids is None else ids.to(device)
    picked = [clip_ids[k] for k, ok in zip(kept, finite) if ok]
    sizes = [r.shape[0] for r in good]
    return {
        "emb": torch.cat(good) if good else torch.zeros(0, width, dtype=torch.float64, device=device),
        "ids": torch.cat([p.expand(s) for p, s in zip(picked, sizes)]).to(torch.int64)
        if good
        else torch.zeros(0, dtype=torch.int64, device=device),
        "example": torch.cat([torch.arange(s, device=device) for s in sizes])
        if good
        else torch.zeros(0, dtype=torch.int64, device=device),
        "silent": n_clips - len(kept),
        "nonfinite": sum(r.shape[0] for r, ok in zip(per_clip, finite) if not ok),
    }


def embed_unpaired(
    metric: AudioBackboneMetric,
    preds: AudioInput | None,
    target: AudioInput | None,
    sample_rate: int | Sequence[int] | None,
    target_sample_rate: int | Sequence[int] | None,
    ids: Sequence[int] | Tensor | None,
    target_ids: Sequence[int] | Tensor | None,
) -> dict[str, dict[str, Tensor | int] | None]:
    """One batch of an unpaired set metric (FD, KAD): each given side's :func:`embed_set` rows and counts.

    Either side may be omitted (its entry is ``None``). Every input of both sides is checked (and loaded) before the
    model runs on either, so a bad clip raises before any forward. Rates default to the metric's ``sample_rate`` /
    ``target_sample_rate`` (:func:`~torchmetrics_av.base.resolve_rates`).

    Args:
        metric: the metric (its backbone, protocol, loader settings, ``batch_size`` and device are used).
        preds: generated audio, or ``None``.
        target: reference audio, or ``None``.
        sample_rate: rate(s) of ``preds`` in Hz, or ``None`` for the metric's.
        target_sample_rate: rate(s) of ``target`` in Hz, or ``None`` for the metric's.
        ids: optional non-negative int per ``preds`` clip.
        target_ids: optional non-negative int per ``target`` clip.

    Returns:
        ``{"preds": part or None, "target": part or None}``, each part as :func:`embed_set` returns it.

    Raises:
        ValueError: no side given, ids without their side, or a bad clip, rate or id (named).
    """
    if preds is None and target is None:
        raise ValueError("give `preds` (generated audio) and/or `target` (reference audio) to update()")
    if preds is None and ids is not None:
        raise ValueError("`ids` were given without `preds`; use `target_ids` for reference clips")
    if target is None and target_ids is not None:
        raise ValueError("`target_ids` were given without `target`")
    rate, target_rate = resolve_rates(sample_rate, target_sample_rate, metric.sample_rate, metric.target_sample_rate)
    name = metric.backbone_name
    prepared = {}
    for side, audio, r, rate_name, side_ids, ids_name in (
        ("preds", preds, rate, "sample_rate", ids, "ids"),
        ("target", target, target_rate, "target_sample_rate", target_ids, "target_ids"),
    ):
        if audio is None:
            continue
        clips = as_clip_list(audio, side)
        rates = sample_rates(r, len(clips), rate_name)
        id_tensor = None if side_ids is None else metric._ids_tensor(side_ids, len(clips), ids_name)
        waves, kept = prepare_set(
            name, clips, rates, metric.spec, resampler=metric.resampler, duration=metric.duration, side=side
        )
        prepared[side] = (waves, kept, len(clips), id_tensor)
    return {
        side: embed_set(name, metric.backbone, *prepared[side], batch_size=metric.batch_size, device=metric.device)
        if side in prepared
        else None
        for side in SIDES
    }


class AudioBackboneMetric(BackboneMetric):
    """Base of the metrics on an :data:`AUDIO_BACKBONES` model (FD, KAD, KL, IS): one backbone and loader rule.

    The constructor resolves ``backbone=`` (:func:`resolve_backbone`), fails at once when the named backbone's
    optional dependency is missing, and keeps the name in :attr:`backbone_name`; the model is built on first use
    (:func:`build_backbone` from ``weights``). :meth:`_set_loader` checks and stores the loader settings the
    subclass takes (``duration``, ``resampler``).

    Args:
        backbone: a name of ``allowed`` or an instance (see :func:`resolve_backbone`).
        allowed: the backbone names the subclass accepts.
        weights: local path of the official checkpoint when ``backbone`` is a name.
        protocol: a name of :data:`~torchmetrics_av.protocols.PROTOCOLS`.
        kwargs: forwarded to :class:`~torchmetrics_av.base.BackboneMetric`.

    Example:
        >>> from torchmetrics_av import InceptionScore
        >>> from torchmetrics_av.testing import tiny_backbone
        >>> isc = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=tiny_backbone("panns"))
        >>> isinstance(isc, AudioBackboneMetric), isc.backbone_name, isc.duration
        (True, 'panns', 8.0)
    """

    # Set by the constructor and by `_set_loader`.
    backbone_name: str
    duration: float | None
    resampler: Resampler | None

    def __init__(
        self,
        backbone: str | nn.Module,
        allowed: Sequence[str],
        weights: str | os.PathLike | None = None,
        protocol: str = "fastvideo",
        **kwargs: Any,
    ) -> None:
        name, instance = resolve_backbone(backbone, allowed, type(self).__name__)
        super().__init__(backbone=instance, weights=weights, protocol=protocol, **kwargs)
        if instance is None:
            require_backbone_extra(name, type(self).__name__)
        self.backbone_name = name

    def _build_backbone(self) -> nn.Module:
        return build_backbone(self.backbone_name, self.weights)

    def _held_backbone(self) -> nn.Module | None:
        """The backbone held now (in the constructor: the injected instance, or ``None``), never building one."""
        return self.__dict__["_backbone"]

    def _set_loader(self, duration: float | None, audio_length: float | None, resampler: Resampler | None) -> None:
        """Check and store ``duration`` (its deprecated alias ``audio_length``) and the ``resampler`` override.

        The shortest accepted ``duration`` is the model's shortest input (PaSST pads to 10 s: no minimum).

        Raises:
            ValueError: a ``duration`` the protocol does not take or the model cannot use, an unknown resampler.
        """
        name = self.backbone_name
        minimum = 0.0 if name == "passt" else min_samples_of(name) / sample_rate_of(name)
        self.duration = self.spec.resolve_duration(duration, audio_length, minimum=minimum)
        if resampler is not None and resampler not in RESAMPLERS:
            raise ValueError(f"`resampler` must be one of {RESAMPLERS} or None, got {resampler!r}")
        self.resampler = resampler


class UnpairedSetMetric(AudioBackboneMetric):
    """Base of the unpaired set metrics (FD, KAD): per side, kept embedding rows with their ids and example index.

    A subclass declares, per side of :data:`SIDES`, the sample states ``<side>_rows`` (float64 ``(n, D)``),
    ``<side>_row_ids`` and ``<side>_row_example`` (int64), and sets ``reset_real_features``. This class reads them
    back de-duplicated (:meth:`per_sample`), draws the bootstrap by clip per side, and keeps the reference side over
    ``reset()`` when asked.

    Example:
        >>> import torch
        >>> from torchmetrics_av import KernelAudioDistance
        >>> from torchmetrics_av.testing import tiny_backbone
        >>> kad = KernelAudioDistance(sample_rate=16000, protocol="av-benchmark", backbone=tiny_backbone("panns"),
        ...                           reset_real_features=False)
        >>> kad.update(preds=torch.rand(2, 8000) - 0.5, target=torch.rand(3, 8000) - 0.5)
        >>> kad.reset()  # the reference rows stay
        >>> {k: tuple(v.shape) for k, v in kad.per_sample().items() if k.endswith("_embeddings")}
        {'preds_embeddings': (0, 32), 'target_embeddings': (3, 32)}
    """

    reset_real_features: bool

    def _side_rows(
        self, side: str, parts: tuple[Tensor, Tensor, Tensor] | None = None
    ) -> tuple[dict[str, Tensor], int]:
        """One side's rows, repeated clips dropped: ``({"<side>_ids", "<side>_example", "<side>_embeddings"}, rows
        dropped)``, from ``parts`` (ids, example, embeddings) or else from the side's states.
        """
        if parts is None:
            parts = tuple(self._cat(f"{side}_{k}") for k in ("row_ids", "row_example", "rows"))
        ids, example, (emb,), dropped = dedup_rows(parts[0], parts[1], parts[2])
        return {f"{side}_ids": ids, f"{side}_example": example, f"{side}_embeddings": emb}, dropped

    def per_sample(self) -> dict[str, Tensor]:
        """Every rank's kept rows per side, repeated clips dropped, sorted by id (rows without id after, in arrival
        order).

        Returns:
            ``preds_ids``, ``preds_example``, ``preds_embeddings`` and the same for ``target``.
        """
        with self._synced():
            out: dict[str, Tensor] = {}
            for side in SIDES:
                out.update(self._side_rows(side)[0])
        return out

    def _bootstrap_tables(self, rows: dict[str, Tensor]) -> list[tuple[tuple[str, ...], Tensor | None]]:
        # A clip's rows (VGGish's examples) are drawn together; the generated set first, then the reference set.
        return [
            ((f"{side}_ids", f"{side}_example", f"{side}_embeddings"), clip_groups(rows[f"{side}_example"]))
            for side in SIDES
        ]

    def reset(self) -> None:
        """Clear the generated side, and the reference side too when ``reset_real_features`` is True."""
        if self.reset_real_features:
            super().reset()
            return
        # reset() clears list states in place, so keep copies of the lists, not references to them.
        keep = {k: copy.copy(getattr(self, k)) for k in self._defaults if k.startswith("target_")}
        super().reset()
        for k, v in keep.items():
            setattr(self, k, v)


class DurationAlias:
    """Mixin of the metrics that took ``audio_length=`` (FD, KAD, KL): its read-only attribute, now ``duration``.

    Example:
        >>> from torchmetrics_av import KLDivergence
        >>> from torchmetrics_av.testing import tiny_backbone
        >>> KLDivergence(protocol="av-benchmark", backbone=tiny_backbone("panns")).audio_length
        8.0
    """

    duration: float | None

    @property
    def audio_length(self) -> float | None:
        """Deprecated name of :attr:`duration`."""
        return self.duration
