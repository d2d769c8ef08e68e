"""Write the README's performance and bf16-shift sections from committed benchmark JSON files.

Each section is rewritten between its markers (``<!-- perf-table:start/end -->`` from a ``run_all.py`` JSON,
``<!-- bf16-shift:start/end -->`` from a ``bf16_shift.py`` JSON) and starts with a comment naming its source file, so
``tests/test_benchmarks_readme.py`` can re-render every section from the file it names and fail when the README and
the data differ.

Usage::

    python benchmarks/render_readme.py benchmarks/results/cpu-2026-12-02.json \\
        --bf16 benchmarks/results/bf16-cpu-2026-12-02.json

Example:
    >>> text = "a\\n<!-- bf16-shift:start -->\\nold\\n<!-- bf16-shift:end -->\\nb\\n"
    >>> replace_section(text, "bf16-shift", "new\\n")
    'a\\n<!-- bf16-shift:start -->\\nnew\\n<!-- bf16-shift:end -->\\nb\\n'
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from benchmarks import bf16_shift, run_all  # noqa: E402

# Section name -> the function that renders its JSON document.
RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "perf-table": run_all.markdown_table,
    "bf16-shift": bf16_shift.markdown_table,
}
# The first line of a rendered section: which JSON (relative to the repository root) it was rendered from.
SOURCE_LINE = "<!-- source: {} -->"
SOURCE_RE = re.compile(r"<!-- source: (\S+) -->")


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the lines between the ``name`` markers replaced by ``body`` (which ends with a newline).

    Raises:
        ValueError: ``text`` has no ``<!-- name:start -->`` ... ``<!-- name:end -->`` block.
    """
    start, end = _markers(name)
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"the README has no {start} ... {end} block to fill")
    return text[: i + len(start)] + "\n" + body + text[j:]


def section_body(text: str, name: str) -> str:
    """The text between the ``name`` markers (without the newline after the start marker)."""
    start, end = _markers(name)
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"the README has no {start} ... {end} block")
    return text[i + len(start) + 1 : j]


def render(name: str, source: Path) -> str:
    """The body of section ``name`` rendered from the JSON file ``source``: its source line, then the table."""
    path = source.resolve()
    try:
        shown = path.relative_to(REPO).as_posix()
    except ValueError as err:
        raise ValueError(f"{source} is outside the repository: commit it under benchmarks/results/ first") from err
    return SOURCE_LINE.format(shown) + "\n" + RENDERERS[name](json.loads(path.read_text()))


def source_of(body: str) -> Path | None:
    """The JSON file a rendered section names (``None`` for a section never rendered)."""
    match = SOURCE_RE.match(body)
    return REPO / match.group(1) if match else None


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the README sections from the given JSON files (a section without a file is left as it is)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("perf", type=Path, nargs="?", help="a run_all.py JSON (the perf-table section)")
    parser.add_argument("--bf16", type=Path, help="a bf16_shift.py JSON (the bf16-shift section)")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    for name, source in (("perf-table", args.perf), ("bf16-shift", args.bf16)):
        if source is not None:
            text = replace_section(text, name, render(name, source))
    args.readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
