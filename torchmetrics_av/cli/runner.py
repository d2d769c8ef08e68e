"""The loop of ``torchmetrics-av evaluate`` / ``reference``: decode, feed every metric, compute, collect rows.

Nothing here knows a metric by name: each comes from its :class:`~torchmetrics_av.cli.registry.MetricSpec`.

Rejected samples: when a metric raises on a batch (a ``ValueError`` such as a video shorter than DeSync's 4.8 s or a
transcript with no words, or any other exception), its state is restored and the batch is fed one file at a time;
the files it still rejects are listed under ``files.skipped`` with the metric's message and the run goes on. A metric
that ends with no scored sample is reported as ``null`` with its reason.

Example:
    >>> from torchmetrics_av.cli.runner import json_value
    >>> import torch
    >>> json_value(torch.tensor(0.5)), json_value(torch.tensor([1, 2]))
    (0.5, [1, 2])
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchmetrics_av.allocator import cpu_allocator_state
from torchmetrics_av.cli.backbones import build_backbones
from torchmetrics_av.cli.errors import CLIError
from torchmetrics_av.cli.estimators import add_estimates
from torchmetrics_av.cli.feeds import FeedContext
from torchmetrics_av.cli.inputs import (
    Clip,
    Inventory,
    Item,
    Progress,
    Texts,
    batches,
    bounded_map,
    by_length,
    list_files,
    lower_thread_priority,
    read_clip,
)
from torchmetrics_av.cli.inputs import read_texts as _read_texts
from torchmetrics_av.cli.registry import METRICS, MetricSpec, select_metrics
from torchmetrics_av.preprocessing import LoaderCache

# The metric whose reference statistics `torchmetrics-av reference` writes and `evaluate --ref-stats` reads.
REFERENCE_METRIC = "fd_passt"
# Keys of `files` in the JSON: generated stems without a text of a kind, and texts without a generated stem.
TEXT_REPORT_KEYS = {
    "prompts": ("without_prompt", "unused_prompts"),
    "transcripts": ("without_transcript", "unused_transcripts"),
}


def json_value(v: Any) -> Any:
    """A tensor as a JSON-friendly scalar or list."""
    if isinstance(v, Tensor):
        return v.item() if v.ndim == 0 else v.tolist()
    return v


def _is_per_sample(v: Any) -> bool:
    return (isinstance(v, Tensor) and v.ndim > 0) or isinstance(v, list)


def _message(err: BaseException) -> str:
    # A ValueError is a metric refusing the input: its message says why. Anything else is named by its type.
    return str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"


def _snapshot(metric: Any) -> dict[str, Any]:
    # Metric states are tensors (updated in place) or lists (appended to): a clone / shallow copy restores them.
    out = {}
    for name in metric._defaults:
        value = getattr(metric, name)
        out[name] = list(value) if isinstance(value, list) else value.clone()
    return out


def _restore(metric: Any, snapshot: dict[str, Any]) -> None:
    for name, value in snapshot.items():
        setattr(metric, name, value)


@dataclass
class MetricRun:
    """One metric in a run: the metric, the ids of the generated files it took, and the files it rejected."""

    name: str
    spec: MetricSpec
    metric: Any
    fed: list[int] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def feed_batch(self, batch: list[Item], ctx: FeedContext) -> None:
        """Feed the items of a batch of generated files that this metric takes."""
        feed = self.spec.feed
        self._feed(lambda items: feed.update(self.metric, items, ctx), feed.select(batch, ctx))

    def feed_refs(self, clips: list[Clip]) -> None:
        """Feed references without a generated file (unpaired feeds only)."""
        feed: Any = self.spec.feed
        self._feed(
            lambda items: feed.update_refs(self.metric, [it.gen for it in items]), [Item(c.stem, c) for c in clips]
        )

    def _feed(self, call: Callable[[list[Item]], None], items: list[Item]) -> None:
        """``call(items)`` in one go, as the Python API would; if it raises, restore and retry one file at a time."""
        if not items:
            return
        snap = _snapshot(self.metric)
        try:
            call(items)
            self.fed.extend(it.id for it in items if it.id >= 0)
            return
        except Exception as err:  # noqa: BLE001 - one refused clip must not end the run; it is reported
            _restore(self.metric, snap)
            if len(items) == 1:
                self.skipped.append({"stem": items[0].stem, "error": _message(err)})
                return
        for it in items:
            snap = _snapshot(self.metric)
            try:
                call([it])
                if it.id >= 0:
                    self.fed.append(it.id)
            except Exception as err:  # noqa: BLE001
                _restore(self.metric, snap)
                self.skipped.append({"stem": it.stem, "error": _message(err)})

    def result(self, order: Sequence[str]) -> tuple[Any, dict[str, Any], dict[str, dict[str, Any]]]:
        """``(value or None, details, rows by stem)``; a failing ``compute()`` gives ``None`` and its reason."""
        rows: dict[str, dict[str, Any]] = {}
        for skip in self.skipped:
            rows.setdefault(skip["stem"], {})[f"{self.name}_error"] = skip["error"]
        try:
            value = self.metric.compute()
        except Exception as err:  # noqa: BLE001 - e.g. DeSync with every clip too short: null, with the reason
            reason = _message(err)
            if self.skipped:
                first = self.skipped[0]
                reason += f" ({len(self.skipped)} rejected, e.g. {first['stem']}: {first['error']})"
            return None, {"error": reason, "n_skipped_by_cli": len(self.skipped)}, rows
        value = {k: float(v) for k, v in value.items()} if isinstance(value, dict) else float(value)
        d = getattr(self.metric, "details", {})  # a plain torchmetrics Metric has none
        # Per-sample columns go to the rows; deprecated aliases of renamed keys are left out of the JSON.
        old = getattr(d, "deprecated_keys", ())
        details = {k: json_value(v) for k, v in d.items() if k not in old and not _is_per_sample(v)}
        details["n_skipped_by_cli"] = len(self.skipped)
        if self.spec.columns:
            table = self.metric.per_sample()
            ids = table["ids"].tolist()
            for i, sid in enumerate(ids):
                rows.setdefault(order[sid], {}).update(
                    {col: json_value(table[key][i]) for col, key in self.spec.columns.items() if key in table}
                )
            why = "silent" if details.get("n_skipped_silent") else "skipped by the metric"
            for sid in sorted(set(self.fed) - set(ids)):
                rows.setdefault(order[sid], {})[f"{self.name}_skipped"] = why
        return value, details, rows


class _Prefetcher:
    """The CLI's :class:`LoaderCache` and the clips decoded but not yet fed: their loads (resampling, windows, memo
    keys) run on the decoder threads, off the main thread.

    A decoded clip is prefetched at once on its decoder thread with every step the cache knows. The steps are learnt
    from the metrics' first calls, after the first batches have been decoded: whenever the cache learns one, every
    held clip is prefetched again on ``workers`` helper threads, so that even the first batch is loaded in parallel.
    A failed prefetch stores nothing: the metric meets the failure again on the main thread and rejects the file with
    its own message.
    """

    def __init__(self, workers: int) -> None:
        self.cache = LoaderCache()
        self._ready: dict[int, tuple[Tensor, int]] = {}  # id(audio) -> (audio, rate): decoded, not yet forgotten
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="tmav-prefetch", initializer=lower_thread_priority
        )
        self.cache.on_learn = self._again

    def add(self, clip: Clip) -> None:
        """A decoded clip: hold it and prefetch it here (on the decoder thread)."""
        with self._lock:
            self._ready[id(clip.audio)] = (clip.audio, clip.sample_rate)
        self._one(clip.audio, clip.sample_rate)

    def _again(self) -> None:
        with self._lock:
            held = list(self._ready.values())
        for audio, rate in held:
            self._pool.submit(self._one, audio, rate)

    def _one(self, audio: Tensor, rate: int) -> None:
        with self._lock:
            if id(audio) not in self._ready:  # fed and forgotten meanwhile
                return
        try:
            self.cache.prefetch(audio, rate)
        except Exception:  # noqa: BLE001, S110 - nothing was stored for the failed load: the metric computes it itself
            pass

    def forget(self, clips: Sequence[Tensor]) -> None:
        """The clips of a fed batch: release them and what was loaded from them."""
        with self._lock:
            for c in clips:
                self._ready.pop(id(c), None)
        self.cache.forget(clips)

    @contextlib.contextmanager
    def active(self) -> Iterator[_Prefetcher]:
        """The cache active in this block; the helper threads stopped (pending prefetches dropped) when it ends."""
        try:
            with self.cache.active():
                yield self
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _decoder(
    inv: Inventory, reads_refs: bool, frames: bool, orphans: list[str], prefetcher: _Prefetcher
) -> Callable[[str], Item | None]:
    ids = {stem: i for i, stem in enumerate(inv.order)}

    def load(stem: str) -> Item | None:
        try:
            gen = read_clip(stem, inv.gen[stem], frames=frames)
        except Exception as err:  # noqa: BLE001 - any decoder failure is reported per file
            inv.fail(inv.gen[stem], err)
            if reads_refs and stem in inv.ref:
                orphans.append(stem)  # its reference still counts for FD
            return None
        prefetcher.add(gen)
        ref = None
        if reads_refs and stem in inv.ref:
            try:
                ref = read_clip(stem, inv.ref[stem], frames=False)
            except Exception as err:  # noqa: BLE001
                inv.fail(inv.ref[stem], err)
            else:
                prefetcher.add(ref)
        return Item(stem, gen, ref, ids[stem])

    return load


def _without_broken(results: Iterator[Any], progress: Progress) -> Iterator[Any]:
    """The decoded files of ``results``; a broken one (``None``, already listed) counts as done at once."""
    for result in results:
        if result is None:
            progress.advance()
        else:
            yield result


def _batched(
    load: Callable[[str], Any],
    stems: Sequence[str],
    paths: dict[str, Path],
    progress: Progress,
    args: argparse.Namespace,
) -> Iterator[list[Any]]:
    """Batches of ``--batch-size`` decoded files of ``stems`` in ``--batch-order``, decoded (and resampled) on
    ``--num-workers`` threads up to one batch ahead of the model.
    """
    order = by_length(stems, paths, args.num_workers) if args.batch_order == "length" else list(stems)
    ahead = args.batch_size + args.num_workers
    return batches(_without_broken(bounded_map(load, order, args.num_workers, ahead), progress), args.batch_size)


def _load_ref(inv: Inventory, prefetcher: _Prefetcher) -> Callable[[str], Clip | None]:
    def load(stem: str) -> Clip | None:
        try:
            clip = read_clip(stem, inv.ref[stem], frames=False)
        except Exception as err:  # noqa: BLE001 - any decoder failure is reported per file
            inv.fail(inv.ref[stem], err)
            return None
        prefetcher.add(clip)
        return clip

    return load


def _clips_of(batch: list[Item]) -> list[Tensor]:
    return [c.audio for it in batch for c in (it.gen, it.ref) if c is not None]


def _open(names: Sequence[str], args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, MetricRun]]:
    """The backbones (each once, every missing checkpoint listed together) and a :class:`MetricRun` per metric."""
    backbones = build_backbones((METRICS[n].backbone_key(args) for n in names), args)
    runs: dict[str, MetricRun] = {}
    for name in names:
        spec = METRICS[name]
        try:
            runs[name] = MetricRun(name, spec, spec.build(backbones[spec.backbone_key(args)], args).to(args.device))
        except ValueError as err:
            raise CLIError(f"{name}: {err}") from err
    return backbones, runs


def run_evaluate(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Compute the metrics; return the JSON document and the names of requested metrics that gave no value."""
    inv = Inventory(gen=list_files(args.gen, "--gen"), ref=list_files(args.ref, "--ref") if args.ref else {})
    texts = {kind: _read_texts(path, kind) for kind in TEXT_REPORT_KEYS if (path := getattr(args, kind, None))}
    ctx = FeedContext(inv, texts, ref_stats=bool(args.ref_stats), protocol=args.protocol)
    backbones, runs = _open(select_metrics(args.metrics, ctx), args)
    reads_refs = any(r.spec.feed.reads_refs(ctx) for r in runs.values())
    ref_pass = [r for r in runs.values() if r.spec.feed.unpaired_refs and r.spec.feed.reads_refs(ctx)]
    frames = any(r.spec.feed.needs_frames for r in runs.values())
    seen = _Seen()
    orphans: list[str] = []  # paired references whose generated file is broken: still FD references

    progress = Progress(len(inv.gen) + (len(inv.unmatched_ref) if ref_pass else 0), "evaluate")
    # Every clip is loaded (resampled) once for all metrics with the same loader, ahead of time on the decoder threads.
    prefetcher = _Prefetcher(args.num_workers)
    load = _decoder(inv, reads_refs, frames, orphans, prefetcher)
    # Paired stems and the others are batched apart (as a user of the Python API would feed pairs, then the rest).
    groups = (inv.paired, inv.unmatched_gen)
    with prefetcher.active():
        for batch in (b for group in groups for b in _batched(load, group, inv.gen, progress, args)):
            seen.add(batch)
            for run in runs.values():
                run.feed_batch(batch, ctx)
            prefetcher.forget(_clips_of(batch))
            progress.advance(len(batch))
        if ref_pass:
            rest = sorted([*inv.unmatched_ref, *orphans])
            progress.grow(len(orphans))
            for clips in _batched(_load_ref(inv, prefetcher), rest, inv.ref, progress, args):
                seen.refs.update(c.sample_rate for c in clips)
                for run in ref_pass:
                    run.feed_refs(clips)
                prefetcher.forget([c.audio for c in clips])
                progress.advance(len(clips))
    progress.close()
    doc = _document(args, inv, texts, backbones, runs, seen, frames)
    failed = [name for name, v in doc["metrics"].items() if v is None and args.metrics != "auto"]
    add_estimates(doc, {name: run.metric for name, run in runs.items()}, args)  # --bootstrap, --fd-inf
    return doc, failed


