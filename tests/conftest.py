"""Shared fixtures: the golden folder, fill-v1, and a 2-thread CPU setting that matches how the goldens were made."""

from __future__ import annotations

import json
import lzma
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tests import golden_codec
from tests.fill_v1 import fill_v1 as _fill_v1
from torchmetrics_av.allocator import tune_cpu_allocator

REPO = Path(__file__).resolve().parents[1]
# Golden data the tests read travels with the repo: tests/golden/<name>/ (see its README.md).
REPO_GOLDEN_DIR = REPO / "tests" / "golden"
# A second golden root, read only when this variable is set and only for files the repo's copy lacks (e.g. the
# complete shared goldens); nothing outside the repo is ever read implicitly.
GOLDEN_DIR_ENV = "TORCHMETRICS_AV_GOLDEN_DIR"


def golden_roots() -> list[Path]:
    """The folders golden data is looked up in, in order: tests/golden, then $TORCHMETRICS_AV_GOLDEN_DIR if set."""
    extra = os.environ.get(GOLDEN_DIR_ENV)
    return [REPO_GOLDEN_DIR, *([Path(extra)] if extra else [])]


# The goldens were produced on CPU with 2 threads; float32 reductions depend on the thread split.
torch.set_num_threads(2)
# Freed CPU memory is kept for reuse, as under the torchmetrics-av command: the full-size forwards stop paying page
# faults (the suite's time), values are unchanged. test_allocator.py checks both settings in fresh processes.
tune_cpu_allocator()
# Whether this process's C library is glibc on Linux: where torchmetrics_av.allocator has something to tune.
GLIBC_MALLOC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


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


def _missing(what: str) -> str:
    where = os.environ.get(GOLDEN_DIR_ENV)
    hint = f" nor under {GOLDEN_DIR_ENV}={where}" if where else f" (set {GOLDEN_DIR_ENV} to a folder that holds it)"
    return f"golden {what} is missing from this checkout{hint}; see tests/golden/README.md"


def golden_path(name: str) -> Path:
    """Folder of golden `name`: ``tests/golden/<name>``, else ``$TORCHMETRICS_AV_GOLDEN_DIR/<name>``; FAILS when absent.

    A golden test never skips: missing data is a broken checkout, not an optional feature.
    """
    for root in golden_roots():
        if (root / name).is_dir():
            return root / name
    pytest.fail(_missing(f"folder tests/golden/{name}"))


def golden_file(name: str, filename: str) -> Path:
    """Path of golden file ``<name>/<filename>`` (or its compressed ``<filename>.xz``); FAILS when absent.

    Each root of `golden_roots` is searched in turn, so a file the repo does not carry (the opt-in `full_golden`
    data) can come from ``$TORCHMETRICS_AV_GOLDEN_DIR`` while everything else is read from the repo.
    """
    for root in golden_roots():
        for path in (root / name / filename, root / name / (filename + golden_codec.XZ_SUFFIX)):
            if path.is_file():
                return path
    pytest.fail(_missing(f"file tests/golden/{name}/{filename}"))


def load_golden(name: str, filename: str) -> Any:
    """Contents of golden file ``<name>/<filename>``: parsed JSON for ``.json``, else the ``torch.load`` dict.

    Repo copies may be xz-compressed and hold lossless codec records (tests/golden_codec.py); both are undone here,
    so the result is the object the original shared file gives (trimmed to what the tests read).
    """
    path = golden_file(name, filename)
    if filename.endswith(".json"):
        data = path.read_bytes()
        return json.loads(
            (lzma.decompress(data) if path.name.endswith(golden_codec.XZ_SUFFIX) else data).decode("utf-8")
        )
    return golden_codec.load(path)


@pytest.fixture(scope="session")
def fill_v1() -> Callable[[torch.nn.Module], torch.nn.Module]:
    """The deterministic name-based weight fill the goldens were made with (tests/fill_v1.py)."""
    return _fill_v1
