"""CLAP score: cosine similarity between CLAP embeddings of generated audio and its text prompt.

Example:
    >>> import torch
    >>> from torchmetrics_av import CLAPScore
    >>> from torchmetrics_av.backbones.clap import CLAP, small_clap_config
    >>> net = CLAP(pretrained=False, config=small_clap_config())     # tiny random model; use the default in practice
    >>> tok = lambda texts, **kw: {"input_ids": torch.tensor([[0, 31414, 232, 2]] * len(texts)),
    ...                            "attention_mask": torch.ones(len(texts), 4, dtype=torch.long)}
    >>> metric = CLAPScore(sample_rate=16000, backbone=net, tokenizer=tok)
    >>> metric.update(torch.randn(2, 16000) * 0.1, ["Hello world", "Hello world"])
    >>> score = metric.compute()
    >>> bool(-1.0 <= score <= 1.0), metric.details["cosine"].shape
    (True, torch.Size([2]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from torchmetrics_av.backbones.clap import CLAP, COSINE_EPS, DEFAULT_BATCH_SIZE, DEFAULT_CROP_SEED, clap_waveform
from torchmetrics_av.base import BackboneMetric, Protocol, check_protocol, unique_sample_order
from torchmetrics_av.preprocessing import AudioInput, as_clip_list, sample_rates


def _check_texts(target: Any, n: int) -> list[str]:
    if isinstance(target, str):
        target = [target]
    if not isinstance(target, Sequence) or not all(isinstance(t, str) for t in target):
        raise ValueError(f"`target` must be a list of prompt strings, one per clip, got {type(target).__name__}")
    if len(target) != n:
        raise ValueError(f"`target` has {len(target)} prompts for {n} audio clips in `preds`; give one per clip")
    for i, t in enumerate(target):
        if not t.strip():
            raise ValueError(f"`target[{i}]` is an empty prompt; every clip needs a non-empty text")
    return list(target)


class CLAPScore(BackboneMetric):
    r"""Text-audio CLAP score: the mean cosine between CLAP embeddings of each clip and of its prompt.

    The value is the mean over clips of :math:`\cos(a_i, t_i)` between the CLAP audio embedding of clip :math:`i` and
    the text embedding of its prompt (raw cosine in [-1, 1], **not** ×100; higher is better).

    Protocols (see :mod:`torchmetrics_av.backbones.clap` for the model side):

    * ``"fastvideo"`` (default; FastVideo ``audio.clap_score``): ``laion/clap-htsat-fused``. Audio: channel mean,
      soxr HQ resampling to 48 kHz (librosa's length rule), peak normalisation to -1 dBFS (float64), repeat-pad to
      10 s; every clip is treated as FastVideo's batch of one (``is_longer=True``; clips > 10 s get 3 crops seeded by
      ``crop_seed``, the same for every clip, so a clip's crops never depend on its batch or rank). Text: not
      padded or truncated (a prompt over 512 tokens is an error).
    * ``"av-benchmark"`` (MMAudio's ``LAION-CLAP-Score``): laion_clap HTSAT-base
      ``music_speech_audioset_epoch_15_esc_89.98.pt``. Audio: channel mean, DC removal, ``torchaudio`` resampling to
      48 kHz, first 8 s, repeat-pad to 10 s, Slaney mel. Text: padded/truncated to 77 tokens, laion's RoBERTa
      (LayerNorm eps 1e-5).

    Cosine: ``F.cosine_similarity(audio, text, eps=1e-8)`` per pair, summed in float64.

    Silence policy: under ``"fastvideo"`` a clip that is all zeros (after resampling) cannot be peak-normalised
    (FastVideo returns NaN). It is **skipped and counted** (``details["n_skipped_silent"]``,
    ``details["scored"]``), and the score is the mean over the other clips. Under ``"av-benchmark"`` silence is
    scored like any clip (its log-mel is the -100 dB floor).

    Args:
        sample_rate: rate in Hz of the audio given to ``update`` (one int; ``update(sample_rate=)`` overrides it, also
            per clip).
        protocol: ``"fastvideo"`` or ``"av-benchmark"``.
        backbone: a :class:`~torchmetrics_av.backbones.CLAP` with the same ``protocol`` (to share one loaded model).
        weights: local checkpoint for the backbone (``from_pretrained`` folder or official laion ``.pt``); see
            :class:`~torchmetrics_av.backbones.CLAP`.
        tokenizer: RoBERTa tokenizer or ``ClapProcessor`` (default: the backbone's).
        crop_seed: seed of the fusion crops for clips longer than 10 s (FastVideo goldens: 0).
        batch_size: clips per model forward.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    ``update(..., ids=)`` takes optional per-clip dataset indices: a clip whose id was already seen (e.g. a repeat
    that ``DistributedSampler`` pads a rank with) is counted once, and per-clip details are then sorted by id.

    Details (after ``compute()``, DDP-synced, samples in rank order unless ``ids`` sort them): ``cosine`` (float64,
    one per scored clip), ``sample_id`` (int64, one per scored clip, -1 where no ids were given), ``scored`` (bool,
    one per unique clip given to ``update``), ``n_samples``, ``n_scored``, ``n_skipped_silent``,
    ``n_duplicates_dropped``, ``protocol``.

    Example:
        >>> import torch
        >>> from torchmetrics_av.backbones.clap import CLAP, small_clap_config
        >>> net = CLAP(pretrained=False, config=small_clap_config())
        >>> tok = lambda texts, **kw: {"input_ids": torch.tensor([[0, 9, 2]] * len(texts)),
        ...                            "attention_mask": torch.ones(len(texts), 3, dtype=torch.long)}
        >>> metric = CLAPScore(sample_rate=48000, backbone=net, tokenizer=tok)
        >>> metric.update([torch.zeros(48000), torch.randn(2, 96000) * 0.1], ["a dog barks", "rain"])
        >>> _ = metric.compute()
        >>> metric.details["n_skipped_silent"], metric.details["scored"].tolist()
        (1, [False, True])
    """

    higher_is_better = True
    is_differentiable = False
    full_state_update = False
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        sample_rate: int | None = None,
        protocol: Protocol = "fastvideo",
        backbone: CLAP | None = None,
        weights: str | None = None,
        *,
        tokenizer: Any = None,
        crop_seed: int = DEFAULT_CROP_SEED,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **kwargs: Any,
    ) -> None:
        self.protocol = check_protocol(protocol)
        if backbone is not None:
            if not isinstance(backbone, CLAP):
                raise ValueError(f"`backbone` must be a torchmetrics_av.backbones.CLAP, got {type(backbone).__name__}")
            if backbone.protocol != protocol:
                raise ValueError(
                    f"`backbone` was built for protocol {backbone.protocol!r} but the metric uses {protocol!r}; "
                    f"build it with CLAP(protocol={protocol!r})"
                )
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        super().__init__(backbone=backbone, weights=weights, **kwargs)
        if sample_rate is not None:
            sample_rates(sample_rate, 1, "sample_rate")
        self.sample_rate = sample_rate
        self.tokenizer = tokenizer
        self.crop_seed = int(crop_seed)
        self.batch_size = int(batch_size)
        if backbone is not None and backbone.crop_seed != self.crop_seed:
            raise ValueError(f"`backbone.crop_seed` is {backbone.crop_seed} but `crop_seed` is {crop_seed}")
        # Per-clip states only (sums are taken at compute time), so that `ids` can drop DistributedSampler repeats.
        # A skipped (silent) clip holds cosine 0.0 and scored=False.
        self.add_sample_state("sample_cosine", (), torch.float64)
        self.add_sample_state("sample_scored", (), torch.bool)
        self.add_sample_state("sample_id", (), torch.int64)

    def _build_backbone(self) -> CLAP:
        return CLAP(weights=self.weights, protocol=self.protocol, crop_seed=self.crop_seed)

    def update(
        self,
        preds: AudioInput,
        target: Sequence[str],
        sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Score a batch of (clip, prompt) pairs.

        Args:
            preds: audio, ``(B, T)`` / ``(B, C, T)`` tensor or a list of ``(T,)`` / ``(C, T)`` clips, float in [-1, 1]
                or int16; any lengths and rates.
            target: ``B`` non-empty prompts.
            sample_rate: rate(s) of ``preds`` in Hz; defaults to the constructor's ``sample_rate``.
            ids: optional non-negative int per clip (e.g. dataset indices); repeated ids are counted once.

        Raises:
            ValueError: bad audio, prompt count != clip count, an empty prompt, a missing sample rate, bad ``ids``,
                or (under ``"fastvideo"``) a prompt longer than 512 tokens.
        """
        clips = as_clip_list(preds, "preds")
        texts = _check_texts(target, len(clips))
        rates = sample_rates(sample_rate if sample_rate is not None else self.sample_rate, len(clips), "sample_rate")
        sample_id = self._ids_tensor(ids, len(clips))
        waves = [clap_waveform(c, r, self.protocol) for c, r in zip(clips, rates)]
        scored = torch.tensor([w is not None for w in waves], dtype=torch.bool)
        keep = [i for i, w in enumerate(waves) if w is not None]
        cosine = torch.zeros(len(clips), dtype=torch.float64, device=self.device)
        if keep:
            bb = self.backbone
            with torch.no_grad():
                # Every prompt is tokenised (and checked) so that an error names its index in `target`.
                token_ids, mask = bb.tokenize(texts, name="target", tokenizer=self.tokenizer)
                text_emb = bb.embed_text_ids(token_ids[keep], mask[keep])
                audio_emb = bb.embed_audio([waves[i] for i in keep], batch_size=self.batch_size)
                kept = F.cosine_similarity(audio_emb, text_emb.to(audio_emb.device), dim=-1, eps=COSINE_EPS)
            cosine[keep] = kept.to(self.device, torch.float64)
        self.sample_cosine.append(cosine)
        self.sample_scored.append(scored.to(self.device))
        self.sample_id.append(sample_id)

    def compute(self) -> Tensor:
        """Mean cosine over scored clips (float64 scalar), repeats of an id counted once; fills :attr:`details`.

        Raises:
            ValueError: no clip was scored (no ``update`` yet, or every clip was silent under "fastvideo").
        """
        ids = self._cat("sample_id")
        order = unique_sample_order(ids)
        scored = self._cat("sample_scored")[order].bool()
        rows = order[scored]
        cosine = self._cat("sample_cosine")[rows]
        n_scored, n_skipped = int(rows.numel()), int((~scored).sum())
        self._details = {
            "cosine": cosine,
            "sample_id": ids[rows],
            "scored": scored,
            "n_samples": n_scored + n_skipped,
            "n_scored": n_scored,
            "n_skipped_silent": n_skipped,
            "n_duplicates_dropped": int(ids.numel() - order.numel()),
            "protocol": self.protocol,
        }
        if n_scored == 0:
            raise ValueError(
                f"CLAPScore has no scored clip ({n_skipped} silent clips skipped); call update() with non-silent audio"
            )
        return cosine.sum() / n_scored
