"""What a run writes: the JSON document, the per-file CSV, and the warnings on stderr.

Further writers of the same document (an HTML ``--report``, av-benchmark's ``--avbench-json``:
:func:`write_avbench_json`) belong here: each takes the document :func:`~torchmetrics_av.cli.runner.run_evaluate`
returns.

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> from torchmetrics_av.cli.outputs import write_outputs
    >>> doc = {"metrics": {"wer": 0.5}, "per_sample": {"a": {"file": "a.wav", "wer": 0.5}}}
    >>> out = Path(tempfile.mkdtemp())
    >>> write_outputs(doc, out / "r.json", out / "r.csv")
    >>> (out / "r.csv").read_text().splitlines()
    ['stem,file,wer', 'a,a.wav,0.5']
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

# Lists of `files` in the JSON that are worth a warning, with what they mean.
WARNINGS = {
    "unmatched_gen": "generated file(s) without a reference",
    "unmatched_ref": "reference file(s) without a generated file",
    "without_prompt": "generated file(s) without a prompt (not in CLAP)",
    "unused_prompts": "prompt(s) without a generated file",
    "without_transcript": "generated file(s) without a transcript (not in WER)",
    "unused_transcripts": "transcript(s) without a generated file",
    "audio_only_gen": "generated audio file(s) without video (not in ImageBind/DeSync)",
}
SHOWN_STEMS = 10  # stems listed per warning line; the JSON has them all
RANDOM_WEIGHTS_BANNER = "!! RANDOM WEIGHTS: these numbers are not the metrics"
# av-benchmark's evaluate.py: `json.dump(output_metrics, f, indent=4)`.
AVBENCH_JSON_INDENT = 4


def write_outputs(doc: dict[str, Any], out: Path, csv_path: Path | None) -> None:
    """Write the JSON document and the per-file CSV (one row per generated stem, a column per value)."""
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str))
    if csv_path is not None:
        columns = ["file", *sorted({k for row in doc["per_sample"].values() for k in row} - {"file"})]
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["stem", *columns])
            for stem, row in doc["per_sample"].items():
                writer.writerow([stem, *[row.get(c, "") for c in columns]])


def avbench_metrics(doc: dict[str, Any]) -> dict[str, float]:
    """av-benchmark's ``output_metrics.json`` from a results document: its keys (and only those) for the metrics
    that gave a value, in av-benchmark's order (:data:`torchmetrics_av.suites.AVBENCH_KEYS`).

    Each metric's registry spec says which keys it gives and where each number is (``avbench``).

    Example:
        >>> doc = {"metrics": {"isc_panns": 7.5, "wer": 0.5, "kl_passt": None},
        ...        "details": {"isc_panns": {"inception_score_std": 0.25}, "wer": {}, "kl_passt": {}}}
        >>> avbench_metrics(doc)
        {'ISC-PANNS-mean': 7.5, 'ISC-PANNS-std': 0.25}
    """
    from torchmetrics_av.cli.registry import METRICS, VALUE
    from torchmetrics_av.suites import AVBENCH_KEYS

    found: dict[str, float] = {}
    for name, value in doc["metrics"].items():
        if value is None or name not in METRICS:
            continue
        for key, source in METRICS[name].avbench.items():
            number = value if source == VALUE else doc["details"][name].get(source)
            if number is not None:
                found[key] = float(number)
    return {key: found[key] for key in AVBENCH_KEYS if key in found}


def write_avbench_json(doc: dict[str, Any], path: Path) -> None:
    """Write :func:`avbench_metrics` as av-benchmark writes ``output_metrics.json`` (``json.dump``, indent 4)."""
    path.write_text(json.dumps(avbench_metrics(doc), indent=AVBENCH_JSON_INDENT))


def warn(files: dict[str, Any]) -> None:
    """Print what was not used, and why, to stderr."""
    for key, label in WARNINGS.items():
        if files.get(key):
            stems = files[key]
            shown = ", ".join(stems[:SHOWN_STEMS]) + (", ..." if len(stems) > SHOWN_STEMS else "")
            print(f"warning: {len(stems)} {label}: {shown}", file=sys.stderr)
    for b in files.get("broken", []):
        print(f"warning: could not use {b['file']}: {b['error']}", file=sys.stderr)
    for name, skips in files.get("skipped", {}).items():
        for s in skips:
            print(f"warning: {name} skipped {s['stem']}: {s['error']}", file=sys.stderr)


def warn_bootstrap(details: dict[str, Any]) -> None:
    """Print, to stderr, each metric whose ``--bootstrap`` interval could not be formed, with the reason."""
    for name, d in details.items():
        boot = d.get("bootstrap") if isinstance(d, dict) else None
        if isinstance(boot, dict) and "error" in boot:
            print(f"warning: no bootstrap CI for {name}: {boot['error']}", file=sys.stderr)
