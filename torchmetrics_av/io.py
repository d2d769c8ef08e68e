"""File decoding for the CLI and the examples: audio with soundfile, video (with its audio track) with PyAV.

The metrics themselves take tensors; these readers only turn files into the tensors they expect:

* :func:`read_audio`: float32 ``(C, T)`` in [-1, 1] (PCM scaled as ``code / 2^(bits-1)``, as ``torchaudio.load`` and
  ``soundfile`` do; no downmix, no resampling) and the sample rate.
* :func:`read_video`: uint8 ``(F, 3, H, W)`` RGB frames, the average frame rate, and the first audio stream as float32
  ``(C, T)`` with its sample rate (``None`` where the file has no audio).

A truncated file is an error (:class:`TruncatedFileError`), never a shorter clip: decoders read what is there and
stop, so a 4 s WAV cut to 3,000 bytes would otherwise be scored as a 0.09 s clip. Checked: WAV/RF64/AIFF data chunks
against the header's length, FLAC/MP3 (with a Xing/Info/VBRI header) and every other libsndfile format against the
frame count it reports, videos against the container's stream durations. Ogg has no declared length, so an Ogg file
cut at a page boundary cannot be told from a shorter one.

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
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

# RIFF data-chunk size that streaming writers (ffmpeg to a pipe, RF64 before its ds64 chunk) leave when they cannot
# seek back: "unknown", not 4 GiB.
RIFF_UNKNOWN_SIZE = 0xFFFFFFFF
# WAVE format tags whose block align is one frame (PCM, IEEE float, WAVE_FORMAT_EXTENSIBLE); other tags (ADPCM...)
# pack several frames per block, so only bytes are compared for them.
WAV_FRAME_TAGS = (0x0001, 0x0003, 0xFFFE)
# AIFC compression types that store plain frames (AIFF has none; "sowt" is little-endian PCM).
AIFC_PLAIN = (b"NONE", b"sowt", b"twos", b"raw ", b"fl32", b"FL32", b"fl64", b"FL64", b"in24", b"in32")
# MP3 frame counts come from the Xing/Info/VBRI tag, which encoders write without the decoder's delay/padding: allow
# two MPEG-1 Layer III frames (1152 samples each). Without such a tag libsndfile only estimates the length from the
# file size, so nothing is compared.
MP3_FRAME_SAMPLES = 1152
MP3_LENGTH_SLACK = 2 * MP3_FRAME_SAMPLES
MP3_LENGTH_TAGS = (b"Xing", b"Info", b"VBRI")
MP3_TAG_SEARCH_BYTES = 4096  # the tag sits in the first MPEG frame, after an optional ID3v2 header
# A video is truncated when its decoded streams end this much before the container says: longer than any rounding of
# a stream's end seen in FFmpeg's muxers (the last frame's duration, AAC padding: < 70 ms), shorter than a lost GOP.
VIDEO_TRUNCATION_SLACK_S = 0.1
# FFmpeg's AV_TIME_BASE: container durations are in microseconds.
AV_TIME_BASE = 1_000_000


class TruncatedFileError(ValueError):
    """A media file holds fewer samples or frames than its header promises (cut short or corrupt)."""


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

    Raises:
        TruncatedFileError: the header promises more audio than the file holds (see the module docstring).
        soundfile.LibsndfileError: the file cannot be decoded.

    Example:
        >>> import tempfile, numpy as np, soundfile as sf
        >>> path = tempfile.mkdtemp() + "/x.flac"
        >>> sf.write(path, np.full(800, 0.5), 8000)
        >>> wave, sr = read_audio(path)
        >>> tuple(wave.shape), sr, float(wave[0, 0])
        ((1, 800), 8000, 0.5)
    """
    import soundfile as sf

    check_declared_length(path)
    info = sf.info(str(path))
    frames = -1 if max_seconds is None else int(round(max_seconds * info.samplerate))
    data, sr = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    promised = info.frames if frames < 0 else min(frames, info.frames)
    slack = _reported_length_slack(path, info.format)
    if slack is not None and 0 < promised and data.shape[0] + slack < promised:
        raise TruncatedFileError(
            f"{path} is truncated or corrupt: it reports {promised} frames ({promised / sr:.3f} s at {sr} Hz) but "
            f"only {data.shape[0]} ({data.shape[0] / sr:.3f} s) decode"
        )
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def _reported_length_slack(path: str | os.PathLike, fmt: str) -> int | None:
    """How many frames a complete file may decode short of libsndfile's count; ``None``: the count is a guess."""
    if fmt != "MP3":
        return 0
    with open(path, "rb") as f:
        head = f.read(MP3_TAG_SEARCH_BYTES)
    if head[:3] == b"ID3" and len(head) >= 10:  # skip an ID3v2 tag (syncsafe 28-bit size)
        size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
        with open(path, "rb") as f:
            f.seek(10 + size)
            head = f.read(MP3_TAG_SEARCH_BYTES)
    return MP3_LENGTH_SLACK if any(tag in head for tag in MP3_LENGTH_TAGS) else None


