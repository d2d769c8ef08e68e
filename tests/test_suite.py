"""av_benchmark_suite: av-benchmark's key set, its pairing rules, one forward per clip per model, the same values as
the separate metrics, all-or-nothing updates, lazy shared backbones, DDP (tiny backbones, offline)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.ddp import run_ddp
from torchmetrics_av import (
    AVBenchmarkSuite,
    CLAPScore,
    FrechetAudioDistance,
    InceptionScore,
    KLDivergence,
    av_benchmark_suite,
)
from torchmetrics_av.suites import AVBENCH_KEYS, SUITE_BACKBONES
from torchmetrics_av.testing import tiny_backbone

SR = 16000
AUDIO_KEYS = [
    "FD-VGG",
    "FD-PANN",
    "FD-PASST",
    "KL-PANNS-softmax",
    "KL-PASST-softmax",
    "ISC-PANNS-mean",
    "ISC-PANNS-std",
    "ISC-PASST-mean",
    "ISC-PASST-std",
]
CLAP_KEYS = ["LAION-CLAP-Score", "MS-CLAP-Score"]
# av-benchmark 050a5cdb evaluate.py `output_metrics` keys, written out here independently of the library's table.
EXPECTED_AVBENCH_KEYS = (
    "FD-VGG FD-PANN FD-PASST KL-PANNS-softmax KL-PASST-softmax ISC-PANNS-mean ISC-PANNS-std ISC-PASST-mean "
    "ISC-PASST-std IB-Score DeSync LAION-CLAP-Score MS-CLAP-Score"
).split()
# Suite vs separate metrics on fresh backbones of the same seed: only float32 batch-composition noise differs.
RTOL, ATOL = 1e-5, 1e-7


def tones(n: int, seed: int, seconds: float = 2.0) -> list[torch.Tensor]:
    """Clips that differ in pitch, level and noise (so that tiny random models give different outputs)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    out = []
    for _ in range(n):
        f, a, s = 100 + 3000 * torch.rand(1, generator=g).item(), 0.05 + 0.6 * torch.rand(1, generator=g).item(), 0.3
        noise = s * torch.rand(1, generator=g).item() * torch.randn(t.shape, generator=g)
        out.append((a * torch.sin(2 * math.pi * f * t) + noise).clamp(-1, 1))
    return out


def audio_backbones(**overrides) -> dict[str, torch.nn.Module]:
    return {name: tiny_backbone(name, **overrides.get(name, {})) for name in ("passt", "panns", "vggish")}


def text_backbones() -> dict[str, torch.nn.Module]:
    return {"clap": tiny_backbone("clap", protocol="av-benchmark"), "msclap": tiny_backbone("msclap")}


class Rows:
    """Counts the rows (clips, or VGGish examples) each model's forward sees."""

    def __init__(self, backbones: dict[str, torch.nn.Module]) -> None:
        self.rows = dict.fromkeys(backbones, 0)
        targets = {
            "passt": lambda m: m,
            "panns": lambda m: m,
            "vggish": lambda m: m.model,
            "msclap": lambda m: m.model.audio_encoder,
        }
        for name, bb in backbones.items():
            if name in targets:
                targets[name](bb).register_forward_hook(self._hook(name))
            elif name == "clap":
                original = bb.embed_features

                def embed_features(feats, *args, _f=original, **kwargs):
                    self.rows["clap"] += feats.shape[0]
                    return _f(feats, *args, **kwargs)

                bb.embed_features = embed_features

    def _hook(self, name: str):
        def hook(module, args, out) -> None:
            self.rows[name] += args[0].shape[0]

        return hook


# Data of the tests: 10 pairs (ids 0-9), 2 generated clips without a reference (ids 10, 11), 3 references without a
# generated clip (ids 20-22), captions for pairs 0-2.
N_PAIRS = 10


