"""MS-CLAP 2023 architecture: HTSAT-tiny audio tower, GPT-2 text tower, two projections.

Module names, parameter shapes and registration order follow msclap 1.3.4's ``CLAP`` (``msclap/models/clap.py``,
``htsat.py``), with a GPT-2 under transformers' ``GPT2Model`` names as ``caption_encoder.base``, so
``MSCLAPModel().state_dict()`` has exactly the 357 entries of the official ``CLAP_weights_2023.pth`` in the same
order. Only what the embeddings need is computed: the HTSAT classification head (``tscam_conv``, ``head``) exists for
the checkpoint but is never run.

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones.msclap.model import MSCLAPConfig, MSCLAPModel
    >>> cfg = MSCLAPConfig(audio_embed_dim=8, audio_heads=(1, 1, 2, 2), audio_depths=(2, 2, 2, 2), num_classes=4,
    ...                    text_width=16, text_layers=1, text_heads=2, proj_dim=8)
    >>> model = MSCLAPModel(cfg).eval()
    >>> model.audio_encoder(torch.zeros(1, 308700)).shape
    torch.Size([1, 8])
    >>> ids = torch.tensor([[15496, 995, 220, 50256]])
    >>> model.caption_encoder(ids, torch.ones_like(ids)).shape
    torch.Size([1, 8])
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchmetrics_av.backbones.layers import Mlp

# ---------------------------------------------------------------------------------------------------------------------
# Constants. HTSAT's front end reads msclap/models/config.py (sample_rate 32000, window 1024, hop 320, 64 mels,
# fmin 50, fmax 14000) and ignores config_2023.yml's values (fmax 8000): the mel bank is built for 32 kHz although
# the audio is 44.1 kHz. torchlibrosa Spectrogram / LogmelFilterBank defaults inside HTSAT: periodic Hann, centred
# reflect padding, power 2, ref 1.0, amin 1e-10, top_db None.
N_FFT = 1024
HOP = 320
N_MELS = 64
MEL_BANK_SAMPLE_RATE = 32000
MEL_FMIN = 50.0
MEL_FMAX = 14000.0
LOG_AMIN = 1e-10
# HTSAT_Swin_Transformer defaults (msclap builds it with config=... only): 256x256 input image, patch 4, stride 4.
SPEC_SIZE = 256
PATCH = 4
# Swin shifted-window attention: -100 keeps cross-region logits out of the softmax (Swin-Transformer's constant).
SHIFT_MASK_VALUE = -100.0
# torch.nn.LayerNorm default eps (HTSAT's norm_layer) and GPT2Config().layer_norm_epsilon.
LAYER_NORM_EPS = 1e-5
GPT2_LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class MSCLAPConfig:
    """Sizes of the MS-CLAP 2023 network; the defaults are the official model (159,439,064 parameters).

    Attributes:
        audio_embed_dim: HTSAT patch-embedding width (96); stage ``i`` is ``audio_embed_dim * 2**i`` wide.
        audio_depths: Swin blocks per stage (exactly 4 stages: 256 -> 64 -> 32 -> 16 -> 8 tokens per side).
        audio_heads: attention heads per stage.
        window_size: Swin window (8; the last 8x8 stage then has one unshifted window).
        num_classes: HTSAT AudioSet head size (527; unused by the embeddings).
        text_width / text_layers / text_heads / text_positions / vocab_size: ``GPT2Config()`` (768, 12, 12, 1024,
            50257).
        proj_dim: joint embedding size ``d_proj`` (1024).
    """

    audio_embed_dim: int = 96
    audio_depths: tuple[int, ...] = (2, 2, 6, 2)
    audio_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    num_classes: int = 527
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_positions: int = 1024
    vocab_size: int = 50257
    proj_dim: int = 1024

    def __post_init__(self) -> None:
        if len(self.audio_depths) != 4 or len(self.audio_heads) != 4:
            raise ValueError("`audio_depths` and `audio_heads` need exactly 4 stages (HTSAT reduces 64 -> 8 tokens)")
        for i, heads in enumerate(self.audio_heads):
            if (self.audio_embed_dim * 2**i) % heads:
                raise ValueError(f"`audio_heads[{i}]`={heads} does not divide the stage width")
        if self.text_width % self.text_heads:
            raise ValueError(f"`text_heads`={self.text_heads} does not divide `text_width`={self.text_width}")

    @property
    def audio_width(self) -> int:
        """Width of the HTSAT latent (768 official): the last stage's width."""
        return self.audio_embed_dim * 2 ** (len(self.audio_depths) - 1)


