"""The interface every speech recogniser of :class:`SpeechWordErrorRate` implements, and its shared input checks.

An ASR backbone takes 16 kHz mono clips and returns one transcript per clip:
``transcribe(waves, languages=None, force_language=False) -> list[str]``. ``languages`` are free-form hints (one per
clip, ``None`` = unknown); ``force_language=True`` lets a backbone that can condition on a language do so, ``False``
runs it exactly as FastVideo does (Whisper detects the language, SenseVoice gets ``"auto"``, GLM-ASR never takes a
language). Backends: :class:`~torchmetrics_av.backbones.HFWhisper` (FastVideo's default ``"whisper"``),
:class:`~torchmetrics_av.backbones.Whisper` (``"openai-whisper"``), :class:`~torchmetrics_av.backbones.GLMASR`
(``"glm_asr"``), :class:`~torchmetrics_av.backbones.SenseVoice` (``"sensevoice"``).

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones.asr import ASRBackbone, check_asr_inputs
    >>> class Echo:
    ...     sample_rate = 16000
    ...     def transcribe(self, waves, languages=None, force_language=False):
    ...         waves, languages = check_asr_inputs(waves, languages)
    ...         return [f"{w.numel()} samples" for w in waves]
    >>> isinstance(Echo(), ASRBackbone), Echo().transcribe([torch.zeros(16000)])
    (True, ['16000 samples'])
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

# Every ASR front end here (Whisper log-mel, GLM-ASR's Whisper features, SenseVoice fbank) expects 16 kHz.
ASR_SAMPLE_RATE = 16000
# SpeechWordErrorRate's `asr_backend` names (the CLI's --asr-backend): FastVideo's `WERMetric(asr_backend=...)` three
# ("whisper" = Hugging Face openai/whisper-base, "glm_asr", "sensevoice") plus this library's openai-whisper path.
ASR_BACKENDS: tuple[str, ...] = ("whisper", "openai-whisper", "glm_asr", "sensevoice")
# FastVideo's default backend.
DEFAULT_ASR_BACKEND = "whisper"


@runtime_checkable
class ASRBackbone(Protocol):
    """A speech recogniser: 16 kHz mono clips -> one ``str`` per clip.

    Attributes:
        sample_rate: the rate ``transcribe`` expects (16000 for every backend here).
    """

    sample_rate: int

    def transcribe(
        self,
        waves: Sequence[Tensor],
        languages: Sequence[str | None] | None = None,
        force_language: bool = False,
    ) -> list[str]:
        """Transcribe ``(T,)`` float clips at :attr:`sample_rate`; returns one ``strip()``-ped ``str`` per clip.

        Args:
            waves: 1-D float tensors, any lengths.
            languages: one free-form hint per clip (``"en"``, ``"English"``, ``"zh-CN"``, ``None``), or ``None``.
            force_language: condition the model on the hint where it can; ``False`` is FastVideo's behaviour.
        """
        ...


def check_asr_inputs(
    waves: Sequence[Tensor], languages: Sequence[str | None] | None = None
) -> tuple[list[Tensor], list[str | None]]:
    """Validate ASR inputs: a non-empty list of finite, non-empty 1-D tensors and one hint (or ``None``) per clip.

    Returns:
        ``(waves, languages)`` as lists, the waves as float32 tensors (devices unchanged).

    Raises:
        ValueError: naming the offending argument and index.
    """
    if isinstance(waves, Tensor) or not isinstance(waves, Sequence) or len(waves) == 0:
        raise ValueError(f"`waves` must be a non-empty list of (T,) 16 kHz tensors, got {type(waves).__name__}")
    out = []
    for i, w in enumerate(waves):
        if not isinstance(w, Tensor) or w.ndim != 1 or w.numel() == 0:
            raise ValueError(f"`waves[{i}]` must be a non-empty (T,) 16 kHz tensor, got {w!r:.80}")
        if not torch.isfinite(w).all():
            raise ValueError(f"`waves[{i}]` contains NaN or Inf; clean the audio first")
        out.append(w.to(torch.float32))
    hints: list[str | None] = [None] * len(out) if languages is None else list(languages)
    if len(hints) != len(out):
        raise ValueError(f"`languages` has {len(hints)} entries for {len(out)} clips; give one per clip or None")
    for i, h in enumerate(hints):
        if h is not None and not isinstance(h, str):
            raise ValueError(f"`languages[{i}]` must be a string or None, got {type(h).__name__}")
    return out, hints


def language_code(hint: str | None, codes: Iterable[str], aliases: dict[str, str] | None = None) -> str | None:
    """Map a free-form hint to one of ``codes``, or ``None``.

    Tried in order: the hint itself, ``aliases[hint]`` (e.g. Whisper's ``TO_LANGUAGE_CODE``: ``"english"`` ->
    ``"en"``), and the part before ``-``/``_`` (``"zh-CN"`` -> ``"zh"``); all case-insensitive.

    Example:
        >>> language_code("zh-CN", ["en", "zh"]), language_code("English", ["en"], {"english": "en"})
        ('zh', 'en')
    """
    if hint is None:
        return None
    allowed = set(codes)
    key = hint.strip().lower()
    candidates = [key, (aliases or {}).get(key), key.replace("_", "-").split("-")[0]]
    return next((c for c in candidates if c in allowed), None)


class HintWarner:
    """Warn once per hint that a backbone cannot use (it then falls back to its own language detection)."""

    def __init__(self, backbone: str) -> None:
        self.backbone = backbone
        self._seen: set[str] = set()

    def __call__(self, hint: str) -> None:
        """Emit the warning for ``hint`` unless it was already emitted."""
        if hint not in self._seen:
            self._seen.add(hint)
            warnings.warn(
                f"language hint {hint!r} is not a language of {self.backbone}; it will detect the language itself",
                stacklevel=3,
            )


def check_random_init_config(
    config: Mapping[str, Any] | None, weights: Any, pretrained: bool, name: str = "config"
) -> None:
    """Reject architecture overrides (``config=``, ``dims=``) for a checkpoint load: they only shape random models.

    Raises:
        ValueError: ``config`` is given together with ``weights`` or ``pretrained=True``.

    Example:
        >>> check_random_init_config({"d_model": 64}, None, pretrained=False)
    """
    if config is not None and (weights is not None or pretrained):
        raise ValueError(f"`{name}` only applies to `pretrained=False`; a checkpoint defines its own shapes")


def language_batches(codes: Sequence[str | None], batch_size: int) -> Iterator[tuple[str | None, list[int]]]:
    """Clip indices in batches of at most ``batch_size`` that share one language code (one ``language=`` per call).

    Codes come in first-seen order, each one's clips in input order, so one code (all ``None``) gives the plain
    consecutive batches.

    Example:
        >>> list(language_batches(["en", None, "en", "en"], 2))
        [('en', [0, 2]), ('en', [3]), (None, [1])]
    """
    for code in dict.fromkeys(codes):
        idx = [i for i, c in enumerate(codes) if c == code]
        for start in range(0, len(idx), batch_size):
            yield code, idx[start : start + batch_size]


class ASRModule(nn.Module):
    """Base of the ASR backbones here: 16 kHz :attr:`sample_rate`, :attr:`device` of ``self.model``, ``forward``.

    Subclasses set ``self.model`` (the ``nn.Module`` holding the weights) and implement
    :meth:`ASRBackbone.transcribe`, which ``forward`` calls with FastVideo's ``force_language=False``.
    """

    sample_rate = ASR_SAMPLE_RATE
    model: nn.Module

    @property
    def device(self) -> torch.device:
        """Device of the model parameters."""
        return next(self.model.parameters()).device

    def forward(self, waves: Sequence[Tensor], languages: Sequence[str | None] | None = None) -> list[str]:
        """``transcribe(waves, languages, force_language=False)``."""
        return self.transcribe(waves, languages)
