"""Model-agnostic preprocessing primitives: input validation (audio, video, texts, rates), mono, DC removal,
resampling, peak normalisation, pad/trim, windowing, frame-rate conversion and [-1, 1] scaling.

Every metric routes its audio through these functions, so a protocol difference (e.g. FastVideo's soxr resampling and
peak normalisation vs av-benchmark's DC removal and torchaudio resampling) lives in exactly one function. A model's own
front end lives with the model: PaSST's log-mel in :mod:`torchmetrics_av.backbones.passt`, Synchformer's 25 fps frame
choice and short-side resize in :mod:`torchmetrics_av.backbones.synchformer`, ImageBind's fbank and clip sampling in
:mod:`torchmetrics_av.backbones.imagebind`. Their old names here still work and warn ``DeprecationWarning``.

Shapes: a *clip* is a ``(C, T)`` float32 tensor (channels, samples) at its own sample rate; a *batch* is a list of
clips. Units: samples and Hz; amplitudes are floats in [-1, 1] (int16 PCM is scaled by 1/32768).

Example:
    >>> import torch
    >>> from torchmetrics_av.preprocessing import as_clip_list, to_mono, resample
    >>> clips = as_clip_list(torch.zeros(2, 1, 16000) + 0.1, "preds")
    >>> mono = to_mono(clips[0])
    >>> resample(mono, 16000, 32000, "soxr_hq").shape
    torch.Size([32000])
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math
import numbers
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from torchmetrics_av.protocols import AVBENCH_DURATION_S, ProtocolSpec, Resampler, get_protocol

# RESAMPLERS, Resampler and FASTVIDEO_PEAK_DBFS moved to protocols.py; re-exported here for existing imports.
from torchmetrics_av.protocols import FASTVIDEO_PEAK_DBFS as FASTVIDEO_PEAK_DBFS
from torchmetrics_av.protocols import RESAMPLERS as RESAMPLERS

AudioInput = Tensor | Sequence[Tensor]

# int16 PCM full scale: soundfile/torchaudio/librosa all decode PCM16 as code / 32768.
INT16_SCALE = 32768.0
# A (B, C, T) tensor whose "channel" axis is longer than this while its time axis is not is almost surely (B, T, C).
_MAX_PLAUSIBLE_CHANNELS = 8


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"Tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return type(x).__name__


def all_finite(x: Tensor) -> bool:
    """True when no element of a floating tensor is NaN or ±Inf.

    One reduction pass (``aminmax`` propagates NaN, and an infinity is an extreme): about 10x faster on CPU than
    ``isfinite(x).all()``, which writes a boolean mask of the clip first. An empty tensor is finite.

    Example:
        >>> import torch
        >>> all_finite(torch.tensor([0.0, 1.0])), all_finite(torch.tensor([0.0, float("nan")]))
        (True, False)
    """
    if x.numel() == 0:
        return True
    lo, hi = torch.aminmax(x)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def _to_float(x: Tensor, name: str) -> Tensor:
    if x.dtype == torch.int16:
        return x.to(torch.float32) / INT16_SCALE
    if x.is_floating_point():
        return x.to(torch.float32)
    raise ValueError(f"`{name}` must be float audio in [-1, 1] or int16 PCM, got dtype {x.dtype}")


def as_clip_list(audio: AudioInput, name: str = "preds", *, min_samples: int = 1) -> list[Tensor]:
    """Validate audio input and return a list of float32 ``(C, T)`` clips.

    Args:
        audio: ``(B, T)`` or ``(B, C, T)`` tensor, or a list of ``(T,)`` / ``(C, T)`` tensors of any lengths; float in
            [-1, 1] or int16 PCM (scaled by 1/32768).
        name: argument name used in error messages.
        min_samples: the shortest clip accepted, in samples at the clip's own rate.

    Raises:
        ValueError: empty batch, wrong rank, non-audio dtype, likely channel-last layout, a clip shorter than
            ``min_samples``, or NaN/Inf samples. The message names ``name`` and the offending clip index.
    """
    if isinstance(audio, Tensor):
        if audio.ndim == 2:
            clips = [c.unsqueeze(0) for c in audio]
        elif audio.ndim == 3:
            if audio.shape[1] > _MAX_PLAUSIBLE_CHANNELS and audio.shape[2] <= _MAX_PLAUSIBLE_CHANNELS:
                raise ValueError(
                    f"`{name}` looks channel-last ({tuple(audio.shape)}); pass (B, C, T), e.g. `{name}.transpose(1, 2)`"
                )
            clips = list(audio)
        else:
            raise ValueError(
                f"`{name}` must be a (B, T) or (B, C, T) tensor or a list of clips, got {_describe(audio)}"
            )
    elif isinstance(audio, Sequence) and not isinstance(audio, str):
        clips = []
        for i, c in enumerate(audio):
            if not isinstance(c, Tensor) or c.ndim not in (1, 2):
                raise ValueError(f"`{name}[{i}]` must be a (T,) or (C, T) tensor, got {_describe(c)}")
            if c.ndim == 2 and c.shape[0] > _MAX_PLAUSIBLE_CHANNELS and c.shape[1] <= _MAX_PLAUSIBLE_CHANNELS:
                raise ValueError(f"`{name}[{i}]` looks channel-last ({tuple(c.shape)}); pass (C, T), e.g. `.T`")
            clips.append(c if c.ndim == 2 else c.unsqueeze(0))
    else:
        raise ValueError(f"`{name}` must be a tensor or a list of tensors, got {_describe(audio)}")
    if len(clips) == 0:
        raise ValueError(f"`{name}` is an empty batch; pass at least one clip")
    out = []
    for i, c in enumerate(clips):
        c = _to_float(c, f"{name}[{i}]")
        if c.shape[-1] < min_samples or c.shape[0] == 0:
            raise ValueError(f"`{name}[{i}]` has {c.shape[-1]} samples; at least {min_samples} are needed")
        if not all_finite(c):
            raise ValueError(f"`{name}[{i}]` contains NaN or Inf samples; clean or drop the clip before update()")
        out.append(c)
    return out


def _is_rate(r: object) -> bool:
    """A positive whole number of Hz: an int (or NumPy integer), or a float with an integral value such as 16000.0."""
    if isinstance(r, bool):
        return False
    if isinstance(r, numbers.Integral):
        return int(r) > 0
    return isinstance(r, float) and math.isfinite(r) and r.is_integer() and r > 0


def sample_rates(rate: int | Sequence[int] | None, n: int, name: str) -> list[int]:
    """Broadcast a sample rate (one int, or one per clip) to ``n`` clips.

    Raises:
        ValueError: ``rate`` is missing, not a positive integer (``0``, ``-16000``, ``22050.5``, ``"16000"``), or has
            the wrong length.

    Example:
        >>> sample_rates(16000, 2, "sample_rate")
        [16000, 16000]
    """
    if rate is None:
        raise ValueError(f"`{name}` is required: give the sample rate (Hz) of the audio, per metric or per update()")
    if isinstance(rate, str | bytes) or not isinstance(rate, numbers.Real | Sequence):
        raise ValueError(f"`{name}` must be a positive integer rate in Hz (or one per clip), got {rate!r}")
    rates = [rate] * n if isinstance(rate, numbers.Real) else list(rate)
    if len(rates) != n:
        raise ValueError(f"`{name}` has {len(rates)} entries for {n} clips; give one int or one per clip")
    for r in rates:
        if not _is_rate(r):
            raise ValueError(f"`{name}` must hold positive integer rates in Hz, got {r!r}")
    return [int(r) for r in rates]


def check_sample_rate(rate: Any, name: str = "sample_rate") -> Any:
    """Validate a constructor's sample rate: ``None`` (given per ``update``), one positive int, or one per clip.

    Raises:
        ValueError: anything else, naming ``name``.

    Example:
        >>> check_sample_rate(48000)
        48000
    """
    if rate is None:
        return None
    if isinstance(rate, Sequence) and not isinstance(rate, str | bytes):
        if len(rate) == 0:
            raise ValueError(f"`{name}` is an empty list; give one rate in Hz or one per clip")
        sample_rates(rate, len(rate), name)
        return rate
    sample_rates(rate, 1, name)
    return rate


def check_frame_rate(fps: Any, name: str = "video_fps") -> Any:
    """Validate a constructor's frame rate: ``None``, one positive finite number, or one per clip.

    Raises:
        ValueError: anything else, naming ``name``.

    Example:
        >>> check_frame_rate(24000 / 1001)
        23.976023976023978
    """
    if fps is None:
        return None
    if isinstance(fps, Sequence) and not isinstance(fps, str | bytes):
        if len(fps) == 0:
            raise ValueError(f"`{name}` is an empty list; give one frame rate or one per clip")
        frame_rates(fps, len(fps), name)
        return fps
    frame_rates(fps, 1, name)
    return fps


def check_positive_int(value: Any, name: str) -> int:
    """``value`` if it is a positive ``int`` (not a bool), else a ``ValueError`` naming ``name``.

    Example:
        >>> check_positive_int(8, "batch_size")
        8
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    return int(value)


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is a ``bool``, else a ``ValueError`` naming ``name``.

    Example:
        >>> check_bool(True, "keep_logits")
        True
    """
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False, got {value!r}")
    return value


def as_text_list(texts: Any, name: str, n: int | None = None, *, allow_blank: bool = True) -> list[str]:
    """Validate a batch of texts: a list (or tuple) of ``str``, one per sample.

    A bare ``str`` is an error (it would otherwise be read as a list of characters, or silently as one sample).

    Args:
        texts: the batch.
        name: argument name for the messages (``"target"``).
        n: the expected count (the number of clips), or ``None``.
        allow_blank: accept empty / whitespace-only strings.

    Raises:
        ValueError: a bare string, not a sequence, a non-string entry, the wrong count, or a blank entry.

    Example:
        >>> as_text_list(["a dog barks", "rain"], "target", 2)
        ['a dog barks', 'rain']
    """
    if isinstance(texts, str):
        raise ValueError(f"`{name}` must be a list of strings, one per sample, got a bare str; wrap it: [{name}]")
    if not isinstance(texts, Sequence):
        raise ValueError(f"`{name}` must be a list of strings, one per sample, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise ValueError(f"`{name}[{i}]` must be a string, got {type(t).__name__}")
        if not allow_blank and not t.strip():
            raise ValueError(f"`{name}[{i}]` is empty; every sample needs a non-empty text")
    if n is not None and len(out) != n:
        raise ValueError(f"`{name}` has {len(out)} texts for {n} clips; give one per clip")
    return out


def to_mono(clip: Tensor, policy: Literal["mean", "first"] = "mean") -> Tensor:
    """``(C, T)`` -> ``(T,)``: channel mean (FastVideo/librosa and av-benchmark) or channel 0 (ImageBind's fbank)."""
    if policy == "mean":
        return clip.mean(dim=0)
    if policy == "first":
        return clip[0]
    raise ValueError(f"`policy` must be 'mean' or 'first', got {policy!r}")


def remove_dc(x: Tensor) -> Tensor:
    """Subtract the clip mean over the last axis (av-benchmark's ``wave - wave.mean()``, float32 reduction)."""
    return x - x.mean(dim=-1, keepdim=True)


def is_silent(x: Tensor) -> bool:
    """True when every sample is exactly zero (peak normalisation is undefined there)."""
    return not bool(x.abs().max() > 0)


def peak_normalize(x: Tensor, target_dbfs: float = -1.0) -> Tensor:
    """Scale so that ``max|x|`` is ``target_dbfs``, exactly as ``pyloudnorm.normalize.peak`` under NumPy 2.

    The gain is float64 and the product is float64 (NumPy 2 promotes ``float64 scalar * float32 array`` to float64);
    the result is returned in float64 and is rounded to float32 only when the caller builds the model window, as
    FastVideo does. This matters at the 1-ulp level.

    Raises:
        ValueError: ``x`` is all zeros (pyloudnorm would return NaN); callers count such clips as skipped.
    """
    peak = float(x.abs().max())
    if peak == 0.0:
        raise ValueError("cannot peak-normalise a silent clip (all samples are zero)")
    gain = 10.0 ** (target_dbfs / 20.0) / peak
    return x.to(torch.float64) * gain


def pad_or_trim(x: Tensor, length: int, value: float = 0.0) -> Tensor:
    """Cut the last axis to ``length`` or right-pad it with ``value``."""
    n = x.shape[-1]
    if n >= length:
        return x[..., :length]
    return torch.nn.functional.pad(x, (0, length - n), value=value)


def librosa_length(n: int, orig_sr: int, target_sr: int) -> int:
    """Output length of librosa's ``resample(fix=True)``: ``ceil(n * target_sr / orig_sr)``."""
    return int(math.ceil(n * (float(target_sr) / orig_sr)))


@functools.lru_cache(maxsize=32)
def _torchaudio_resampler(orig_sr: int, target_sr: int) -> nn.Module:
    import torchaudio

    # transforms.Resample builds its sinc kernel in float64 and stores it as float32 (av-benchmark's AudioDataset).
    return torchaudio.transforms.Resample(orig_sr, target_sr)


def resample(x: Tensor, orig_sr: int, target_sr: int, method: Resampler = "soxr_hq") -> Tensor:
    """Resample the last axis of ``x`` from ``orig_sr`` to ``target_sr`` the way a protocol's reference does.

    Args:
        x: ``(..., T)`` float32 audio.
        orig_sr: input rate in Hz.
        target_sr: output rate in Hz.
        method: ``"soxr_hq"`` = ``librosa.load(sr=...)`` (FastVideo): soxr HQ on CPU in float32, then librosa's
            length rule ``ceil(n*target/orig)`` with zero padding. ``"torchaudio"`` = ``torchaudio.transforms.Resample``
            with default settings (av-benchmark), on ``x``'s device. ``"torchaudio_functional"`` =
            ``torchaudio.functional.resample`` (ImageBind, Audiobox), kernel built in the input dtype on ``x``'s device.

    Returns:
        The resampled tensor, same dtype and device as ``x``; ``x`` itself when the rates are equal.
    """
    if orig_sr == target_sr:
        return x
    if method == "soxr_hq":
        import soxr

        n_out = librosa_length(x.shape[-1], orig_sr, target_sr)
        flat = x.detach().to("cpu", torch.float32).reshape(-1, x.shape[-1]).numpy()
        rows = [soxr.resample(row, orig_sr, target_sr, quality="soxr_hq") for row in flat]
        out = torch.from_numpy(np.stack([np.asarray(r, dtype=np.float32) for r in rows]))
        out = pad_or_trim(out, n_out).reshape(*x.shape[:-1], n_out)
        return out.to(x.device)
    if method == "torchaudio":
        res = _torchaudio_resampler(orig_sr, target_sr)
        kernel = res.kernel.to(device=x.device, dtype=x.dtype)
        from torchaudio.functional.functional import _apply_sinc_resample_kernel

        # Same computation as Resample.forward, with the cached float64-built kernel moved to x's device.
        return _apply_sinc_resample_kernel(x, res.orig_freq, res.new_freq, res.gcd, kernel, res.width)
    if method == "torchaudio_functional":
        import torchaudio.functional as taf

        return taf.resample(x, orig_sr, target_sr)
    raise ValueError(f"`resampler` must be one of {RESAMPLERS}, got {method!r}")


# ---------------------------------------------------------------------------------------------------------------------
# Protocol loaders: what each reference does between "file decoded" and "model window".

# Kept for imports of the old name: av-benchmark's --audio_length default (protocols.AVBENCH_DURATION_S).
AVBENCH_AUDIO_LENGTH_S = AVBENCH_DURATION_S
_UNSET: Any = object()


def protocol_waveform(
    clip: Tensor,
    sample_rate: int,
    target_rate: int,
    protocol: str | ProtocolSpec,
    *,
    resampler: Resampler | None = None,
    duration: float | None = None,
    audio_length: float | None = _UNSET,
    float64: bool = False,
) -> Tensor | None:
    """One ``(C, T)`` clip -> mono ``(T',)`` at ``target_rate``, as the protocol's reference loader does it.

    Channel mean; then the spec's rules in order: DC removal (``spec.remove_dc``), resampling (``spec.resampler``),
    truncation to ``duration`` seconds (``spec.duration``), peak normalisation (``spec.peak_dbfs``, float64 gain).
    ``"fastvideo"`` is ``librosa.load(sr=target, mono=True)`` + ``pyloudnorm.normalize.peak(-1 dB)`` (soxr HQ with
    librosa's length rule, no DC removal, whole clip); ``"av-benchmark"`` is ``AudioDataset`` (DC removal,
    ``torchaudio.transforms.Resample``, first 8 s, no normalisation).

    Args:
        clip: ``(C, T)`` float32 audio from :func:`as_clip_list`.
        sample_rate: rate of ``clip`` in Hz.
        target_rate: the model's rate in Hz.
        protocol: a protocol name or :class:`~torchmetrics_av.protocols.ProtocolSpec`.
        resampler: override the protocol's resampler (see :func:`resample`).
        duration: truncation in seconds; ``None`` = the protocol's (``spec.duration``, none under "fastvideo").
        audio_length: deprecated alias of ``duration`` (``None`` also means the protocol's default).
        float64: return the peak-normalised waveform in float64 (FastVideo hands that array to CLAP's feature
            extractor) instead of rounding it to float32.

    Returns:
        The waveform (float32, or float64 with ``float64`` under peak normalisation), or ``None`` for an all-zero
        clip under a protocol that peak-normalises (the reference yields NaN there; metrics count the clip as
        skipped).
    """
    spec = get_protocol(protocol)
    if audio_length is not _UNSET:
        warnings.warn("`audio_length` is deprecated; use `duration` (seconds)", FutureWarning, stacklevel=2)
        duration = audio_length if duration is None else duration
    call = _LoaderCall(target_rate, spec, resampler, duration, float64)
    cache = _ACTIVE_LOADER_CACHE.get()
    return _protocol_waveform(clip, sample_rate, call) if cache is None else cache.waveform(clip, sample_rate, call)


@dataclass(frozen=True)
class _LoaderCall:
    """The arguments of :func:`protocol_waveform` that its output depends on, besides the clip and its rate."""

    target_rate: int
    spec: ProtocolSpec
    resampler: Resampler | None
    duration: float | None
    float64: bool


def _protocol_waveform(clip: Tensor, sample_rate: int, call: _LoaderCall) -> Tensor | None:
    spec, target_rate = call.spec, call.target_rate
    x = to_mono(clip, "mean")
    if spec.remove_dc:
        x = remove_dc(x)
    x = resample(x, sample_rate, target_rate, call.resampler or spec.resampler)
    length = call.duration if call.duration is not None else spec.duration
    if length is not None:
        x = x[: int(target_rate * length)]
    if spec.peak_dbfs is None:
        return x
    if is_silent(x):
        return None
    out = peak_normalize(x, spec.peak_dbfs)
    return out if call.float64 else out.to(torch.float32)


_ClipKey = tuple[int, tuple[int, ...], tuple[int, ...], torch.dtype, str]


def _memory_key(x: Tensor) -> _ClipKey:
    """What a tensor's values are read from: equal keys and equal version counters mean equal values."""
    return (x.data_ptr(), tuple(x.shape), tuple(x.stride()), x.dtype, str(x.device))


class _Abandoned(Exception):
    """A :class:`LoaderCache` load another thread will not deliver: the waiter computes it."""


@dataclass
class _Entry:
    """A clip the cache holds: its version, the clip (pinned), its loads, and the memory keys of what it derived."""

    version: int
    clip: Tensor
    loads: dict[tuple[int, _LoaderCall], Future] = field(default_factory=dict)
    held: list[_ClipKey] = field(default_factory=list)


@dataclass
class _Held:
    """A tensor computed from a held clip (a load, or a :func:`derived` value): pinned with its derived values.

    ``path`` names how it was made, ``(call, tag, ...)``, so that :meth:`LoaderCache.prefetch` can repeat the steps.
    """

    version: int
    tensor: Tensor
    owner: _ClipKey  # the clip it comes from (forgotten with it)
    path: tuple[Any, ...]
    derived: dict[Any, Future] = field(default_factory=dict)
    # Names this tensor and no other, ever (a process-wide counter): see held_token().
    token: str = field(default_factory=lambda: f"held:{next(_HELD_TOKENS)}")


_HELD_TOKENS = itertools.count()


def held_token(x: Tensor) -> str | None:
    """A name of ``x`` unique in the process while the active :class:`LoaderCache` holds it (a load output or a
    :func:`derived` tensor, unedited), else ``None``.

    The backbones' output memo keys such a tensor by this name instead of hashing its samples: under
    ``torchmetrics-av evaluate`` the metrics sharing a window get the very same tensor (:func:`derived`), and a name
    is never reused, so the memo cannot confuse two tensors (equal contents under two names are just two forwards).

    Example:
        >>> import torch
        >>> clip, cache = torch.randn(1, 16000), LoaderCache()
        >>> with cache.active():
        ...     x = protocol_waveform(clip, 16000, 32000, "fastvideo")
        ...     same = held_token(x) == held_token(x)
        >>> same, held_token(x)  # no cache active
        (True, None)
    """
    cache = _ACTIVE_LOADER_CACHE.get()
    return None if cache is None else cache.token_of(x)


def derived(base: Tensor, tag: Any, fn: Callable[[Tensor], Any]) -> Any:
    """``fn(base)``, computed once per clip while a :class:`LoaderCache` that holds ``base`` is active.

    For the steps after the loader that several metrics repeat on the same waveform (PaSST's 10 s window for FD and
    KL, the memo's content key of that window): under ``torchmetrics-av evaluate`` they return one shared object,
    and the cache repeats the steps it has seen on every later clip ahead of time (:meth:`LoaderCache.prefetch`).
    Without an active cache, or for a tensor the cache did not produce, this is just ``fn(base)``.

    Args:
        base: a tensor, typically a :func:`protocol_waveform` output or a value derived from one.
        tag: hashable, naming ``fn`` and its arguments exactly, e.g. ``("pad_or_trim", 320000)``: equal tags must
            mean equal functions, as the cache answers by tag.
        fn: a pure function of ``base`` (its result is shared: treat it as read-only).

    Example:
        >>> import torch
        >>> clip = torch.randn(1, 16000)
        >>> cache = LoaderCache()
        >>> with cache.active():
        ...     x = protocol_waveform(clip, 16000, 32000, "fastvideo")
        ...     a = derived(x, ("pad_or_trim", 40000), lambda t: pad_or_trim(t, 40000))
        ...     b = derived(x, ("pad_or_trim", 40000), lambda t: pad_or_trim(t, 40000))
        >>> a is b, a.shape, derived(x, ("neg",), torch.neg).shape  # no cache active: computed
        (True, torch.Size([40000]), torch.Size([32000]))
    """
    cache = _ACTIVE_LOADER_CACHE.get()
    return fn(base) if cache is None else cache.derive(base, tag, fn)


class LoaderCache:
    """:func:`protocol_waveform` outputs of the clips a caller holds: computed once, and optionally ahead of time.

    A caller that feeds the same decoded clips to several metrics (``torchmetrics-av evaluate``: FD and KL both load
    every clip at PaSST's 32 kHz) activates a cache around its ``update`` calls. While it is active, a loader call for
    a clip it has already loaded with the same arguments returns the stored waveform instead of resampling again, and
    :meth:`prefetch` runs every loader call seen so far on a new clip, from any thread, so that resampling overlaps
    the model's forward. The same holds for the steps after the loader routed through :func:`derived` (the padded
    model window, its memo key): computed once per clip, and repeated ahead of time by :meth:`prefetch` once seen.
    Outputs are those of the uncached functions, bit for bit: the same functions compute them.

    A clip is recognised by its memory (data pointer, shape, strides, dtype, device) and torch's in-place version
    counter (an in-place edit through torch is a miss). The cache keeps a reference to every clip and every value it
    holds, so that memory cannot be reused by another tensor while the entry lives. Contract for the caller: do not
    write into a cached clip's memory behind torch's back (a NumPy view), treat the returned waveforms as read-only
    (they are shared), and :meth:`forget` the clips once fed, which bounds the memory held.

    Example:
        >>> import torch
        >>> clip = torch.randn(1, 16000)
        >>> cache = LoaderCache()
        >>> with cache.active():
        ...     a = protocol_waveform(clip, 16000, 32000, "fastvideo")
        ...     b = protocol_waveform(clip, 16000, 32000, "fastvideo")  # the stored waveform
        >>> a is b, cache.hits, cache.misses
        (True, 1, 1)
        >>> other = torch.randn(1, 16000)
        >>> cache.prefetch(other, 16000)  # e.g. on a decoder thread
        1
        >>> with cache.active():
        ...     c = protocol_waveform(other, 16000, 32000, "fastvideo")
        >>> cache.hits, cache.forget([clip, other]), len(cache)
        (2, 2, 0)
    """

    def __init__(self) -> None:
        # clip memory -> its entry; a load still running on another thread is waited for, not repeated. A None
        # waveform is a silent clip.
        self._entries: dict[_ClipKey, _Entry] = {}
        # memory of a load output or derived tensor -> what was computed from it
        self._held: dict[_ClipKey, _Held] = {}
        self._calls: dict[_LoaderCall, None] = {}  # the calls seen, in order (a dict as an ordered set)
        self._plan: dict[tuple[Any, ...], dict[Any, Callable[[Tensor], Any]]] = {}  # path -> derived steps seen
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.derived_hits = 0
        self.derived_misses = 0
        # Called (no argument, on the learning thread, outside the lock) when a loader call or derived step is seen
        # for the first time, so that a caller can prefetch the clips it already holds with it (the CLI's first batch).
        self.on_learn: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _key(clip: Tensor) -> _ClipKey:
        return _memory_key(clip)

    def _drop(self, entry: _Entry) -> None:
        """Under the lock: release what ``entry``'s clip derived."""
        for key in entry.held:
            self._held.pop(key, None)

    def _claim(self, clip: Tensor, sample_rate: int, call: _LoaderCall) -> tuple[Future, bool]:
        """Under the lock: the future of this load, and whether the caller must compute it (nobody has started)."""
        key, version = self._key(clip), clip._version
        entry = self._entries.get(key)
        if entry is None or entry.version != version:  # unknown, or edited in place since: its outputs are stale
            if entry is not None:
                self._drop(entry)
            entry = self._entries[key] = _Entry(version, clip)
        future = entry.loads.get((sample_rate, call))
        if future is not None:
            return future, False
        future = entry.loads[(sample_rate, call)] = Future()
        return future, True

    def _release(self, future: Future, clip: Tensor, sample_rate: int, call: _LoaderCall) -> None:
        """Unstore a load that will not complete and tell its waiters to compute it themselves."""
        with self._lock:
            entry = self._entries.get(self._key(clip))
            if entry is not None and entry.loads.get((sample_rate, call)) is future:
                del entry.loads[(sample_rate, call)]
        future.set_exception(_Abandoned())

    def _hold(self, owner: _ClipKey, value: Any, path: tuple[Any, ...]) -> None:
        """Under the lock: pin a tensor computed from the clip ``owner`` so that :meth:`derive` can build on it."""
        entry = self._entries.get(owner)
        if not isinstance(value, Tensor) or entry is None:
            return
        key = self._key(value)
        held = self._held.get(key)
        if held is not None and held.version == value._version:
            return  # the same memory, shape and version (e.g. an untrimmed view): the same values, already held
        self._held[key] = _Held(value._version, value, owner, path)
        entry.held.append(key)

    def _compute(self, future: Future, clip: Tensor, sample_rate: int, call: _LoaderCall) -> Tensor | None:
        try:
            out = _protocol_waveform(clip, sample_rate, call)
        except BaseException:
            # Nothing is stored and nobody is handed this thread's exception: each caller meets its own.
            self._release(future, clip, sample_rate, call)
            raise
        with self._lock:
            self._hold(self._key(clip), out, (call,))
        future.set_result(out)
        return out

    @contextlib.contextmanager
    def active(self) -> Iterator[LoaderCache]:
        """Make :func:`protocol_waveform` use this cache in this context (thread, task) until the block ends."""
        token = _ACTIVE_LOADER_CACHE.set(self)
        try:
            yield self
        finally:
            _ACTIVE_LOADER_CACHE.reset(token)

    def waveform(self, clip: Tensor, sample_rate: int, call: _LoaderCall) -> Tensor | None:
        """:func:`protocol_waveform`'s output for ``clip``: stored, awaited (another thread is computing it), or
        computed here and stored.
        """
        while True:
            with self._lock:
                new = call not in self._calls
                self._calls.setdefault(call, None)
                future, mine = self._claim(clip, sample_rate, call)
            if new:
                self._learnt()
            if mine:
                with self._lock:
                    self.misses += 1
                return self._compute(future, clip, sample_rate, call)
            try:
                out = future.result()
            except _Abandoned:  # the thread computing it failed or gave up: compute here
                continue
            with self._lock:
                self.hits += 1
            return out

    def derive(self, base: Tensor, tag: Any, fn: Callable[[Tensor], Any]) -> Any:
        """:func:`derived`'s value for ``base``: stored, awaited, or computed here (and stored when the cache holds
        ``base``; a tensor it does not hold is simply ``fn(base)``).
        """
        while True:
            with self._lock:
                key = self._key(base)
                held = self._held.get(key)
                new = False
                if held is None or held.version != base._version:
                    future, mine = None, True
                else:
                    steps = self._plan.setdefault(held.path, {})
                    new = tag not in steps
                    steps.setdefault(tag, fn)
                    future = held.derived.get(tag)
                    mine = future is None
                    if mine:
                        future = held.derived[tag] = Future()
                        self.derived_misses += 1
            if new:
                self._learnt()
            if future is None:
                return fn(base)
            if mine:
                try:
                    value = fn(base)
                except BaseException:
                    with self._lock:
                        if held.derived.get(tag) is future:
                            del held.derived[tag]
                    future.set_exception(_Abandoned())
                    raise
                with self._lock:
                    self._hold(held.owner, value, (*held.path, tag))
                future.set_result(value)
                return value
            try:
                value = future.result()
            except _Abandoned:
                continue
            with self._lock:
                self.derived_hits += 1
            return value

    def token_of(self, x: Tensor) -> str | None:
        """:func:`held_token` of ``x`` for this cache."""
        with self._lock:
            held = self._held.get(self._key(x))
            return held.token if held is not None and held.version == x._version else None

    def _learnt(self) -> None:
        if self.on_learn is not None:
            self.on_learn()

    def _replay(self, value: Any, path: tuple[Any, ...]) -> None:
        """Repeat on ``value`` (made by ``path``) the derived steps seen after that path, and theirs in turn."""
        if not isinstance(value, Tensor):
            return
        with self._lock:
            steps = list(self._plan.get(path, {}).items())
        for tag, fn in steps:
            self._replay(self.derive(value, tag, fn), (*path, tag))

    def prefetch(self, clip: Tensor, sample_rate: int) -> int:
        """Run every loader call seen so far on ``clip`` (at ``sample_rate`` Hz), then every :func:`derived` step
        seen after it, and store the outputs; thread-safe.

        Raises:
            Exception: what a loader or step raised (nothing is stored for it).

        Returns:
            The number of waveforms computed (loads, not derived steps).
        """
        with self._lock:
            claims = [(call, *self._claim(clip, sample_rate, call)) for call in self._calls]
        todo = [(call, future) for call, future, mine in claims if mine]
        for i, (call, future) in enumerate(todo):
            try:
                self._compute(future, clip, sample_rate, call)
            except BaseException:
                for later_call, later in todo[i + 1 :]:  # claimed, never to be computed here
                    self._release(later, clip, sample_rate, later_call)
                raise
        for call, future, _ in claims:
            try:
                out = future.result()
            except _Abandoned:
                continue
            self._replay(out, (call,))
        return len(todo)

    def forget(self, clips: Sequence[Tensor]) -> int:
        """Drop the outputs of ``clips`` (and what was derived from them); returns how many clips were held."""
        with self._lock:
            n = 0
            for c in clips:
                entry = self._entries.pop(self._key(c), None)
                if entry is not None:
                    self._drop(entry)
                    n += 1
            return n


# The cache protocol_waveform uses in this context (LoaderCache.active); None: every call computes.
_ACTIVE_LOADER_CACHE: contextvars.ContextVar[LoaderCache | None] = contextvars.ContextVar(
    "torchmetrics_av_loader_cache", default=None
)


# stable-audio-metrics' passt_kld windowing, reused by FastVideo's KL: 10 s windows every 5 s; a short tail window is
# zero-padded to 10 s only when it is longer than 15 % of a window (1.5 s), else it runs unpadded.
KL_WINDOW_S = 10.0
KL_HOP_S = 5.0
KL_MIN_PAD_FRACTION = 0.15


def sliding_windows(x: Tensor, sample_rate: int) -> list[Tensor]:
    """Split ``(T,)`` audio into the stable-audio-metrics / FastVideo KL windows.

    ``for i in range(0, max(hop, T - hop), hop)``: ``w = x[i:i+win]``, zero-padded to ``win`` when
    ``0.15*win < len(w) < win``. A clip of at most 1.5 s is one unpadded window; ≤ 10 s gives one window; 10-15 s two.
    """
    win, hop = int(KL_WINDOW_S * sample_rate), int(KL_HOP_S * sample_rate)
    min_pad = int(win * KL_MIN_PAD_FRACTION)
    out = []
    for start in range(0, max(hop, x.shape[-1] - hop), hop):
        w = x[start : start + win]
        if min_pad < w.shape[-1] < win:
            # The first window of a clip under 10 s is PaSST's FD window too: derived() shares it under the CLI.
            w = derived(w, ("pad_or_trim", win), functools.partial(pad_or_trim, length=win))
        out.append(w)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Video: input validation, ffmpeg's frame-rate conversion, [-1, 1] scaling (see ../shared/golden/synchformer/README.md
# §4). A *video* is a ``(F, C, H, W)`` tensor, uint8 in [0, 255] or float in [0, 1]; a batch is a list of videos.

VideoInput = Tensor | Sequence[Tensor]
# Full scale of 8-bit video (rgb24 decoders).
UINT8_MAX = 255.0
# Rational approximation of a float frame rate (23.976 -> 24000/1001) for ffmpeg's exact timestamp arithmetic.
_FPS_MAX_DENOMINATOR = 1_000_000


def as_video_list(video: VideoInput, name: str = "target", *, channels: int = 3) -> list[Tensor]:
    """Validate video input and return a list of ``(F, C, H, W)`` clips (dtype kept: uint8 or float).

    Args:
        video: ``(B, F, C, H, W)`` tensor or a list of ``(F, C, H, W)`` tensors (any frame counts and sizes); uint8 in
            [0, 255] or float in [0, 1].
        name: argument name used in error messages.
        channels: the channel count the model expects (3 for RGB).

    Raises:
        ValueError: empty batch or clip, wrong rank, channel-last layout, wrong channel count, a dtype other than uint8
            or float, float values outside [0, 1] (e.g. 0-255 floats), or NaN/Inf values.

    Example:
        >>> import torch
        >>> clips = as_video_list(torch.zeros(2, 16, 3, 32, 48, dtype=torch.uint8))
        >>> len(clips), tuple(clips[0].shape)
        (2, (16, 3, 32, 48))
    """
    if isinstance(video, Tensor):
        if video.ndim != 5:
            raise ValueError(
                f"`{name}` must be a (B, F, C, H, W) tensor or a list of (F, C, H, W), got {_describe(video)}"
            )
        clips = list(video)
    elif isinstance(video, Sequence) and not isinstance(video, str):
        clips = list(video)
    else:
        raise ValueError(f"`{name}` must be a (B, F, C, H, W) tensor or a list of (F, C, H, W), got {_describe(video)}")
    if len(clips) == 0:
        raise ValueError(f"`{name}` is an empty batch; pass at least one video")
    for i, c in enumerate(clips):
        where = f"`{name}[{i}]`"
        if not isinstance(c, Tensor) or c.ndim != 4:
            raise ValueError(f"{where} must be a (F, C, H, W) tensor, got {_describe(c)}")
        if c.shape[1] != channels:
            hint = " (channel-last? use `.permute(0, 3, 1, 2)`)" if c.shape[-1] == channels else ""
            raise ValueError(
                f"{where} must have {channels} channels at dim 1 of (F, C, H, W), got {tuple(c.shape)}{hint}"
            )
        if c.shape[0] == 0 or c.shape[2] == 0 or c.shape[3] == 0:
            raise ValueError(f"{where} is empty ({tuple(c.shape)})")
        if c.dtype != torch.uint8:
            if not c.is_floating_point():
                raise ValueError(f"{where} must be uint8 in [0, 255] or float in [0, 1], got dtype {c.dtype}")
            if not all_finite(c):
                raise ValueError(f"{where} contains NaN or Inf values")
            lo, hi = float(c.min()), float(c.max())
            if lo < 0.0 or hi > 1.0:
                raise ValueError(
                    f"{where} is float with values in [{lo:g}, {hi:g}]; float video must be in [0, 1] (divide 0-255 "
                    "floats by 255, or pass uint8)"
                )
    return clips


def frame_rates(fps: float | Sequence[float] | None, n: int, name: str = "video_fps") -> list[float]:
    """Broadcast a frame rate (one number, or one per clip) to ``n`` clips.

    Raises:
        ValueError: ``fps`` is missing, not a positive finite number, or has the wrong length.
    """
    if fps is None:
        raise ValueError(
            f"`{name}` is required: give the frame rate (frames/s) of the video, per metric or per update()"
        )
    rates = [fps] * n if isinstance(fps, int | float) else list(fps)
    if len(rates) != n:
        raise ValueError(f"`{name}` has {len(rates)} entries for {n} clips; give one number or one per clip")
    for r in rates:
        if isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r) or r <= 0:
            raise ValueError(f"`{name}` must hold positive frame rates in frames/s, got {r!r}")
    return [float(r) for r in rates]


