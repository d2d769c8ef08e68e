"""CLAP (LAION contrastive language-audio pretraining) on transformers' ``ClapModel``.

48 kHz audio and text -> 512-d unit-norm embeddings whose cosine is the CLAP score.

Two protocols, two official checkpoints:

* ``"fastvideo"`` (FastVideo ``audio.clap_score``): hub ``laion/clap-htsat-fused`` (HTSAT-tiny audio tower with AFF
  feature fusion, RoBERTa-base text tower, Apache-2.0). Every clip is handled as FastVideo's batch of one: a clip of at
  most 10 s is repeat-padded to 10 s and marked ``is_longer`` (4 identical mels through the fusion branch); a longer
  clip gets the whole-clip mel resized to 1001 frames plus three crops whose start frames are drawn from a fresh
  ``numpy.random.RandomState(crop_seed)`` per clip (the crops FastVideo makes after ``np.random.seed(crop_seed)``).
  Text is tokenised without padding or truncation (longer than 512 tokens is an error, as it overflows RoBERTa's
  positions).
* ``"av-benchmark"`` (hkchengrex/av-benchmark ``LAION-CLAP-Score``): laion_clap ``HTSAT-base`` without fusion and
  ``music_speech_audioset_epoch_15_esc_89.98.pt`` (CC0-1.0), loaded from the official laion ``.pt`` by renaming its
  keys to ``ClapModel``'s (``audio_branch`` -> ``audio_model.audio_encoder``, fused ``qkv`` split into
  query/key/value, ...). Repeat-pad to 10 s with the Slaney mel, text padded/truncated to 77 tokens, and the text
  tower's LayerNorm eps set to laion's 1e-5 (the hub conversions such as ``laion/larger_clap_general`` keep
  transformers' 1e-12, which moves text embeddings by ~3e-5).

The log-mel front end reproduces transformers' ``ClapFeatureExtractor`` (float64 STFT rounded to complex64, HTK mel
for fusion / Slaney mel otherwise, 50-14000 Hz, ``10*log10(max(mel, 1e-10))``) in batched torch, without its two
sources of batch dependence (a random ``is_longer`` and unseeded crops).

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones.clap import CLAP, small_clap_config
    >>> net = CLAP(pretrained=False, config=small_clap_config(fusion=True))   # tiny random model, no download
    >>> emb = net.embed_audio([torch.zeros(48000) + 0.1, torch.randn(600000) * 0.1])
    >>> emb.shape
    torch.Size([2, 16])
    >>> ids = torch.tensor([[0, 31414, 232, 2]])
    >>> net.embed_text_ids(ids, torch.ones_like(ids)).shape
    torch.Size([1, 16])
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchmetrics_av.preprocessing import as_text_list, protocol_waveform
from torchmetrics_av.protocols import LAION_TEXT_LAYER_NORM_EPS as LAION_TEXT_LAYER_NORM_EPS
from torchmetrics_av.protocols import LAION_TEXT_MAX_LENGTH as LAION_TEXT_MAX_LENGTH
from torchmetrics_av.protocols import ProtocolSpec, get_protocol
from torchmetrics_av.weights import (
    FASTVIDEO_CLAP_REVISION,
    WeightsNotFoundError,
    at_revision,
    checkpoint,
    file_digest,
    folder_checkpoints,
    is_offline,
    load_state_dict,
    resolve_checkpoint,
    resolve_files,
    resolve_folder,
)
from torchmetrics_av.weights import cache_dir as default_cache_dir

if TYPE_CHECKING:
    from transformers import ClapConfig, ClapModel

# ---------------------------------------------------------------------------------------------------------------------
# Constants (hub preprocessor_config.json of laion/clap-htsat-fused and laion/larger_clap_*; laion_clap audio_cfg).

CLAP_SAMPLE_RATE = 48000
# max_length_s 10 -> nb_max_samples 480000: every model window is 10 s.
CLAP_MAX_SAMPLES = 480000
CLAP_N_FFT = 1024
CLAP_HOP = 480
CLAP_N_MELS = 64
# frequency_min / frequency_max of the hub configs (the ClapFeatureExtractor constructor default fmin is 0).
CLAP_FMIN = 50.0
CLAP_FMAX = 14000.0
# spectrogram(mel_floor=1e-10) and power_to_db(min_value=1e-10): the -100 dB floor, no top_db.
CLAP_MEL_FLOOR = 1e-10
# A 10 s window has 1 + 480000 // 480 = 1001 centred STFT frames ("the +1 related to how the spectrogram is computed").
CLAP_CHUNK_FRAMES = CLAP_MAX_SAMPLES // CLAP_HOP + 1
# Fusion input: [whole clip resized, front crop, middle crop, back crop].
FUSION_CHANNELS = 4
# Crop seed of the goldens and of FastVideo runs seeded with np.random.seed(0).
DEFAULT_CROP_SEED = 0
# FastVideo's F.cosine_similarity(..., eps=1e-8) and torch.cosine_similarity's default in av-benchmark.
COSINE_EPS = 1e-8
# LAION_TEXT_MAX_LENGTH (laion_clap's 77-token tokenisation) and LAION_TEXT_LAYER_NORM_EPS (roberta-base's 1e-5) live
# in protocols.py now (AV_BENCHMARK's clap_text_* fields); they are imported above for existing imports.
# Clips per model forward (HTSAT at 10 s: ~0.1 GB of activations per clip in float32).
DEFAULT_BATCH_SIZE = 8

FASTVIDEO_REPO = "laion/clap-htsat-fused"
# Revision of laion/clap-htsat-fused whose config/preprocessor files the goldens were checked against (the checkpoint
# table pins the same one).
FASTVIDEO_REVISION = FASTVIDEO_CLAP_REVISION
# The checkpoint table's folder of laion/clap-htsat-fused files (config, model.safetensors, tokenizer files).
FASTVIDEO_FOLDER = "clap-htsat-fused"
# laion_clap's tokenizer source (RobertaTokenizer.from_pretrained("roberta-base")) and its checkpoint-table folder.
LAION_TOKENIZER_REPO = "FacebookAI/roberta-base"
LAION_TOKENIZER_FOLDER = "roberta-base"
AVBENCH_CHECKPOINT = checkpoint("laion_clap_music_speech_audioset_epoch_15_esc_89.98")
FASTVIDEO_LICENSE = "Apache-2.0"

# Architectures (ClapConfig kwargs) of the two official checkpoints; everything else is the transformers default.
FASTVIDEO_AUDIO_CONFIG: dict[str, Any] = {"enable_fusion": True, "fusion_type": None}
AVBENCH_AUDIO_CONFIG: dict[str, Any] = {"depths": [2, 2, 12, 2], "hidden_size": 1024, "patch_embeds_hidden_size": 128}

# ClapModel buffers that are constructor constants (arange / zeros) and that laion checkpoints may lack.
_OPTIONAL_HF_KEYS = frozenset({"text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids"})
# laion_clap entries with no ClapModel counterpart: classifier head, MLP "transform" heads, constant STFT/mel kernels,
# shifted-window attention masks. None of them is used by the embeddings.
_LAION_UNUSED = re.compile(
    r"^(audio_branch\.(head|tscam_conv|spectrogram_extractor|logmel_extractor)\.|(audio|text)_transform\.|"
    r"audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask$)"
)
# Tokenizer files that make a from_pretrained directory self-sufficient.
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")
# Weight files of a from_pretrained folder, which a tokenizer never reads.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError("CLAP needs transformers: pip install 'torchmetrics-av[clap]'") from err
    return transformers


# ---------------------------------------------------------------------------------------------------------------------
# Configs


def clap_config(protocol: str | ProtocolSpec) -> ClapConfig:
    """The ``ClapConfig`` of a protocol's official checkpoint (fused HTSAT-tiny, or unfused HTSAT-base)."""
    audio = FASTVIDEO_AUDIO_CONFIG if get_protocol(protocol).clap_fusion else AVBENCH_AUDIO_CONFIG
    return _transformers().ClapConfig(audio_config=dict(audio))


