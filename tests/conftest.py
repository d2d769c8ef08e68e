"""Shared fixtures: the golden folder, fill-v1, and a 2-thread CPU setting that matches how the goldens were made."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Golden data the tests read travels with the repo (tests/golden/<name>/); ../shared/golden is the transitional
# fallback while the copies are being made (TORCHMETRICS_AV_GOLDEN_DIR overrides it).
REPO_GOLDEN_DIR = REPO / "tests" / "golden"
GOLDEN_DIR = Path(os.environ.get("TORCHMETRICS_AV_GOLDEN_DIR", REPO.parent / "shared" / "golden"))

# The goldens were produced on CPU with 2 threads; float32 reductions depend on the thread split.
torch.set_num_threads(2)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect `full_golden` tests (full-size end-to-end runs of ~30 min on CPU) unless asked for.

    Run them with ``TORCHMETRICS_AV_FULL_GOLDEN=1 python -m pytest -m full_golden`` (e.g. on a GPU machine).
    """
    if os.environ.get("TORCHMETRICS_AV_FULL_GOLDEN") == "1":
        return
    keep = [item for item in items if item.get_closest_marker("full_golden") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("full_golden")])
        items[:] = keep


def golden_path(name: str) -> Path:
    """Folder of golden `name`: ``tests/golden/<name>`` (the repo's copy), else the shared folder; FAILS when absent.

    A golden test never skips: missing data is a broken checkout, not an optional feature.
    """
    for path in (REPO_GOLDEN_DIR / name, GOLDEN_DIR / name):
        if path.is_dir():
            return path
    pytest.fail(f"golden folder tests/golden/{name} is missing from this checkout")


@pytest.fixture(scope="session")
def fill_v1() -> Callable[[torch.nn.Module], torch.nn.Module]:
    """The deterministic name-based weight fill of ../shared/golden/fill.py."""
    fill_file = GOLDEN_DIR / "fill.py"
    if not fill_file.exists():
        pytest.skip(f"{fill_file} is absent (set TORCHMETRICS_AV_GOLDEN_DIR)")
    sys.path.insert(0, str(GOLDEN_DIR))
    try:
        from fill import fill_v1 as fn
    finally:
        sys.path.pop(0)
    return fn
