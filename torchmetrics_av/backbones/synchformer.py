"""Synchformer (Iashin et al., ICASSP 2024): the audio-visual offset classifier behind the DeSync metric.

A clean-room PyTorch module graph whose ``state_dict`` is key-for-key and shape-for-shape the official
``synchformer_state_dict.pth`` (MMAudio release v0.1 = Synchformer run ``24-01-04T16-39-21``, AudioSet; 513 tensors,
237,460,245 parameters), so that file loads strictly into :attr:`Synchformer.model`. The network, in one file:

* ``vfeat_extractor`` — MotionFormer, a divided space-time ViT-B/16 (``divided_224_16x4``): a 16-frame 224 px segment
  becomes 8 x 14 x 14 tubelet tokens (Conv3d 2x16x16) + CLS; 12 blocks of time attention, space attention and MLP
  (the CLS token attends to everything; every time/space group also sees the CLS key/value); then a learned-CLS
  ``TransformerEncoderLayer`` pools the 196 tokens of each of the 8 time steps -> ``(8, 768)`` per segment.
* ``afeat_extractor`` — AST (HF ``ASTModel``, default config, 66-frame input): a ``(128 mel, 66 frame)`` log-mel
  becomes 12 x 6 patches (Conv2d 16, stride 10) + CLS + distillation token; 12 pre-LN layers; then a learned-CLS
  ``TransformerEncoderLayer`` pools the 12 frequency tokens of each of the 6 time steps -> ``(6, 768)`` per segment.
* ``vproj``/``aproj`` (Linear 768) and ``transformer`` — a 3-layer minGPT-style transformer over
  ``[OFF, 14 x 8 video tokens, MOD, 14 x 6 audio tokens]`` with a learned 198-token position embedding; the OFF token
  feeds a 21-way head over the offset grid -2.0, -1.8, ..., +2.0 s.

This is why the model scores exactly 14 segments (4.8 s) at a time. The model's own front end is here too: the 25 fps
frame choice (:func:`synchformer_frame_indices`: FastVideo's nearest index, :func:`nearest_frame_indices`, or ffmpeg's
``fps=25:round=near``), the short-side resize and crop (:func:`short_side_resize_crop`, :func:`synchformer_frames`),
segmenting (:func:`segment_video`, :func:`segment_audio`) and the log-mel (:class:`SynchformerMel`,
:func:`synchformer_audio_mel`).

Weights: MIT licence (v-iashin/Synchformer; MMAudio redistributes the state_dict). Facts from the reference code
(FastVideo's vendored copy and hkchengrex/av-benchmark ``av_bench/synchformer``); no code was copied.

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones import Synchformer
    >>> net = Synchformer(pretrained=False, embed_dim=32, depth=1, num_heads=2, sync_depth=1, sync_heads=2)
    >>> v = net.video_features(torch.zeros(14, 16, 3, 224, 224))
    >>> a = net.audio_features(torch.zeros(14, 128, 66))
    >>> v.shape, a.shape, net.sync_logits(v[None], a[None]).shape
    (torch.Size([14, 8, 32]), torch.Size([14, 6, 32]), torch.Size([1, 21]))
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchmetrics_av.backbones.layers import Mlp
from torchmetrics_av.functional.desync import NUM_OFFSET_CLASSES, offset_grid
from torchmetrics_av.preprocessing import UINT8_MAX, ffmpeg_fps_indices, resample, to_mono, to_signed_unit
from torchmetrics_av.weights import checkpoint, file_digest, load_state_dict, resolve_checkpoint

# The publisher gives an MD5 (MMAudio download_utils.py), checked on download and load (weights.CHECKPOINTS).
SYNCHFORMER_CHECKPOINT = checkpoint("synchformer_24-01-04T16-39-21")
SYNCHFORMER_NUM_PARAMS = 237_460_245

# ---------------------------------------------------------------------------------------------------------------------
# Geometry fixed by the checkpoint (divided_224_16x4.yaml, ASTConfig defaults, sync_model.py).

EMBED_DIM = 768
# Video: 16 RGB frames of 224 px per segment, tubelets of 2 frames x 16 x 16 px -> 8 x 14 x 14 tokens.
VIDEO_SIZE = 224
VIDEO_SEGMENT_FRAMES = 16
VIDEO_SEGMENT_STEP = 8
VIDEO_FPS = 25.0
PATCH = 16
TUBELET_FRAMES = 2
VIDEO_TOKENS_T = VIDEO_SEGMENT_FRAMES // TUBELET_FRAMES  # 8 (TEMPORAL_RESOLUTION)
VIDEO_TOKENS_HW = (VIDEO_SIZE // PATCH) ** 2  # 196
# MotionFormer / its aggregator: LayerNorm eps 1e-6 (vit norm_layer, layer_norm_eps of the encoder layers).
VIT_LN_EPS = 1e-6
# Audio: 0.64 s at 16 kHz per segment, hop 0.32 s; MelSpectrogram(n_fft 1024, win 400, hop 160, 128 mels), padded to
# 66 frames; AST patches 16 with stride 10 -> 12 (freq) x 6 (time) tokens.
SAMPLE_RATE = 16000
AUDIO_SEGMENT_SAMPLES = 10240
AUDIO_SEGMENT_STEP = 5120
N_FFT = 1024
WIN_LENGTH = 400
HOP_LENGTH = 160
N_MELS = 128
MEL_FRAMES = 66
AST_STRIDE = 10
AST_TOKENS_F = (N_MELS - PATCH) // AST_STRIDE + 1  # 12
AST_TOKENS_T = (MEL_FRAMES - PATCH) // AST_STRIDE + 1  # 6
# HF ASTConfig.layer_norm_eps.
AST_LN_EPS = 1e-12
# log(mel + 1e-6), then AST's AudioSet normalisation (x - mean) / (2 * std) (av_bench/extract.py, FastVideo).
LOG_OFFSET = 1e-6
AST_MEAN = -4.2677393
AST_STD = 4.5689974
# Sync transformer: 14 segments per window, 1 + 14*8 + 1 + 14*6 = 198 positions, 21 offset classes on [-2, 2] s.
WINDOW_SEGMENTS = 14
SYNC_POSITIONS = 1 + WINDOW_SEGMENTS * VIDEO_TOKENS_T + 1 + WINDOW_SEGMENTS * AST_TOKENS_T
# minGPT default: nn.LayerNorm eps.
SYNC_LN_EPS = 1e-5
# Segments per forward of the video encoder: ~40 MB of activations each in float32 at full size.
DEFAULT_SEGMENT_BATCH = 16

MelPad = Literal["min", "zero"]
# The ProtocolSpec fields that choose the video front end (protocols.py: video_frames, video_resize).
FrameRule = Literal["nearest", "ffmpeg"]
ResizeStyle = Literal["interpolate", "torchvision"]
# Source frames converted and resized per step: bounds the float working set of long high-resolution clips (every step
# is per frame, so chunking does not change any value).
FRAME_CHUNK = 32
# FastVideo treats rates closer than this as equal (no resampling).
_SAME_FPS_TOL = 1e-6


# ---------------------------------------------------------------------------------------------------------------------
# Shared: a TransformerEncoderLayer that prepends a learned CLS token and returns its output.


class _ClsPoolLayer(nn.TransformerEncoderLayer):
    """Pre-LN ``nn.TransformerEncoderLayer`` (GELU, no dropout, eps 1e-6) pooling a token set into its CLS output.

    Subclassing the torch layer keeps the official parameter names (``self_attn.in_proj_weight``, ``linear1``,
    ``norm1``, ...) and its fused eval fast path, which the reference runs.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(
            d_model=dim, nhead=num_heads, dim_feedforward=4 * dim, dropout=0.0, activation=nn.GELU(),
            layer_norm_eps=VIT_LN_EPS, batch_first=True, norm_first=True,
        )  # fmt: skip
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))

    def pool(self, tokens: Tensor) -> Tensor:
        """``(G, N, D)`` token groups -> ``(G, D)``."""
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return super().forward(x)[:, 0]