def small_clap_config(fusion: bool = True, projection_dim: int = 16) -> ClapConfig:
    """A ~1.7 M-parameter ``ClapConfig`` of the same architecture, for tests and examples.

    It keeps every shape the front end and the tokenizer see (64 mel bins, 256x256 spectrogram image, RoBERTa
    vocabulary 50265 and 514 positions) and shrinks widths and depths.
    """
    return _transformers().ClapConfig(
        audio_config={
            "enable_fusion": fusion,
            "patch_embeds_hidden_size": 8,
            "depths": [1, 1, 1, 1],
            "num_attention_heads": [1, 1, 1, 1],
            "hidden_size": 64,
            "projection_dim": projection_dim,
        },
        text_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "projection_dim": projection_dim,
        },
        projection_dim=projection_dim,
    )


# ---------------------------------------------------------------------------------------------------------------------
# laion_clap checkpoint format


def laion_to_hf_state_dict(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Rename an official laion_clap ``state_dict`` to ``ClapModel`` names.

    Accepts the raw ``torch.load`` content (``{"state_dict": ...}`` or the state dict itself, with or without the
    DDP ``module.`` prefix). Renames: ``text_branch.`` -> ``text_model.``; ``audio_branch.`` ->
    ``audio_model.audio_encoder.`` with ``attn.proj`` -> ``attention.output.dense``, ``attn.*`` ->
    ``attention.self.*``, ``attn.qkv`` split in three along dim 0 into ``query``/``key``/``value``, ``norm1/norm2``
    -> ``layernorm_before/after``, ``mlp.fc1/fc2`` -> ``intermediate.dense``/``output.dense``, ``bn0`` ->
    ``batch_norm``; ``{audio,text}_projection.{0,2}`` -> ``linear{1,2}``.

    Returns:
        ``(renamed state dict, laion keys that have no ClapModel counterpart and are unused by the embeddings)``.

    Raises:
        ValueError: a key is neither renamable nor a known unused entry (not a laion_clap checkpoint).
    """
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    out: dict[str, Tensor] = {}
    unused: list[str] = []
    unknown: list[str] = []
    for raw_key, value in state.items():
        key = raw_key[len("module.") :] if raw_key.startswith("module.") else raw_key
        if _LAION_UNUSED.match(key):
            unused.append(key)
            continue
        proj = re.match(r"^(audio|text)_projection\.([02])\.(weight|bias)$", key)
        if proj:
            out[f"{proj[1]}_projection.linear{1 if proj[2] == '0' else 2}.{proj[3]}"] = value
        elif key in ("logit_scale_a", "logit_scale_t"):
            out[key] = value
        elif key.startswith("text_branch."):
            out["text_model." + key[len("text_branch.") :]] = value
        elif key.startswith("audio_branch."):
            new = "audio_model.audio_encoder." + key[len("audio_branch.") :]
            for old, rep in (
                (".attn.proj.", ".attention.output.dense."),
                (".attn.", ".attention.self."),
                (".norm1.", ".layernorm_before."),
                (".norm2.", ".layernorm_after."),
                (".mlp.fc1.", ".intermediate.dense."),
                (".mlp.fc2.", ".output.dense."),
                (".bn0.", ".batch_norm."),
            ):
                new = new.replace(old, rep)
            if ".attention.self.qkv." in new:
                for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                    out[new.replace(".qkv.", f".{name}.")] = part
            else:
                out[new] = value
        else:
            unknown.append(raw_key)
    if unknown:
        raise ValueError(f"not a laion_clap checkpoint: {len(unknown)} unexpected keys, e.g. {unknown[:5]}")
    return out, unused


def is_laion_state_dict(state: Mapping[str, Any]) -> bool:
    """Whether a loaded checkpoint uses laion_clap names (``audio_branch.*``) rather than ``ClapModel`` names."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    return any(k.removeprefix("module.").startswith(("audio_branch.", "text_branch.")) for k in state)


def config_from_laion_state_dict(state: Mapping[str, Tensor]) -> ClapConfig:
    """Infer the ``ClapConfig`` of a renamed laion state dict from its shapes (HTSAT-tiny/base, fused or not).

    The text tower is laion's RoBERTa; its attention-head count is not visible in the shapes and is taken as
    ``hidden_size // 64`` (12 for roberta-base).
    """
    enc = "audio_model.audio_encoder."
    depths: list[int] = []
    heads: list[int] = []
    stage = 0
    while f"{enc}layers.{stage}.blocks.0.attention.self.relative_position_bias_table" in state:
        blocks = {int(m[1]) for k in state if (m := re.match(rf"^{re.escape(enc)}layers\.{stage}\.blocks\.(\d+)\.", k))}
        depths.append(len(blocks))
        heads.append(state[f"{enc}layers.{stage}.blocks.0.attention.self.relative_position_bias_table"].shape[1])
        stage += 1
    table_rows = state[f"{enc}layers.0.blocks.0.attention.self.relative_position_bias_table"].shape[0]
    window = (round(table_rows**0.5) + 1) // 2
    text_hidden = state["text_model.embeddings.word_embeddings.weight"].shape[1]
    n_text_layers = len({int(m[1]) for k in state if (m := re.match(r"^text_model\.encoder\.layer\.(\d+)\.", k))})
    projection_dim = state["audio_projection.linear2.weight"].shape[0]
    return _transformers().ClapConfig(
        audio_config={
            "enable_fusion": f"{enc}patch_embed.mel_conv2d.weight" in state,
            "fusion_type": None,
            "patch_embeds_hidden_size": state[f"{enc}patch_embed.proj.weight"].shape[0],
            "depths": depths,
            "num_attention_heads": heads,
            "window_size": window,
            "hidden_size": state["audio_projection.linear1.weight"].shape[1],
            "projection_dim": projection_dim,
        },
        text_config={
            "vocab_size": state["text_model.embeddings.word_embeddings.weight"].shape[0],
            "hidden_size": text_hidden,
            "num_hidden_layers": n_text_layers,
            "num_attention_heads": max(1, text_hidden // 64),
            "intermediate_size": state["text_model.encoder.layer.0.intermediate.dense.weight"].shape[0],
            "max_position_embeddings": state["text_model.embeddings.position_embeddings.weight"].shape[0],
            "projection_dim": projection_dim,
        },
        projection_dim=projection_dim,
    )


def load_clap_state_dict(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load ``ClapModel`` weights strictly, allowing only the constructor-constant buffers to be absent.

    Raises:
        ValueError: missing or unexpected keys, or mismatched shapes (the message names ``source``).
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state) - _OPTIONAL_HF_KEYS)
    unexpected = sorted(set(state) - set(own))
    mismatched = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{source} does not match the CLAP architecture: missing {missing[:5]} ({len(missing)}), unexpected "
            f"{unexpected[:5]} ({len(unexpected)}), shape mismatch {mismatched[:5]} ({len(mismatched)}); pass the "
            "matching `config=` or `protocol=`"
        )
    model.load_state_dict(dict(state), strict=False)


