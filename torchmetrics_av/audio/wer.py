"""Speech WER: transcribe generated speech with an ASR model (Whisper by default) and score it against references."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from torchmetrics_av.backbones.asr import ASR_BACKENDS, ASR_SAMPLE_RATE, DEFAULT_ASR_BACKEND
from torchmetrics_av.backbones.whisper import DEFAULT_WHISPER_MODEL
from torchmetrics_av.base import BackboneMetric, Rows, require_extra
from torchmetrics_av.functional.wer import LanguageHints, language_list, normalize_text, score_transcript
from torchmetrics_av.preprocessing import (
    AudioInput,
    as_clip_list,
    as_text_list,
    check_bool,
    check_sample_rate,
    is_silent,
    resample,
    sample_rates,
    to_mono,
)

AsrCallable = Callable[[list[Tensor], list[str | None]], Sequence[str]]
REDUCTIONS: tuple[str, ...] = ("mean", "corpus")
_COUNT_COLUMNS = ("errors", "words", "hits", "substitutions", "deletions", "insertions")
_TEXT_COLUMNS = ("transcript", "reference", "transcript_normalized", "reference_normalized")


class _Backend(NamedTuple):
    """Where an ``asr_backend`` name's backbone class lives and what it needs installed."""

    module: str
    cls: str
    modules: tuple[str, ...]  # top-level imports the backbone needs (checked in the constructor)
    extra: str  # the torchmetrics-av extra that installs them


# One entry per name of ASR_BACKENDS (same order).
_BACKENDS: dict[str, _Backend] = {
    # HFWhisper's offline tokenizer reads openai-whisper's bundled multilingual.tiktoken, hence `whisper` too.
    "whisper": _Backend("torchmetrics_av.backbones.hf_whisper", "HFWhisper", ("transformers", "whisper"), "asr"),
    "openai-whisper": _Backend("torchmetrics_av.backbones.whisper", "Whisper", ("whisper",), "asr"),
    "glm_asr": _Backend("torchmetrics_av.backbones.glm_asr", "GLMASR", ("transformers",), "asr"),
    "sensevoice": _Backend("torchmetrics_av.backbones.sensevoice", "SenseVoice", ("funasr",), "sensevoice"),
}


