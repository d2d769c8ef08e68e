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
    >>> bool(-1.0 <= score <= 1.0), metric.per_sample()["score"].shape
    (True, torch.Size([2]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from torchmetrics_av.backbones.clap import CLAP, COSINE_EPS, DEFAULT_BATCH_SIZE, DEFAULT_CROP_SEED, clap_waveform
from torchmetrics_av.base import BackboneMetric, Rows, require_extra
from torchmetrics_av.preprocessing import (
    AudioInput,
    as_clip_list,
    as_text_list,
    check_positive_int,
    check_sample_rate,
    sample_rates,
)
from torchmetrics_av.protocols import ProtocolName


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
      48 kHz, first ``duration`` = 8 s, repeat-pad to 10 s, Slaney mel. Text: padded/truncated to 77 tokens, laion's
      RoBERTa (LayerNorm eps 1e-5).

    Cosine: ``F.cosine_similarity(audio, text, eps=1e-8)`` per pair, averaged in float64.

    Silence policy: under ``"fastvideo"`` a clip that is all zeros (after resampling) cannot be peak-normalised
    (FastVideo returns NaN). It is **skipped and counted** (``details["n_skipped_silent"]``, its id in
    ``details["skipped_ids"]``), and the score is the mean over the other clips. Under ``"av-benchmark"`` silence is
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
        duration: av-benchmark truncation in seconds (default 8.0); an error under ``"fastvideo"``.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    ``update(preds, target, sample_rate=None, ids=None)``: ``target`` is a list of prompts, one per clip; ``ids`` are
    optional per-clip dataset indices: a clip whose id was already seen (e.g. a repeat that ``DistributedSampler``
    pads a rank with) is counted once, and per-clip values are then sorted by id.

    ``per_sample()``: ``ids``, ``score`` (float64 cosine per scored clip). ``details`` (after ``compute()``): those and
    the counts of :mod:`torchmetrics_av.base` (``n_samples`` = scored clips, ``n_skipped_silent``,
    ``n_duplicates_dropped``, ``skipped_ids``), ``protocol``. Deprecated: ``cosine``, ``sample_id``, ``scored``,
    ``n_scored`` (``n_samples`` now counts scored clips only, as in every metric).

    Raises:
        ValueError: a bad argument (named in the message), or a ``backbone`` built for another protocol.
        ModuleNotFoundError: ``transformers`` is missing.

    Example:
        >>> import torch
        >>> from torchmetrics_av.testing import tiny_backbone
        >>> metric = CLAPScore(sample_rate=48000, backbone=tiny_backbone("clap"))  # random weights: demo only
        >>> metric.update([torch.zeros(48000), torch.randn(2, 96000) * 0.1], ["a dog barks", "rain"])
        >>> _ = metric.compute()
        >>> metric.details["n_samples"], metric.details["n_skipped_silent"]
        (1, 1)
    """

    higher_is_better = True
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0
    _input_hint = "non-silent audio and prompts"

    def __init__(
        self,
        sample_rate: int | None = None,
        protocol: ProtocolName = "fastvideo",
        backbone: CLAP | None = None,
        weights: str | None = None,
        *,
        tokenizer: Any = None,
        crop_seed: int = DEFAULT_CROP_SEED,
        batch_size: int = DEFAULT_BATCH_SIZE,
        duration: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone=backbone, weights=weights, protocol=protocol, **kwargs)
        require_extra(type(self).__name__, ["transformers"], "clap")
        if backbone is not None:
            if not isinstance(backbone, CLAP):
                raise ValueError(f"`backbone` must be a torchmetrics_av.backbones.CLAP, got {type(backbone).__name__}")
            if backbone.spec != self.spec:
                raise ValueError(
                    f"`backbone` was built for protocol {backbone.protocol!r} but the metric uses {self.protocol!r}; "
                    f"build it with CLAP(protocol={self.protocol!r})"
                )
        if tokenizer is not None and not callable(tokenizer):
            raise ValueError(f"`tokenizer` must be a callable tokenizer (or ClapProcessor) or None, got {tokenizer!r}")
        if isinstance(crop_seed, bool) or not isinstance(crop_seed, int):
            raise ValueError(f"`crop_seed` must be an int, got {crop_seed!r}")
        self.sample_rate = check_sample_rate(sample_rate, "sample_rate")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.duration = self.spec.resolve_duration(duration)
        self.tokenizer = tokenizer
        self.crop_seed = int(crop_seed)
        if backbone is not None and backbone.crop_seed != self.crop_seed:
            raise ValueError(f"`backbone.crop_seed` is {backbone.crop_seed} but `crop_seed` is {crop_seed}")
        self.add_rows({"score": ((), torch.float64)})

    def _build_backbone(self) -> CLAP:
        return CLAP(weights=self.weights, protocol=self.protocol, crop_seed=self.crop_seed)

    @torch.no_grad()
    def _score(
        self,
        preds: AudioInput,
        target: Sequence[str],
        sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> Rows:
        clips = as_clip_list(preds, "preds")
        texts = as_text_list(target, "target", len(clips), allow_blank=False)
        rates = sample_rates(sample_rate if sample_rate is not None else self.sample_rate, len(clips), "sample_rate")
        sample_id = self._ids_tensor(ids, len(clips))
        waves = [clap_waveform(c, r, self.spec, self.duration) for c, r in zip(clips, rates)]
        kept = torch.tensor([w is not None for w in waves], dtype=torch.bool)
        keep = torch.nonzero(kept).flatten().tolist()
        if not keep:
            return {"ids": sample_id, "kept": kept, "score": torch.zeros(0, dtype=torch.float64)}
        bb = self.backbone
        # Every prompt is tokenised (and checked) so that an error names its index in `target`.
        token_ids, mask = bb.tokenize(texts, name="target", tokenizer=self.tokenizer)
        text_emb = bb.embed_text_ids(token_ids[keep], mask[keep])
        audio_emb = bb.embed_audio([waves[i] for i in keep], batch_size=self.batch_size)
        cosine = F.cosine_similarity(audio_emb, text_emb.to(audio_emb.device), dim=-1, eps=COSINE_EPS)
        return {"ids": sample_id, "kept": kept, "score": cosine.to(torch.float64)}

    def update(
        self,
        preds: AudioInput,
        target: Sequence[str],
        sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Score a batch of (clip, prompt) pairs (nothing is added if the batch raises).

        Args:
            preds: audio, ``(B, T)`` / ``(B, C, T)`` tensor or a list of ``(T,)`` / ``(C, T)`` clips, float in [-1, 1]
                or int16; any lengths and rates.
            target: ``B`` non-empty prompts (a list; a bare ``str`` is an error).
            sample_rate: rate(s) of ``preds`` in Hz; defaults to the constructor's ``sample_rate``.
            ids: optional non-negative int per clip (e.g. dataset indices); repeated ids are counted once.

        Raises:
            ValueError: bad audio, prompt count != clip count, an empty prompt, a missing sample rate, bad ``ids``,
                or (under ``"fastvideo"``) a prompt longer than 512 tokens.
        """
        self._add(self._score(preds, target, sample_rate, ids))

    def _reduce(self, rows: Rows) -> Tensor:
        return rows["score"].mean()

    def _deprecated_details(self, rows: Rows, kept: Tensor) -> dict[str, tuple[Any, str]]:
        return {
            "cosine": (rows["score"], "per_sample()['score']"),
            "scored": (kept, "details['skipped_ids'] / details['n_skipped_silent']"),
            "n_scored": (int(rows["ids"].numel()), "details['n_samples']"),
        }
