"""PaSST (``passt_s_swa_p16_128_ap476``): the AudioSet audio transformer behind FD_PaSST and KL_PaSST.

The network is hear21passt's own ``PaSST`` class (the code FastVideo and av-benchmark run), so the official checkpoint
``passt-s-f128-p16-s10-ap.476-swa.pt`` (Apache-2.0, 86,153,758 parameters, 159 tensors) loads strictly into
``.model``. The mel front end, :class:`PaSSTMelSpectrogram`, lives here with the model (same numbers as hear21passt's
``AugmentMelSTFT`` in eval mode, without its global-RNG draws; its old import path
``torchmetrics_av.preprocessing.PaSSTMelSpectrogram`` still works and warns ``DeprecationWarning``).

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones import PaSST
    >>> net = PaSST(pretrained=False, embed_dim=32, depth=1, num_heads=2)   # tiny random config for a quick look
    >>> emb, logits = net(torch.zeros(2, 32000))
    >>> emb.shape, logits.shape
    (torch.Size([2, 32]), torch.Size([2, 527]))
"""

from __future__ import annotations

import functools
import os
import warnings

import torch
from torch import Tensor, nn

from torchmetrics_av.backbones.memo import MemoisedBackbone
from torchmetrics_av.preprocessing import derived, pad_or_trim, protocol_waveform, sliding_windows
from torchmetrics_av.protocols import ProtocolSpec, get_protocol
from torchmetrics_av.weights import checkpoint, file_digest, load_state_dict, resolve_checkpoint

PASST_CHECKPOINT = checkpoint("passt_s_swa_p16_128_ap476")

# ---------------------------------------------------------------------------------------------------------------------
# PaSST's own front end (hear21passt AugmentMelSTFT in eval mode, see ../shared/golden/passt/README.md §2).

PASST_SAMPLE_RATE = 32000
PASST_N_MELS = 128
PASST_N_FFT = 1024
PASST_WIN_LENGTH = 800
PASST_HOP = 320
# AugmentMelSTFT(fmax=None): fmax = sr/2 - fmax_aug_range/2 = 16000 - 1000; fmin = 0.
PASST_FMIN = 0.0
PASST_FMAX = 15000.0
PASST_PREEMPHASIS = 0.97
# log(mel + 1e-5), then (x + 4.5) / 5: hear21passt's "fast normalization".
PASST_LOG_OFFSET = 1e-5
PASST_NORM_SHIFT = 4.5
PASST_NORM_SCALE = 5.0


