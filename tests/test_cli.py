"""The torchmetrics-av CLI: JSON/CSV equal to the Python API, unmatched/broken files reported, reference stats."""

from __future__ import annotations

import csv
import json

import pytest
import soundfile
import torch

from tests.test_fad import audio_batch
from torchmetrics_av import FrechetAudioDistance, PaSSTKLDivergence
from torchmetrics_av.backbones import PaSST
from torchmetrics_av.cli import main


@pytest.fixture
def folders(tmp_path):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    g, r = audio_batch(5, seconds=1.0, seed=1), audio_batch(4, seconds=1.5, sr=22050, seed=2)
    for i in range(4):
        soundfile.write(gen / f"clip{i}.wav", g[i].numpy(), 16000, subtype="FLOAT")
        soundfile.write(ref / f"clip{i}.flac", (r[i].numpy() * 32767).round().astype("int16"), 22050, subtype="PCM_16")
    soundfile.write(gen / "extra.wav", g[4].numpy(), 16000, subtype="FLOAT")  # unmatched generated file
    (ref / "broken.wav").write_bytes(b"RIFF not really a wav")  # undecodable reference
    return gen, ref


def _tiny() -> PaSST:
    torch.manual_seed(0)
    return PaSST(pretrained=False, embed_dim=32, depth=1, num_heads=2)


def _read(path):
    data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), sr


def test_evaluate_equals_python_api(folders, tmp_path, capsys):
    gen, ref = folders
    out, per = tmp_path / "res.json", tmp_path / "per.csv"
    code = main(
        [
            "evaluate",
            "--gen",
            str(gen),
            "--ref",
            str(ref),
            "--out",
            str(out),
            "--csv",
            str(per),
            "--random-weights",
            "tiny",
            "--batch-size",
            "3",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    doc = json.loads(out.read_text())
    err = capsys.readouterr().err
    assert "RANDOM WEIGHTS" in err and "extra" in err and "broken.wav" in err
    assert doc["files"]["unmatched_gen"] == ["extra"] and doc["files"]["n_paired"] == 4
    assert doc["files"]["broken"][0]["file"].endswith("broken.wav")
    assert doc["provenance"]["sample_rates"] == {"gen": [16000], "ref": [22050]}

    # The same calls through the Python API, batched as the CLI batches (paired stems in threes, then the rest):
    # float32 forwards of different batch compositions differ at ~1e-7, so equal batching gives equal numbers.
    net = _tiny()
    fd, kl = FrechetAudioDistance(backbone=net, batch_size=3), PaSSTKLDivergence(backbone=net, batch_size=3)
    gens = [_read(gen / f"clip{i}.wav")[0] for i in range(4)]
    refs = [_read(ref / f"clip{i}.flac")[0] for i in range(4)]
    for sl in (slice(0, 3), slice(3, 4)):
        fd.update(preds=gens[sl], target=refs[sl], sample_rate=16000, target_sample_rate=22050)
        kl.update(gens[sl], refs[sl], sample_rate=16000, target_sample_rate=22050)
    fd.update(preds=[_read(gen / "extra.wav")[0]], sample_rate=16000)
    assert doc["metrics"]["fd_passt"] == pytest.approx(float(fd.compute()), rel=1e-12)
    assert doc["metrics"]["kl_passt"] == pytest.approx(float(kl.compute()), rel=1e-12)
    with open(per) as f:
        rows = {r["stem"]: r for r in csv.DictReader(f)}
    expected = kl.details["kl_softmax"].tolist()
    assert [float(rows[f"clip{i}"]["kl_passt"]) for i in range(4)] == pytest.approx(expected, rel=1e-9)


def test_reference_stats_roundtrip(folders, tmp_path):
    gen, ref = folders
    stats = tmp_path / "stats.pt"
    assert (
        main(["reference", "--ref", str(ref), "--out", str(stats), "--random-weights", "tiny", "--device", "cpu"]) == 0
    )
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["--random-weights", "tiny", "--device", "cpu", "--metrics", "fd_passt"]
    assert main(["evaluate", "--gen", str(gen), "--ref", str(ref), "--out", str(a), *common]) == 0
    assert main(["evaluate", "--gen", str(gen), "--ref-stats", str(stats), "--out", str(b), *common]) == 0
    fa, fb = json.loads(a.read_text()), json.loads(b.read_text())
    assert fb["metrics"]["fd_passt"] == pytest.approx(fa["metrics"]["fd_passt"], rel=1e-9)
    assert fb["details"]["fd_passt"]["target_source"] == "stats"


def test_readable_errors(tmp_path, folders, capsys, monkeypatch):
    gen, _ = folders
    assert main(["evaluate", "--gen", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["evaluate", "--gen", str(gen), "--random-weights", "tiny"]) == 2
    assert "--ref" in capsys.readouterr().err
    assert main(["evaluate", "--gen", str(gen), "--ref", str(gen), "--metrics", "fad"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCHMETRICS_AV_CACHE", str(tmp_path / "empty-cache"))
    assert main(["evaluate", "--gen", str(gen), "--ref", str(gen), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "passt-s-f128-p16-s10-ap.476-swa.pt" in err and "github.com/kkoutini" in err and "--weights-dir" in err
