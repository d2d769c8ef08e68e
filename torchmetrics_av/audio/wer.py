"""Speech WER: transcribe generated speech with an ASR model (Whisper by default) and score it against references."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.backbones.whisper import DEFAULT_WHISPER_MODEL, WHISPER_SAMPLE_RATE, Whisper
from torchmetrics_av.base import BackboneMetric, check_protocol, unique_sample_order
from torchmetrics_av.functional.wer import LanguageHints, language_list, normalize_text, score_transcript
from torchmetrics_av.preprocessing import AudioInput, as_clip_list, resample, sample_rates, to_mono

AsrCallable = Callable[[list[Tensor], list[str | None]], Sequence[str]]
REDUCTIONS: tuple[str, ...] = ("mean", "corpus")
# Per-sample integer columns of the `counts` state.
_COUNT_FIELDS = ("hits", "substitutions", "deletions", "insertions", "char_level")
# Per-sample strings kept for details(), stored as UTF-8 bytes so they gather across DDP ranks like any tensor state.
_TEXT_FIELDS = ("transcripts", "hypotheses_normalized", "references_normalized")


def _encode_texts(rows: list[tuple[str, ...]]) -> tuple[Tensor, Tensor]:
    blobs = [[t.encode("utf-8") for t in row] for row in rows]
    lengths = torch.tensor([[len(b) for b in row] for row in blobs], dtype=torch.int64).reshape(-1, len(_TEXT_FIELDS))
    data = b"".join(b for row in blobs for b in row)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8), lengths


def _corpus_wer(counts: Tensor) -> Tensor:
    """Σ(S + D + I) / Σ(H + S + D) from ``(N, 5)`` count rows ``[H, S, D, I, char_level]``, float64."""
    errors = counts[:, 1:4].sum().to(torch.float64)
    return errors / counts[:, 0:3].sum().to(torch.float64)


def _decode_texts(data: Tensor, lengths: Tensor) -> list[list[str]]:
    raw = bytes(data.cpu().numpy().tobytes())
    columns: list[list[str]] = [[] for _ in _TEXT_FIELDS]
    pos = 0
    for row in lengths.cpu().tolist():
        for col, n in enumerate(row):
            columns[col].append(raw[pos : pos + n].decode("utf-8"))
            pos += n
    return columns


class SpeechWordErrorRate(BackboneMetric):
    r"""Word error rate of generated speech: ASR transcript vs reference text, FastVideo's "MagiHuman" convention.

    .. math::
        \text{WER}_i = \frac{S_i + D_i + I_i}{H_i + S_i + D_i}, \qquad
        \text{mean} = \frac{1}{N}\sum_i \text{WER}_i, \qquad
        \text{corpus} = \frac{\sum_i (S_i + D_i + I_i)}{\sum_i (H_i + S_i + D_i)}

    Lower is better; not bounded by 1 (insertions). Tokens are words, or characters for CJK text.

    Pipeline per clip (FastVideo ``audio.wer`` @ 2f3d4074 with openai-whisper as the ASR):

    1. mono mean, then soxr-HQ resampling to 16 kHz (``librosa.load(sr=16000, mono=True)``);
    2. ASR: by default :class:`~torchmetrics_av.backbones.Whisper` (``"base"``; greedy, temperature 0, no timestamps,
       first 30 s), batched; the clip's language hint is forwarded to Whisper when it names a Whisper language,
       otherwise Whisper detects the language. FastVideo itself runs Hugging Face Whisper with auto-detection (set
       ``forward_language=False`` for that); any ``asr`` callable can replace Whisper;
    3. the transcript is ``strip()``-ped; :mod:`torchmetrics_av.functional.wer` normalises both texts (NFKC, lower,
       delete ASCII + CJK punctuation, collapse whitespace), picks character level from the hint (substring rule) or
       CJK detection, and counts H/S/D/I with ``jiwer.process_words``.

    ``protocol`` is accepted for a uniform API; av-benchmark has no WER metric, so both protocols run the pipeline
    above.

    As input to ``update``: ``preds``: speech audio (``(B, T)``, ``(B, C, T)`` or a list of clips); ``target``:
    ``list[str]``, one reference transcript per clip; ``language``: ``None``, one hint, or one per clip;
    ``sample_rate``: Hz, one int or one per clip; ``ids``: optional dataset indices, so repeats padded in by
    ``DistributedSampler`` are counted once.

    As output of ``compute``: float64 scalar, the mean per-sample WER (``reduction="mean"``, FastVideo's per-sample
    scores averaged) or Σ errors / Σ reference tokens (``reduction="corpus"``). ``details``: per sample (N,) in
    sample order (rank 0's samples first under DDP): ``wer`` (float64), ``errors``, ``ref_tokens``, ``hyp_tokens``,
    ``hits``, ``substitutions``, ``deletions``, ``insertions`` (int64), ``char_level`` (bool), and the lists
    ``transcripts`` (ASR output), ``hypotheses_normalized``, ``references_normalized``; plus ``mean_wer``,
    ``corpus_wer``, ``n_samples``, ``n_duplicates_dropped`` and ``sample_id`` (-1 where no ids were given). With
    ``ids``, per-sample values are sorted by id.

    Args:
        sample_rate: rate of ``preds`` in Hz (per-call override in ``update``).
        protocol: ``"fastvideo"`` or ``"av-benchmark"`` (same computation, see above).
        backbone: a :class:`~torchmetrics_av.backbones.Whisper` instance to share.
        weights: local official Whisper checkpoint (``{"dims", "model_state_dict"}`` .pt) when ``backbone`` is not
            given.
        asr: a callable ``(list of (T,) 16 kHz float tensors, list of language hints) -> list[str]`` used instead of
            Whisper (kept out of the metric's ``state_dict`` and not moved between devices).
        model_name: official Whisper size to download when neither ``backbone``, ``weights`` nor ``asr`` is given.
        reduction: ``"mean"`` or ``"corpus"``.
        forward_language: pass the hints to the ASR (``False`` gives it ``None`` for every clip: auto-detection).
            The hints always drive the character-level decision.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Raises:
        ValueError: on ``update``: a reference that is empty after normalisation (named by its index; its WER is
            undefined: jiwer 3 raises, jiwer 4 silently returns the hypothesis length), counts of texts and clips
            that differ, a non-string text, a missing sample rate, NaN/Inf audio; an ASR that returns the wrong number
            of strings.

    Example:
        >>> import torch
        >>> from torchmetrics_av import SpeechWordErrorRate
        >>> fake_asr = lambda audio, languages: ["the cat sat", "你好世"]   # any ASR callable
        >>> wer = SpeechWordErrorRate(sample_rate=16000, asr=fake_asr)
        >>> wer.update(torch.zeros(2, 16000), ["The cat sat down.", "你好世界"])
        >>> round(float(wer.compute()), 4)       # mean of 1/4 (word level) and 1/4 (character level)
        0.25
        >>> wer.details["char_level"].tolist(), wer.details["transcripts"]
        ([False, True], ['the cat sat', '你好世'])
    """

    higher_is_better = False
    plot_lower_bound = 0.0

    def __init__(
        self,
        sample_rate: int | Sequence[int] | None = None,
        protocol: str = "fastvideo",
        backbone: nn.Module | None = None,
        weights: str | os.PathLike | None = None,
        *,
        asr: AsrCallable | None = None,
        model_name: str = DEFAULT_WHISPER_MODEL,
        reduction: str = "mean",
        forward_language: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone=backbone, weights=weights, **kwargs)
        self.protocol = check_protocol(protocol)
        if reduction not in REDUCTIONS:
            raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}")
        if asr is not None and not callable(asr):
            raise ValueError(f"`asr` must be a callable (audio list, language list) -> list[str], got {asr!r}")
        if asr is not None and (backbone is not None or weights is not None):
            raise ValueError("give either `asr` or `backbone`/`weights`, not both")
        self.__dict__["_asr"] = asr
        self.sample_rate = sample_rate
        self.model_name = model_name
        self.reduction = reduction
        self.forward_language = forward_language
        # Per-sample states only (sums are taken at compute time), so that `ids` can drop DistributedSampler repeats.
        self.add_sample_state("sample_wer")
        self.add_sample_state("sample_counts", (len(_COUNT_FIELDS),), torch.int64)
        self.add_sample_state("text_lengths", (len(_TEXT_FIELDS),), torch.int64)
        self.add_sample_state("text_bytes", (), torch.uint8)
        self.add_sample_state("sample_id", (), torch.int64)

    def _build_backbone(self) -> nn.Module:
        return Whisper(weights=self.weights, name=self.model_name)

    def transcribe(self, audio: list[Tensor], languages: list[str | None]) -> list[str]:
        """Run the ASR (``asr`` callable or the Whisper backbone) on 16 kHz clips; returns stripped transcripts."""
        asr = self.__dict__["_asr"]
        hints = languages if self.forward_language else [None] * len(audio)
        out = asr(audio, hints) if asr is not None else self.backbone(audio, hints)
        texts = list(out) if isinstance(out, Sequence) and not isinstance(out, str) else None
        if texts is None or len(texts) != len(audio) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"the ASR must return one str per clip ({len(audio)}), got {out!r:.200}")
        # Every FastVideo backend strips its output; the ASCII-punctuation-only rule relies on it.
        return [t.strip() for t in texts]

    @torch.no_grad()
    def update(
        self,
        preds: AudioInput,
        target: Sequence[str],
        language: LanguageHints = None,
        sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Transcribe ``preds`` and add one WER per clip.

        ``ids`` (optional, one non-negative int per clip, e.g. dataset indices) lets ``compute`` drop the repeats that
        ``DistributedSampler`` pads ranks with; per-sample details are then sorted by id.
        """
        clips = as_clip_list(preds, "preds")
        sample_id = self._ids_tensor(ids, len(clips))
        if isinstance(target, str) or not isinstance(target, Sequence):
            raise ValueError(
                f"`target` must be a list of reference strings (one per clip), got {type(target).__name__}"
            )
        refs = list(target)
        if len(refs) != len(clips):
            raise ValueError(
                f"`target` has {len(refs)} references for {len(clips)} clips in `preds`; give one per clip"
            )
        for i, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise ValueError(f"`target[{i}]` must be a string, got {type(ref).__name__}")
            if not normalize_text(ref).split():
                # Checked before the (expensive) ASR; score_transcript would raise the same error afterwards.
                raise ValueError(
                    f"`target[{i}]` = {ref!r} is empty after text normalisation (punctuation and whitespace are "
                    "removed), so its WER is undefined; drop the sample or give a reference with words"
                )
        langs = language_list(language, len(clips))
        rates = sample_rates(sample_rate if sample_rate is not None else self.sample_rate, len(clips), "sample_rate")
        waves = [resample(to_mono(c), r, WHISPER_SAMPLE_RATE, "soxr_hq") for c, r in zip(clips, rates)]
        hyps = self.transcribe(waves, langs)
        scored = [
            score_transcript(h, r, lang, name=f"target[{i}]") for i, (h, r, lang) in enumerate(zip(hyps, refs, langs))
        ]
        wer = torch.tensor([a.wer for a in scored], dtype=torch.float64, device=self.device)
        counts = torch.tensor(
            [[a.hits, a.substitutions, a.deletions, a.insertions, int(a.char_level)] for a in scored],
            dtype=torch.int64,
            device=self.device,
        )
        data, lengths = _encode_texts(
            [(h, a.hypothesis_normalized, a.reference_normalized) for h, a in zip(hyps, scored)]
        )
        self.sample_wer.append(wer)
        self.sample_counts.append(counts)
        self.text_lengths.append(lengths.to(self.device))
        self.text_bytes.append(data.to(self.device))
        self.sample_id.append(sample_id)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        """Update with the batch and return the batch's value under this metric's ``reduction``.

        Unlike torchmetrics' default ``forward``, this transcribes each batch once (no recompute from a reset state).
        """
        before = len(self._cat("sample_wer"))
        self.update(*args, **kwargs)
        wer = self._cat("sample_wer")[before:]
        if self.reduction == "mean":
            return wer.mean()
        return _corpus_wer(self._cat("sample_counts")[before:])

    def compute(self) -> Tensor:
        """Mean per-sample WER (``reduction="mean"``) or corpus WER (``"corpus"``) over all ranks, float64.

        Samples sharing an id are counted once (first occurrence); samples without ids are all counted.
        """
        ids = self._cat("sample_id")
        order = unique_sample_order(ids)
        if order.numel() == 0:
            raise ValueError("no samples to score; call update() with audio and reference texts first")
        wer = self._cat("sample_wer")[order]
        counts = self._cat("sample_counts")[order]
        hits, subs, dels, ins, char_level = counts.unbind(dim=1)
        rows = order.tolist()
        texts = [
            [column[i] for i in rows] for column in _decode_texts(self._cat("text_bytes"), self._cat("text_lengths"))
        ]
        mean_wer, corpus_wer = wer.mean(), _corpus_wer(counts)
        self._details = {
            "wer": wer,
            "errors": subs + dels + ins,
            "ref_tokens": hits + subs + dels,
            "hyp_tokens": hits + subs + ins,
            "hits": hits,
            "substitutions": subs,
            "deletions": dels,
            "insertions": ins,
            "char_level": char_level.bool(),
            **dict(zip(_TEXT_FIELDS, texts)),
            "mean_wer": mean_wer,
            "corpus_wer": corpus_wer,
            "n_samples": len(rows),
            "n_duplicates_dropped": int(ids.numel() - order.numel()),
            "sample_id": ids[order],
        }
        return mean_wer if self.reduction == "mean" else corpus_wer
