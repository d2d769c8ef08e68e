"""Regenerate the demo clips bundled in ``torchmetrics_av/demo_data/`` (what ``torchmetrics-av demo`` scores).

Six 8.4 s clips, each a generated video (``gen/<name>.mp4``: 96x96 H.264 at 25 fps with a 16 kHz mono AAC track) and a
reference recording (``ref/<name>.flac``: the clean 16 kHz audio it imitates), plus ``prompts.csv`` (``name,caption``,
av-benchmark's layout) and ``transcripts.json`` (``{name: {"text", "language"}}``) for the two speech clips:

==================  ==========================================================================================
name                content
==================  ==========================================================================================
``speech_fox``      espeak-ng speech; a mouth opening with the speech envelope; generated = speech + hiss
``speech_weather``  the same for a second sentence
``metronome``       clicks every 0.5 s, a square flashing on each click (in sync)
``metronome_late``  clicks every 0.6 s, the audio 0.4 s behind the flashes (what DeSync should flag)
``siren``           a tone gliding 400-1000 Hz, a bar tracking the pitch; generated = detuned, with harmonics
``rain``            low-passed noise with drops, a dot falling per drop; generated = another draw of the noise
==================  ==========================================================================================

Speech comes from ``espeak-ng`` (``apt-get install espeak-ng``) when it is installed; otherwise (or with ``--speech
committed``) from the committed ``examples/demo_sources/<name>.flac``, the espeak-ng output of the last regeneration.
Both paths continue from the same 16 kHz int16 samples, and everything else is drawn from one seeded NumPy generator,
so a rerun on the same machine rewrites identical files. The committed data is what the demo uses; this script only
regenerates it (keep the total under ~3 MB: ``du -sh torchmetrics_av/demo_data``).

Usage::

    python examples/make_demo_data.py                  # rewrite torchmetrics_av/demo_data/
    python examples/make_demo_data.py --out /tmp/demo --speech committed
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import scipy.signal
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "torchmetrics_av" / "demo_data"
SPEECH_SOURCES = ROOT / "examples" / "demo_sources"

SEED = 0  # one generator for every random draw, consumed in clip order
SAMPLE_RATE = 16000  # the rate Synchformer, Whisper, ImageBind and CLAP-fastvideo resample to anyway
FPS = 25  # Synchformer's frame rate: DeSync then needs no frame-rate conversion
SIZE = 96  # frame side in pixels: small files; every video backbone resizes to 224 anyway
# 8 s is av-benchmark's --audio_length for DeSync / ImageBind / FD; 0.4 s more keeps the AAC track (which the decoder
# delivers with its priming samples) and the last frames clear of that window.
DURATION_S = 8.4
NUM_FRAMES = round(DURATION_S * FPS)
NUM_SAMPLES = round(DURATION_S * SAMPLE_RATE)
AAC_BIT_RATE = 32000  # bit/s for 16 kHz mono: transparent enough for these sounds, ~34 kB per clip
AAC_FRAME = 1024  # samples per AAC frame (what the encoder consumes per call)
X264_OPTIONS = {"crf": "30", "preset": "medium", "threads": "1"}  # one thread: x264 output is then deterministic
ESPEAK_VOICE, ESPEAK_WPM = "en-us", 150  # ~6 s per sentence below, inside the 8.4 s clip
SPEECH_START_S = 0.5  # speech starts after half a second of silence
HISS_SNR_DB = 25.0  # "generated" speech/clicks: the clean signal plus white noise at this SNR
CLICK_HZ, CLICK_S = 1000.0, 0.03  # metronome click: a decaying 1 kHz burst of 30 ms
FLASH_FRAMES = 2  # frames a metronome flash stays lit (80 ms)
LATE_SHIFT_S = 0.4  # audio lag of `metronome_late`: two of Synchformer's 0.2 s offset classes
SIREN_LOW_HZ, SIREN_HIGH_HZ, SIREN_PERIOD_S = 400.0, 1000.0, 2.8  # glide range and one up-down period
SIREN_DETUNE = 1.03  # "generated" siren: 3 % sharp, with a 2nd and 3rd harmonic
RAIN_DROPS_PER_S = 6.0  # Poisson rate of audible drops
RAIN_CUTOFF_HZ = 3000.0  # one-pole low-pass of the rain noise
LEVEL = 0.3  # peak level of every clean signal

SENTENCES = {
    "speech_fox": "the quick brown fox jumps over the lazy dog while the children watch from the garden gate",
    "speech_weather": (
        "tomorrow will be cloudy in the morning with light rain in the afternoon and a cool breeze at night"
    ),
}
CAPTIONS = {
    "speech_fox": "a man speaks calmly",
    "speech_weather": "a person reads a weather forecast",
    "metronome": "a metronome ticking steadily",
    "metronome_late": "a wooden metronome clicks",
    "siren": "a siren wailing",
    "rain": "rain falling on a roof",
}


@dataclass
class Clip:
    """One demo clip: generated audio ``(T,)`` and frames ``(F, H, W, 3)`` uint8, and the reference audio ``(T,)``."""

    name: str
    gen_audio: np.ndarray
    frames: np.ndarray
    ref_audio: np.ndarray


# ---------------------------------------------------------------------------------------------------------------------
# Signals


def _t() -> np.ndarray:
    return np.arange(NUM_SAMPLES) / SAMPLE_RATE


def _peak(x: np.ndarray, level: float = LEVEL) -> np.ndarray:
    return x * (level / max(float(np.abs(x).max()), 1e-12))


def _hiss(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(clean.shape)
    gain = np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (HISS_SNR_DB / 10))
    return clean + gain * noise


def _one_pole_lowpass(x: np.ndarray, cutoff_hz: float) -> np.ndarray:
    a = np.exp(-2 * np.pi * cutoff_hz / SAMPLE_RATE)
    return scipy.signal.lfilter([1 - a], [1, -a], x)


def _frame_envelope(audio: np.ndarray) -> np.ndarray:
    """RMS of each video frame's span of audio, scaled to [0, 1]."""
    hop = SAMPLE_RATE // FPS
    rms = np.sqrt(np.mean(audio[: NUM_FRAMES * hop].reshape(NUM_FRAMES, hop) ** 2, axis=1))
    return rms / max(float(rms.max()), 1e-12)


