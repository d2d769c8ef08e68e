"""Every torchmetrics-av throughput benchmark in one run, written as ratios to one JSON file.

Sections (a registry: :data:`SECTIONS`, one function each returning a dict):

- ``backbones``: per backbone (:data:`cases.CASES`), ``update()`` time at batch 1/8/32 against its bare forward on
  the same preprocessed batch (``overhead_ratio`` = update / forward; 1.0 means the metric adds nothing). The bare
  forward is the replay of the backbone calls that ``update()`` made (recorded by :class:`cases.ForwardSpy`), and the
  replay's outputs are checked against the recorded ones (``replay``).
- ``cli``: ``torchmetrics-av evaluate`` files/s on WAV files (decode, resample, forward, JSON) against the bare
  forward of the same files (its backbone calls replayed).
- ``suite``: the av-benchmark metrics sharing one backbone per model (``av_benchmark_suite``) vs the same metrics
  each with its own backbones: backbone forwards counted (calls and clips) and time, on one batch.
- ``fd_compute``: FD ``compute()`` vs scipy ``sqrtm`` and torchmetrics ``_compute_fid`` at D = 128/768/2048, and
  the exact low-rank route (the functions of ``benchmarks/bench_fd_compute.py``).
- ``allocator``: the bare PaSST forward in fresh processes under glibc malloc's default vs
  :func:`torchmetrics_av.allocator.tune_cpu_allocator` (time and page faults per forward).

Every other section runs in this process with the CPU allocator tuned, as the ``torchmetrics-av`` command runs
(``--cpu-allocator default`` keeps glibc's behaviour; ``environment.cpu_allocator`` records which).

Times are the best of ``--repeats`` runs, the variants of one ratio timed alternately; only ratios mean something on
a shared machine (``load_average`` in the JSON says how shared it was). ``--quick`` uses the tiny configs (a few
layers) and 2 repeats: the ratios then weigh the metric's preprocessing against a very small forward, an upper bound
of the overhead; the full run uses the official architectures (random weights, the same graph as the checkpoints).

Usage::

    python benchmarks/run_all.py --quick --json out.json            # < 10 min on 2 CPU cores
    python benchmarks/run_all.py --device cuda --json out.json       # official sizes
    python benchmarks/run_all.py --markdown out.json                 # the README table from a JSON
    python benchmarks/render_readme.py out.json                      # ... written into README.md

The JSON schema is documented in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout: benchmark the checkout, not an installed copy
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.cases import (  # noqa: E402
    AUDIO_RATE,
    CASES,
    PROMPT,
    VIDEO_FPS,
    VIDEO_HW,
    BackboneCase,
    ForwardSpy,
    build_backbone,
    compare_outputs,
    interleaved_times,
    replay,
    time_once,
)

SCHEMA = "torchmetrics-av/run_all/1"
# Batch sizes of the update() vs forward section (issue 12 item 1).
BATCHES = (1, 8, 32)
# Timed repeats per variant: one (after the recording run, which is the warm-up) keeps --quick under 10 min on 2
# shared cores (measured: 2 repeats took 15 min at load 5-7); 5 for a quiet full run.
REPEATS = {"quick": 1, "full": 5}
# FD compute sizes (issue 12 item 1): VGGish's 128, PaSST's 768, PANNs' 2048-d embeddings; moments of 5000 / 4000
# rows (full rank at every D), as bench_fd_compute's full-rank case.
FD_DIMS = (128, 768, 2048)
FD_ROWS = (5000, 4000)


@dataclasses.dataclass
class Options:
    """What one run measures (from the command line)."""

    device: torch.device
    quick: bool
    size: str
    batches: tuple[int, ...]
    repeats: int
    backbones: tuple[str, ...]
    cli_files: int | None = None  # files per side in the cli section (None: CLI_FILES)


SECTIONS: dict[str, Callable[[Options], dict[str, Any]]] = {}


def section(name: str) -> Callable[[Callable[[Options], dict[str, Any]]], Callable[[Options], dict[str, Any]]]:
    """Register a benchmark section: ``fn(options) -> dict`` (ratios, plus the timings they come from)."""

    def register(fn: Callable[[Options], dict[str, Any]]) -> Callable[[Options], dict[str, Any]]:
        SECTIONS[name] = fn
        return fn

    return register


def _log(message: str) -> None:
    """Progress on stderr (flushed: a long run shows where its time goes)."""
    print(message, file=sys.stderr, flush=True)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_batch(case: BackboneCase, net: torch.nn.Module, batch: int, opts: Options) -> dict[str, Any]:
    """One batch size of :func:`backbone_overhead`: time ``update()`` and the replay of its backbone calls."""
    inputs = case.inputs(batch, opts.size, torch.Generator().manual_seed(batch))
    case.set_batch(net, batch)
    update = case.metric(net, batch, "fp32")
    if hasattr(update, "to"):
        update.to(opts.device)
    _clear_caches([net])  # the previous batch size's clips may be memoised
    with ForwardSpy(net, case.forwards) as spy:  # also the warm-up: kernels, mel banks, resampler caches
        update(**inputs)
    calls = spy.calls
    if not calls:
        raise RuntimeError(f"{case.name}: update() called none of {case.forwards}; the case's `forwards` are stale")
    check = compare_outputs([c.output for c in calls], replay(net, calls, device=opts.device))

    def fresh_update() -> None:
        # The clip memo (PaSST, PANNs) would otherwise answer the timed update() from the warm-up's outputs.
        _clear_caches([net])
        update(**inputs)

    times = interleaved_times(
        {"update": fresh_update, "forward": lambda: replay(net, calls, device=opts.device)},
        opts.repeats,
        opts.device,
    )
    t_update, t_forward = min(times["update"]), min(times["forward"])
    return {
        "update_s": t_update,
        "forward_s": t_forward,
        "update_s_median": statistics.median(times["update"]),
        "forward_s_median": statistics.median(times["forward"]),
        "overhead_ratio": t_update / t_forward,
        "update_per_s": batch / t_update,
        "forward_calls": len(calls),
        "replay": check,
    }


def backbone_overhead(name: str, opts: Options) -> dict[str, Any]:
    """``update()`` vs the bare forward of one backbone case at every batch size of ``opts``."""
    case = CASES[name]
    net = case.build(opts.size).to(opts.device)
    out: dict[str, Any] = {"size": opts.size, "unit": case.clips, "forward_methods": list(case.forwards), "batches": {}}
    for batch in opts.batches:
        out["batches"][str(batch)] = measure_batch(case, net, batch, opts)
        _free(opts.device)
    del net
    _free(opts.device)
    return out


@section("backbones")
def backbones_section(opts: Options) -> dict[str, Any]:
    """Per backbone: ``update()`` vs bare forward on the same preprocessed batch (see the module docstring)."""
    result: dict[str, Any] = {}
    for name in opts.backbones:
        t0 = time.perf_counter()
        try:
            result[name] = backbone_overhead(name, opts)
        except Exception as err:  # one broken backbone must not hide the others' numbers
            result[name] = {"error": _error_text(err)}
        _log(f"  backbones.{name}: {time.perf_counter() - t0:.0f} s")
    return result


@section("fd_compute")
def fd_compute_section(opts: Options) -> dict[str, Any]:
    """FD compute (eigh route) vs scipy ``sqrtm`` and torchmetrics ``_compute_fid`` at each of :data:`FD_DIMS`
    (ratios and relative agreement), and the exact low-rank route at N = 300 / 400, D = 2048
    (``benchmarks/bench_fd_compute.py``)."""
    from benchmarks import bench_fd_compute as fdc

    repeat = 1 if opts.quick else 3
    return {
        # Below D = 2048 one compute takes milliseconds: best of 5 even in a quick run.
        "by_dimension": {str(d): fdc.bench_full_rank(d, FD_ROWS, repeat if d >= 2048 else 5) for d in FD_DIMS},
        # The case (N = 300 / 400 rows, D = 2048) even in a quick run: scipy's one sqrtm there is ~10-20 s.
        "low_rank": fdc.bench_low_rank(fdc.LOW_D, fdc.LOW_N, repeat),
    }


# CLI section: files per run (8 s, 16 kHz mono WAV, generated and reference) and the metrics it scores. Quick: enough
# files for four batches per side at the default --batch-size, so the pipeline reaches its steady state.
CLI_FILES = {"quick": 32, "full": 64}
CLI_SECONDS = 8.0
CLI_METRICS = "fd_passt,kl_passt"
# Timed CLI runs (each followed by the bare replay of its own forwards), after one untimed warm-up run: a CLI run is
# a few seconds with the tiny models, so more repeats than the backbone section's are affordable.
CLI_REPEATS = {"quick": 3, "full": 3}


def _write_wavs(folder: Path, n: int, seed: int) -> None:
    import soundfile

    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(seed)
    for i in range(n):
        wave = 0.1 * torch.randn(round(CLI_SECONDS * AUDIO_RATE), generator=gen)
        soundfile.write(folder / f"clip{i:03d}.wav", wave.numpy(), AUDIO_RATE, subtype="PCM_16")


@section("cli")
def cli_section(opts: Options) -> dict[str, Any]:
    """``torchmetrics-av evaluate`` files/s (decode → resample → forward → JSON) vs the bare forward on the same files.

    The command runs in-process with ``--random-weights``; its backbone calls are recorded as in ``backbones``, and
    the pipeline time counts from the moment its backbones are built (model construction excluded). One warm-up run
    (as the bare forward's recording is its warm-up), then the CLI and the replay of that run's own forwards
    alternately, best of :data:`CLI_REPEATS` each.
    """
    import tempfile

    from torchmetrics_av import cli
    from torchmetrics_av.cli import backbones as cli_backbones

    n = opts.cli_files or CLI_FILES["quick" if opts.quick else "full"]
    repeats = max(opts.repeats, CLI_REPEATS["quick" if opts.quick else "full"])
    original = cli_backbones.build_backbone

    def run_cli(argv: list[str]) -> tuple[float, float, dict[str, tuple[torch.nn.Module, ForwardSpy]]]:
        """``(total s, pipeline s, {kind: (backbone, its recorded calls)})`` of one run."""
        built: dict[str, tuple[torch.nn.Module, ForwardSpy]] = {}
        ready: list[float] = []

        def build_and_spy(kind: str, args: Any) -> torch.nn.Module:
            net = original(kind, args)
            built[kind] = (net, ForwardSpy(net, CASES[kind].forwards).__enter__())
            ready.append(time.perf_counter())
            return net

        cli_backbones.build_backbone = build_and_spy
        try:
            t0 = time.perf_counter()
            status = cli.main(argv)
            t_end = time.perf_counter()
        finally:
            cli_backbones.build_backbone = original
            for _, spy in built.values():
                spy.__exit__(None, None, None)
        if status != 0:
            raise RuntimeError(f"torchmetrics-av {' '.join(argv)} exited with {status}")
        return t_end - t0, t_end - ready[-1], built

    def bare(built: dict[str, tuple[torch.nn.Module, ForwardSpy]]) -> float:
        return time_once(
            lambda: [replay(net, spy.calls, device=opts.device) for net, spy in built.values()], opts.device
        )

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_wavs(root / "gen", n, 0)
        _write_wavs(root / "ref", n, 1)
        argv = ["evaluate", "--gen", str(root / "gen"), "--ref", str(root / "ref"), "--metrics", CLI_METRICS]
        argv += ["--random-weights", opts.size, "--device", str(opts.device), "--out", str(root / "out.json")]
        t_cold, _, built = run_cli(argv)  # warm-up: first-call costs (kernels, resampler tables, thread pools)
        totals, pipelines, forwards = [], [], []
        for _ in range(repeats):
            total, pipeline, built = run_cli(argv)
            totals.append(total)
            pipelines.append(pipeline)
            forwards.append(bare(built))
    t_pipeline, t_forward = min(pipelines), min(forwards)
    return {
        "files": n,
        "file_seconds": CLI_SECONDS,
        "metrics": CLI_METRICS,
        "size": opts.size,
        "repeats": repeats,
        "cold_total_s": t_cold,
        "total_s": min(totals),
        "pipeline_s": t_pipeline,
        "pipeline_runs_s": pipelines,
        "forward_s": t_forward,
        "forward_runs_s": forwards,
        "files_per_s": n / t_pipeline,
        "forward_files_per_s": n / t_forward,
        "overhead_ratio": t_pipeline / t_forward,
        "forward_calls": {k: len(spy.calls) for k, (_, spy) in built.items()},
    }


# Allocator section: the bare PaSST forward on one batch of 10 s windows in fresh processes, glibc malloc's default
# against torchmetrics_av.allocator's tuning (the process-wide setting cannot be undone, hence a process per variant).
# Batch: the CLI's default --batch-size at tiny size; 4 at full size (~10 s per forward on 2 cores untuned).
ALLOCATOR_BATCH = {"tiny": 8, "full": 4}
# Timed forwards per process (after one warm-up), and processes per variant, alternated: best of all.
ALLOCATOR_REPEATS = {"quick": 4, "full": 3}
ALLOCATOR_PROCESSES = 2
# One process of the allocator section: argv = mode (tune|default), size, batch, repeats, device, and optionally a
# path to save the last forward's outputs to; prints one JSON line.
ALLOCATOR_PROBE = """
import json, resource, sys, time
import torch
from torchmetrics_av.allocator import cpu_allocator_state, tune_cpu_allocator
from benchmarks.cases import build_backbone
mode, size, batch, repeats, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
applied = tune_cpu_allocator() if mode == "tune" else None
net = build_backbone("passt", size).to(device).eval()
x = 0.1 * torch.randn(batch, 320000, generator=torch.Generator().manual_seed(0)).to(device)
runs, faults = [], []
with torch.no_grad():
    for i in range(repeats + 1):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        out = net(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            runs.append(time.perf_counter() - t0)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
if len(sys.argv) > 6:
    torch.save(out, sys.argv[6])
print(json.dumps({"applied": applied, "state": cpu_allocator_state(), "runs_s": runs, "page_faults": faults}))
"""


def allocator_probe(
    tune: bool,
    size: str,
    batch: int,
    repeats: int,
    device: str = "cpu",
    *,
    save_to: Path | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Time the bare PaSST forward on ``batch`` windows ``repeats`` times (after a warm-up) in a fresh process, with the
    CPU allocator tuned or as glibc leaves it; ``{"applied", "state", "runs_s", "page_faults"}`` (minor faults per
    forward). The process inherits no glibc malloc settings of this one (``MALLOC_*``, ``GLIBC_TUNABLES``, the
    opt-out) except those in ``env``; ``save_to`` keeps the last forward's outputs (``torch.save``).
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    clean.pop("TORCHMETRICS_AV_CPU_ALLOCATOR", None)
    clean["PYTHONPATH"] = os.pathsep.join([str(REPO), clean.get("PYTHONPATH", "")])
    mode = "tune" if tune else "default"
    argv = [sys.executable, "-c", ALLOCATOR_PROBE, mode, size, str(batch), str(repeats), device]
    if save_to is not None:
        argv.append(str(save_to))
    out = subprocess.run(argv, capture_output=True, text=True, env={**clean, **(env or {})}, cwd=REPO, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"allocator probe (tune={tune}) failed: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@section("allocator")
def allocator_section(opts: Options) -> dict[str, Any]:
    """The PaSST forward under glibc malloc's default vs :func:`torchmetrics_av.allocator.tune_cpu_allocator`.

    Each variant runs in :data:`ALLOCATOR_PROCESSES` fresh processes (:func:`allocator_probe`), alternated;
    ``speedup`` = best default time / best tuned time, with the minor page faults per forward of each (the cost the
    tuning removes).
    """
    batch, repeats = ALLOCATOR_BATCH[opts.size], ALLOCATOR_REPEATS["quick" if opts.quick else "full"]
    results: dict[str, list[dict[str, Any]]] = {"default": [], "tuned": []}
    for _ in range(ALLOCATOR_PROCESSES):
        for mode, runs in results.items():
            runs.append(allocator_probe(mode == "tuned", opts.size, batch, repeats, str(opts.device)))
    best = {mode: min(t for r in runs for t in r["runs_s"]) for mode, runs in results.items()}
    faults = {mode: statistics.median(f for r in runs for f in r["page_faults"]) for mode, runs in results.items()}
    return {
        "backbone": "passt",
        "size": opts.size,
        "batch": batch,
        "states": {mode: sorted({r["state"] for r in runs}) for mode, runs in results.items()},
        "default_s": best["default"],
        "tuned_s": best["tuned"],
        "default_runs_s": [t for r in results["default"] for t in r["runs_s"]],
        "tuned_runs_s": [t for r in results["tuned"] for t in r["runs_s"]],
        "default_page_faults_per_forward": faults["default"],
        "tuned_page_faults_per_forward": faults["tuned"],
        "speedup": best["default"] / best["tuned"],
    }


# Suite section: pairs per update and their length (av-benchmark's 8 s), under av-benchmark's protocol.
SUITE_PAIRS = {"quick": 2, "full": 16}
# Timed suite runs per variant in a quick run: one update of every video model costs ~10 s on 2 loaded CPU cores; the
# counting run before it is the warm-up.
SUITE_QUICK_REPEATS = 1
SUITE_SECONDS = 8.0


# The suite's backbones (torchmetrics_av.suites.SUITE_BACKBONES), CLAP built for av-benchmark.
SUITE_KINDS = ("passt", "panns", "vggish", "clap", "msclap", "imagebind", "synchformer")


@section("suite")
def suite_section(opts: Options) -> dict[str, Any]:
    """``av_benchmark_suite`` (one backbone per model, one forward per clip) vs its member metrics each on backbones
    of its own: backbone forwards (calls and clips) and time, on the same batch."""
    from torchmetrics_av import av_benchmark_suite
    from torchmetrics_av.suites import MEMBERS

    n = SUITE_PAIRS["quick" if opts.quick else "full"]
    gen = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (round(SUITE_SECONDS * VIDEO_FPS), 3, *VIDEO_HW[opts.size]), generator=gen)
    inputs = {
        "preds": 0.1 * torch.randn(n, round(SUITE_SECONDS * AUDIO_RATE), generator=gen),
        "target": 0.1 * torch.randn(n, round(SUITE_SECONDS * AUDIO_RATE), generator=gen),
        "text": [PROMPT] * n,
        "video": [video.to(torch.uint8)] * n,
    }

    nets = {
        k: build_backbone(k, opts.size, **({"protocol": "av-benchmark"} if k == "clap" else {})).to(opts.device)
        for k in SUITE_KINDS
    }
    shared = av_benchmark_suite(backbones=nets, sample_rate=AUDIO_RATE, video_fps=VIDEO_FPS).to(opts.device)
    shared_nets = list(nets.values())
    # Each member in a suite whose backbone for it is a copy of its own (the others are never called), fed the
    # arguments the suite routes to it, outside the suite's one-forward-per-clip scope: what a user assembling the
    # same metrics by hand runs. Copies, not rebuilds: the same weights, and building is slow even for tiny configs.
    separate = []
    for member in MEMBERS:
        own = copy.deepcopy(nets[member.backbone])
        suite = av_benchmark_suite(
            backbones={**nets, member.backbone: own}, sample_rate=AUDIO_RATE, video_fps=VIDEO_FPS
        ).to(opts.device)
        kwargs = member.feed(
            suite._batch(**inputs, video_fps=None, sample_rate=None, target_sample_rate=None, ids=None)
        )
        if kwargs:
            separate.append((suite[member.key], kwargs, [own]))
    separate_nets = [net for _, _, nets in separate for net in nets]

    def shared_update() -> None:
        shared.reset()
        shared.update(**inputs)

    def separate_update() -> None:
        for metric, kwargs, _ in separate:
            metric.reset()
            metric.update(**kwargs)

    def counted(update: Callable[[], None], nets: list[torch.nn.Module]) -> dict[str, int]:
        _clear_caches(nets)
        spies = [ForwardSpy(net, CASES[_case_of(net)].forwards) for net in nets]
        for spy in spies:
            spy.__enter__()
        try:
            update()
        finally:
            for spy in spies:
                spy.__exit__(None, None, None)
        calls = [c for spy in spies for c in spy.calls]
        return {"calls": len(calls), "clips": sum(_rows_of(c) for c in calls)}

    counts_shared = counted(shared_update, shared_nets)
    counts_separate = counted(separate_update, separate_nets)

    def fresh(update: Callable[[], None], nets: list[torch.nn.Module]) -> Callable[[], None]:
        def run() -> None:
            _clear_caches(nets)  # a new batch every time: memoised clips must not carry over between repeats
            update()

        return run

    times = interleaved_times(
        {"shared": fresh(shared_update, shared_nets), "separate": fresh(separate_update, separate_nets)},
        SUITE_QUICK_REPEATS if opts.quick else opts.repeats,
        opts.device,
    )
    t_shared, t_separate = min(times["shared"]), min(times["separate"])
    return {
        "pairs": n,
        "seconds": SUITE_SECONDS,
        "size": opts.size,
        "metrics": [m.key for m in MEMBERS],
        "implementation": "av_benchmark_suite",
        "shared_forwards": counts_shared,
        "separate_forwards": counts_separate,
        "forward_clips_ratio": counts_separate["clips"] / max(counts_shared["clips"], 1),
        "shared_s": t_shared,
        "separate_s": t_separate,
        "speedup": t_separate / t_shared,
    }


def _clear_caches(nets: Sequence[torch.nn.Module]) -> None:
    for net in nets:
        if hasattr(net, "clear_cache"):
            net.clear_cache()


def _case_of(net: torch.nn.Module) -> str:
    from benchmarks.cases import _backbone_class

    return next(name for name in CASES if isinstance(net, _backbone_class(name)))


def _rows_of(call: Any) -> int:
    """Clips (rows) in one recorded backbone call: the leading size of its first tensor argument."""
    for value in (*call.args, *call.kwargs.values()):
        if isinstance(value, torch.Tensor):
            return int(value.shape[0]) if value.ndim else 1
        if isinstance(value, list | tuple) and value and isinstance(value[0], torch.Tensor):
            return len(value)
    return 1


# ---------------------------------------------------------------------------------------------------------------------
# the run


def _error_text(err: BaseException) -> str:
    tb = traceback.extract_tb(err.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(err).__name__}: {err}{where}"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(device: torch.device) -> dict[str, Any]:
    """Where the numbers come from: versions, cores, threads, CPU allocator, device name, commit."""
    import torchmetrics_av
    from torchmetrics_av.allocator import cpu_allocator_state

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchmetrics_av": torchmetrics_av.__version__,
        "git_commit": _git_commit(),
        "platform": platform.platform(),
        "cpu_cores": cores,
        "torch_threads": torch.get_num_threads(),
        "cpu_allocator": cpu_allocator_state(),  # every section but `allocator` runs as the command does: "tuned"
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
    }


def run(opts: Options, sections: Sequence[str]) -> dict[str, Any]:
    """Run ``sections`` and return the JSON document (schema in benchmarks/README.md)."""
    load_before = list(os.getloadavg())
    started = datetime.datetime.now(datetime.timezone.utc)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "created": started.isoformat(timespec="seconds"),
        "quick": opts.quick,
        "size": opts.size,
        "batches": list(opts.batches),
        "repeats": opts.repeats,
        "environment": environment(opts.device),
        "sections": {},
        "errors": {},
    }
    for name in sections:
        t0 = time.perf_counter()
        try:
            doc["sections"][name] = SECTIONS[name](opts)
        except Exception as err:
            doc["errors"][name] = _error_text(err)
        _log(f"{name}: {time.perf_counter() - t0:.0f} s (load average {os.getloadavg()[0]:.1f})")
        for key, value in doc["sections"].get(name, {}).items():
            if isinstance(value, dict) and "error" in value:
                doc["errors"][f"{name}.{key}"] = value["error"]
    load_after = list(os.getloadavg())
    cores = doc["environment"]["cpu_cores"] or 1
    doc["load_average"] = {
        "before": load_before,
        "after": load_after,
        # More runnable processes than cores during the run: absolute times are inflated, ratios less so.
        "noisy": max(load_before[0], load_after[0], load_after[1]) > cores,
    }
    doc["elapsed_s"] = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    return doc


# ---------------------------------------------------------------------------------------------------------------------
# README table


def _fmt_ratio(x: float) -> str:
    return f"{x:.2f}×"


def markdown_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``(benchmark, result)`` rows of the README performance table from a run_all JSON."""
    rows: list[tuple[str, str]] = []
    for name, res in doc["sections"].get("backbones", {}).items():
        if "error" in res:
            rows.append((f"`{name}` update() / bare forward", f"error: {res['error']}"))
            continue
        ratios = ", ".join(f"{b}: {_fmt_ratio(r['overhead_ratio'])}" for b, r in res["batches"].items())
        rows.append((f"`{name}` `update()` / bare forward, {res['size']} config, per batch of {res['unit']}", ratios))
    fd = doc["sections"].get("fd_compute")
    if fd:
        rows.extend(_fd_rows(fd))
    cli_res = doc["sections"].get("cli")
    if cli_res:
        rows.append(
            (
                f"`torchmetrics-av evaluate` ({cli_res['metrics']}, {cli_res['files']} + {cli_res['files']} WAV "
                f"files of {cli_res['file_seconds']:g} s, {cli_res['size']} random weights) / bare forward on the "
                "same files",
                f"{_fmt_ratio(cli_res['overhead_ratio'])} ({cli_res['files_per_s']:.2f} files/s vs "
                f"{cli_res['forward_files_per_s']:.2f} for the forwards alone)",
            )
        )
    suite = doc["sections"].get("suite")
    if suite:
        rows.append(
            (
                f"av-benchmark metrics sharing one backbone per model vs each with its own ({len(suite['metrics'])} "
                f"metrics, {suite['pairs']} pairs of {suite['seconds']:g} s, {suite['size']} config)",
                f"{_fmt_ratio(suite['speedup'])} faster; backbone forwards {suite['shared_forwards']['clips']} vs "
                f"{suite['separate_forwards']['clips']} clips ({suite['implementation']})",
            )
        )
    alloc = doc["sections"].get("allocator")
    if alloc:
        rows.append(
            (
                f"PaSST forward ({alloc['size']} config, batch of {alloc['batch']} windows of 10 s), glibc malloc's "
                "default vs `torchmetrics_av.allocator` (as `torchmetrics-av` runs)",
                f"{_fmt_ratio(alloc['speedup'])} faster ({alloc['default_s']:.2f} s → {alloc['tuned_s']:.2f} s; "
                f"page faults per forward {alloc['default_page_faults_per_forward']:.0f} → "
                f"{alloc['tuned_page_faults_per_forward']:.0f})",
            )
        )
    for name, data in doc["sections"].items():
        if name not in ("backbones", "fd_compute", "cli", "suite", "allocator"):
            rows.extend(_generic_rows(name, data))
    return rows


def _fd_rows(fd: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for d, r in fd.get("by_dimension", {}).items():
        rows.append(
            (
                f"FD `compute()` at D = {d} (moments of {r['N'][0]} / {r['N'][1]} rows), eigh route",
                f"speed-up {_fmt_ratio(r['speedup_vs_scipy'])} vs scipy `sqrtm` (rel. diff "
                f"{r['rel_diff_vs_scipy']:.1e}), {_fmt_ratio(r['speedup_vs_torchmetrics'])} vs torchmetrics "
                f"`_compute_fid` (rel. diff {r['rel_diff_vs_torchmetrics']:.1e})",
            )
        )
    low = fd.get("low_rank")
    if low:
        rows.append(
            (
                f"FD from features, rank-deficient (N = {low['N'][0]} / {low['N'][1]}, D = {low['D']}), low-rank route",
                f"speed-up {_fmt_ratio(low['speedup_vs_scipy'])} vs scipy `sqrtm`, "
                f"{_fmt_ratio(low['speedup_vs_eigh'])} vs eigh; exact − scipy {low['exact_minus_scipy']:.1e}",
            )
        )
    return rows


def _generic_rows(title: str, data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Rows for a section that has no formatter of its own: every ratio-like number, by its key path."""
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_generic_rows(title, value, f"{path}."))
        elif isinstance(value, int | float) and not isinstance(value, bool) and not path.endswith("_s"):
            rows.append((f"{title}: `{path}`", f"{value:.3g}"))
    return rows


def markdown_table(doc: dict[str, Any]) -> str:
    """The README performance table (with a line saying where and how the numbers were measured)."""
    env, load = doc["environment"], doc["load_average"]
    head = (
        f"Measured by `python benchmarks/run_all.py{' --quick' if doc['quick'] else ''}` on {env['device_name']} "
        f"({env['device']}, {env['cpu_cores']} cores, torch {env['torch']}, {doc['created'][:10]}); load average "
        f"{load['before'][0]:.1f} → {load['after'][0]:.1f}"
        + (" (shared machine: ratios are noisy)" if load["noisy"] else "")
        + ".\n\n"
    )
    lines = ["| benchmark | result |", "|---|---|"] + [f"| {b} | {r} |" for b, r in markdown_rows(doc)]
    return head + "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# command line


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="tiny configs, 2 repeats (< 10 min on 2 CPU cores)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--size", choices=["tiny", "full"], help="backbone sizes (default: tiny with --quick)")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--repeats", type=int, help="timed runs per variant (default 2 quick, 5 full)")
    parser.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--backbones", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--cli-files", type=int, help="generated (and reference) WAV files of the cli section")
    parser.add_argument("--markdown", type=Path, metavar="JSON", help="print the README table of a results file")
    parser.add_argument(
        "--cpu-allocator",
        choices=["tuned", "default"],
        default="tuned",
        help="tuned (default): keep freed memory, as the torchmetrics-av command does (torchmetrics_av.allocator); "
        "default: glibc's own behaviour. The allocator section measures both in fresh processes either way",
    )
    args = parser.parse_args(argv)
    if any(b < 1 for b in args.batches):
        parser.error("--batches must be positive")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.cli_files is not None and args.cli_files < 1:
        parser.error("--cli-files must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 when a section or backbone failed)."""
    args = _parse(argv)
    if args.markdown:  # the README itself is written by benchmarks/render_readme.py
        print(markdown_table(json.loads(args.markdown.read_text())), end="")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is visible", file=sys.stderr)
        return 2
    if args.cpu_allocator == "tuned":
        from torchmetrics_av.allocator import tune_cpu_allocator

        tune_cpu_allocator()
    size = args.size or ("tiny" if args.quick else "full")
    opts = Options(
        device=torch.device(args.device),
        quick=args.quick,
        size=size,
        batches=tuple(args.batches),
        repeats=args.repeats or REPEATS["quick" if args.quick else "full"],
        backbones=tuple(args.backbones),
        cli_files=args.cli_files,
    )
    doc = run(opts, args.sections)
    text = json.dumps(doc, indent=2, default=str)
    if args.json:
        args.json.write_text(text + "\n")
    for name, res in doc["sections"].get("backbones", {}).items():
        if "batches" in res:
            ratios = "  ".join(f"b{b}: {r['overhead_ratio']:.2f}x" for b, r in res["batches"].items())
            print(f"{name:>12} update/forward  {ratios}")
    for key, err in doc["errors"].items():
        print(f"ERROR {key}: {err}", file=sys.stderr)
    print(f"elapsed {doc['elapsed_s']:.0f} s; load average {doc['load_average']}")
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