@dataclass
class _Seen:
    """Sample rates and frame rates of the files scored (for the provenance)."""

    gen: set[int] = field(default_factory=set)
    refs: set[int] = field(default_factory=set)
    fps: set[float] = field(default_factory=set)

    def add(self, batch: list[Item]) -> None:
        self.gen.update(it.gen.sample_rate for it in batch)
        self.refs.update(it.ref.sample_rate for it in batch if it.ref is not None)
        self.fps.update(it.gen.fps for it in batch if it.gen.fps is not None)


def _document(
    args: argparse.Namespace,
    inv: Inventory,
    texts: dict[str, Texts],
    backbones: dict[str, Any],
    runs: dict[str, MetricRun],
    seen: _Seen,
    frames: bool,
) -> dict[str, Any]:
    """The JSON document: corpus values, details, provenance, what was (not) used, one row per generated file."""
    from torchmetrics_av import __version__

    values: dict[str, Any] = {}
    details: dict[str, Any] = {}
    per_file: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        values[name], details[name], rows = run.result(inv.order)
        for stem, row in rows.items():
            per_file.setdefault(stem, {}).update(row)
    inv.broken.sort(key=lambda b: b["file"])
    broken_files = {b["file"]: b["error"] for b in inv.broken}
    rows_out: dict[str, dict[str, Any]] = {}
    for stem in sorted(inv.gen):
        row: dict[str, Any] = {"file": inv.gen[stem].name}
        if str(inv.gen[stem]) in broken_files:
            row["error"] = broken_files[str(inv.gen[stem])]
        rows_out[stem] = {**row, **per_file.get(stem, {})}
    files: dict[str, Any] = {
        "n_gen": len(inv.gen),
        "n_gen_videos": len(inv.gen_videos),
        "n_ref": len(inv.ref),
        "n_paired": len(inv.paired),
        "n_scored": {name: len(run.fed) for name, run in runs.items()},
        "unmatched_gen": inv.unmatched_gen if inv.ref else [],
        "unmatched_ref": inv.unmatched_ref,
    }
    for kind, (without, unused) in TEXT_REPORT_KEYS.items():
        used = any(getattr(r.spec.feed, "kind", None) == kind for r in runs.values())
        files[without] = sorted(set(inv.gen) - set(texts.get(kind, {}))) if used else []
        files[unused] = sorted(set(texts.get(kind, {})) - set(inv.gen))
    files["audio_only_gen"] = sorted(set(inv.gen) - set(inv.gen_videos)) if frames else []
    files["broken"] = inv.broken
    files["skipped"] = {name: run.skipped for name, run in runs.items() if run.skipped}
    provenance = {
        "library_version": __version__,
        "torch_version": torch.__version__,
        "protocol": args.protocol,
        "duration_s": args.duration,
        "backbones": {type(bb).__name__: getattr(bb, "checkpoint_id", "unknown") for bb in backbones.values()},
        "random_weights": args.random_weights or False,
        "sample_rates": {"gen": sorted(seen.gen), "ref": sorted(seen.refs)},
        "video_fps": sorted(seen.fps),
        "device": str(args.device),
        "cpu_allocator": cpu_allocator_state(),  # "tuned" under the torchmetrics-av command (torchmetrics_av.allocator)
        "batch_size": args.batch_size,
        "batch_order": args.batch_order,
        "whisper_model": args.whisper_model if "whisper" in backbones else None,
        "gen_dir": str(args.gen),
        "ref_dir": str(args.ref) if args.ref else None,
        "ref_stats": str(args.ref_stats) if args.ref_stats else None,
        "prompts": str(args.prompts) if args.prompts else None,
        "transcripts": str(args.transcripts) if args.transcripts else None,
    }
    return {"metrics": values, "details": details, "provenance": provenance, "files": files, "per_sample": rows_out}


def run_reference(args: argparse.Namespace) -> dict[str, Any]:
    """Embed a reference folder and write the FD statistics to ``--out``."""
    files = list_files(args.ref, "--ref")
    inv = Inventory(gen={}, ref=files)
    _, runs = _open([REFERENCE_METRIC], args)
    run = runs[REFERENCE_METRIC]
    progress = Progress(len(files), "reference")
    prefetcher = _Prefetcher(args.num_workers)
    with prefetcher.active():
        for clips in _batched(_load_ref(inv, prefetcher), sorted(files), files, progress, args):
            run.feed_refs(clips)
            prefetcher.forget([c.audio for c in clips])
            progress.advance(len(clips))
    progress.close()
    try:
        run.metric.save_reference_stats(args.out)
    except ValueError as err:
        raise CLIError(str(err)) from err
    return {
        "n_ref": len(files) - len(inv.broken) - len(run.skipped),
        "broken": sorted(inv.broken, key=lambda b: b["file"]),
        "skipped": {REFERENCE_METRIC: run.skipped} if run.skipped else {},
        "out": str(Path(args.out)),
    }