# ---------------------------------------------------------------------------------------------------------------------
# Video: MotionFormer (divided space-time attention).


class _Proj(nn.Module):
    """Holds one convolution as ``.proj`` (the official ``patch_embed*.proj`` names)."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.proj = conv


class _DividedAttention(nn.Module):
    """Multi-head attention restricted to time groups or space groups, with a global CLS token.

    Tokens are ``[CLS, t0 p0..p195, t1 p0.., ...]``. The CLS query attends to every token; a patch query attends to the
    CLS key plus the keys of its group: the 8 tokens at the same spatial position (``"time"``) or the 196 tokens of the
    same frame (``"space"``). Queries are scaled by ``head_dim ** -0.5`` before the product, as in the reference.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    @staticmethod
    def _attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return torch.matmul(torch.matmul(q, k.transpose(-1, -2)).softmax(dim=-1), v)

    def forward(self, x: Tensor, groups: Literal["time", "space"], frames: int) -> Tensor:
        b, n, d = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each (B, H, N, hd)
        q = q * self.scale
        cls_out = self._attend(q[:, :, :1], k, v)  # (B, H, 1, hd)
        # (B, H, F, P, hd): frame-major patch grid.
        q_, k_, v_ = (t[:, :, 1:].unflatten(2, (frames, -1)) for t in (q, k, v))
        if groups == "time":  # sequences run over frames at a fixed spatial position
            q_, k_, v_ = (t.transpose(2, 3) for t in (q_, k_, v_))
        cls_k = k[:, :, None, :1].expand(-1, -1, q_.shape[2], -1, -1)
        cls_v = v[:, :, None, :1].expand(-1, -1, q_.shape[2], -1, -1)
        out = self._attend(q_, torch.cat([cls_k, k_], dim=3), torch.cat([cls_v, v_], dim=3))
        if groups == "time":
            out = out.transpose(2, 3)
        out = torch.cat([cls_out, out.flatten(2, 3)], dim=2)  # (B, H, N, hd)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _DividedBlock(nn.Module):
    """``x += timeattn(norm3(x)); x += attn(norm1(x)); x += mlp(norm2(x))`` (no drop-path at inference)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        # Registration order = the checkpoint's key order.
        self.norm1 = nn.LayerNorm(dim, eps=VIT_LN_EPS)
        self.attn = _DividedAttention(dim, num_heads)
        self.timeattn = _DividedAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=VIT_LN_EPS)
        self.mlp = Mlp(dim, 4 * dim)
        self.norm3 = nn.LayerNorm(dim, eps=VIT_LN_EPS)

    def forward(self, x: Tensor, frames: int) -> Tensor:
        x = x + self.timeattn(self.norm3(x), "time", frames)
        x = x + self.attn(self.norm1(x), "space", frames)
        return x + self.mlp(self.norm2(x))


class MotionFormer(nn.Module):
    """Video segment encoder: ``(N, 3, 16, 224, 224)`` in [-1, 1] -> ``(N, 8, D)`` per-time-step features.

    Position embedding "separate": ``pos_embed[:, 0]`` on CLS; patch ``(t, p)`` gets ``pos_embed[:, 1 + p] +
    temp_embed[:, t]``. After the blocks the CLS token is dropped, ``norm`` applied, and ``spatial_attn_agg`` pools each
    frame's 196 tokens.
    """

    def __init__(self, dim: int = EMBED_DIM, depth: int = 12, num_heads: int = 12) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + VIDEO_TOKENS_HW, dim))
        self.temp_embed = nn.Parameter(torch.zeros(1, VIDEO_TOKENS_T, dim))
        # The 2-D patch embedding is in the checkpoint but unused (PATCH_SIZE_TEMP = 2 selects the 3-D one).
        self.patch_embed = _Proj(nn.Conv2d(3, dim, PATCH, PATCH))
        tubelet = (TUBELET_FRAMES, PATCH, PATCH)
        self.patch_embed_3d = _Proj(nn.Conv3d(3, dim, tubelet, tubelet))
        self.blocks = nn.ModuleList(_DividedBlock(dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=VIT_LN_EPS)
        self.spatial_attn_agg = _ClsPoolLayer(dim, num_heads)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 3, 16, 224, 224)`` -> ``(N, 8, D)``."""
        x = self.patch_embed_3d.proj(x)  # (N, D, t, h, w)
        n, d, t = x.shape[:3]
        x = x.flatten(2).transpose(1, 2)  # (N, t*h*w, D), time-major
        x = torch.cat([self.cls_token.expand(n, -1, -1), x], dim=1)
        patch_pos = self.pos_embed[:, 1:].repeat(1, t, 1) + self.temp_embed[:, :t].repeat_interleave(
            self.pos_embed.shape[1] - 1, dim=1
        )
        x = x + torch.cat([self.pos_embed[:, :1], patch_pos], dim=1)
        for block in self.blocks:
            x = block(x, t)
        x = self.norm(x[:, 1:])  # (N, t*hw, D)
        return self.spatial_attn_agg.pool(x.reshape(n * t, -1, d)).view(n, t, d)


