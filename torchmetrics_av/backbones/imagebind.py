"""ImageBind (``imagebind_huge``), vision and audio towers only: the backbone of the IB-score.

A clean-room PyTorch port of the two paths of Meta's ImageBind that the audio-video score needs: the vision and audio
preprocessors (patch stems, class tokens, learned positional embeddings), the pre-LN transformer trunks, the heads
(LayerNorm, class token, linear projection to 1024) and the postprocessors (L2 norm; audio also ``x 20``). Every
parameter keeps its official name, so ``.model.state_dict()`` equals the vision + audio subset of
``imagebind_huge.pth`` (569 entries, 719,065,088 parameters); the text, depth, thermal and IMU towers of the official
file are ignored when it is loaded.

**Licence:** ImageBind's code and weights are released under **CC-BY-NC-SA 4.0** (non-commercial, share-alike). The
weights are downloaded from Meta on first use (``https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth``,
about 4.5 GB) and are *not* covered by this package's Apache-2.0 licence.

The model-specific input pipeline lives here too (see ``../shared/golden/imagebind/README.md`` §5 for the quirks it
reproduces on purpose):

* :func:`imagebind_audio_clips`: ImageBind's ``load_and_transform_audio_data`` (16 kHz, 3 clips of 2 s, Kaldi fbank
  128 x 204, ``(x + 4.268) / 9.138``, channel 0, in-place DC removal on overlapping clips).
* :func:`imagebind_fastvideo_clips`: ImageBind's ``load_and_transform_video_data`` (5 clips of 2 s x 2 frames x 3
  crops, bilinear short-side scaling without antialias, CLIP mean/std), as FastVideo runs it.
* :func:`imagebind_avbench_clips`: av-benchmark's ``VideoDataset`` + ``encode_video_with_imagebind`` (frames of the
  ffmpeg ``fps=0.5`` filter over ``duration_sec``, uint8 bicubic-antialias resize, 3 crops, consecutive frame pairs).
* :func:`imagebind_video_clips`: one of the two, chosen by the protocol spec's ``imagebind_frames``.

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones import ImageBind
    >>> net = ImageBind(pretrained=False, vision_embed_dim=16, vision_num_blocks=1, vision_num_heads=2,
    ...                 audio_embed_dim=16, audio_num_blocks=1, audio_num_heads=2, out_embed_dim=8)
    >>> net.embed_audio(torch.zeros(3, 1, 128, 204)).shape
    torch.Size([3, 8])
    >>> net.embed_vision(torch.zeros(2, 3, 2, 224, 224)).shape
    torch.Size([2, 8])
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from torchmetrics_av.backbones.layers import Mlp
from torchmetrics_av.preprocessing import UINT8_MAX, ffmpeg_fps_indices, resample
from torchmetrics_av.weights import checkpoint, file_digest, load_state_dict, resolve_checkpoint

IMAGEBIND_CHECKPOINT = checkpoint("imagebind_huge")

# imagebind_model.imagebind_huge(): vision tower width/depth/heads and the joint embedding size.
VISION_EMBED_DIM = 1280
VISION_NUM_BLOCKS = 32
VISION_NUM_HEADS = 16
OUT_EMBED_DIM = 1024
# ImageBindModel defaults kept by imagebind_huge(): the audio tower.
AUDIO_EMBED_DIM = 768
AUDIO_NUM_BLOCKS = 12
AUDIO_NUM_HEADS = 12
# Vision stem: Conv3d over 2 frames x 14 x 14 pixels (stride = kernel) on 224 x 224 inputs -> 16 x 16 = 256 tokens.
VIDEO_FRAMES = 2
VISION_KERNEL = (2, 14, 14)
IMAGE_SIZE = 224
# Audio stem: Conv2d kernel 16 stride 10 on a 128-bin x 204-frame fbank -> 12 x 19 = 228 tokens.
AUDIO_KERNEL = 16
AUDIO_STRIDE = 10
AUDIO_NUM_MEL_BINS = 128
AUDIO_TARGET_LEN = 204
# transformer.py: MLP hidden = 4 x width; every block/head LayerNorm uses eps 1e-6 (SimpleTransformer's _LAYER_NORM);
# the audio stem's LayerNorm is a plain nn.LayerNorm (eps 1e-5).
MLP_RATIO = 4
LAYER_NORM_EPS = 1e-6
AUDIO_STEM_NORM_EPS = 1e-5
# Audio postprocessor: LearnableLogitScaling(logit_scale_init=20.0, learnable=False, max_logit_scale=100).
AUDIO_LOGIT_SCALE = 20.0
MAX_LOGIT_SCALE = 100.0
# Towers of the official file that the IB-score does not use; their keys are skipped when loading.
IGNORED_MODALITIES = ("text", "depth", "thermal", "imu")
_PARTS = ("modality_preprocessors", "modality_trunks", "modality_heads", "modality_postprocessors")

# ---------------------------------------------------------------------------------------------------------------------
# Input pipeline constants (imagebind/data.py, pytorchvideo @ 6cdc929, av-benchmark @ 050a5cd).

# load_and_transform_audio_data defaults.
AUDIO_SAMPLE_RATE = 16000
AUDIO_CLIP_SECONDS = 2
AUDIO_CLIPS_PER_VIDEO = 3
AUDIO_NORM_MEAN = -4.268
AUDIO_NORM_STD = 9.138
# waveform2melspec's kaldi.fbank call (frame length / shift in ms).
FBANK_FRAME_LENGTH_MS = 25.0
FBANK_FRAME_SHIFT_MS = 10.0
# Shortest audio with one 25 ms fbank frame at 16 kHz.
AUDIO_MIN_SAMPLES_16K = 400
# load_and_transform_video_data defaults: 5 clips of 2 s, 2 frames each (UniformTemporalSubsample(clip_duration)).
VIDEO_CLIP_SECONDS = 2
VIDEO_CLIPS_PER_VIDEO = 5
# SpatialCrop(224, num_crops=3).
NUM_SPATIAL_CROPS = 3
# OpenAI CLIP image normalisation used by ImageBind and av-benchmark.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# av-benchmark video_dataset.py: _IMAGEBIND_FPS, _SYNC_FPS and the default --audio_length (duration_sec).
AVBENCH_IB_FPS = 0.5
AVBENCH_SYNC_FPS = 25
AVBENCH_DURATION_SEC = 8.0


# =====================================================================================================================
# Model


class _PadIm2Video(nn.Module):
    """Turn an image ``(B, C, H, W)`` or a 1-frame video into ``ntimes`` repeated frames (a no-op for 2 frames)."""

    def __init__(self, ntimes: int) -> None:
        super().__init__()
        self.ntimes = ntimes

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if x.shape[2] == 1:
            x = x.repeat_interleave(self.ntimes, dim=2)
        return x


class _PatchStem(nn.Module):
    """Patchify with a strided convolution, flatten to tokens ``(B, L, D)``, optionally LayerNorm them."""

    def __init__(self, proj: nn.Module, norm_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = proj
        self.norm_layer = norm_layer

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        if self.norm_layer is not None:
            x = self.norm_layer(x)
        return x


class _PositionalEmbedding(nn.Module):
    """The learned positional embedding (class token slot first), ``pos_embed (1, 1 + L, D)``."""

    def __init__(self, num_tokens: int, embed_dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))


class _TokenPreprocessor(nn.Module):
    """Stem -> prepend the class token -> add the positional embedding (ImageBind's ``RGBDTPreprocessor``)."""

    def __init__(self, stem: _PatchStem, num_patches: int, embed_dim: int) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.rgbt_stem = stem
        self.pos_embedding_helper = _PositionalEmbedding(1 + num_patches, embed_dim)
        self.num_patches = num_patches

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.rgbt_stem(x)
        if tokens.shape[1] != self.num_patches:
            # The official model would interpolate the embedding; the IB-score never feeds other sizes.
            raise ValueError(f"input {tuple(x.shape)} gives {tokens.shape[1]} patches, expected {self.num_patches}")
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        return tokens + self.pos_embedding_helper.pos_embed


class _Block(nn.Module):
    """Pre-LN block ``x + MHA(LN1(x))``, ``x + MLP(LN2(x))`` on sequence-first ``(L, B, D)`` tokens.

    Drop-path (0.1 in the audio tower) only acts in training, which a frozen metric backbone never does.
    """

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, bias=True, add_bias_kv=add_bias_kv)
        self.norm_1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, MLP_RATIO * dim)
        self.norm_2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm_2(x))