def data():
    gen, ref = tones(12, seed=1), tones(13, seed=2)
    return {
        "pairs": (gen[:N_PAIRS], ref[:N_PAIRS], list(range(N_PAIRS))),
        "gen_only": (gen[N_PAIRS:], [10, 11]),
        "ref_only": (ref[N_PAIRS:], [20, 21, 22]),
        "text": ["a dog barks", "rain on a tin roof", "an engine idles"],
    }


def feed(suite: AVBenchmarkSuite, d: dict, text: bool = False) -> None:
    p, t, ids = d["pairs"]
    if text:
        suite.update(preds=p[:3], target=t[:3], text=d["text"], ids=ids[:3])
        suite.update(preds=p[3:], target=t[3:], ids=ids[3:])
    else:
        suite.update(preds=p, target=t, ids=ids)
    suite.update(preds=d["gen_only"][0], ids=d["gen_only"][1])
    suite.update(target=d["ref_only"][0], ids=d["ref_only"][1])


# ---------------------------------------------------------------------------------------------------------------------
# keys, forwards, pairing


def test_output_keys_are_av_benchmarks():
    assert list(AVBENCH_KEYS) == EXPECTED_AVBENCH_KEYS
    assert SUITE_BACKBONES == ("passt", "panns", "vggish", "clap", "msclap", "imagebind", "synchformer")
    suite = av_benchmark_suite(audio_backbones(), sample_rate=SR)
    assert isinstance(suite, AVBenchmarkSuite)
    assert sorted(suite.keys()) == sorted(
        [k for k in EXPECTED_AVBENCH_KEYS if not k.startswith("ISC")] + ["ISC-PANNS", "ISC-PASST"]
    )
    assert {m.protocol for m in suite.values()} == {"av-benchmark"}


@pytest.fixture(scope="module")
def audio_run():
    """One suite fed with the test data, audio only, and the rows its models saw."""
    bbs = audio_backbones()
    rows = Rows(bbs)
    suite = av_benchmark_suite(bbs, sample_rate=SR)
    feed(suite, data())
    return suite, rows


@pytest.fixture(scope="module")
def text_run():
    """The same with captions for pairs 0-2 and the two CLAP models."""
    bbs = {**audio_backbones(), **text_backbones()}
    rows = Rows(bbs)
    suite = av_benchmark_suite(bbs, sample_rate=SR)
    feed(suite, data(), text=True)
    return suite, rows


def test_audio_only_nine_keys_finite_one_forward_per_clip(audio_run):
    suite, rows = audio_run
    out = suite.compute()
    assert list(out) == AUDIO_KEYS
    assert all(v.dtype == torch.float64 and v.ndim == 0 and bool(torch.isfinite(v)) for v in out.values())
    # PaSST only sees the pairs; PANNs and VGGish every clip; each clip once (VGGish: two 0.96 s examples of 2 s).
    assert rows.rows == {"passt": 2 * N_PAIRS, "panns": 12 + 13, "vggish": 2 * (12 + 13)}


def test_pairing_follows_av_benchmark(audio_run):
    suite, _ = audio_run
    suite.compute()
    for key in ("FD-VGG", "FD-PANN"):  # all generated vs all references
        details = suite[key].details
        rows_per_clip = 2 if key == "FD-VGG" else 1
        assert (details["n_preds"], details["n_target"]) == (12 * rows_per_clip, 13 * rows_per_clip)
    fd = suite["FD-PASST"].details  # the pairs only, on both sides
    assert (fd["n_preds"], fd["n_target"]) == (N_PAIRS, N_PAIRS)
    for key in ("KL-PANNS-softmax", "KL-PASST-softmax", "ISC-PASST"):
        assert suite[key].per_sample()["ids"].tolist() == list(range(N_PAIRS))
    assert suite["ISC-PANNS"].per_sample()["ids"].tolist() == [*range(N_PAIRS), 10, 11]  # every generated clip


def test_text_adds_the_two_clap_keys_one_forward_per_clip(text_run):
    suite, rows = text_run
    out = suite.compute()
    assert list(out) == AUDIO_KEYS + CLAP_KEYS and all(bool(torch.isfinite(v)) for v in out.values())
    assert rows.rows == {"passt": 2 * N_PAIRS, "panns": 25, "vggish": 50, "clap": 3, "msclap": 3}
    assert suite["MS-CLAP-Score"].per_sample()["ids"].tolist() == [0, 1, 2]


