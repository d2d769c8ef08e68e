"""One GPU check: golden parity on CUDA fp32, the bf16 shift, clips/s per backbone and the share of the bf16 peak.

Run it through ``benchmarks/gpu_check.sh`` (≤ 8 minutes on one H200); ``--dry-run`` runs the same code on CPU with
tiny configs, a small batch and the cheapest golden, to check the script end to end. Sections, in order (each
recorded even when a later one runs out of time):

1. ``ceilings``: the bf16 matrix-product rate measured on random data (CUDA events, median) and the spec-sheet
   dense bf16 peak of the GPU (:data:`SPEC_BF16_DENSE_TFLOPS`), the two denominators of the peak shares below.
2. ``parity``: every visible golden (:mod:`goldens`) through its metric at fp32 on the device, against the golden's
   numbers and README tolerances (``ok``), then the same at bf16 (``bf16_shift``: max |Δ| against the fp32 run).
3. ``throughput``: per backbone (:mod:`cases`, official architectures, random weights) at ``--batch`` clips: clips/s
   of ``update()`` and of the bare forward at fp32 and bf16, FLOPs per clip counted by
   ``torch.utils.flop_counter.FlopCounterMode`` on one forward replay, and achieved TFLOP/s as % of both peaks.

Writes ``benchmarks/results/<gpu>-<date>.json`` (``--out`` overrides; a dry run writes ``dry-run-<date>.json``,
ignored by git). Schema: ``benchmarks/README.md``. No test needs a GPU: tests run ``--dry-run``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout: check the checkout, not an installed copy
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.cases import CASES, BackboneCase, ForwardSpy, interleaved_times, replay  # noqa: E402
from benchmarks.goldens import GOLDEN_CASES, build_backbone, compare  # noqa: E402
from benchmarks.run_all import environment  # noqa: E402

SCHEMA = "torchmetrics-av/gpu_check/1"
# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, by `torch.cuda.get_device_name()`, from the vendors'
# spec sheets: H100 SXM and H200 SXM "1,979 TFLOPS with sparsity" (NVIDIA H100 / H200 datasheets), halved for dense;
# A100 "312 TFLOPS" dense BF16 (NVIDIA A100 datasheet). Spec-sheet numbers, not measurements: `ceilings` measures.
SPEC_BF16_DENSE_TFLOPS = {
    "NVIDIA H200": 989.4,
    "NVIDIA H100 80GB HBM3": 989.4,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
}
# Batch of the throughput section (issue 12 item 5) and of its dry run.
BATCH, DRY_RUN_BATCH = 64, 2
# Matrix size of the measured bf16 rate: 8192^3 fills an H100/H200 (~1.1 TFLOP per product); tiny in a dry run.
MATMUL_N, DRY_RUN_MATMUL_N = 8192, 256
# Wall-clock budget of the whole check (gpu_check.sh kills it at 8 minutes): sections stop starting after this.
BUDGET_S = 450.0
PRECISIONS = ("fp32", "bf16")
# Timed runs per variant in the throughput section (best of 2: the budget is 8 minutes for everything).
THROUGHPUT_REPEATS = 2


class Clock:
    """Seconds left of the budget; sections ask before starting an item."""

    def __init__(self, budget_s: float) -> None:
        self.start, self.budget_s = time.perf_counter(), budget_s

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _nvidia_smi() -> dict[str, str] | None:
    """Clocks, power and temperature as the card reports them (read only: nothing is changed)."""
    fields = "name,driver_version,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu,memory.total"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return dict(zip(fields.split(","), (v.strip() for v in out.stdout.splitlines()[0].split(","))))


def matmul_tflops(device: torch.device, n: int, repeats: int = 10) -> float:
    """Median bf16 ``n x n x n`` product rate in TFLOP/s on random data (never zeros: they run faster)."""
    gen = torch.Generator(device=device).manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype, generator=gen) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e12


def ceilings(device: torch.device, dry_run: bool) -> dict[str, Any]:
    """Measured bf16 matmul rate and the spec-sheet peak (``None`` for a GPU not in the table)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "gpu_name": name,
        "spec_bf16_dense_tflops": SPEC_BF16_DENSE_TFLOPS.get(name),
        "spec_source": "vendor spec sheet (dense = half the sparsity figure)"
        if name in SPEC_BF16_DENSE_TFLOPS
        else None,
        "measured_matmul_tflops": matmul_tflops(device, DRY_RUN_MATMUL_N if dry_run else MATMUL_N),
        "measured_dtype": "bfloat16" if device.type == "cuda" else "float32",
        "nvidia_smi": _nvidia_smi() if device.type == "cuda" else None,
    }


