"""Speech word error rate with FastVideo's "MagiHuman" text normalisation (character level for CJK), scored by jiwer.

The convention (FastVideo ``fastvideo/eval/metrics/audio/wer/metric.py`` @ 2f3d4074; the code is the only spec) is
reproduced quirk for quirk, as pinned by ``shared/golden/wer/text_cases.json``:

1. a hypothesis made only of ASCII punctuation becomes ``""`` (it cannot change the score: step 2 deletes it anyway);
2. ``normalize_text``: NFKC, ``strip()``, ``str.lower()``, *delete* ASCII + CJK punctuation (``that's`` -> ``thats``,
   ``wait—what`` -> ``waitwhat``), then collapse whitespace runs to one space; no final strip, so one leading or
   trailing space can survive (jiwer strips it before scoring);
3. character level when the language hint says so (substring match on ``language.lower()``: CJK tokens first, so
   ``"Chinese"`` -> word level because it contains ``"es"``, ``"Punjabi"`` -> character level), else when either
   *normalised* text contains a code point of the five CJK ranges; at character level every non-space code point is
   a token;
4. ``jiwer.process_words(reference, hypothesis)`` with jiwer's default transform; WER = (S + D + I) / (H + S + D).

A reference that is empty after normalisation has no defined WER: jiwer 3 raises and jiwer 4 silently returns the
number of hypothesis tokens. Here it is a ``ValueError`` naming the sample, unless ``allow_empty_reference=True``,
which reproduces jiwer 4's value (for parity checks only).

Example:
    >>> from torchmetrics_av.functional.wer import normalize_text, speech_word_error_rate
    >>> normalize_text("That's it. Dad's lost it!")
    'thats it dads lost it'
    >>> float(speech_word_error_rate(["hello world"], ["Hello, world!"]))
    0.0
    >>> float(speech_word_error_rate(["你好世"], ["你好世界"], language="zh"))  # character level
    0.25
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from torchmetrics_av.preprocessing import as_text_list

# FastVideo's PUNCTUATION: ASCII punctuation plus these full-width/CJK marks, em-dash U+2014 and ellipsis U+2026.
# Curly quotes, en-dash, guillemets, "・" etc. are *not* in it and survive normalisation (golden README §1).
ASCII_PUNCTUATION = string.punctuation
CJK_PUNCTUATION = "，。！？、；：「」『』（）《》【】—…"
PUNCTUATION = ASCII_PUNCTUATION + CJK_PUNCTUATION
_ASCII_PUNCTUATION_SET = frozenset(ASCII_PUNCTUATION)
_DELETE_PUNCTUATION = str.maketrans("", "", PUNCTUATION)
_WHITESPACE_RUN = re.compile(r"\s+")

# FastVideo's _CJK_RANGES (inclusive): CJK Unified Ideographs, Extension A, Hiragana, Katakana, Hangul syllables.
# Ext-B and later, Hangul Jamo, 々 and 〇 are outside them and are not detected.
CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x3040, 0x309F),
    (0x30A0, 0x30FF),
    (0xAC00, 0xD7AF),
)
# FastVideo's _resolve_char_level: substrings of language.lower(), CJK tokens checked first.
CHAR_LEVEL_HINTS: tuple[str, ...] = ("zh", "cn", "ja", "jp", "ko", "cjk", "yue", "cantonese")
WORD_LEVEL_HINTS: tuple[str, ...] = ("en", "de", "fr", "es", "it", "pt")

Reduction = Literal["mean", "corpus", "none"]
LanguageHints = str | None | Sequence[str | None]


def normalize_text(text: str) -> str:
    """FastVideo's MagiHuman normalisation: NFKC, strip, lower, delete punctuation, collapse whitespace.

    Args:
        text: raw transcript or reference.

    Returns:
        The normalised text. It may keep one leading or trailing space (punctuation is deleted after the strip).

    Example:
        >>> normalize_text("C'est l'été, n'est-ce pas ?")
        'cest lété nestce pas '
    """
    text = unicodedata.normalize("NFKC", text).strip().lower()
    return _WHITESPACE_RUN.sub(" ", text.translate(_DELETE_PUNCTUATION))


def contains_cjk(text: str) -> bool:
    """Whether ``text`` has a code point in one of :data:`CJK_RANGES`.

    Example:
        >>> contains_cjk("A・B"), contains_cjk("𠮷")
        (True, False)
    """
    return any(lo <= ord(ch) <= hi for ch in text for lo, hi in CJK_RANGES)


def resolve_char_level(language: object) -> bool | None:
    """Map a language hint to FastVideo's char-level decision: ``True``, ``False`` or ``None`` (auto-detect).

    Substring match on ``language.lower()``; any non-``str`` (including ``None``) gives ``None``.

    Example:
        >>> resolve_char_level("Chinese"), resolve_char_level("Punjabi"), resolve_char_level("German")
        (False, True, None)
    """
    if not isinstance(language, str):
        return None
    lang = language.lower()
    if any(token in lang for token in CHAR_LEVEL_HINTS):
        return True
    if any(token in lang for token in WORD_LEVEL_HINTS):
        return False
    return None


def to_char_level(text: str) -> str:
    """Every non-whitespace code point as its own space-separated token.

    Example:
        >>> to_char_level("你好 世界")
        '你 好 世 界'
    """
    return " ".join(ch for ch in text if not ch.isspace())


def apply_punctuation_rule(hypothesis: str) -> str:
    """FastVideo's rule on the raw ASR output: ASCII punctuation only (or empty) -> ``""``."""
    return "" if set(hypothesis) <= _ASCII_PUNCTUATION_SET else hypothesis