def test_values_equal_the_separate_metrics(text_run):
    suite, _ = text_run
    d = data()
    out = suite.compute()
    (p, t, ids), (g, gid), (r, rid) = d["pairs"], d["gen_only"], d["ref_only"]
    kw = {"sample_rate": SR, "protocol": "av-benchmark"}

    def fresh(name: str) -> torch.nn.Module:  # same seed, own instance: no memo shared with the suite
        return tiny_backbone(name, **({"protocol": "av-benchmark"} if name == "clap" else {}))

    expected = {}
    for key, name in (("FD-VGG", "vggish"), ("FD-PANN", "panns")):
        fd = FrechetAudioDistance(backbone=fresh(name), **kw)
        fd.update(preds=p + g, target=t + r, ids=ids + gid, target_ids=ids + rid)
        expected[key] = fd.compute()
    fd = FrechetAudioDistance(backbone=fresh("passt"), **kw)
    fd.update(preds=p, target=t, ids=ids, target_ids=ids)
    expected["FD-PASST"] = fd.compute()
    for key, name in (("KL-PANNS-softmax", "panns"), ("KL-PASST-softmax", "passt")):
        kl = KLDivergence(backbone=fresh(name), **kw)
        kl.update(p, t, ids=ids)
        expected[key] = kl.compute()
    for key, name, clips, cids in (("ISC-PANNS", "panns", p + g, ids + gid), ("ISC-PASST", "passt", p, ids)):
        isc = InceptionScore(backbone=fresh(name), **kw)
        isc.update(clips, ids=cids)
        expected[f"{key}-mean"], expected[f"{key}-std"] = isc.compute(), isc.details["inception_score_std"]
    for key, model, name in (("LAION-CLAP-Score", "laion", "clap"), ("MS-CLAP-Score", "ms-clap-2023", "msclap")):
        clap = CLAPScore(model=model, backbone=fresh(name), **kw)
        clap.update(p[:3], d["text"], ids=ids[:3])
        expected[key] = clap.compute()
    for key in AUDIO_KEYS + CLAP_KEYS:
        torch.testing.assert_close(out[key], expected[key].double(), rtol=RTOL, atol=ATOL, msg=key)


def test_missing_inputs_leave_keys_out():
    gen = tones(10, seed=3)
    suite = av_benchmark_suite({**audio_backbones(), **text_backbones()}, sample_rate=SR)
    with pytest.raises(ValueError, match="nothing to compute"):
        suite.compute()
    suite.update(preds=gen)  # generated clips only: no reference, no caption, no video
    assert list(suite.compute()) == ["ISC-PANNS-mean", "ISC-PANNS-std"]
    suite.update(target=tones(3, seed=4))  # references alone: FD-VGG / FD-PANN, not the paired keys
    assert list(suite.compute()) == ["FD-VGG", "FD-PANN", "ISC-PANNS-mean", "ISC-PANNS-std"]
    suite.reset()
    with pytest.raises(ValueError, match="nothing to compute"):
        suite.compute()
    suite.update(preds=gen[:2], target=gen[2:4])  # two pairs: ISC cannot make 10 splits -> an error naming the key
    with pytest.raises(ValueError, match=r"^ISC-PANNS: .*splits=10"):
        suite.compute()
    assert float(suite["FD-PASST"].compute()) >= 0  # the others are still there, one by one


