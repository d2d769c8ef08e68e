"""MS-CLAP's waveform rule (msclap 1.3.4 ``CLAPWrapper.load_audio_into_tensor(path, 7, resample=True)``), with the
random 7 s crop made deterministic.

One clip ``(C, T)`` (or ``(T,)``) at its own rate -> the ``(308700,)`` float32 model input:

1. ``torchaudio.transforms.Resample(sr, 44100)`` (default sinc settings) on every channel, when ``sr != 44100``.
   No mono mix-down, DC removal or peak normalisation.
2. ``reshape(-1)``: channels are **concatenated** (left then right), so a 3.5 s stereo clip counts as 7 s.
3. ``L <= 308700`` (equality included): tile ``ceil(308700 / L)`` times and keep the first 308700 samples (across
   the channel boundary for stereo).
4. ``L > 308700``: the window ``[s, s + 308700)``. Upstream draws ``s = random.randrange(L - 308700)`` from Python's
   unseeded global RNG (so av-benchmark's MS-CLAP score of a clip longer than 7 s is not reproducible). Here
   ``s = random.Random(crop_seed).randrange(L - 308700)``, a fresh generator per clip: the draw upstream makes for
   its first long clip after ``random.seed(crop_seed)``, independent of batch composition, and the global RNG is
   untouched. An explicit ``crop_start`` overrides it.

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones.msclap.audio import msclap_waveform, crop_start
    >>> msclap_waveform(torch.ones(2, 16000), 16000).shape      # 2 x 1 s stereo at 16 kHz -> 2 s, tiled to 7 s
    torch.Size([308700])
    >>> crop_start(396900, seed=20250701)                         # a 9 s clip: start of the 7 s window
    62643
"""

from __future__ import annotations

import random

import torch
from torch import Tensor

from torchmetrics_av.preprocessing import resample

# config_2023.yml: sampling_rate 44100, duration 7.
MSCLAP_SAMPLE_RATE = 44100
MSCLAP_DURATION_S = 7
MSCLAP_NUM_SAMPLES = MSCLAP_DURATION_S * MSCLAP_SAMPLE_RATE
# Crop seed when none is given (the CLAP backbone's convention).
DEFAULT_CROP_SEED = 0


def crop_start(length: int, seed: int = DEFAULT_CROP_SEED, num_samples: int = MSCLAP_NUM_SAMPLES) -> int:
    """Start of the 7 s window of a flattened 44.1 kHz clip of ``length > num_samples`` samples:
    ``random.Random(seed).randrange(length - num_samples)`` (upstream's range, which never picks the last start).
    """
    if length <= num_samples:
        raise ValueError(f"a clip of {length} samples is tiled, not cropped (crop needs more than {num_samples})")
    return random.Random(seed).randrange(length - num_samples)


def flatten_44k1(clip: Tensor, sample_rate: int) -> Tensor:
    """Steps 1-2: resample every channel to 44.1 kHz (``torchaudio.transforms.Resample``), concatenate channels.

    Args:
        clip: ``(C, T)`` or ``(T,)`` float audio.
        sample_rate: its rate in Hz.

    Returns:
        ``(C * ceil(T * 44100 / sample_rate),)`` float32.
    """
    if clip.ndim not in (1, 2):
        raise ValueError(f"`clip` must be (T,) or (C, T), got shape {tuple(clip.shape)}")
    x = clip.to(torch.float32)
    return resample(x, int(sample_rate), MSCLAP_SAMPLE_RATE, "torchaudio").reshape(-1)


def msclap_waveform(
    clip: Tensor,
    sample_rate: int,
    *,
    crop_seed: int = DEFAULT_CROP_SEED,
    start: int | None = None,
) -> Tensor:
    """One clip -> the ``(308700,)`` float32 MS-CLAP input (module docstring, steps 1-4).

    Args:
        clip: ``(C, T)`` or ``(T,)`` float audio in [-1, 1] at ``sample_rate``.
        sample_rate: Hz.
        crop_seed: seed of the crop of a clip longer than 7 s after flattening (:func:`crop_start`).
        start: explicit crop start (``0 <= start <= L - 308700``); ignored for clips that are tiled.

    Raises:
        ValueError: an empty clip, or ``start`` outside the clip.
    """
    x = flatten_44k1(clip, sample_rate)
    n = x.shape[0]
    if n == 0:
        raise ValueError("`clip` is empty; MS-CLAP tiles a clip to 7 s and needs at least one sample")
    if n <= MSCLAP_NUM_SAMPLES:
        return x.repeat(-(-MSCLAP_NUM_SAMPLES // n))[:MSCLAP_NUM_SAMPLES]
    s = crop_start(n, crop_seed) if start is None else int(start)
    if not 0 <= s <= n - MSCLAP_NUM_SAMPLES:
        raise ValueError(f"crop start {s} is outside [0, {n - MSCLAP_NUM_SAMPLES}] for a clip of {n} samples")
    return x[s : s + MSCLAP_NUM_SAMPLES]