@dataclass(frozen=True)
class WERAlignment:
    """One scored (hypothesis, reference) pair.

    Attributes:
        reference_normalized: FastVideo's details ``reference_text``.
        hypothesis_normalized: FastVideo's details ``transcription``.
        reference_for_wer: the exact reference string given to jiwer.
        hypothesis_for_wer: the exact hypothesis string given to jiwer.
        char_level: whether the pair was scored character by character.
        hits: H from ``jiwer.process_words``.
        substitutions: S.
        deletions: D.
        insertions: I.
    """

    reference_normalized: str
    hypothesis_normalized: str
    reference_for_wer: str
    hypothesis_for_wer: str
    char_level: bool
    hits: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        """S + D + I."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def n_ref_tokens(self) -> int:
        """H + S + D, the number of reference tokens (words, or characters at char level)."""
        return self.hits + self.substitutions + self.deletions

    @property
    def n_hyp_tokens(self) -> int:
        """H + S + I, the number of hypothesis tokens."""
        return self.hits + self.substitutions + self.insertions

    @property
    def wer(self) -> float:
        """(S + D + I) / (H + S + D); for an empty reference, jiwer 4's value (the hypothesis token count)."""
        if self.n_ref_tokens == 0:
            return float(self.insertions)
        return self.errors / self.n_ref_tokens


def prepare_for_wer(reference: str, hypothesis: str, language: object = None) -> tuple[str, str, str, str, bool]:
    """Apply the punctuation rule, normalisation and the char-level decision, as FastVideo's ``compute`` does.

    Args:
        reference: reference transcript.
        hypothesis: ASR output (already ``strip()``-ped, as every FastVideo backend does).
        language: language hint (see :func:`resolve_char_level`).

    Returns:
        ``(reference_normalized, hypothesis_normalized, reference_for_wer, hypothesis_for_wer, char_level)``.
    """
    ref_norm = normalize_text(reference)
    hyp_norm = normalize_text(apply_punctuation_rule(hypothesis))
    hint = resolve_char_level(language)
    char_level = hint if hint is not None else (contains_cjk(ref_norm) or contains_cjk(hyp_norm))
    if char_level:
        return ref_norm, hyp_norm, to_char_level(ref_norm), to_char_level(hyp_norm), char_level
    return ref_norm, hyp_norm, ref_norm, hyp_norm, char_level


