"""The CLI's input pipeline: length-ordered batches (longest first) equal the Python API fed the same batches, and
every clip is loaded (resampled) once for the metrics sharing a loader, mostly on the decoder threads."""

from __future__ import annotations

import csv
import json
import threading

import pytest
import soundfile
import torch

from tests.test_fad import audio_batch
from torchmetrics_av import AudioboxAesthetics, FrechetAudioDistance, PaSSTKLDivergence, preprocessing
from torchmetrics_av.cli import feeds, main
from torchmetrics_av.io import read_audio
from torchmetrics_av.testing import tiny_backbone

GEN_SECONDS = {"c0": 1.0, "c1": 3.0, "c2": 2.0, "c3": 3.0, "c4": 0.5}  # c4 has no reference
REF_SECONDS = {"c0": 1.2, "c1": 1.2, "c2": 2.5, "c3": 0.8}
GEN_RATE, REF_RATE = 16000, 22050


@pytest.fixture
def uneven(tmp_path):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    for i, (stem, seconds) in enumerate(GEN_SECONDS.items()):
        soundfile.write(gen / f"{stem}.wav", audio_batch(1, seconds, GEN_RATE, seed=i)[0].numpy(), GEN_RATE)
    for i, (stem, seconds) in enumerate(REF_SECONDS.items()):
        wave = audio_batch(1, seconds, REF_RATE, seed=10 + i)[0].numpy()
        soundfile.write(ref / f"{stem}.wav", wave, REF_RATE, subtype="FLOAT")
    return gen, ref


def _run(gen, ref, out, order: str, metrics: str = "fd_passt,kl_passt,aesthetics") -> dict:
    argv = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--metrics", metrics, "--out", str(out)]
    argv += ["--random-weights", "tiny", "--device", "cpu", "--batch-size", "2", "--batch-order", order]
    assert main(argv) == 0
    return json.loads(out.read_text())


@pytest.fixture
def fed(monkeypatch):
    """The stems of every GeneratedAudio (Audiobox) update the CLI makes, batch by batch."""
    batches: list[list[str]] = []
    original = feeds.GeneratedAudio.update

    def spy(self, metric, items, ctx):
        batches.append([it.stem for it in items])
        return original(self, metric, items, ctx)

    monkeypatch.setattr(feeds.GeneratedAudio, "update", spy)
    return batches


def test_length_order_is_longest_first_and_equals_the_api(uneven, tmp_path, fed):
    gen, ref = uneven
    doc = _run(gen, ref, tmp_path / "len.json", "length", metrics="fd_passt,kl_passt,aesthetics")
    # Paired stems by length, longest first (the 3.0 s tie by stem), then the unpaired one.
    order = [["c1", "c3"], ["c2", "c0"], ["c4"]]
    assert fed == order
    assert doc["provenance"]["batch_order"] == "length"

    # The Python API fed the same batches (no loader cache there: the CLI's cached loads are the plain ones).
    net = tiny_backbone("passt")
    fd, kl = FrechetAudioDistance(backbone=net, batch_size=2), PaSSTKLDivergence(backbone=net, batch_size=2)
    aes = AudioboxAesthetics(backbone=tiny_backbone("audiobox"))
    clip = {s: read_audio(gen / f"{s}.wav")[0] for s in GEN_SECONDS}
    refs = {s: read_audio(ref / f"{s}.wav")[0] for s in REF_SECONDS}
    for batch in order[:2]:
        g, r = [clip[s] for s in batch], [refs[s] for s in batch]
        fd.update(preds=g, target=r, sample_rate=GEN_RATE, target_sample_rate=REF_RATE)
        kl.update(g, r, sample_rate=GEN_RATE, target_sample_rate=REF_RATE)
        aes.update(g, sample_rate=GEN_RATE)
    fd.update(preds=[clip["c4"]], sample_rate=GEN_RATE)
    aes.update([clip["c4"]], sample_rate=GEN_RATE)
    m = doc["metrics"]
    assert m["fd_passt"] == pytest.approx(float(fd.compute()), rel=1e-12)
    assert m["kl_passt"] == pytest.approx(float(kl.compute()), rel=1e-12)
    assert m["aesthetics"] == pytest.approx({k: float(v) for k, v in aes.compute().items()}, rel=1e-12)
    # Per-file values follow their file, whatever the batch order.
    fed_order = [s for b in order for s in b]
    pq = dict(zip(fed_order, aes.details["PQ"].tolist()))
    assert {s: row["aesthetics_PQ"] for s, row in doc["per_sample"].items()} == pytest.approx(pq, rel=1e-9)
    kl_rows = dict(zip(fed_order[:4], kl.details["kl_softmax"].tolist()))
    assert {s: doc["per_sample"][s]["kl_passt"] for s in REF_SECONDS} == pytest.approx(kl_rows, rel=1e-9)