def ffmpeg_fps_indices(num_frames: int, src_fps: float, target_fps: float) -> Tensor:
    """Source frame feeding each output frame of ffmpeg's ``fps=target:round=near:start_time=0`` filter.

    Frame ``i`` (timestamp ``i / src_fps``) lands on output slot ``floor(i * target / src + 1/2)``; output frame ``n``
    is the last source frame whose slot is ``<= n`` (later frames on one slot replace earlier ones, empty slots repeat
    the previous frame), and the stream ends at slot ``floor(T * target / src + 1/2)`` (the last frame is repeated up
    to the source duration). Exact rational arithmetic, as libavfilter does. At 24 -> 25 fps the first duplicated
    frame is frame 11 (av-benchmark's PyAV/torio decoders).

    Example:
        >>> ffmpeg_fps_indices(14, 24.0, 25.0).tolist()
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11, 12, 13]
    """
    from fractions import Fraction

    src = Fraction(src_fps).limit_denominator(_FPS_MAX_DENOMINATOR)
    tgt = Fraction(target_fps).limit_denominator(_FPS_MAX_DENOMINATOR)
    ratio = tgt / src
    # floor(i * ratio + 1/2) with integers only.
    num, den = ratio.numerator, ratio.denominator
    slots = (2 * torch.arange(num_frames + 1, dtype=torch.int64) * num + den) // (2 * den)
    n_out = int(slots[-1])
    # Output frame n shows the last i with slots[i] <= n.
    idx = torch.searchsorted(slots[:-1], torch.arange(n_out, dtype=torch.int64), right=True) - 1
    return idx.clamp(0, num_frames - 1)