# ---------------------------------------------------------------------------------------------------------------------
# Audio: AST (HF ASTModel names) + frequency aggregation.


class _ASTSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = (lin(x).view(b, n, self.num_heads, -1).transpose(1, 2) for lin in (self.query, self.key, self.value))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // self.num_heads)
        return torch.matmul(scores.softmax(dim=-1), v).transpose(1, 2).reshape(b, n, d)


class _Dense(nn.Module):
    """Holds one Linear as ``.dense`` (HF naming)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)


class _ASTAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attention = _ASTSelfAttention(dim, num_heads)
        self.output = _Dense(dim, dim)


class _ASTLayer(nn.Module):
    """Pre-LN ViT layer: ``x += dense(attn(ln_before(x))); x += out(gelu(inter(ln_after(x))))``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attention = _ASTAttention(dim, num_heads)
        self.intermediate = _Dense(dim, 4 * dim)
        self.output = _Dense(4 * dim, dim)
        self.layernorm_before = nn.LayerNorm(dim, eps=AST_LN_EPS)
        self.layernorm_after = nn.LayerNorm(dim, eps=AST_LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = self.attention.output.dense(self.attention.attention(self.layernorm_before(x))) + x
        hidden = F.gelu(self.intermediate.dense(self.layernorm_after(x)))
        return self.output.dense(hidden) + x


class _ASTEmbeddings(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Only the first 2 + 12*6 rows of AST's 1214-position table are kept (66-frame input).
        self.position_embeddings = nn.Parameter(torch.zeros(1, 2 + AST_TOKENS_F * AST_TOKENS_T, dim))
        self.patch_embeddings = nn.Module()
        self.patch_embeddings.projection = nn.Conv2d(1, dim, PATCH, AST_STRIDE)

    def forward(self, mel: Tensor) -> Tensor:
        x = self.patch_embeddings.projection(mel.unsqueeze(1)).flatten(2).transpose(1, 2)  # frequency-major
        n = x.shape[0]
        special = [self.cls_token.expand(n, -1, -1), self.distillation_token.expand(n, -1, -1)]
        return torch.cat([*special, x], dim=1) + self.position_embeddings


class _ASTModel(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int) -> None:
        super().__init__()
        self.embeddings = _ASTEmbeddings(dim)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_ASTLayer(dim, num_heads) for _ in range(depth))
        self.layernorm = nn.LayerNorm(dim, eps=AST_LN_EPS)

    def forward(self, mel: Tensor) -> Tensor:
        x = self.embeddings(mel)
        for layer in self.encoder.layer:
            x = layer(x)
        return self.layernorm(x)


class AudioSpectrogramTransformer(nn.Module):
    """Audio segment encoder: ``(N, 128, 66)`` normalised log-mel (bin, frame) -> ``(N, 6, D)`` per-time-step features.

    The 12 x 6 output patch tokens (CLS and distillation tokens dropped) are pooled over frequency by ``freq_attn_agg``
    for each of the 6 time steps.
    """

    def __init__(self, dim: int = EMBED_DIM, depth: int = 12, num_heads: int = 12) -> None:
        super().__init__()
        self.ast = _ASTModel(dim, depth, num_heads)
        self.freq_attn_agg = _ClsPoolLayer(dim, num_heads)

    def forward(self, mel: Tensor) -> Tensor:
        """``(N, 128, 66)`` -> ``(N, 6, D)``."""
        x = self.ast(mel)[:, 2:]  # (N, f*t, D), frequency-major
        n, _, d = x.shape
        x = x.view(n, AST_TOKENS_F, AST_TOKENS_T, d).transpose(1, 2)  # (N, t, f, D)
        return self.freq_attn_agg.pool(x.reshape(n * AST_TOKENS_T, AST_TOKENS_F, d)).view(n, AST_TOKENS_T, d)


# ---------------------------------------------------------------------------------------------------------------------
# The sync transformer (minGPT-style "GlobalTransformer").


class _SyncSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key = nn.Linear(dim, dim)
        self.query = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        k, q, v = (lin(x).view(b, n, self.num_heads, -1).transpose(1, 2) for lin in (self.key, self.query, self.value))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
        return self.proj((att.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d))


class _SyncBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=SYNC_LN_EPS)
        self.ln2 = nn.LayerNorm(dim, eps=SYNC_LN_EPS)
        self.attn = _SyncSelfAttention(dim, num_heads)
        # Indices 0 and 2 are the checkpoint's mlp.0 / mlp.2 keys.
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class SyncTransformer(nn.Module):
    """Offset classifier over one 14-segment window.

    ``x = [OFF, vis_in_lnorm(v), MOD, aud_in_lnorm(a)] + pos_emb`` (198 positions), 3 blocks, ``ln_f``, then
    ``off_head`` on the OFF token -> 21 logits.
    """

    def __init__(self, dim: int = EMBED_DIM, depth: int = 3, num_heads: int = 8) -> None:
        super().__init__()
        self.OFF_tok = nn.Parameter(torch.zeros(1, 1, dim))
        self.MOD_tok = nn.Parameter(torch.zeros(1, 1, dim))
        self.vis_in_lnorm = nn.LayerNorm(dim, eps=SYNC_LN_EPS)
        self.aud_in_lnorm = nn.LayerNorm(dim, eps=SYNC_LN_EPS)
        self.pos_emb_cfg = nn.Module()
        self.pos_emb_cfg.pos_emb = nn.Parameter(torch.zeros(1, SYNC_POSITIONS, dim))
        self.blocks = nn.Sequential(*(_SyncBlock(dim, num_heads) for _ in range(depth)))
        self.ln_f = nn.LayerNorm(dim, eps=SYNC_LN_EPS)
        self.off_head = nn.Linear(dim, NUM_OFFSET_CLASSES)

    def forward(self, v: Tensor, a: Tensor) -> Tensor:
        """``v (B, 112, D)``, ``a (B, 84, D)`` projected tokens -> ``(B, 21)`` logits."""
        b = v.shape[0]
        x = torch.cat(
            [
                self.OFF_tok.expand(b, -1, -1),
                self.vis_in_lnorm(v),
                self.MOD_tok.expand(b, -1, -1),
                self.aud_in_lnorm(a),
            ],
            dim=1,
        )
        x = self.blocks(x + self.pos_emb_cfg.pos_emb)
        return self.off_head(self.ln_f(x)[:, 0])


