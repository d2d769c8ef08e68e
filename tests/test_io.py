"""torchmetrics_av.io: soundfile audio reader and PyAV video(+audio) reader, on files written by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from torchmetrics_av.io import DecodedVideo, TruncatedFileError, check_declared_length, read_audio, read_video

av = pytest.importorskip("av")

FPS = 24
SAMPLE_RATE = 44100
SECONDS = 2.5


def _frames(n: int = int(SECONDS * FPS), h: int = 36, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _pcm(channels: int = 2, seconds: float = SECONDS, sr: int = SAMPLE_RATE, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(-20000, 20000, size=(channels, int(seconds * sr)), dtype=np.int16)


def _write(path: Path, frames: np.ndarray, pcm: np.ndarray | None, fps: int = FPS, sr: int = SAMPLE_RATE,
           acodec: str = "pcm_s16le") -> Path:  # fmt: skip
    """Lossless RGB H.264 (libx264rgb, qp 0) video, optionally with an audio track."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264rgb", rate=fps, options={"qp": "0"})
        vs.height, vs.width = frames.shape[1:3]
        vs.pix_fmt = "rgb24"
        layout = {1: "mono", 2: "stereo"}[pcm.shape[0]] if pcm is not None else None
        astream = out.add_stream(acodec, rate=sr, layout=layout) if pcm is not None else None
        for f in frames:
            out.mux(vs.encode(av.VideoFrame.from_ndarray(f, "rgb24")))
        out.mux(vs.encode())
        if astream is not None:
            for i in range(0, pcm.shape[1], 1024):
                chunk = np.ascontiguousarray(pcm[:, i : i + 1024].T).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
                frame.sample_rate, frame.pts = sr, i
                out.mux(astream.encode(frame))
            out.mux(astream.encode())
    return path


def test_read_audio_wav_and_flac(tmp_path):
    pcm = _pcm()
    for ext in ("wav", "flac"):
        path = tmp_path / f"a.{ext}"
        sf.write(path, pcm.T, SAMPLE_RATE, subtype="PCM_16")
        wave, sr = read_audio(path)
        assert sr == SAMPLE_RATE and wave.dtype == torch.float32
        assert torch.equal(wave, torch.from_numpy(pcm).float() / 32768)  # channels first, code / 32768
        head, _ = read_audio(path, max_seconds=1.0)
        assert torch.equal(head, wave[:, :SAMPLE_RATE])


@pytest.mark.parametrize("container", ["mkv", "mov"])
def test_read_video_with_pcm_audio_is_exact(tmp_path, container):
    frames, pcm = _frames(), _pcm()
    v = read_video(_write(tmp_path / f"v.{container}", frames, pcm))
    assert isinstance(v, DecodedVideo)
    assert v.frames.dtype == torch.uint8 and v.frames.shape == (len(frames), 3, 36, 64)
    assert torch.equal(v.frames, torch.from_numpy(frames).permute(0, 3, 1, 2))  # lossless RGB round trip
    assert v.fps == float(FPS)
    assert v.sample_rate == SAMPLE_RATE and v.audio is not None and v.audio.dtype == torch.float32
    assert torch.equal(v.audio, torch.from_numpy(pcm).float() / 32768)


def test_read_video_max_seconds_and_no_audio(tmp_path):
    frames, pcm = _frames(), _pcm(channels=1)
    path = _write(tmp_path / "v.mkv", frames, pcm)
    v = read_video(path, max_seconds=1.0)
    assert v.frames.shape[0] == FPS  # frames with t < 1 s
    assert torch.equal(v.frames, torch.from_numpy(frames[:FPS]).permute(0, 3, 1, 2))
    assert v.audio is not None and v.audio.shape == (1, SAMPLE_RATE)
    silent = read_video(path, audio=False)
    assert silent.audio is None and silent.sample_rate is None and silent.frames.shape[0] == len(frames)
    mute = read_video(_write(tmp_path / "mute.mkv", frames[:5], None))
    assert mute.audio is None and mute.frames.shape[0] == 5


def test_read_video_aac_mp4_decodes(tmp_path):
    frames, pcm = _frames(), _pcm()
    v = read_video(_write(tmp_path / "v.mp4", frames, pcm, acodec="aac"))
    assert torch.equal(v.frames, torch.from_numpy(frames).permute(0, 3, 1, 2))
    # AAC is lossy and adds encoder priming; only the rate, layout and approximate length are fixed.
    assert v.sample_rate == SAMPLE_RATE and v.audio.shape[0] == 2
    assert abs(v.audio.shape[1] - pcm.shape[1]) < 4096


def test_read_video_errors(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, _pcm(1).T, SAMPLE_RATE)
    with pytest.raises(ValueError, match="no video stream"):
        read_video(wav)


# ---------------------------------------------------------------------------------------------------------------------
# Truncated files are errors, never shorter clips (issue 8: a 4 s WAV cut to 3,000 bytes was read as 0.09 s).

