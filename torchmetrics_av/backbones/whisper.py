"""OpenAI Whisper (``openai-whisper``) as a batched, deterministic speech recogniser for :class:`SpeechWordErrorRate`.

``.model`` is ``whisper.model.Whisper``, so the official ``{"dims", "model_state_dict"}`` checkpoints (MIT licence)
load strictly. Audio is given as 16 kHz tensors (the ffmpeg-based ``whisper.load_audio`` is never used), each clip is
``pad_or_trim``-med to 30 s *before* its log-mel is taken (so the ``max - 8`` dB floor is per clip, over the padded
window, as ``whisper.log_mel_spectrogram(whisper.pad_or_trim(audio))`` does; a batched log-mel would share the floor
across clips), and decoding is ``whisper.decode`` with ``task="transcribe"``, ``temperature=0`` (greedy),
``without_timestamps=True``, the default token suppression, and the language either forced from a hint or detected
per clip. Audio beyond 30 s is ignored, like FastVideo's Hugging Face processor does.

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones import Whisper
    >>> tiny = dict(n_audio_state=64, n_audio_head=2, n_audio_layer=1, n_text_state=64, n_text_head=2, n_text_layer=1)
    >>> asr = Whisper(pretrained=False, name="tiny", dims=tiny, sample_len=4)   # random weights, for a quick look
    >>> texts = asr([torch.zeros(16000), torch.zeros(8000)], ["en", None])
    >>> len(texts), all(isinstance(t, str) for t in texts)
    (2, True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchmetrics_av.backbones.asr import (
    ASRModule,
    HintWarner,
    check_asr_inputs,
    check_random_init_config,
    language_batches,
    language_code,
)
from torchmetrics_av.preprocessing import check_positive_int
from torchmetrics_av.weights import (
    CHECKPOINTS,
    WHISPER_ALIASES,
    Checkpoint,
    WeightsNotFoundError,
    checkpoint,
    file_digest,
    load_state_dict,
    resolve_checkpoint,
)

WHISPER_SAMPLE_RATE = 16000
DEFAULT_WHISPER_MODEL = "base"
# whisper.audio.N_SAMPLES: the encoder sees exactly 30 s (3000 mel frames).
WHISPER_WINDOW_SAMPLES = 30 * WHISPER_SAMPLE_RATE
WHISPER_LICENSE = "MIT"
# Clips decoded together; bounded so that a large update() does not hold 30-s encoder activations for all clips.
DEFAULT_BATCH_SIZE = 16

# ModelDimensions of the official checkpoints (the "dims" entry of each .pt file; reference/packages.md §2.2), so that
# Scale of the random decoder positional embedding of `pretrained=False` models (the usual transformer init scale).
RANDOM_POS_EMBED_STD = 0.02
# `pretrained=False` builds the exact architecture without a download. Multilingual vocab 51865, English-only 51864,
# large-v3/turbo 51866 with 128 mel bins.
_AUDIO_CTX, _TEXT_CTX = 1500, 448


def _dims(n_mels: int, vocab: int, width: int, heads: int, layers: int, text_layers: int | None = None) -> dict:
    return {
        "n_mels": n_mels,
        "n_audio_ctx": _AUDIO_CTX,
        "n_audio_state": width,
        "n_audio_head": heads,
        "n_audio_layer": layers,
        "n_vocab": vocab,
        "n_text_ctx": _TEXT_CTX,
        "n_text_state": width,
        "n_text_head": heads,
        "n_text_layer": layers if text_layers is None else text_layers,
    }


OFFICIAL_DIMS: dict[str, dict[str, int]] = {
    "tiny.en": _dims(80, 51864, 384, 6, 4),
    "tiny": _dims(80, 51865, 384, 6, 4),
    "base.en": _dims(80, 51864, 512, 8, 6),
    "base": _dims(80, 51865, 512, 8, 6),
    "small.en": _dims(80, 51864, 768, 12, 12),
    "small": _dims(80, 51865, 768, 12, 12),
    "medium.en": _dims(80, 51864, 1024, 16, 24),
    "medium": _dims(80, 51865, 1024, 16, 24),
    "large-v1": _dims(80, 51865, 1280, 20, 32),
    "large-v2": _dims(80, 51865, 1280, 20, 32),
    "large-v3": _dims(128, 51866, 1280, 20, 32),
    "large": _dims(128, 51866, 1280, 20, 32),
    "large-v3-turbo": _dims(128, 51866, 1280, 20, 32, text_layers=4),
    "turbo": _dims(128, 51866, 1280, 20, 32, text_layers=4),
}


def whisper_checkpoint(name: str) -> Checkpoint:
    """The checkpoint-table record of an official model (``whisper-<name>``; ``large`` / ``turbo`` are aliases).

    The table copies openai-whisper's ``_MODELS``: the URL path holds the file's SHA-256.

    Raises:
        ValueError: ``name`` is not an official model name.

    Example:
        >>> whisper_checkpoint("turbo").filename
        'whisper-large-v3-turbo.pt'
    """
    official = [
        c.name.removeprefix("whisper-")
        for c in CHECKPOINTS.values()
        if c.name.startswith("whisper-") and c.filename == f"{c.name}.pt"
    ]
    if name not in official and name not in WHISPER_ALIASES:
        raise ValueError(f"`name` must be one of {sorted([*official, *WHISPER_ALIASES])}, got {name!r}")
    return checkpoint(f"whisper-{WHISPER_ALIASES.get(name, name)}")


def whisper_language(hint: str | None, multilingual: bool = True, num_languages: int = 99) -> str | None:
    """Map a free-form language hint to a Whisper language code, or ``None`` to let Whisper detect the language.

    Accepted: a code (``"en"``), a name or alias of ``whisper.tokenizer.TO_LANGUAGE_CODE`` (``"English"``,
    ``"mandarin"``), or a tagged code (``"zh-CN"``, ``"en_US"``), all case-insensitive, restricted to the languages the
    model has. Anything else (``"cjk"``, ``"auto"``) gives ``None``. English-only models always get ``"en"``.

    Example:
        >>> whisper_language("English"), whisper_language("zh-CN"), whisper_language("cjk")
        ('en', 'zh', None)
    """
    if not multilingual:
        return "en"
    if hint is None:
        return None
    from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    return language_code(hint, list(LANGUAGES)[:num_languages], TO_LANGUAGE_CODE)


class Whisper(ASRModule):
    """Whisper speech recogniser: 16 kHz mono clips -> transcripts, greedy, batched.

    Args:
        weights: local official checkpoint ``{"dims": dict, "model_state_dict": state_dict}`` (what
            ``whisper.load_model`` reads). Its ``dims`` define the architecture (``name`` then only labels it).
        pretrained: load the official checkpoint of ``name`` (``weights``, else the cache, else a download).
            ``False`` keeps a random initialisation of ``name``'s architecture and needs no network.
        name: official model name (``"tiny"``, ``"base"``, ``"small"``, ``"medium"``, ``"large-v3"``, ``"turbo"``,
            the ``.en`` variants, ...).
        dims: ``ModelDimensions`` overrides for ``pretrained=False`` (small test models).
        sample_len: maximum number of sampled tokens per clip (``None`` = Whisper's default ``n_text_ctx // 2``,
            224 for the official models).
        batch_size: clips per ``whisper.decode`` call.
        cache_dir: checkpoint cache override (default ``$TORCHMETRICS_AV_CACHE``).

    Attributes:
        model: ``whisper.model.Whisper``; ``state_dict()`` keys and shapes equal the official checkpoint's.
        checkpoint_id: provenance string, ``"<name>@sha256:<digest>"`` or ``"random-init"``.
    """

    # precision= (torchmetrics_av.precision): the audio encoder under autocast; greedy decoding stays float32.
    autocast_modules = ("model.encoder",)

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        name: str = DEFAULT_WHISPER_MODEL,
        *,
        dims: Mapping[str, int] | None = None,
        sample_len: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        import whisper
        from whisper.model import ModelDimensions

        if sample_len is not None and (not isinstance(sample_len, int) or sample_len < 1):
            raise ValueError(f"`sample_len` must be a positive int or None, got {sample_len!r}")
        check_random_init_config(dims, weights, pretrained, "dims")
        self.name = name
        self.sample_len = sample_len
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.checkpoint_id = "random-init"
        self._warn = HintWarner("this Whisper model")
        if weights is not None or pretrained:
            if weights is None:
                ckpt = whisper_checkpoint(name)
                path = resolve_checkpoint(ckpt.name, cache_dir=cache_dir)
                label = ckpt.name
            else:
                path = Path(weights).expanduser()
                if not path.is_file():
                    raise WeightsNotFoundError(
                        f"`weights={str(weights)!r}` does not exist (expected an openai-whisper .pt checkpoint)"
                    )
                label = path.name
            state = load_state_dict(path)
            if not isinstance(state, dict) or not {"dims", "model_state_dict"} <= set(state):
                found = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
                raise ValueError(
                    f"`weights={str(path)!r}` is not an openai-whisper checkpoint: expected the keys 'dims' and "
                    f"'model_state_dict', found {found}"
                )
            self.model = whisper.model.Whisper(ModelDimensions(**state["dims"]))
            self.model.load_state_dict(state["model_state_dict"], strict=True)
            if weights is None and name in whisper._ALIGNMENT_HEADS:
                # What whisper.load_model does for official names; only word timestamps use it.
                self.model.set_alignment_heads(whisper._ALIGNMENT_HEADS[name])
            self.checkpoint_id = f"{label}@sha256:{file_digest(path)[:16]}"
        else:
            if name not in OFFICIAL_DIMS:
                raise ValueError(f"`name` must be one of {sorted(OFFICIAL_DIMS)}, got {name!r}")
            self.model = whisper.model.Whisper(ModelDimensions(**{**OFFICIAL_DIMS[name], **dict(dims or {})}))
            # openai-whisper leaves the decoder's positional embedding as torch.empty (a checkpoint always fills it):
            # draw it from torch's RNG like every other random weight, so a seeded random model is reproducible.
            with torch.no_grad():
                self.model.decoder.positional_embedding.normal_(0.0, RANDOM_POS_EMBED_STD)
        self.eval()

    # ----------------------------------------------------------------------------------------------------------------

    def language_code(self, hint: str | None) -> str | None:
        """The Whisper language code for ``hint`` (see :func:`whisper_language`); warns once per unknown hint."""
        code = whisper_language(hint, self.model.is_multilingual, self.model.num_languages)
        if hint is not None and code is None:
            self._warn(hint)
        return code

    def log_mel(self, audio: Sequence[Tensor]) -> Tensor:
        """``whisper.log_mel_spectrogram(whisper.pad_or_trim(clip))`` for each clip, stacked.

        Args:
            audio: ``(T,)`` float 16 kHz clips of any lengths (longer than 30 s: only the first 30 s are used).

        Returns:
            ``(B, n_mels, 3000)`` float32 on the model's device.
        """
        import whisper

        mels = []
        for i, clip in enumerate(audio):
            if not isinstance(clip, Tensor) or clip.ndim != 1 or clip.numel() == 0:
                raise ValueError(f"`audio[{i}]` must be a non-empty (T,) 16 kHz tensor, got {clip!r:.80}")
            x = whisper.pad_or_trim(clip.to(self.device, torch.float32), WHISPER_WINDOW_SAMPLES)
            mels.append(whisper.log_mel_spectrogram(x, n_mels=self.model.dims.n_mels))
        return torch.stack(mels)

    @torch.no_grad()
    def decode(self, audio: Sequence[Tensor], languages: Sequence[str | None] | None = None) -> list[Any]:
        """Greedy decoding of each clip, batched; returns ``whisper.DecodingResult`` objects in input order.

        Clips are grouped by their resolved language (one ``DecodingOptions.language`` per ``whisper.decode`` call;
        ``None`` = per-clip detection), then decoded ``batch_size`` at a time. A clip's result does not depend on the
        other clips of its batch beyond float rounding.

        Args:
            audio: ``(T,)`` float 16 kHz clips.
            languages: one hint per clip (``None`` entries = detect), or ``None`` for all.
        """
        import whisper

        audio = list(audio)
        hints = [None] * len(audio) if languages is None else list(languages)
        if len(hints) != len(audio):
            raise ValueError(f"`languages` has {len(hints)} entries for {len(audio)} clips")
        codes = [self.language_code(h) for h in hints]
        fp16 = next(self.model.parameters()).dtype == torch.float16
        results: list[Any] = [None] * len(audio)
        for code, chunk in language_batches(codes, self.batch_size):
            options = whisper.DecodingOptions(
                task="transcribe",
                language=code,
                temperature=0.0,
                without_timestamps=True,
                sample_len=self.sample_len,
                fp16=fp16,
            )
            mel = self.log_mel([audio[i] for i in chunk])
            for i, res in zip(chunk, whisper.decode(self.model, mel, options)):
                results[i] = res
        return results

    def forward(self, audio: Sequence[Tensor], languages: Sequence[str | None] | None = None) -> list[str]:
        """Transcribe 16 kHz clips; the ``asr`` signature of :class:`SpeechWordErrorRate`.

        Args:
            audio: ``(T,)`` float 16 kHz clips of any lengths.
            languages: one hint per clip (code or name; ``None`` or unknown = detect), or ``None`` for all.

        Returns:
            One ``strip()``-ped transcript per clip.
        """
        return [res.text for res in self.decode(audio, languages)]

    def transcribe(
        self,
        waves: Sequence[Tensor],
        languages: Sequence[str | None] | None = None,
        force_language: bool = False,
    ) -> list[str]:
        """The common ASR interface (:class:`~torchmetrics_av.backbones.asr.ASRBackbone`).

        ``force_language=True`` forwards the hints (each one naming a Whisper language forces it); ``False``
        ignores them, so Whisper detects every clip's language.
        """
        waves, hints = check_asr_inputs(waves, languages)
        return self.forward(waves, hints if force_language else None)