def test_video_adds_ib_and_desync():
    g = torch.Generator().manual_seed(5)
    bbs = {**audio_backbones(), "imagebind": tiny_backbone("imagebind"), "synchformer": tiny_backbone("synchformer")}
    suite = av_benchmark_suite(bbs, sample_rate=SR, video_fps=25.0, duration=5.0)
    audio = torch.rand(2, 5 * SR, generator=g) - 0.5
    video = torch.randint(0, 256, (2, 125, 3, 36, 64), dtype=torch.uint8, generator=g)
    suite.update(preds=audio, video=video, ids=[0, 1])
    suite.update(preds=tones(10, seed=6), ids=list(range(2, 12)))
    out = suite.compute()
    assert list(out) == ["ISC-PANNS-mean", "ISC-PANNS-std", "IB-Score", "DeSync"]
    assert suite["IB-Score"].details["n_samples"] == 2 and suite["DeSync"].details["n_samples"] == 2
    assert 0.0 <= float(out["DeSync"]) <= 2.0 and -1.0 <= float(out["IB-Score"]) <= 1.0


# ---------------------------------------------------------------------------------------------------------------------
# life cycle


def test_forward_gives_the_batch_and_accumulates():
    d = data()
    p, t, ids = d["pairs"]
    suite = av_benchmark_suite(audio_backbones(), sample_rate=SR)
    batch = suite(preds=p, target=t, ids=ids)
    assert list(batch) == AUDIO_KEYS
    whole = suite.compute()
    for key in AUDIO_KEYS:  # one batch so far: its value is the accumulated one
        torch.testing.assert_close(batch[key], whole[key], rtol=0, atol=0, msg=key)
    assert list(suite(preds=d["gen_only"][0], ids=d["gen_only"][1])) == []  # 2 clips: no FD, no 10-split ISC
    assert suite["ISC-PANNS"].per_sample()["ids"].tolist() == [*range(N_PAIRS), 10, 11]


