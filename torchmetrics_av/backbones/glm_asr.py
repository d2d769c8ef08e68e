r"""GLM-ASR (``zai-org/GLM-ASR-Nano-2512``) through transformers' built-in ``GlmAsr*`` classes: FastVideo's ``glm_asr``.

FastVideo (``audio.wer`` @ 2f3d4074, ``_transcribe_glm_asr``) builds the prompt by hand and runs, per clip::

    prompt = "<|user|>\\n<|begin_of_audio|>{audio_token}<|end_of_audio|>\\n{instruction}\\n<|assistant|>\\n"
    inputs = processor(text=prompt, audio=audio_16k, return_tensors="pt")   # floats cast to the model dtype
    out = model.generate(**inputs, max_new_tokens=256, do_sample=False)
    text = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip()

with ``instruction="Please transcribe this audio into text"`` and ``audio_token="<|pad|>"``. The processor splits the
audio into 30-s Whisper-feature windows (up to 655 s) and repeats the audio token once per encoder output frame.
FastVideo vendors these classes from transformers 5.8; here they come from the installed transformers (>= 5.0 has
them). No language is ever given to the model, so ``force_language`` has no effect.

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones.glm_asr import tiny_glm_asr
    >>> asr = tiny_glm_asr(max_new_tokens=3)          # random weights, byte-level toy tokenizer, no network
    >>> texts = asr.transcribe([torch.zeros(16000), 0.1 * torch.randn(8000)])
    >>> len(texts), all(isinstance(t, str) for t in texts)
    (2, True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from torchmetrics_av.backbones.asr import (
    ASR_SAMPLE_RATE,
    ASRModule,
    check_asr_inputs,
    check_random_init_config,
)
from torchmetrics_av.preprocessing import check_positive_int
from torchmetrics_av.weights import resolve_folder

GLM_ASR_REPO = "zai-org/GLM-ASR-Nano-2512"
# The checkpoint table's snapshot folder of that repository (every file, listed by the hub with its LFS SHA-256).
GLM_ASR_FOLDER = "GLM-ASR-Nano-2512"
# No commit of the hub repository could be verified offline (a mirror quotes the short hash 61ba4e0b3309), so the
# table entry follows "main"; pin one with `revision=` for reproducible downloads.
GLM_ASR_REVISION = "main"
GLM_ASR_LICENSE = "MIT"
# FastVideo's WERMetric(instruction=...) default and generate(max_new_tokens=256, do_sample=False).
DEFAULT_INSTRUCTION = "Please transcribe this audio into text"
DEFAULT_MAX_NEW_TOKENS = 256
# Clips per generate() call (left-padded prompts); FastVideo runs one clip at a time.
DEFAULT_BATCH_SIZE = 1
PROMPT_TEMPLATE = "<|user|>\n<|begin_of_audio|>{audio_token}<|end_of_audio|>\n{instruction}\n<|assistant|>\n"
# GLM chat special tokens the prompt and the end-of-turn rule use (the hub tokenizer has them; the toy one adds them).
GLM_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_audio|>",
    "<|end_of_audio|>",
    "<|pad|>",
)
# Whisper-large-style 128-bin log-mel of the hub processor (GlmAsrConfig.audio_config.num_mel_bins = 128).
GLM_ASR_MEL_BINS = 128


def glm_prompt(audio_token: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """FastVideo's hand-built GLM-ASR prompt.

    Example:
        >>> print(glm_prompt("<|pad|>"))
        <|user|>
        <|begin_of_audio|><|pad|><|end_of_audio|>
        Please transcribe this audio into text
        <|assistant|>
        <BLANKLINE>
    """
    return PROMPT_TEMPLATE.format(audio_token=audio_token, instruction=instruction)


def toy_glm_tokenizer() -> Any:
    """A byte-level BPE tokenizer without merges (256 byte tokens) plus the GLM chat specials; offline, for tests."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": list(GLM_SPECIAL_TOKENS[1:])})
    return tok


def glm_asr_processor(tokenizer: Any) -> Any:
    """``GlmAsrProcessor``: a 128-bin ``WhisperFeatureExtractor`` (30-s windows, attention mask) and ``tokenizer``."""
    from transformers import GlmAsrProcessor, WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(
        feature_size=GLM_ASR_MEL_BINS, sampling_rate=ASR_SAMPLE_RATE, return_attention_mask=True
    )
    return GlmAsrProcessor(feature_extractor=fe, tokenizer=tokenizer)


