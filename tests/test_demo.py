"""``torchmetrics-av demo``: offline it runs every metric on the bundled clips, prints the banner once, writes the
JSON, CSV and HTML report; the bundled clips are what their generator makes and what they claim to be."""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

import torchmetrics_av.cli.runner as runner
from tests.conftest import GLIBC_MALLOC
from torchmetrics_av import demo
from torchmetrics_av.cli import main
from torchmetrics_av.cli.outputs import RANDOM_WEIGHTS_BANNER
from torchmetrics_av.io import read_video
from torchmetrics_av.weights import WeightsNotFoundError

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "torchmetrics_av" / "demo_data"
STEMS = ["metronome", "metronome_late", "rain", "siren", "speech_fox", "speech_weather"]
MAX_DATA_BYTES = 3_000_000  # issue 11: keep the bundled data under ~3 MB


def _offline_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, TORCHMETRICS_AV_OFFLINE="1", TORCHMETRICS_AV_CACHE=str(tmp_path / "empty-cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_demo_command_offline_random_weights(tmp_path):
    """The acceptance command, as a user runs it: a fresh process, offline, `--random-weights tiny`."""
    out = tmp_path / "D"
    argv = [sys.executable, "-m", "torchmetrics_av.cli", "demo", "--random-weights", "tiny", "--out", str(out)]
    run = subprocess.run(
        [*argv, "--device", "cpu"], capture_output=True, text=True, env=_offline_env(tmp_path), timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count(RANDOM_WEIGHTS_BANNER) == 1
    assert sorted(p.name for p in out.iterdir()) == ["per_sample.csv", "report.html", "results.json"]

    doc = json.loads((out / "results.json").read_text())
    estimators = [f"{fd}_inf" for fd in ("fd_passt", "fd_vgg", "fd_panns")] + ["kad_passt", "kad_vgg", "kad_panns"]
    registry = [m for m in doc["metrics"] if m not in estimators]
    assert registry == demo.demo_metrics()  # every metric of the registry, in its order
    assert set(estimators) <= set(doc["metrics"])  # --fd-inf: FD∞ and KAD on each FD's rows
    # --bootstrap: a CI (or the reason there is none) for every metric.
    assert all("bootstrap" in doc["details"][m] for m in registry if m not in ("isc_panns", "isc_passt"))
    ci = doc["details"]["kl_passt"]["bootstrap"]
    assert ci["num"] == demo.DEMO_BOOTSTRAP and ci["low"] <= doc["metrics"]["kl_passt"] <= ci["high"]
    avbench_own = ["fd_vgg", "fd_panns", "kl_panns", "isc_panns", "isc_passt", "msclap"]
    assert set(avbench_own) <= set(doc["metrics"]) and "wer" in doc["metrics"]
    # Six clips cannot fill the Inception Scores' 10 splits: listed with null and the reason, the command succeeds.
    assert sorted(doc["not_computed"]) == ["isc_panns", "isc_passt"]
    assert all("`splits=10`" in why for why in doc["not_computed"].values())
    for name in ("isc_panns", "isc_passt"):
        assert f"note: {name} could not be computed on the demo data" in run.stderr
    values = {k: v for k, v in doc["metrics"].items() if k not in doc["not_computed"]}
    assert all(v is not None for v in values.values()), doc["details"]
    assert "HFWhisper" in doc["provenance"]["backbones"]  # WER's default --asr-backend
    assert set(doc["metrics"]["aesthetics"]) == {"CE", "CU", "PC", "PQ"}
    assert doc["provenance"]["random_weights"] == "tiny" and doc["provenance"]["missing_checkpoints"] == []
    # The command keeps freed CPU memory for reuse (torchmetrics_av.allocator; tests/test_allocator.py).
    assert doc["provenance"]["cpu_allocator"] == ("tuned" if GLIBC_MALLOC else "unsupported")
    files = doc["files"]
    assert files["n_gen"] == files["n_gen_videos"] == files["n_paired"] == 6 and not files["broken"]
    assert files["skipped"] == {} and files["n_scored"]["wer"] == 2
    assert all(files["n_scored"][m] == 6 for m in demo.demo_metrics() if m != "wer")
    assert doc["provenance"]["video_fps"] == [25.0] and doc["provenance"]["sample_rates"] == {
        "gen": [16000],
        "ref": [16000],
    }

    with open(out / "per_sample.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["stem"] for r in rows] == STEMS and [r["file"] for r in rows] == [f"{s}.mp4" for s in STEMS]
    assert all(r["desync_offset_front"] and r["imagebind_cosine"] and r["clap_cosine"] for r in rows)
    assert [bool(r["wer"]) for r in rows] == [s.startswith("speech") for s in STEMS]

    report = (out / "report.html").read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', report)
    assert len(images) >= 3
    for b64 in images:
        Image.open(io.BytesIO(base64.b64decode(b64, validate=True))).load()
    assert all(name in report for name in demo.demo_metrics()) and "RANDOM WEIGHTS" in report
    assert all(f"{s}.mp4" in report for s in STEMS)


# ---------------------------------------------------------------------------------------------------------------------
# Which weights run: the evaluation itself is replaced by a recorder (the run above scores for real).


@pytest.fixture
def recorded(monkeypatch):
    """Record the `evaluate` arguments the demo builds; answer with a document of the real keys."""
    calls = []

    def fake_run_evaluate(args):
        calls.append(args)
        metrics = args.metrics.split(",")
        doc = {
            "metrics": dict.fromkeys(metrics, 0.5),
            "details": {m: {"n_samples": 6} for m in metrics},
            "files": {"n_gen": 6, "broken": [], "skipped": {}},
            "provenance": {"protocol": args.protocol, "random_weights": args.random_weights or False},
            "per_sample": {s: {"file": f"{s}.mp4", "wer": 0.5} for s in STEMS},
        }
        return doc, []

    monkeypatch.setattr(runner, "run_evaluate", fake_run_evaluate)
    return calls


def test_offline_without_checkpoints_falls_back_to_random_weights(recorded, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCHMETRICS_AV_OFFLINE", "1")
    monkeypatch.setenv("TORCHMETRICS_AV_CACHE", str(tmp_path / "empty-cache"))
    assert main(["demo", "--out", str(tmp_path / "D"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert err.count(RANDOM_WEIGHTS_BANNER) == 1 and "Running with --random-weights tiny instead." in err
    expected = ["passt-s-f128-p16-s10-ap.476-swa.pt", "whisper-base/model.safetensors", "imagebind_huge.pth"]
    expected += ["synchformer_state_dict.pth", "clap-htsat-fused/model.safetensors", "audiobox-aesthetics/config.json"]
    assert all(name in err for name in expected)
    [args] = recorded
    assert args.random_weights == "tiny" and args.metrics.split(",") == demo.demo_metrics()
    assert Path(args.gen) == DATA / "gen" and Path(args.ref) == DATA / "ref" and args.prompts.endswith("prompts.csv")
    doc = json.loads((tmp_path / "D" / "results.json").read_text())
    listed = "\n".join(doc["provenance"]["missing_checkpoints"])
    assert all(name in listed for name in expected)
    assert "imagebind_huge.pth" in (tmp_path / "D" / "report.html").read_text()


def test_failed_downloads_fall_back_with_the_reason(recorded, tmp_path, monkeypatch, capsys):
    import torchmetrics_av.downloads as downloads
    from torchmetrics_av.weights import select_checkpoints

    for name in ("TORCHMETRICS_AV_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    asked = []

    def no_network(names, weights_dir=None, **kw):
        asked.extend(names)
        error = "URLError: <urlopen error [Errno -2] Name or service not known>"
        return [downloads.Row(c.name, tmp_path / c.filename, "failed", error=error) for c in select_checkpoints(names)]

    monkeypatch.setattr(downloads, "download", no_network)
    assert main(["demo", "--out", str(tmp_path / "D"), "--weights-dir", str(tmp_path), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert err.count(RANDOM_WEIGHTS_BANNER) == 1 and "passt-s-f128-p16-s10-ap.476-swa.pt" in err
    n_failed = len(select_checkpoints(asked))  # every file the fake was asked for failed
    assert f"Download failed for {n_failed} file(s), e.g. passt_s_swa_p16_128_ap476: URLError" in err
    assert "passt_s_swa_p16_128_ap476" in asked and "synchformer_24-01-04T16-39-21" in asked
    assert [a.random_weights for a in recorded] == ["tiny"] and recorded[0].weights_dir == str(tmp_path)


def test_official_weights_when_present(recorded, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "missing_weights", lambda *a: [])
    assert main(["demo", "--out", str(tmp_path / "D"), "--device", "cpu", "--protocol", "av-benchmark"]) == 0
    assert "RANDOM WEIGHTS" not in capsys.readouterr().err
    [args] = recorded
    assert args.random_weights is None and args.protocol == "av-benchmark"


def test_a_checkpoint_missing_at_load_time_falls_back(recorded, tmp_path, monkeypatch, capsys):
    """A file a backbone loads on first use (not in the pre-check) still ends in one banner and random weights."""
    monkeypatch.setattr(demo, "missing_weights", lambda *a: [])
    record = runner.run_evaluate

    def first_call_fails(args):
        if args.random_weights is None:
            raise WeightsNotFoundError("roberta-base/vocab.json is not cached and offline mode is on")
        return record(args)

    monkeypatch.setattr(runner, "run_evaluate", first_call_fails)
    assert main(["demo", "--out", str(tmp_path / "D"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert err.count(RANDOM_WEIGHTS_BANNER) == 1 and "roberta-base/vocab.json" in err
    assert [a.random_weights for a in recorded] == ["tiny"]


def test_a_metric_without_value_fails_the_demo(recorded, tmp_path, monkeypatch, capsys):
    record = runner.run_evaluate

    def desync_fails(args):
        doc, failed = record(args)
        doc["metrics"]["desync"], doc["details"]["desync"] = None, {"error": "every clip is shorter than 4.8 s"}
        return doc, failed

    monkeypatch.setattr(runner, "run_evaluate", desync_fails)
    assert main(["demo", "--random-weights", "tiny", "--out", str(tmp_path / "D"), "--device", "cpu"]) == 1
    assert "desync gave no value: every clip is shorter than 4.8 s" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "code"),
    [("InceptionScore has 6 scored clips but `splits=10` needs at least one per split", 0), ("NaN logits", 1)],
)
def test_inception_score_on_too_few_clips_is_listed_not_failed(recorded, tmp_path, monkeypatch, capsys, error, code):
    record = runner.run_evaluate

    def isc_fails(args):
        doc, failed = record(args)
        doc["metrics"]["isc_panns"], doc["details"]["isc_panns"] = None, {"error": error}
        return doc, failed

    monkeypatch.setattr(runner, "run_evaluate", isc_fails)
    assert main(["demo", "--random-weights", "tiny", "--out", str(tmp_path / "D"), "--device", "cpu"]) == code
    doc = json.loads((tmp_path / "D" / "results.json").read_text())
    assert doc["metrics"]["isc_panns"] is None and doc["not_computed"] == {"isc_panns": error}
    err = capsys.readouterr().err
    assert ("note: isc_panns could not be computed" in err) == (code == 0)
    assert ("error: isc_panns gave no value: NaN logits" in err) == (code == 1)


def test_bad_option_is_a_one_line_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "D"), "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# The bundled data


def _generator(monkeypatch):
    spec = importlib.util.spec_from_file_location("make_demo_data", REPO / "examples" / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


# On an idle machine two runs of the generator write byte-identical MP4s (and equal the committed ones); on a 2-core
# machine under heavy load, the H.264 stream of one clip came out ~250 bytes different twice (x264 with one thread).
# Then the decoded clips must still be the same pictures and sound, to within one encoding decision.
MP4_MEAN_PIXEL_ATOL = 1.0  # mean |Δ| in 8-bit levels over all frames
MP4_AUDIO_RMS_ATOL = 1e-3  # RMS of the decoded AAC difference (full scale 1.0)


def _assert_same_decoded(a: Path, b: Path) -> None:
    va, vb = read_video(a), read_video(b)
    assert va.frames.shape == vb.frames.shape and va.audio.shape == vb.audio.shape, a.name
    assert float((va.frames.float() - vb.frames.float()).abs().mean()) <= MP4_MEAN_PIXEL_ATOL, a.name
    assert float((va.audio - vb.audio).square().mean().sqrt()) <= MP4_AUDIO_RMS_ATOL, a.name


def test_bundled_data_is_what_the_generator_writes(tmp_path, monkeypatch):
    gen = _generator(monkeypatch)
    first, second = tmp_path / "a", tmp_path / "b"
    sources = gen.write_demo_data(first, "committed")  # the committed speech: no espeak-ng needed
    gen.write_demo_data(second, "committed")
    assert set(sources) == {"speech_fox", "speech_weather"}
    names = sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file() and p.name != "README.md")
    for name in names:  # deterministic: a second run writes the same bytes
        if (first / name).read_bytes() != (second / name).read_bytes():
            assert name.endswith(".mp4"), name  # everything but the lossy encodes must be byte-identical
            _assert_same_decoded(first / name, second / name)
    for name in ("prompts.csv", "transcripts.json"):
        assert (first / name).read_bytes() == (DATA / name).read_bytes()
    for stem in STEMS:  # lossless references: the same samples as the committed ones
        new, sr_new = soundfile.read(first / "ref" / f"{stem}.flac", dtype="int16")
        old, sr_old = soundfile.read(DATA / "ref" / f"{stem}.flac", dtype="int16")
        assert sr_new == sr_old == 16000 and np.array_equal(new, old), stem
    assert sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file()) < MAX_DATA_BYTES


def test_bundled_clips_have_the_promised_format():
    with open(DATA / "prompts.csv", newline="") as f:
        prompts = {r["name"]: r["caption"] for r in csv.DictReader(f)}
    assert sorted(prompts) == [f"{s}.mp4" for s in STEMS] and all(prompts.values())
    transcripts = json.loads((DATA / "transcripts.json").read_text())
    assert sorted(transcripts) == ["speech_fox", "speech_weather"]
    assert all(t["language"] == "en" and len(t["text"].split()) > 10 for t in transcripts.values())
    for stem in STEMS:
        video = read_video(DATA / "gen" / f"{stem}.mp4")
        assert tuple(video.frames.shape) == (210, 3, 96, 96) and video.fps == 25.0 and video.sample_rate == 16000
        # av-benchmark's 8 s window (DeSync / ImageBind / FD --audio_length) fits in every clip.
        assert video.audio.shape[0] == 1 and video.audio.shape[1] >= 8 * 16000
        ref, rate = soundfile.read(DATA / "ref" / f"{stem}.flac")
        assert rate == 16000 and len(ref) >= 8 * 16000 and 0.2 < np.abs(ref).max() <= 1.0


def _flash_and_click_times(stem: str) -> tuple[np.ndarray, np.ndarray]:
    """Seconds at which the centre square lights up, and at which a click starts in the generated audio."""
    video = read_video(DATA / "gen" / f"{stem}.mp4")
    lit = video.frames[:, :, 40:56, 40:56].float().mean(dim=(1, 2, 3)).numpy() > 128
    flashes = np.flatnonzero(np.diff(lit.astype(int), prepend=0) == 1) / video.fps
    loud = np.flatnonzero(np.abs(video.audio[0].numpy()) > 0.5 * float(video.audio.abs().max()))
    gap = 0.2 * video.sample_rate  # clicks are >= 0.5 s apart and last 30 ms
    clicks = loud[np.r_[True, np.diff(loud) > gap]] / video.sample_rate
    return flashes, clicks


@pytest.mark.parametrize(("stem", "lag"), [("metronome", 0.0), ("metronome_late", 0.4)])
def test_metronome_audio_lags_its_flashes(stem, lag):
    flashes, clicks = _flash_and_click_times(stem)
    n = len(clicks)
    assert n >= 12 and len(flashes) >= n
    # A flash starts on frame round(25 t): within half a frame (20 ms) of its click time.
    np.testing.assert_allclose(clicks - flashes[:n], lag, atol=0.021)