def test_a_failing_member_leaves_every_member_unchanged():
    p, t, ids = data()["pairs"]
    bbs = {**audio_backbones(), **text_backbones()}
    rows = Rows(bbs)
    suite = av_benchmark_suite(bbs, sample_rate=SR)
    suite.update(preds=p[:3], target=t[:3], ids=ids[:3])
    state = {k: m.per_sample() for k, m in suite.items() if k.startswith(("KL", "ISC"))}
    fd = {k: suite[k].compute() for k in ("FD-VGG", "FD-PANN", "FD-PASST")}
    short = [p[3][: SR // 2]]  # 0.5 s: enough for CLAP, too short for VGGish (0.975 s)
    with pytest.raises(ValueError, match="VGGish"):
        suite.update(preds=short, target=[t[3]], text=["a beep"], ids=[3])  # the CLAP members run before FD-VGG
    assert rows.rows["clap"] == rows.rows["msclap"] == 1  # they ran ...
    for key in CLAP_KEYS:  # ... but kept nothing
        assert suite[key]._update_count == 0 and suite[key].per_sample()["ids"].numel() == 0
    for key, before in state.items():
        after = suite[key].per_sample()
        assert all(torch.equal(after[c], before[c]) for c in before), key
    for key, before in fd.items():
        assert torch.equal(suite[key].compute(), before), key
    with pytest.raises(ValueError, match=r"^ISC-PANNS: "):  # no caption was kept: no CLAP key is asked for
        suite.compute()


def test_memo_holds_a_batch_larger_than_its_cache():
    p, t, ids = data()["pairs"]
    bbs = audio_backbones(passt={"cache_size": 3}, panns={"cache_size": 3})
    rows = Rows(bbs)
    suite = av_benchmark_suite(bbs, sample_rate=SR)
    suite.update(preds=p[:4], target=t[:4], ids=ids[:4])  # 8 model inputs for a memo of 3
    assert rows.rows["passt"] == 8 and rows.rows["panns"] == 8
    assert bbs["passt"].cache_size == 3 and bbs["panns"].cache_size == 3  # the user's setting is back


def test_missing_backbones_are_built_once_lazily(monkeypatch):
    built = []

    def official(name: str, crop_seed: int) -> torch.nn.Module:
        built.append(name)
        return tiny_backbone(name)

    monkeypatch.setattr("torchmetrics_av.suites._build_official", official)
    suite = av_benchmark_suite(sample_rate=SR)
    assert built == []
    p, t, ids = data()["pairs"]
    suite.update(preds=p[:3], target=t[:3], ids=ids[:3])
    assert sorted(built) == ["panns", "passt", "vggish"]  # once each, for FD, KL and IS together
    assert sorted(suite.backbones) == ["panns", "passt", "vggish"]
    for name, keys in (("passt", ("FD-PASST", "KL-PASST-softmax", "ISC-PASST")), ("panns", ("FD-PANN", "ISC-PANNS"))):
        assert all(suite[key].backbone is suite.backbones[name] for key in keys)
    # (FD's moments are sized for the official widths; these stand-ins are narrower, so only KL is computed.)
    assert suite["KL-PANNS-softmax"].per_sample()["ids"].tolist() == [0, 1, 2]
    assert float(suite["KL-PASST-softmax"].compute()) >= 0


def test_bad_arguments():
    bbs = audio_backbones()
    with pytest.raises(ValueError, match="unknown key 'pann'"):
        av_benchmark_suite({"pann": bbs["panns"]})
    with pytest.raises(ValueError, match=r"`backbones\['panns'\]` must be a torchmetrics_av.backbones.PANNs"):
        av_benchmark_suite({"panns": bbs["passt"]})
    with pytest.raises(ValueError, match="CLAP\\(protocol='av-benchmark'\\)"):
        av_benchmark_suite({"clap": tiny_backbone("clap")})
    with pytest.raises(ValueError, match="cache_size"):
        av_benchmark_suite({"panns": tiny_backbone("panns", cache_size=0)})
    with pytest.raises(ValueError, match="drop `protocol`"):
        av_benchmark_suite(protocol="fastvideo")
    with pytest.raises(ValueError, match="`batch_size`"):
        av_benchmark_suite(batch_size=0)
    suite = av_benchmark_suite(bbs, sample_rate=SR)
    clips = tones(2, seed=7)
    with pytest.raises(ValueError, match="give `preds`.* and/or `target`"):
        suite.update()
    with pytest.raises(ValueError, match="in one call they are pairs"):
        suite.update(preds=clips, target=clips[:1])
    with pytest.raises(ValueError, match="`text` belongs to generated clips"):
        suite.update(target=clips, text=["a", "b"])
    with pytest.raises(ValueError, match=r"`text` has 1 texts for 2 clips"):
        suite.update(preds=clips, text=["a"])
    with pytest.raises(ValueError, match="`video` has 1 videos for 2 clips"):
        suite.update(preds=clips, video=torch.zeros(1, 4, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="`ids` must hold one integer per sample"):
        suite.update(preds=clips, ids=[0])
    with pytest.raises(ValueError, match="`sample_rate` is required"):
        av_benchmark_suite(bbs).update(preds=clips)
    with pytest.raises(ValueError, match="nothing to compute"):
        suite.compute()  # every failed call above added nothing


# ---------------------------------------------------------------------------------------------------------------------
# DDP


def _ddp_worker(rank: int, world: int) -> dict[str, float]:
    d = data()
    p, t, ids = d["pairs"]
    suite = av_benchmark_suite(audio_backbones(), sample_rate=SR)
    mine = [i for i in range(N_PAIRS) if i % world == rank] + [0] * rank  # rank 1 repeats pair 0 (sampler padding)
    suite.update(preds=[p[i] for i in mine], target=[t[i] for i in mine], ids=[ids[i] for i in mine])
    if rank == 0:  # the unpaired clips only reach one rank
        suite.update(preds=d["gen_only"][0], ids=d["gen_only"][1])
    else:
        suite.update(target=d["ref_only"][0], ids=d["ref_only"][1])
    return {k: float(v) for k, v in suite.compute().items()}


@pytest.mark.ddp
def test_ddp_two_ranks_equal_one(audio_run):
    results = run_ddp(_ddp_worker, 2)
    single = {k: float(v) for k, v in audio_run[0].compute().items()}  # the same data in one process
    for rank_values in results:
        assert list(rank_values) == AUDIO_KEYS
        for key in AUDIO_KEYS:
            assert rank_values[key] == pytest.approx(single[key], rel=RTOL, abs=ATOL), key


# ---------------------------------------------------------------------------------------------------------------------
# CLI: --protocol av-benchmark --avbench-json


def test_cli_avbench_json_writes_av_benchmarks_keys_only(tmp_path, capsys):
    import json

    import soundfile

    from torchmetrics_av.cli import main
    from torchmetrics_av.cli.backbones import random_backbone

    d = data()
    (p, t, ids), (g, _), (r, _) = d["pairs"], d["gen_only"], d["ref_only"]
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    stems = [f"s{i:02d}" for i in range(N_PAIRS)]
    for stem, a, b in zip(stems, p, t):
        soundfile.write(gen / f"{stem}.wav", a.numpy(), SR, subtype="FLOAT")
        soundfile.write(ref / f"{stem}.wav", b.numpy(), SR, subtype="FLOAT")
    for i, a in enumerate(g):
        soundfile.write(gen / f"u{i}.wav", a.numpy(), SR, subtype="FLOAT")
    for i, b in enumerate(r):
        soundfile.write(ref / f"x{i}.wav", b.numpy(), SR, subtype="FLOAT")
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("name,caption\n" + "".join(f"{s},{c}\n" for s, c in zip(stems, d["text"])))
    out, avb = tmp_path / "r.json", tmp_path / "output_metrics.json"
    argv = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--prompts", str(prompts), "--out", str(out)]
    argv += ["--random-weights", "tiny", "--device", "cpu", "--batch-size", "4"]
    assert main([*argv, "--avbench-json", str(avb)]) == 2  # fastvideo numbers under av-benchmark's names: refused
    assert "--avbench-json" in capsys.readouterr().err and not avb.exists()
    assert main([*argv, "--protocol", "av-benchmark", "--avbench-json", str(avb)]) == 0
    written = json.loads(avb.read_text())
    assert list(written) == AUDIO_KEYS + CLAP_KEYS  # av-benchmark's names, in its order, and nothing else
    assert all(isinstance(v, float) and math.isfinite(v) for v in written.values())
    doc = json.loads(out.read_text())
    assert {"fd_vgg", "fd_panns", "kl_panns", "isc_panns", "isc_passt", "msclap"} <= set(doc["metrics"])
    assert "aesthetics" in doc["metrics"]  # in the default set, not an av-benchmark key
    assert written["FD-PANN"] == doc["metrics"]["fd_panns"]
    assert written["ISC-PANNS-std"] == doc["details"]["isc_panns"]["inception_score_std"]
    # The same numbers as the suite on the same clips, models and batches (the CLI feeds 4 files at a time, pairs
    # first): FD-PASST on the pairs only, FD-PANN / FD-VGG on every file.
    bbs = {k: random_backbone(k, "tiny", "av-benchmark") for k in ("passt", "panns", "vggish", "clap", "msclap")}
    suite = av_benchmark_suite(bbs, sample_rate=SR)
    suite.update(preds=p[:3], target=t[:3], text=d["text"], ids=ids[:3])
    suite.update(preds=p[3:4], target=t[3:4], ids=ids[3:4])
    for s in range(4, N_PAIRS, 4):
        suite.update(preds=p[s : s + 4], target=t[s : s + 4], ids=ids[s : s + 4])
    suite.update(preds=g, ids=[10, 11])
    suite.update(target=r)
    expected = suite.compute()
    for key in AUDIO_KEYS + CLAP_KEYS:
        assert written[key] == pytest.approx(float(expected[key]), rel=RTOL, abs=ATOL), key


def test_plot(audio_run):
    import matplotlib

    matplotlib.use("Agg")
    suite, _ = audio_run
    figures = suite.plot()
    assert len(figures) == 7  # one per member with keys: 5 FD/KL + the two ISC pairs
    fig, ax = suite.plot(together=True)
    assert fig is not None
    with pytest.raises(ValueError, match="`ax` has 1 axes for 7"):
        suite.plot(ax=[ax])
