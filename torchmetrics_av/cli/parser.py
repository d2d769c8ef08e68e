"""The argument parser of ``torchmetrics-av`` and the checks of its options that need no file to be read.

Subcommands are rows of a table (:class:`Subcommand`: name, help, arguments, runner), so a new one (e.g. a
``weights --check`` / ``download`` command on :mod:`torchmetrics_av.downloads`) is one row in
:data:`torchmetrics_av.cli.commands.SUBCOMMANDS`.

Example:
    >>> from torchmetrics_av.cli import build_parser
    >>> args = build_parser().parse_args(["evaluate", "--gen", "g", "--random-weights", "tiny"])
    >>> args.metrics, args.protocol, args.random_weights
    ('auto', 'fastvideo', 'tiny')
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from torchmetrics_av.backbones.asr import ASR_BACKENDS, DEFAULT_ASR_BACKEND
from torchmetrics_av.cli.errors import CLIError
from torchmetrics_av.protocols import PROTOCOLS, get_protocol

DEFAULT_BATCH_SIZE = 8  # files per metric update: fills a GPU without holding many long videos at once
DEFAULT_NUM_WORKERS = 2  # decoder threads: decoding is far cheaper than the models' forward passes
BATCH_ORDERS = ("length", "name")  # --batch-order: inputs.by_length, or the stems' order
RANDOM_WEIGHT_SIZES = ("tiny", "full")  # torchmetrics_av.testing's small configs, or the official architectures


@dataclass(frozen=True)
class Subcommand:
    """One ``torchmetrics-av`` subcommand.

    Attributes:
        name: the word on the command line.
        help: one line for ``--help``.
        add_arguments: adds its options to its sub-parser.
        run: ``args -> exit code``; raises :class:`~torchmetrics_av.cli.errors.CLIError` for user errors.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Options of every subcommand that runs models: protocol, device, batching, weights."""
    p.add_argument(
        "--protocol", default="fastvideo", choices=list(PROTOCOLS), help="reference harness (default: fastvideo)"
    )
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when a GPU is visible, else cpu)",
    )
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="files per metric update (default 8)")
    p.add_argument(
        "--num-workers",
        type=int,
        default=DEFAULT_NUM_WORKERS,
        help="decoder threads; they also resample each file for the metrics while the model runs (default 2)",
    )
    p.add_argument(
        "--batch-order",
        default="length",
        choices=BATCH_ORDERS,
        help="length: batches of similar durations, longest first (fewer padded/split forwards); name: by file stem. "
        "Per-file rows and corpus values do not depend on it beyond float32 round-off (default: length)",
    )
    p.add_argument(
        "--weights-dir",
        help="folder holding the official checkpoint files/folders (nothing is downloaded for what it holds)",
    )
    p.add_argument(
        "--duration",
        type=float,
        help="av-benchmark --audio_length in seconds (FD/KL/CLAP/IB/DeSync window; default 8); av-benchmark only",
    )
    p.add_argument(
        "--asr-backend",
        default=DEFAULT_ASR_BACKEND,
        choices=list(ASR_BACKENDS),
        help="WER speech recogniser: whisper (Hugging Face whisper-base, FastVideo's default), openai-whisper "
        "(--whisper-model), glm_asr, sensevoice (default: whisper)",
    )
    p.add_argument(
        "--random-weights",
        choices=list(RANDOM_WEIGHT_SIZES),
        help="run randomly initialised models ('tiny': small test configs, 'full': official shapes), offline: "
        "for trying the command and testing it; the numbers are NOT the metrics (a RANDOM WEIGHTS banner says so)",
    )


def build_parser(subcommands: Sequence[Subcommand] | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``torchmetrics-av`` (default: every subcommand of ``commands.SUBCOMMANDS``)."""
    if subcommands is None:
        from torchmetrics_av.cli.commands import SUBCOMMANDS

        subcommands = SUBCOMMANDS
    parser = argparse.ArgumentParser(
        prog="torchmetrics-av",
        description="Evaluate a folder of generated audio or videos, with or without references.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in subcommands:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def check_device(value: str) -> None:
    """Raise :class:`CLIError` (one line) unless ``value`` names a device this machine has."""
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError) as err:
        raise CLIError(f"--device {value!r} is not a torch device ({err}); use cpu, cuda or cuda:N") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise CLIError(f"--device {value}: {why} (torch.cuda.is_available() is False); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CLIError(f"--device {value}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {value}: MPS is not available on this machine; use --device cpu")


def check_args(args: argparse.Namespace) -> None:
    """Checks of the model options before anything is read or built.

    Raises:
        CLIError: a bad batch size / worker count / duration, a missing ``--weights-dir`` folder, an absent device.
    """
    if args.batch_size < 1:
        raise CLIError("--batch-size must be >= 1")
    if args.num_workers < 1:
        raise CLIError("--num-workers must be >= 1")
    if args.duration is not None:
        if get_protocol(args.protocol).duration is None:  # the protocol scores whole clips
            takers = " / ".join(p for p in PROTOCOLS if get_protocol(p).duration is not None)
            raise CLIError(f"--duration applies to --protocol {takers} only ({args.protocol!r} uses whole clips)")
        if not args.duration > 0:
            raise CLIError(f"--duration must be positive seconds, got {args.duration}")
    if args.weights_dir is not None:
        folder = Path(args.weights_dir).expanduser()
        if not folder.exists():
            raise CLIError(f"--weights-dir {args.weights_dir} does not exist")
        if not folder.is_dir():
            raise CLIError(f"--weights-dir {args.weights_dir} is not a folder")
    check_device(args.device)
