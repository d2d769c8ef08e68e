"""Speech WER: transcribe generated speech with an ASR model (Whisper by default) and score it against references."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.backbones.whisper import DEFAULT_WHISPER_MODEL, WHISPER_SAMPLE_RATE, Whisper
from torchmetrics_av.base import BackboneMetric, Rows, require_extra
from torchmetrics_av.functional.wer import LanguageHints, language_list, normalize_text, score_transcript
from torchmetrics_av.preprocessing import (
    AudioInput,
    as_clip_list,
    as_text_list,
    check_bool,
    check_sample_rate,
    resample,
    sample_rates,
    to_mono,
)

AsrCallable = Callable[[list[Tensor], list[str | None]], Sequence[str]]
REDUCTIONS: tuple[str, ...] = ("mean", "corpus")
_COUNT_COLUMNS = ("errors", "words", "hits", "substitutions", "deletions", "insertions")
_TEXT_COLUMNS = ("transcript", "reference", "transcript_normalized", "reference_normalized")


def _corpus_wer(errors: Tensor, words: Tensor) -> Tensor:
    """Σ(S + D + I) / Σ(H + S + D), float64."""
    return errors.sum().to(torch.float64) / words.sum().to(torch.float64)


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

    As output of ``compute`` / ``forward``: float64 scalar, the mean per-sample WER (``reduction="mean"``,
    FastVideo's per-sample scores averaged) or Σ errors / Σ reference words (``reduction="corpus"``).
    ``per_sample()`` (sample order, rank 0's first under DDP, sorted by id where ids were given): ``ids``, ``wer``
    (float64), ``errors``, ``words`` (reference tokens), ``hits``, ``substitutions``, ``deletions``, ``insertions``
    (int64), ``char_level`` (bool), and the lists ``transcript`` (ASR output), ``reference`` (as given),
    ``transcript_normalized``, ``reference_normalized``. ``details``: those, ``mean_wer``, ``corpus_wer`` and the
    counts of :mod:`torchmetrics_av.base`; ``ref_tokens``, ``hyp_tokens``, ``transcripts``,
    ``hypotheses_normalized``, ``references_normalized`` and ``sample_id`` are deprecated.

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
        ModuleNotFoundError: ``jiwer`` is missing (or ``openai-whisper``, when no ``asr`` is given).
        ValueError: a bad constructor argument (named); on ``update``: a reference that is empty after normalisation
            (named by its index; its WER is undefined: jiwer 3 raises, jiwer 4 silently returns the hypothesis
            length), counts of texts and clips that differ, a bare ``str`` or a non-string text, a missing sample
            rate, NaN/Inf audio; an ASR that returns the wrong number of strings.

    Example:
        >>> import torch
        >>> from torchmetrics_av import SpeechWordErrorRate
        >>> fake_asr = lambda audio, languages: ["the cat sat", "你好世"]   # any ASR callable
        >>> wer = SpeechWordErrorRate(sample_rate=16000, asr=fake_asr)
        >>> wer.update(torch.zeros(2, 16000), ["The cat sat down.", "你好世界"])
        >>> round(float(wer.compute()), 4)       # mean of 1/4 (word level) and 1/4 (character level)
        0.25
        >>> rows = wer.per_sample()
        >>> rows["char_level"].tolist(), rows["transcript"], rows["words"].tolist()
        ([False, True], ['the cat sat', '你好世'], [4, 4])
    """

    higher_is_better = False
    plot_lower_bound = 0.0
    _input_hint = "speech audio and reference texts"

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
        super().__init__(backbone=backbone, weights=weights, protocol=protocol, **kwargs)
        if reduction not in REDUCTIONS:
            raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}")
        if asr is not None and not callable(asr):
            raise ValueError(f"`asr` must be a callable (audio list, language list) -> list[str], got {asr!r}")
        if asr is not None and (backbone is not None or weights is not None):
            raise ValueError("give either `asr` or `backbone`/`weights`, not both")
        if not isinstance(model_name, str) or not model_name:
            raise ValueError(f"`model_name` must be an official Whisper model name (str), got {model_name!r}")
        require_extra(type(self).__name__, ["jiwer"], "asr")
        if asr is None and backbone is None:
            require_extra(type(self).__name__, ["whisper"], "asr")
        self.__dict__["_asr"] = asr
        self.sample_rate = check_sample_rate(sample_rate, "sample_rate")
        self.model_name = model_name
        self.reduction = reduction
        self.forward_language = check_bool(forward_language, "forward_language")
        columns = {"wer": ((), torch.float64), **{c: ((), torch.int64) for c in _COUNT_COLUMNS}}
        self.add_rows({**columns, "char_level": ((), torch.bool)}, texts=_TEXT_COLUMNS)

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
    def _score(
        self,
        preds: AudioInput,
        target: Sequence[str],
        language: LanguageHints = None,
        sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> Rows:
        clips = as_clip_list(preds, "preds")
        refs = as_text_list(target, "target", len(clips))
        for i, ref in enumerate(refs):
            if not normalize_text(ref).split():
                # Checked before the (expensive) ASR; score_transcript would raise the same error afterwards.
                raise ValueError(
                    f"`target[{i}]` = {ref!r} is empty after text normalisation (punctuation and whitespace are "
                    "removed), so its WER is undefined; drop the sample or give a reference with words"
                )
        langs = language_list(language, len(clips))
        rates = sample_rates(sample_rate if sample_rate is not None else self.sample_rate, len(clips), "sample_rate")
        sample_id = self._ids_tensor(ids, len(clips))
        waves = [resample(to_mono(c), r, WHISPER_SAMPLE_RATE, "soxr_hq") for c, r in zip(clips, rates)]
        hyps = self.transcribe(waves, langs)
        scored = [
            score_transcript(h, r, lang, name=f"target[{i}]") for i, (h, r, lang) in enumerate(zip(hyps, refs, langs))
        ]

        def column(values: list[Any], dtype: torch.dtype) -> Tensor:
            return torch.tensor(values, dtype=dtype)

        return {
            "ids": sample_id,
            "wer": column([a.wer for a in scored], torch.float64),
            "errors": column([a.substitutions + a.deletions + a.insertions for a in scored], torch.int64),
            "words": column([a.hits + a.substitutions + a.deletions for a in scored], torch.int64),
            "hits": column([a.hits for a in scored], torch.int64),
            "substitutions": column([a.substitutions for a in scored], torch.int64),
            "deletions": column([a.deletions for a in scored], torch.int64),
            "insertions": column([a.insertions for a in scored], torch.int64),
            "char_level": column([a.char_level for a in scored], torch.bool),
            "transcript": hyps,
            "reference": refs,
            "transcript_normalized": [a.hypothesis_normalized for a in scored],
            "reference_normalized": [a.reference_normalized for a in scored],
        }

    def update(
        self,
        preds: AudioInput,
        target: Sequence[str],
        language: LanguageHints = None,
        sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Transcribe ``preds`` and add one WER per clip (nothing is added if the batch raises).

        ``ids`` (optional, one non-negative int per clip, e.g. dataset indices) lets ``compute`` drop the repeats that
        ``DistributedSampler`` pads ranks with; per-sample values are then sorted by id.
        """
        self._add(self._score(preds, target, language, sample_rate, ids))

    def _reduce(self, rows: Rows) -> Tensor:
        if self.reduction == "mean":
            return rows["wer"].mean()
        return _corpus_wer(rows["errors"], rows["words"])

    def _summary(self, rows: Rows) -> dict[str, Any]:
        return {"mean_wer": rows["wer"].mean(), "corpus_wer": _corpus_wer(rows["errors"], rows["words"])}

    def _deprecated_details(self, rows: Rows, kept: Tensor) -> dict[str, tuple[Any, str]]:
        return {
            "ref_tokens": (rows["words"], "per_sample()['words']"),
            "hyp_tokens": (rows["hits"] + rows["substitutions"] + rows["insertions"], "hits + substitutions + insert."),
            "transcripts": (rows["transcript"], "per_sample()['transcript']"),
            "hypotheses_normalized": (rows["transcript_normalized"], "per_sample()['transcript_normalized']"),
            "references_normalized": (rows["reference_normalized"], "per_sample()['reference_normalized']"),
        }