def score_transcript(
    hypothesis: str,
    reference: str,
    language: object = None,
    *,
    allow_empty_reference: bool = False,
    name: str = "target",
) -> WERAlignment:
    """Normalise and align one pair and count hits, substitutions, deletions and insertions with jiwer.

    Args:
        hypothesis: ASR output.
        reference: reference transcript.
        language: language hint, or ``None`` to auto-detect CJK.
        allow_empty_reference: score a reference with no tokens after normalisation as jiwer 4 does (all
            hypothesis tokens are insertions) instead of raising.
        name: how the reference is called in the error message (e.g. ``"target[3]"``).

    Raises:
        ValueError: the reference has no tokens after normalisation (and ``allow_empty_reference`` is False).

    Example:
        >>> a = score_transcript("yes no", "yes—no")     # the em-dash is deleted: one reference word
        >>> a.reference_for_wer, a.errors, a.wer
        ('yesno', 2, 2.0)
    """
    ref_norm, hyp_norm, ref, hyp, char_level = prepare_for_wer(reference, hypothesis, language)
    hyp_tokens = hyp.split()
    if not ref.split():
        if not allow_empty_reference:
            raise ValueError(
                f"`{name}` = {reference!r} is empty after text normalisation (punctuation and whitespace are removed), "
                "so its WER is undefined; drop the sample or give a reference with words"
            )
        # jiwer 4 with an empty reference: every hypothesis token is an insertion (jiwer 3 raises).
        return WERAlignment(ref_norm, hyp_norm, ref, hyp, char_level, 0, 0, 0, len(hyp_tokens))
    import jiwer

    out = jiwer.process_words(ref, hyp)
    return WERAlignment(
        ref_norm,
        hyp_norm,
        ref,
        hyp,
        char_level,
        int(out.hits),
        int(out.substitutions),
        int(out.deletions),
        int(out.insertions),
    )


def language_list(language: LanguageHints, n: int, name: str = "language") -> list[str | None]:
    """Broadcast a language hint (one ``str``/``None``, or one per sample) to ``n`` samples.

    Raises:
        ValueError: a list of the wrong length, or an entry that is neither ``str`` nor ``None``.
    """
    if language is None or isinstance(language, str):
        return [language] * n
    if not isinstance(language, Sequence):
        raise ValueError(f"`{name}` must be None, a string or a list of strings, got {type(language).__name__}")
    langs = list(language)
    if len(langs) != n:
        raise ValueError(f"`{name}` has {len(langs)} entries for {n} samples; give one hint or one per sample")
    for i, lang in enumerate(langs):
        if lang is not None and not isinstance(lang, str):
            raise ValueError(f"`{name}[{i}]` must be a string or None, got {type(lang).__name__}")
    return langs


def speech_word_error_rate(
    preds: Sequence[str],
    target: Sequence[str],
    language: LanguageHints = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """WER of ASR transcripts against references under the MagiHuman convention.

    Args:
        preds: ASR transcripts (a list; a bare ``str`` is an error, as in every metric).
        target: reference transcripts, one per prediction.
        language: one hint for all samples or one per sample (``None`` = auto-detect CJK).
        reduction: ``"mean"`` = mean of per-sample WERs (FastVideo's per-sample scores averaged); ``"corpus"`` =
            Σ(S+D+I) / Σ reference tokens; ``"none"`` = the per-sample values.

    Returns:
        float64 scalar, or ``(N,)`` for ``reduction="none"``. Not bounded by 1 (insertions).

    Raises:
        ValueError: counts differ, a non-string text, an unknown reduction, or a reference that is empty after
            normalisation (the message names its index).

    Example:
        >>> float(speech_word_error_rate(["a dog barks"], ["A dog barks loudly."]))
        0.25
    """
    hyps, refs = as_text_list(preds, "preds"), as_text_list(target, "target")
    if len(hyps) != len(refs):
        raise ValueError(f"`preds` has {len(hyps)} transcripts but `target` has {len(refs)}; give one per sample")
    if not refs:
        raise ValueError("`preds` and `target` are empty; give at least one pair")
    if reduction not in ("mean", "corpus", "none"):
        raise ValueError(f"`reduction` must be 'mean', 'corpus' or 'none', got {reduction!r}")
    langs = language_list(language, len(refs))
    scored = [
        score_transcript(h, r, lang, name=f"target[{i}]") for i, (h, r, lang) in enumerate(zip(hyps, refs, langs))
    ]
    if reduction == "corpus":
        errors = sum(a.errors for a in scored)
        return torch.tensor(errors / sum(a.n_ref_tokens for a in scored), dtype=torch.float64)
    values = torch.tensor([a.wer for a in scored], dtype=torch.float64)
    return values if reduction == "none" else values.mean()