class SynchformerNetwork(nn.Module):
    """The module tree of ``synchformer_state_dict.pth``.

    Children: ``vfeat_extractor``, ``afeat_extractor``, ``vproj``, ``aproj``, ``transformer``.
    """

    def __init__(
        self, dim: int = EMBED_DIM, depth: int = 12, num_heads: int = 12, sync_depth: int = 3, sync_heads: int = 8
    ) -> None:
        super().__init__()
        self.vfeat_extractor = MotionFormer(dim, depth, num_heads)
        self.afeat_extractor = AudioSpectrogramTransformer(dim, depth, num_heads)
        self.vproj = nn.Linear(dim, dim)
        self.aproj = nn.Linear(dim, dim)
        self.transformer = SyncTransformer(dim, sync_depth, sync_heads)

    def compare_v_a(self, vis: Tensor, aud: Tensor) -> Tensor:
        """``vis (B, 14, 8, D)``, ``aud (B, 14, 6, D)`` segment features -> ``(B, 21)`` offset logits."""
        b = vis.shape[0]
        return self.transformer(
            self.vproj(vis).reshape(b, -1, vis.shape[-1]), self.aproj(aud).reshape(b, -1, aud.shape[-1])
        )


# ---------------------------------------------------------------------------------------------------------------------
# Model-specific preprocessing.