class _SeqFirst(nn.Module):
    """``(B, L, D) <-> (L, B, D)``: nn.MultiheadAttention runs sequence-first in ImageBind."""

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(0, 1)


class _Trunk(nn.Module):
    """``pre_transformer_layer`` (LayerNorm or identity, then to sequence-first) -> blocks -> back to batch-first."""

    def __init__(self, dim: int, num_blocks: int, num_heads: int, pre_ln: bool, add_bias_kv: bool) -> None:
        super().__init__()
        self.pre_transformer_layer = nn.Sequential(
            nn.LayerNorm(dim, eps=LAYER_NORM_EPS) if pre_ln else nn.Identity(), _SeqFirst()
        )
        self.blocks = nn.Sequential(*[_Block(dim, num_heads, add_bias_kv) for _ in range(num_blocks)])
        self.post_transformer_layer = _SeqFirst()

    def forward(self, tokens: Tensor) -> Tensor:
        return self.post_transformer_layer(self.blocks(self.pre_transformer_layer(tokens)))


class _SelectToken(nn.Module):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.index, ...]


class _L2Normalize(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.normalize(x, dim=-1, p=2)


class _LogitScale(nn.Module):
    """Multiply by ``min(exp(log_logit_scale), 100)``; the scale is a frozen buffer (``learnable=False``)."""

    log_logit_scale: Tensor

    def __init__(self, init: float) -> None:
        super().__init__()
        self.register_buffer("log_logit_scale", torch.ones([]) * math.log(init))

    def forward(self, x: Tensor) -> Tensor:
        return torch.clip(self.log_logit_scale.exp(), max=MAX_LOGIT_SCALE) * x


def _head(dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim, eps=LAYER_NORM_EPS), _SelectToken(0), nn.Linear(dim, out_dim, bias=False))


