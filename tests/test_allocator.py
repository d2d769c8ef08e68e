"""torchmetrics_av.allocator: glibc malloc keeps freed memory when tuned (page faults counted in fresh processes), the
opt-out and the user's own settings are respected, and the command line applies it (JSON provenance)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks import run_all
from tests.conftest import GLIBC_MALLOC
from torchmetrics_av.allocator import OPT_OUT_ENV, cpu_allocator_state, tune_cpu_allocator

needs_glibc = pytest.mark.skipif(
    not GLIBC_MALLOC, reason="mallopt tuning exists on Linux with glibc only (a no-op elsewhere)"
)
# The probe: the tiny PaSST's bare forward on four 10 s windows, 5 times after a warm-up, in a fresh process.
BATCH, REPEATS = 4, 5


def _probe(tune: bool, out: Path, **env: str) -> dict:
    return {**run_all.allocator_probe(tune, "tiny", BATCH, REPEATS, save_to=out, env=env), "out": torch.load(out)}


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("allocator")
    return {
        "default": _probe(False, tmp / "default.pt"),
        "tuned": _probe(True, tmp / "tuned.pt"),
        "opted_out": _probe(True, tmp / "opted_out.pt", **{OPT_OUT_ENV: "default"}),
    }


@needs_glibc
def test_tuned_process_reuses_freed_memory_instead_of_faulting_it_again(probes):
    default, tuned = probes["default"], probes["tuned"]
    assert len(default["page_faults"]) == len(tuned["page_faults"]) == REPEATS
    assert default["state"] == "default" and default["applied"] is None
    assert tuned["applied"] is True and tuned["state"] == "tuned"
    # glibc's default maps the large activations afresh on every forward (~30k faults per window of the tiny PaSST);
    # tuned, the memory freed by one forward serves the next (measured: 0-4 % of the default's faults).
    assert sum(default["page_faults"]) >= 5 * 4 * 10_000
    assert sum(tuned["page_faults"]) <= 0.25 * sum(default["page_faults"])


@needs_glibc
def test_opt_out_and_the_users_own_malloc_settings_are_respected(probes, tmp_path):
    opted_out = probes["opted_out"]
    assert opted_out["applied"] is False and opted_out["state"] == "default"
    assert sum(opted_out["page_faults"]) >= 4 * sum(probes["tuned"]["page_faults"])  # glibc's behaviour kept
    users = _probe(True, tmp_path / "u.pt", MALLOC_MMAP_THRESHOLD_="131072")
    assert users["applied"] is False and users["state"] == "user"
    tunables = _probe(True, tmp_path / "t.pt", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")
    assert tunables["applied"] is False and tunables["state"] == "user"


def test_values_are_identical_under_either_setting(probes):
    """Only where memory comes from changes: the same forward gives the same bits tuned and untuned."""
    flat = [
        torch.cat([t.flatten() for t in (o if isinstance(o, tuple | list) else (o,))])
        for o in (probes["default"]["out"], probes["tuned"]["out"])
    ]
    assert torch.equal(flat[0], flat[1])


def test_repeated_calls_and_the_state_of_this_process():
    """conftest.py tunes the test process: a second call is a no-op that reports the same."""
    first = tune_cpu_allocator()
    assert tune_cpu_allocator() is first
    assert cpu_allocator_state() == ("tuned" if first else ("user" if GLIBC_MALLOC else "unsupported"))
