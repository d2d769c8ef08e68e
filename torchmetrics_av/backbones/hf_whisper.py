"""Hugging Face Whisper (``transformers``), FastVideo's default ``"whisper"`` WER backend, built offline.

FastVideo's ``audio.wer`` (``hao-ai-lab/FastVideo`` @ 2f3d4074, ``_transcribe_whisper``) runs, per clip::

    inputs = WhisperProcessor(audio_16k, sampling_rate=16000, return_tensors="pt")    # log-mel, pad/cut to 30 s
    ids = WhisperForConditionalGeneration.generate(input_features=inputs.input_features, max_new_tokens=256)
    text = processor.batch_decode(ids, skip_special_tokens=True)[0].strip()

with ``openai/whisper-base`` and its hub ``generation_config.json``: greedy, no language or task argument, so the
multilingual model detects the language (``forced_decoder_ids [[1, None], [2, <|transcribe|>]]``) and transcribes.
:class:`HFWhisper` runs exactly that, batched. The model is built from ``config.json`` + ``model.safetensors`` of the
checkpoint table's ``whisper-base/`` folder (pinned commit, verified digests; the layout ``torchmetrics-av download``
writes); the ``generation_config.json`` values are stored below as constants (public facts of the hub repository),
the feature extractor is ``WhisperFeatureExtractor`` with the hub ``preprocessor_config.json`` values, and the
tokenizer is built from openai-whisper's bundled ``multilingual.tiktoken`` (the same byte-level BPE and special
tokens, ids 0-51864), so no other hub file is read.

An official openai-whisper ``.pt`` (``{"dims", "model_state_dict"}``) loads too, through
:func:`openai_to_hf_state_dict` (the standard openai -> Hugging Face key mapping).

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones.hf_whisper import tiny_hf_whisper
    >>> asr = tiny_hf_whisper(max_new_tokens=3)          # random weights, real tokenizer, no network
    >>> texts = asr.transcribe([torch.zeros(16000), 0.1 * torch.randn(8000)], ["en", None])
    >>> len(texts), all(isinstance(t, str) for t in texts)
    (2, True)
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchmetrics_av.backbones.asr import (
    ASR_SAMPLE_RATE,
    ASRModule,
    HintWarner,
    check_asr_inputs,
    check_random_init_config,
    language_batches,
    language_code,
)
from torchmetrics_av.preprocessing import check_positive_int
from torchmetrics_av.weights import (
    HF_WHISPER_REVISION,
    WeightsNotFoundError,
    at_revision,
    checkpoint,
    file_digest,
    load_state_dict,
    resolve_files,
)

HF_WHISPER_REPO = "openai/whisper-base"
# HF_WHISPER_REVISION (from the checkpoint table): commit of openai/whisper-base on the hub (its model-info "sha",
# lastModified 2024-02-29, as quoted by several public repositories that pin it); the generation config below is the
# one of that tree (PR #29 long-form fix included).
# The checkpoint table's folder of openai/whisper-base files, and the two of them the model is built from (the
# processor and generation config are rebuilt from the constants below).
HF_WHISPER_FOLDER = "whisper-base"
HF_WHISPER_FILES = ("config.json", "model.safetensors")
# FastVideo: generate(input_features=..., max_new_tokens=256).
DEFAULT_MAX_NEW_TOKENS = 256
# Clips per generate() call; greedy decoding of a clip does not depend on its batch beyond float rounding.
DEFAULT_BATCH_SIZE = 16

# config.json of openai/whisper-base (the architecture fields; dropouts are 0 and unused in eval).
WHISPER_BASE_CONFIG: dict[str, Any] = {
    "vocab_size": 51865,
    "num_mel_bins": 80,
    "d_model": 512,
    "encoder_layers": 6,
    "encoder_attention_heads": 8,
    "encoder_ffn_dim": 2048,
    "decoder_layers": 6,
    "decoder_attention_heads": 8,
    "decoder_ffn_dim": 2048,
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "activation_function": "gelu",
    "scale_embedding": False,
    "pad_token_id": 50257,
    "bos_token_id": 50257,
    "eos_token_id": 50257,
    "decoder_start_token_id": 50258,
}

# Token ids of the multilingual (99-language) Whisper vocabulary: 50257 byte-level BPE tokens, then the specials in
# openai-whisper's order (whisper/tokenizer.py): eot, sot, 99 languages, translate, transcribe, startoflm,
# startofprev, nospeech, notimestamps, then 1501 timestamps <|0.00|> ... <|30.00|>.
N_TEXT_TOKENS = 50257
N_LANGUAGES = 99
EOT, SOT = 50257, 50258
LANGUAGE_TOKEN_START = 50259
TRANSLATE = LANGUAGE_TOKEN_START + N_LANGUAGES
TRANSCRIBE, START_OF_LM, START_OF_PREV, NO_SPEECH, NO_TIMESTAMPS = range(TRANSLATE + 1, TRANSLATE + 6)
N_TIMESTAMPS = 1501
SPACE_TOKEN = 220  # " " in the GPT-2 byte-level BPE

# generation_config.json "suppress_tokens" of openai/whisper-base: openai-whisper's non-speech symbols ("-1" in
# DecodingOptions) plus sot, translate, transcribe, startoflm, startofprev, nospeech.
WHISPER_BASE_SUPPRESS_TOKENS: tuple[int, ...] = (
    1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92, 93, 359, 503, 522, 542, 873,
    893, 902, 918, 922, 931, 1350, 1853, 1982, 2460, 2627, 3246, 3253, 3268, 3536, 3846, 3961, 4183, 4667, 6585,
    6647, 7273, 9061, 9383, 10428, 10929, 11938, 12033, 12331, 12562, 13793, 14157, 14635, 15265, 15618, 16553,
    16604, 18362, 18956, 20075, 21675, 22520, 26130, 26161, 26435, 28279, 29464, 31650, 32302, 32470, 36865, 42863,
    47425, 49870, 50254, SOT, TRANSLATE, TRANSCRIBE, START_OF_LM, START_OF_PREV, NO_SPEECH,
)  # fmt: skip


def _language_codes() -> list[str]:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    # transformers' table is openai-whisper's LANGUAGES (same order); base has the first 99 (no "yue").
    return list(LANGUAGES)[:N_LANGUAGES]


def whisper_base_generation_config() -> dict[str, Any]:
    """The ``generation_config.json`` values of ``openai/whisper-base`` that ``generate`` reads.

    ``alignment_heads`` (word timestamps only) and ``transformers_version`` are left out.

    Example:
        >>> cfg = whisper_base_generation_config()
        >>> cfg["forced_decoder_ids"], cfg["lang_to_id"]["<|en|>"], cfg["no_timestamps_token_id"]
        ([[1, None], [2, 50359]], 50259, 50363)
    """
    return {
        "begin_suppress_tokens": [SPACE_TOKEN, EOT],
        "bos_token_id": EOT,
        "decoder_start_token_id": SOT,
        "eos_token_id": EOT,
        "pad_token_id": EOT,
        # Language left open (detected), task forced to transcribe: the hub default that FastVideo relies on.
        "forced_decoder_ids": [[1, None], [2, TRANSCRIBE]],
        "is_multilingual": True,
        "lang_to_id": {f"<|{code}|>": LANGUAGE_TOKEN_START + i for i, code in enumerate(_language_codes())},
        "task_to_id": {"translate": TRANSLATE, "transcribe": TRANSCRIBE},
        "max_initial_timestamp_index": 50,
        "max_length": 448,
        "no_timestamps_token_id": NO_TIMESTAMPS,
        "prev_sot_token_id": START_OF_PREV,
        "return_timestamps": False,
        "suppress_tokens": list(WHISPER_BASE_SUPPRESS_TOKENS),
    }


def hf_whisper_folder(
    revision: str = HF_WHISPER_REVISION,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """The folder holding the two ``openai/whisper-base`` files the model is built from (:data:`HF_WHISPER_FILES`,
    entries ``whisper-base/config.json`` and ``whisper-base/model.safetensors`` of the checkpoint table), taken from
    the cache and downloaded and verified where missing.

    At the table's pinned ``revision`` their third-party / publisher SHA-256 and sizes are checked; any other commit is
    fetched into ``whisper-base@<revision>/`` and checked only against the digests recorded at its first download
    (no table digest applies to it).

    Raises:
        ValueError: ``revision`` is not a 40-hex-digit commit (a branch name would not pin the download).
        WeightsNotFoundError: files missing offline or not downloadable (all named, with URLs and ``weights=``).

    Example:
        >>> from torchmetrics_av.weights import checkpoint
        >>> checkpoint(f"{HF_WHISPER_FOLDER}/model.safetensors").revision == HF_WHISPER_REVISION
        True
    """
    if not re.fullmatch(r"[0-9a-f]{40}", revision):
        raise ValueError(f"`revision` must be a 40-hex-digit commit of {HF_WHISPER_REPO}, got {revision!r}")
    entries = [at_revision(checkpoint(f"{HF_WHISPER_FOLDER}/{f}"), revision) for f in HF_WHISPER_FILES]
    paths = resolve_files(entries, cache_dir=cache_dir, weights_hint=f"a folder with {' + '.join(HF_WHISPER_FILES)}")
    return paths[0].parent


# ---------------------------------------------------------------------------------------------------------------------
# openai-whisper -> Hugging Face

_BLOCK_RENAMES = (
    (".attn.query.", ".self_attn.q_proj."),
    (".attn.key.", ".self_attn.k_proj."),
    (".attn.value.", ".self_attn.v_proj."),
    (".attn.out.", ".self_attn.out_proj."),
    (".attn_ln.", ".self_attn_layer_norm."),
    (".cross_attn.query.", ".encoder_attn.q_proj."),
    (".cross_attn.key.", ".encoder_attn.k_proj."),
    (".cross_attn.value.", ".encoder_attn.v_proj."),
    (".cross_attn.out.", ".encoder_attn.out_proj."),
    (".cross_attn_ln.", ".encoder_attn_layer_norm."),
    (".mlp.0.", ".fc1."),
    (".mlp.2.", ".fc2."),
    (".mlp_ln.", ".final_layer_norm."),
)
_TOP_RENAMES = {
    "encoder.positional_embedding": "model.encoder.embed_positions.weight",
    "decoder.positional_embedding": "model.decoder.embed_positions.weight",
    "decoder.token_embedding.weight": "model.decoder.embed_tokens.weight",
}
_TOP_PREFIXES = (
    ("encoder.conv1.", "model.encoder.conv1."),
    ("encoder.conv2.", "model.encoder.conv2."),
    ("encoder.ln_post.", "model.encoder.layer_norm."),
    ("decoder.ln.", "model.decoder.layer_norm."),
)
_BLOCK_KEY = re.compile(r"(encoder|decoder)\.blocks\.(\d+)(\..+)")


def openai_to_hf_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an openai-whisper ``model_state_dict`` to ``WhisperForConditionalGeneration`` keys.

    ``decoder.token_embedding.weight`` also becomes ``proj_out.weight`` (the output projection is tied to it in both
    models). Non-persistent buffers (``decoder.mask``, ``alignment_heads``) are not in a state dict and not needed.

    Args:
        state: ``whisper.model.Whisper.state_dict()`` or the ``"model_state_dict"`` of an official ``.pt``.

    Raises:
        ValueError: a key that is not an openai-whisper parameter name.

    Example:
        >>> import torch
        >>> sd = {"encoder.blocks.0.attn.query.weight": torch.zeros(1), "decoder.blocks.1.mlp.2.bias": torch.zeros(1)}
        >>> sorted(openai_to_hf_state_dict(sd))
        ['model.decoder.layers.1.fc2.bias', 'model.encoder.layers.0.self_attn.q_proj.weight']
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key in _TOP_RENAMES:
            new = _TOP_RENAMES[key]
        elif match := _BLOCK_KEY.fullmatch(key):
            tower, index, rest = match.groups()
            for old, repl in _BLOCK_RENAMES:
                if rest.startswith(old):
                    rest = repl + rest[len(old) :]
                    break
            else:
                raise ValueError(f"`state` key {key!r} is not an openai-whisper block parameter")
            new = f"model.{tower}.layers.{index}{rest}"
        else:
            prefix = next((p for p in _TOP_PREFIXES if key.startswith(p[0])), None)
            if prefix is None:
                raise ValueError(f"`state` key {key!r} is not an openai-whisper parameter name")
            new = prefix[1] + key[len(prefix[0]) :]
        out[new] = value
    if "model.decoder.embed_tokens.weight" in out:
        out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]
    return out


def hf_config_from_openai_dims(dims: Mapping[str, int]) -> dict[str, Any]:
    """``WhisperConfig`` keyword arguments for openai-whisper ``ModelDimensions`` (FFN width 4 x d, like openai).

    Raises:
        ValueError: audio and text widths differ (Hugging Face Whisper has one ``d_model``).
    """
    if dims["n_audio_state"] != dims["n_text_state"]:
        raise ValueError(f"`dims` has n_audio_state {dims['n_audio_state']} != n_text_state {dims['n_text_state']}")
    width = dims["n_audio_state"]
    return {
        **WHISPER_BASE_CONFIG,
        "vocab_size": dims["n_vocab"],
        "num_mel_bins": dims["n_mels"],
        "d_model": width,
        "encoder_layers": dims["n_audio_layer"],
        "encoder_attention_heads": dims["n_audio_head"],
        "encoder_ffn_dim": 4 * width,
        "decoder_layers": dims["n_text_layer"],
        "decoder_attention_heads": dims["n_text_head"],
        "decoder_ffn_dim": 4 * width,
        "max_source_positions": dims["n_audio_ctx"],
        "max_target_positions": dims["n_text_ctx"],
    }


# ---------------------------------------------------------------------------------------------------------------------
# offline processor


def _tiktoken_file() -> Path:
    spec = importlib.util.find_spec("whisper")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "HFWhisper builds its tokenizer from openai-whisper's bundled vocabulary: pip install openai-whisper "
            '(or pip install "torchmetrics-av[asr]")'
        )
    path = Path(spec.origin).parent / "assets" / "multilingual.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the openai-whisper installation; reinstall openai-whisper")
    return path


@functools.lru_cache(maxsize=1)
def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    from transformers.convert_slow_tokenizer import TikTokenConverter

    return TikTokenConverter().extract_vocab_merges_from_model(str(_tiktoken_file()))


def whisper_tokenizer() -> Any:
    """A ``transformers`` ``WhisperTokenizer`` for the multilingual 99-language vocabulary, built offline.

    Byte-level BPE vocabulary and merges from openai-whisper's ``multilingual.tiktoken``; specials added in
    openai-whisper's id order as special tokens (skipped by ``skip_special_tokens``), timestamps as ordinary added
    tokens (the hub tokenizer's layout; the Whisper decoder strips them from the text).

    Example:
        >>> tok = whisper_tokenizer()
        >>> tok.convert_tokens_to_ids(["<|endoftext|>", "<|en|>", "<|notimestamps|>", "<|30.00|>"])
        [50257, 50259, 50363, 51864]
        >>> tok.decode([50258, 50259, 50359, 50363, 440, 1702, 50257], skip_special_tokens=True)
        ' The quick'
    """
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer

    vocab, merges = _vocab_and_merges()
    if len(vocab) != N_TEXT_TOKENS:
        raise ValueError(f"{_tiktoken_file()} has {len(vocab)} tokens, expected {N_TEXT_TOKENS}")
    tok = WhisperTokenizer(vocab=dict(vocab), merges=list(merges), clean_up_tokenization_spaces=False)
    specials = [
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in _language_codes()),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]
    tok.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, normalized=False, special=True) for t in specials]}
    )
    tok.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False, special=False) for i in range(N_TIMESTAMPS)])
    got = tok.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|30.00|>"])
    if got != [EOT, SOT, NO_TIMESTAMPS, NO_TIMESTAMPS + N_TIMESTAMPS]:
        raise RuntimeError(f"offline Whisper tokenizer has special ids {got}; expected the openai-whisper layout")
    return tok


def whisper_processor() -> Any:
    """``WhisperProcessor`` = ``WhisperFeatureExtractor`` (hub ``preprocessor_config.json`` values) + the tokenizer.

    The hub config's values are the extractor's defaults for 80 mel bins: 16 kHz, n_fft 400, hop 160, 30-s chunks,
    padding value 0, no attention mask; the stored ``mel_filters`` are recomputed by the extractor in any case.
    """
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    fe = WhisperFeatureExtractor(
        feature_size=WHISPER_BASE_CONFIG["num_mel_bins"],
        sampling_rate=ASR_SAMPLE_RATE,
        hop_length=160,
        chunk_length=30,
        n_fft=400,
        padding_value=0.0,
        return_attention_mask=False,
    )
    return WhisperProcessor(feature_extractor=fe, tokenizer=whisper_tokenizer())


# ---------------------------------------------------------------------------------------------------------------------


def _state_from_weights(path: Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """(HF state dict, HF config kwargs or None for whisper-base) from a user file or folder."""
    if path.is_dir():
        file = path / "model.safetensors"
        if not file.is_file():
            raise WeightsNotFoundError(f"`weights={str(path)!r}` is a folder without model.safetensors")
        cfg_file = path / "config.json"
        cfg = None
        if cfg_file.is_file():
            raw = json.loads(cfg_file.read_text())
            cfg = {k: raw[k] for k in WHISPER_BASE_CONFIG if k in raw}
        return load_state_dict(file), cfg
    state = load_state_dict(path)
    if isinstance(state, dict) and {"dims", "model_state_dict"} <= set(state):
        return openai_to_hf_state_dict(state["model_state_dict"]), hf_config_from_openai_dims(state["dims"])
    if isinstance(state, dict) and any(k.startswith("model.encoder.") for k in state):
        return state, None
    found = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
    raise ValueError(
        f"`weights={str(path)!r}` is neither an openai-whisper checkpoint ('dims', 'model_state_dict') nor a "
        f"Hugging Face Whisper state dict ('model.encoder.*'); found {found}"
    )


class HFWhisper(ASRModule):
    """Hugging Face Whisper (default ``openai/whisper-base``): 16 kHz clips -> transcripts, FastVideo's WER ASR.

    Args:
        weights: a local file or folder: ``model.safetensors`` of a Hugging Face Whisper (whisper-base shapes unless
            a ``config.json`` sits beside it in the folder), or an openai-whisper ``.pt`` (``{"dims",
            "model_state_dict"}``, mapped by :func:`openai_to_hf_state_dict`).
        pretrained: load ``openai/whisper-base``: ``weights``, else the checkpoint table's ``whisper-base/`` folder
            in the cache (what ``torchmetrics-av download hf-whisper`` writes), downloaded and verified where
            missing (see :func:`hf_whisper_folder`). ``False`` keeps a random whisper-base (or ``config``) model.
        revision: hub commit of ``openai/whisper-base``; the default is the table's pinned commit, whose published
            digests are checked. Another commit is downloaded to ``whisper-base@<revision>/`` and no table digest
            applies to it (only the SHA-256 recorded at its first download is checked later).
        config: ``WhisperConfig`` overrides for ``pretrained=False`` (small test models); the vocabulary must stay
            the multilingual 51865 tokens so the tokenizer and generation config apply.
        max_new_tokens: generation cap per clip (FastVideo: 256).
        batch_size: clips per ``generate`` call.
        cache_dir: checkpoint cache override (default ``$TORCHMETRICS_AV_CACHE``).

    Attributes:
        model: ``transformers.WhisperForConditionalGeneration`` with the hub generation config.
        processor: ``transformers.WhisperProcessor`` (feature extractor + tokenizer).
        checkpoint_id: provenance, ``"<name>@sha256:<digest>"`` or ``"random-init"``.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        revision: str = HF_WHISPER_REVISION,
        *,
        config: Mapping[str, Any] | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

        check_random_init_config(config, weights, pretrained)
        self.max_new_tokens = check_positive_int(max_new_tokens, "max_new_tokens")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.checkpoint_id = "random-init"
        state = None
        cfg = dict(WHISPER_BASE_CONFIG)
        if weights is not None:
            path = Path(weights).expanduser()
            if not path.exists():
                raise WeightsNotFoundError(f"`weights={str(weights)!r}` does not exist (expected a Whisper checkpoint)")
            state, file_cfg = _state_from_weights(path)
            cfg.update(file_cfg or {})
            digest = file_digest(path if path.is_file() else path / "model.safetensors")
            self.checkpoint_id = f"{path.name}@sha256:{digest[:16]}"
        elif pretrained:
            folder = hf_whisper_folder(revision, cache_dir=cache_dir)
            state, file_cfg = _state_from_weights(folder)
            cfg.update(file_cfg or {})
            label = checkpoint(f"{HF_WHISPER_FOLDER}/model.safetensors").name
            label += "" if revision == HF_WHISPER_REVISION else f"@{revision}"
            self.checkpoint_id = f"{label}@sha256:{file_digest(folder / 'model.safetensors')[:16]}"
        else:
            cfg.update(config or {})
        if cfg["vocab_size"] != WHISPER_BASE_CONFIG["vocab_size"]:
            raise ValueError(
                f"vocab_size {cfg['vocab_size']} is not the multilingual 99-language Whisper vocabulary "
                f"({WHISPER_BASE_CONFIG['vocab_size']}); only those models share whisper-base's tokenizer and "
                "generation config"
            )
        self.model = WhisperForConditionalGeneration(WhisperConfig(**cfg))
        if state is not None:
            state = dict(state)
            # Hub safetensors files store the tied output projection once, as the token embedding.
            state.setdefault("proj_out.weight", state.get("model.decoder.embed_tokens.weight"))
            self.model.load_state_dict(state, strict=True)
        self.model.generation_config = GenerationConfig(**whisper_base_generation_config())
        self.processor = whisper_processor()
        self._lang_codes = [t[2:-2] for t in self.model.generation_config.lang_to_id]
        self._warn = HintWarner("this Whisper model")
        self.eval()

    def features(self, waves: Sequence[Tensor]) -> Tensor:
        """``WhisperProcessor`` log-mel of each clip (first 30 s, zero-padded), ``(B, 80, 3000)`` in the model dtype.

        The ``max - 8`` floor is taken per clip over its padded 30-s window, as for one clip at a time.
        """
        waves, _ = check_asr_inputs(waves)
        arrays = [w.detach().cpu().numpy() for w in waves]
        feats = self.processor(arrays, sampling_rate=ASR_SAMPLE_RATE, return_tensors="pt").input_features
        return feats.to(self.device, next(self.model.parameters()).dtype)

    def language_code(self, hint: str | None) -> str | None:
        """Whisper language code of ``hint`` (``"English"``, ``"zh-CN"``, ...) or ``None``; warns once if unknown."""
        from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

        code = language_code(hint, self._lang_codes, TO_LANGUAGE_CODE)
        if hint is not None and code is None:
            self._warn(hint)
        return code

    @torch.no_grad()
    def generate_tokens(
        self,
        waves: Sequence[Tensor],
        languages: Sequence[str | None] | None = None,
        force_language: bool = False,
        max_new_tokens: int | None = None,
    ) -> list[list[int]]:
        """Greedy ``generate`` per clip; returns the sampled token ids (no prompt, no end-of-text), in input order.

        With ``force_language`` each clip's hint that names a Whisper language is passed as ``language=``; clips
        without one (and all clips otherwise) detect their language, as FastVideo does.
        """
        waves, hints = check_asr_inputs(waves, languages)
        codes = [self.language_code(h) if force_language else None for h in hints]
        limit = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        out: list[list[int]] = [[] for _ in waves]
        for code, chunk in language_batches(codes, self.batch_size):
            kwargs = {} if code is None else {"language": code}
            ids = self.model.generate(
                input_features=self.features([waves[i] for i in chunk]), max_new_tokens=limit, **kwargs
            )
            for i, row in zip(chunk, ids.tolist()):
                # Batched rows are right-padded with the pad (= end-of-text) token.
                out[i] = row[: row.index(EOT)] if EOT in row else row
        return out

    def decode(self, tokens: Sequence[Sequence[int]]) -> list[str]:
        """``processor.batch_decode(tokens, skip_special_tokens=True)``, each ``strip()``-ped (FastVideo)."""
        return [t.strip() for t in self.processor.batch_decode([list(t) for t in tokens], skip_special_tokens=True)]

    def transcribe(
        self,
        waves: Sequence[Tensor],
        languages: Sequence[str | None] | None = None,
        force_language: bool = False,
    ) -> list[str]:
        """Transcribe 16 kHz clips (see :class:`~torchmetrics_av.backbones.asr.ASRBackbone`).

        ``force_language=False`` (default) is FastVideo's path: the hints are ignored and Whisper detects the
        language of every clip.
        """
        return self.decode(self.generate_tokens(waves, languages, force_language))


def tiny_hf_whisper(**overrides: Any) -> HFWhisper:
    """A small random :class:`HFWhisper` (1 layer, width 64) with the real tokenizer and generation config; offline.

    The timestamp rows of the (tied) token embedding are zeroed, so their logits are 0 and a random model never
    predicts a timestamp pair, which would make ``generate`` re-seek through the 30-s window (slow, and not what
    a real checkpoint does after ``<|notimestamps|>``). ``overrides`` go to :class:`HFWhisper` (``config=`` entries
    are merged into the tiny config).
    """
    config = {
        "d_model": 64,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 128,
        "decoder_layers": 1,
        "decoder_attention_heads": 2,
        "decoder_ffn_dim": 128,
        **dict(overrides.pop("config", None) or {}),
    }
    asr = HFWhisper(pretrained=False, config=config, **overrides)
    with torch.no_grad():
        asr.model.model.decoder.embed_tokens.weight[NO_TIMESTAMPS + 1 :] = 0.0
    return asr
