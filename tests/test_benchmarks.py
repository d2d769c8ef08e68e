"""benchmarks/: the run_all.py runner, its backbone registry and spy, the README table, gpu_check.py --dry-run.

No test needs a GPU and none asserts an absolute time: the runner's outputs are checked for structure, for the
invariants that make a ratio meaningful (the replayed forward reproduces what update() computed; the spy sees the
whole batch in one forward), and against independent counts (FLOPs of a known layer).
"""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks import cases, gpu_check, render_readme, run_all
from benchmarks.cases import CASES, ForwardSpy, compare_outputs, replay
from tests.conftest import GLIBC_MALLOC


class _Outer(torch.nn.Module):
    """A module whose forward calls another spied method: the spy must keep only the outer call."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def helper(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.helper(x) + 1


def test_cases_doctests():
    assert doctest.testmod(cases).failed == 0


def test_spy_records_outermost_calls_with_cloned_inputs_and_removes_itself():
    net = _Outer()
    x = torch.randn(4, 3)
    with ForwardSpy(net, ["forward", "helper"]) as spy:
        out = net(x)
        net.helper(x[:1])
    assert [c.method for c in spy.calls] == ["forward", "helper"]
    x.zero_()  # the recorded arguments are copies: later in-place changes of the caller's tensors do not leak in
    assert not torch.equal(spy.calls[0].args[0], x)
    torch.testing.assert_close(spy.calls[0].output, out, rtol=0, atol=0)
    assert "forward" not in vars(net) and "helper" not in vars(net)
    replayed = replay(net, spy.calls)
    assert compare_outputs([c.output for c in spy.calls], replayed) == {"max_abs_diff": 0.0, "mismatches": 0}


def test_spy_on_a_submodule_method():
    net = _Outer()
    with ForwardSpy(net, ["lin.forward"]) as spy:
        net(torch.randn(5, 3))
    assert [tuple(c.args[0].shape) for c in spy.calls] == [(5, 3)]
    assert "forward" not in vars(net.lin)


def test_compare_outputs_reports_differences():
    a = [torch.tensor([1.0, 2.0]), ("text", 3)]
    assert compare_outputs(a, [torch.tensor([1.0, 2.5]), ("text", 3)]) == {"max_abs_diff": 0.5, "mismatches": 0}
    assert compare_outputs(a, [torch.tensor([1.0, 2.0]), ("other", 3)])["mismatches"] == 1
    assert compare_outputs(a, [torch.tensor([1.0, 2.0])])["max_abs_diff"] == math.inf


def test_registry_covers_every_backbone_of_the_package():
    from torchmetrics_av import backbones

    # The ASR backbones other than Whisper are not metric backbones of update() benchmarks (issue 12 item 1).
    expected = {"PaSST", "CLAP", "ImageBind", "Synchformer", "Whisper", "Audiobox", "MSCLAP", "PANNs", "VGGish"}
    assert expected <= set(backbones.__all__)
    assert {cases._backbone_class(name).__name__ for name in CASES} == expected


def test_passt_update_runs_the_whole_batch_in_one_forward():
    case = CASES["passt"]
    net = case.build("tiny")
    update = case.metric(net, 3, "fp32")
    with ForwardSpy(net, case.forwards) as spy:
        update(**case.inputs(3, "tiny", torch.Generator().manual_seed(0)))
    # FD pads every clip to one 10 s window at 32 kHz: one (3, 320000) forward, nothing else.
    assert [tuple(c.args[0].shape) for c in spy.calls] == [(3, 320000)]


@pytest.fixture(scope="module")
def quick_doc(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "out.json"
    argv = ["--quick", "--sections", "backbones", "--backbones", "passt", "audiobox", "--batches", "1", "2"]
    assert run_all.main([*argv, "--repeats", "1", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_run_all_json_has_every_ratio(quick_doc):
    assert quick_doc["schema"] == run_all.SCHEMA
    assert quick_doc["quick"] is True and quick_doc["size"] == "tiny" and quick_doc["errors"] == {}
    assert set(quick_doc["load_average"]) == {"before", "after", "noisy"}
    assert len(quick_doc["load_average"]["before"]) == 3
    assert quick_doc["environment"]["torch"] == torch.__version__
    backbones = quick_doc["sections"]["backbones"]
    assert set(backbones) == {"passt", "audiobox"}
    for res in backbones.values():
        assert set(res["batches"]) == {"1", "2"}
        for b, r in res["batches"].items():
            assert r["forward_calls"] >= 1
            assert math.isfinite(r["overhead_ratio"]) and r["overhead_ratio"] > 0
            assert r["overhead_ratio"] == pytest.approx(r["update_s"] / r["forward_s"])
            assert r["update_per_s"] == pytest.approx(int(b) / r["update_s"])
            # CPU float32 is deterministic: the bare forward recomputes exactly what update() computed.
            assert r["replay"] == {"max_abs_diff": 0.0, "mismatches": 0}


def test_cli_section_times_warm_runs_against_their_own_forwards(tmp_path, monkeypatch):
    monkeypatch.setitem(run_all.CLI_FILES, "quick", 3)
    monkeypatch.setitem(run_all.CLI_REPEATS, "quick", 2)
    out = tmp_path / "cli.json"
    assert run_all.main(["--quick", "--sections", "cli", "--json", str(out)]) == 0
    r = json.loads(out.read_text())["sections"]["cli"]
    assert r["files"] == 3 and r["repeats"] == 2
    assert len(r["pipeline_runs_s"]) == len(r["forward_runs_s"]) == 2
    assert r["pipeline_s"] == min(r["pipeline_runs_s"]) and r["forward_s"] == min(r["forward_runs_s"])
    assert r["overhead_ratio"] == pytest.approx(r["pipeline_s"] / r["forward_s"])
    assert r["files_per_s"] == pytest.approx(3 / r["pipeline_s"])
    # 3 generated + 3 reference clips at --batch-size 8: one PaSST forward per side (FD and KL share it).
    assert r["forward_calls"] == {"passt": 2}


def test_allocator_section_measures_both_settings_in_fresh_processes(tmp_path, monkeypatch):
    monkeypatch.setitem(run_all.ALLOCATOR_REPEATS, "quick", 2)
    monkeypatch.setattr(run_all, "ALLOCATOR_PROCESSES", 1)
    out = tmp_path / "alloc.json"
    assert run_all.main(["--quick", "--sections", "allocator", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    r = doc["sections"]["allocator"]
    assert r["size"] == "tiny" and r["batch"] == run_all.ALLOCATOR_BATCH["tiny"]
    assert len(r["default_runs_s"]) == len(r["tuned_runs_s"]) == 2
    assert r["default_s"] == min(r["default_runs_s"]) and r["tuned_s"] == min(r["tuned_runs_s"])
    assert r["speedup"] == pytest.approx(r["default_s"] / r["tuned_s"])
    if GLIBC_MALLOC:  # each variant really ran as named, and the tuned one stopped re-faulting its activations
        assert r["states"] == {"default": ["default"], "tuned": ["tuned"]}
        assert r["tuned_page_faults_per_forward"] < 0.25 * r["default_page_faults_per_forward"]
    else:
        assert r["states"] == {"default": ["unsupported"], "tuned": ["unsupported"]}
    # This process (every other section) runs tuned, as the command does, and says so.
    assert doc["environment"]["cpu_allocator"] == ("tuned" if GLIBC_MALLOC else "unsupported")
    assert "glibc malloc's default vs `torchmetrics_av.allocator`" in run_all.markdown_table(doc)


def test_readme_table_from_the_json(quick_doc, tmp_path):
    table = run_all.markdown_table(quick_doc)
    assert "| `passt` `update()` / bare forward, tiny config" in table
    ratio = quick_doc["sections"]["backbones"]["audiobox"]["batches"]["2"]["overhead_ratio"]
    assert f"2: {ratio:.2f}×" in table
    text = render_readme.replace_section(
        "intro\n<!-- perf-table:start -->\nold\n<!-- perf-table:end -->\noutro\n", "perf-table", table
    )
    assert "old" not in text and table in text and text.startswith("intro\n") and text.endswith("outro\n")
    with pytest.raises(ValueError, match="perf-table"):
        render_readme.replace_section("no markers", "perf-table", table)


def test_a_broken_backbone_is_reported_and_fails_the_run(tmp_path, monkeypatch):
    broken = cases.BackboneCase("passt", CASES["passt"].metric, CASES["passt"].inputs, ("no_such_method",))
    monkeypatch.setitem(CASES, "passt", broken)
    out = tmp_path / "out.json"
    argv = ["--quick", "--sections", "backbones", "--backbones", "passt", "--batches", "1", "--repeats", "1"]
    assert run_all.main([*argv, "--json", str(out)]) == 1
    doc = json.loads(out.read_text())
    assert "no_such_method" in doc["errors"]["backbones.passt"]


def test_flop_count_of_a_known_layer():
    lin = torch.nn.Linear(16, 8)
    with ForwardSpy(lin, ["forward"]) as spy:
        lin(torch.randn(5, 16))
    assert gpu_check.count_flops(lin, spy.calls, torch.device("cpu")) == 2 * 5 * 16 * 8


def test_gpu_check_dry_run_writes_the_json(tmp_path):
    out = tmp_path / "dry.json"
    assert gpu_check.main(["--dry-run", "--out", str(out), "--goldens", "--backbones", "audiobox"]) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == gpu_check.SCHEMA and doc["dry_run"] is True and doc["failed"] == []
    assert doc["ceilings"]["gpu_name"] == "cpu" and doc["ceilings"]["measured_matmul_tflops"] > 0
    entry = doc["throughput"]["audiobox"]
    assert entry["batch"] == gpu_check.DRY_RUN_BATCH and entry["flops_per_clip"] > 0
    for precision in gpu_check.PRECISIONS:
        r = entry[precision]
        assert r["forward_tflops"] == pytest.approx(entry["flops_per_clip"] * r["forward_clips_per_s"] / 1e12)
        assert r["pct_of_spec_bf16_peak"] is None  # no spec-sheet peak for a CPU


def test_gpu_check_names_its_result_file_after_the_gpu():
    path = gpu_check.default_out("NVIDIA H200", dry_run=False)
    assert path.parent == Path(gpu_check.REPO) / "benchmarks" / "results"
    assert path.name.startswith("nvidia-h200-") and path.suffix == ".json"
    assert gpu_check.default_out("cpu", dry_run=True).name.startswith("dry-run-")
    assert gpu_check.SPEC_BF16_DENSE_TFLOPS["NVIDIA H200"] == pytest.approx(989.4)


@pytest.mark.slow
def test_gpu_check_dry_run_golden_parity(tmp_path):
    """The dry run's default golden (the cheapest) passes its README tolerances at fp32 on CPU."""
    out = tmp_path / "dry.json"
    gpu_check.main(["--dry-run", "--out", str(out), "--backbones"])
    doc = json.loads(out.read_text())
    ((name, entry),) = doc["parity"].items()
    assert entry["fp32"]["ok"], entry
