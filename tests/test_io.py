"""torchmetrics_av.io: soundfile audio reader and PyAV video(+audio) reader, on files written by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from torchmetrics_av.io import DecodedVideo, read_audio, read_video

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