class GLMASR(ASRModule):
    """GLM-ASR-Nano (1.5 B): 16 kHz clips -> transcripts with FastVideo's prompt and greedy ``generate``.

    Args:
        weights: a local snapshot folder of ``zai-org/GLM-ASR-Nano-2512`` (``config.json``, safetensors, tokenizer
            and processor files), loaded with ``from_pretrained``.
        pretrained: use ``weights``, else the checkpoint table's snapshot folder ``<cache>/GLM-ASR-Nano-2512/``
            (what ``torchmetrics-av download glm-asr`` writes; every file checked against the manifest there), else
            download it. ``False`` builds a random model from ``GlmAsrConfig`` (Nano sizes unless ``config``
            overrides them) with the toy tokenizer.
        revision: hub revision; another than the table's goes to ``<cache>/GLM-ASR-Nano-2512@<revision>/``.
        config: ``GlmAsrConfig`` overrides for ``pretrained=False`` (``audio_config``/``text_config`` dicts).
        instruction: the user instruction in the prompt (FastVideo's default).
        max_new_tokens: generation cap per clip (FastVideo: 256).
        batch_size: clips per ``generate`` call (left-padded); 1 reproduces FastVideo's per-clip calls.
        dtype: model dtype for ``pretrained`` loads (FastVideo: bf16 on CUDA, else fp32); ``None`` = fp32.
        cache_dir: cache folder override (default ``$TORCHMETRICS_AV_CACHE``).

    Attributes:
        model: ``transformers.GlmAsrForConditionalGeneration``.
        processor: ``transformers.GlmAsrProcessor``.
        checkpoint_id: provenance, ``"<repo>@<revision or folder>"`` or ``"random-init"``.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        revision: str = GLM_ASR_REVISION,
        *,
        config: Mapping[str, Any] | None = None,
        instruction: str = DEFAULT_INSTRUCTION,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dtype: torch.dtype | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoProcessor, GlmAsrConfig, GlmAsrForConditionalGeneration

        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"`instruction` must be a non-empty string, got {instruction!r}")
        check_random_init_config(config, weights, pretrained)
        self.instruction = instruction
        self.max_new_tokens = check_positive_int(max_new_tokens, "max_new_tokens")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if weights is not None or pretrained:
            folder = resolve_folder(
                GLM_ASR_FOLDER, weights, revision=revision, cache_dir=cache_dir, required=["config.json"]
            )
            self.processor = AutoProcessor.from_pretrained(str(folder))
            self.model = GlmAsrForConditionalGeneration.from_pretrained(str(folder), dtype=dtype or torch.float32)
            self.checkpoint_id = f"{GLM_ASR_REPO}@{revision if weights is None else folder.name}"
        else:
            tok = toy_glm_tokenizer()
            self.processor = glm_asr_processor(tok)
            cfg = dict(config or {})
            text = {
                "vocab_size": len(tok),
                "eos_token_id": tok.convert_tokens_to_ids(["<|endoftext|>", "<|user|>", "<|observation|>"]),
                **dict(cfg.pop("text_config", None) or {}),
            }
            cfg.setdefault("audio_token_id", self.processor.audio_token_id)
            self.model = GlmAsrForConditionalGeneration(GlmAsrConfig(text_config=text, **cfg))
            self.checkpoint_id = "random-init"
        self.eval()

    @property
    def prompt(self) -> str:
        """The text prompt (one audio placeholder, expanded by the processor)."""
        return glm_prompt(self.processor.audio_token, self.instruction)

    def _inputs(self, waves: Sequence[Tensor]) -> dict[str, Tensor]:
        arrays = [w.detach().cpu().numpy() for w in waves]
        batch = self.processor(text=[self.prompt] * len(arrays), audio=arrays, return_tensors="pt")
        dtype = next(self.model.parameters()).dtype
        out = {}
        for key, value in batch.items():
            if torch.is_tensor(value):
                # FastVideo's _move_to_device: move everything, cast only floats (the log-mel) to the model dtype.
                value = value.to(self.device)
                out[key] = value.to(dtype) if torch.is_floating_point(value) else value
        return out

    @torch.no_grad()
    def transcribe(
        self,
        waves: Sequence[Tensor],
        languages: Sequence[str | None] | None = None,
        force_language: bool = False,
    ) -> list[str]:
        """Transcribe 16 kHz clips (see :class:`~torchmetrics_av.backbones.asr.ASRBackbone`).

        GLM-ASR takes no language: ``languages`` are validated and ignored, ``force_language`` has no effect.
        """
        waves, _ = check_asr_inputs(waves, languages)
        texts: list[str] = []
        for start in range(0, len(waves), self.batch_size):
            inputs = self._inputs(waves[start : start + self.batch_size])
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            new = out[:, inputs["input_ids"].shape[1] :]
            texts.extend(t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True))
        return texts


def tiny_glm_asr(**overrides: Any) -> GLMASR:
    """A small random :class:`GLMASR` (1 audio + 1 text layer, width 32) with the toy tokenizer; offline.

    ``overrides`` go to :class:`GLMASR` (``config=`` entries replace the tiny ones).
    """
    config = {
        "audio_config": {
            "hidden_size": 32,
            # The projector merges 4 encoder frames: its input width is 4 x hidden_size.
            "intermediate_size": 128,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_mel_bins": GLM_ASR_MEL_BINS,
        },
        "text_config": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
        },
        **dict(overrides.pop("config", None) or {}),
    }
    return GLMASR(pretrained=False, config=config, **overrides)
