"""VGGish as av-benchmark uses it for FD_VGG: one 128-d embedding per non-overlapping 0.96 s example.

A clean-room VGGish (torchvggish's module layout, so the official ``vggish-10086976.pth`` loads strictly into
``.model``) with the TF-VGGish front end, in av-benchmark's configuration ``VGGish(postprocess=False)``: no PCA, no
quantisation, and the final ReLU removed (the embedding is the raw ``Linear(4096, 128)`` output).

Front end (TF VGGish ``waveform_to_examples`` at 16 kHz, computed in float64 and cast to float32 at the end, as the
NumPy reference does): 400-sample frames every 160 samples with no padding, periodic Hann, ``|rFFT|`` (magnitude)
over 512 points, 64 HTK-mel bands 125-7500 Hz (unnormalised triangles, DC bin zeroed), ``log(mel + 0.01)``, then
96-frame examples with hop 96 (the remainder is dropped). A clip needs at least 15600 samples for one example.

Network: VGG-11-like ``features`` (conv 64, pool, conv 128, pool, conv 256 ×2, pool, conv 512 ×2, pool; 3×3, ReLU)
on ``(1, 96, 64)`` examples, flattened in (h, w, c) order like the TF model, then ``embeddings``: Linear 12288→4096,
ReLU, Linear 4096→4096, ReLU, Linear 4096→128.

What a metric calls (av-benchmark protocol)::

    net = VGGish()                                     # or VGGish(weights=path), or tiny_vggish() in tests
    waves = [net.prepare(clip, rate) for clip, rate in zip(clips, rates)]   # 16 kHz, DC removed, first 8 s, no pad
    rows = net.embed(waves)                            # list: (n_i, 128) per clip, n_i = its 0.96 s examples

FD-VGG = Fréchet distance over ``torch.cat(rows)`` of all generated clips vs all reference clips: every example of
every file is one row (8 rows for an 8 s clip), all against all.

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones.vggish import tiny_vggish
    >>> net = tiny_vggish()                            # small random VGGish, offline
    >>> wave = net.prepare(torch.zeros(1, 48000), 48000)   # 1 s at 48 kHz -> 16000 samples -> 1 example
    >>> [r.shape for r in net.embed([wave, torch.zeros(32000)])]
    [torch.Size([1, 128]), torch.Size([2, 128])]
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from torchmetrics_av.backbones.cnn16k import audiodataset_waveform, tiny_cnn
from torchmetrics_av.preprocessing import (
    AVBENCH_AUDIO_LENGTH_S,
)
from torchmetrics_av.weights import checkpoint, file_digest, load_state_dict, resolve_checkpoint

VGGISH_CHECKPOINT = checkpoint("vggish-10086976")
# The torch-hub model's PCA postprocessor (`pproc`), which av-benchmark's strict=False load ignores; the official
# file does not hold them, a saved hub-model state_dict does.
VGGISH_IGNORED_KEYS = ("pproc.pca_eigen_vectors", "pproc.pca_means")

# TF VGGish vggish_params: 16 kHz, 25 ms windows every 10 ms, 64 mel bands 125-7500 Hz, log offset 0.01, 0.96 s
# examples with 0.96 s hop.
VGGISH_SAMPLE_RATE = 16000
VGGISH_WINDOW = 400  # int(round(16000 * 0.025))
VGGISH_HOP = 160  # int(round(16000 * 0.010))
VGGISH_N_FFT = 512  # 2 ** ceil(log2(400))
VGGISH_N_MELS = 64
VGGISH_FMIN = 125.0
VGGISH_FMAX = 7500.0
VGGISH_LOG_OFFSET = 0.01
VGGISH_EXAMPLE_FRAMES = 96  # int(round(0.96 * 100)) frames per example, and the same hop
# One example needs 96 frames of 400 samples every 160: 400 + 95 * 160 samples (0.975 s).
VGGISH_MIN_SAMPLES = VGGISH_WINDOW + (VGGISH_EXAMPLE_FRAMES - 1) * VGGISH_HOP
# HTK mel formula of TF VGGish mel_features: 1127 · ln(1 + f / 700).
_HTK_Q = 1127.0
_HTK_BREAK_HZ = 700.0
# torchvggish make_layers(): [64, M, 128, M, 256, 256, M, 512, 512, M]; embeddings 4096, 4096, 128.
VGGISH_WIDTHS = (64, 128, 256, 512)
VGGISH_HIDDEN = 4096
VGGISH_EMBED_DIM = 128
# Four 2×2 max-pools turn a 96 × 64 example into 6 × 4.
_POOLED_HW = (VGGISH_EXAMPLE_FRAMES // 16, VGGISH_N_MELS // 16)
# Examples per network forward in `embed` (~0.9 GMAC each).
DEFAULT_BATCH_SIZE = 64


def _hz_to_htk(f: np.ndarray | float) -> np.ndarray:
    return _HTK_Q * np.log(1.0 + (np.asarray(f, dtype=np.float64) / _HTK_BREAK_HZ))


def vggish_mel_matrix() -> Tensor:
    """TF VGGish's ``spectrogram_to_mel_matrix(64, 257, 16000, 125, 7500)``: ``(257, 64)`` float64.

    The 257 bins are ``linspace(0, 8000, 257)`` Hz mapped to HTK mel; band ``i`` is the triangle between edges
    ``i, i+1, i+2`` of ``linspace(mel(125), mel(7500), 66)``, unnormalised (peak 1); the DC row is zeroed.

    Example:
        >>> m = vggish_mel_matrix()
        >>> m.shape, m.dtype, float(m[0].abs().sum())
        (torch.Size([257, 64]), torch.float64, 0.0)
    """
    n_bins = VGGISH_N_FFT // 2 + 1
    bins_mel = _hz_to_htk(np.linspace(0.0, VGGISH_SAMPLE_RATE / 2.0, n_bins))
    edges = np.linspace(_hz_to_htk(VGGISH_FMIN), _hz_to_htk(VGGISH_FMAX), VGGISH_N_MELS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    lower_slope = (bins_mel[:, None] - lower) / (center - lower)
    upper_slope = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    weights[0, :] = 0.0
    return torch.from_numpy(weights)


def periodic_hann(length: int = VGGISH_WINDOW) -> Tensor:
    """``0.5 − 0.5·cos(2π n / length)``, ``n = 0 … length−1``, float64 (TF VGGish ``periodic_hann``, NumPy's cos)."""
    return torch.from_numpy(0.5 - (0.5 * np.cos(2 * np.pi / length * np.arange(length))))


class VGGishFrontEnd(nn.Module):
    """16 kHz waveform ``(L,)`` -> log-mel examples ``(n, 96, 64)`` float32, with ``n = 1 + (frames − 96) // 96``.

    Computed in float64 on the input's device, rounded to float32 at the end (TF VGGish's NumPy path). Its buffers are
    not persistent: they are constants, not part of the checkpoint.
    """

    window: Tensor
    mel_matrix: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", periodic_hann(), persistent=False)
        self.register_buffer("mel_matrix", vggish_mel_matrix(), persistent=False)

    def forward(self, wave: Tensor) -> Tensor:
        """``(L,)`` float 16 kHz audio, ``L >= 15600`` -> ``(n, 96, 64)`` float32 examples."""
        if wave.ndim != 1:
            raise ValueError(f"`wave` must be a 1-D 16 kHz waveform, got shape {tuple(wave.shape)}")
        if wave.shape[-1] < VGGISH_MIN_SAMPLES:
            raise ValueError(
                f"`wave` has {wave.shape[-1]} samples; VGGish needs at least {VGGISH_MIN_SAMPLES} at 16 kHz "
                f"({VGGISH_MIN_SAMPLES / VGGISH_SAMPLE_RATE:.3f} s) for one 0.96 s example (av-benchmark crashes here)"
            )
        frames = wave.to(self.window.device, torch.float64).unfold(-1, VGGISH_WINDOW, VGGISH_HOP)
        spectrum = torch.fft.rfft(frames * self.window, n=VGGISH_N_FFT).abs()
        log_mel = torch.log(spectrum @ self.mel_matrix + VGGISH_LOG_OFFSET)
        n = 1 + (log_mel.shape[0] - VGGISH_EXAMPLE_FRAMES) // VGGISH_EXAMPLE_FRAMES
        return log_mel[: n * VGGISH_EXAMPLE_FRAMES].reshape(n, VGGISH_EXAMPLE_FRAMES, VGGISH_N_MELS).to(torch.float32)


def _features(widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 1
    # Conv widths between max-pools, as torchvggish's cfg [64, M, 128, M, 256, 256, M, 512, 512, M].
    for width, repeats in zip(widths, (1, 1, 2, 2)):
        for _ in range(repeats):
            layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = width
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class VGGishNetwork(nn.Module):
    """VGGish body: examples ``(N, 96, 64)`` -> embeddings ``(N, embed_dim)``; keys ``features.*``, ``embeddings.*``.

    Args:
        widths: the four conv widths (official ``(64, 128, 256, 512)``; smaller for tests).
        hidden: the two hidden fully connected sizes (4096).
        embed_dim: output size (128).
    """

    def __init__(
        self,
        widths: Sequence[int] = VGGISH_WIDTHS,
        hidden: int = VGGISH_HIDDEN,
        embed_dim: int = VGGISH_EMBED_DIM,
    ) -> None:
        super().__init__()
        if len(widths) != len(VGGISH_WIDTHS):
            raise ValueError(f"`widths` must list {len(VGGISH_WIDTHS)} conv widths, got {tuple(widths)}")
        self.features = _features(widths)
        flat = widths[-1] * _POOLED_HW[0] * _POOLED_HW[1]
        # No ReLU after the last Linear: av-benchmark removed it "to match audioldm_eval".
        self.embeddings = nn.Sequential(
            nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, embed_dim)
        )

    def forward(self, examples: Tensor) -> Tensor:
        """``(N, 96, 64)`` float32 -> ``(N, embed_dim)``; the conv output is flattened in (h, w, c) order."""
        x = self.features(examples[:, None])
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return self.embeddings(x)


def load_vggish_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The state_dict of ``vggish-10086976.pth`` (or of a saved torch-hub VGGish), minus exactly the two PCA keys.

    ``pproc.pca_eigen_vectors`` and ``pproc.pca_means`` (the hub model's postprocessor, unused by av-benchmark) are
    dropped when present; every other key is kept, so a strict load still rejects any other extra or missing key.
    """
    state = load_state_dict(path)
    return {k: v for k, v in state.items() if k not in VGGISH_IGNORED_KEYS}


class VGGish(nn.Module):
    """VGGish (av-benchmark's, no PCA, no final ReLU): prepared 16 kHz waveforms -> 128-d rows per 0.96 s example.

    Args:
        weights: local path to ``vggish-10086976.pth`` (or a saved torch-hub VGGish state_dict).
        pretrained: load the official checkpoint (``weights``, else the cache, else a download from the torchvggish
            release, verified against the SHA-256 prefix in its name). ``False`` keeps a random initialisation and
            needs no network.
        widths: conv widths (official ``(64, 128, 256, 512)``; smaller only for tests).
        hidden: hidden fully connected size (4096).
        embed_dim: embedding size (128).
        cache_dir: checkpoint cache override (default ``$TORCHMETRICS_AV_CACHE``).

    Attributes:
        model: :class:`VGGishNetwork`; its ``state_dict()`` equals the official file's key set (18 tensors).
        frontend: :class:`VGGishFrontEnd`.
        checkpoint_id: provenance string, ``"<name>@sha256:<digest>"`` or ``"random-init"``.
    """

    sample_rate = VGGISH_SAMPLE_RATE
    min_samples = VGGISH_MIN_SAMPLES
    # precision= (torchmetrics_av.precision): the convolutional stack under autocast; front end and MLP float32.
    autocast_modules = ("model.features",)

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        *,
        widths: Sequence[int] = VGGISH_WIDTHS,
        hidden: int = VGGISH_HIDDEN,
        embed_dim: int = VGGISH_EMBED_DIM,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        self.frontend = VGGishFrontEnd()
        self.model = VGGishNetwork(widths, hidden, embed_dim)
        self.embed_dim = embed_dim
        self.checkpoint_id = "random-init"
        if weights is not None or pretrained:
            path = resolve_checkpoint(VGGISH_CHECKPOINT.name, weights, cache_dir=cache_dir)
            self.model.load_state_dict(load_vggish_state_dict(path), strict=True)
            self.checkpoint_id = f"{VGGISH_CHECKPOINT.name}@sha256:{file_digest(path)[:16]}"
        self.eval()

    @property
    def device(self) -> torch.device:
        """Where the model lives (inputs are moved there)."""
        return self.frontend.window.device

    def examples(self, wave: Tensor) -> Tensor:
        """``(L,)`` 16 kHz waveform -> ``(n, 96, 64)`` float32 log-mel examples (see :class:`VGGishFrontEnd`)."""
        return self.frontend(wave)

    def forward(self, wave: Tensor) -> Tensor:
        """Embed a batch of equal-length clips, as av-benchmark's ``VGGish.forward``.

        Args:
            wave: ``(B, L)`` float mono audio at 16 kHz (from :meth:`prepare`), ``L >= 15600``.

        Returns:
            ``(B, n, embed_dim)`` float32 on the model's device, ``n = 1 + ((L − 400) // 160 + 1 − 96) // 96``.
        """
        if wave.ndim != 2 or not wave.is_floating_point():
            raise ValueError(f"`wave` must be a (B, L) float tensor of 16 kHz audio, got {tuple(wave.shape)}")
        examples = torch.stack([self.frontend(w) for w in wave])
        b, n = examples.shape[:2]
        return self.model(examples.flatten(0, 1)).view(b, n, -1)

    def embed(self, waves: Sequence[Tensor], batch_size: int = DEFAULT_BATCH_SIZE) -> list[Tensor]:
        """Embed clips of any lengths: one ``(n_i, embed_dim)`` tensor of example rows per clip.

        The examples of all clips go through the network together, ``batch_size`` at a time (this moves values by
        ~1e-7 at most against one clip per batch, far below the goldens' tolerance).

        Args:
            waves: 1-D 16 kHz float clips (from :meth:`prepare`), each at least 15600 samples.
            batch_size: most examples per network forward.

        Returns:
            A list with, for each clip, its ``(n_i, embed_dim)`` float32 rows on the model's device.

        Raises:
            ValueError: a clip is not 1-D or is shorter than one example (the message names its index).
        """
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        examples = []
        for i, w in enumerate(waves):
            try:
                examples.append(self.frontend(w))
            except ValueError as err:
                raise ValueError(f"`waves[{i}]`: {err}") from None
        if not examples:
            return []
        flat = torch.cat(examples)
        rows = torch.cat([self.model(flat[s : s + batch_size]) for s in range(0, flat.shape[0], batch_size)])
        return list(rows.split([e.shape[0] for e in examples]))

    def prepare(self, clip: Tensor, sample_rate: int, duration: float | None = AVBENCH_AUDIO_LENGTH_S) -> Tensor:
        """One clip -> the 16 kHz model input, as av-benchmark's ``AudioDataset(sr=16000)`` loads it.

        Channel mean, per-clip DC removal (over the whole clip, before truncation), ``torchaudio.transforms.Resample``
        to 16 kHz, then the first ``duration`` seconds; never padded (a clip under 0.975 s is then rejected by
        :meth:`embed`).

        Args:
            clip: ``(T,)`` or ``(C, T)`` float audio in [-1, 1] (or int16 PCM) at ``sample_rate``.
            sample_rate: Hz.
            duration: seconds kept (av-benchmark's ``--audio_length``, 8.0); ``None`` keeps everything.

        Returns:
            ``(T',)`` float32 with ``T' = min(ceil(16000·T/sample_rate), 16000·duration)``.
        """
        return audiodataset_waveform(clip, sample_rate, VGGISH_SAMPLE_RATE, duration)


def tiny_vggish(seed: int = 0, **overrides: object) -> VGGish:
    """A small random :class:`VGGish` for fast offline tests: same front end and graph, narrow layers.

    Defaults ``widths=(4, 8, 8, 16)``, ``hidden=32`` (128-d embeddings) and ``pretrained=False``; any constructor
    argument can be overridden. The weights come from ``torch.manual_seed(seed)`` inside a forked RNG (the
    caller's random stream is untouched), conv and linear weights He-normal so that outputs differ between clips.

    Example:
        >>> tiny_vggish().embed_dim
        128
    """
    return tiny_cnn(VGGish, {"pretrained": False, "widths": (4, 8, 8, 16), "hidden": 32}, seed, overrides)