def backend_of(backbone: Any) -> str | None:
    """The ``asr_backend`` name of a backbone instance (``None``: not one of this library's ASR classes).

    Only modules already imported are consulted: an instance of a class from a module never imported cannot exist.

    Example:
        >>> from torchmetrics_av.testing import tiny_backbone
        >>> backend_of(tiny_backbone("whisper")), backend_of(object())
        ('openai-whisper', None)
    """
    for name, b in _BACKENDS.items():
        module = sys.modules.get(b.module)
        if module is not None and isinstance(backbone, getattr(module, b.cls)):
            return name
    return None


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

    Pipeline per clip (FastVideo ``audio.wer`` @ 2f3d4074):

    1. mono mean, then soxr-HQ resampling to 16 kHz (``librosa.load(sr=16000, mono=True)``);
    2. ASR, one of FastVideo's backends (``asr_backend``), batched, through the common
       :class:`~torchmetrics_av.backbones.asr.ASRBackbone` ``transcribe(waves, languages, force_language)``:

       * ``"whisper"`` (default): :class:`~torchmetrics_av.backbones.HFWhisper`, Hugging Face
         ``openai/whisper-base`` at the pinned revision, greedy ``generate(max_new_tokens=256)`` with the hub
         generation config, first 30 s;
       * ``"openai-whisper"``: :class:`~torchmetrics_av.backbones.Whisper` (``model_name``, greedy, temperature 0,
         no timestamps, first 30 s), this library's ASR before FastVideo's backends were ported;
       * ``"glm_asr"``: :class:`~torchmetrics_av.backbones.GLMASR` (GLM-ASR-Nano, FastVideo's prompt);
       * ``"sensevoice"``: :class:`~torchmetrics_av.backbones.SenseVoice` (FunASR, FSMN-VAD, ITN on);

       the language is forced only where the protocol says so (``spec.asr_force_language``; neither protocol does:
       FastVideo lets Whisper detect it and gives SenseVoice ``"auto"``) or ``forward_language=True`` asks for it;
    3. the transcript is ``strip()``-ped; :mod:`torchmetrics_av.functional.wer` normalises both texts (NFKC, lower,
       delete ASCII + CJK punctuation, collapse whitespace), picks character level from the hint (substring rule,
       whether or not the ASR was given it) or CJK detection, and counts H/S/D/I with ``jiwer.process_words``.

    All-zero clips are transcribed and scored like any other (FastVideo has no silence rule for WER: an empty
    transcript scores 1.0); they are counted in ``details["n_silent"]`` and flagged in the ``silent`` column.

    ``protocol``: av-benchmark has no WER metric, so both protocols run the pipeline above.

    As input to ``update``: ``preds``: speech audio (``(B, T)``, ``(B, C, T)`` or a list of clips); ``target``:
    ``list[str]``, one reference transcript per clip; ``language``: ``None``, one hint, or one per clip;
    ``sample_rate``: Hz, one int or one per clip; ``ids``: optional dataset indices, so repeats padded in by
    ``DistributedSampler`` are counted once.

    As output of ``compute`` / ``forward``: float64 scalar, the mean per-sample WER (``reduction="mean"``,
    FastVideo's per-sample scores averaged) or Σ errors / Σ reference words (``reduction="corpus"``).
    ``per_sample()`` (sample order, rank 0's first under DDP, sorted by id where ids were given): ``ids``, ``wer``
    (float64), ``errors``, ``words`` (reference tokens), ``hits``, ``substitutions``, ``deletions``, ``insertions``
    (int64), ``char_level``, ``silent`` (bool), and the lists ``transcript`` (ASR output), ``reference`` (as
    given), ``transcript_normalized``, ``reference_normalized``. ``details``: those, ``mean_wer``, ``corpus_wer``,
    ``n_silent`` (all-zero clips, scored), ``asr_backend`` and the counts of :mod:`torchmetrics_av.base`;
    ``ref_tokens``, ``hyp_tokens``, ``transcripts``,
    ``hypotheses_normalized``, ``references_normalized`` and ``sample_id`` are deprecated.

    Args:
        sample_rate: rate of ``preds`` in Hz (per-call override in ``update``).
        protocol: ``"fastvideo"`` or ``"av-benchmark"`` (same computation, see above).
        backbone: an ASR instance to share: a backbone of ``asr_backend`` (built lazily when not given), or any
            object with ``transcribe(waves, languages, force_language)``
            (:class:`~torchmetrics_av.backbones.asr.ASRBackbone`; a plain object is neither frozen nor moved).
        weights: local checkpoint of ``asr_backend`` when ``backbone`` is not given: a ``whisper-base`` folder /
            ``model.safetensors`` or an openai-whisper ``.pt`` (``"whisper"``), an openai-whisper ``.pt``
            (``"openai-whisper"``), a snapshot folder (``"glm_asr"``, ``"sensevoice"``).
        asr_backend: one of :data:`ASR_BACKENDS`; default ``"whisper"``, or the injected ``backbone``'s own backend
            (a known backbone of another backend is an error).
        asr: a callable ``(list of (T,) 16 kHz float tensors, list of language hints) -> list[str]`` used instead of
            a backbone (kept out of the metric's ``state_dict`` and not moved between devices); it is given the hints
            only when the language is forwarded (see ``forward_language``), else ``None`` for every clip.
        model_name: official openai-whisper size (``asr_backend="openai-whisper"`` only; default ``"base"``).
        reduction: ``"mean"`` or ``"corpus"``.
        forward_language: force each clip's hint on the ASR where it names a language the model knows; ``None``
            (default) follows the protocol (``spec.asr_force_language``: ``False``, FastVideo's auto-detection).
            The hints always drive the character-level decision.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Raises:
        ModuleNotFoundError: ``jiwer`` is missing, or what ``asr_backend`` needs when no ``backbone``/``asr`` is
            given (the message names the pip command).
        ValueError: a bad constructor argument (named; an unknown ``asr_backend`` lists the names); on ``update``:
            a reference that is empty after normalisation
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
        backbone: Any = None,
        weights: str | os.PathLike | None = None,
        *,
        asr_backend: str | None = None,
        asr: AsrCallable | None = None,
        model_name: str | None = None,
        reduction: str = "mean",
        forward_language: bool | None = None,
        **kwargs: Any,
    ) -> None:
        plain = backbone is not None and not isinstance(backbone, nn.Module)
        if plain and not callable(getattr(backbone, "transcribe", None)):
            raise ValueError(
                "`backbone` must be a torch.nn.Module ASR backbone (torchmetrics_av.backbones) or an object with "
                f"transcribe(waves, languages, force_language), got {backbone!r:.100}"
            )
        super().__init__(backbone=None if plain else backbone, weights=weights, protocol=protocol, **kwargs)
        if reduction not in REDUCTIONS:
            raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}")
        if asr is not None and not callable(asr):
            raise ValueError(f"`asr` must be a callable (audio list, language list) -> list[str], got {asr!r}")
        if asr is not None and (backbone is not None or weights is not None or asr_backend is not None):
            raise ValueError("give either `asr` or `backbone`/`weights`/`asr_backend`, not both")
        if asr_backend is not None and asr_backend not in _BACKENDS:
            raise ValueError(f"`asr_backend` must be one of {ASR_BACKENDS}, got {asr_backend!r}")
        injected = backend_of(backbone) if backbone is not None else None
        if asr_backend is not None and injected is not None and injected != asr_backend:
            raise ValueError(
                f"`backbone` is a {type(backbone).__name__} (asr_backend={injected!r}), not one of "
                f"asr_backend={asr_backend!r}; pass asr_backend={injected!r} or a {_BACKENDS[asr_backend].cls}"
            )
        name = asr_backend or injected or DEFAULT_ASR_BACKEND
        if model_name is not None:
            if not isinstance(model_name, str) or not model_name:
                raise ValueError(f"`model_name` must be an official Whisper model name (str), got {model_name!r}")
            if name != "openai-whisper":
                raise ValueError(
                    f"`model_name` picks an openai-whisper size; it needs asr_backend='openai-whisper', not {name!r}"
                )
        require_extra(type(self).__name__, ["jiwer"], "asr")
        if asr is None and backbone is None:
            require_extra(
                f"{type(self).__name__}(asr_backend={name!r})", list(_BACKENDS[name].modules), _BACKENDS[name].extra
            )
        self.__dict__["_asr"] = asr
        self.__dict__["_plain_backbone"] = backbone if plain else None
        if asr is not None:
            self.asr_backend = "asr-callable"
        elif backbone is not None and injected is None:
            self.asr_backend = type(backbone).__name__
        else:
            self.asr_backend = name
        self.sample_rate = check_sample_rate(sample_rate, "sample_rate")
        self.model_name = model_name or DEFAULT_WHISPER_MODEL
        self.reduction = reduction
        if forward_language is None:
            forward_language = self.spec.asr_force_language
        self.forward_language = check_bool(forward_language, "forward_language")
        columns = {"wer": ((), torch.float64), **{c: ((), torch.int64) for c in _COUNT_COLUMNS}}
        flags = {"char_level": ((), torch.bool), "silent": ((), torch.bool)}
        self.add_rows({**columns, **flags}, texts=_TEXT_COLUMNS)

    def _build_backbone(self) -> nn.Module:
        backend = _BACKENDS[self.asr_backend]
        cls = getattr(importlib.import_module(backend.module), backend.cls)
        if self.asr_backend == "openai-whisper":
            return cls(weights=self.weights, name=self.model_name)
        return cls(weights=self.weights)

    def transcribe(self, audio: list[Tensor], languages: list[str | None]) -> list[str]:
        """Run the ASR (``asr`` callable or the backbone's ``transcribe``) on 16 kHz clips; returns stripped texts.

        The language is forced only when :attr:`forward_language` is set (the protocol's rule by default).
        """
        asr = self.__dict__["_asr"]
        if asr is not None:
            out = asr(audio, languages if self.forward_language else [None] * len(audio))
        else:
            backbone = self.__dict__["_plain_backbone"] or self.backbone
            out = backbone.transcribe(audio, languages, force_language=self.forward_language)
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
        monos = [to_mono(c) for c in clips]
        silent = [is_silent(m) for m in monos]
        waves = [resample(m, r, ASR_SAMPLE_RATE, "soxr_hq") for m, r in zip(monos, rates)]
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
            "silent": column(silent, torch.bool),
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
        return {
            "mean_wer": rows["wer"].mean(),
            "corpus_wer": _corpus_wer(rows["errors"], rows["words"]),
            "n_silent": int(rows["silent"].sum()),
            "asr_backend": self.asr_backend,
        }

    def _deprecated_details(self, rows: Rows, kept: Tensor) -> dict[str, tuple[Any, str]]:
        return {
            "ref_tokens": (rows["words"], "per_sample()['words']"),
            "hyp_tokens": (rows["hits"] + rows["substitutions"] + rows["insertions"], "hits + substitutions + insert."),
            "transcripts": (rows["transcript"], "per_sample()['transcript']"),
            "hypotheses_normalized": (rows["transcript_normalized"], "per_sample()['transcript_normalized']"),
            "references_normalized": (rows["reference_normalized"], "per_sample()['reference_normalized']"),
        }