class PaSSTMelSpectrogram(nn.Module):
    """PaSST's log-mel front end (``AugmentMelSTFT`` in eval mode), without its global-RNG side effect.

    hear21passt draws two ``torch.randint`` values per forward even in eval mode (unused there), which would perturb a
    user's random stream; it also rebuilds the Kaldi mel bank on every call. This module builds the bank once and
    computes the same numbers: pre-emphasis ``y[n] = x[n+1] - 0.97 x[n]`` (L-1 samples), ``|STFT|^2`` with
    n_fft 1024 / hop 320 / Hann(800, periodic=False) / centred reflect padding, 128 Kaldi mel bands 0-15000 Hz, then
    ``(log(mel + 1e-5) + 4.5) / 5``.

    Input ``(B, T)`` at 32 kHz; output ``(B, 128, 1 + (T-1)//320)``.

    Example:
        >>> import torch
        >>> PaSSTMelSpectrogram()(torch.zeros(1, 320000)).shape
        torch.Size([1, 128, 1000])
    """

    window: Tensor
    mel_basis: Tensor
    preemphasis: Tensor

    def __init__(self) -> None:
        super().__init__()
        from torchaudio.compliance.kaldi import get_mel_banks

        self.register_buffer("window", torch.hann_window(PASST_WIN_LENGTH, periodic=False), persistent=False)
        self.register_buffer("preemphasis", torch.tensor([[[-PASST_PREEMPHASIS, 1.0]]]), persistent=False)
        bank, _ = get_mel_banks(
            PASST_N_MELS,
            PASST_N_FFT,
            float(PASST_SAMPLE_RATE),
            PASST_FMIN,
            PASST_FMAX,
            vtln_low=100.0,
            vtln_high=-500.0,
            vtln_warp_factor=1.0,
        )
        # Kaldi's bank covers n_fft/2 bins; hear21passt right-pads one zero column for the Nyquist bin.
        self.register_buffer("mel_basis", torch.nn.functional.pad(bank, (0, 1)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T)`` float32 32 kHz audio -> ``(B, 128, frames)`` normalised log-mel."""
        x = torch.nn.functional.conv1d(x.unsqueeze(1), self.preemphasis).squeeze(1)
        spec = torch.stft(
            x,
            PASST_N_FFT,
            hop_length=PASST_HOP,
            win_length=PASST_WIN_LENGTH,
            window=self.window,
            center=True,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = torch.view_as_real(spec).pow(2).sum(dim=-1)
        mel = torch.matmul(self.mel_basis, power.float())
        return ((mel + PASST_LOG_OFFSET).log() + PASST_NORM_SHIFT) / PASST_NORM_SCALE


# ---------------------------------------------------------------------------------------------------------------------
# The backbone.

# hear21passt.get_model defaults: 128 mel bins x 998 frames, patch 16, stride 10x10 -> a 12 x 99 patch grid.
PASST_INPUT_SIZE = (128, 998)
PASST_PATCH = 16
PASST_STRIDE = (10, 10)
PASST_NUM_CLASSES = 527
PASST_EMBED_DIM = 768
# Longest input the time positional embedding covers: 10 s at 32 kHz (1000 frames -> 99 patches).
PASST_MAX_SAMPLES = 10 * PASST_SAMPLE_RATE
# Shortest input: the 16-frame patch needs 16 mel frames; the pre-emphasis keeps T-1 samples and the centred STFT gives
# 1 + (T-1)//320 frames, so T >= 15 * 320 + 1 (0.15 s). Shorter windows fail inside the patch conv.
PASST_MIN_SAMPLES = (PASST_PATCH - 1) * PASST_HOP + 1
# Memoised windows per backbone: a few validation batches of FD + KL; ~5 KB of outputs per window.
DEFAULT_CACHE_WINDOWS = 512


def _quiet_hear21passt() -> None:
    from hear21passt.models import passt as passt_module

    # hear21passt prints tensor shapes on its first forward through a module-global flag.
    passt_module.first_RUN = False


def build_passt_network(embed_dim: int = PASST_EMBED_DIM, depth: int = 12, num_heads: int = 12) -> nn.Module:
    """The hear21passt ``PaSST`` network with the arguments of ``get_model("passt_s_swa_p16_128_ap476")``.

    Smaller ``embed_dim``/``depth``/``num_heads`` give the same architecture at test size.
    """
    from hear21passt.models import passt as passt_module

    _quiet_hear21passt()
    return passt_module.PaSST(
        img_size=PASST_INPUT_SIZE,
        patch_size=PASST_PATCH,
        stride=PASST_STRIDE,
        in_chans=1,
        num_classes=PASST_NUM_CLASSES,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        distilled=True,
    )


class PaSST(MemoisedBackbone):
    """PaSST audio tagger: 32 kHz waveform -> (768-d embedding, 527 AudioSet logits), batched.

    Args:
        weights: local path to ``passt-s-f128-p16-s10-ap.476-swa.pt`` (or a state_dict file with the same keys).
        pretrained: load the official checkpoint (``weights``, else the cache, else a download). ``False`` keeps the
            random initialisation and needs no network.
        embed_dim: transformer width (768 for the official model; smaller only for tests).
        depth: number of blocks (12 official).
        num_heads: attention heads (12 official).
        cache_dir: checkpoint cache override (default ``$TORCHMETRICS_AV_CACHE``).
        cache_size: how many recent windows' outputs :meth:`embed` memoises (0 disables), so that FD and KL sharing
            this backbone run one forward per window.

    Raises:
        ValueError: ``cache_size`` is not a non-negative int.

    Attributes:
        model: hear21passt ``PaSST``; its ``state_dict()`` keys and shapes equal the official checkpoint's.
        mel: the log-mel front end.
        checkpoint_id: provenance string, ``"<name>@sha256:<digest>"`` or ``"random-init"``.
    """

    sample_rate = PASST_SAMPLE_RATE
    max_samples = PASST_MAX_SAMPLES
    # precision="bf16"/"fp16" (torchmetrics_av.precision): the transformer under autocast, its classifier float32.
    autocast_modules = ("model",)
    float32_modules = ("model.head",)

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        *,
        embed_dim: int = PASST_EMBED_DIM,
        depth: int = 12,
        num_heads: int = 12,
        cache_dir: str | os.PathLike | None = None,
        cache_size: int = DEFAULT_CACHE_WINDOWS,
    ) -> None:
        super().__init__(cache_size)
        self.mel = PaSSTMelSpectrogram()
        self.model = build_passt_network(embed_dim, depth, num_heads)
        self.embed_dim = embed_dim
        self.checkpoint_id = "random-init"
        if weights is not None or pretrained:
            path = resolve_checkpoint(PASST_CHECKPOINT.name, weights, cache_dir=cache_dir)
            self.model.load_state_dict(load_state_dict(path), strict=True)
            self.checkpoint_id = f"{PASST_CHECKPOINT.name}@sha256:{file_digest(path)[:16]}"
        self.eval()

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        """Embed a batch.

        Args:
            wave: ``(B, T)`` float32 mono audio at 32 kHz, ``T <= 320000`` (10 s). Equal lengths within a batch.

        Returns:
            ``(embedding (B, embed_dim), logits (B, 527))``; logits are pre-sigmoid.
        """
        if wave.ndim != 2 or wave.shape[-1] > PASST_MAX_SAMPLES:
            raise ValueError(f"`wave` must be (B, T<={PASST_MAX_SAMPLES}) 32 kHz audio, got {tuple(wave.shape)}")
        mel = self.mel(wave.to(self.mel.mel_basis.device, torch.float32))
        _quiet_hear21passt()  # a process that unpickled this model (ddp_spawn) re-imported hear21passt's print flag
        with warnings.catch_warnings():
            # hear21passt warns on every forward that 1000 mel frames != its nominal 998 (it cuts the pos-embed).
            warnings.filterwarnings("ignore", message="Input image size")
            logits, embedding = self.model(mel.unsqueeze(1))
        return embedding, logits

    def embed(self, windows: list[Tensor], batch_size: int = 8) -> tuple[Tensor, Tensor]:
        """Embed windows of possibly different lengths, batching equal lengths together.

        Results are memoised by window content (SHA-256 of the float32 samples) for the last ``cache_size``
        windows, so metrics sharing this backbone (FD and KL on the same clips) run one forward per window.

        Args:
            windows: 1-D 32 kHz float32 windows (≤ 10 s each).
            batch_size: most windows per forward.

        Returns:
            ``(embeddings (N, embed_dim), logits (N, 527))`` in the order of ``windows``, on the model's device.
        """
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        return self._embed_memoised(windows, batch_size, self.mel.mel_basis.device, (self.embed_dim, PASST_NUM_CLASSES))


def passt_windows(
    clip: Tensor,
    sample_rate: int,
    protocol: str | ProtocolSpec,
    kind: str,
    *,
    resampler: str | None = None,
    duration: float | None = None,
    audio_length: float | None = None,
) -> list[Tensor] | None:
    """The 32 kHz PaSST model window(s) of one clip under a protocol.

    ``kind="fd"``: one window, the first 10 s zero-padded/trimmed to 320000 samples. ``kind="kl"``: with
    ``spec.kl_windows == "sliding"`` (FastVideo) the stable-audio-metrics sliding windows
    (:func:`~torchmetrics_av.preprocessing.sliding_windows`), whose logits the caller averages; with ``"single"``
    (av-benchmark) the same single window as FD (its KL reuses the FD forward). av-benchmark first truncates to
    ``duration`` seconds (default 8.0), then pads to 10 s.

    Args:
        clip: ``(C, T)`` float32 audio at ``sample_rate``.
        sample_rate: Hz.
        protocol: a protocol name or spec.
        kind: ``"fd"`` or ``"kl"``.
        resampler: resampler override (see :func:`torchmetrics_av.preprocessing.resample`).
        duration: truncation in seconds (``None`` = the protocol's: 8.0 under av-benchmark, none under fastvideo).
        audio_length: deprecated alias of ``duration``.

    Returns:
        A list of 1-D float32 windows, or ``None`` for a silent clip under a peak-normalising protocol.
    """
    if kind not in ("fd", "kl"):
        raise ValueError(f"`kind` must be 'fd' or 'kl', got {kind!r}")
    if audio_length is not None:
        warnings.warn("`audio_length` is deprecated; use `duration` (seconds)", FutureWarning, stacklevel=2)
        duration = audio_length if duration is None else duration
    spec = get_protocol(protocol)
    x = protocol_waveform(clip, sample_rate, PASST_SAMPLE_RATE, spec, resampler=resampler, duration=duration)
    if x is None:
        return None
    if kind == "kl" and spec.kl_windows == "sliding":
        return sliding_windows(x, PASST_SAMPLE_RATE)
    # derived(): FD and KL (and its memo key) share this window of a clip loaded once under torchmetrics-av evaluate.
    return [derived(x, ("pad_or_trim", PASST_MAX_SAMPLES), functools.partial(pad_or_trim, length=PASST_MAX_SAMPLES))]