def nearest_frame_indices(num_frames: int, src_fps: float, target_fps: float, min_frames: int = 1) -> Tensor:
    """Source frame feeding each output frame of FastVideo's nearest-index frame-rate conversion.

    ``T' = max(min_frames, round(T / src_fps * target_fps))`` (Python round), ``idx = floor(arange(T') * src_fps /
    target_fps)`` in float64, clipped to ``T - 1``; the identity when the rates agree within 1e-6. At 24 -> 25 fps the
    first duplicated frame is frame 0.

    Example:
        >>> nearest_frame_indices(6, 24.0, 25.0).tolist()
        [0, 0, 1, 2, 3, 4]
    """
    if abs(src_fps - target_fps) < _SAME_FPS_TOL:
        return torch.arange(num_frames)
    n_out = max(min_frames, int(round(num_frames / src_fps * target_fps)))
    idx = (torch.arange(n_out, dtype=torch.float64) * (src_fps / target_fps)).to(torch.int64)
    return idx.clamp(0, num_frames - 1)


def synchformer_frame_indices(num_frames: int, fps: float, rule: FrameRule, duration: float | None = None) -> Tensor:
    """Source frame of every 25 fps frame Synchformer sees, under a protocol's frame rule.

    Args:
        num_frames: frames of the source video.
        fps: its frame rate (frames/s).
        rule: ``spec.video_frames``: ``"nearest"`` (FastVideo, :func:`nearest_frame_indices`, at least 16 frames) or
            ``"ffmpeg"`` (av-benchmark's decoders, ``fps=25:round=near``,
            :func:`~torchmetrics_av.preprocessing.ffmpeg_fps_indices`).
        duration: keep the first ``int(25 * duration)`` frames (av-benchmark's ``duration_sec``); ``None`` keeps all.

    Returns:
        ``(T',)`` int64 source indices.

    Raises:
        ValueError: an unknown rule, or fewer 25 fps frames than ``duration`` needs.

    Example:
        >>> synchformer_frame_indices(48, 24.0, "ffmpeg", duration=1.0).tolist()[10:14]
        [10, 11, 11, 12]
    """
    if rule == "nearest":
        idx = nearest_frame_indices(num_frames, fps, VIDEO_FPS, min_frames=VIDEO_SEGMENT_FRAMES)
    elif rule == "ffmpeg":
        idx = ffmpeg_fps_indices(num_frames, fps, VIDEO_FPS)
    else:
        raise ValueError(f"`rule` must be 'nearest' or 'ffmpeg', got {rule!r}")
    if duration is None:
        return idx
    need = int(VIDEO_FPS * duration)
    if idx.shape[0] < need:
        raise ValueError(
            f"gives {idx.shape[0]} frames at 25 fps ({num_frames} at {fps:g} fps); `duration`={duration} s needs "
            f"{need} frames (lower `duration` or pass longer clips)"
        )
    return idx[:need]


def short_side_resize_crop(frames: Tensor, size: int = VIDEO_SIZE, style: ResizeStyle = "interpolate") -> Tensor:
    """Resize the short side to ``size`` with antialiased bicubic interpolation, then centre-crop ``size x size``.

    Args:
        frames: ``(F, C, H, W)``; float for ``"interpolate"``, uint8 for ``"torchvision"``.
        size: output side in pixels.
        style: ``"interpolate"`` (FastVideo): ``F.interpolate(bicubic, antialias)`` on float frames, on their device,
            output ``(round(H*s), round(W*s))`` with ``s = size / min(H, W)``, crop offset ``(H' - size) // 2``, no
            clamp (bicubic overshoot is kept). ``"torchvision"`` (av-benchmark, ``v2.Resize(size, BICUBIC)`` +
            ``CenterCrop``): torch's native uint8 CPU kernel (the frames are moved to CPU, because the CUDA path
            rounds floats and differs), long side ``int(size * long / short)``, crop offset
            ``int(round((H' - size) / 2))``; output uint8.

    Returns:
        ``(F, C, size, size)``, same dtype as the input, on the input's device.

    Example:
        >>> import torch
        >>> short_side_resize_crop(torch.zeros(2, 3, 64, 96), 32).shape
        torch.Size([2, 3, 32, 32])
    """
    h, w = frames.shape[-2:]
    device = frames.device
    if style == "interpolate":
        if not frames.is_floating_point():
            raise ValueError(f"style 'interpolate' resizes float frames, got dtype {frames.dtype}")
        scale = size / min(h, w)
        out_h, out_w = int(round(h * scale)), int(round(w * scale))
        top, left = (out_h - size) // 2, (out_w - size) // 2
    elif style == "torchvision":
        if frames.dtype != torch.uint8:
            raise ValueError(f"style 'torchvision' resizes uint8 frames, got dtype {frames.dtype}")
        short, long = min(h, w), max(h, w)
        new_long = int(size * long / short)
        out_h, out_w = (size, new_long) if h <= w else (new_long, size)
        top, left = int(round((out_h - size) / 2.0)), int(round((out_w - size) / 2.0))
        frames = frames.cpu()
    else:
        raise ValueError(f"`style` must be 'interpolate' or 'torchvision', got {style!r}")
    out = []
    for start in range(0, frames.shape[0], FRAME_CHUNK):
        chunk = frames[start : start + FRAME_CHUNK]
        if style == "interpolate" or (out_h, out_w) != (h, w):  # torchvision returns same-size images untouched
            chunk = F.interpolate(chunk, size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=True)
        out.append(chunk[..., top : top + size, left : left + size])
    return torch.cat(out).to(device)