# ---------------------------------------------------------------------------------------------------------------------
# Front-end constants (torchlibrosa's constructor values; the official checkpoint stores the same tensors).


def dft_kernels(n_fft: int = N_FFT) -> tuple[Tensor, Tensor]:
    """Real and imaginary windowed-DFT conv kernels ``(n_fft // 2 + 1, 1, n_fft)`` float32, as torchlibrosa builds
    them: ``W = omega ** (x * y)`` with ``omega = exp(-2 pi i / n)`` in complex128 (the power form, not ``cos``, so the
    float32 values are bit-identical to the constructor's), times a periodic Hann window.
    """
    real, imag = _dft_kernels(n_fft)
    return real.clone(), imag.clone()


@functools.lru_cache(maxsize=2)
def _dft_kernels(n_fft: int) -> tuple[Tensor, Tensor]:
    # ~1 s of numpy per call; every model build needs it.
    from scipy.signal import get_window

    x, y = np.meshgrid(np.arange(n_fft), np.arange(n_fft))
    dft = np.power(np.exp(-2 * np.pi * 1j / n_fft), x * y)[:, : n_fft // 2 + 1]
    windowed = dft * get_window("hann", n_fft, fftbins=True)[:, None]
    real = torch.from_numpy(np.real(windowed).T.astype(np.float32))[:, None, :]
    imag = torch.from_numpy(np.imag(windowed).T.astype(np.float32))[:, None, :]
    return real.contiguous(), imag.contiguous()


# Slaney mel scale (librosa's htk=False): linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels / octave
# of 6.4x).
_SLANEY_HZ_PER_MEL = 200.0 / 3
_SLANEY_LOG_HZ = 1000.0
_SLANEY_LOG_MEL = _SLANEY_LOG_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    if hz >= _SLANEY_LOG_HZ:
        return _SLANEY_LOG_MEL + math.log(hz / _SLANEY_LOG_HZ) / _SLANEY_LOG_STEP
    return hz / _SLANEY_HZ_PER_MEL


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = _SLANEY_HZ_PER_MEL * mel
    log = _SLANEY_LOG_HZ * np.exp(_SLANEY_LOG_STEP * (np.maximum(mel, _SLANEY_LOG_MEL) - _SLANEY_LOG_MEL))
    return np.where(mel >= _SLANEY_LOG_MEL, log, linear)


def slaney_mel_bank(
    sample_rate: int = MEL_BANK_SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    fmin: float = MEL_FMIN,
    fmax: float = MEL_FMAX,
) -> Tensor:
    """Slaney-scale, Slaney-normalised triangular mel bank ``(n_fft // 2 + 1, n_mels)`` float32 (torchlibrosa's
    ``melW``, i.e. ``librosa.filters.mel(...).T``).

    The triangles are rounded to float32 before the area normalisation is applied, as librosa does by filling a
    float32 array; both roundings are kept so the values are bit-identical.
    """
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    bank = np.zeros((n_mels, freqs.shape[0]), dtype=np.float32)
    for i in range(n_mels):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        bank[i] = np.maximum(0.0, np.minimum(rising, falling))
    bank *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(np.ascontiguousarray(bank.T))


# ---------------------------------------------------------------------------------------------------------------------
# HTSAT front end (module names of torchlibrosa's Spectrogram / STFT / LogmelFilterBank)


class _STFT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        real, imag = dft_kernels()
        self.conv_real = nn.Conv1d(1, N_FFT // 2 + 1, N_FFT, stride=HOP, bias=False)
        self.conv_imag = nn.Conv1d(1, N_FFT // 2 + 1, N_FFT, stride=HOP, bias=False)
        with torch.no_grad():
            self.conv_real.weight.copy_(real)
            self.conv_imag.weight.copy_(imag)
        # Frozen like torchlibrosa's (freeze_parameters=True); they stay parameters so the checkpoint keys match.
        self.requires_grad_(False)


class PowerSpectrogram(nn.Module):
    """``(B, T)`` -> ``(B, 1, 1 + T // 320, 513)`` power spectrogram: centred reflect-padded conv1d DFT, re² + im²."""

    def __init__(self) -> None:
        super().__init__()
        self.stft = _STFT()

    def forward(self, wave: Tensor) -> Tensor:
        """Power spectrogram of ``(B, T)`` float32 audio."""
        x = F.pad(wave[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")
        # Same op order and layouts as torchlibrosa (transposed views), so the float32 result is bit-identical.
        real = self.stft.conv_real(x)[:, None].transpose(2, 3)
        imag = self.stft.conv_imag(x)[:, None].transpose(2, 3)
        return real**2 + imag**2


class LogMel(nn.Module):
    """Power spectrogram ``(..., 513)`` -> ``10 * log10(max(spec @ melW, 1e-10))`` ``(..., 64)`` in dB (ref 1: no
    offset; top_db None: no floor clipping).
    """

    def __init__(self) -> None:
        super().__init__()
        self.melW = nn.Parameter(slaney_mel_bank(), requires_grad=False)

    def forward(self, spec: Tensor) -> Tensor:
        """Log-mel of a power spectrogram."""
        return 10.0 * torch.log10(torch.clamp(torch.matmul(spec, self.melW), min=LOG_AMIN))


# ---------------------------------------------------------------------------------------------------------------------
# HTSAT Swin transformer


def _window_partition(x: Tensor, ws: int) -> Tensor:
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.contiguous().view(-1, ws * ws, c)


def _window_merge(windows: Tensor, ws: int, h: int, w: int) -> Tensor:
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    return x.contiguous().view(b, h, w, -1)


def relative_position_index(ws: int) -> Tensor:
    """``(ws², ws²)`` int64 index into the ``(2ws-1)²``-row bias table for every (query, key) pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


def shifted_window_mask(side: int, ws: int, shift: int) -> Tensor:
    """``(n_windows, ws², ws²)`` float32 mask (0 / -100) that keeps a cyclically shifted window's tokens from
    attending across the regions the roll wrapped together.
    """
    region = torch.zeros(1, side, side, 1)
    bounds = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    label = 0
    for rows in bounds:
        for cols in bounds:
            region[:, rows, cols, :] = label
            label += 1
    ids = _window_partition(region, ws).squeeze(-1)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, SHIFT_MASK_VALUE)


class _WindowAttention(nn.Module):
    def __init__(self, dim: int, ws: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(ws))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(
                -1, self.heads, n, n
            )
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)


class _SwinBlock(nn.Module):
    def __init__(self, dim: int, side: int, heads: int, ws: int, shift: int) -> None:
        super().__init__()
        if side <= ws:  # one window covers the whole map: no partition, no shift (Swin's rule)
            ws, shift = side, 0
        self.side, self.ws, self.shift = side, ws, shift
        # Persistent like the checkpoint's; None (absent from the state_dict) in unshifted blocks.
        self.register_buffer("attn_mask", shifted_window_mask(side, ws, shift) if shift else None)
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = _WindowAttention(dim, ws, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        h = self.norm1(x).view(b, self.side, self.side, c)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        h = self.attn(_window_partition(h, self.ws), self.attn_mask)
        h = _window_merge(h.view(-1, self.ws, self.ws, c), self.ws, self.side, self.side)
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + h.view(b, n, c)
        return x + self.mlp(self.norm2(x))


class _PatchMerging(nn.Module):
    def __init__(self, dim: int, side: int) -> None:
        super().__init__()
        self.side = side
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=LAYER_NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        b, _, c = x.shape
        x = x.view(b, self.side, self.side, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class _Stage(nn.Module):
    def __init__(self, dim: int, side: int, depth: int, heads: int, ws: int, last: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            _SwinBlock(dim, side, heads, ws, shift=0 if i % 2 == 0 else ws // 2) for i in range(depth)
        )
        self.downsample = None if last else _PatchMerging(dim, side)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=PATCH, stride=PATCH)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class HTSAT(nn.Module):
    """HTSAT-tiny (msclap ``HTSAT_Swin_Transformer``, eval mode): waveform -> ``latent_output`` (mean token).

    Pipeline: :class:`PowerSpectrogram` -> :class:`LogMel` -> ``bn0`` over the 64 mel bins -> :meth:`to_image`
    (frames bicubic-resized to 1024, four 256-frame chunks stacked along frequency: 256x256) -> patch embedding ->
    4 Swin stages -> LayerNorm -> mean over the 64 final tokens.
    """

    def __init__(self, config: MSCLAPConfig) -> None:
        super().__init__()
        self.freq_ratio = SPEC_SIZE // N_MELS
        self.spectrogram_extractor = PowerSpectrogram()
        self.logmel_extractor = LogMel()
        self.bn0 = nn.BatchNorm2d(N_MELS)
        self.patch_embed = _PatchEmbed(config.audio_embed_dim)
        side = SPEC_SIZE // PATCH
        n_stages = len(config.audio_depths)
        self.layers = nn.ModuleList(
            _Stage(
                config.audio_embed_dim * 2**i,
                side // 2**i,
                config.audio_depths[i],
                config.audio_heads[i],
                config.window_size,
                last=i == n_stages - 1,
            )
            for i in range(n_stages)
        )
        width = config.audio_width
        self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        # AudioSet token-semantic head: part of the checkpoint, unused by the embedding.
        head_rows = SPEC_SIZE // 2 ** (n_stages - 1) // PATCH // self.freq_ratio
        self.tscam_conv = nn.Conv2d(width, config.num_classes, kernel_size=(head_rows, 3), padding=(0, 1))
        self.head = nn.Linear(config.num_classes, config.num_classes)

    @property
    def max_frames(self) -> int:
        """Most STFT frames the image holds without cropping (1024 = 4 x 256)."""
        return SPEC_SIZE * self.freq_ratio

    def logmel(self, wave: Tensor) -> Tensor:
        """``(B, T)`` -> ``(B, 1, frames, 64)`` log-mel in dB (before ``bn0``)."""
        return self.logmel_extractor(self.spectrogram_extractor(wave))

    def to_image(self, logmel: Tensor) -> Tensor:
        """``(B, 1, frames <= 1024, 64)`` log-mel -> ``bn0`` -> ``(B, 1, 256, 256)`` HTSAT input image."""
        x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)
        b, _, frames, _ = x.shape
        if frames < self.max_frames:
            x = F.interpolate(x, (self.max_frames, N_MELS), mode="bicubic", align_corners=True)
        x = x.permute(0, 1, 3, 2).contiguous().reshape(b, 1, N_MELS, self.freq_ratio, SPEC_SIZE)
        return x.permute(0, 1, 3, 2, 4).contiguous().reshape(b, 1, SPEC_SIZE, SPEC_SIZE)

    def latent(self, image: Tensor) -> Tensor:
        """``(B, 1, 256, 256)`` image -> ``(B, width)`` mean of the final LayerNorm-ed tokens."""
        x = self.patch_embed(image)
        for stage in self.layers:
            x = stage(x)
        x = self.norm(x)
        b, n, c = x.shape
        side = math.isqrt(n)
        # The token-semantic regrouping HTSAT applies before pooling (same element order -> same float32 mean).
        x = x.permute(0, 2, 1).contiguous().reshape(b, c, side, side)
        rows = side // self.freq_ratio
        x = x.reshape(b, c, side // rows, rows, side).permute(0, 1, 3, 2, 4).contiguous().reshape(b, c, rows, -1)
        return F.adaptive_avg_pool1d(x.flatten(2), 1).flatten(1)

    def forward(self, wave: Tensor) -> Tensor:
        """``(B, T)`` 44.1 kHz audio, ``1 + T // 320 <= 1024`` frames -> ``(B, width)`` latent."""
        mel = self.logmel(wave)
        if mel.shape[2] > self.max_frames:
            raise ValueError(
                f"`wave` has {wave.shape[-1]} samples ({mel.shape[2]} frames); HTSAT takes at most "
                f"{self.max_frames} frames. Crop to 7 s (308700 samples) first"
            )
        return self.latent(self.to_image(mel))


class _HTSATWrapper(nn.Module):
    # msclap's HTSATWrapper only adds the `.htsat` level to the key names.
    def __init__(self, config: MSCLAPConfig) -> None:
        super().__init__()
        self.htsat = HTSAT(config)


# ---------------------------------------------------------------------------------------------------------------------
# GPT-2 (transformers GPT2Model names; Conv1D weights stored [in, out] like the checkpoint)


# gelu_new's tanh-approximation constants, sqrt(2 / pi) and 0.044715 (Hendrycks & Gimpel 2016).
_GELU_TANH_SCALE = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715


def gelu_new(x: Tensor) -> Tensor:
    """GPT2Config().activation_function ``"gelu_new"``, written out as transformers evaluates it (``F.gelu(...,
    approximate="tanh")`` is the same function but rounds differently: ~3e-6 on the pooled state).
    """
    return 0.5 * x * (1.0 + torch.tanh(_GELU_TANH_SCALE * (x + _GELU_TANH_CUBIC * torch.pow(x, 3.0))))


class Conv1D(nn.Module):
    """GPT-2's transposed linear layer: ``x @ weight + bias`` with ``weight`` of shape ``(n_in, n_out)``."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out).normal_(std=0.02))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: Tensor) -> Tensor:
        """Affine map of the last axis."""
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class _GPT2Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = Conv1D(width, 3 * width)
        self.c_proj = Conv1D(width, width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = (t.view(b, n, self.heads, -1).transpose(1, 2) for t in self.c_attn(x).split(c, dim=2))
        # Causal only: callers keep every position up to the pooled token real, so padding never reaches it.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, n, c))


class _GPT2MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = Conv1D(width, 4 * width)
        self.c_proj = Conv1D(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(gelu_new(self.c_fc(x)))


class _GPT2Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=GPT2_LAYER_NORM_EPS)
        self.attn = _GPT2Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=GPT2_LAYER_NORM_EPS)
        self.mlp = _GPT2MLP(width)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """GPT-2 decoder stack (``GPT2Model`` in eval mode): ``(B, L)`` token ids -> ``(B, L, width)`` after ``ln_f``.

    Positions are ``0 .. L-1`` whatever the padding (as ``GPT2Model`` without ``position_ids``); attention is causal.
    """

    def __init__(self, config: MSCLAPConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.text_width)
        self.wpe = nn.Embedding(config.text_positions, config.text_width)
        self.h = nn.ModuleList(_GPT2Block(config.text_width, config.text_heads) for _ in range(config.text_layers))
        self.ln_f = nn.LayerNorm(config.text_width, eps=GPT2_LAYER_NORM_EPS)

    def forward(self, input_ids: Tensor) -> Tensor:
        """Hidden states of every position."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(positions)[None]
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


# ---------------------------------------------------------------------------------------------------------------------
# Towers and root


class Projection(nn.Module):
    """msclap ``Projection``: ``e1 = W1 x``; ``LayerNorm(e1 + W2 gelu(e1))`` (no biases; dropout off in eval)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)

    def forward(self, x: Tensor) -> Tensor:
        """Project ``(..., d_in)`` to ``(..., d_out)``."""
        e1 = self.linear1(x)
        return self.layer_norm(e1 + self.linear2(F.gelu(e1)))


class AudioEncoder(nn.Module):
    """``(B, T)`` 44.1 kHz audio -> ``(B, proj_dim)`` audio embedding (HTSAT latent + :class:`Projection`)."""

    def __init__(self, config: MSCLAPConfig) -> None:
        super().__init__()
        self.base = _HTSATWrapper(config)
        self.projection = Projection(config.audio_width, config.proj_dim)

    def forward(self, wave: Tensor) -> Tensor:
        """Embed a batch of equal-length waveforms."""
        return self.projection(self.base.htsat(wave))


def pooled_positions(input_ids: Tensor) -> Tensor:
    """The msclap GPT pooling index ``(input_ids != 0).sum(-1) - 1`` (id 0 is the pad token ``!``), ``(B,)`` int64."""
    return torch.ne(input_ids, 0).sum(-1) - 1


class TextEncoder(nn.Module):
    """``(B, L)`` GPT-2 ids + mask -> ``(B, proj_dim)``: the hidden state at :func:`pooled_positions`, projected."""

    def __init__(self, config: MSCLAPConfig) -> None:
        super().__init__()
        self.base = GPT2(config)
        self.projection = Projection(config.text_width, config.proj_dim)

    def pooled_hidden(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``(B, width)`` GPT-2 hidden state at each row's pooled position.

        Raises:
            ValueError: shapes differ, a row has no non-zero id, or the mask is 0 at or before a row's pooled
                position (causal attention then equals GPT-2 with that padding mask only if it is 1 there).
        """
        if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
            raise ValueError(
                f"`input_ids` and `attention_mask` must both be (B, L), got {tuple(input_ids.shape)} and "
                f"{tuple(attention_mask.shape)}"
            )
        pooled = pooled_positions(input_ids)
        if bool((pooled < 0).any()):
            raise ValueError("every row of `input_ids` needs a non-zero id (msclap pools at the last one)")
        upto = torch.arange(input_ids.shape[1], device=input_ids.device)[None] <= pooled[:, None]
        if bool(((attention_mask == 0) & upto).any()):
            raise ValueError("`attention_mask` must be 1 on every position up to the pooled token (right padding)")
        # The whole padded sequence is run (77 tokens, like msclap) although causal attention makes the positions
        # after the pooled one irrelevant: other sequence lengths change the float32 result by ~3e-6.
        hidden = self.base(input_ids)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), pooled]

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Projected text embeddings."""
        return self.projection(self.pooled_hidden(input_ids, attention_mask))


class MSCLAPModel(nn.Module):
    """msclap ``CLAP`` (2023): ``audio_encoder``, ``caption_encoder`` and ``logit_scale``; official key names."""

    def __init__(self, config: MSCLAPConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else MSCLAPConfig()
        self.audio_encoder = AudioEncoder(self.config)
        self.caption_encoder = TextEncoder(self.config)
        # log(1 / 0.07), CLIP's initial temperature (msclap's constructor value; the checkpoint overrides it).
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
