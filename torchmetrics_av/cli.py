"""The ``torchmetrics-av`` command: evaluate a folder of generated files against references.

Commands:

* ``torchmetrics-av evaluate --gen DIR [--ref DIR | --ref-stats stats.pt] [--metrics fd_passt,kl_passt] ...`` writes
  a JSON file (corpus values + provenance: counts, protocol, backbone checkpoints, sample rates, library version) and
  a CSV of per-sample values.
* ``torchmetrics-av reference --ref DIR --out stats.pt`` writes FD reference statistics that
  ``evaluate --ref-stats`` reuses without re-embedding the references.

Files are paired by stem (``gen/x.wav`` ↔ ``ref/x.flac``); unmatched and undecodable files are reported in the JSON
and on stderr, never dropped silently. The numbers are those of the Python API on the same data (tested).

Example:
    >>> from torchmetrics_av.cli import build_parser
    >>> build_parser().parse_args(["evaluate", "--gen", "g", "--ref", "r"]).metrics
    'auto'
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
# Metrics whose inputs are audio files alone (the video/text metrics plug in through the same table).
AUDIO_METRICS = ("fd_passt", "kl_passt")


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


@dataclass
class Clip:
    """One decoded file."""

    stem: str
    path: Path
    audio: torch.Tensor  # (C, T) float32
    sample_rate: int


@dataclass
class Inventory:
    """Files found in the folders, their pairing and what could not be used."""

    gen: dict[str, Path]
    ref: dict[str, Path]
    broken: list[dict[str, str]] = field(default_factory=list)

    @property
    def paired(self) -> list[str]:
        """Stems present in both folders."""
        return sorted(set(self.gen) & set(self.ref))

    @property
    def unmatched_gen(self) -> list[str]:
        """Generated stems without a reference."""
        return sorted(set(self.gen) - set(self.ref))

    @property
    def unmatched_ref(self) -> list[str]:
        """Reference stems without a generated file."""
        return sorted(set(self.ref) - set(self.gen))


def list_files(folder: str | Path | None, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> dict[str, Path]:
    """Map stem -> path for the media files directly inside ``folder`` (raises on duplicate stems)."""
    if folder is None:
        return {}
    root = Path(folder)
    if not root.is_dir():
        raise CLIError(f"{root} is not a folder")
    out: dict[str, Path] = {}
    for path in sorted(root.iterdir()):
        if path.suffix.lower() in extensions and path.is_file():
            if path.stem in out:
                raise CLIError(f"two files share the stem {path.stem!r} in {root}: {out[path.stem].name}, {path.name}")
            out[path.stem] = path
    if not out:
        raise CLIError(f"no audio files ({', '.join(extensions)}) in {root}")
    return out


def read_audio(path: Path) -> tuple[torch.Tensor, int]:
    """Decode an audio file to ``(C, T)`` float32 in [-1, 1] and its sample rate (soundfile; PCM16 / 32768)."""
    import soundfile

    data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), int(sr)


def decode(
    stems: Sequence[str], files: dict[str, Path], workers: int, broken: list[dict[str, str]], progress: str
) -> Iterator[Clip]:
    """Decode files in order with ``workers`` threads; failures go to ``broken`` (reported, not raised)."""

    def load(stem: str) -> Clip | None:
        try:
            audio, sr = read_audio(files[stem])
        except Exception as err:  # noqa: BLE001 - any decoder failure is reported per file
            broken.append({"file": str(files[stem]), "error": f"{type(err).__name__}: {err}"})
            return None
        if audio.shape[-1] == 0:
            broken.append({"file": str(files[stem]), "error": "no samples"})
            return None
        return Clip(stem, files[stem], audio, sr)

    bar = _progress(len(stems), progress)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for clip in pool.map(load, stems):
            bar(1)
            if clip is not None:
                yield clip


def _progress(total: int, desc: str) -> Callable[[int], None]:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers/huggingface_hub
        return lambda n: None
    bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr, leave=False)
    return bar.update


def batches(items: Iterator[Clip], size: int) -> Iterator[list[Clip]]:
    """Group an iterator into lists of ``size``."""
    batch: list[Clip] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _weights_in(weights_dir: str | None, filename: str) -> str | None:
    if weights_dir is None:
        return None
    path = Path(weights_dir) / filename
    if not path.exists():
        raise CLIError(f"{filename} is not in --weights-dir {weights_dir}")
    return str(path)


def build_passt(args: argparse.Namespace) -> Any:
    """The PaSST backbone: official weights (``--weights-dir``, cache or download), or random ones when asked."""
    from torchmetrics_av.backbones.passt import PASST_CHECKPOINT, PaSST
    from torchmetrics_av.weights import WeightsNotFoundError

    if args.random_weights:
        torch.manual_seed(0)
        kw = {"embed_dim": 32, "depth": 1, "num_heads": 2} if args.random_weights == "tiny" else {}
        return PaSST(pretrained=False, **kw).to(args.device)
    try:
        return PaSST(weights=_weights_in(args.weights_dir, PASST_CHECKPOINT.filename)).to(args.device)
    except WeightsNotFoundError as err:
        raise CLIError(f"{err}\nOr pass --weights-dir DIR with {PASST_CHECKPOINT.filename} inside.") from err


def _json_value(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 and v.ndim == 0 else v.tolist()
    return v


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Compute the requested metrics; return the JSON document (also written to ``--out``)."""
    from torchmetrics_av import FrechetAudioDistance, PaSSTKLDivergence, __version__

    inv = Inventory(gen=list_files(args.gen), ref=list_files(args.ref) if args.ref else {})
    wanted = _select_metrics(args, inv)
    passt = build_passt(args)
    common = {"protocol": args.protocol, "backbone": passt, "batch_size": args.batch_size}
    metrics: dict[str, Any] = {}
    if "fd_passt" in wanted:
        metrics["fd_passt"] = FrechetAudioDistance(**common).to(args.device)
        if args.ref_stats:
            metrics["fd_passt"].load_reference_stats(args.ref_stats)
    if "kl_passt" in wanted:
        metrics["kl_passt"] = PaSSTKLDivergence(**common).to(args.device)

    per_sample: dict[str, dict[str, Any]] = {}
    kl_order: list[str] = []
    rates: dict[str, set[int]] = {"gen": set(), "ref": set()}
    paired = inv.paired
    # Paired clips first (KL needs both sides together), then the unpaired rest for FD.
    pairs_iter = zip(
        decode(paired, inv.gen, args.num_workers, inv.broken, "decode gen"),
        decode(paired, inv.ref, args.num_workers, inv.broken, "decode ref"),
    )
    for batch in _pair_batches(pairs_iter, paired, args.batch_size):
        gens, refs = [g for g, _ in batch], [r for _, r in batch]
        rates["gen"].update(c.sample_rate for c in gens)
        rates["ref"].update(c.sample_rate for c in refs)
        kw = {"sample_rate": [c.sample_rate for c in gens], "target_sample_rate": [c.sample_rate for c in refs]}
        if "fd_passt" in metrics:
            metrics["fd_passt"].update(
                preds=[c.audio for c in gens],
                target=None if args.ref_stats else [c.audio for c in refs],
                **kw,
            )
        if "kl_passt" in metrics:
            metrics["kl_passt"].update([c.audio for c in gens], [c.audio for c in refs], **kw)
            kl_order += [c.stem for c in gens]
    if "fd_passt" in metrics:
        for side, stems in (("gen", inv.unmatched_gen), ("ref", [] if args.ref_stats else inv.unmatched_ref)):
            files = inv.gen if side == "gen" else inv.ref
            for batch in batches(decode(stems, files, args.num_workers, inv.broken, f"decode {side}"), args.batch_size):
                rates[side].update(c.sample_rate for c in batch)
                audio, sr = [c.audio for c in batch], [c.sample_rate for c in batch]
                if side == "gen":
                    metrics["fd_passt"].update(preds=audio, sample_rate=sr)
                else:
                    metrics["fd_passt"].update(target=audio, target_sample_rate=sr)

    values: dict[str, float] = {}
    details: dict[str, Any] = {}
    for name, metric in metrics.items():
        try:
            values[name] = float(metric.compute())
        except ValueError as err:
            raise CLIError(f"{name}: {err}") from err
        details[name] = {k: _json_value(v) for k, v in metric.details.items() if not _is_per_sample(v)}
    if "kl_passt" in metrics:
        kl_d = metrics["kl_passt"].details
        kept = [stem for stem, k in zip(kl_order, kl_d["pair_kept"].tolist()) if k]
        for stem, soft, sig in zip(kept, kl_d["kl_softmax"].tolist(), kl_d["kl_sigmoid"].tolist()):
            per_sample[stem] = {"kl_passt": soft, "kl_passt_sigmoid": sig}
        for stem in (s for s, k in zip(kl_order, kl_d["pair_kept"].tolist()) if not k):
            per_sample[stem] = {"kl_passt_skipped": "silent"}
    doc = {
        "metrics": values,
        "details": details,
        "provenance": {
            "library_version": __version__,
            "protocol": args.protocol,
            "backbones": {"PaSST": getattr(passt, "checkpoint_id", "unknown")},
            "random_weights": bool(args.random_weights),
            "sample_rates": {k: sorted(v) for k, v in rates.items()},
            "gen_dir": str(args.gen),
            "ref_dir": str(args.ref) if args.ref else None,
            "ref_stats": str(args.ref_stats) if args.ref_stats else None,
        },
        "files": {
            "n_gen": len(inv.gen),
            "n_ref": len(inv.ref),
            "n_paired": len(paired),
            "unmatched_gen": inv.unmatched_gen,
            "unmatched_ref": inv.unmatched_ref,
            "broken": inv.broken,
        },
        "per_sample": per_sample,
    }
    return doc