def _blank(shade: int = 20) -> np.ndarray:
    return np.full((NUM_FRAMES, SIZE, SIZE, 3), shade, dtype=np.uint8)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:SIZE, 0:SIZE]


def _clicks(times_s: np.ndarray) -> np.ndarray:
    out = np.zeros(NUM_SAMPLES)
    n = int(CLICK_S * SAMPLE_RATE)
    burst = np.sin(2 * np.pi * CLICK_HZ * np.arange(n) / SAMPLE_RATE) * np.exp(-np.arange(n) / (n / 5))
    for t in times_s:
        start = int(round(t * SAMPLE_RATE))
        end = min(start + n, NUM_SAMPLES)
        if start < NUM_SAMPLES:
            out[start:end] += burst[: end - start]
    return _peak(out)


def _flashes(times_s: np.ndarray) -> np.ndarray:
    frames = _blank()
    y, x = _grid()
    square = (abs(y - SIZE // 2) < SIZE // 4) & (abs(x - SIZE // 2) < SIZE // 4)
    for t in times_s:
        first = int(round(t * FPS))
        frames[first : first + FLASH_FRAMES][:, square] = 235
    return frames


# ---------------------------------------------------------------------------------------------------------------------
# Clips


def speech_clip(name: str, speech: np.ndarray, rng: np.random.Generator) -> Clip:
    """Speech (16 kHz float) placed at 0.5 s; a face whose mouth opens with the speech envelope."""
    clean = np.zeros(NUM_SAMPLES)
    start = int(SPEECH_START_S * SAMPLE_RATE)
    clean[start : start + len(speech)] = speech[: NUM_SAMPLES - start]
    clean = _peak(clean)
    envelope = _frame_envelope(clean)
    frames = _blank(40)
    y, x = _grid()
    face = (y - SIZE / 2) ** 2 + (x - SIZE / 2) ** 2 < (0.4 * SIZE) ** 2
    frames[:, face] = (200, 160, 120)
    for i, opening in enumerate(envelope):
        mouth = ((y - 0.65 * SIZE) / (1 + 0.12 * SIZE * opening)) ** 2 + ((x - SIZE / 2) / (0.15 * SIZE)) ** 2 < 1
        frames[i][mouth] = (90, 20, 30)
    return Clip(name, _hiss(clean, rng), frames, clean)


def metronome_clip(name: str, period_s: float, lag_s: float, rng: np.random.Generator) -> Clip:
    """Clicks every ``period_s`` and a flash per click; the generated audio lags the flashes by ``lag_s``."""
    times = np.arange(0.2, DURATION_S - 0.1, period_s)
    ref = _clicks(times)
    return Clip(name, _hiss(_clicks(times + lag_s), rng), _flashes(times), ref)


def siren_clip(name: str, rng: np.random.Generator) -> Clip:
    """A sine gliding between 400 and 1000 Hz; a bar whose height tracks the pitch."""
    t = _t()
    glide = 0.5 - 0.5 * np.cos(2 * np.pi * t / SIREN_PERIOD_S)
    freq = SIREN_LOW_HZ + (SIREN_HIGH_HZ - SIREN_LOW_HZ) * glide
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    ref = _peak(np.sin(phase))
    gen = _peak(np.sin(SIREN_DETUNE * phase) + 0.3 * np.sin(2 * SIREN_DETUNE * phase) + 0.1 * np.sin(3 * phase))
    frames = _blank()
    hop = SAMPLE_RATE // FPS
    y, x = _grid()
    for i in range(NUM_FRAMES):
        top = int(SIZE * (0.9 - 0.8 * glide[i * hop]))
        frames[i][(y >= top) & (abs(x - SIZE // 2) < SIZE // 8)] = (220, 40, 40)
    return Clip(name, _hiss(gen, rng), frames, ref)


def _rain_audio(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    drops = np.sort(rng.uniform(0, DURATION_S - 0.1, rng.poisson(RAIN_DROPS_PER_S * DURATION_S)))
    bed = _one_pole_lowpass(rng.standard_normal(NUM_SAMPLES), RAIN_CUTOFF_HZ)
    audio = bed / np.abs(bed).max() + 0.8 * _clicks(drops) / LEVEL
    return _peak(audio), drops


def rain_clip(name: str, rng: np.random.Generator) -> Clip:
    """Low-passed noise with drops; the generated clip is another draw, with a dot falling to the floor per drop."""
    ref, _ = _rain_audio(rng)
    gen, drops = _rain_audio(rng)
    frames = _blank(30)
    y, x = _grid()
    fall_frames = 10  # a dot falls for 0.4 s and lands on its drop's sound
    for t in drops:
        col = int(rng.integers(8, SIZE - 8))
        land = int(round(t * FPS))
        for k in range(fall_frames + 1):
            i = land - fall_frames + k
            if 0 <= i < NUM_FRAMES:
                row = int((SIZE - 6) * k / fall_frames)
                frames[i][(abs(y - row) < 3) & (abs(x - col) < 2)] = (90, 140, 255)
    return Clip(name, gen, frames, ref)


# ---------------------------------------------------------------------------------------------------------------------
# Speech and files


def espeak_speech(text: str) -> np.ndarray:
    """``espeak-ng`` output for ``text`` at 16 kHz, int16 (so that the committed fallback holds the same samples)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", ESPEAK_VOICE, "-s", str(ESPEAK_WPM), "-w", str(wav), text], check=True)
        audio, rate = sf.read(wav, dtype="float64")
    audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="VHQ")
    return np.round(np.clip(audio, -1, 32767 / 32768) * 32768).astype(np.int16)


def load_speech(name: str, mode: str) -> tuple[np.ndarray, str]:
    """The speech samples of ``name`` (int16, 16 kHz) and where they came from.

    ``mode``: ``"espeak"`` (synthesise, and refresh the committed fallback), ``"committed"``, or ``"auto"`` (espeak-ng
    when installed, else the committed file).
    """
    source = SPEECH_SOURCES / f"{name}.flac"
    if mode == "espeak" or (mode == "auto" and shutil.which("espeak-ng")):
        speech = espeak_speech(SENTENCES[name])
        SPEECH_SOURCES.mkdir(parents=True, exist_ok=True)
        sf.write(source, speech, SAMPLE_RATE, subtype="PCM_16")
        return speech, "espeak-ng"
    if not source.is_file():
        raise SystemExit(f"{source} is missing and espeak-ng is not installed (apt-get install espeak-ng)")
    speech, rate = sf.read(source, dtype="int16")
    if rate != SAMPLE_RATE:
        raise SystemExit(f"{source}: expected {SAMPLE_RATE} Hz, found {rate} Hz")
    return speech, f"committed {source.relative_to(ROOT)}"


def write_video(path: Path, frames: np.ndarray, audio: np.ndarray) -> None:
    """H.264 video + AAC mono audio in an MP4, encoded with PyAV."""
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as out:
        video = out.add_stream("libx264", rate=FPS, options=X264_OPTIONS)
        video.width, video.height, video.pix_fmt = SIZE, SIZE, "yuv420p"
        sound = out.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout, sound.bit_rate = "mono", AAC_BIT_RATE
        # PyAV's default threading (auto thread count, frame threads) can reorder encoder work between runs.
        for stream in (video, sound):
            stream.codec_context.thread_count = 1
        for image in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, "rgb24")))
        out.mux(video.encode())
        wave = audio.astype(np.float32)
        for start in range(0, len(wave), AAC_FRAME):
            chunk = av.AudioFrame.from_ndarray(wave[None, start : start + AAC_FRAME], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
            out.mux(sound.encode(chunk))
        out.mux(sound.encode())


def build_clips(speech_mode: str) -> tuple[list[Clip], dict[str, str]]:
    """Every clip, in a fixed order (the seeded generator is consumed in this order), and the speech sources used."""
    rng = np.random.default_rng(SEED)
    sources: dict[str, str] = {}
    makers: list[Callable[[], Clip]] = []
    for name in SENTENCES:
        speech, sources[name] = load_speech(name, speech_mode)
        makers.append(lambda n=name, s=speech: speech_clip(n, s.astype(np.float64) / 32768, rng))
    makers += [
        lambda: metronome_clip("metronome", 0.5, 0.0, rng),
        lambda: metronome_clip("metronome_late", 0.6, LATE_SHIFT_S, rng),
        lambda: siren_clip("siren", rng),
        lambda: rain_clip("rain", rng),
    ]
    return [make() for make in makers], sources


def write_demo_data(out: Path, speech_mode: str = "auto") -> dict[str, str]:
    """Write ``gen/``, ``ref/``, ``prompts.csv`` and ``transcripts.json`` into ``out``; return the speech sources."""
    clips, sources = build_clips(speech_mode)
    for sub in ("gen", "ref"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
        (out / sub).mkdir(parents=True)
    for clip in clips:
        write_video(out / "gen" / f"{clip.name}.mp4", clip.frames, np.clip(clip.gen_audio, -1, 1))
        sf.write(out / "ref" / f"{clip.name}.flac", clip.ref_audio, SAMPLE_RATE, subtype="PCM_16")
    with open(out / "prompts.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["name", "caption"])
        writer.writerows([f"{clip.name}.mp4", CAPTIONS[clip.name]] for clip in clips)
    transcripts = {name: {"text": text, "language": "en"} for name, text in SENTENCES.items()}
    (out / "transcripts.json").write_text(json.dumps(transcripts, indent=2) + "\n", encoding="utf-8")
    return sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"target folder (default {DEFAULT_OUT})")
    parser.add_argument("--speech", choices=("auto", "espeak", "committed"), default="auto", help="speech source")
    args = parser.parse_args(argv)
    sources = write_demo_data(args.out, args.speech)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    for name, source in sources.items():
        print(f"{name}: speech from {source}")
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
