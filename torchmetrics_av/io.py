"""File decoding for the CLI and the examples: audio with soundfile, video (with its audio track) with PyAV.

The metrics themselves take tensors; these readers only turn files into the tensors they expect:

* :func:`read_audio`: float32 ``(C, T)`` in [-1, 1] (PCM scaled as ``code / 2^(bits-1)``, as ``torchaudio.load`` and
  ``soundfile`` do; no downmix, no resampling) and the sample rate.
* :func:`read_video`: uint8 ``(F, 3, H, W)`` RGB frames, the average frame rate, and the first audio stream as float32
  ``(C, T)`` with its sample rate (``None`` where the file has no audio).

PyAV (``pip install av``, FFmpeg bundled) and soundfile are imported on first use.

Example:
    >>> import tempfile, numpy as np, soundfile as sf
    >>> from torchmetrics_av.io import read_audio
    >>> path = tempfile.mkdtemp() + "/tone.wav"
    >>> sf.write(path, np.zeros((16000, 2), dtype=np.int16), 16000)
    >>> wave, sr = read_audio(path)
    >>> tuple(wave.shape), sr
    ((2, 16000), 16000)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class DecodedVideo:
    """A decoded video file.

    Attributes:
        frames: uint8 ``(F, 3, H, W)`` RGB frames in decoding (presentation) order.
        fps: average frame rate of the video stream (frames per second); the metrics assume a constant rate.
        audio: float32 ``(C, T)`` samples of the first audio stream in [-1, 1], or ``None`` if there is none.
        sample_rate: the audio rate in Hz, or ``None``.
    """

    frames: Tensor
    fps: float
    audio: Tensor | None
    sample_rate: int | None


def read_audio(path: str | os.PathLike, max_seconds: float | None = None) -> tuple[Tensor, int]:
    """Read an audio file (WAV, FLAC, OGG, MP3, ... via libsndfile) as float32 ``(C, T)`` and its sample rate.

    Args:
        path: the file.
        max_seconds: read at most this many seconds from the start (``None``: all).

    Returns:
        ``(wave (C, T) float32, sample_rate)``; channels are kept (no downmix) and nothing is resampled.

    Example:
        >>> import tempfile, numpy as np, soundfile as sf
        >>> path = tempfile.mkdtemp() + "/x.flac"
        >>> sf.write(path, np.full(800, 0.5), 8000)
        >>> wave, sr = read_audio(path)
        >>> tuple(wave.shape), sr, float(wave[0, 0])
        ((1, 800), 8000, 0.5)
    """
    import soundfile as sf

    info = sf.info(str(path))
    frames = -1 if max_seconds is None else int(round(max_seconds * info.samplerate))
    data, sr = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def _fps(stream: object) -> float:
    rate = getattr(stream, "average_rate", None) or getattr(stream, "guessed_rate", None)
    if not rate:
        raise ValueError("the video stream has no frame rate; pass `video_fps=` to the metric yourself")
    return float(Fraction(rate))


def read_video(path: str | os.PathLike, *, audio: bool = True, max_seconds: float | None = None) -> DecodedVideo:
    """Decode a video file and its first audio stream with PyAV.

    Frames are converted to RGB24 by FFmpeg (swscale) and returned channel-first. The audio is converted to planar
    float32 by swresample at its own rate and layout (int16 PCM becomes ``code / 32768``); encoder priming samples
    (AAC) are kept as the decoder delivers them.

    Args:
        path: the file.
        audio: also decode the first audio stream.
        max_seconds: keep only frames and samples before this time (``None``: everything).

    Returns:
        :class:`DecodedVideo` with ``frames`` uint8 ``(F, 3, H, W)``, ``fps``, ``audio`` float32 ``(C, T)`` or
        ``None``, ``sample_rate``.

    Raises:
        ValueError: the file has no video stream or no frame could be decoded.

    Example:
        >>> import tempfile, numpy as np, av
        >>> path = tempfile.mkdtemp() + "/clip.mkv"
        >>> with av.open(path, "w") as out:
        ...     s = out.add_stream("libx264rgb", rate=10, options={"qp": "0"})
        ...     s.width, s.height, s.pix_fmt = 32, 16, "rgb24"
        ...     for i in range(5):
        ...         out.mux(s.encode(av.VideoFrame.from_ndarray(np.full((16, 32, 3), 40 * i, np.uint8), "rgb24")))
        ...     out.mux(s.encode())
        >>> v = read_video(path)
        >>> tuple(v.frames.shape), v.fps, v.audio is None
        ((5, 3, 16, 32), 10.0, True)
    """
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        vstream = container.streams.video[0]
        vstream.thread_type = "AUTO"
        fps = _fps(vstream)
        astream = container.streams.audio[0] if (audio and container.streams.audio) else None
        streams = [vstream] + ([astream] if astream is not None else [])
        resampler = av.AudioResampler(format="fltp") if astream is not None else None
        frames: list[np.ndarray] = []
        chunks: list[np.ndarray] = []
        sample_rate = astream.rate if astream is not None else None

        def keep(frame: object) -> bool:
            t = getattr(frame, "time", None)
            return max_seconds is None or t is None or t < max_seconds

        for packet in container.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    if keep(frame):
                        frames.append(frame.to_ndarray(format="rgb24"))
                elif resampler is not None:
                    chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
        if resampler is not None:
            chunks.extend(f.to_ndarray() for f in resampler.resample(None))
    if not frames:
        raise ValueError(f"no video frame could be decoded from {path}")
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    wave = None
    if chunks:
        wave = torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32, copy=False))
        if max_seconds is not None and sample_rate:
            wave = wave[:, : int(round(max_seconds * sample_rate))]
    return DecodedVideo(frames=video, fps=fps, audio=wave, sample_rate=int(sample_rate) if wave is not None else None)