def _is_per_sample(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.ndim > 0


def _pair_batches(
    pairs: Iterator[tuple[Clip, Clip]], stems: Sequence[str], size: int
) -> Iterator[list[tuple[Clip, Clip]]]:
    # The two decoders drop broken files independently: keep only pairs whose stems agree.
    batch: list[tuple[Clip, Clip]] = []
    gens: dict[str, Clip] = {}
    refs: dict[str, Clip] = {}
    for g, r in pairs:
        gens[g.stem], refs[r.stem] = g, r
        for stem in [s for s in gens if s in refs]:
            batch.append((gens.pop(stem), refs.pop(stem)))
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


def _select_metrics(args: argparse.Namespace, inv: Inventory) -> list[str]:
    available = ["fd_passt"] if (inv.ref or args.ref_stats) else []
    if inv.paired:
        available.append("kl_passt")
    if args.metrics == "auto":
        if not available:
            raise CLIError("no metric can run: give --ref DIR (paired by file stem) or --ref-stats FILE")
        return available
    wanted = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for m in wanted:
        if m not in AUDIO_METRICS:
            raise CLIError(f"unknown metric {m!r}; choose from {', '.join(AUDIO_METRICS)}")
        if m not in available:
            need = "--ref DIR or --ref-stats" if m == "fd_passt" else "--ref DIR with files paired by stem"
            raise CLIError(f"{m} needs {need}")
    return wanted


def write_outputs(doc: dict[str, Any], out: Path, csv_path: Path | None) -> None:
    """Write the JSON document and the per-sample CSV (one row per generated stem)."""
    out.write_text(json.dumps(doc, indent=2))
    if csv_path is not None:
        columns = sorted({k for row in doc["per_sample"].values() for k in row})
        with open(csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["stem", *columns])
            for stem, row in doc["per_sample"].items():
                writer.writerow([stem, *[row.get(c, "") for c in columns]])


def run_reference(args: argparse.Namespace) -> dict[str, Any]:
    """Embed a reference folder and write FD statistics to ``--out``."""
    from torchmetrics_av import FrechetAudioDistance

    files = list_files(args.ref)
    broken: list[dict[str, str]] = []
    fd = FrechetAudioDistance(protocol=args.protocol, backbone=build_passt(args), batch_size=args.batch_size)
    fd = fd.to(args.device)
    for batch in batches(decode(sorted(files), files, args.num_workers, broken, "decode ref"), args.batch_size):
        fd.update(target=[c.audio for c in batch], target_sample_rate=[c.sample_rate for c in batch])
    try:
        fd.save_reference_stats(args.out)
    except ValueError as err:
        raise CLIError(str(err)) from err
    return {"n_ref": len(files) - len(broken), "broken": broken, "out": str(args.out)}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``torchmetrics-av``."""
    parser = argparse.ArgumentParser(prog="torchmetrics-av", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--protocol", default="fastvideo", choices=["fastvideo", "av-benchmark"])
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        p.add_argument("--batch-size", type=int, default=8)
        p.add_argument("--num-workers", type=int, default=2, help="decoder threads")
        p.add_argument("--weights-dir", help="folder holding the official checkpoint files (no download)")
        p.add_argument("--random-weights", choices=["full", "tiny"], help=argparse.SUPPRESS)

    ev = sub.add_parser("evaluate", help="score generated files against references")
    ev.add_argument("--gen", required=True, help="folder of generated audio files")
    ev.add_argument("--ref", help="folder of reference audio files (paired by stem)")
    ev.add_argument("--ref-stats", help="FD reference statistics from `torchmetrics-av reference`")
    ev.add_argument(
        "--metrics", default="auto", help=f"comma-separated: {', '.join(AUDIO_METRICS)} (default: all possible)"
    )
    ev.add_argument("--out", default="results.json", help="JSON output path")
    ev.add_argument("--csv", help="per-sample CSV output path")
    common(ev)
    ref = sub.add_parser("reference", help="write FD reference statistics of a folder")
    ref.add_argument("--ref", required=True)
    ref.add_argument("--out", required=True)
    common(ref)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``torchmetrics-av`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.batch_size < 1:
            raise CLIError("--batch-size must be >= 1")
        if args.command == "evaluate":
            doc = run_evaluate(args)
            write_outputs(doc, Path(args.out), Path(args.csv) if args.csv else None)
            summary = doc["metrics"]
            files = doc["files"]
        else:
            summary = run_reference(args)
            files = summary
    except CLIError as err:
        print(f"torchmetrics-av: error: {err}", file=sys.stderr)
        return 2
    if args.random_weights:
        print("!! RANDOM WEIGHTS: these numbers are not the metrics", file=sys.stderr)
    for key in ("unmatched_gen", "unmatched_ref"):
        if files.get(key):
            print(
                f"warning: {len(files[key])} {key.replace('_', ' ')} file(s): {', '.join(files[key][:10])}",
                file=sys.stderr,
            )
    for b in files.get("broken", []):
        print(f"warning: could not use {b['file']}: {b['error']}", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