def test_name_order_batches_by_stem(uneven, tmp_path, fed):
    gen, ref = uneven
    doc = _run(gen, ref, tmp_path / "name.json", "name", metrics="aesthetics")
    assert fed == [["c0", "c1"], ["c2", "c3"], ["c4"]]
    assert doc["provenance"]["batch_order"] == "name"


def test_each_clip_is_loaded_once_for_the_metrics_sharing_a_loader(uneven, tmp_path, monkeypatch):
    calls: list[bool] = []  # per loader computation: did it run on the main thread?
    original = preprocessing._protocol_waveform

    def counted(*args, **kwargs):
        calls.append(threading.current_thread() is threading.main_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(preprocessing, "_protocol_waveform", counted)
    gen, ref = uneven
    doc = _run(gen, ref, tmp_path / "once.json", "length", metrics="fd_passt,kl_passt")
    n_clips = len(GEN_SECONDS) + len(REF_SECONDS)
    # FD and KL load each clip with the same 32 kHz loader: one computation per clip, not one per metric.
    assert len(calls) == n_clips
    # The clips decoded after the first batch reached the metrics were loaded on the decoder threads.
    assert calls.count(False) >= 1
    assert doc["files"]["n_scored"] == {"fd_passt": len(GEN_SECONDS), "kl_passt": len(REF_SECONDS)}


def test_fd_and_kl_share_each_window_unhashed_and_run_one_forward_per_window(uneven, tmp_path, monkeypatch):
    from torchmetrics_av.backbones import memo, passt

    hashed, rows = [], []
    sha256 = memo.hashlib.sha256
    monkeypatch.setattr(memo.hashlib, "sha256", lambda data: hashed.append(1) or sha256(data))
    forward = passt.PaSST.forward

    def counted(self, wave):
        rows.append(wave.shape[0])
        return forward(self, wave)

    monkeypatch.setattr(passt.PaSST, "forward", counted)
    gen, ref = uneven
    doc = _run(gen, ref, tmp_path / "shared.json", "length", metrics="fd_passt,kl_passt")
    # Every clip is under 10 s: FD's padded window is KL's window, except for a clip of at most 1.5 s, whose KL window
    # is the clip unpadded (FastVideo's sliding windows). The loader cache hands both metrics one window object, which
    # the memo names instead of hashing: one forward row per window and no sample hashed.
    short = preprocessing.KL_WINDOW_S * preprocessing.KL_MIN_PAD_FRACTION
    paired = [GEN_SECONDS[s] for s in REF_SECONDS] + list(REF_SECONDS.values())
    assert sum(rows) == len(GEN_SECONDS) + len(REF_SECONDS) + sum(d <= short for d in paired) and hashed == []
    assert doc["metrics"]["fd_passt"] is not None and doc["metrics"]["kl_passt"] is not None


def test_csv_rows_keep_stem_order_under_length_batches(uneven, tmp_path):
    gen, ref = uneven
    per = tmp_path / "per.csv"
    argv = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--metrics", "kl_passt", "--out", str(tmp_path / "o")]
    argv += ["--random-weights", "tiny", "--device", "cpu", "--batch-size", "2", "--csv", str(per)]
    assert main(argv) == 0
    with open(per) as f:
        assert [r["stem"] for r in csv.DictReader(f)] == sorted(GEN_SECONDS)


def test_loader_cache_is_off_outside_the_cli():
    clip = torch.randn(1, 1600)
    assert preprocessing._ACTIVE_LOADER_CACHE.get() is None
    a = preprocessing.protocol_waveform(clip, 16000, 32000, "fastvideo")
    b = preprocessing.protocol_waveform(clip, 16000, 32000, "fastvideo")
    assert a is not b and torch.equal(a, b)


def test_declared_durations_of_audio_video_and_broken_files(tmp_path):
    from tests.test_cli import _write_video
    from torchmetrics_av.cli.inputs import by_length, duration_of

    _write_video(tmp_path / "v.mp4", 2.0, seed=0)
    soundfile.write(tmp_path / "a.flac", audio_batch(1, 1.5, 22050)[0].numpy(), 22050)
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    assert duration_of(tmp_path / "v.mp4") == pytest.approx(2.0, abs=0.15)  # AAC priming: about a frame
    assert duration_of(tmp_path / "a.flac") == pytest.approx(1.5, abs=1 / 22050)
    assert duration_of(tmp_path / "bad.mp4") is None and duration_of(tmp_path / "none.wav") is None
    paths = {s: tmp_path / f for s, f in (("v", "v.mp4"), ("a", "a.flac"), ("bad", "bad.mp4"))}
    assert by_length(["a", "bad", "v"], paths, workers=2) == ["v", "a", "bad"]