def synchformer_frames(
    video: Tensor, frame_index: Tensor, style: ResizeStyle, device: torch.device | str | None = None
) -> Tensor:
    """Selected source frames -> ``(n, 3, 224, 224)`` float32 in about [-1, 1], Synchformer's video input.

    ``"interpolate"`` (FastVideo): uint8 frames are divided by 255, float frames used as they are, then
    :func:`short_side_resize_crop` on ``device``. ``"torchvision"`` (av-benchmark): float frames are first quantised to
    uint8 (``round(x * 255)``, as its rgb24 decoder would deliver them) and resized by torch's uint8 CPU kernel. Both
    end with ``(x - 0.5) / 0.5`` (:func:`~torchmetrics_av.preprocessing.to_signed_unit`). Frames are converted
    ``FRAME_CHUNK`` at a time, so a long high-resolution clip never exists as one float tensor at full resolution.

    Args:
        video: ``(F, 3, H, W)`` uint8 in [0, 255] or float in [0, 1].
        frame_index: ``(n,)`` source frames to convert (see :func:`synchformer_frame_indices`).
        style: ``spec.video_resize``.
        device: where the output goes (default: ``video``'s device).

    Example:
        >>> import torch
        >>> video = torch.zeros(4, 3, 36, 64, dtype=torch.uint8)
        >>> synchformer_frames(video, torch.tensor([0, 0, 3]), "torchvision").shape
        torch.Size([3, 3, 224, 224])
    """
    device = video.device if device is None else torch.device(device)
    out = []
    for start in range(0, frame_index.shape[0], FRAME_CHUNK):
        frames = video[frame_index[start : start + FRAME_CHUNK].to(video.device)]
        if style == "interpolate":
            frames = frames.to(device)
            frames = frames.float() / UINT8_MAX if frames.dtype == torch.uint8 else frames.float()
            out.append(to_signed_unit(short_side_resize_crop(frames, VIDEO_SIZE, "interpolate")))
        elif style == "torchvision":
            if frames.dtype != torch.uint8:
                frames = (frames.float() * UINT8_MAX).round().to(torch.uint8)
            resized = short_side_resize_crop(frames.cpu(), VIDEO_SIZE, "torchvision")
            out.append(to_signed_unit(resized).to(device))
        else:
            raise ValueError(f"`style` must be 'interpolate' or 'torchvision', got {style!r}")
    return torch.cat(out)


def segment_video(frames: Tensor) -> Tensor:
    """Overlapping 16-frame segments every 8 frames: ``(T, C, H, W)`` -> ``(S, 16, C, H, W)`` view.

    ``S = (T - 16) // 8 + 1`` (0.64 s windows every 0.32 s at 25 fps). A view: no frame is copied.

    Raises:
        ValueError: fewer than 16 frames.

    Example:
        >>> import torch
        >>> segment_video(torch.zeros(200, 3, 4, 4)).shape
        torch.Size([24, 16, 3, 4, 4])
    """
    if frames.shape[0] < VIDEO_SEGMENT_FRAMES:
        raise ValueError(f"video has {frames.shape[0]} frames at 25 fps; a segment needs {VIDEO_SEGMENT_FRAMES}")
    return frames.unfold(0, VIDEO_SEGMENT_FRAMES, VIDEO_SEGMENT_STEP).permute(0, 4, 1, 2, 3)


def segment_audio(wave: Tensor, pad_short: bool = True) -> Tensor:
    """Overlapping 10240-sample segments every 5120 samples of 16 kHz mono audio: ``(N,)`` -> ``(S, 10240)``.

    ``S = (N - 10240) // 5120 + 1``. With ``pad_short`` (FastVideo) a clip shorter than one segment gives one
    zero-padded segment; otherwise (av-benchmark) it is an error.

    Example:
        >>> import torch
        >>> segment_audio(torch.zeros(128000)).shape
        torch.Size([24, 10240])
    """
    if wave.shape[-1] < AUDIO_SEGMENT_SAMPLES:
        if not pad_short:
            raise ValueError(f"audio has {wave.shape[-1]} samples at 16 kHz; a segment needs {AUDIO_SEGMENT_SAMPLES}")
        wave = F.pad(wave, (0, AUDIO_SEGMENT_SAMPLES - wave.shape[-1]))
    return wave.unfold(-1, AUDIO_SEGMENT_SAMPLES, AUDIO_SEGMENT_STEP)


def synchformer_audio_mel(
    clip: Tensor,
    sample_rate: int,
    mel: nn.Module,
    *,
    pad_short: bool,
    pad: MelPad,
    duration: float | None = None,
) -> Tensor:
    """One ``(C, T)`` clip -> ``(S, 128, 66)`` normalised log-mel of all its Synchformer segments.

    Channel mean, ``torchaudio.transforms.Resample`` to 16 kHz (both references) on ``clip``'s device, the first
    ``int(16000 * duration)`` samples when ``duration`` is given (av-benchmark), :func:`segment_audio` and the
    log-mel front end ``mel`` (a :class:`SynchformerMel`, once per clip: FastVideo's 66th frame is the clip's minimum).

    Args:
        clip: ``(C, T)`` float32 audio at ``sample_rate``.
        sample_rate: Hz.
        mel: the backbone's :class:`SynchformerMel` (moved to ``clip``'s device).
        pad_short: ``spec.desync_pad_short``.
        pad: ``spec.desync_mel_pad``.
        duration: seconds to keep, or ``None`` for the whole clip.

    Raises:
        ValueError: the clip is shorter than ``duration`` (or than one segment without ``pad_short``).

    Example:
        >>> import torch
        >>> synchformer_audio_mel(torch.zeros(2, 80000), 16000, SynchformerMel(), pad_short=True, pad="min").shape
        torch.Size([14, 128, 66])
    """
    wave = resample(to_mono(clip), sample_rate, SAMPLE_RATE, "torchaudio")
    if duration is not None:
        need = int(SAMPLE_RATE * duration)
        if wave.shape[-1] < need:
            raise ValueError(
                f"lasts {wave.shape[-1] / SAMPLE_RATE:.3f} s; `duration`={duration} s of audio is needed (lower "
                "`duration` or pass longer clips)"
            )
        wave = wave[:need]
    return mel.to(wave.device)(segment_audio(wave, pad_short=pad_short), pad=pad)