TRUNCATED_BYTES = 3000


@pytest.mark.parametrize(
    ("ext", "fmt", "subtype", "frame_bytes", "header_bytes"),
    [
        ("wav", "WAV", "PCM_16", 2, 44),
        ("wav", "WAV", "FLOAT", 4, None),  # libsndfile adds a fact/PEAK chunk: header length read from the file
        ("wav", "RF64", "PCM_24", 3, None),
        ("aiff", "AIFF", "PCM_16", 2, None),
    ],
)
def test_truncated_pcm_file_is_an_error(tmp_path, ext, fmt, subtype, frame_bytes, header_bytes):
    sr, seconds = 16000, 4.0
    path = tmp_path / f"cut.{ext}"
    sf.write(path, np.zeros(int(sr * seconds), np.float32), sr, format=fmt, subtype=subtype)
    full = path.stat().st_size
    header = full - int(sr * seconds) * frame_bytes if header_bytes is None else header_bytes
    assert read_audio(path)[0].shape == (1, int(sr * seconds))  # the complete file reads whole
    with open(path, "r+b") as f:
        f.truncate(TRUNCATED_BYTES)
    # libsndfile alone reads what is left: the silent short read this check exists for.
    assert sf.read(path)[0].shape[0] == (TRUNCATED_BYTES - header) // frame_bytes
    held = (TRUNCATED_BYTES - header) // frame_bytes
    with pytest.raises(TruncatedFileError, match=rf"promises {int(sr * seconds)} frames \(4.000 s\) but holds {held} "):
        read_audio(path)
    # One byte short (half a frame missing) is still truncated.
    sf.write(path, np.zeros(int(sr * seconds), np.float32), sr, format=fmt, subtype=subtype)
    with open(path, "r+b") as f:
        f.truncate(full - 1)
    with pytest.raises(TruncatedFileError):
        read_audio(path)


def test_streaming_wav_without_length_reads_whole(tmp_path):
    """A WAV written to a pipe carries 0xFFFFFFFF as its data size: unknown, not truncated."""
    path = tmp_path / "pipe.wav"
    pcm = _pcm(1, seconds=0.5)
    sf.write(path, pcm.T, SAMPLE_RATE, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    data_at = raw.index(b"data") + 4
    raw[data_at : data_at + 4] = (0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    check_declared_length(path)  # no error


def test_truncated_mp3_and_flac_are_errors(tmp_path):
    x = np.random.default_rng(0).standard_normal(64000).astype(np.float32) * 0.1
    mp3, flac = tmp_path / "a.mp3", tmp_path / "a.flac"
    sf.write(mp3, x, 16000, format="MP3")  # libsndfile writes a Xing/Info length tag
    sf.write(flac, x, 16000, subtype="PCM_16")
    assert read_audio(mp3)[0].shape == (1, 64000)
    for path in (mp3, flac):
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.truncate(size // 2)
    with pytest.raises(TruncatedFileError, match="reports 64000 frames"):
        read_audio(mp3)
    with pytest.raises(sf.LibsndfileError):  # libsndfile's FLAC decoder refuses a cut stream itself
        read_audio(flac)


def _noise_video(path: Path, seconds: float = 4.0, fps: int = 25, sr: int = 16000, **options: str) -> Path:
    from fractions import Fraction

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=options) as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        aus = out.add_stream("aac", rate=sr)
        aus.layout = "mono"
        for _ in range(int(seconds * fps)):
            out.mux(vs.encode(av.VideoFrame.from_ndarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "rgb24")))
        out.mux(vs.encode())
        wave = (rng.standard_normal(int(seconds * sr)) * 0.1).astype(np.float32)
        for start in range(0, wave.size, 1024):
            chunk = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = sr, start, Fraction(1, sr)
            out.mux(aus.encode(chunk))
        out.mux(aus.encode())
    return path


@pytest.mark.parametrize(("name", "options", "message"), [
    ("fast.mp4", {"movflags": "faststart"}, "video stream should last until 4.000 s"),  # index first: frames lost
    ("clip.mkv", {}, "the container should last"),  # Matroska declares only the container's duration
])  # fmt: skip
def test_truncated_video_is_an_error(tmp_path, name, options, message):
    path = _noise_video(tmp_path / name, **options)
    whole = read_video(path)
    assert whole.frames.shape[0] == 100 and whole.audio is not None
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(TruncatedFileError, match=message):
        read_video(path)


def test_video_with_shorter_audio_is_not_truncated(tmp_path):
    """Streams of different lengths are each checked against their own declared duration."""
    frames, pcm = _frames(), _pcm(seconds=1.0)
    for ext in ("mkv", "mp4"):
        v = read_video(_write(tmp_path / f"v.{ext}", frames, pcm, acodec="aac"))
        assert v.frames.shape[0] == len(frames) and abs(v.audio.shape[1] - SAMPLE_RATE) < 4096
