"""KL_PaSST: KL divergence between PaSST AudioSet class distributions of paired generated and reference clips."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.backbones.passt import PASST_NUM_CLASSES, PaSST, passt_windows
from torchmetrics_av.base import BackboneMetric, check_protocol, resolve_rates, unique_sample_order
from torchmetrics_av.functional.kl import kl_divergence_from_logits
from torchmetrics_av.preprocessing import AudioInput, Resampler, as_clip_list, sample_rates


class PaSSTKLDivergence(BackboneMetric):
    r"""Mean over pairs of KL(target ‖ preds) between softmax distributions of PaSST's 527 AudioSet logits (KL_PaSST).

    .. math::
        KL = \frac{1}{N}\sum_{i=1}^{N}\sum_{c=1}^{527} q^{t_i}_c\,(\log q^{t_i}_c - \log q^{p_i}_c),
        \quad q = \operatorname{softmax}(\text{logits})

    Lower is better. ``preds[i]`` is paired with ``target[i]``.

    Protocols (``protocol=``):

    * ``"fastvideo"`` (default, FastVideo ``audio.kl_divergence``): mono mean, soxr-HQ to 32 kHz, peak −1 dBFS, then
      stable-audio-metrics windows (10 s every 5 s; a tail of 1.5-10 s is zero-padded, a clip ≤ 1.5 s runs unpadded),
      logits averaged over windows (float32) before the softmax. A pair with a silent clip is skipped and counted.
    * ``"av-benchmark"``: the FD window (DC removal, ``torchaudio`` Resample, first ``audio_length`` = 8 s, padded
      to 10 s), one forward per clip; the mean over pairs equals av-benchmark's ``compute_kl`` (sum / N).

    KL is computed in float64 from float32 logits. The references' sigmoid variant
    Σ σ(t)(log σ(t) − log σ(p)) (not a Bernoulli KL; can be negative) is a detail.

    As input to ``update``: ``preds``, ``target``: paired audio batches of equal length (``(B, T)``, ``(B, C, T)`` or
    lists of clips); ``sample_rate`` / ``target_sample_rate``: Hz, one int or one per clip; ``ids``: optional
    dataset indices, so repeats padded in by ``DistributedSampler`` are counted once.

    As output of ``compute``: scalar float64 mean KL (softmax). ``forward`` returns the batch's mean (``None`` when
    every pair of the batch was skipped). ``details``: ``kl_softmax`` and ``kl_sigmoid`` per pair (N,),
    ``kl_sigmoid_mean``, ``n_pairs``, ``n_skipped_silent``, ``n_duplicates_dropped``, ``sample_id`` (per kept pair;
    -1 where no ids were given) and ``pair_kept`` (bool per unique pair seen, in the same order: which pairs the
    per-pair values belong to). With ``ids``, per-pair values are sorted by id.

    Args:
        sample_rate: rate of ``preds`` (and ``target`` unless ``target_sample_rate`` is given), in Hz.
        target_sample_rate: rate of ``target`` in Hz.
        protocol: ``"fastvideo"`` or ``"av-benchmark"``.
        backbone: a :class:`~torchmetrics_av.backbones.PaSST` instance to share.
        weights: local path of the official PaSST checkpoint when ``backbone`` is not given.
        audio_length: av-benchmark truncation in seconds (default 8.0).
        resampler: override the protocol's resampler.
        batch_size: most windows per PaSST forward.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch
        >>> from torchmetrics_av import PaSSTKLDivergence
        >>> from torchmetrics_av.backbones import PaSST
        >>> _ = torch.manual_seed(0)
        >>> tiny = PaSST(pretrained=False, embed_dim=16, depth=1, num_heads=2)  # random weights: demo only
        >>> kl = PaSSTKLDivergence(sample_rate=16000, backbone=tiny)
        >>> audio = torch.rand(2, 16000) - 0.5
        >>> kl.update(audio, audio)
        >>> float(kl.compute())
        0.0
    """

    higher_is_better = False
    plot_lower_bound = 0.0

    def __init__(
        self,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        protocol: str = "fastvideo",
        backbone: nn.Module | None = None,
        weights: str | os.PathLike | None = None,
        *,
        audio_length: float | None = None,
        resampler: Resampler | None = None,
        batch_size: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone=backbone, weights=weights, **kwargs)
        self.protocol = check_protocol(protocol)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}")
        self.sample_rate, self.target_sample_rate = sample_rate, target_sample_rate
        self.audio_length, self.resampler, self.batch_size = audio_length, resampler, batch_size
        # One entry per pair seen (0.0 and pair_kept=0 for a skipped pair), so that ids can drop duplicates.
        self.add_sample_state("kl_softmax")
        self.add_sample_state("kl_sigmoid")
        self.add_sample_state("pair_kept", dtype=torch.int64)
        self.add_sample_state("sample_id", dtype=torch.int64)

    def _build_backbone(self) -> nn.Module:
        return PaSST(weights=self.weights)

    def _windows(self, audio: AudioInput, name: str, rate: Any, rate_name: str) -> list[list[Tensor] | None]:
        clips = as_clip_list(audio, name)
        rates = sample_rates(rate, len(clips), rate_name)
        return [
            passt_windows(c, r, self.protocol, "kl", resampler=self.resampler, audio_length=self.audio_length)
            for c, r in zip(clips, rates)
        ]

    def clip_logits(self, per_clip_windows: list[list[Tensor]]) -> Tensor:
        """Window-mean logits ``(N, 527)`` (float32, FastVideo's ``stack(...).mean(0)``), all windows in one pass."""
        flat = [w for windows in per_clip_windows for w in windows]
        _, logits = self.backbone.embed(flat, self.batch_size)
        out, start = [], 0
        for windows in per_clip_windows:
            out.append(logits[start : start + len(windows)].mean(dim=0))
            start += len(windows)
        return torch.stack(out) if out else torch.zeros(0, PASST_NUM_CLASSES, device=logits.device)

    @torch.no_grad()
    def update(
        self,
        preds: AudioInput,
        target: AudioInput,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Add KL(target[i] ‖ preds[i]) for every pair of the batch.

        ``ids`` (optional, one non-negative int per pair, e.g. dataset indices) lets ``compute`` drop the repeats
        that ``DistributedSampler`` pads ranks with; per-pair details are then sorted by id.
        """
        rate, target_rate = resolve_rates(sample_rate, target_sample_rate, self.sample_rate, self.target_sample_rate)
        p_windows = self._windows(preds, "preds", rate, "sample_rate")
        t_windows = self._windows(target, "target", target_rate, "target_sample_rate")
        if len(p_windows) != len(t_windows):
            raise ValueError(f"`preds` has {len(p_windows)} clips and `target` {len(t_windows)}; KL needs paired clips")
        n = len(p_windows)
        self.sample_id.append(self._ids_tensor(ids, n))
        keep = [i for i, (p, t) in enumerate(zip(p_windows, t_windows)) if p is not None and t is not None]
        kept = torch.zeros(n, dtype=torch.int64, device=self.device)
        kept[keep] = 1
        self.pair_kept.append(kept)
        soft = torch.zeros(n, dtype=torch.float64, device=self.device)
        sig = torch.zeros(n, dtype=torch.float64, device=self.device)
        if keep:
            logits = self.clip_logits([p_windows[i] for i in keep] + [t_windows[i] for i in keep])
            p_logits, t_logits = logits[: len(keep)], logits[len(keep) :]
            soft[keep] = kl_divergence_from_logits(p_logits, t_logits, "softmax").to(self.device)
            sig[keep] = kl_divergence_from_logits(p_logits, t_logits, "sigmoid").to(self.device)
        self.kl_softmax.append(soft)
        self.kl_sigmoid.append(sig)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor | None:
        """Update with the batch and return its mean KL (``None`` if every pair of the batch was skipped).

        Unlike torchmetrics' default ``forward``, this never recomputes from a reset state, so a batch of skipped
        pairs cannot corrupt the accumulated state.
        """
        before = len(self._cat("kl_softmax"))
        self.update(*args, **kwargs)
        values = self._cat("kl_softmax")[before:]
        kept = self._cat("pair_kept")[before:].bool()
        return values[kept].mean() if bool(kept.any()) else None

    def compute(self) -> Tensor:
        """Mean KL(target ‖ preds) over all pairs on all ranks (float64 scalar), repeats of an id counted once."""
        order = unique_sample_order(self._cat("sample_id"))
        kept = self._cat("pair_kept")[order].bool()
        rows = order[kept]
        if rows.numel() == 0:
            raise ValueError(
                f"no valid pairs to average ({int((~kept).sum())} skipped as silent); call update() with audio first"
            )
        soft, sig = self._cat("kl_softmax")[rows], self._cat("kl_sigmoid")[rows]
        self._details = {
            "kl_softmax": soft,
            "kl_sigmoid": sig,
            "kl_sigmoid_mean": sig.mean(),
            "n_pairs": int(rows.numel()),
            "n_skipped_silent": int((~kept).sum()),
            "n_duplicates_dropped": int(self._cat("sample_id").numel() - order.numel()),
            "sample_id": self._cat("sample_id")[rows],
            "pair_kept": kept,
        }
        return soft.mean()
