"""Audiobox Aesthetics: Meta's reference-free CE / CU / PC / PQ scores of generated audio."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.backbones.audiobox import AUDIOBOX_HOP_SAMPLES, AUDIOBOX_SAMPLE_RATE, AXES, Audiobox
from torchmetrics_av.base import BackboneMetric, Rows, require_extra
from torchmetrics_av.preprocessing import AudioInput, as_clip_list, check_sample_rate, resample, sample_rates, to_mono


class AudioboxAesthetics(BackboneMetric):
    r"""Mean Audiobox Aesthetics scores of generated audio, four axes on a ~1-10 scale.

    CE is content enjoyment, CU content usefulness, PC production complexity and PQ production quality.

    .. math::
        s_{i,a} = \frac{\sum_w \ell_w \,(\hat y_{w,a}\,\sigma_a + \mu_a)}{\sum_w \ell_w}, \qquad
        \text{score}_a = \frac{1}{N}\sum_i s_{i,a}

    over the 10 s windows ``w`` of clip ``i`` with valid lengths :math:`\ell_w`; :math:`\mu_a, \sigma_a` are the
    checkpoint's de-normalisation statistics. Higher is better for CE, CU and PQ; PC measures complexity, not
    quality. FastVideo reports PQ as its score; the Verse-Bench combination ``(CE + CU + PQ + 11 - PC) / 4`` is not
    computed.

    Pipeline (audiobox-aesthetics 0.0.4 ``AesPredictor.forward`` on a file, as FastVideo ``audio.audiobox_aesthetics``
    @ 2f3d4074 calls it): channel mean, ``torchaudio.functional.resample`` to 16 kHz, 10 s non-overlapping windows,
    the last one zero-padded and masked, length-weighted mean of the de-normalised window predictions. All windows of
    a batch go through the model together (results change by < 1e-6 with batch composition). ``protocol`` is accepted
    for a uniform API; av-benchmark has no aesthetics metric, so both protocols run this pipeline. Digital silence is
    scored like any audio (the reference does so).

    As input to ``update``: ``preds``: audio (``(B, T)``, ``(B, C, T)`` or a list of clips of any lengths);
    ``sample_rate``: Hz, one int or one per clip; ``ids``: optional dataset indices, so repeats padded in by
    ``DistributedSampler`` are counted once.

    As output of ``compute`` / ``forward``: ``{"CE", "CU", "PC", "PQ"}`` -> float64 scalar means over the clips.
    ``higher_is_better`` is ``None`` for the dict; per axis it is :attr:`higher_is_better_per_output` (PC is a
    complexity scale: ``None``). ``per_sample()`` (rank 0's clips first under DDP, sorted by id where ids were given):
    ``ids``, ``CE``, ``CU``, ``PC``, ``PQ`` (float64), ``duration_s`` (float64, at 16 kHz) and ``num_windows``.
    ``details``: those and the counts of :mod:`torchmetrics_av.base`; ``scores`` ((N, 4) in ``AXES`` order) and
    ``sample_id`` are deprecated.

    Args:
        sample_rate: rate of ``preds`` in Hz (per-call override in ``update``).
        protocol: ``"fastvideo"`` or ``"av-benchmark"`` (same computation, see above).
        backbone: an :class:`~torchmetrics_av.backbones.Audiobox` instance to share.
        weights: local checkpoint (a ``from_pretrained`` folder, ``model.safetensors`` or the Lightning-style
            ``checkpoint.pt``) when ``backbone`` is not given.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Raises:
        ValueError: a bad argument (named in the message).
        ModuleNotFoundError: ``audiobox_aesthetics`` is missing and no ``backbone`` was given.

    Example:
        >>> import torch
        >>> from torchmetrics_av import AudioboxAesthetics
        >>> from torchmetrics_av.backbones import Audiobox
        >>> tiny_encoder = dict(encoder_layers=1, encoder_embed_dim=32, encoder_ffn_embed_dim=32,
        ...     encoder_attention_heads=2, conv_feature_layers="[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2",
        ...     conv_pos=4, conv_pos_groups=2)
        >>> net = Audiobox(pretrained=False, encoder_config=tiny_encoder, model_config={"nth_layer": 2})  # demo only
        >>> aes = AudioboxAesthetics(sample_rate=16000, backbone=net)
        >>> aes.update(torch.rand(2, 16000) - 0.5)
        >>> sorted(aes.compute())
        ['CE', 'CU', 'PC', 'PQ']
        >>> aes.per_sample()["PQ"].shape
        torch.Size([2])
    """

    higher_is_better = None
    # CE, CU, PQ are quality scales; PC (production complexity) is not "better" when higher.
    higher_is_better_per_output = {"CE": True, "CU": True, "PC": None, "PQ": True}

    def __init__(
        self,
        sample_rate: int | Sequence[int] | None = None,
        protocol: str = "fastvideo",
        backbone: nn.Module | None = None,
        weights: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone=backbone, weights=weights, protocol=protocol, **kwargs)
        if backbone is None:
            require_extra(type(self).__name__, ["audiobox_aesthetics"], "aesthetics")
        self.sample_rate = check_sample_rate(sample_rate, "sample_rate")
        axes = {axis: ((), torch.float64) for axis in AXES}
        self.add_rows({**axes, "duration_s": ((), torch.float64), "num_windows": ((), torch.int64)})

    def _build_backbone(self) -> nn.Module:
        return Audiobox(weights=self.weights)

    def waveforms(self, preds: AudioInput, sample_rate: int | Sequence[int] | None = None) -> list[Tensor]:
        """The 16 kHz mono waveforms the model scores.

        Channel mean first (``read_wav``), then ``torchaudio.functional.resample``
        (``AesPredictor.audio_resample_mono``).
        """
        clips = as_clip_list(preds, "preds")
        rates = sample_rates(sample_rate if sample_rate is not None else self.sample_rate, len(clips), "sample_rate")
        waves = [resample(to_mono(c), r, AUDIOBOX_SAMPLE_RATE, "torchaudio_functional") for c, r in zip(clips, rates)]
        for i, w in enumerate(waves):
            if w.numel() == 0:
                raise ValueError(f"`preds[{i}]` is empty after resampling to {AUDIOBOX_SAMPLE_RATE} Hz")
        return waves

    @torch.no_grad()
    def _score(
        self,
        preds: AudioInput,
        sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> Rows:
        waves = self.waveforms(preds, sample_rate)
        sample_id = self._ids_tensor(ids, len(waves))
        scores = self.backbone(waves).to(torch.float64)
        length = torch.tensor([w.numel() for w in waves], dtype=torch.int64)
        return {
            "ids": sample_id,
            **dict(zip(AXES, scores.unbind(dim=1))),
            "duration_s": length.to(torch.float64) / AUDIOBOX_SAMPLE_RATE,
            "num_windows": -(-length // AUDIOBOX_HOP_SAMPLES),
        }

    def update(
        self,
        preds: AudioInput,
        sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Score every clip of the batch (all windows in shared model calls; nothing is added if the batch raises).

        ``ids`` (optional, one non-negative int per clip, e.g. dataset indices) lets ``compute`` drop the repeats that
        ``DistributedSampler`` pads ranks with; per-clip values are then sorted by id.
        """
        self._add(self._score(preds, sample_rate, ids))

    def _reduce(self, rows: Rows) -> dict[str, Tensor]:
        return {axis: rows[axis].mean() for axis in AXES}

    def _deprecated_details(self, rows: Rows, kept: Tensor) -> dict[str, tuple[Any, str]]:
        return {"scores": (torch.stack([rows[a] for a in AXES], dim=1), "per_sample()['CE'] ... ['PQ']")}
