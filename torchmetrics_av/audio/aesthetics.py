"""Audiobox Aesthetics: Meta's reference-free CE / CU / PC / PQ scores of generated audio."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.backbones.audiobox import AUDIOBOX_HOP_SAMPLES, AUDIOBOX_SAMPLE_RATE, AXES, Audiobox
from torchmetrics_av.base import BackboneMetric, check_protocol, unique_sample_order
from torchmetrics_av.preprocessing import AudioInput, as_clip_list, resample, sample_rates, to_mono


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

    As output of ``compute``: ``{"CE", "CU", "PC", "PQ"}`` -> float64 scalar means over all clips. ``details``:
    ``scores`` (N, 4) float64 per clip in ``("CE", "CU", "PC", "PQ")`` order (rank 0's clips first under DDP), the
    same columns as ``CE``/``CU``/``PC``/``PQ`` (N,), ``duration_s`` (N,) at 16 kHz, ``num_windows`` (N,) and
    ``n_samples``, ``n_duplicates_dropped``, ``sample_id`` (-1 where no ids were given). With ``ids``, per-clip values
    are sorted by id.

    Args:
        sample_rate: rate of ``preds`` in Hz (per-call override in ``update``).
        protocol: ``"fastvideo"`` or ``"av-benchmark"`` (same computation, see above).
        backbone: an :class:`~torchmetrics_av.backbones.Audiobox` instance to share.
        weights: local checkpoint (a ``from_pretrained`` folder, ``model.safetensors`` or the Lightning-style
            ``checkpoint.pt``) when ``backbone`` is not given.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

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
        >>> aes.details["scores"].shape
        torch.Size([2, 4])
    """

    higher_is_better = True

    def __init__(
        self,
        sample_rate: int | Sequence[int] | None = None,
        protocol: str = "fastvideo",
        backbone: nn.Module | None = None,
        weights: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone=backbone, weights=weights, **kwargs)
        self.protocol = check_protocol(protocol)
        self.sample_rate = sample_rate
        # Per-sample states only (means are taken at compute time), so that `ids` can drop DistributedSampler repeats.
        self.add_sample_state("sample_scores", (len(AXES),))
        self.add_sample_state("sample_length", (), torch.int64)
        self.add_sample_state("sample_id", (), torch.int64)

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
    def update(
        self,
        preds: AudioInput,
        sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Score every clip of the batch (all windows in shared model calls).

        ``ids`` (optional, one non-negative int per clip, e.g. dataset indices) lets ``compute`` drop the repeats that
        ``DistributedSampler`` pads ranks with; per-clip details are then sorted by id.
        """
        waves = self.waveforms(preds, sample_rate)
        sample_id = self._ids_tensor(ids, len(waves))
        scores = self.backbone(waves).to(self.device, torch.float64)
        self.sample_scores.append(scores)
        self.sample_length.append(torch.tensor([w.numel() for w in waves], dtype=torch.int64, device=self.device))
        self.sample_id.append(sample_id)

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        """Update with the batch and return its mean scores (the model runs once per batch)."""
        before = len(self._cat("sample_scores"))
        self.update(*args, **kwargs)
        mean = self._cat("sample_scores")[before:].mean(dim=0)
        return dict(zip(AXES, mean.unbind()))

    def compute(self) -> dict[str, Tensor]:
        """Mean CE, CU, PC, PQ over all clips on all ranks (float64 scalars); repeats of an id counted once."""
        ids = self._cat("sample_id")
        order = unique_sample_order(ids)
        if order.numel() == 0:
            raise ValueError("no clips to score; call update() with audio first")
        scores = self._cat("sample_scores")[order]
        length = self._cat("sample_length")[order]
        self._details = {
            "scores": scores,
            **dict(zip(AXES, scores.unbind(dim=1))),
            "duration_s": length.to(torch.float64) / AUDIOBOX_SAMPLE_RATE,
            "num_windows": -(-length // AUDIOBOX_HOP_SAMPLES),
            "n_samples": int(order.numel()),
            "n_duplicates_dropped": int(ids.numel() - order.numel()),
            "sample_id": ids[order],
        }
        return dict(zip(AXES, scores.mean(dim=0).unbind()))