def check_declared_length(path: str | os.PathLike) -> None:
    """Raise :class:`TruncatedFileError` when a WAV / RF64 / AIFF data chunk is longer than the file.

    libsndfile shortens such a file silently to the bytes present; other formats pass (``read_audio`` compares them
    with the frame count libsndfile reports instead).

    Example:
        >>> import tempfile, numpy as np, soundfile as sf
        >>> path = tempfile.mkdtemp() + "/cut.wav"
        >>> sf.write(path, np.zeros(16000), 16000, subtype="PCM_16")
        >>> _ = open(path, "r+b").truncate(3000)
        >>> check_declared_length(path)
        Traceback (most recent call last):
        ...
        torchmetrics_av.io.TruncatedFileError: ... promises 16000 frames (1.000 s) but holds 1478 (0.092 s)
    """
    found = _data_chunk(Path(path))
    if found is None:
        return
    declared, present, frame_bytes, rate = found
    if declared <= present:
        return
    if frame_bytes:
        n, m = declared // frame_bytes, present // frame_bytes
        what = (
            f"{n} frames ({n / rate:.3f} s) but holds {m} ({m / rate:.3f} s)" if rate else f"{n} frames but holds {m}"
        )
    else:
        what = f"{declared} bytes of samples but holds {present}"
    raise TruncatedFileError(f"{path} is truncated or corrupt: its header promises {what}")