class SynchformerMel(nn.Module):
    """Synchformer's audio front end: 16 kHz segments ``(S, 10240)`` -> normalised log-mel ``(S, 128, 66)``.

    ``torchaudio.transforms.MelSpectrogram(16000, n_fft=1024, win_length=400, hop_length=160, n_mels=128)`` (power 2,
    centred reflect padding, HTK mel, no norm) gives 65 frames; ``log(x + 1e-6)``; the 66th frame is padded with
    ``pad="min"`` (FastVideo: the minimum over all segments of the clip, so call it once per clip) or ``pad="zero"``
    (av-benchmark: 0.0 in the log domain); then ``(x + 4.2677393) / (2 * 4.5689974)``.

    Example:
        >>> import torch
        >>> SynchformerMel()(torch.zeros(2, 10240), pad="zero").shape
        torch.Size([2, 128, 66])
    """

    def __init__(self) -> None:
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=N_FFT, win_length=WIN_LENGTH, hop_length=HOP_LENGTH, n_mels=N_MELS
        )

    def forward(self, segments: Tensor, pad: MelPad = "min") -> Tensor:
        """``(S, 10240)`` float32 -> ``(S, 128, 66)``."""
        x = torch.log(self.mel(segments) + LOG_OFFSET)
        if x.shape[-1] > MEL_FRAMES:
            x = x[..., :MEL_FRAMES]
        elif x.shape[-1] < MEL_FRAMES:
            if pad == "min":
                value = x.min().item()
            elif pad == "zero":
                value = 0.0
            else:
                raise ValueError(f"`pad` must be 'min' or 'zero', got {pad!r}")
            x = F.pad(x, (0, MEL_FRAMES - x.shape[-1]), value=value)
        return (x - AST_MEAN) / (2 * AST_STD)


# ---------------------------------------------------------------------------------------------------------------------
# The backbone.


