"""The subcommands of ``torchmetrics-av``: :data:`SUBCOMMANDS` (``evaluate``, ``reference``, ``demo``, ``download``,
``weights``).

A new subcommand is one :class:`~torchmetrics_av.cli.parser.Subcommand` row appended to :data:`SUBCOMMANDS`: its
options and a runner returning the exit code. The checkpoint tools are thin rows over :mod:`torchmetrics_av.downloads`:
``download [NAMES...|--all] [--weights-dir DIR] [--mirror URL]`` fills a weights folder (login node) and ``weights
--check [NAMES...|--all] [--weights-dir DIR]`` verifies it offline (compute node); names are checkpoint, backbone,
metric or protocol names (:data:`torchmetrics_av.weights.GROUPS`).

Example:
    >>> from torchmetrics_av.cli.commands import SUBCOMMANDS
    >>> [c.name for c in SUBCOMMANDS]
    ['evaluate', 'reference', 'demo', 'download', 'weights']
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torchmetrics_av.cli.errors import CLIError
from torchmetrics_av.cli.estimators import add_estimator_options
from torchmetrics_av.cli.outputs import RANDOM_WEIGHTS_BANNER, warn, warn_bootstrap, write_avbench_json, write_outputs
from torchmetrics_av.cli.parser import Subcommand, add_model_options, check_args
from torchmetrics_av.cli.registry import METRICS
from torchmetrics_av.protocols import AV_BENCHMARK, get_protocol


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gen", required=True, help="folder of generated audio files or videos")
    p.add_argument("--ref", help="folder of reference audio files or videos (paired by stem)")
    p.add_argument("--ref-stats", help="FD reference statistics from `torchmetrics-av reference`")
    p.add_argument("--prompts", help="CLAP prompts: CSV (name,caption) or JSON {stem: text}")
    p.add_argument("--transcripts", help="WER references: CSV (name,text[,language]) or JSON {stem: text}")
    p.add_argument(
        "--metrics", default="auto", help=f"comma-separated: {', '.join(METRICS)} (default: all the inputs allow)"
    )
    p.add_argument("--whisper-model", default="base", help="official Whisper model for WER (default: base)")
    p.add_argument("--out", default="results.json", help="JSON output path (default: results.json)")
    p.add_argument("--csv", help="per-sample CSV output path")
    p.add_argument("--report", help="self-contained HTML report path (plots, worst samples, provenance)")
    p.add_argument(
        "--avbench-json",
        help="also write av-benchmark's output_metrics.json (its key names only, e.g. FD-PASST) to this path; "
        "needs --protocol av-benchmark",
    )
    add_estimator_options(p)
    add_model_options(p)


def _reference_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ref", required=True, help="folder of reference audio files or videos")
    p.add_argument("--out", required=True, help="statistics file to write (.pt)")
    add_model_options(p)
    p.set_defaults(ref_stats=None, whisper_model=None)


def _check_outputs(*paths: str | None) -> None:
    """Fail before scoring, not after, when an output cannot be written."""
    for path in paths:
        if path is not None and not Path(path).expanduser().resolve().parent.is_dir():
            raise CLIError(f"cannot write {path}: the folder {Path(path).parent} does not exist")


def _banner(args: argparse.Namespace) -> None:
    if args.random_weights:
        print(RANDOM_WEIGHTS_BANNER, file=sys.stderr)


def run_evaluate_command(args: argparse.Namespace) -> int:
    """``evaluate``: score, write ``--out`` (and ``--csv``), print the warnings and the corpus values."""
    from torchmetrics_av.cli.runner import run_evaluate

    check_args(args)
    avbench_json = getattr(args, "avbench_json", None)
    if avbench_json and get_protocol(args.protocol) is not AV_BENCHMARK:
        raise CLIError(f"--avbench-json writes av-benchmark's keys: it needs --protocol {AV_BENCHMARK.name}")
    _check_outputs(args.out, args.csv, avbench_json)
    _banner(args)
    doc, failed = run_evaluate(args)
    write_outputs(doc, Path(args.out), Path(args.csv) if args.csv else None)
    if avbench_json:
        write_avbench_json(doc, Path(avbench_json))
    if getattr(args, "report", None):
        from torchmetrics_av.report import write_report

        write_report(doc, doc["per_sample"], Path(args.report))
    _banner(args)
    warn(doc["files"])
    warn_bootstrap(doc["details"])
    for name, value in doc["metrics"].items():
        if value is None and name not in failed:
            print(f"warning: {name} could not be computed: {doc['details'][name]['error']}", file=sys.stderr)
    print(json.dumps(doc["metrics"], indent=2))
    if failed:  # asked for by name: an error, after the others were written
        reasons = "; ".join(f"{name}: {doc['details'][name]['error']}" for name in failed)
        raise CLIError(f"{reasons} (the other metrics are in {args.out})")
    return 0


def run_reference_command(args: argparse.Namespace) -> int:
    """``reference``: write FD reference statistics of ``--ref`` to ``--out``."""
    from torchmetrics_av.cli.runner import run_reference

    check_args(args)
    _check_outputs(args.out)
    _banner(args)
    summary = run_reference(args)
    _banner(args)
    warn(summary)
    print(json.dumps(summary, indent=2))
    return 0


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    from torchmetrics_av.demo import DEFAULT_OUT_DIR

    p.add_argument("--out", default=DEFAULT_OUT_DIR, help=f"output folder (default: ./{DEFAULT_OUT_DIR})")
    add_model_options(p)


def run_demo_command(args: argparse.Namespace) -> int:
    """``demo``: every metric on the bundled clips; results.json, per_sample.csv and report.html in ``--out``."""
    from torchmetrics_av.demo import run_demo_command as run

    return run(args)


def _download_arguments(p: argparse.ArgumentParser) -> None:
    from torchmetrics_av.downloads import add_download_arguments

    add_download_arguments(p)


def run_download_command(args: argparse.Namespace) -> int:
    """``download [NAMES...|--all] [--weights-dir DIR]``: fetch and verify checkpoints; exit 1 if any file failed."""
    from torchmetrics_av.downloads import run_download

    try:
        return run_download(args)
    except ValueError as err:  # an unknown checkpoint / group name
        raise CLIError(str(err)) from err


def _weights_arguments(p: argparse.ArgumentParser) -> None:
    from torchmetrics_av.downloads import add_check_arguments

    add_check_arguments(p)
    p.add_argument("--check", action="store_true", help="verify the weights folder offline: ok / missing / corrupt")
    p.add_argument("--markdown", action="store_true", help="print the checkpoint table as Markdown (the README's)")


def run_weights_command(args: argparse.Namespace) -> int:
    """``weights``: the checkpoint table (name, file, source); ``--check`` re-hashes a weights folder offline (exit 1
    when a file is missing or corrupt); ``--markdown`` prints the README table.
    """
    from torchmetrics_av import weights
    from torchmetrics_av.downloads import names_from_args, run_check

    try:
        if args.check:
            return run_check(args)
        rows = weights.select_checkpoints(names_from_args(args))
    except ValueError as err:
        raise CLIError(str(err)) from err
    if args.markdown:
        sys.stdout.write(weights.markdown_table(rows))
    else:
        for c in rows:
            print(f"{c.name}\t{c.filename}{'/' if c.snapshot else ''}\t{c.source}")
    return 0


SUBCOMMANDS: list[Subcommand] = [
    Subcommand("evaluate", "score a folder of generated audio or videos", _evaluate_arguments, run_evaluate_command),
    Subcommand("reference", "write FD reference statistics of a folder", _reference_arguments, run_reference_command),
    Subcommand(
        "demo", "run every metric on the bundled demo clips and write a report", _demo_arguments, run_demo_command
    ),
    Subcommand(
        "download", "fetch and verify checkpoints into a weights folder", _download_arguments, run_download_command
    ),
    Subcommand(
        "weights", "list the checkpoint table; --check verifies a folder", _weights_arguments, run_weights_command
    ),
]