def _data_chunk(path: Path) -> tuple[int, int, int | None, int | None] | None:
    """``(declared data bytes, bytes present, bytes per frame, rate)`` of a WAV/RF64/AIFF file, else ``None``."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12:
            return None
        magic, form = head[:4], head[8:12]
        if magic in (b"RIFF", b"RIFX", b"RF64") and form == b"WAVE":
            return _wav_data(f, size, ">" if magic == b"RIFX" else "<")
        if magic == b"FORM" and form in (b"AIFF", b"AIFC"):
            return _aiff_data(f, size, form == b"AIFC")
    return None


def _chunks(f: BinaryIO, size: int, endian: str) -> Iterator[tuple[bytes, int, int]]:
    """Yield ``(id, declared size, data offset)`` of the chunks after a 12-byte RIFF/FORM header (file at offset)."""
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        cid, csize = struct.unpack(f"{endian}4sI", f.read(8))
        yield cid, csize, pos + 8
        pos += 8 + csize + (csize & 1)  # chunks are padded to an even length


def _wav_data(f: BinaryIO, size: int, endian: str) -> tuple[int, int, int | None, int | None] | None:
    frame_bytes = rate = None
    ds64_data: int | None = None
    for cid, csize, offset in _chunks(f, size, endian):
        if cid == b"ds64" and csize >= 16:
            ds64_data = struct.unpack("<8xQ", f.read(16))[0]
        elif cid == b"fmt " and csize >= 14:
            tag, _, rate, _, align = struct.unpack(f"{endian}HHIIH", f.read(14))
            frame_bytes = align if tag in WAV_FRAME_TAGS else None
        elif cid == b"data":
            if csize == RIFF_UNKNOWN_SIZE:
                if ds64_data is None:
                    return None
                csize = ds64_data
            return csize, size - offset, frame_bytes, rate
    return None


def _aiff_data(f: BinaryIO, size: int, aifc: bool) -> tuple[int, int, int | None, int | None] | None:
    frames = frame_bytes = rate = None
    ssnd: tuple[int, int] | None = None
    for cid, csize, offset in _chunks(f, size, ">"):
        if cid == b"COMM" and csize >= 18:
            comm = f.read(min(csize, 22))
            channels, frames, bits = struct.unpack(">hIh", comm[:8])
            exponent, mantissa = struct.unpack(">HQ", comm[8:18])  # 80-bit IEEE extended sample rate
            rate = round(mantissa * 2.0 ** ((exponent & 0x7FFF) - 16383 - 63)) if mantissa else None
            plain = not aifc or (len(comm) >= 22 and comm[18:22] in AIFC_PLAIN)
            frame_bytes = channels * -(-bits // 8) if plain else None
        elif cid == b"SSND" and csize >= 8:
            data_offset = struct.unpack(">I", f.read(4))[0]
            start = offset + 8 + data_offset
            ssnd = (csize - 8 - data_offset, max(0, size - start))
    if ssnd is None or frames is None or not frame_bytes:
        return None
    # COMM's frame count is the promise (SSND's declared size may include alignment padding).
    return frames * frame_bytes, ssnd[1], frame_bytes, rate


def _fps(stream: object) -> float:
    rate = getattr(stream, "average_rate", None) or getattr(stream, "guessed_rate", None)
    if not rate:
        raise ValueError("the video stream has no frame rate; pass `video_fps=` to the metric yourself")
    return float(Fraction(rate))


def _declared_end(stream: object) -> float | None:
    """End time in seconds the container declares for ``stream`` (``None`` where it declares none, e.g. Matroska)."""
    duration, base = getattr(stream, "duration", None), getattr(stream, "time_base", None)
    if not duration or not base:
        return None
    return float((getattr(stream, "start_time", None) or 0) + duration) * float(base)


def _check_complete(
    path: str | os.PathLike, container: object, streams: list, ends: dict[int, float], limit: float | None
) -> None:
    """Raise :class:`TruncatedFileError` when a stream ends :data:`VIDEO_TRUNCATION_SLACK_S` before its declared end.

    Streams with a declared duration (MP4/MOV) are checked one by one; otherwise the longest decoded stream is compared
    with the container's duration (Matroska/WebM declare only that).
    """
    cap = float("inf") if limit is None else limit
    checked = False
    for stream in streams:
        declared, end = _declared_end(stream), ends.get(stream.index)
        if declared is None or end is None:
            continue
        checked = True
        if min(declared, cap) - end > VIDEO_TRUNCATION_SLACK_S:
            raise TruncatedFileError(
                f"{path} is truncated or corrupt: its {stream.type} stream should last until {declared:.3f} s but "
                f"decodes only until {end:.3f} s"
            )
    total = getattr(container, "duration", None)
    if checked or not total or not ends:
        return
    declared = (total + (getattr(container, "start_time", None) or 0)) / AV_TIME_BASE
    end = max(ends.values())
    if min(declared, cap) - end > VIDEO_TRUNCATION_SLACK_S:
        raise TruncatedFileError(
            f"{path} is truncated or corrupt: the container should last {declared:.3f} s but its streams decode only "
            f"until {end:.3f} s"
        )


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
        TruncatedFileError: a stream ends before the container says it should (see the module docstring).

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
        ends: dict[int, float] = {}  # stream index -> end time (s) of its last decoded frame

        def keep(frame: object) -> bool:
            t = getattr(frame, "time", None)
            return max_seconds is None or t is None or t < max_seconds

        for packet in container.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    if frame.time is not None:
                        ends[vstream.index] = max(ends.get(vstream.index, 0.0), frame.time + 1 / fps)
                    if keep(frame):
                        frames.append(frame.to_ndarray(format="rgb24"))
                elif resampler is not None:
                    if frame.time is not None and frame.sample_rate:
                        end = frame.time + frame.samples / frame.sample_rate
                        ends[astream.index] = max(ends.get(astream.index, 0.0), end)  # type: ignore[union-attr]
                    chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
        if resampler is not None:
            chunks.extend(f.to_ndarray() for f in resampler.resample(None))
        _check_complete(path, container, streams, ends, max_seconds)
    if not frames:
        raise ValueError(f"no video frame could be decoded from {path}")
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    wave = None
    if chunks:
        wave = torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32, copy=False))
        if max_seconds is not None and sample_rate:
            wave = wave[:, : int(round(max_seconds * sample_rate))]
    return DecodedVideo(frames=video, fps=fps, audio=wave, sample_rate=int(sample_rate) if wave is not None else None)
