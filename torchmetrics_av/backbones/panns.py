"""PANNs Cnn14 at 16 kHz (``Cnn14_16k_mAP=0.438.pth``): the AudioSet tagger behind FD_PANNs, KL_PANNs and IS.

A clean-room Cnn14 built as av-benchmark builds it (``Cnn14(sample_rate=16000, window_size=512, hop_size=160,
mel_bins=64, fmin=50, fmax=8000, classes_num=527)``, in eval mode), with its log-mel front end inside the module, so
that ``.model.state_dict()`` has exactly the 84 keys of the official checkpoint's ``["model"]`` entry (the STFT
kernels and the mel matrix included) and the file loads strictly.

Front end (torchlibrosa ``Spectrogram`` + ``LogmelFilterBank``, rebuilt from their definitions): reflect padding by
256 samples, a 512-point DFT as two strided convolutions (hop 160, periodic Hann), power ``re² + im²``, a 64-band
Slaney mel matrix (50-8000 Hz), ``10·log10(max(·, 1e-10))``. ``T = L // 160 + 1`` frames.

Network: ``bn0`` over the mel axis, six ConvBlocks (two 3×3 conv + BN + ReLU, 2×2 average pooling except the last),
mean over frequency, ``max_t + mean_t``, then ``relu(fc1)`` (the 2048-d embedding used by FD) and
``fc_audioset(relu(fc1))`` (527 pre-sigmoid logits used by KL and IS).

What a metric calls (av-benchmark protocol)::

    net = PANNs()                                      # or PANNs(weights=path), or tiny_panns() in tests
    waves = [net.prepare(clip, rate) for clip, rate in zip(clips, rates)]   # 16 kHz, DC removed, first 8 s, no pad
    emb, logits = net.embed(waves)                     # (N, 2048) embeddings, (N, 527) logits, input order

FD-PANN = Fréchet distance of ``emb`` rows (all generated vs all reference clips, unpaired); KL-PANNS = mean over
paired clips of KL(target ‖ preds) of ``softmax(logits)``; ISC-PANNS = inception score of the generated ``logits``.

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones.panns import tiny_panns
    >>> net = tiny_panns()                             # small random Cnn14, offline
    >>> wave = net.prepare(torch.zeros(2, 22050), 22050)   # stereo 1 s at 22.05 kHz -> mono 16 kHz
    >>> wave.shape
    torch.Size([16000])
    >>> emb, logits = net(wave[None])
    >>> emb.shape, logits.shape
    (torch.Size([1, 32]), torch.Size([1, 527]))
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchmetrics_av.backbones.cnn16k import audiodataset_waveform, tiny_cnn
from torchmetrics_av.backbones.memo import MemoisedBackbone
from torchmetrics_av.preprocessing import (
    AVBENCH_AUDIO_LENGTH_S,
)
from torchmetrics_av.weights import checkpoint, file_digest, load_state_dict, resolve_checkpoint

PANNS_CHECKPOINT = checkpoint("panns_cnn14_16k_map0.438")

# av-benchmark's ExtractionModels: Cnn14(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50,
# fmax=8000, classes_num=527).
PANNS_SAMPLE_RATE = 16000
PANNS_N_FFT = 512
PANNS_HOP = 160
PANNS_N_MELS = 64
PANNS_FMIN = 50.0
PANNS_FMAX = 8000.0
PANNS_NUM_CLASSES = 527
# Cnn14's ConvBlock widths; the last one is the embedding size (fc1 is square).
PANNS_CHANNELS = (64, 128, 256, 512, 1024, 2048)
PANNS_EMBED_DIM = PANNS_CHANNELS[-1]
# torchlibrosa LogmelFilterBank(ref=1.0, amin=1e-10, top_db=None): 10·log10(max(x, amin)) − 10·log10(max(amin, ref)),
# and the second term is 0; so the floor is exactly −100 dB.
PANNS_AMIN = 1e-10
PANNS_DB_SCALE = 10.0
# Blocks 1-5 average-pool 2×2 (floor); block 6 pools 1×1, a no-op that is left out.
_POOLED_BLOCKS = 5
# Five floor-halvings of T = L // 160 + 1 frames leave at least one frame only when T >= 32, i.e. L >= 31 · 160
# samples (0.31 s); av-benchmark crashes on shorter clips.
PANNS_MIN_SAMPLES = (2**_POOLED_BLOCKS - 1) * PANNS_HOP
# Slaney mel scale (librosa.hz_to_mel(htk=False)): linear below 1 kHz (200/3 Hz per mel), then logarithmic with
# 27 mels per factor 6.4.
_SLANEY_F_SP = 200.0 / 3.0
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_LOGSTEP = np.log(6.4) / 27.0
# Clips per forward in `embed` (an 8 s clip is ~16 GMAC through the six ConvBlocks).
DEFAULT_BATCH_SIZE = 8
# Memoised clips per backbone (as PaSST's window cache): a few validation batches of FD + KL + IS; ~10 KB of outputs
# per clip at full size.
DEFAULT_CACHE_CLIPS = 512


def stft_kernels(n_fft: int = PANNS_N_FFT) -> tuple[Tensor, Tensor]:
    """The real and imaginary DFT convolution kernels ``(n_fft//2+1, 1, n_fft)`` of Cnn14's front end, float32.

    Row ``k`` is ``Re/Im(ω^(n·k)) · hann(n)`` with ``ω = e^(−2πi/n_fft)`` and the periodic Hann window. The powers are
    taken as NumPy complex powers ``ω ** (n·k)`` (not ``exp``) and the window from
    ``scipy.signal.get_window("hann", n_fft, fftbins=True)``: the float32 result is then bit-identical to
    torchlibrosa's constructor values (the golden's SHA-256), which the official checkpoint stores under
    ``spectrogram_extractor.stft.conv_*.weight`` (loading it overwrites these with its own copy).

    Example:
        >>> re, im = stft_kernels()
        >>> re.shape, im.dtype
        (torch.Size([257, 1, 512]), torch.float32)
    """
    idx = np.arange(n_fft)
    omega = np.exp(-2j * np.pi / n_fft)
    dft = np.power(omega, np.outer(idx, idx))
    window = scipy.signal.get_window("hann", n_fft, fftbins=True)
    kernel = (dft[:, : n_fft // 2 + 1] * window[:, None]).T
    real = torch.from_numpy(np.ascontiguousarray(np.real(kernel))).to(torch.float32)[:, None, :]
    imag = torch.from_numpy(np.ascontiguousarray(np.imag(kernel))).to(torch.float32)[:, None, :]
    return real, imag


def _hz_to_slaney(f: np.ndarray) -> np.ndarray:
    log_part = (
        _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
        + np.log(np.maximum(f, _SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    )
    return np.where(f >= _SLANEY_MIN_LOG_HZ, log_part, f / _SLANEY_F_SP)


def _slaney_to_hz(m: np.ndarray) -> np.ndarray:
    min_log_mel = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
    log_part = _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (m - min_log_mel))
    return np.where(m >= min_log_mel, log_part, _SLANEY_F_SP * m)


def slaney_mel_matrix(
    sample_rate: int = PANNS_SAMPLE_RATE,
    n_fft: int = PANNS_N_FFT,
    n_mels: int = PANNS_N_MELS,
    fmin: float = PANNS_FMIN,
    fmax: float = PANNS_FMAX,
) -> Tensor:
    """Slaney-scale, Slaney-normalised mel filterbank ``(n_fft//2+1, n_mels)``, float32 (Cnn14's ``melW``).

    Same numbers as ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax).T`` (librosa's defaults ``htk=False``,
    ``norm="slaney"``, float32): triangles between ``n_mels + 2`` mel-spaced edges over the rFFT bin frequencies,
    rounded to float32, then scaled by ``2 / (f[i+2] − f[i])`` and rounded again.

    Example:
        >>> slaney_mel_matrix().shape
        torch.Size([257, 64])
    """
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    edges = np.linspace(_hz_to_slaney(np.float64(fmin)), _hz_to_slaney(np.float64(fmax)), n_mels + 2)
    mel_f = _slaney_to_hz(edges)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights = (weights * enorm[:, None]).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(weights.T))


class _Kernel(nn.Module):
    """Holds one frozen DFT kernel as ``weight`` (the official key ``spectrogram_extractor.stft.conv_*.weight``)."""

    weight: Tensor

    def __init__(self, kernel: Tensor) -> None:
        super().__init__()
        # A persistent buffer, not a parameter: it is a DSP constant (never trained, never filled by fill-v1) that
        # still belongs to the checkpoint's key set.
        self.register_buffer("weight", kernel)


class _STFT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        real, imag = stft_kernels(PANNS_N_FFT)
        self.conv_real = _Kernel(real)
        self.conv_imag = _Kernel(imag)


class Cnn14Spectrogram(nn.Module):
    """``(B, L)`` 16 kHz waveform -> ``(B, 1, L // 160 + 1, 257)`` power spectrogram (torchlibrosa ``Spectrogram``).

    ``center=True`` reflect padding by ``n_fft // 2``, then each DFT kernel as a stride-160 ``conv1d``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stft = _STFT()

    def forward(self, wave: Tensor) -> Tensor:
        """Power spectrogram ``re² + im²`` laid out ``(B, 1, frames, bins)``."""
        x = F.pad(wave[:, None, :], (PANNS_N_FFT // 2, PANNS_N_FFT // 2), mode="reflect")
        # Same op order and layout as torchlibrosa (transpose, then square and add), so the float32 result matches.
        real = F.conv1d(x, self.stft.conv_real.weight, stride=PANNS_HOP)[:, None].transpose(2, 3)
        imag = F.conv1d(x, self.stft.conv_imag.weight, stride=PANNS_HOP)[:, None].transpose(2, 3)
        return real**2 + imag**2


class Cnn14LogMel(nn.Module):
    """Power spectrogram ``(..., 257)`` -> log-mel in dB ``(..., 64)`` (torchlibrosa ``LogmelFilterBank``)."""

    melW: Tensor  # mixed case: the official state_dict key is ``logmel_extractor.melW``

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("melW", slaney_mel_matrix())

    def forward(self, power: Tensor) -> Tensor:
        """``10·log10(max(power @ melW, 1e-10))``: dB re 1.0, floor −100 dB, no top_db clipping."""
        return PANNS_DB_SCALE * torch.log10(torch.clamp(torch.matmul(power, self.melW), min=PANNS_AMIN))


class ConvBlock(nn.Module):
    """Two 3×3 convolutions (no bias), each followed by BatchNorm and ReLU (Cnn14's ``ConvBlock``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, F)`` -> ``(B, C_out, T, F)`` (pooling is done by the caller)."""
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class Cnn14(nn.Module):
    """Cnn14 with its front end; ``state_dict()`` keys, shapes and order equal ``Cnn14_16k_mAP=0.438.pth["model"]``.

    Inference only: the reference's dropout and SpecAugment (training-time) are not part of this graph.

    Args:
        channels: the six ConvBlock widths (official ``(64, 128, 256, 512, 1024, 2048)``; smaller for tests).
        num_classes: output classes (527 AudioSet classes).
    """

    def __init__(self, channels: Sequence[int] = PANNS_CHANNELS, num_classes: int = PANNS_NUM_CLASSES) -> None:
        super().__init__()
        if len(channels) != len(PANNS_CHANNELS):
            raise ValueError(f"`channels` must list {len(PANNS_CHANNELS)} ConvBlock widths, got {tuple(channels)}")
        self.spectrogram_extractor = Cnn14Spectrogram()
        self.logmel_extractor = Cnn14LogMel()
        self.bn0 = nn.BatchNorm2d(PANNS_N_MELS)
        widths = [1, *channels]
        for i in range(len(channels)):
            self.add_module(f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(channels[-1], channels[-1])
        self.fc_audioset = nn.Linear(channels[-1], num_classes)

    @property
    def blocks(self) -> list[ConvBlock]:
        """``conv_block1 … conv_block6`` in order."""
        return [getattr(self, f"conv_block{i + 1}") for i in range(len(PANNS_CHANNELS))]

    def logmel(self, wave: Tensor) -> Tensor:
        """``(B, L)`` float32 16 kHz -> ``(B, 1, L // 160 + 1, 64)`` log-mel in dB (the network input)."""
        return self.logmel_extractor(self.spectrogram_extractor(wave))

    def pooled(self, logmel: Tensor) -> Tensor:
        """Log-mel ``(B, 1, T, 64)`` -> ``(B, C)``: bn0, the ConvBlocks, mean over frequency, ``max_t + mean_t``."""
        x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < _POOLED_BLOCKS:
                x = F.avg_pool2d(x, kernel_size=2)
        x = x.mean(dim=3)
        return x.max(dim=2).values + x.mean(dim=2)

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, L)`` -> ``(relu(fc1) (B, C), fc_audioset(relu(fc1)) (B, num_classes))``; logits are pre-sigmoid."""
        embedding = F.relu(self.fc1(self.pooled(self.logmel(wave))))
        return embedding, self.fc_audioset(embedding)


def _numpy_array_globals() -> list:
    """The pickle globals of NumPy int64 arrays, and nothing else.

    audioset_tagging_cnn saves ``{"iteration", "model", "sampler"}``, and the sampler state holds NumPy int64 arrays,
    which ``torch.load(weights_only=True)`` refuses by default (autrainer/autrainer#66 hit this with this very file
    and allow-lists exactly these). They are allowed under both NumPy 1 (``numpy.core``, how the 2020 file spells
    them) and NumPy 2 (``numpy._core``) module names; any other global still makes the load fail.
    """
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - NumPy < 2
        from numpy.core.multiarray import _reconstruct
    allowed: list = [
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
    ]
    if hasattr(np, "dtypes"):  # NumPy >= 1.25 gives each dtype its own class, which the unpickler must also allow
        allowed.append(np.dtypes.Int64DType)
    return allowed


def load_panns_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The Cnn14 state_dict of an official-format file (``{"model": state_dict, ...}``) or of a bare state_dict.

    Loaded with ``torch.load(weights_only=True)``; the only extra globals allowed are those of NumPy int64 arrays
    (the official file's ``sampler`` entry), so a file carrying any other pickled object is refused.
    """
    with torch.serialization.safe_globals(_numpy_array_globals()):
        state = load_state_dict(path)
    model = state.get("model")
    return model if isinstance(model, dict) else state


class PANNs(MemoisedBackbone):
    """PANNs Cnn14 (16 kHz): prepared 16 kHz waveforms -> (2048-d embeddings, 527 AudioSet logits), batched.

    Args:
        weights: local path to ``Cnn14_16k_mAP=0.438.pth`` (or a file holding its ``["model"]`` state_dict).
        pretrained: load the official checkpoint (``weights``, else the cache, else a download from Zenodo verified
            against its published MD5). ``False`` keeps a random initialisation and needs no network.
        channels: ConvBlock widths (official ``(64, 128, 256, 512, 1024, 2048)``; smaller only for tests).
        num_classes: output classes (527).
        cache_dir: checkpoint cache override (default ``$TORCHMETRICS_AV_CACHE``).
        cache_size: how many recent clips' outputs :meth:`embed` memoises (0 disables), so that FD-PANN, KL-PANNS and
            ISC-PANNS sharing this backbone run one forward per clip.

    Attributes:
        model: :class:`Cnn14`; its ``state_dict()`` equals the official ``["model"]`` key set (84 entries).
        embed_dim: embedding size (2048 official).
        checkpoint_id: provenance string, ``"<name>@sha256:<digest>"`` or ``"random-init"``.
    """

    sample_rate = PANNS_SAMPLE_RATE
    min_samples = PANNS_MIN_SAMPLES
    num_classes = PANNS_NUM_CLASSES
    # precision= (torchmetrics_av.precision): the six ConvBlocks under autocast; front end, fc1 and fc_audioset float32.
    autocast_modules = tuple(f"model.conv_block{i}" for i in range(1, 7))

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        *,
        channels: Sequence[int] = PANNS_CHANNELS,
        num_classes: int = PANNS_NUM_CLASSES,
        cache_dir: str | os.PathLike | None = None,
        cache_size: int = DEFAULT_CACHE_CLIPS,
    ) -> None:
        super().__init__(cache_size)
        self.model = Cnn14(channels, num_classes)
        self.embed_dim = int(channels[-1])
        self.num_classes = num_classes
        self.checkpoint_id = "random-init"
        if weights is not None or pretrained:
            path = resolve_checkpoint(PANNS_CHECKPOINT.name, weights, cache_dir=cache_dir)
            self.model.load_state_dict(load_panns_state_dict(path), strict=True)
            self.checkpoint_id = f"{PANNS_CHECKPOINT.name}@sha256:{file_digest(path)[:16]}"
        self.eval()

    @property
    def device(self) -> torch.device:
        """Where the model lives (inputs are moved there)."""
        return self.model.logmel_extractor.melW.device

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        """Embed a batch of equal-length clips.

        Args:
            wave: ``(B, L)`` float mono audio at 16 kHz (from :meth:`prepare`), ``L >= 4960`` (0.31 s).

        Returns:
            ``(embeddings (B, embed_dim), logits (B, num_classes))`` in the model's dtype (float32) on its device;
            the embedding is ``relu(fc1)`` and the logits are pre-sigmoid.
        """
        if wave.ndim != 2 or not wave.is_floating_point():
            raise ValueError(f"`wave` must be a (B, L) float tensor of 16 kHz audio, got {tuple(wave.shape)}")
        if wave.shape[-1] < PANNS_MIN_SAMPLES:
            raise ValueError(
                f"`wave` has {wave.shape[-1]} samples; Cnn14 needs at least {PANNS_MIN_SAMPLES} at 16 kHz "
                f"({PANNS_MIN_SAMPLES / PANNS_SAMPLE_RATE:.2f} s) for its five 2x2 poolings"
            )
        return self.model(wave.to(self.device, self.model.fc1.weight.dtype))

    def embed(self, waves: Sequence[Tensor], batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[Tensor, Tensor]:
        """Embed clips of possibly different lengths, batching equal lengths together.

        Results are memoised by clip content (SHA-256 of the float32 samples) for the last ``cache_size`` clips, so
        metrics sharing this backbone (FD-PANN, KL-PANNS, ISC-PANNS on the same clips) run one forward per clip.

        Args:
            waves: 1-D 16 kHz float clips (from :meth:`prepare`).
            batch_size: most clips per forward.

        Returns:
            ``(embeddings (N, embed_dim), logits (N, num_classes))`` in the order of ``waves``, on the model's device.
            Batching moves values by ~1e-7 at most (float32 kernels), far below the tolerance of the goldens.
        """
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        for i, w in enumerate(waves):
            if w.ndim != 1:
                raise ValueError(f"`waves[{i}]` must be a 1-D 16 kHz waveform, got shape {tuple(w.shape)}")
        widths = (self.embed_dim, self.num_classes)
        return self._embed_memoised(waves, batch_size, self.device, widths, self.model.fc1.weight.dtype)

    def prepare(self, clip: Tensor, sample_rate: int, duration: float | None = AVBENCH_AUDIO_LENGTH_S) -> Tensor:
        """One clip -> the 16 kHz model input, as av-benchmark's ``AudioDataset(sr=16000)`` loads it.

        Channel mean, per-clip DC removal (the mean over the *whole* clip, before truncation),
        ``torchaudio.transforms.Resample`` to 16 kHz, then the first ``duration`` seconds; never padded.

        Args:
            clip: ``(T,)`` or ``(C, T)`` float audio in [-1, 1] (or int16 PCM) at ``sample_rate``.
            sample_rate: Hz.
            duration: seconds kept (av-benchmark's ``--audio_length``, 8.0); ``None`` keeps everything.

        Returns:
            ``(T',)`` float32 with ``T' = min(ceil(16000·T/sample_rate), 16000·duration)``.
        """
        return audiodataset_waveform(clip, sample_rate, PANNS_SAMPLE_RATE, duration)


def tiny_panns(seed: int = 0, **overrides: object) -> PANNs:
    """A small random :class:`PANNs` for fast offline tests: same front end and graph, narrow ConvBlocks.

    Defaults ``channels=(4, 8, 8, 16, 16, 32)`` (32-d embeddings, 527 logits) and ``pretrained=False``; any
    constructor argument can be overridden. The weights come from ``torch.manual_seed(seed)`` inside a forked RNG (the
    caller's random stream is untouched), conv and linear weights He-normal so that outputs differ between clips.

    Example:
        >>> tiny_panns().embed_dim
        32
    """
    return tiny_cnn(PANNs, {"pretrained": False, "channels": (4, 8, 8, 16, 16, 32)}, seed, overrides)