def parity(device: torch.device, names: Sequence[str], clock: Clock) -> dict[str, Any]:
    """fp32 on ``device`` vs each golden, then bf16 vs that fp32 run."""
    out: dict[str, Any] = {}
    built: dict[str, torch.nn.Module] = {}
    for name in names:
        case = GOLDEN_CASES[name]
        if clock.left() < 0:
            out[name] = {"skipped": "time budget spent"}
            continue
        try:
            if case.golden not in built:
                built.clear()
                _free(device)
                built[case.golden] = build_backbone(case).to(device)
            net = built[case.golden]
            t0 = time.perf_counter()
            fp32 = case.run(net, device, "fp32")
            entry: dict[str, Any] = {"fp32": compare(fp32), "fp32_s": time.perf_counter() - t0}
            t0 = time.perf_counter()
            bf16 = case.run(net, device, "bf16")
            entry["bf16_shift"] = compare(bf16, fp32)
            entry["bf16_vs_golden"] = compare(bf16)
            entry["bf16_s"] = time.perf_counter() - t0
            out[name] = entry
        except Exception as err:  # one broken golden must not hide the others
            out[name] = {"error": f"{type(err).__name__}: {err}"}
    built.clear()
    _free(device)
    return out


def count_flops(net: torch.nn.Module, calls: Sequence[Any], device: torch.device) -> int:
    """FLOPs of one replay of the recorded backbone calls (matmuls, convolutions, attention; 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        replay(net, calls, device=device)
    return int(counter.get_total_flops())


def _precision_run(
    case: BackboneCase, net: torch.nn.Module, inputs: dict[str, Any], precision: str, device: torch.device
) -> tuple[float, float, list[Any]]:
    """Best ``update()`` and bare-forward times at one precision, and the recorded backbone calls."""
    batch = len(inputs["preds"])
    update = case.metric(net, batch, precision)
    if hasattr(update, "to"):
        update.to(device)
    with ForwardSpy(net, case.forwards) as spy:  # also the warm-up
        update(**inputs)
    times = interleaved_times(
        {"update": lambda: update(**inputs), "forward": lambda: replay(net, spy.calls, precision, device)},
        THROUGHPUT_REPEATS,
        device,
    )
    return min(times["update"]), min(times["forward"]), spy.calls


def throughput_case(name: str, size: str, batch: int, device: torch.device, peaks: dict[str, float | None]) -> dict:
    """clips/s of ``update()`` and of the bare forward at fp32 and bf16, FLOPs per clip, % of the peaks."""
    case = CASES[name]
    net = case.build(size).to(device)
    case.set_batch(net, batch)
    inputs = case.inputs(batch, size, torch.Generator().manual_seed(0))
    out: dict[str, Any] = {"size": size, "batch": batch, "unit": case.clips}
    for precision in PRECISIONS:
        t_update, t_forward, calls = _precision_run(case, net, inputs, precision, device)
        if precision == "fp32":
            out["flops_per_clip"] = count_flops(net, calls, device) / batch
        del calls
        achieved = out["flops_per_clip"] * batch / t_forward / 1e12
        out[precision] = {
            "update_clips_per_s": batch / t_update,
            "forward_clips_per_s": batch / t_forward,
            "overhead_ratio": t_update / t_forward,
            "forward_tflops": achieved,
            "pct_of_spec_bf16_peak": None if peaks["spec"] is None else 100 * achieved / peaks["spec"],
            "pct_of_measured_bf16_matmul": None if not peaks["measured"] else 100 * achieved / peaks["measured"],
        }
        _free(device)
    del net
    _free(device)
    return out


def throughput(
    size: str, batch: int, device: torch.device, names: Sequence[str], peaks: dict[str, float | None], clock: Clock
) -> dict[str, Any]:
    """:func:`throughput_case` for every backbone while the budget lasts."""
    out: dict[str, Any] = {}
    for name in names:
        if clock.left() < 0:
            out[name] = {"skipped": "time budget spent"}
            continue
        try:
            out[name] = throughput_case(name, size, batch, device, peaks)
        except Exception as err:
            out[name] = {"error": f"{type(err).__name__}: {err}"}
            _free(device)
    return out


def default_out(device_name: str, dry_run: bool) -> Path:
    """``benchmarks/results/<gpu>-<date>.json`` (``dry-run-<date>.json`` for a dry run)."""
    date = datetime.date.today().isoformat()
    slug = "dry-run" if dry_run else re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")
    return REPO / "benchmarks" / "results" / f"{slug}-{date}.json"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; exit status 1 when a parity check failed or a section errored."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny configs, small batch, cheapest golden")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/<gpu>-<date>.json)")
    parser.add_argument("--batch", type=int, help=f"clips per update (default {BATCH}; {DRY_RUN_BATCH} dry run)")
    parser.add_argument("--goldens", nargs="*", choices=sorted(GOLDEN_CASES), help="default: all (dry run: cheapest)")
    parser.add_argument("--backbones", nargs="*", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds before sections stop starting")
    args = parser.parse_args(argv)

    if args.dry_run:
        device, size, batch = torch.device("cpu"), "tiny", args.batch or DRY_RUN_BATCH
        goldens = (
            args.goldens if args.goldens is not None else [min(GOLDEN_CASES.values(), key=lambda c: c.cpu_seconds).name]
        )
    else:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device is visible (use --dry-run to check the script on CPU)", file=sys.stderr)
            return 2
        device, size, batch = torch.device("cuda"), "full", args.batch or BATCH
        goldens = args.goldens if args.goldens is not None else list(GOLDEN_CASES)
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 parity means float32 arithmetic, not tf32
        torch.backends.cudnn.allow_tf32 = False
    clock = Clock(args.budget)
    load_before = list(os.getloadavg())
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "size": size,
        "batch": batch,
        "environment": environment(device),
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32),
    }
    doc["ceilings"] = ceilings(device, args.dry_run)
    peaks = {"spec": doc["ceilings"]["spec_bf16_dense_tflops"], "measured": doc["ceilings"]["measured_matmul_tflops"]}
    doc["parity"] = parity(device, goldens, clock)
    doc["throughput"] = throughput(size, batch, device, args.backbones, peaks, clock)
    doc["load_average"] = {"before": load_before, "after": list(os.getloadavg())}
    doc["elapsed_s"] = time.perf_counter() - clock.start
    failed = [k for k, v in doc["parity"].items() if "error" in v or not v.get("fp32", {}).get("ok", True)]
    failed += [f"throughput.{k}" for k, v in doc["throughput"].items() if "error" in v]
    doc["failed"] = failed

    out = args.out or default_out(doc["ceilings"]["gpu_name"], args.dry_run)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    for name, entry in doc["parity"].items():
        if "fp32" in entry:
            shift = entry["bf16_shift"]
            print(
                f"parity {name:>24}: fp32 {'ok' if entry['fp32']['ok'] else 'FAIL'} "
                f"|Δvalue| {entry['fp32']['value_max_abs_diff']:.2e}; bf16 shift |Δvalue| "
                f"{shift['value_max_abs_diff']:.2e} |Δemb| {shift['embeddings_max_abs_diff']:.2e}"
            )
        else:
            print(f"parity {name:>24}: {entry}")
    for name, entry in doc["throughput"].items():
        if "fp32" in entry:
            pct = entry["bf16"]["pct_of_spec_bf16_peak"]
            print(
                f"{name:>12} b{batch}: fp32 {entry['fp32']['update_clips_per_s']:8.1f} clips/s, bf16 "
                f"{entry['bf16']['update_clips_per_s']:8.1f} clips/s, {entry['flops_per_clip'] / 1e9:8.1f} GFLOP/clip, "
                f"bf16 forward {entry['bf16']['forward_tflops']:7.2f} TFLOP/s"
                + (f" = {pct:.1f} % of spec peak" if pct is not None else "")
            )
        else:
            print(f"{name:>12}: {entry}")
    print(f"wrote {out} in {doc['elapsed_s']:.0f} s; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
