"""The CLI on bad input, tried as a new user would with real files (issue 8, item 6).

Truncated and corrupt files are listed as broken and never scored short; one clip that a metric refuses never ends
the run; a missing GPU, missing checkpoints and a missing --weights-dir are one readable error each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torchmetrics import Metric

from tests.test_cli import _write_video
from torchmetrics_av import FrechetAudioDistance, PaSSTKLDivergence
from torchmetrics_av.cli import METRICS, main
from torchmetrics_av.cli.feeds import GeneratedAudio
from torchmetrics_av.cli.registry import MetricSpec
from torchmetrics_av.io import read_audio
from torchmetrics_av.testing import tiny_backbone

SR = 16000
# The example: a 4 s 16-bit WAV cut to 3,000 bytes (libsndfile alone reads it as a 0.09 s clip).
CUT_SECONDS, CUT_BYTES = 4.0, 3000
TINY = ["--random-weights", "tiny", "--device", "cpu"]


def _wav(path, seconds: float, seed: int, sr: int = SR) -> None:
    wave = np.random.default_rng(seed).standard_normal(int(seconds * sr)).astype(np.float32) * 0.1
    soundfile.write(path, wave, sr, subtype="PCM_16")


def _cut(path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def _good_pairs(tmp_path: Path, n: int) -> tuple[Path, Path]:
    """Folders ``gen/`` and ``ref/`` under ``tmp_path`` with ``n`` good 1 s pairs ``c0.wav`` ... (seeded noise)."""
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    for i in range(n):
        _wav(gen / f"c{i}.wav", 1.0, seed=i)
        _wav(ref / f"c{i}.wav", 1.0, seed=10 + i)
    return gen, ref


@pytest.fixture
def bad_folders(tmp_path):
    """Three good pairs, a truncated WAV (generated) and a truncated reference, garbage and an empty file."""
    gen, ref = _good_pairs(tmp_path, 3)
    _wav(gen / "cut.wav", CUT_SECONDS, seed=20)
    _cut(gen / "cut.wav", CUT_BYTES)
    _wav(ref / "cut.wav", 1.0, seed=21)
    _wav(ref / "c2_cut.wav", CUT_SECONDS, seed=22)  # an unpaired reference, truncated
    _cut(ref / "c2_cut.wav", CUT_BYTES)
    (gen / "garbage.flac").write_bytes(np.random.default_rng(0).bytes(4096))
    (gen / "empty.ogg").write_bytes(b"")
    return gen, ref


def test_truncated_and_corrupt_files_are_broken_not_scored(bad_folders, tmp_path, capsys):
    gen, ref = bad_folders
    out = tmp_path / "r.json"
    argv = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--metrics", "fd_passt,kl_passt,aesthetics"]
    assert main([*argv, "--out", str(out), "--batch-size", "2", *TINY]) == 0
    doc = json.loads(out.read_text())
    err = capsys.readouterr().err
    broken = {b["file"].split("/")[-1]: b["error"] for b in doc["files"]["broken"]}
    assert sorted(broken) == ["c2_cut.wav", "cut.wav", "empty.ogg", "garbage.flac"]
    assert (
        "TruncatedFileError" in broken["cut.wav"]
        and "promises 64000 frames (4.000 s) but holds 1478" in broken["cut.wav"]
    )
    assert "TruncatedFileError" in broken["c2_cut.wav"]
    assert "could not use" in err and "cut.wav" in err and "Traceback" not in err
    # Nothing of the broken files was scored: every metric counts the three good files only.
    assert doc["files"]["n_scored"] == {"fd_passt": 3, "kl_passt": 3, "aesthetics": 3}
    assert doc["details"]["fd_passt"]["n_preds"] == 3 and doc["details"]["fd_passt"]["n_target"] == 4
    row = doc["per_sample"]["cut"]
    assert "TruncatedFileError" in row["error"] and "kl_passt" not in row and "aesthetics_PQ" not in row

    # The same numbers as the Python API on the good files only (the truncated generated file's reference, cut.wav,
    # still counts as an FD reference, fed after the unpaired references, as before).
    net = tiny_backbone("passt")
    fd, kl = FrechetAudioDistance(backbone=net, batch_size=2), PaSSTKLDivergence(backbone=net, batch_size=2)
    g = [read_audio(gen / f"c{i}.wav")[0] for i in range(3)]
    r = [read_audio(ref / f"c{i}.wav")[0] for i in range(3)]
    for sl in (slice(0, 2), slice(2, 3)):
        fd.update(preds=g[sl], target=r[sl], sample_rate=SR)
        kl.update(g[sl], r[sl], sample_rate=SR)
    fd.update(target=[read_audio(ref / "cut.wav")[0]], target_sample_rate=SR)
    assert doc["metrics"]["fd_passt"] == pytest.approx(float(fd.compute()), rel=1e-12)
    assert doc["metrics"]["kl_passt"] == pytest.approx(float(kl.compute()), rel=1e-12)


def test_reference_command_lists_truncated_files(bad_folders, tmp_path, capsys):
    _, ref = bad_folders
    stats = tmp_path / "s.pt"
    assert main(["reference", "--ref", str(ref), "--out", str(stats), *TINY]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_ref"] == 4 and [b["file"].split("/")[-1] for b in summary["broken"]] == ["c2_cut.wav"]
    assert stats.is_file()


def test_one_refused_clip_never_ends_the_run(tmp_path, capsys):
    """A complete but very short clip is refused by KL (a ValueError naming the minimum length); a NaN clip is refused
    by every metric. Both are listed per metric with the metric's message; every metric still reports."""
    gen, ref = _good_pairs(tmp_path, 2)
    _wav(gen / "short.wav", 0.09, seed=3)  # the length the truncated WAV was read as
    _wav(ref / "short.wav", 1.0, seed=13)
    nan = np.random.default_rng(4).standard_normal(SR).astype(np.float32) * 0.1
    nan[100] = np.nan
    soundfile.write(gen / "nan.wav", nan, SR, subtype="FLOAT")
    _wav(ref / "nan.wav", 1.0, seed=14)
    out, per = tmp_path / "r.json", tmp_path / "r.csv"
    argv = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--metrics", "fd_passt,kl_passt,aesthetics"]
    assert main([*argv, "--out", str(out), "--csv", str(per), "--batch-size", "4", *TINY]) == 0
    doc = json.loads(out.read_text())
    err = capsys.readouterr().err
    skipped = {name: {s["stem"]: s["error"] for s in v} for name, v in doc["files"]["skipped"].items()}
    assert set(skipped["kl_passt"]) == {"nan", "short"} and "needs at least" in skipped["kl_passt"]["short"]
    assert "NaN" in skipped["kl_passt"]["nan"] or "finite" in skipped["kl_passt"]["nan"]
    assert "nan" in skipped["aesthetics"]
    assert all(isinstance(doc["metrics"][m], (float, dict)) for m in ("fd_passt", "kl_passt", "aesthetics"))
    assert "kl_passt skipped short" in err and "Traceback" not in err
    assert "needs at least" in doc["per_sample"]["short"]["kl_passt_error"]
    # KL over the pairs it took, fed one at a time after the batch was refused.
    net = tiny_backbone("passt")
    kl = PaSSTKLDivergence(backbone=net, batch_size=4)
    for s in ("c0", "c1"):
        kl.update([read_audio(gen / f"{s}.wav")[0]], [read_audio(ref / f"{s}.wav")[0]], sample_rate=SR)
    assert doc["metrics"]["kl_passt"] == pytest.approx(float(kl.compute()), rel=1e-12)
    assert doc["files"]["n_scored"]["kl_passt"] == 2


