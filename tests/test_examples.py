"""Every example runs (small configs / random weights, labelled as such), and the multi-process ones agree with one
process: Lightning ``ddp_spawn`` with 2 CPU processes, and ``torchrun --nproc_per_node=2``."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    out = subprocess.run([*args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_passt_example_runs():
    out = _run(sys.executable, "examples/passt_metrics.py", "--tiny", "--clips", "4", "--seconds", "1")
    assert "RANDOM WEIGHTS" in out.stdout and "FD_PaSST=" in out.stdout


def test_lightning_example_runs():
    out = _run(sys.executable, "examples/lightning_validation.py", "--tiny", "--n", "3", "--no-desync")
    assert "RANDOM WEIGHTS" in out.stdout
    logged = dict(line.split("=", 1) for line in out.stdout.splitlines() if line.startswith("val/"))
    assert set(logged) == {"val/fd_passt", "val/kl_passt", "val/clap", "val/wer", "val/ib_score"} | {
        f"val/audiobox_{axis}" for axis in ("CE", "CU", "PC", "PQ")
    }
    assert all(math.isfinite(float(v)) for v in logged.values())


@pytest.mark.ddp
def test_lightning_two_processes_equal_one(monkeypatch):
    # The spawned ranks unpickle the LightningModule, so its module must stay importable while they start.
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    from lightning_validation import validate

    # 5 samples on 2 ranks: DistributedSampler gives rank 1 a repeat of sample 0; the ids make both runs equal.
    kw = dict(n=5, batch_size=2)
    single = validate(devices=1, **kw)
    double = validate(devices=2, **kw)
    expected = {"val/fd_passt", "val/kl_passt", "val/clap", "val/wer", "val/ib_score", "val/desync"}
    expected |= {f"val/audiobox_{axis}" for axis in ("CE", "CU", "PC", "PQ")}
    assert set(single) == set(double) == expected
    for key, value in single.items():
        assert math.isfinite(value), key
        assert double[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


@pytest.mark.ddp
def test_lightning_suite_two_processes_equal_one(monkeypatch):
    """av_benchmark_suite() logged through self.log_dict: 2 ddp_spawn ranks log what 1 process logs, for every key."""
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    from lightning_validation import validate

    from torchmetrics_av.suites import AVBENCH_KEYS

    # 11 one-second clips (>= 10 for the ISC splits); rank 1 gets a repeat of sample 0, dropped by its id.
    kw = dict(n=11, batch_size=2, desync=False, suite=True)
    single = validate(devices=1, **kw)
    double = validate(devices=2, **kw)
    audio_keys = {f"val/avbench/{k}" for k in AVBENCH_KEYS if k not in ("IB-Score", "DeSync")}  # no video given
    assert {k for k in single if k.startswith("val/avbench/")} == audio_keys
    assert set(double) == set(single)
    for key in sorted(audio_keys):
        assert math.isfinite(single[key]), key
        assert double[key] == pytest.approx(single[key], rel=1e-6, abs=1e-9), key


@pytest.mark.ddp
def test_torchrun_example_equals_one_process(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    _run(sys.executable, "examples/ddp_eval.py", "--tiny", "--out", str(tmp_path / "one.json"))
    _run(torchrun, "--nproc_per_node=2", "examples/ddp_eval.py", "--tiny", "--out", str(tmp_path / "two.json"))
    one, two = json.loads((tmp_path / "one.json").read_text()), json.loads((tmp_path / "two.json").read_text())
    assert two["world_size"] == 2 and two["n_preds"] == one["n_preds"] == 7 and two["n_pairs"] == 7
    assert two["fd_passt"] == pytest.approx(one["fd_passt"], rel=1e-6)
    assert two["kl_passt"] == pytest.approx(one["kl_passt"], rel=1e-6)
