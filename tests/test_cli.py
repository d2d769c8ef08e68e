"""The torchmetrics-av CLI: JSON/CSV equal to the Python API, unmatched/broken files reported, reference stats."""

from __future__ import annotations

import csv
import json
from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile
import torch

import torchmetrics_av
from tests.test_fad import audio_batch
from torchmetrics_av import (
    AudioboxAesthetics,
    CLAPScore,
    FrechetAudioDistance,
    ImageBindScore,
    PaSSTKLDivergence,
    SpeechWordErrorRate,
)
from torchmetrics_av.backbones import PaSST, Whisper
from torchmetrics_av.backbones.whisper import OFFICIAL_DIMS
from torchmetrics_av.cli import METRICS, main
from torchmetrics_av.io import read_audio, read_video
from torchmetrics_av.testing import TINY_CONFIGS, tiny_backbone


def desync_available() -> bool:
    return METRICS["desync"].unavailable() is None


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
    return tiny_backbone("passt")  # the CLI's --random-weights tiny PaSST


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
    # Explicit metrics that the inputs cannot support (the default picks what they allow: here only aesthetics).
    assert main(["evaluate", "--gen", str(gen), "--random-weights", "tiny", "--metrics", "fd_passt"]) == 2
    assert "--ref" in capsys.readouterr().err
    assert main(["evaluate", "--gen", str(gen), "--ref", str(gen), "--metrics", "fad"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCHMETRICS_AV_CACHE", str(tmp_path / "empty-cache"))
    assert main(["evaluate", "--gen", str(gen), "--ref", str(gen), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "passt-s-f128-p16-s10-ap.476-swa.pt" in err and "github.com/kkoutini" in err and "--weights-dir" in err


# ---------------------------------------------------------------------------------------------------------------------
# Every metric: generated videos + audio, references, prompts and transcripts.


def _write_video(path, seconds: float, seed: int, fps: int = 25, sr: int = 16000, samples: int | None = None) -> None:
    """A tiny noise video (mpeg4, 32x32) with an AAC mono soundtrack, written with PyAV."""
    rng = np.random.default_rng(seed)
    samples = int(seconds * sr) - 2000 if samples is None else samples  # AAC priming/padding adds ~1-2 frames
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        aus = out.add_stream("aac", rate=sr)
        aus.layout = "mono"
        for _ in range(int(round(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "rgb24")
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        wave = (rng.standard_normal(samples) * 0.1).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = sr, start, Fraction(1, sr)
            out.mux(aus.encode(chunk))
        out.mux(aus.encode())


@pytest.fixture
def av_folders(tmp_path):
    gen, ref = tmp_path / "avgen", tmp_path / "avref"
    gen.mkdir()
    ref.mkdir()
    _write_video(gen / "v0.mp4", 5.0, seed=0)
    _write_video(gen / "v1.mp4", 5.0, seed=1)
    a = audio_batch(3, seconds=1.5, seed=3)
    soundfile.write(gen / "a0.wav", a[0].numpy(), 16000, subtype="FLOAT")
    stereo = np.stack([a[1].numpy(), a[2].numpy()], axis=1)
    soundfile.write(gen / "a1.flac", (stereo * 32767).round().astype("int16"), 22050, subtype="PCM_16")
    (gen / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")  # undecodable generated video
    r = audio_batch(3, seconds=1.2, sr=22050, seed=4)
    for name, i in (("v0", 0), ("a0", 1), ("r_extra", 2)):
        soundfile.write(ref / f"{name}.wav", r[i].numpy(), 22050, subtype="FLOAT")
    prompts = tmp_path / "prompts.csv"
    prompts.write_text('name,caption\nv0.mp4,a dog barks\na0,"rain, on a roof"\na1,a violin\nghost,unused\n')
    transcripts = tmp_path / "transcripts.json"
    # v1's reference is empty after normalisation: WER rejects it, the CLI reports it and scores the others.
    transcripts.write_text(json.dumps({"v0": {"text": "hello world", "language": "en"}, "a1": "the cat", "v1": "?!"}))
    return gen, ref, prompts, transcripts


def _video(path):
    v = read_video(path)
    return v.audio, v.sample_rate, v.frames, v.fps


def test_every_metric_equals_python_api(av_folders, tmp_path, capsys):
    gen, ref, prompts, transcripts = av_folders
    out, per = tmp_path / "all.json", tmp_path / "all.csv"
    argv = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--prompts", str(prompts)]
    argv += ["--transcripts", str(transcripts), "--out", str(out), "--csv", str(per)]
    argv += ["--random-weights", "tiny", "--batch-size", "2", "--device", "cpu", "--num-workers", "2"]
    argv += ["--batch-order", "name"]  # batches by stem, fed below in the same order (length order: its own test)
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    err = capsys.readouterr().err
    expected_metrics = ["fd_passt", "kl_passt", "clap", "wer", "aesthetics", "imagebind"]
    if desync_available():
        expected_metrics.append("desync")
    assert list(doc["metrics"]) == expected_metrics

    files = doc["files"]
    assert files["n_gen"] == 5 and files["n_gen_videos"] == 3 and files["n_paired"] == 2
    assert files["unmatched_gen"] == ["a1", "bad", "v1"] and files["unmatched_ref"] == ["r_extra"]
    assert files["without_prompt"] == ["bad", "v1"] and files["unused_prompts"] == ["ghost"]
    assert files["without_transcript"] == ["a0", "bad"] and files["audio_only_gen"] == ["a0", "a1"]
    assert [b["file"] for b in files["broken"]] == [str(gen / "bad.mp4")]
    assert [s["stem"] for s in files["skipped"]["wer"]] == ["v1"] and "empty after" in files["skipped"]["wer"][0][
        "error"
    ]
    for text in ("RANDOM WEIGHTS", "bad.mp4", "ghost", "wer skipped v1", "r_extra"):
        assert text in err
    prov = doc["provenance"]
    assert prov["sample_rates"] == {"gen": [16000, 22050], "ref": [22050]} and prov["video_fps"] == [25.0]
    assert prov["protocol"] == "fastvideo" and prov["library_version"] == torchmetrics_av.__version__
    assert set(prov["backbones"]) >= {"PaSST", "CLAP", "HFWhisper", "Audiobox", "ImageBind"}  # default --asr-backend

    # The same data through the Python API, batched as the CLI batches: generated files with a reference first
    # (a0, v0), then the others (a1, v1; bad.mp4 is undecodable), two per call, then the extra reference.
    bb = {k: tiny_backbone(k) for k in ("passt", "clap", "hf_whisper", "audiobox", "imagebind")}
    fd = FrechetAudioDistance(backbone=bb["passt"], batch_size=2)
    kl = PaSSTKLDivergence(backbone=bb["passt"], batch_size=2)
    clap = CLAPScore(backbone=bb["clap"], batch_size=2)
    wer = SpeechWordErrorRate(backbone=bb["hf_whisper"])
    aes = AudioboxAesthetics(backbone=bb["audiobox"])
    ib = ImageBindScore(backbone=bb["imagebind"])
    a0, sr_a0 = read_audio(gen / "a0.wav")
    a1, sr_a1 = read_audio(gen / "a1.flac")
    v0, sr_v0, f0, fps0 = _video(gen / "v0.mp4")
    v1, sr_v1, f1, fps1 = _video(gen / "v1.mp4")
    r_a0, r_v0, r_x = (read_audio(ref / f"{s}.wav")[0] for s in ("a0", "v0", "r_extra"))
    fd.update(preds=[a0, v0], target=[r_a0, r_v0], sample_rate=[sr_a0, sr_v0], target_sample_rate=22050)
    kl.update([a0, v0], [r_a0, r_v0], sample_rate=[sr_a0, sr_v0], target_sample_rate=22050)
    clap.update([a0, v0], ["rain, on a roof", "a dog barks"], sample_rate=[sr_a0, sr_v0])
    wer.update([v0], ["hello world"], language=["en"], sample_rate=[sr_v0])
    aes.update([a0, v0], sample_rate=[sr_a0, sr_v0])
    ib.update([v0], [f0], sample_rate=[sr_v0], video_fps=[fps0])
    fd.update(preds=[a1, v1], sample_rate=[sr_a1, sr_v1])
    clap.update([a1], ["a violin"], sample_rate=[sr_a1])
    wer.update([a1], ["the cat"], language=[None], sample_rate=[sr_a1])  # alone: v1 was rejected
    aes.update([a1, v1], sample_rate=[sr_a1, sr_v1])
    ib.update([v1], [f1], sample_rate=[sr_v1], video_fps=[fps1])
    fd.update(target=[r_x], target_sample_rate=22050)

    m = doc["metrics"]
    assert m["fd_passt"] == pytest.approx(float(fd.compute()), rel=1e-12)
    assert m["kl_passt"] == pytest.approx(float(kl.compute()), rel=1e-12)
    assert m["clap"] == pytest.approx(float(clap.compute()), rel=1e-12)
    assert m["wer"] == pytest.approx(float(wer.compute()), rel=1e-12)
    assert m["aesthetics"] == pytest.approx({k: float(v) for k, v in aes.compute().items()}, rel=1e-12)
    assert m["imagebind"] == pytest.approx(float(ib.compute()), rel=1e-12)
    assert doc["details"]["wer"]["n_samples"] == 2 and doc["details"]["clap"]["n_samples"] == 3

    with open(per) as f:
        rows = {r["stem"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["a0", "a1", "bad", "v0", "v1"]
    assert rows["bad"]["error"] and rows["bad"]["file"] == "bad.mp4" and rows["bad"]["aesthetics_PQ"] == ""
    num = lambda stems, col: [float(rows[s][col]) for s in stems]  # noqa: E731
    assert num(["a0", "v0"], "kl_passt") == pytest.approx(kl.details["kl_softmax"].tolist(), rel=1e-9)
    assert num(["a0", "v0", "a1"], "clap_cosine") == pytest.approx(clap.details["score"].tolist(), rel=1e-9)
    assert num(["v0", "a1"], "wer") == pytest.approx(wer.details["wer"].tolist(), rel=1e-9)
    assert [rows[s]["wer_transcript"] for s in ("v0", "a1")] == wer.details["transcript"]
    assert "empty after" in rows["v1"]["wer_error"] and rows["v1"]["wer"] == ""
    for axis in ("CE", "CU", "PC", "PQ"):
        assert num(["a0", "v0", "a1", "v1"], f"aesthetics_{axis}") == pytest.approx(aes.details[axis].tolist())
    assert num(["v0", "v1"], "imagebind_cosine") == pytest.approx(ib.details["score"].tolist(), rel=1e-9)
    assert rows["a0"]["imagebind_cosine"] == ""

    if desync_available():
        from torchmetrics_av.av.desync import DeSync

        ds = DeSync(backbone=tiny_backbone("synchformer"))
        ds.update([v0], [f0], sample_rate=[sr_v0], video_fps=[fps0])
        ds.update([v1], [f1], sample_rate=[sr_v1], video_fps=[fps1])
        assert m["desync"] == pytest.approx(float(ds.compute()), rel=1e-12)
        assert num(["v0", "v1"], "desync_offset_front") == ds.details["offset_front"].tolist()
        assert num(["v0", "v1"], "desync_offset_back") == ds.details["offset_back"].tolist()


def test_metric_selection_and_text_file_errors(av_folders, folders, tmp_path, capsys):
    gen, ref, prompts, _ = av_folders
    audio_gen, _ = folders
    base = ["evaluate", "--random-weights", "tiny", "--device", "cpu", "--out", str(tmp_path / "x.json")]
    cases = [
        (["--gen", str(audio_gen), "--metrics", "clap"], "clap needs --prompts"),
        (["--gen", str(audio_gen), "--metrics", "wer"], "wer needs --transcripts"),
        (["--gen", str(audio_gen), "--metrics", "imagebind"], "imagebind needs generated videos"),
        (["--gen", str(audio_gen), "--metrics", "desync"], "desync needs generated videos"),
        (["--gen", str(gen), "--ref", str(ref), "--metrics", "kl_passt,nope"], "unknown metric 'nope'"),
        (["--gen", str(gen), "--prompts", str(tmp_path / "none.csv")], "is not a file"),
        (["--gen", str(gen), "--duration", "8"], "--duration applies to --protocol av-benchmark only"),
    ]
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("file_name,words\nv0,hello\n")
    cases.append((["--gen", str(gen), "--prompts", str(bad_csv)], "a CSV needs a header with a key column"))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('["v0", "hello"]')
    cases.append((["--gen", str(gen), "--transcripts", str(bad_json)], "expected a JSON object"))
    dup = tmp_path / "dup.csv"
    dup.write_text("name,caption\nv0.mp4,a\nv0,b\n")
    cases.append((["--gen", str(gen), "--prompts", str(dup)], "'v0' appears twice"))
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra


@pytest.mark.parametrize(
    ("metric", "filename", "url"),
    [
        ("aesthetics", "audiobox-aesthetics/model.safetensors", "huggingface.co/facebook/audiobox-aesthetics"),
        ("imagebind", "imagebind_huge.pth", "dl.fbaipublicfiles.com/imagebind"),
        ("wer", "whisper-base/model.safetensors", "huggingface.co/openai/whisper-base"),
        ("clap", "clap-htsat-fused", "huggingface.co/laion/clap-htsat-fused"),
        ("desync", "synchformer_state_dict.pth", "github.com/hkchengrex/MMAudio/releases"),
    ],
)
def test_offline_missing_checkpoint_names_file_url_and_weights_dir(
    av_folders, tmp_path, capsys, monkeypatch, metric, filename, url
):
    gen, _, prompts, transcripts = av_folders
    if metric == "desync" and not desync_available():
        pytest.skip("torchmetrics_av.av.desync does not import")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCHMETRICS_AV_CACHE", str(tmp_path / "empty-cache"))
    argv = ["evaluate", "--gen", str(gen), "--transcripts", str(transcripts), "--prompts", str(prompts)]
    argv += ["--metrics", metric, "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert filename in err and url in err and "--weights-dir" in err
    # --weights-dir without the file: the expected name, its URL and the command that fetches it there.
    (tmp_path / "wd").mkdir()
    assert main([*argv, "--weights-dir", str(tmp_path / "wd"), "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert f"missing from {tmp_path / 'wd'}:" in err and filename in err and url in err
    assert f"torchmetrics-av download --weights-dir {tmp_path / 'wd'} " in err


def test_weights_dir_official_file_name(folders, tmp_path):
    """`--weights-dir` finds Whisper's official file name (base.pt) and loads it; equal to the Python API."""
    gen, _ = folders
    wd = tmp_path / "weights"
    wd.mkdir()
    net = tiny_backbone("whisper")
    dims = {**OFFICIAL_DIMS["tiny"], **TINY_CONFIGS["whisper"]["dims"]}
    torch.save({"dims": dims, "model_state_dict": net.model.state_dict()}, wd / "base.pt")
    texts = tmp_path / "t.csv"
    texts.write_text("stem,text,language\nclip0,one two,en\nclip1,three,\nextra,four five six,de\n")
    out = tmp_path / "w.json"
    argv = ["evaluate", "--gen", str(gen), "--transcripts", str(texts), "--metrics", "wer", "--out", str(out)]
    argv += ["--asr-backend", "openai-whisper"]
    assert main([*argv, "--weights-dir", str(wd), "--device", "cpu", "--batch-size", "2"]) == 0
    doc = json.loads(out.read_text())
    assert doc["provenance"]["backbones"]["Whisper"].startswith("base.pt@sha256:")
    assert doc["files"]["without_transcript"] == ["clip2", "clip3"]
    wer = SpeechWordErrorRate(backbone=Whisper(weights=wd / "base.pt", sample_len=None))
    clips = [read_audio(gen / f"{s}.wav")[0] for s in ("clip0", "clip1", "extra")]
    wer.update(clips[:2], ["one two", "three"], language=["en", None], sample_rate=16000)
    wer.update(clips[2:], ["four five six"], language=["de"], sample_rate=16000)
    assert doc["metrics"]["wer"] == pytest.approx(float(wer.compute()), rel=1e-12)


def test_av_benchmark_protocol_and_duration(av_folders, tmp_path, capsys):
    """--protocol av-benchmark --duration reaches every metric that truncates (FD/KL, CLAP unfused, IB, DeSync)."""
    gen, ref, prompts, _ = av_folders
    out = tmp_path / "avb.json"
    metrics = "kl_passt,clap,imagebind" + (",desync" if desync_available() else "")
    argv = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--prompts", str(prompts), "--metrics", metrics]
    argv += ["--protocol", "av-benchmark", "--duration", "4.8", "--random-weights", "tiny", "--batch-size", "4"]
    assert main([*argv, "--out", str(out), "--device", "cpu"]) == 0
    doc = json.loads(out.read_text())
    assert doc["provenance"]["protocol"] == "av-benchmark" and doc["provenance"]["duration_s"] == 4.8
    # Batches of four: (a0, v0) paired, then (a1, v1).
    a0, sr_a0 = read_audio(gen / "a0.wav")
    a1, sr_a1 = read_audio(gen / "a1.flac")
    v0, sr_v0, f0, fps0 = _video(gen / "v0.mp4")
    v1, sr_v1, f1, fps1 = _video(gen / "v1.mp4")
    kl = PaSSTKLDivergence(protocol="av-benchmark", backbone=tiny_backbone("passt"), duration=4.8)
    kl.update([a0, v0], [read_audio(ref / f"{s}.wav")[0] for s in ("a0", "v0")], [sr_a0, sr_v0], 22050)
    clap = CLAPScore(protocol="av-benchmark", backbone=tiny_backbone("clap", protocol="av-benchmark"), duration=4.8)
    clap.update([a0, v0], ["rain, on a roof", "a dog barks"], sample_rate=[sr_a0, sr_v0])
    clap.update([a1], ["a violin"], sample_rate=[sr_a1])
    ib = ImageBindScore(protocol="av-benchmark", backbone=tiny_backbone("imagebind"), duration=4.8)
    ib.update([v0], [f0], sample_rate=[sr_v0], video_fps=[fps0])
    ib.update([v1], [f1], sample_rate=[sr_v1], video_fps=[fps1])
    m = doc["metrics"]
    assert m["kl_passt"] == pytest.approx(float(kl.compute()), rel=1e-12)
    assert m["clap"] == pytest.approx(float(clap.compute()), rel=1e-12)
    assert m["imagebind"] == pytest.approx(float(ib.compute()), rel=1e-12)
    if desync_available():
        from torchmetrics_av.av.desync import DeSync

        ds = DeSync(protocol="av-benchmark", backbone=tiny_backbone("synchformer"), duration=4.8)
        ds.update([v0], [f0], sample_rate=[sr_v0], video_fps=[fps0])
        ds.update([v1], [f1], sample_rate=[sr_v1], video_fps=[fps1])
        assert m["desync"] == pytest.approx(float(ds.compute()), rel=1e-12)
    # A duration the metric cannot use is a readable error, not a traceback.
    if desync_available():
        capsys.readouterr()
        assert main([*argv[:-2], "--duration", "3", "--metrics", "desync", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "desync: `duration` must be" in err and "Traceback" not in err


def _tiny_roberta_tokenizer(folder):
    """A real (byte-level BPE) RoBERTa tokenizer with a tiny vocabulary, saved with save_pretrained."""
    from transformers import RobertaTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({ch: 4 + i for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz,Ġ")})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = RobertaTokenizer(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"))
    tok.save_pretrained(folder)


def test_weights_dir_hf_subfolder(folders, tmp_path, monkeypatch):
    """An HF-directory checkpoint is found as a subfolder of --weights-dir, with its tokenizer (offline)."""
    from transformers import ClapModel

    from torchmetrics_av.backbones.clap import CLAP, small_clap_config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gen, _ = folders
    sub = tmp_path / "weights" / "clap-htsat-fused"
    torch.manual_seed(1)
    ClapModel(small_clap_config(fusion=True)).save_pretrained(sub)
    _tiny_roberta_tokenizer(sub)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps({"clip0": "a dog barks", "clip2.wav": "rain, wind", "extra": "birds"}))
    out = tmp_path / "c.json"
    argv = ["evaluate", "--gen", str(gen), "--prompts", str(prompts), "--metrics", "clap", "--out", str(out)]
    assert main([*argv, "--weights-dir", str(tmp_path / "weights"), "--device", "cpu", "--batch-size", "8"]) == 0
    doc = json.loads(out.read_text())
    assert doc["provenance"]["backbones"]["CLAP"] == "hf-dir:clap-htsat-fused"
    clap = CLAPScore(backbone=CLAP(weights=sub))
    clips = [read_audio(gen / f"{s}.wav")[0] for s in ("clip0", "clip2", "extra")]
    clap.update(clips, ["a dog barks", "rain, wind", "birds"], sample_rate=16000)
    assert doc["metrics"]["clap"] == pytest.approx(float(clap.compute()), rel=1e-12)


def test_default_metric_without_usable_samples_is_null(tmp_path, capsys):
    """A 2 s video: DeSync (needs 4.8 s) rejects it; by default it is reported as null, the others still run."""
    if not desync_available():
        pytest.skip("torchmetrics_av.av.desync does not import")
    gen = tmp_path / "short"
    gen.mkdir()
    _write_video(gen / "s.mp4", 2.0, seed=5)
    out, per = tmp_path / "s.json", tmp_path / "s.csv"
    argv = ["evaluate", "--gen", str(gen), "--random-weights", "tiny", "--device", "cpu", "--out", str(out)]
    assert main([*argv, "--csv", str(per)]) == 0
    doc = json.loads(out.read_text())
    assert list(doc["metrics"]) == ["aesthetics", "imagebind", "desync"]
    assert doc["metrics"]["desync"] is None and "too short" in doc["details"]["desync"]["error"]
    assert doc["files"]["skipped"]["desync"][0]["stem"] == "s" and isinstance(doc["metrics"]["imagebind"], float)
    assert "desync could not be computed" in capsys.readouterr().err
    with open(per) as f:
        row = next(csv.DictReader(f))
    assert "too short" in row["desync_error"] and row["imagebind_cosine"]
    # Asked for explicitly, the same situation is an error.
    assert main([*argv, "--metrics", "desync"]) == 2
    assert "desync: " in capsys.readouterr().err


def test_random_weights_is_a_documented_option(capsys):
    for command in ("evaluate", "reference"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        assert "--random-weights {tiny,full}" in help_text and "RANDOM WEIGHTS banner" in help_text


def test_a_new_metric_is_one_spec(folders, tmp_path, monkeypatch):
    """A spec added to the registry runs with no other change: its value, its CSV column, a shared backbone."""
    from torchmetrics_av.cli.feeds import Paired
    from torchmetrics_av.cli.registry import MetricSpec

    spec = METRICS["kl_passt"]
    monkeypatch.setitem(
        METRICS, "kl_copy", MetricSpec("passt", Paired(), spec.build, columns={"kl_copy": "kl_softmax"})
    )
    gen, ref = folders
    out, per = tmp_path / "n.json", tmp_path / "n.csv"
    argv = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--metrics", "kl_passt,kl_copy", "--csv", str(per)]
    assert main([*argv, "--out", str(out), "--random-weights", "tiny", "--device", "cpu"]) == 0
    doc = json.loads(out.read_text())
    assert doc["metrics"]["kl_copy"] == doc["metrics"]["kl_passt"] and list(doc["provenance"]["backbones"]) == ["PaSST"]
    with open(per) as f:
        rows = list(csv.DictReader(f))
    assert [r["kl_copy"] for r in rows] == [r["kl_passt"] for r in rows] and rows[0]["kl_copy"]