class _Flaky(Metric):
    """Mean absolute sample; crashes (not a ValueError) on clips under 0.5 s after touching its state."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("seen", [], dist_reduce_fx="cat")

    def update(self, preds, sample_rate, ids) -> None:
        self.count += len(preds)
        self.seen.append(torch.tensor(ids))
        if any(p.shape[-1] < 0.5 * r for p, r in zip(preds, sample_rate)):
            raise RuntimeError("Kernel size can't be greater than actual input size")
        self.total += sum(float(p.abs().mean()) for p in preds)

    def compute(self) -> torch.Tensor:
        return self.total / self.count


def test_a_crashing_metric_skips_the_clip_and_restores_its_state(tmp_path, monkeypatch, capsys):
    """Any exception (here a RuntimeError after the state was touched) skips only that clip, with its type."""
    gen = tmp_path / "gen"
    gen.mkdir()
    for i, seconds in enumerate((1.0, 0.2, 1.0)):
        _wav(gen / f"c{i}.wav", seconds, seed=i)
    monkeypatch.setitem(METRICS, "flaky", MetricSpec("passt", GeneratedAudio(), lambda bb, args: _Flaky()))
    out = tmp_path / "f.json"
    argv = ["evaluate", "--gen", str(gen), "--metrics", "flaky,aesthetics", "--batch-size", "3", "--out", str(out)]
    assert main([*argv, *TINY]) == 0
    doc = json.loads(out.read_text())
    assert doc["files"]["skipped"] == {
        "flaky": [{"stem": "c1", "error": "RuntimeError: Kernel size can't be greater than actual input size"}]
    }
    good = [read_audio(gen / f"c{i}.wav")[0] for i in (0, 2)]
    assert doc["metrics"]["flaky"] == pytest.approx(sum(float(w.abs().mean()) for w in good) / 2, rel=1e-12)
    assert isinstance(doc["metrics"]["aesthetics"], dict) and doc["files"]["n_scored"]["flaky"] == 2
    assert "flaky skipped c1: RuntimeError" in capsys.readouterr().err


def test_truncated_video_is_broken(tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    _write_video(gen / "ok.mp4", 2.0, seed=0)
    _write_video(gen / "cut.mkv", 2.0, seed=1)
    _cut(gen / "cut.mkv", (gen / "cut.mkv").stat().st_size // 2)
    out = tmp_path / "v.json"
    assert main(["evaluate", "--gen", str(gen), "--metrics", "imagebind", "--out", str(out), *TINY]) == 0
    doc = json.loads(out.read_text())
    assert [b["file"].split("/")[-1] for b in doc["files"]["broken"]] == ["cut.mkv"]
    assert "TruncatedFileError" in doc["files"]["broken"][0]["error"] and doc["files"]["n_scored"]["imagebind"] == 1


def test_device_without_gpu_is_one_line(bad_folders, tmp_path, capsys, monkeypatch):
    gen, _ = bad_folders
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["evaluate", "--gen", str(gen), "--random-weights", "tiny", "--out", str(tmp_path / "x.json")]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("torchmetrics-av: error: --device cuda:") and "--device cpu" in err and "\n" not in err
    assert main([*argv, "--device", "gpu0"]) == 2
    assert "is not a torch device" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_weights_dir_that_does_not_exist(bad_folders, tmp_path, capsys):
    gen, _ = bad_folders
    argv = ["evaluate", "--gen", str(gen), "--weights-dir", str(tmp_path / "nope"), "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "x.json")]) == 2
    assert f"--weights-dir {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main([*argv[:-4], "--weights-dir", str(tmp_path / "file"), "--device", "cpu"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_output_folder_that_does_not_exist(bad_folders, tmp_path, capsys):
    """Checked before any model is built or file decoded, not after the run."""
    gen, ref = bad_folders
    out = tmp_path / "no" / "r.json"
    assert main(["evaluate", "--gen", str(gen), "--out", str(out), *TINY]) == 2
    assert f"cannot write {out}: the folder {out.parent} does not exist" in capsys.readouterr().err
    assert main(["reference", "--ref", str(ref), "--out", str(out), *TINY]) == 2
    assert "does not exist" in capsys.readouterr().err


# Every backbone's official entry and where it comes from (the issue: today one run names one missing checkpoint).
EXPECTED_MISSING = {
    "passt": ("passt-s-f128-p16-s10-ap.476-swa.pt", "github.com/kkoutini"),
    "clap": ("clap-htsat-fused", "huggingface.co/laion/clap-htsat-fused"),
    "whisper": ("base.pt", "openaipublic.azureedge.net"),
    "hf_whisper": ("whisper-base/model.safetensors", "huggingface.co/openai/whisper-base"),
    "audiobox": ("audiobox-aesthetics", "huggingface.co/facebook/audiobox-aesthetics"),
    "imagebind": ("imagebind_huge.pth", "dl.fbaipublicfiles.com/imagebind"),
    "synchformer": ("synchformer_state_dict.pth", "github.com/hkchengrex/MMAudio/releases"),
    "panns": ("Cnn14_16k_mAP=0.438.pth", "zenodo.org/records/3987831"),
    "vggish": ("vggish-10086976.pth", "github.com/harritaylor/torchvggish/releases"),
    "msclap": ("CLAP_weights_2023.pth", "huggingface.co/microsoft/msclap"),
}


def test_offline_one_run_lists_every_missing_checkpoint(tmp_path, capsys, monkeypatch):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    _write_video(gen / "v.mp4", 5.0, seed=0)
    _wav(ref / "v.wav", 1.0, seed=1)
    texts = tmp_path / "t.json"
    texts.write_text(json.dumps({"v": "a dog barks"}))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCHMETRICS_AV_CACHE", str(tmp_path / "empty-cache"))
    names = [n for n, s in METRICS.items() if s.unavailable() is None]
    argv = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--prompts", str(texts), "--transcripts", str(texts)]
    argv += ["--metrics", ",".join(names), "--device", "cpu", "--out", str(tmp_path / "x.json")]
    from torchmetrics_av.cli.parser import build_parser

    keys = [METRICS[n].backbone_key(build_parser().parse_args(argv)) for n in names]
    kinds = set(keys)
    assert main(argv) == 2
    err = capsys.readouterr().err
    # One list of every file of every backbone (missing_checkpoints), each with its URL, then the download command.
    from torchmetrics_av.cli.backbones import BACKBONES
    from torchmetrics_av.cli.parser import build_parser
    from torchmetrics_av.weights import missing_checkpoints

    args = build_parser().parse_args(argv)
    files = {c.filename for k in kinds for c in missing_checkpoints(BACKBONES[k].checkpoints(args), tmp_path / "x")}
    assert f"{len(files)} checkpoint files missing from {tmp_path / 'empty-cache'}:" in err and "Traceback" not in err
    for kind in kinds:
        entry, url = EXPECTED_MISSING[kind]
        assert entry in err and url in err, kind
    assert all(f"  {f}  (" in err for f in files)
    assert f"torchmetrics-av download --weights-dir {tmp_path / 'empty-cache'} " in err
    assert f"Needed by the backbones {', '.join(dict.fromkeys(keys))};" in err
    # With an empty --weights-dir: the same list, in that folder.
    (tmp_path / "wd").mkdir()
    assert main([*argv, "--weights-dir", str(tmp_path / "wd")]) == 2
    err = capsys.readouterr().err
    assert f"{len(files)} checkpoint files missing from {tmp_path / 'wd'}:" in err
    assert all(f"  {f}  (" in err for f in files) and all(EXPECTED_MISSING[k][1] in err for k in kinds)


def test_progress_advances_per_file(bad_folders, tmp_path, monkeypatch):
    """Every listed file (scored or broken, generated or reference-only) moves the bar once, never ahead of it."""
    gen, ref = bad_folders
    events: list[tuple[str, int]] = []

    class Recorder:
        def __init__(self, total: int, desc: str) -> None:
            self.total = total
            events.append(("total", total))

        def grow(self, files: int) -> None:
            events.append(("total", files))

        def advance(self, files: int = 1) -> None:
            events.append(("advance", files))

        def close(self) -> None:
            events.append(("close", 0))

    monkeypatch.setattr("torchmetrics_av.cli.runner.Progress", Recorder)
    argv = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--metrics", "fd_passt", "--batch-size", "2"]
    assert main([*argv, "--out", str(tmp_path / "x.json"), *TINY]) == 0
    total = sum(n for e, n in events if e == "total")
    # 6 generated files, 1 unpaired reference, and cut.wav's reference (its generated file is broken).
    assert total == 6 + 1 + 1
    steps = [n for e, n in events if e == "advance"]
    assert sum(steps) == total and max(steps) <= 2 and events[-1] == ("close", 0)


def test_silent_clip_is_skipped_and_counted(tmp_path):
    """Under "fastvideo" an all-zero clip cannot be peak-normalised: KL and CLAP skip and count it (not a row of their
    per_sample()); the CSV marks it, the JSON counts it, and the other clips are scored."""
    gen, ref = _good_pairs(tmp_path, 2)
    soundfile.write(gen / "zero.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")
    _wav(ref / "zero.wav", 1.0, seed=12)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps({"c0": "rain", "c1": "a dog", "zero": "nothing"}))
    out, per = tmp_path / "s.json", tmp_path / "s.csv"
    argv = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--prompts", str(prompts), "--metrics", "kl_passt,clap"]
    assert main([*argv, "--out", str(out), "--csv", str(per), *TINY]) == 0
    doc = json.loads(out.read_text())
    for name in ("kl_passt", "clap"):
        assert doc["details"][name]["n_skipped_silent"] == 1 and doc["details"][name]["n_samples"] == 2, name
    rows = doc["per_sample"]
    assert rows["zero"]["kl_passt_skipped"] == "silent" and rows["zero"]["clap_skipped"] == "silent"
    assert "kl_passt" not in rows["zero"] and "clap_cosine" not in rows["zero"]
    assert all(
        isinstance(rows[s]["kl_passt"], float) and isinstance(rows[s]["clap_cosine"], float) for s in ("c0", "c1")
    )