def to_signed_unit(frames: Tensor) -> Tensor:
    """Map video to float32 [-1, 1] with mean = std = 0.5 normalisation.

    uint8 input: ``(u * (1/255) - 0.5) / 0.5`` (torchvision ``ToDtype(scale=True)`` + ``Normalize``, av-benchmark);
    float input in [0, 1]: ``(x - 0.5) / 0.5`` (FastVideo).

    Example:
        >>> import torch
        >>> to_signed_unit(torch.tensor([0, 255], dtype=torch.uint8)).tolist()
        [-1.0, 1.0]
    """
    if frames.dtype == torch.uint8:
        return (frames.to(torch.float32).mul_(1.0 / UINT8_MAX) - 0.5) / 0.5
    return (frames.to(torch.float32) - 0.5) / 0.5


# ---------------------------------------------------------------------------------------------------------------------
# Names that moved to the model owning them; importing them from here still works and warns once per access.

_MOVED = {
    **{
        name: "torchmetrics_av.backbones.passt"
        for name in (
            "PaSSTMelSpectrogram",
            "PASST_SAMPLE_RATE",
            "PASST_N_MELS",
            "PASST_N_FFT",
            "PASST_WIN_LENGTH",
            "PASST_HOP",
            "PASST_FMIN",
            "PASST_FMAX",
            "PASST_PREEMPHASIS",
            "PASST_LOG_OFFSET",
            "PASST_NORM_SHIFT",
            "PASST_NORM_SCALE",
        )
    },
    **{
        name: "torchmetrics_av.backbones.synchformer"
        for name in ("nearest_frame_indices", "short_side_resize_crop", "ResizeStyle")
    },
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    warnings.warn(
        f"`torchmetrics_av.preprocessing.{name}` moved to `{module}.{name}`; import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), name)
