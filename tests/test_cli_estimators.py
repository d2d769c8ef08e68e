"""``evaluate --bootstrap`` / ``--fd-inf``: the JSON equals the Python API fed the same files, the draws follow the
seed, FD∞ and KAD equal the functional estimators (and KAD a NumPy recomputation) on the same embeddings, the report
shows the intervals, and a CI or estimate that cannot be formed is a listed reason, not a failed run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from scipy.spatial.distance import cdist, pdist

from tests.test_fad import audio_batch
from tests.test_report import _parse
from torchmetrics_av import FrechetAudioDistance, PaSSTKLDivergence
from torchmetrics_av.cli import main
from torchmetrics_av.functional import fd_infinity, kernel_audio_distance
from torchmetrics_av.functional.infinity import infinity_sizes
from torchmetrics_av.testing import tiny_backbone

N_PAIRS, BATCH = 5, 3  # stems clip0..4 paired, plus one generated file without a reference
BOOT = {"num": 40, "seed": 3, "ci": 0.9}
INF = {"steps": 5, "min_n": 3}
# float64 KAD against a float64 NumPy recomputation: summation order only.
KAD_F64_RTOL = 1e-9
BANDWIDTH_RTOL = 1e-6


@pytest.fixture
def folders(tmp_path):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    g, r = audio_batch(N_PAIRS + 1, seconds=1.0, seed=11), audio_batch(N_PAIRS, seconds=1.2, seed=12)
    for i in range(N_PAIRS):
        soundfile.write(gen / f"clip{i}.wav", g[i].numpy(), 16000, subtype="FLOAT")
        soundfile.write(ref / f"clip{i}.wav", r[i].numpy(), 16000, subtype="FLOAT")
    soundfile.write(gen / "extra.wav", g[N_PAIRS].numpy(), 16000, subtype="FLOAT")
    return gen, ref


def _evaluate(gen, ref, out, *extra: str, metrics: str = "fd_passt,kl_passt") -> dict:
    argv = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--out", str(out), "--metrics", metrics]
    argv += ["--random-weights", "tiny", "--device", "cpu", "--batch-size", str(BATCH), *extra]
    assert main(argv) == 0
    return json.loads(out.read_text())


def _boot_args(**over) -> list[str]:
    b = {**BOOT, **over}
    return ["--bootstrap", str(b["num"]), "--bootstrap-seed", str(b["seed"]), "--ci", str(b["ci"])]


def _python_api(gen, ref) -> tuple[FrechetAudioDistance, PaSSTKLDivergence]:
    """FD (rows kept) and KL fed as the CLI feeds them: the pairs in batches of BATCH, then the unpaired file."""
    net = tiny_backbone("passt")
    fd = FrechetAudioDistance(backbone=net, batch_size=BATCH, keep_rows=True)
    kl = PaSSTKLDivergence(backbone=net, batch_size=BATCH)

    def read(path):
        data, _ = soundfile.read(str(path), dtype="float32")
        return torch.from_numpy(data)

    gens = [read(gen / f"clip{i}.wav") for i in range(N_PAIRS)]
    refs = [read(ref / f"clip{i}.wav") for i in range(N_PAIRS)]
    for start in range(0, N_PAIRS, BATCH):
        sl = slice(start, start + BATCH)
        fd.update(preds=gens[sl], target=refs[sl], sample_rate=16000)
        kl.update(gens[sl], refs[sl], sample_rate=16000, ids=list(range(N_PAIRS))[sl])
    fd.update(preds=[read(gen / "extra.wav")], sample_rate=16000)
    fd.compute()
    kl.compute()
    return fd, kl


def test_bootstrap_equals_the_metrics_bootstrap(folders, tmp_path):
    gen, ref = folders
    doc = _evaluate(gen, ref, tmp_path / "a.json", *_boot_args())
    fd, kl = _python_api(gen, ref)
    for name, metric in (("fd_passt", fd), ("kl_passt", kl)):
        got = doc["details"][name]["bootstrap"]
        want = metric.bootstrap(**BOOT)
        assert {k: got[k] for k in ("num", "seed", "ci")} == BOOT
        assert got["value"] == pytest.approx(doc["metrics"][name], rel=1e-12)
        for key in ("value", "low", "high", "std"):
            assert got[key] == pytest.approx(float(want[key]), rel=1e-9), (name, key)
        assert got["low"] <= got["high"] and got["std"] > 0


def test_bootstrap_follows_the_seed(folders, tmp_path):
    gen, ref = folders
    a = _evaluate(gen, ref, tmp_path / "a.json", *_boot_args(), metrics="kl_passt")
    b = _evaluate(gen, ref, tmp_path / "b.json", *_boot_args(), metrics="kl_passt")
    c = _evaluate(gen, ref, tmp_path / "c.json", *_boot_args(seed=4), metrics="kl_passt")
    boot = [d["details"]["kl_passt"]["bootstrap"] for d in (a, b, c)]
    assert boot[0] == boot[1]
    assert boot[2]["value"] == boot[0]["value"] and boot[2]["seed"] == 4
    assert (boot[2]["low"], boot[2]["high"], boot[2]["std"]) != (boot[0]["low"], boot[0]["high"], boot[0]["std"])


def _kad_numpy(preds: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """kadtk's KAD in float64 and its bandwidth: Gaussian kernel, bandwidth = lower median of the generated set's
    pairwise distances, ×100."""
    dist = np.sort(pdist(preds.astype(np.float32).astype(np.float64)))
    bandwidth = dist[(len(dist) - 1) // 2]
    gamma = 1.0 / (2.0 * bandwidth**2 + 1e-8)

    def mean_kernel(a, b, drop_diagonal):
        k = np.exp(-gamma * cdist(a, b, "sqeuclidean"))
        if drop_diagonal:
            return (k.sum() - np.trace(k)) / (len(a) * (len(a) - 1))
        return k.mean()

    mmd = mean_kernel(target, target, True) + mean_kernel(preds, preds, True) - 2 * mean_kernel(target, preds, False)
    return 100.0 * mmd, float(bandwidth)


def test_fd_inf_and_kad_equal_the_functional_estimators(folders, tmp_path):
    gen, ref = folders
    extra = ["--fd-inf", "--fd-inf-steps", str(INF["steps"]), "--fd-inf-min-n", str(INF["min_n"]), "--bootstrap-seed"]
    doc = _evaluate(gen, ref, tmp_path / "a.json", *extra, "7")
    assert list(doc["metrics"]) == ["fd_passt", "fd_passt_inf", "kad_passt", "kl_passt"]
    fd, _ = _python_api(gen, ref)
    rows = fd.per_sample()
    preds, target = rows["preds_embeddings"], rows["target_embeddings"]
    assert (preds.shape[0], target.shape[0]) == (N_PAIRS + 1, N_PAIRS)

    # FastVideo's protocol adds eps·I to both covariances ("always"), as the metric does.
    want = fd_infinity(preds, target, **INF, seed=7, eps=fd.eps, eps_policy="always", method="auto")
    inf, d = doc["metrics"]["fd_passt_inf"], doc["details"]["fd_passt_inf"]
    assert inf == pytest.approx(float(want["value"]), rel=1e-9)
    assert d["slope"] == pytest.approx(float(want["slope"]), rel=1e-9)
    assert d["r2"] == pytest.approx(float(want["r2"]), rel=1e-9, abs=1e-12)
    assert [p[0] for p in d["points"]] == infinity_sizes(N_PAIRS + 1, **INF)
    assert np.allclose([p[1] for p in d["points"]], want["points"][:, 1].numpy(), rtol=1e-9, atol=0)
    assert (d["seed"], d["steps"], d["min_n"], d["n_preds"], d["n_target"]) == (7, 5, 3, N_PAIRS + 1, N_PAIRS)

    kad = doc["metrics"]["kad_passt"]
    assert kad == pytest.approx(float(kernel_audio_distance(preds, target)), rel=1e-9, abs=1e-12)
    # kadtk's float32 norm expansion loses digits on these near-identical tiny-model rows (measured: 4e-4 relative),
    # so the float64 formula is checked against the same estimator in float64 on the same rows and bandwidth.
    want_kad, bandwidth = _kad_numpy(preds.numpy(), target.numpy())
    f64 = float(kernel_audio_distance(preds, target, bandwidth=bandwidth, dtype=torch.float64))
    assert f64 == pytest.approx(want_kad, rel=KAD_F64_RTOL)
    # The metric's median is float32 (kadtk), the NumPy one float64 (golden README estimators §7: rtol 1e-6).
    assert doc["details"]["kad_passt"]["bandwidth"] == pytest.approx(bandwidth, rel=BANDWIDTH_RTOL)
    assert doc["details"]["kad_passt"]["n_preds"] == N_PAIRS + 1
    assert "bootstrap" not in doc["details"]["kad_passt"]  # only with --bootstrap


def test_fd_inf_without_reference_rows_is_a_reason(folders, tmp_path):
    gen, ref = folders
    stats = tmp_path / "stats.pt"
    tiny = ["--random-weights", "tiny", "--device", "cpu"]
    assert main(["reference", "--ref", str(ref), "--out", str(stats), *tiny]) == 0
    out = tmp_path / "a.json"
    argv = ["evaluate", "--gen", str(gen), "--ref-stats", str(stats), "--out", str(out), "--metrics", "fd_passt"]
    assert main([*argv, *tiny, "--fd-inf", *_boot_args()]) == 0
    doc = json.loads(out.read_text())
    assert doc["metrics"]["fd_passt"] is not None
    assert doc["metrics"]["fd_passt_inf"] is None and doc["metrics"]["kad_passt"] is None
    for key in ("fd_passt_inf", "kad_passt"):
        assert "load_reference_stats" in doc["details"][key]["error"]
    # The bootstrap keeps the loaded reference statistics fixed and resamples the generated clips.
    boot = doc["details"]["fd_passt"]["bootstrap"]
    assert "error" not in boot and boot["low"] <= boot["high"]


def test_report_shows_the_ci_and_the_reasons(folders, tmp_path, monkeypatch, capsys):
    gen, ref = folders

    def refuse(self, **kwargs):
        raise ValueError("too few pairs to resample")

    monkeypatch.setattr(PaSSTKLDivergence, "bootstrap", refuse)
    report = tmp_path / "r.html"
    doc = _evaluate(gen, ref, tmp_path / "a.json", *_boot_args(), "--report", str(report))
    assert doc["details"]["kl_passt"]["bootstrap"] == {"error": "too few pairs to resample", **BOOT}
    assert doc["metrics"]["kl_passt"] is not None  # the run and the value are unaffected
    html = report.read_text(encoding="utf-8")
    corpus = {r[0]: r for r in _parse(html).tables["Corpus values"][1:]}
    boot = doc["details"]["fd_passt"]["bootstrap"]
    assert float(corpus["fd_passt"][5]) == pytest.approx(boot["low"], rel=1e-5)
    assert float(corpus["fd_passt"][6]) == pytest.approx(boot["high"], rel=1e-5)
    assert corpus["kl_passt"][5:] == ["—", "—"]
    assert "90 % percentile bootstrap interval of 40 resamples (seed 3)" in html
    assert "No bootstrap CI for kl_passt: too few pairs to resample" in html
    assert "warning: no bootstrap CI for kl_passt: too few pairs to resample" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--bootstrap", "1", "integer >= 2"), ("--ci", "95", "(0, 1)"), ("--bootstrap-seed", "-1", "[0, 2**32)")],
)
def test_bad_estimator_options(folders, tmp_path, capsys, option, value, message):
    gen, ref = folders
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--gen", str(gen), "--ref", str(ref), "--random-weights", "tiny", option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and message in err


def test_readme_paired_bootstrap_snippet_runs(capsys):
    """The README's estimators section: its paired-bootstrap snippet runs offline and means what it says."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Estimators:", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own snippet
    out, per_pair = scope["out"], scope["per_pair"]
    a, b = per_pair["A"].numpy(), per_pair["B"].numpy()
    assert float(out["difference"]) == pytest.approx(float(np.mean(a - b)), rel=1e-12)
    # Model A is the reference plus faint noise, B unrelated noise: A's KL is lower on every draw.
    assert float(out["high"]) < 0 and float(out["p_value"]) < 0.01
    assert "p_value" in capsys.readouterr().out