class ImageBindVisionAudio(nn.Module):
    """The vision and audio paths of ``ImageBindModel`` with the official module names.

    ``state_dict()`` keys are ``modality_{preprocessors,trunks,heads,postprocessors}.{vision,audio}.*``, exactly the
    vision + audio subset of ``imagebind_huge.pth`` at the default (huge) sizes.

    Args:
        vision_embed_dim: vision width (1280 huge).
        vision_num_blocks: vision depth (32).
        vision_num_heads: vision heads (16).
        audio_embed_dim: audio width (768).
        audio_num_blocks: audio depth (12).
        audio_num_heads: audio heads (12).
        out_embed_dim: joint embedding size (1024).

    Example:
        >>> import torch
        >>> m = ImageBindVisionAudio(16, 1, 2, 16, 1, 2, 8)
        >>> out = m({"audio": torch.zeros(2, 3, 1, 128, 204)})   # (B, S, ...) inputs are averaged over S
        >>> out["audio"].shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        vision_embed_dim: int = VISION_EMBED_DIM,
        vision_num_blocks: int = VISION_NUM_BLOCKS,
        vision_num_heads: int = VISION_NUM_HEADS,
        audio_embed_dim: int = AUDIO_EMBED_DIM,
        audio_num_blocks: int = AUDIO_NUM_BLOCKS,
        audio_num_heads: int = AUDIO_NUM_HEADS,
        out_embed_dim: int = OUT_EMBED_DIM,
    ) -> None:
        super().__init__()
        grid = IMAGE_SIZE // VISION_KERNEL[1]
        vision_stem = _PatchStem(
            nn.Sequential(
                _PadIm2Video(VIDEO_FRAMES),
                nn.Conv3d(3, vision_embed_dim, kernel_size=VISION_KERNEL, stride=VISION_KERNEL, bias=False),
            )
        )
        audio_grid = (
            (AUDIO_NUM_MEL_BINS - AUDIO_KERNEL) // AUDIO_STRIDE + 1,
            (AUDIO_TARGET_LEN - AUDIO_KERNEL) // AUDIO_STRIDE + 1,
        )
        audio_stem = _PatchStem(
            nn.Conv2d(1, audio_embed_dim, kernel_size=AUDIO_KERNEL, stride=AUDIO_STRIDE, bias=False),
            nn.LayerNorm(audio_embed_dim, eps=AUDIO_STEM_NORM_EPS),
        )
        self.modality_preprocessors = nn.ModuleDict(
            {
                "vision": _TokenPreprocessor(vision_stem, grid * grid, vision_embed_dim),
                "audio": _TokenPreprocessor(audio_stem, audio_grid[0] * audio_grid[1], audio_embed_dim),
            }
        )
        self.modality_trunks = nn.ModuleDict(
            {
                "vision": _Trunk(vision_embed_dim, vision_num_blocks, vision_num_heads, pre_ln=True, add_bias_kv=False),
                "audio": _Trunk(audio_embed_dim, audio_num_blocks, audio_num_heads, pre_ln=False, add_bias_kv=True),
            }
        )
        self.modality_heads = nn.ModuleDict(
            {"vision": _head(vision_embed_dim, out_embed_dim), "audio": _head(audio_embed_dim, out_embed_dim)}
        )
        self.modality_postprocessors = nn.ModuleDict(
            {"vision": _L2Normalize(), "audio": nn.Sequential(_L2Normalize(), _LogitScale(AUDIO_LOGIT_SCALE))}
        )

    def embed(self, modality: str, x: Tensor, postprocess: bool = True) -> Tensor:
        """Embed a batch of single clips.

        Args:
            modality: ``"vision"`` (``x`` is ``(N, 3, 2, 224, 224)``) or ``"audio"`` (``x`` is ``(N, 1, 128, 204)``).
            x: the clips, float32, preprocessed.
            postprocess: apply the postprocessor (vision: L2 norm; audio: L2 norm x 20). ``False`` returns the head
                output.

        Returns:
            ``(N, out_embed_dim)``.
        """
        tokens = self.modality_preprocessors[modality](x)
        out = self.modality_heads[modality](self.modality_trunks[modality](tokens))
        return self.modality_postprocessors[modality](out) if postprocess else out

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """ImageBind's forward: ``(B, S, ...)`` inputs (``ndim >= 5``) are embedded per clip and averaged over ``S``.

        The mean of the post-processed clip embeddings is not re-normalised (audio norms are therefore <= 20).
        """
        out = {}
        for modality, x in inputs.items():
            if x.ndim >= 5:
                b, s = x.shape[:2]
                out[modality] = self.embed(modality, x.reshape(b * s, *x.shape[2:])).reshape(b, s, -1).mean(dim=1)
            else:
                out[modality] = self.embed(modality, x)
        return out


# =====================================================================================================================
# Checkpoint loading


def _is_ignored_key(key: str) -> bool:
    parts = key.split(".")
    return len(parts) > 1 and parts[0] in _PARTS and parts[1] in IGNORED_MODALITIES


def vision_audio_subset(state: dict[str, Any]) -> dict[str, Tensor]:
    """The entries of an ImageBind state dict that the vision and audio towers use (text/depth/thermal/IMU dropped).

    Keys outside the four ``modality_*`` module dicts are kept, so a wrong file still fails strict loading.
    """
    return {k: v for k, v in state.items() if not _is_ignored_key(k)}


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        return load_state_dict(path)
    try:
        # mmap keeps the 4.5 GB official file out of RAM; only the vision + audio tensors are ever touched.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
        return load_state_dict(path)


def load_imagebind_weights(model: ImageBindVisionAudio, path: str | os.PathLike, *, assign: bool = False) -> None:
    """Load ``imagebind_huge.pth`` (or a file with just the vision + audio keys) into ``model``, strictly.

    Args:
        model: the module to fill.
        path: checkpoint file (a plain state dict, as Meta publishes it).
        assign: adopt the loaded tensors instead of copying (for a model built on the ``meta`` device).

    Raises:
        RuntimeError: a vision/audio key is missing, an unknown key is present, or a shape differs.
    """
    state = vision_audio_subset(_read_checkpoint(Path(path)))
    if assign:
        state = {k: v.to(torch.float32).contiguous() for k, v in state.items()}
    missing = sorted(set(model.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise RuntimeError(
            f"{path} is not an ImageBind (huge) checkpoint for this configuration: {len(missing)} missing keys "
            f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}"
        )
    model.load_state_dict(state, strict=True, assign=assign)


class ImageBind(nn.Module):
    """ImageBind-huge vision + audio towers: preprocessed clips -> joint 1024-d embeddings, batched.

    Weights: ``imagebind_huge.pth`` from Meta, **CC-BY-NC-SA 4.0** (non-commercial use only). Only the vision and
    audio keys are read from it; the text, depth, thermal and IMU towers are ignored.

    Args:
        weights: local path to ``imagebind_huge.pth`` (or a state-dict file with just the vision + audio keys).
        pretrained: load the official checkpoint (``weights``, else the cache, else a download). ``False`` keeps a
            random initialisation and needs no network.
        vision_embed_dim: vision width (1280 official; smaller only for tests).
        vision_num_blocks: vision depth (32 official).
        vision_num_heads: vision heads (16 official).
        audio_embed_dim: audio width (768 official).
        audio_num_blocks: audio depth (12 official).
        audio_num_heads: audio heads (12 official).
        out_embed_dim: joint embedding size (1024 official).
        cache_dir: checkpoint cache override (default ``$TORCHMETRICS_AV_CACHE``).

    Attributes:
        model: :class:`ImageBindVisionAudio`; its ``state_dict()`` equals the vision + audio subset of the official
            file.
        checkpoint_id: provenance string, ``"imagebind_huge@sha256:<digest>"`` or ``"random-init"`` (the digest of a
            multi-GB file is computed on first access, or read from the ``.sha256`` file a download leaves).

    Example:
        >>> import torch
        >>> net = ImageBind(pretrained=False, vision_embed_dim=16, vision_num_blocks=1, vision_num_heads=2,
        ...                 audio_embed_dim=16, audio_num_blocks=1, audio_num_heads=2, out_embed_dim=8)
        >>> emb = net(audio=torch.zeros(2, 3, 1, 128, 204))   # 2 samples x 3 clips -> clip-averaged embeddings
        >>> emb["audio"].shape
        torch.Size([2, 8])
    """

    sample_rate = AUDIO_SAMPLE_RATE
    # precision= (torchmetrics_av.precision): patch stems and trunks under autocast, heads/postprocessors float32.
    autocast_modules = tuple(
        f"model.{part}.{m}" for part in ("modality_preprocessors", "modality_trunks") for m in ("vision", "audio")
    )

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        *,
        vision_embed_dim: int = VISION_EMBED_DIM,
        vision_num_blocks: int = VISION_NUM_BLOCKS,
        vision_num_heads: int = VISION_NUM_HEADS,
        audio_embed_dim: int = AUDIO_EMBED_DIM,
        audio_num_blocks: int = AUDIO_NUM_BLOCKS,
        audio_num_heads: int = AUDIO_NUM_HEADS,
        out_embed_dim: int = OUT_EMBED_DIM,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        config = (
            vision_embed_dim, vision_num_blocks, vision_num_heads, audio_embed_dim, audio_num_blocks, audio_num_heads,
            out_embed_dim,
        )  # fmt: skip
        self.out_embed_dim = out_embed_dim
        self._checkpoint_path: Path | None = None
        self._checkpoint_id: str | None = None
        if weights is not None or pretrained:
            path = resolve_checkpoint(IMAGEBIND_CHECKPOINT.name, weights, cache_dir=cache_dir)
            # Building on the meta device skips a random init of 719 M parameters that loading overwrites anyway.
            with torch.device("meta"):
                self.model = ImageBindVisionAudio(*config)
            load_imagebind_weights(self.model, path, assign=True)
            self._checkpoint_path = path
        else:
            self.model = ImageBindVisionAudio(*config)
            self._init_random()
        self.eval()

    @property
    def checkpoint_id(self) -> str:
        """``"imagebind_huge@sha256:<first 16 hex digits>"`` of the loaded file, or ``"random-init"``."""
        if self._checkpoint_path is None:
            return "random-init"
        if self._checkpoint_id is None:
            if not self._checkpoint_path.exists():  # deleted after loading: the weights are mapped, the file is gone
                return f"{IMAGEBIND_CHECKPOINT.name}@{self._checkpoint_path.name}:unhashed"
            self._checkpoint_id = f"{IMAGEBIND_CHECKPOINT.name}@sha256:{file_digest(self._checkpoint_path)[:16]}"
        return self._checkpoint_id

    @torch.no_grad()
    def _init_random(self) -> None:
        # ImageBind's own init: OpenCLIP-style normal(0, D^-0.5) class tokens and positional embeddings.
        for pre in self.model.modality_preprocessors.values():
            scale = pre.cls_token.shape[-1] ** -0.5
            nn.init.normal_(pre.cls_token, std=scale)
            nn.init.normal_(pre.pos_embedding_helper.pos_embed, std=scale)

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.model.modality_heads["audio"][2].weight.device

    def _embed(self, modality: str, clips: Tensor, batch_size: int | None, postprocess: bool) -> Tensor:
        clips = clips.to(self.device, torch.float32)
        if batch_size is None or clips.shape[0] <= batch_size:
            return self.model.embed(modality, clips, postprocess)
        return torch.cat([self.model.embed(modality, c, postprocess) for c in clips.split(batch_size)])

    def embed_audio(self, clips: Tensor, batch_size: int | None = None, postprocess: bool = True) -> Tensor:
        """Embed audio clips ``(N, 1, 128, 204)`` (from :func:`imagebind_audio_clips`) -> ``(N, out_embed_dim)``.

        Args:
            clips: normalised fbank clips.
            batch_size: most clips per forward (``None``: all at once).
            postprocess: L2-normalise and scale by 20 (ImageBind's audio postprocessor); ``False`` gives the head.
        """
        if clips.ndim != 4 or tuple(clips.shape[1:]) != (1, AUDIO_NUM_MEL_BINS, AUDIO_TARGET_LEN):
            raise ValueError(f"`clips` must be (N, 1, 128, 204) fbank clips, got {tuple(clips.shape)}")
        return self._embed("audio", clips, batch_size, postprocess)

    def embed_vision(self, clips: Tensor, batch_size: int | None = None, postprocess: bool = True) -> Tensor:
        """Embed video clips ``(N, 3, 2, 224, 224)`` (channel, frame, y, x) -> ``(N, out_embed_dim)``, L2-normalised.

        Args:
            clips: CLIP-normalised 2-frame clips (:func:`imagebind_fastvideo_clips`, :func:`imagebind_avbench_clips`).
            batch_size: most clips per forward (``None``: all at once).
            postprocess: L2-normalise (ImageBind's vision postprocessor); ``False`` gives the head output.
        """
        if clips.ndim != 5 or tuple(clips.shape[1:]) != (3, VIDEO_FRAMES, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"`clips` must be (N, 3, 2, 224, 224) video clips, got {tuple(clips.shape)}")
        return self._embed("vision", clips, batch_size, postprocess)

    def forward(self, vision: Tensor | None = None, audio: Tensor | None = None) -> dict[str, Tensor]:
        """ImageBind's multi-clip forward: ``(B, S, ...)`` clips -> ``(B, out_embed_dim)`` means over ``S``.

        Args:
            vision: ``(B, S, 3, 2, 224, 224)`` clips.
            audio: ``(B, S, 1, 128, 204)`` clips.

        Returns:
            ``{"vision": ..., "audio": ...}`` for the inputs given; the clip means are not re-normalised.
        """
        inputs = {
            k: v.to(self.device, torch.float32) for k, v in (("vision", vision), ("audio", audio)) if v is not None
        }
        return self.model(inputs)


# =====================================================================================================================
# Input pipeline


def constant_clips_timepoints(
    duration: float, clip_duration: int, clips_per_video: int
) -> list[tuple[Fraction, Fraction]]:
    """Clip ``(start, end)`` times in seconds, as exact fractions, of pytorchvideo's ``ConstantClipsPerVideoSampler``.

    This is the sampler at the commit ImageBind pins (``6cdc929``).

    ``max_start = Fraction(max(duration - clip_duration, 0))`` is the exact binary value of the float difference and
    clip ``k`` starts at ``k * max_start / max(clips_per_video - 1, 1)``, so the last clip ends at ``duration`` and the
    clips overlap when the media is shorter than ``clips_per_video * clip_duration``. (PyPI pytorchvideo 0.1.5 divides
    by ``clips_per_video`` instead; ImageBind's loaders cannot run on it.)

    Args:
        duration: media length in seconds, a Python float (samples / rate or frames / fps).
        clip_duration: clip length in seconds.
        clips_per_video: number of clips.

    Example:
        >>> [(str(a), str(b)) for a, b in constant_clips_timepoints(5.0, 2, 3)]
        [('0', '2'), ('3/2', '7/2'), ('3', '5')]
    """
    max_start = Fraction(max(float(duration) - clip_duration, 0))
    step = max_start / max(clips_per_video - 1, 1)
    return [(step * k, step * k + clip_duration) for k in range(clips_per_video)]


def _fbank(wave: Tensor) -> Tensor:
    import torchaudio

    return torchaudio.compliance.kaldi.fbank(
        wave, htk_compat=True, sample_frequency=AUDIO_SAMPLE_RATE, use_energy=False, window_type="hanning",
        num_mel_bins=AUDIO_NUM_MEL_BINS, dither=0.0, frame_length=FBANK_FRAME_LENGTH_MS,
        frame_shift=FBANK_FRAME_SHIFT_MS,
    )  # fmt: skip


def imagebind_audio_clips(wave: Tensor, sample_rate: int) -> Tensor:
    """ImageBind's audio loader on a waveform: ``(C, T)`` at ``sample_rate`` -> ``(3, 1, 128, 204)`` fbank clips.

    Steps (imagebind/data.py ``load_and_transform_audio_data``, the same in av-benchmark):

    1. ``torchaudio.functional.resample`` to 16 kHz (defaults) on all channels, only if the rate differs.
    2. Three 2 s clips by :func:`constant_clips_timepoints` on ``D = T_16k / 16000``; samples
       ``int(start * 16000) : int(end * 16000)`` (truncated exact fractions).
    3. Per clip, in order: subtract the clip mean over *all* channels **in place** on the shared buffer, so an
       overlapping later clip sees samples already shifted by an earlier clip's mean (README §5.4).
    4. Kaldi fbank of **channel 0** (htk_compat, hanning, 25/10 ms, 128 bins, no dither, no energy), transposed to
       ``(128, frames)``, right-padded with zeros or cut to 204 frames, then ``(x + 4.268) / 9.138`` (the padded
       columns become 0.467).

    Args:
        wave: float32 ``(C, T)`` audio in [-1, 1]; not modified.
        sample_rate: its rate in Hz.

    Returns:
        float32 ``(3, 1, 128, 204)`` on the CPU.

    Raises:
        ValueError: fewer than 25 ms of audio (no fbank frame).

    Example:
        >>> import torch
        >>> imagebind_audio_clips(torch.zeros(1, 16000), 16000).shape
        torch.Size([3, 1, 128, 204])
    """
    wave = wave.detach().to("cpu", torch.float32)
    if sample_rate != AUDIO_SAMPLE_RATE:
        wave = resample(wave, sample_rate, AUDIO_SAMPLE_RATE, "torchaudio_functional")
    else:
        wave = wave.clone()  # the in-place DC removal below must not touch the caller's tensor
    n = wave.shape[-1]
    if n < AUDIO_MIN_SAMPLES_16K:
        raise ValueError(f"audio has {n} samples at 16 kHz; ImageBind needs at least {AUDIO_MIN_SAMPLES_16K} (25 ms)")
    mean = torch.tensor(AUDIO_NORM_MEAN, dtype=torch.float32)
    std = torch.tensor(AUDIO_NORM_STD, dtype=torch.float32)
    clips = []
    for start, end in constant_clips_timepoints(n / AUDIO_SAMPLE_RATE, AUDIO_CLIP_SECONDS, AUDIO_CLIPS_PER_VIDEO):
        segment = wave[:, int(start * AUDIO_SAMPLE_RATE) : int(end * AUDIO_SAMPLE_RATE)]
        segment -= segment.mean()  # in place on a view of `wave`: the reference's overlap quirk
        fbank = _fbank(segment).transpose(0, 1)
        pad = AUDIO_TARGET_LEN - fbank.shape[1]
        fbank = nn.functional.pad(fbank, (0, pad)) if pad > 0 else fbank[:, :AUDIO_TARGET_LEN]
        # torchvision Normalize(mean, std) with float32 tensors, as the reference applies it.
        clips.append(fbank.unsqueeze(0).sub(mean).div(std))
    return torch.stack(clips)


def _video_to_float(frames: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [0, 1] as ``x.float() / 255.0`` (decord's float frames, then ImageBind's ``/255``)."""
    if frames.dtype == torch.uint8:
        return frames.to(torch.float32) / UINT8_MAX
    return frames.to(torch.float32)


def _video_to_uint8(frames: Tensor) -> Tensor:
    """Float [0, 1] -> uint8 by rounding (the decoder hands av-benchmark uint8 frames)."""
    if frames.dtype == torch.uint8:
        return frames
    return (frames.to(torch.float32) * UINT8_MAX).round().clamp(0, UINT8_MAX).to(torch.uint8)


def short_side_scale_size(height: int, width: int, size: int = IMAGE_SIZE) -> tuple[int, int]:
    """Output ``(h, w)`` of pytorchvideo's ``short_side_scale``.

    The short side becomes ``size``, the long side ``floor(long / short * size)`` (float division first).

    Example:
        >>> short_side_scale_size(48, 80)
        (224, 373)
    """
    if width < height:
        return int(math.floor((float(height) / width) * size)), size
    return size, int(math.floor((float(width) / height) * size))


def uniform_crop_offsets(height: int, width: int, size: int = IMAGE_SIZE) -> list[tuple[int, int]]:
    """``(y, x)`` offsets of ImageBind's ``SpatialCrop(size, 3)`` (``uniform_crop`` with index 0, 1, 2).

    Centre offsets are ``ceil((h - size) / 2)``, ``ceil((w - size) / 2)``; for portrait frames (``h > w``) the crops
    are top / centre / bottom, otherwise left / centre / right.

    Example:
        >>> uniform_crop_offsets(224, 373)
        [(0, 0), (0, 75), (0, 149)]
    """
    y_c, x_c = int(math.ceil((height - size) / 2)), int(math.ceil((width - size) / 2))
    if height > width:
        return [(0, x_c), (y_c, x_c), (height - size, x_c)]
    return [(y_c, 0), (y_c, x_c), (y_c, width - size)]


def _crops(frames: Tensor, size: int = IMAGE_SIZE) -> list[Tensor]:
    h, w = frames.shape[-2:]
    return [frames[..., y : y + size, x : x + size] for y, x in uniform_crop_offsets(h, w, size)]


def _check_fps(fps: float) -> float:
    if isinstance(fps, bool) or not math.isfinite(float(fps)) or float(fps) <= 0:
        raise ValueError(f"`video_fps` must be a positive frame rate, got {fps!r}")
    return float(fps)


def fastvideo_frame_indices(num_frames: int, fps: float) -> list[tuple[int, int]]:
    """The two frames ImageBind's video loader keeps from each of its 5 clips, as ``(first, last)`` indices.

    ``D = num_frames / fps`` (floats), clips by :func:`constant_clips_timepoints` (2 s, 5 clips), decord's
    ``get_clip`` range ``ceil(fps * start) .. min(ceil(fps * end), num_frames) - 1`` (``fps * Fraction`` is a float
    product in pytorchvideo), then ``UniformTemporalSubsample(2)`` keeps the first and the last frame of the range.

    Example:
        >>> fastvideo_frame_indices(200, 25.0)
        [(0, 49), (38, 87), (75, 124), (113, 162), (150, 199)]
    """
    fps = _check_fps(fps)
    if num_frames < 1:
        raise ValueError("the video has no frames")
    out = []
    for start, end in constant_clips_timepoints(num_frames / fps, VIDEO_CLIP_SECONDS, VIDEO_CLIPS_PER_VIDEO):
        first = math.ceil(fps * float(start))
        stop = min(math.ceil(fps * float(end)), num_frames)
        t = stop - first
        # UniformTemporalSubsample: linspace(0, t - 1, 2) in float32, truncated to long.
        picks = torch.linspace(0, t - 1, VIDEO_FRAMES).clamp(0, t - 1).long().tolist()
        out.append((first + picks[0], first + picks[1]))
    return out


def imagebind_fastvideo_clips(frames: Tensor, fps: float) -> Tensor:
    """ImageBind's video loader (FastVideo's IB-score) on decoded frames: ``(F, 3, H, W)`` -> ``(15, 3, 2, 224, 224)``.

    Per clip of :func:`fastvideo_frame_indices`: the two frames as float32 ``/255``, ``ShortSideScale(224)``
    (``F.interpolate`` bilinear, ``align_corners=False``, **no** antialias, size by :func:`short_side_scale_size`),
    CLIP mean/std, then the 3 crops of :func:`uniform_crop_offsets`. Clip ``3k + crop`` is temporal clip ``k``.

    Args:
        frames: ``(F, 3, H, W)`` RGB, uint8 in [0, 255] or float in [0, 1].
        fps: frame rate (constant; frame ``i`` is at ``i / fps`` s).

    Returns:
        float32 ``(15, 3, 2, 224, 224)`` (clip, channel, frame, y, x) on the CPU.

    Example:
        >>> import torch
        >>> imagebind_fastvideo_clips(torch.zeros(50, 3, 32, 48, dtype=torch.uint8), 25.0).shape
        torch.Size([15, 3, 2, 224, 224])
    """
    idx = torch.tensor(fastvideo_frame_indices(frames.shape[0], fps)).flatten()
    # Only the 10 kept frames are moved and converted; (C, T, H, W) as pytorchvideo holds a clip.
    x = _video_to_float(frames[idx.to(frames.device)].to("cpu")).permute(1, 0, 2, 3)
    x = nn.functional.interpolate(x, size=short_side_scale_size(*x.shape[-2:]), mode="bilinear", align_corners=False)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None, None]
    std = torch.tensor(CLIP_STD, dtype=torch.float32)[:, None, None, None]
    x = x.sub(mean).div(std)
    clips = x.unflatten(1, (VIDEO_CLIPS_PER_VIDEO, VIDEO_FRAMES)).permute(1, 0, 2, 3, 4)  # (5, C, 2, h, w)
    return torch.stack([crop for clip in clips for crop in _crops(clip)]).contiguous()


def avbench_frame_indices(num_frames: int, fps: float, duration_sec: float = AVBENCH_DURATION_SEC) -> list[int]:
    """Frames av-benchmark's ``VideoDataset`` feeds ImageBind.

    They are the first ``int(0.5 * duration_sec)`` outputs of the ffmpeg ``fps=0.5`` filter
    (:func:`torchmetrics_av.preprocessing.ffmpeg_fps_indices`).

    Raises:
        ValueError: ``duration_sec`` gives fewer than 2 frames (no frame pair), or the video is too short: fewer than
            ``int(0.5 * duration_sec)`` frames at 0.5 fps or ``int(25 * duration_sec)`` at 25 fps (the Synchformer
            stream read in the same ``sample()``); av-benchmark drops such a file.

    Example:
        >>> avbench_frame_indices(120, 24.0, 5.0)
        [23, 71]
    """
    fps = _check_fps(fps)
    count = int(AVBENCH_IB_FPS * duration_sec)
    if count < 2:
        raise ValueError(f"`duration_sec` must be at least 4 s (2 frames at 0.5 fps make 1 pair), got {duration_sec}")
    ib_frames = ffmpeg_fps_indices(num_frames, fps, AVBENCH_IB_FPS)
    need_sync = int(AVBENCH_SYNC_FPS * duration_sec)
    have_sync = len(ffmpeg_fps_indices(num_frames, fps, AVBENCH_SYNC_FPS))
    if len(ib_frames) < count or have_sync < need_sync:
        raise ValueError(
            f"video too short for protocol 'av-benchmark': {num_frames} frames at {fps} fps "
            f"({num_frames / fps:.3f} s) but duration_sec={duration_sec} needs {count} frames at 0.5 fps and "
            f"{need_sync} at 25 fps (av-benchmark drops such files); lower `duration` or pass longer videos"
        )
    return ib_frames[:count].tolist()


def avbench_resize_size(height: int, width: int, size: int = IMAGE_SIZE) -> tuple[int, int]:
    """``torchvision.transforms.v2.Resize(size)`` output ``(h, w)``: short side ``size``, long ``int(size*long/short)``.

    Example:
        >>> avbench_resize_size(36, 64)
        (224, 398)
    """
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    return (new_long, size) if width <= height else (size, new_long)


def imagebind_avbench_clips(frames: Tensor, fps: float, duration_sec: float = AVBENCH_DURATION_SEC) -> Tensor:
    """av-benchmark's ImageBind video input: ``(F, 3, H, W)`` -> ``(3 * (K - 1), 3, 2, 224, 224)``.

    ``K = int(0.5 * duration_sec)`` frames by :func:`avbench_frame_indices`; ``v2.Resize(224, BICUBIC)`` on the
    **uint8** frames (antialias, native uint8 kernel, so the result is quantised), ``/255``, CLIP mean/std; the 3 crops
    of :func:`uniform_crop_offsets`; then consecutive frame pairs ``(i, i + 1)``: clip ``3 i + crop``.

    Args:
        frames: ``(F, 3, H, W)`` RGB, uint8 (float [0, 1] is rounded to uint8 first, as a decoder would deliver it).
        fps: constant frame rate.
        duration_sec: av-benchmark's ``--audio_length`` (8 s by default).

    Returns:
        float32 ``(3 (K - 1), 3, 2, 224, 224)`` (clip, channel, frame, y, x) on the CPU.

    Example:
        >>> import torch
        >>> imagebind_avbench_clips(torch.zeros(200, 3, 36, 64, dtype=torch.uint8), 25.0).shape
        torch.Size([9, 3, 2, 224, 224])
    """
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    idx = torch.tensor(avbench_frame_indices(frames.shape[0], fps, duration_sec))
    x = _video_to_uint8(frames[idx.to(frames.device)].to("cpu"))  # (K, C, H, W)
    x = tvf.resize(x, list(avbench_resize_size(*x.shape[-2:])), interpolation=InterpolationMode.BICUBIC, antialias=True)
    x = tvf.normalize(tvf.to_dtype(x, torch.float32, scale=True), mean=list(CLIP_MEAN), std=list(CLIP_STD))
    crops = _crops(x)  # 3 x (K, C, 224, 224)
    pairs = [crop[i : i + 2].transpose(0, 1) for i in range(x.shape[0] - 1) for crop in crops]  # (C, 2, 224, 224)
    return torch.stack(pairs).contiguous()


def imagebind_video_clips(
    frames: Tensor, fps: float, rule: Literal["clips", "ffmpeg"], duration_sec: float | None = None
) -> Tensor:
    """ImageBind's video clips of one video under a protocol's frame rule (``spec.imagebind_frames``).

    ``"clips"``: the stock loader as FastVideo runs it (:func:`imagebind_fastvideo_clips`, whole video);
    ``"ffmpeg"``: av-benchmark's (:func:`imagebind_avbench_clips` over ``duration_sec``, default 8 s).

    Example:
        >>> import torch
        >>> imagebind_video_clips(torch.zeros(24, 3, 32, 32, dtype=torch.uint8), 8.0, "clips").shape
        torch.Size([15, 3, 2, 224, 224])
    """
    if rule == "clips":
        return imagebind_fastvideo_clips(frames, fps)
    if rule == "ffmpeg":
        return imagebind_avbench_clips(frames, fps, AVBENCH_DURATION_SEC if duration_sec is None else duration_sec)
    raise ValueError(f"`rule` must be 'clips' or 'ffmpeg', got {rule!r}")