class Synchformer(nn.Module):
    """Synchformer audio-visual offset classifier, batched over segments.

    Args:
        weights: local path to ``synchformer_state_dict.pth`` (or a file with the same keys, or the original
            ``24-01-04T16-39-21.pt`` whose ``"model"`` entry holds them).
        pretrained: load the official checkpoint (``weights``, else the cache, else a download). ``False`` keeps the
            random initialisation and needs no network.
        embed_dim: width (768 official; smaller only for tests). The input geometry (16 x 224 px frames, 128 x 66 mel,
            14-segment windows) is fixed by the checkpoint and does not change with it.
        depth: MotionFormer and AST blocks (12 official).
        num_heads: attention heads of both encoders and their aggregators (12 official).
        sync_depth: sync-transformer blocks (3 official).
        sync_heads: sync-transformer heads (8 official).
        segment_batch: segments per encoder forward (memory bound; does not change results beyond float rounding).
        bf16: run the two feature encoders under ``torch.autocast(dtype=bfloat16)`` (opt-in, meant for GPUs; the sync
            head stays float32). Off by default: the references run float32.
        cache_dir: checkpoint cache override (default ``$TORCHMETRICS_AV_CACHE``).

    Attributes:
        model: :class:`SynchformerNetwork`; its ``state_dict()`` equals the official checkpoint's keys and shapes.
        mel: the log-mel front end (:class:`SynchformerMel`).
        grid: ``(21,)`` float32 offset of each class in seconds.
        checkpoint_id: provenance string, ``"<name>@sha256:<digest>"`` or ``"random-init"``.

    Example:
        >>> import torch
        >>> net = Synchformer(pretrained=False, embed_dim=32, depth=1, num_heads=2, sync_depth=1, sync_heads=2)
        >>> net.grid.shape, sum(p.numel() for p in net.model.parameters()) > 0
        (torch.Size([21]), True)
    """

    sample_rate = SAMPLE_RATE
    fps = VIDEO_FPS
    window_segments = WINDOW_SEGMENTS
    # precision= (torchmetrics_av.precision): the two feature encoders under autocast, the sync head float32.
    autocast_modules = ("model.vfeat_extractor", "model.afeat_extractor")
    grid: Tensor

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        *,
        embed_dim: int = EMBED_DIM,
        depth: int = 12,
        num_heads: int = 12,
        sync_depth: int = 3,
        sync_heads: int = 8,
        segment_batch: int = DEFAULT_SEGMENT_BATCH,
        bf16: bool = False,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if segment_batch < 1:
            raise ValueError(f"`segment_batch` must be >= 1, got {segment_batch}")
        load = weights is not None or pretrained
        path = resolve_checkpoint(SYNCHFORMER_CHECKPOINT.name, weights, cache_dir=cache_dir) if load else None
        # With a checkpoint, build on the meta device and adopt the loaded tensors (strict keys and shapes): random
        # initialisation of 237 M parameters would cost seconds and a second copy of the weights in memory.
        with torch.device("meta") if load else contextlib.nullcontext():
            self.model = SynchformerNetwork(embed_dim, depth, num_heads, sync_depth, sync_heads)
        self.checkpoint_id = "random-init"
        if path is not None:
            state = load_state_dict(path)
            if isinstance(state.get("model"), dict):  # the original training checkpoint (24-01-04T16-39-21.pt)
                state = state["model"]
            state = {k: v.to(torch.float32) for k, v in state.items()}
            self.model.load_state_dict(state, strict=True, assign=True)
            self.checkpoint_id = f"{SYNCHFORMER_CHECKPOINT.name}@sha256:{file_digest(path)[:16]}"
        self.mel = SynchformerMel()
        self.register_buffer("grid", offset_grid(), persistent=False)
        self.embed_dim = embed_dim
        self.segment_batch = segment_batch
        self.bf16 = bf16
        self.eval()

    @property
    def device(self) -> torch.device:
        """Device of the network's parameters."""
        return self.model.vproj.weight.device

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        if self.bf16:
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield

    def _batched(self, encoder: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        out = []
        for start in range(0, x.shape[0], self.segment_batch):
            chunk = x[start : start + self.segment_batch].to(self.device, torch.float32)
            with self._precision():
                out.append(encoder(chunk).float())
        return torch.cat(out)

    def video_features(self, segments: Tensor) -> Tensor:
        """Encode video segments.

        Args:
            segments: ``(N, 16, 3, 224, 224)`` float frames in [-1, 1] (25 fps, see :func:`segment_video`).

        Returns:
            ``(N, 8, embed_dim)`` float32 on the model's device.
        """
        if segments.ndim != 5 or tuple(segments.shape[1:]) != (VIDEO_SEGMENT_FRAMES, 3, VIDEO_SIZE, VIDEO_SIZE):
            raise ValueError(f"`segments` must be (N, 16, 3, 224, 224), got {tuple(segments.shape)}")
        # The encoder takes channel-first clips (N, C, T, H, W); transpose per chunk to bound the copy.
        return self._batched(lambda x: self.model.vfeat_extractor(x.transpose(1, 2)), segments)

    def audio_features(self, mel: Tensor) -> Tensor:
        """Encode audio segments.

        Args:
            mel: ``(N, 128, 66)`` normalised log-mel (see :class:`SynchformerMel`).

        Returns:
            ``(N, 6, embed_dim)`` float32 on the model's device.
        """
        if mel.ndim != 3 or tuple(mel.shape[1:]) != (N_MELS, MEL_FRAMES):
            raise ValueError(f"`mel` must be (N, 128, 66), got {tuple(mel.shape)}")
        return self._batched(self.model.afeat_extractor, mel)

    def sync_logits(self, vfeats: Tensor, afeats: Tensor) -> Tensor:
        """Offset logits of 14-segment windows (always float32, no autocast).

        Args:
            vfeats: ``(B, 14, 8, D)`` video features of 14 consecutive segments.
            afeats: ``(B, 14, 6, D)`` audio features of the same 14 segments.

        Returns:
            ``(B, 21)`` logits over :attr:`grid`.
        """
        if vfeats.ndim != 4 or vfeats.shape[1:3] != (WINDOW_SEGMENTS, VIDEO_TOKENS_T):
            raise ValueError(f"`vfeats` must be (B, 14, 8, D), got {tuple(vfeats.shape)}")
        if (
            afeats.ndim != 4
            or afeats.shape[1:3] != (WINDOW_SEGMENTS, AST_TOKENS_T)
            or afeats.shape[0] != vfeats.shape[0]
        ):
            raise ValueError(f"`afeats` must be (B, 14, 6, D) with B = {vfeats.shape[0]}, got {tuple(afeats.shape)}")
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self.model.compare_v_a(vfeats.to(self.device, torch.float32), afeats.to(self.device, torch.float32))

    def forward(self, video_segments: Tensor, mel: Tensor) -> tuple[Tensor, Tensor]:
        """Front and back window logits of one clip.

        Args:
            video_segments: ``(S, 16, 3, 224, 224)`` preprocessed video segments, ``S >= 14``.
            mel: ``(S, 128, 66)`` preprocessed audio segments (same ``S``).

        Returns:
            ``(front (21,), back (21,))``: logits of segments ``[0, 14)`` and ``[S-14, S)``.
        """
        if video_segments.shape[0] != mel.shape[0] or mel.shape[0] < WINDOW_SEGMENTS:
            raise ValueError(
                f"need equal segment counts >= {WINDOW_SEGMENTS}, got {video_segments.shape[0]} video and "
                f"{mel.shape[0]} audio segments"
            )
        v, a = self.video_features(video_segments), self.audio_features(mel)
        w = WINDOW_SEGMENTS
        logits = self.sync_logits(torch.stack([v[:w], v[-w:]]), torch.stack([a[:w], a[-w:]]))
        return logits[0], logits[1]
