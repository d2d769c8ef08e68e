"""Every example runs (small configs / random weights, labelled as such)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args", [["examples/passt_metrics.py", "--tiny", "--clips", "4", "--seconds", "1"]])
def test_example_runs(args):
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "RANDOM WEIGHTS" in out.stdout and "FD_PaSST=" in out.stdout
