"""KL divergence between AudioSet class distributions of paired generated and reference clips (KL_PaSST, KL_PANNs)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.audio.embedding import (
    CLASSIFIER_BACKBONES,
    AudioBackboneMetric,
    DurationAlias,
    clip_logits,
    model_input,
)
from torchmetrics_av.backbones.passt import PASST_MIN_SAMPLES, PASST_NUM_CLASSES, PASST_SAMPLE_RATE, passt_windows
from torchmetrics_av.base import Rows, resolve_rates
from torchmetrics_av.functional.kl import kl_divergence_from_logits
from torchmetrics_av.preprocessing import (
    AudioInput,
    Resampler,
    as_clip_list,
    check_positive_int,
    check_sample_rate,
    sample_rates,
)


class KLDivergence(DurationAlias, AudioBackboneMetric):
    r"""Mean over pairs of KL(target ‖ preds) between softmax distributions of 527 AudioSet logits (KL_PaSST, KL_PANNs).

    .. math::
        KL = \frac{1}{N}\sum_{i=1}^{N}\sum_{c=1}^{527} q^{t_i}_c\,(\log q^{t_i}_c - \log q^{p_i}_c),
        \quad q = \operatorname{softmax}(\text{logits})

    Lower is better. ``preds[i]`` is paired with ``target[i]``. The classifier is ``backbone="passt"`` (default) or
    ``"panns"`` (Cnn14 16 kHz), or an instance of :class:`~torchmetrics_av.backbones.PaSST` /
    :class:`~torchmetrics_av.backbones.PANNs` (to share one loaded model with FD and IS).

    Protocols (``protocol=``), PaSST:

    * ``"fastvideo"`` (default, FastVideo ``audio.kl_divergence``): mono mean, soxr-HQ to 32 kHz, peak −1 dBFS, then
      stable-audio-metrics windows (10 s every 5 s; a tail of 1.5-10 s is zero-padded, a clip ≤ 1.5 s runs unpadded,
      and must last at least 0.15 s, PaSST's 16 mel frames), logits averaged over windows (float32) before the
      softmax. A pair with a silent clip is skipped and counted.
    * ``"av-benchmark"``: the FD window (DC removal, ``torchaudio`` Resample, first ``duration`` = 8 s, padded to
      10 s), one forward per clip; the mean over pairs equals av-benchmark's ``compute_kl`` (sum / N).

    PANNs (KL-PANNS-softmax): one forward per clip on its whole model input, never padded (at least 0.31 s).
    ``"av-benchmark"``: av-benchmark's ``AudioDataset(sr=16000)`` (mono mean, DC removal over the whole clip,
    ``torchaudio`` Resample, first ``duration`` = 8 s); ``"fastvideo"``: its loader (soxr HQ, peak −1 dBFS, whole
    clip; FastVideo itself has no PANNs metric). The mean over pairs equals av-benchmark's ``compute_kl``.

    KL is computed in float64 from float32 logits. The references' sigmoid variant
    Σ σ(t)(log σ(t) − log σ(p)) (not a Bernoulli KL; can be negative) is a detail.

    As input to ``update``: ``preds``, ``target``: paired audio batches of equal length (``(B, T)``, ``(B, C, T)`` or
    lists of clips); ``sample_rate`` / ``target_sample_rate``: Hz, one int or one per clip; ``ids``: optional
    dataset indices, so repeats padded in by ``DistributedSampler`` are counted once.

    As output of ``compute``: scalar float64 mean KL (softmax); ``forward`` returns the batch's mean (``None`` when
    every pair of the batch was skipped). ``per_sample()``: ``ids``, ``kl_softmax``, ``kl_sigmoid`` (one per kept
    pair). ``details``: those, ``kl_sigmoid_mean`` and the counts of :mod:`torchmetrics_av.base` (``n_samples``,
    ``n_skipped_silent``, ``n_duplicates_dropped``, ``skipped_ids``); ``n_pairs``, ``sample_id`` and ``pair_kept``
    are deprecated. ``bootstrap()`` resamples pairs.

    Args:
        sample_rate: rate of ``preds`` (and ``target`` unless ``target_sample_rate`` is given), in Hz.
        target_sample_rate: rate of ``target`` in Hz.
        protocol: ``"fastvideo"`` or ``"av-benchmark"``.
        backbone: ``"passt"``, ``"panns"``, or a :class:`~torchmetrics_av.backbones.PaSST` /
            :class:`~torchmetrics_av.backbones.PANNs` instance to share.
        weights: local path of the official checkpoint when ``backbone`` is a name.
        duration: av-benchmark truncation in seconds (default 8.0); an error under ``"fastvideo"`` (whole clips).
        resampler: override the protocol's resampler.
        batch_size: most windows (clips) per forward.
        audio_length: deprecated alias of ``duration``.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Raises:
        ValueError: a bad argument (named in the message), e.g. a VGGish backbone (it has no class logits).
        ModuleNotFoundError: ``hear21passt`` is missing and the PaSST backbone must be built.

    Example:
        >>> import torch
        >>> from torchmetrics_av import KLDivergence
        >>> from torchmetrics_av.testing import tiny_backbone
        >>> kl = KLDivergence(sample_rate=16000, protocol="av-benchmark", backbone=tiny_backbone("panns"))  # demo
        >>> preds, target = torch.rand(2, 16000) - 0.5, torch.rand(2, 16000) - 0.5
        >>> kl.update(preds, target)
        >>> bool(kl.compute() >= 0), kl.details["n_samples"]
        (True, 2)
    """

    higher_is_better = False
    plot_lower_bound = 0.0
    _input_hint = "paired audio"
    # Backbone names this class accepts (PaSSTKLDivergence narrows it to PaSST).
    _backbones: tuple[str, ...] = CLASSIFIER_BACKBONES

    def __init__(
        self,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        protocol: str = "fastvideo",
        backbone: str | nn.Module = "passt",
        weights: str | os.PathLike | None = None,
        *,
        duration: float | None = None,
        resampler: Resampler | None = None,
        batch_size: int = 8,
        audio_length: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, self._backbones, weights, protocol, **kwargs)
        self.sample_rate = check_sample_rate(sample_rate, "sample_rate")
        self.target_sample_rate = check_sample_rate(target_sample_rate, "target_sample_rate")
        self._set_loader(duration, audio_length, resampler)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.add_rows({"kl_softmax": ((), torch.float64), "kl_sigmoid": ((), torch.float64)})

    def _windows(self, audio: AudioInput, name: str, rate: Any, rate_name: str) -> list[list[Tensor] | None]:
        clips = as_clip_list(audio, name)
        rates = sample_rates(rate, len(clips), rate_name)
        out: list[list[Tensor] | None] = []
        for i, (clip, sr) in enumerate(zip(clips, rates)):
            if self.backbone_name != "passt":
                x = model_input(
                    self.backbone_name,
                    clip,
                    sr,
                    self.spec,
                    resampler=self.resampler,
                    duration=self.duration,
                    label=f"{name}[{i}]",
                )
                out.append(None if x is None else [x])
                continue
            windows = passt_windows(clip, sr, self.spec, "kl", resampler=self.resampler, duration=self.duration)
            if windows is not None and windows[0].shape[-1] < PASST_MIN_SAMPLES:
                raise ValueError(
                    f"`{name}[{i}]` lasts {windows[0].shape[-1] / PASST_SAMPLE_RATE:.4f} s; PaSST needs at least "
                    f"{PASST_MIN_SAMPLES / PASST_SAMPLE_RATE:.4f} s ({PASST_MIN_SAMPLES} samples at 32 kHz, 16 mel "
                    "frames): drop or pad the clip"
                )
            out.append(windows)
        return out

    def clip_logits(self, per_clip_windows: list[list[Tensor]]) -> Tensor:
        """Window-mean logits ``(N, 527)`` (float32, FastVideo's ``stack(...).mean(0)``), all windows in one pass.

        PANNs clips have one window (their model input), so this is their logits.
        """
        flat = [w for windows in per_clip_windows for w in windows]
        if not flat:
            return torch.zeros(0, PASST_NUM_CLASSES, device=self.device)
        logits = clip_logits(self.backbone_name, self.backbone, flat, self.batch_size)
        out, start = [], 0
        for windows in per_clip_windows:
            out.append(logits[start : start + len(windows)].mean(dim=0))
            start += len(windows)
        return torch.stack(out)

    @torch.no_grad()
    def _score(
        self,
        preds: AudioInput,
        target: AudioInput,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> Rows:
        rate, target_rate = resolve_rates(sample_rate, target_sample_rate, self.sample_rate, self.target_sample_rate)
        p_windows = self._windows(preds, "preds", rate, "sample_rate")
        t_windows = self._windows(target, "target", target_rate, "target_sample_rate")
        if len(p_windows) != len(t_windows):
            raise ValueError(f"`preds` has {len(p_windows)} clips and `target` {len(t_windows)}; KL needs paired clips")
        sample_id = self._ids_tensor(ids, len(p_windows))
        kept = torch.tensor([p is not None and t is not None for p, t in zip(p_windows, t_windows)], dtype=torch.bool)
        keep = torch.nonzero(kept).flatten().tolist()
        if not keep:
            empty = torch.zeros(0, dtype=torch.float64)
            return {"ids": sample_id, "kept": kept, "kl_softmax": empty, "kl_sigmoid": empty}
        logits = self.clip_logits([p_windows[i] for i in keep] + [t_windows[i] for i in keep])
        p_logits, t_logits = logits[: len(keep)], logits[len(keep) :]
        return {
            "ids": sample_id,
            "kept": kept,
            "kl_softmax": kl_divergence_from_logits(p_logits, t_logits, "softmax"),
            "kl_sigmoid": kl_divergence_from_logits(p_logits, t_logits, "sigmoid"),
        }

    def update(
        self,
        preds: AudioInput,
        target: AudioInput,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Add KL(target[i] ‖ preds[i]) for every pair of the batch (nothing is added if the batch raises).

        ``ids`` (optional, one non-negative int per pair, e.g. dataset indices) lets ``compute`` drop the repeats
        that ``DistributedSampler`` pads ranks with; per-pair values are then sorted by id.
        """
        self._add(self._score(preds, target, sample_rate, target_sample_rate, ids))

    def _reduce(self, rows: Rows) -> Tensor:
        return rows["kl_softmax"].mean()

    def _summary(self, rows: Rows) -> dict[str, Any]:
        return {"kl_sigmoid_mean": rows["kl_sigmoid"].mean()}

    def _deprecated_details(self, rows: Rows, kept: Tensor) -> dict[str, tuple[Any, str]]:
        return {
            "n_pairs": (int(rows["ids"].numel()), "details['n_samples']"),
            "pair_kept": (kept, "details['skipped_ids'] / details['n_skipped_silent']"),
        }


class PaSSTKLDivergence(KLDivergence):
    r"""KL_PaSST: :class:`KLDivergence` with the PaSST classifier (the default), under its historical name.

    Same arguments, protocols, outputs and numbers as ``KLDivergence(backbone="passt")``; ``backbone`` is a
    :class:`~torchmetrics_av.backbones.PaSST` instance to share, or ``None`` to build one.

    Example:
        >>> import torch
        >>> from torchmetrics_av import PaSSTKLDivergence
        >>> from torchmetrics_av.testing import tiny_backbone
        >>> kl = PaSSTKLDivergence(sample_rate=16000, backbone=tiny_backbone("passt"))  # random weights: demo only
        >>> audio = torch.rand(2, 16000) - 0.5
        >>> kl.update(audio, audio)
        >>> float(kl.compute())
        0.0
    """

    _backbones = ("passt",)

    def __init__(
        self,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        protocol: str = "fastvideo",
        backbone: nn.Module | None = None,
        weights: str | os.PathLike | None = None,
        *,
        duration: float | None = None,
        resampler: Resampler | None = None,
        batch_size: int = 8,
        audio_length: float | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(backbone, str):
            raise ValueError(
                f"`backbone` must be a torch.nn.Module (a PaSST instance) or None, got {backbone!r}; "
                "KLDivergence(backbone=...) chooses a backbone by name"
            )
        super().__init__(
            sample_rate,
            target_sample_rate,
            protocol,
            "passt" if backbone is None else backbone,
            weights,
            duration=duration,
            resampler=resampler,
            batch_size=batch_size,
            audio_length=audio_length,
            **kwargs,
        )
