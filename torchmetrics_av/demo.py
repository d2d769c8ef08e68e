r"""``torchmetrics-av demo``: every metric of the command line on the bundled demo clips; JSON, CSV and HTML report.

The clips (``torchmetrics_av/demo_data/``, made by ``examples/make_demo_data.py``): six 8.4 s generated videos (96x96,
25 fps, 16 kHz AAC: two espeak-ng sentences, an in-sync and a late metronome, a siren, rain) with reference
recordings, captions (``prompts.csv``) and transcripts (``transcripts.json``), so that every metric the CLI knows
has its inputs. :func:`run_demo` runs ``torchmetrics-av evaluate`` on them with ``--metrics`` set to every metric of
:data:`torchmetrics_av.cli.registry.METRICS` that this installation can run (av-benchmark's own ones included, under
either protocol), and writes ``results.json``, ``per_sample.csv`` and ``report.html``
(:func:`torchmetrics_av.report.write_report`) into ``out_dir``.

Six clips are fewer than the Inception Scores' ``splits=10`` (av-benchmark's, one clip per split at least), so
``isc_panns`` and ``isc_passt`` are listed in ``results.json`` with a ``null`` value, and ``not_computed`` gives the
reason (also printed as a note); this does not fail the command (:func:`expected_not_computed`). Any other metric
without a value does.

Checkpoints: with ``random_weights=None`` the official checkpoints are used, from ``weights_dir`` or the cache
(``$TORCHMETRICS_AV_CACHE``), downloading the missing ones (:func:`torchmetrics_av.downloads.download`). When some
cannot be had (offline: ``TORCHMETRICS_AV_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``, no network, a failed download), the
demo prints the RANDOM WEIGHTS banner once, lists every missing file with its source, and runs with
``--random-weights tiny`` instead: the numbers are then not the metrics (the JSON's ``provenance.random_weights``
and the report say so too), but every step of the pipeline runs and the command still succeeds.

Example:
    >>> from torchmetrics_av.demo import demo_data_dir, demo_metrics
    >>> sorted(p.name for p in demo_data_dir().iterdir() if p.suffix in {".csv", ".json"})
    ['prompts.csv', 'transcripts.json']
    >>> demo_metrics()[:3], "isc_passt" in demo_metrics()
    (['fd_passt', 'kl_passt', 'clap'], True)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from torchmetrics_av.backbones.asr import DEFAULT_ASR_BACKEND
from torchmetrics_av.cli.outputs import RANDOM_WEIGHTS_BANNER, write_outputs
from torchmetrics_av.cli.parser import DEFAULT_BATCH_SIZE, DEFAULT_NUM_WORKERS, build_parser
from torchmetrics_av.cli.registry import METRICS

DEFAULT_OUT_DIR = "torchmetrics-av-demo"
FALLBACK_WEIGHTS = "tiny"  # the --random-weights size used when checkpoints are missing: small, quick on a CPU
OUTPUT_FILES = {"json": "results.json", "csv": "per_sample.csv", "report": "report.html"}
DEMO_FILES = ("gen", "ref", "prompts.csv", "transcripts.json")
WHISPER_MODEL = "base"  # the CLI's default --whisper-model
# Metrics that need more clips than a small set has: InceptionScore's `splits` parts of at least one clip each.
SPLIT_METRICS = ("isc_panns", "isc_passt")
# The estimators shown too (issue 10): a percentile CI from this many resamples for every metric, and FD∞ + KAD on
# each FD's rows. 200 resamples keep the demo quick; a paper wants >= 1000 (`evaluate --bootstrap 1000`).
DEMO_BOOTSTRAP = 200
# --metrics key -> the checkpoint group of weights.GROUPS of a backbone whose group has another name.
_BACKBONE_GROUPS = {"whisper": "whisper", "hf_whisper": "hf-whisper", "glm_asr": "glm-asr"}


def demo_data_dir() -> Path:
    """The bundled demo data folder (``gen/``, ``ref/``, ``prompts.csv``, ``transcripts.json``).

    Raises:
        FileNotFoundError: the package was installed without its data (the message says how to regenerate it).
    """
    root = Path(str(resources.files("torchmetrics_av") / "demo_data"))
    absent = [name for name in DEMO_FILES if not (root / name).exists()]
    if absent:
        raise FileNotFoundError(
            f"the demo data is incomplete in {root} (missing {', '.join(absent)}); reinstall torchmetrics-av, or "
            "regenerate it from a source checkout with `python examples/make_demo_data.py`"
        )
    return root


def demo_metrics() -> list[str]:
    """Every metric of the CLI registry this installation can run, in registry order (av-benchmark's own included)."""
    return [name for name, spec in METRICS.items() if spec.unavailable() is None]


def expected_not_computed(n_clips: int) -> dict[str, str]:
    """The metrics that cannot give a value on ``n_clips`` clips, with the reason (the demo lists, not fails, them).

    Example:
        >>> sorted(expected_not_computed(6)), expected_not_computed(10)
        (['isc_panns', 'isc_passt'], {})
    """
    from torchmetrics_av.audio.isc import DEFAULT_SPLITS

    if n_clips >= DEFAULT_SPLITS:
        return {}
    why = f"{n_clips} clips are fewer than the {DEFAULT_SPLITS} splits of av-benchmark's Inception Score"
    return dict.fromkeys(SPLIT_METRICS, why)


def _checkpoint_groups(metrics: list[str], protocol: str, asr_backend: str = DEFAULT_ASR_BACKEND) -> list[str]:
    """The :data:`torchmetrics_av.weights.GROUPS` names of the metrics' backbones.

    A backbone without a group is left out of this check; a checkpoint it misses is caught when it loads.
    """
    from torchmetrics_av.weights import GROUPS

    args = argparse.Namespace(protocol=protocol, asr_backend=asr_backend)
    groups = []
    for backbone in dict.fromkeys(METRICS[m].backbone_key(args) for m in metrics):
        # CLAP's checkpoint depends on the protocol; the CLI's openai-whisper WER runs `--whisper-model base`.
        group = {"clap": f"clap-{protocol}", **_BACKBONE_GROUPS}.get(backbone, backbone)
        if group in GROUPS:
            groups.append(group)
    return groups


def missing_weights(
    metrics: list[str],
    protocol: str,
    weights_dir: str | None,
    download: bool,
    asr_backend: str = DEFAULT_ASR_BACKEND,
) -> list[str]:
    """Lines naming every checkpoint the metrics need that is neither in ``weights_dir`` / the cache nor downloadable.

    Args:
        metrics: CLI metric names.
        protocol: ``"fastvideo"`` or ``"av-benchmark"``.
        weights_dir: the CLI's ``--weights-dir`` (``None``: the cache folder).
        download: try to download the missing ones first (never attempted offline).
        asr_backend: the CLI's ``--asr-backend`` (WER's backbone).

    Returns:
        ``[]`` when everything is there; else :func:`torchmetrics_av.weights.missing_message`'s lines.
    """
    from torchmetrics_av.weights import is_offline, missing_checkpoints, missing_message

    groups = _checkpoint_groups(metrics, protocol, asr_backend)
    missing = missing_checkpoints(groups, weights_dir)
    failed: list[str] = []
    if missing and download and not is_offline():
        from torchmetrics_av.downloads import download as fetch

        failed = [f"{r.name}: {r.error}" for r in fetch(sorted({c.name for c in missing}), weights_dir) if not r.ok]
        missing = missing_checkpoints(groups, weights_dir)
    if not missing:
        return []
    # One network failure usually hits every file (each message holds its URL): the count and the first one.
    reason = [f"Download failed for {len(failed)} file(s), e.g. {failed[0]}"] if failed else []
    return missing_message(missing, weights_dir).splitlines() + reason


def _evaluate_args(data: Path, out: Path, random_weights: str | None, options: dict[str, Any]) -> Any:
    argv = ["evaluate", "--gen", str(data / "gen"), "--ref", str(data / "ref")]
    argv += ["--prompts", str(data / "prompts.csv"), "--transcripts", str(data / "transcripts.json")]
    argv += ["--metrics", ",".join(options["metrics"]), "--out", str(out / OUTPUT_FILES["json"])]
    argv += ["--csv", str(out / OUTPUT_FILES["csv"]), "--protocol", options["protocol"]]
    argv += ["--batch-size", str(options["batch_size"]), "--num-workers", str(options["num_workers"])]
    argv += ["--whisper-model", WHISPER_MODEL, "--asr-backend", options["asr_backend"]]
    for flag, key in (("--device", "device"), ("--weights-dir", "weights_dir"), ("--duration", "duration")):
        if options[key] is not None:
            argv += [flag, str(options[key])]
    argv += ["--bootstrap", str(DEMO_BOOTSTRAP), "--fd-inf"]
    if random_weights:
        argv += ["--random-weights", random_weights]
    return build_parser().parse_args(argv)


def run_demo(
    out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
    random_weights: str | None = None,
    device: str | None = None,
    *,
    protocol: str = "fastvideo",
    weights_dir: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int = DEFAULT_NUM_WORKERS,
    duration: float | None = None,
    download: bool = True,
    asr_backend: str = DEFAULT_ASR_BACKEND,
) -> dict[str, Any]:
    """Score the bundled clips with every metric; write ``results.json``, ``per_sample.csv``, ``report.html``.

    Args:
        out_dir: output folder (created).
        random_weights: ``"tiny"`` / ``"full"``: random models (offline; the numbers are not the metrics); ``None``:
            the official checkpoints, or ``"tiny"`` random ones when some cannot be found or downloaded.
        device: torch device (default: ``cuda`` when a GPU is visible, else ``cpu``).
        protocol: ``"fastvideo"`` or ``"av-benchmark"``.
        weights_dir: folder of official checkpoints (the CLI's ``--weights-dir``; default: the cache).
        batch_size: files per metric update.
        num_workers: decoder threads.
        duration: av-benchmark's ``--audio_length`` (s); ``av-benchmark`` only.
        download: download missing checkpoints (never attempted offline).
        asr_backend: WER's speech recogniser (the CLI's ``--asr-backend``).

    Returns:
        the results document (as written to ``results.json``); ``provenance.random_weights`` says which weights ran,
        ``provenance.missing_checkpoints`` what was missing, and ``not_computed`` maps each metric without a value to
        its reason.

    Raises:
        torchmetrics_av.cli.CLIError: a bad option (device, batch size, weights folder), as ``evaluate`` reports.
    """
    from torchmetrics_av.cli.parser import check_args
    from torchmetrics_av.cli.runner import run_evaluate
    from torchmetrics_av.report import write_report
    from torchmetrics_av.weights import WeightsNotFoundError

    data = demo_data_dir()
    out = Path(out_dir)
    metrics = demo_metrics()
    options = {"metrics": metrics, "protocol": protocol, "device": device, "weights_dir": weights_dir}
    options.update(batch_size=batch_size, num_workers=num_workers, duration=duration, asr_backend=asr_backend)
    check_args(_evaluate_args(data, out, random_weights, options))  # bad options fail before any download
    left_out = sorted(n for n in METRICS if n not in metrics)
    if left_out:
        reasons = "; ".join(f"{m}: {METRICS[m].unavailable()}" for m in left_out)
        print(f"note: not available in this installation: {reasons}", file=sys.stderr)

    missing: list[str] = []
    if random_weights is None:
        missing = missing_weights(metrics, protocol, weights_dir, download, asr_backend)
    weights = random_weights or (FALLBACK_WEIGHTS if missing else None)
    if weights:
        print(RANDOM_WEIGHTS_BANNER, file=sys.stderr)
    if missing:
        print("\n".join(missing) + f"\nRunning with --random-weights {FALLBACK_WEIGHTS} instead.", file=sys.stderr)
    try:
        doc, _ = run_evaluate(_evaluate_args(data, out, weights, options))
    except WeightsNotFoundError as err:  # a file a backbone loads on first use, not in the checkpoint groups
        if weights:
            raise
        missing, weights = [str(err)], FALLBACK_WEIGHTS
        print(f"{RANDOM_WEIGHTS_BANNER}\n{err}\nRunning with --random-weights {weights} instead.", file=sys.stderr)
        doc, _ = run_evaluate(_evaluate_args(data, out, weights, options))

    doc["provenance"]["missing_checkpoints"] = missing
    doc["not_computed"] = {
        name: (doc["details"].get(name) or {}).get("error") or "no value"
        for name, value in doc["metrics"].items()
        if value is None
    }
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(doc, out / OUTPUT_FILES["json"], out / OUTPUT_FILES["csv"])
    write_report(doc, doc["per_sample"], out / OUTPUT_FILES["report"], title="torchmetrics-av demo")
    return doc


def run_demo_command(args: Any) -> int:
    """``torchmetrics-av demo`` on parsed arguments: run, print the corpus values and where the files are.

    Returns 0, or 1 when a metric gave no value (its reason is printed; the other values are written).
    """
    doc = run_demo(
        args.out,
        args.random_weights,
        args.device,
        protocol=args.protocol,
        weights_dir=args.weights_dir,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        duration=args.duration,
        asr_backend=getattr(args, "asr_backend", DEFAULT_ASR_BACKEND),
    )
    print(json.dumps(doc["metrics"], indent=2))
    out = Path(args.out)
    print("wrote " + ", ".join(str(out / name) for name in OUTPUT_FILES.values()), file=sys.stderr)
    expected = expected_not_computed(doc["files"]["n_gen"])
    # Expected only when it failed for that reason (InceptionScore's compute error names `splits`).
    failed = [n for n, why in doc["not_computed"].items() if n not in expected or "splits" not in why]
    for name, why in doc["not_computed"].items():
        if name not in failed:
            print(f"note: {name} could not be computed on the demo data ({expected[name]}): {why}", file=sys.stderr)
    for name in failed:
        print(f"error: {name} gave no value: {doc['not_computed'][name]}", file=sys.stderr)
    return 1 if failed else 0