# ---------------------------------------------------------------------------------------------------------------------
# Front end


def clap_waveform(
    clip: Tensor, sample_rate: int, protocol: str | ProtocolSpec, duration: float | None = None
) -> Tensor | None:
    """One ``(C, T)`` clip -> the 1-D 48 kHz waveform a protocol feeds to CLAP's feature extractor.

    ``"fastvideo"``: ``librosa.load(sr=48000, mono=True)`` (channel mean, soxr HQ with librosa's
    ``ceil(n * 48000 / sr)`` length) then ``pyloudnorm.normalize.peak(x, -1.0)``, kept in **float64** because
    FastVideo hands that float64 array to ``ClapFeatureExtractor`` unrounded. Returns ``None`` for a clip that is all
    zeros after resampling (peak normalisation is undefined; the reference scores NaN).
    ``"av-benchmark"``: ``AudioDataset`` (channel mean, DC removal, ``torchaudio.transforms.Resample``, first
    ``duration`` = 8 s), float32; silence is fine there.
    """
    spec = get_protocol(protocol)
    return protocol_waveform(
        clip, sample_rate, CLAP_SAMPLE_RATE, spec, duration=duration, float64=spec.clap_float64_waveform
    )


def repeat_pad(x: Tensor, length: int = CLAP_MAX_SAMPLES) -> Tensor:
    """``"repeatpad"``: tile ``x`` ``length // len(x)`` times, then zero-pad to ``length`` (``len(x) <= length``)."""
    n = x.shape[-1]
    if n > length:
        raise ValueError(f"repeat_pad needs at most {length} samples, got {n}")
    return F.pad(x.repeat(length // n), (0, length - (length // n) * n))


def fusion_crop_starts(total_frames: int, seed: int, chunk_frames: int = CLAP_CHUNK_FRAMES) -> tuple[int, int, int]:
    """Start frames of the front/middle/back fusion crops, as ``ClapFeatureExtractor._random_mel_fusion`` draws them.

    The valid starts ``0 .. total - chunk`` are split in three with ``np.array_split``; one start is drawn from each
    third (an empty third falls back to 0) with ``RandomState(seed).choice``, in that order — the same draws as the
    global ``np.random.choice`` after ``np.random.seed(seed)``, without touching the global RNG.
    """
    ranges: list[Any] = list(np.array_split(np.arange(0, total_frames - chunk_frames + 1), 3))
    for i in (1, 2):
        if len(ranges[i]) == 0:
            ranges[i] = [0]
    rng = np.random.RandomState(seed)
    front, middle, back = (int(rng.choice(r)) for r in ranges)
    return front, middle, back


class ClapLogMel(nn.Module):
    """transformers ``ClapFeatureExtractor``'s log-mel spectrogram, batched in torch.

    Centred (reflect-padded) STFT with a periodic Hann window of 1024 and hop 480 computed in float64 and rounded to
    complex64 (the extractor's STFT buffer dtype), power 2 in float64, mel bank (HTK without norm for fusion models,
    Slaney with Slaney norm otherwise; 64 bins, 50-14000 Hz), ``10*log10(max(mel, 1e-10))``, float32 output.

    Input ``(B, T)`` (any float dtype, at 48 kHz); output ``(B, 1 + T // 480, 64)`` in dB.

    Example:
        >>> import torch
        >>> ClapLogMel(fusion=True)(torch.zeros(1, 480000)).shape
        torch.Size([1, 1001, 64])
    """

    window: Tensor
    mel_bank: Tensor

    def __init__(self, fusion: bool) -> None:
        super().__init__()
        _transformers()
        from transformers import audio_utils

        self.register_buffer(
            "window", torch.from_numpy(audio_utils.window_function(CLAP_N_FFT, "hann")), persistent=False
        )
        bank = audio_utils.mel_filter_bank(
            num_frequency_bins=CLAP_N_FFT // 2 + 1,
            num_mel_filters=CLAP_N_MELS,
            min_frequency=CLAP_FMIN,
            max_frequency=CLAP_FMAX,
            sampling_rate=CLAP_SAMPLE_RATE,
            norm=None if fusion else "slaney",
            mel_scale="htk" if fusion else "slaney",
        )
        self.register_buffer("mel_bank", torch.from_numpy(np.ascontiguousarray(bank.T)), persistent=False)

    def forward(self, wave: Tensor) -> Tensor:
        """``(B, T)`` 48 kHz audio -> ``(B, frames, 64)`` float32 log-mel (dB)."""
        wave = wave.to(self.window.device, torch.float64)
        spec = torch.stft(
            wave,
            CLAP_N_FFT,
            hop_length=CLAP_HOP,
            window=self.window.to(torch.float64),
            center=True,
            pad_mode="reflect",
            onesided=True,
            return_complex=True,
        )
        power = spec.to(torch.complex64).to(torch.complex128).abs().pow(2)
        mel = torch.matmul(self.mel_bank.to(torch.float64), power).clamp_min(CLAP_MEL_FLOOR)
        return (10.0 * torch.log10(mel)).to(torch.float32).transpose(1, 2)


# ---------------------------------------------------------------------------------------------------------------------
# Backbone


def _pooled(output: Any) -> Tensor:
    # transformers >= 5 returns a ModelOutput whose pooler_output is the projected, L2-normalised embedding; 4.x
    # returned that tensor itself.
    return output.pooler_output if hasattr(output, "pooler_output") else output


def _unwrap_tokenizer(tokenizer: Any) -> Any:
    # A ClapProcessor carries the tokenizer as `.tokenizer`; the tokenizer itself has pad_token_id.
    if tokenizer is not None and not hasattr(tokenizer, "pad_token_id") and hasattr(tokenizer, "tokenizer"):
        return tokenizer.tokenizer
    return tokenizer


class CLAP(nn.Module):
    """CLAP audio and text encoders (transformers ``ClapModel``) with the protocol's front end and tokenisation.

    Args:
        weights: local checkpoint: a ``from_pretrained`` directory (``config.json`` + weights, optionally tokenizer
            files), an official laion_clap ``.pt`` (e.g. ``music_speech_audioset_epoch_15_esc_89.98.pt``,
            ``630k-audioset-fusion-best.pt``; architecture inferred from its shapes unless ``config`` is given), or a
            ``ClapModel`` state-dict file (``.safetensors``/``.pt``, architecture = ``config`` or the protocol's).
        pretrained: with ``weights=None``, load the protocol's official checkpoint from the checkpoint table
            (``"fastvideo"``: the ``clap-htsat-fused/`` folder of hub ``laion/clap-htsat-fused``; ``"av-benchmark"``:
            the laion ``.pt`` above), cached and verified. ``False`` builds a random model without network access.
        protocol: ``"fastvideo"`` or ``"av-benchmark"`` (see the module docstring).
        config: ``ClapConfig`` for ``pretrained=False`` or for a bare state-dict file.
        tokenizer: a RoBERTa tokenizer (or a ``ClapProcessor``) called as transformers tokenizers are. Default: the
            one in the ``weights`` directory, else the table's ``clap-htsat-fused/`` ("fastvideo") / ``roberta-base/``
            ("av-benchmark") tokenizer files, loaded on first use (cached, downloaded where missing).
        text_layer_norm_eps: text-tower LayerNorm eps; default 1e-5 under "av-benchmark" (laion_clap's RoBERTa),
            the checkpoint's own value (1e-12) under "fastvideo".
        crop_seed: seed of the per-clip fusion crops (clips > 10 s, fused models) and of the random 10 s window
            (``rand_trunc``, unfused models, only for clips > 10 s, which av-benchmark's 8 s cap never produces).
        hub_repo: with ``weights=None`` and ``pretrained=True``, load this transformers-format hub repository instead
            of the protocol's default (e.g. ``"laion/larger_clap_general"``, the probable hub conversion of the
            av-benchmark ``.pt``: same architecture, unverified to be the same weights). Its tokenizer is used too.
            Such a repository is outside the checkpoint table: it goes through the Hugging Face hub cache
            (``<cache>/hub``) with no digest check.
        revision: hub revision; ``None`` = the table's pinned revision of ``laion/clap-htsat-fused`` for the default
            "fastvideo" repository (files in ``<cache>/clap-htsat-fused/``, what ``torchmetrics-av download
            clap-fastvideo`` writes, digests checked), ``main`` for ``hub_repo``. Another revision of the default
            repository goes to ``<cache>/clap-htsat-fused@<revision>/`` and no table digest applies to it.
        cache_dir: checkpoint cache override (default ``$TORCHMETRICS_AV_CACHE``).
        allow_pickle: load a laion ``.pt`` with ``torch.load(weights_only=False)`` (only for a file you trust).

    Attributes:
        model: the ``transformers.ClapModel``; its ``state_dict()`` keys equal the hub checkpoints'.
        mel: the :class:`ClapLogMel` front end (HTK bank when fused, Slaney otherwise).
        fusion: whether the audio tower has AFF feature fusion (4-channel input).
        checkpoint_id: provenance string.
    """

    sample_rate = CLAP_SAMPLE_RATE
    # precision= (torchmetrics_av.precision): the HTSAT and RoBERTa towers under autocast, projections float32.
    autocast_modules = ("model.audio_model", "model.text_model")

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        *,
        protocol: str = "fastvideo",
        config: ClapConfig | None = None,
        tokenizer: Any = None,
        text_layer_norm_eps: float | None = None,
        crop_seed: int = DEFAULT_CROP_SEED,
        hub_repo: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        allow_pickle: bool = False,
    ) -> None:
        super().__init__()
        tf = _transformers()
        self.spec = get_protocol(protocol)
        self.protocol = self.spec.name
        self.crop_seed = int(crop_seed)
        self._tokenizer = _unwrap_tokenizer(tokenizer)
        # Where the tokenizer comes from, on first use: a folder of the checkpoint table ("table"), a local folder
        # ("dir") or, for a `hub_repo=` outside the table, the hub ("hub").
        self._tokenizer_source: tuple[str, str, str | None] = ("table", LAION_TOKENIZER_FOLDER, None)
        if hub_repo is None and self.spec.clap_fusion:
            self._tokenizer_source = ("table", FASTVIDEO_FOLDER, revision)
        elif hub_repo is not None:
            self._tokenizer_source = ("hub", hub_repo, revision)
        self._cache_dir = cache_dir
        self.checkpoint_id = "random-init"
        path = None if weights is None else Path(weights).expanduser()
        if path is not None and not path.exists():
            raise WeightsNotFoundError(f"`weights={str(weights)!r}` does not exist")
        if path is not None and path.is_dir():
            if config is not None:
                raise ValueError("`config` cannot be combined with a from_pretrained directory in `weights`")
            model = self._from_pretrained(str(path), source=f"`weights={str(weights)!r}`")
            self.checkpoint_id = f"hf-dir:{path.name}"
            if any((path / f).exists() for f in _TOKENIZER_FILES):
                self._tokenizer_source = ("dir", str(path), None)
        elif path is not None or (pretrained and hub_repo is None and not self.spec.clap_fusion):
            file = resolve_checkpoint(AVBENCH_CHECKPOINT.name, path, cache_dir=cache_dir)
            model = self._from_state_file(file, config, allow_pickle)
            self.checkpoint_id = f"{file.name}@sha256:{file_digest(file)[:16]}"
        elif pretrained and hub_repo is None:
            # The table's clap-htsat-fused/ folder (model, config and tokenizer files) in the cache, as
            # `torchmetrics-av download clap-fastvideo` writes it; verified, downloaded where missing.
            folder = resolve_folder(FASTVIDEO_FOLDER, revision=revision, cache_dir=cache_dir, required=["config.json"])
            model = self._from_pretrained(str(folder), source=f"{FASTVIDEO_REPO} in {folder}")
            self._tokenizer_source = ("dir", str(folder), None)
            self.checkpoint_id = f"{FASTVIDEO_REPO}@{revision or FASTVIDEO_REVISION}"
        elif pretrained:
            hub_repo = str(hub_repo)
            model = self._from_pretrained(hub_repo, source=f"hub {hub_repo}", revision=revision)
            self.checkpoint_id = f"{hub_repo}@{revision or 'main'}"
        else:
            model = tf.ClapModel(config if config is not None else clap_config(self.spec))
        # A half-precision checkpoint would meet float32 features; the references compute in float32.
        self.model: ClapModel = model.float()
        self.fusion = bool(model.config.audio_config.enable_fusion)
        eps = text_layer_norm_eps
        if eps is None:
            eps = self.spec.clap_text_layer_norm_eps
        if eps is not None:
            self._set_text_eps(float(eps))
        self.mel = ClapLogMel(self.fusion)
        self.eval()

    # ----------------------------------------------------------------------------------------------------------------
    # loading

    def _from_pretrained(self, repo_or_dir: str, *, source: str, revision: str | None = None) -> ClapModel:
        tf = _transformers()
        is_hub = not Path(repo_or_dir).is_dir()
        kwargs: dict[str, Any] = {}
        if is_hub:
            kwargs = {
                "revision": revision,
                "cache_dir": str(default_cache_dir(self._cache_dir) / "hub"),
                "local_files_only": is_offline(),
            }
        try:
            model, info = tf.ClapModel.from_pretrained(repo_or_dir, output_loading_info=True, **kwargs)
        except (OSError, ValueError) as err:
            if not is_hub:
                raise
            raise WeightsNotFoundError(
                f"CLAP checkpoint {repo_or_dir} (revision {revision or 'main'}) is not available: "
                f"{type(err).__name__}: {err}. Download https://huggingface.co/{repo_or_dir} (config.json + "
                "model.safetensors + tokenizer files) into a folder and pass `weights=<folder>`, or set "
                "`revision=` / allow hub access."
            ) from err
        missing = sorted(set(info.get("missing_keys", ())) - _OPTIONAL_HF_KEYS)
        bad = missing + sorted(info.get("unexpected_keys", ())) + [str(m) for m in info.get("mismatched_keys", ())]
        if bad:
            raise ValueError(f"{source} does not match ClapModel: {bad[:5]} ({len(bad)} keys)")
        return model

    def _from_state_file(self, file: Path, config: ClapConfig | None, allow_pickle: bool) -> ClapModel:
        tf = _transformers()
        if allow_pickle and file.suffix != ".safetensors":
            state: Mapping[str, Any] = torch.load(file, map_location="cpu", weights_only=False)
        else:
            try:
                state = load_state_dict(file)
            except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError/RuntimeError variants
                raise ValueError(
                    f"{file} could not be loaded with torch.load(weights_only=True) ({type(err).__name__}: {err}); "
                    "if you trust the file, pass `allow_pickle=True`"
                ) from err
        if is_laion_state_dict(state):
            state, _ = laion_to_hf_state_dict(state)
            cfg = config if config is not None else config_from_laion_state_dict(state)
        else:
            if "state_dict" in state and isinstance(state["state_dict"], Mapping):
                state = state["state_dict"]
            cfg = config if config is not None else clap_config(self.protocol)
        model = tf.ClapModel(cfg)
        load_clap_state_dict(model, state, str(file))
        return model

    def _set_text_eps(self, eps: float) -> None:
        for module in self.model.text_model.modules():
            if isinstance(module, nn.LayerNorm):
                module.eps = eps
        self.model.config.text_config.layer_norm_eps = eps

    # ----------------------------------------------------------------------------------------------------------------
    # text

    @property
    def tokenizer(self) -> Any:
        """The tokenizer (injected, or loaded from the checkpoint folder / hub on first use)."""
        if self._tokenizer is None:
            kind, name, revision = self._tokenizer_source
            if kind == "table":
                # Resolved here, not in the constructor: audio-only use needs no tokenizer files. The folder's
                # weights are left out (the text files and config.json are what AutoTokenizer reads).
                files = [at_revision(c, revision) for c in folder_checkpoints(name)]
                files = [c for c in files if not c.filename.endswith(_WEIGHT_SUFFIXES)]
                hint = "a from_pretrained folder with tokenizer files"
                try:
                    name = str(resolve_files(files, cache_dir=self._cache_dir, weights_hint=hint)[0].parent)
                except WeightsNotFoundError as err:
                    raise WeightsNotFoundError(
                        f"the CLAP tokenizer is not available. {err}\nOr pass `tokenizer=` (a RoBERTa tokenizer or "
                        "ClapProcessor)."
                    ) from err
            hub = {"revision": revision, "cache_dir": str(default_cache_dir(self._cache_dir) / "hub")}
            try:
                self._tokenizer = _transformers().AutoTokenizer.from_pretrained(
                    name, local_files_only=kind != "hub" or is_offline(), **(hub if kind == "hub" else {})
                )
            except (OSError, ValueError) as err:
                raise WeightsNotFoundError(
                    f"the CLAP tokenizer ({name}) is not available ({type(err).__name__}: {err}); pass "
                    "`tokenizer=` (a RoBERTa tokenizer or ClapProcessor) or a `weights=` folder with tokenizer files"
                ) from err
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, value: Any) -> None:
        self._tokenizer = _unwrap_tokenizer(value)

    @property
    def max_text_tokens(self) -> int:
        """Longest token sequence (with ``<s>``/``</s>``) RoBERTa's position table can embed (512 for 514 rows)."""
        cfg = self.model.config.text_config
        return int(cfg.max_position_embeddings) - int(cfg.pad_token_id) - 1

    def tokenize(self, texts: Sequence[str], name: str = "texts", tokenizer: Any = None) -> tuple[Tensor, Tensor]:
        """Token ids and attention mask for ``texts``, as the protocol's reference tokenises them.

        ``"fastvideo"``: ``tokenizer(texts, padding=True)``: no truncation (each prompt on its own would be unpadded;
        padding to the batch's longest prompt changes an embedding by ~1e-7). ``"av-benchmark"``:
        ``padding="max_length", truncation=True, max_length=77`` (laion_clap).

        Args:
            texts: prompts.
            name: argument name for error messages.
            tokenizer: overrides :attr:`tokenizer` for this call.

        Returns:
            ``(input_ids (N, L) int64, attention_mask (N, L) int64)`` on CPU.

        Raises:
            ValueError: ``texts`` is not a list of strings (a bare ``str`` included; see
                :func:`~torchmetrics_av.preprocessing.as_text_list`), or under "fastvideo", a prompt longer than
                :attr:`max_text_tokens` tokens.
        """
        texts = as_text_list(texts, name)  # a bare str would otherwise be tokenised as a list of characters
        tok = _unwrap_tokenizer(tokenizer) if tokenizer is not None else self.tokenizer
        if self.spec.clap_text_max_length is not None:
            enc = tok(
                list(texts),
                padding="max_length",
                truncation=True,
                max_length=self.spec.clap_text_max_length,
                return_tensors="pt",
            )
        else:
            enc = tok(list(texts), padding=True, return_tensors="pt")
        ids, mask = enc["input_ids"].to(torch.long), enc["attention_mask"].to(torch.long)
        lengths = mask.sum(dim=1)
        too_long = torch.nonzero(lengths > self.max_text_tokens).flatten().tolist()
        if too_long:
            i = too_long[0]
            raise ValueError(
                f"`{name}[{i}]` has {int(lengths[i])} tokens; the CLAP text tower embeds at most "
                f"{self.max_text_tokens} (FastVideo does not truncate). Shorten the prompt or use "
                "protocol='av-benchmark' (truncates to 77 tokens)"
            )
        return ids, mask

    @torch.no_grad()
    def embed_text_ids(self, input_ids: Tensor, attention_mask: Tensor, batch_size: int = 32) -> Tensor:
        """``(N, L)`` token ids + mask -> ``(N, D)`` unit-norm projected text embeddings (float32)."""
        device = self.model.logit_scale_t.device
        out = []
        for start in range(0, input_ids.shape[0], batch_size):
            ids = input_ids[start : start + batch_size].to(device)
            mask = attention_mask[start : start + batch_size].to(device)
            # Trailing all-padding columns (from padding to a longer prompt in another chunk) change nothing.
            keep = int(mask.sum(dim=0).nonzero().max()) + 1
            out.append(_pooled(self.model.get_text_features(input_ids=ids[:, :keep], attention_mask=mask[:, :keep])))
        return torch.cat(out)

    def embed_text(self, texts: Sequence[str], batch_size: int = 32, tokenizer: Any = None) -> Tensor:
        """Prompts -> ``(N, D)`` unit-norm text embeddings (:meth:`tokenize` then :meth:`embed_text_ids`)."""
        ids, mask = self.tokenize(texts, tokenizer=tokenizer)
        return self.embed_text_ids(ids, mask, batch_size)

    # ----------------------------------------------------------------------------------------------------------------
    # audio

    @torch.no_grad()
    def features(self, waves: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """48 kHz mono waveforms -> ``(input_features (N, 4 or 1, 1001, 64), is_longer (N, 1) bool)``.

        Per clip, independently of the others (``n`` samples):

        * fused model, ``n <= 480000``: repeat-pad to 480000, HTK log-mel, 4 identical channels, ``is_longer=True``
          (what ``ClapFeatureExtractor`` gives a batch of one).
        * fused, ``n > 480000``: log-mel of the whole clip (``1 + n // 480`` frames); if that is exactly 1001 frames,
          4 copies; else [whole mel resized to 1001 frames (bilinear), front, middle, back crop] with
          :func:`fusion_crop_starts` (``crop_seed``); ``is_longer=True``.
        * unfused, ``n <= 480000``: repeat-pad, Slaney log-mel, 1 channel, ``is_longer=False``.
        * unfused, ``n > 480000`` (``rand_trunc``): the 480000-sample window starting at
          ``RandomState(crop_seed).randint(0, n - 480000 + 1)``, ``is_longer=True`` (unused by unfused models).
        """
        device = self.mel.window.device
        n_ch = FUSION_CHANNELS if self.fusion else 1
        feats = torch.empty(len(waves), n_ch, CLAP_CHUNK_FRAMES, CLAP_N_MELS, device=device)
        longer = torch.zeros(len(waves), 1, dtype=torch.bool, device=device)
        short: list[int] = []
        for i, w in enumerate(waves):
            if w.ndim != 1 or w.shape[0] == 0:
                raise ValueError(f"`waves[{i}]` must be a non-empty 1-D 48 kHz waveform, got shape {tuple(w.shape)}")
            n = w.shape[0]
            if n <= CLAP_MAX_SAMPLES:
                short.append(i)
                longer[i] = self.fusion
            elif self.fusion:
                mel = self.mel(w[None])[0]
                feats[i] = self._fuse(mel)
                longer[i] = True
            else:
                start = int(np.random.RandomState(self.crop_seed).randint(0, n - CLAP_MAX_SAMPLES + 1))
                feats[i] = self.mel(w[None, start : start + CLAP_MAX_SAMPLES])
                longer[i] = True
        # Equal-length (10 s) windows share one batched STFT; a chunk bounds the complex128 buffers (~8 MB a clip).
        for start in range(0, len(short), DEFAULT_BATCH_SIZE):
            idx = short[start : start + DEFAULT_BATCH_SIZE]
            mel = self.mel(torch.stack([repeat_pad(waves[i].to(device, torch.float64)) for i in idx]))
            feats[idx] = mel[:, None].expand(-1, n_ch, -1, -1)
        return feats, longer

    def _fuse(self, mel: Tensor) -> Tensor:
        total = mel.shape[0]
        if total == CLAP_CHUNK_FRAMES:
            # 480000 < n < 480480: the whole clip already fills one window (the extractor's corner case).
            return mel[None].expand(FUSION_CHANNELS, -1, -1)
        front, middle, back = fusion_crop_starts(total, self.crop_seed)
        shrunk = F.interpolate(
            mel[None, None], size=(CLAP_CHUNK_FRAMES, CLAP_N_MELS), mode="bilinear", align_corners=False
        )[0, 0]
        crops = [mel[s : s + CLAP_CHUNK_FRAMES] for s in (front, middle, back)]
        return torch.stack([shrunk, *crops])

    @torch.no_grad()
    def embed_features(self, input_features: Tensor, is_longer: Tensor, batch_size: int = DEFAULT_BATCH_SIZE) -> Tensor:
        """Model inputs from :meth:`features` -> ``(N, D)`` unit-norm projected audio embeddings (float32)."""
        device = self.model.logit_scale_a.device
        out = []
        for start in range(0, input_features.shape[0], batch_size):
            x = input_features[start : start + batch_size].to(device, torch.float32)
            longer = is_longer[start : start + batch_size].to(device)
            out.append(_pooled(self.model.get_audio_features(input_features=x, is_longer=longer)))
        return torch.cat(out)

    def embed_audio(self, waves: Sequence[Tensor], batch_size: int = DEFAULT_BATCH_SIZE) -> Tensor:
        """48 kHz mono waveforms (any lengths) -> ``(N, D)`` unit-norm audio embeddings, batched."""
        feats, longer = self.features(waves)
        return self.embed_features(feats, longer, batch_size)

    def forward(self, waves: Sequence[Tensor]) -> Tensor:
        """Alias of :meth:`embed_audio`."""
        return self.embed_audio(waves)
