"""How far ``precision="bf16"`` (or ``"fp16"``) moves every metric: the visible goldens at fp32 and at low precision.

For every case of :data:`goldens.GOLDEN_CASES` (a metric on one golden's inputs, full-size fill-v1 backbone), runs
the metric at float32, checks it against the golden (the shift is only meaningful from a correct baseline), runs it
again at ``--precision`` and records the max |Δ| of the metric value(s) and of the embeddings the backbone produced.
CPU by default: CPU bf16 autocast is what every user without a GPU gets; ``gpu_check.py`` measures the same on CUDA.

Usage::

    python benchmarks/bf16_shift.py --json benchmarks/results/bf16-shift-cpu.json     # ~30 min on 2 CPU cores
    python benchmarks/bf16_shift.py --cases fd_passt-fastvideo ms_clap                 # a subset
    python benchmarks/render_readme.py --bf16 benchmarks/results/bf16-shift-cpu.json   # its README table

JSON (``schema: "torchmetrics-av/bf16_shift/1"``): ``environment``, ``precision``, ``device``, and per case
``fp32`` (:func:`goldens.compare` against the golden), ``shift`` (against the fp32 run), ``seconds``; or ``error``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout: measure the checkout, not an installed copy
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.goldens import GOLDEN_CASES, build_backbone, compare  # noqa: E402
from benchmarks.run_all import environment  # noqa: E402

SCHEMA = "torchmetrics-av/bf16_shift/1"
# The goldens were made with 2 CPU threads; float32 reductions depend on the thread split.
GOLDEN_THREADS = 2


def _uncached(case: Any, net: torch.nn.Module, device: torch.device, precision: str) -> Any:
    """One run of ``case`` with the backbone's memo emptied first: the memo is keyed by clip content, not by
    precision, so a bf16 run after the fp32 one would otherwise get the fp32 outputs back (a shift of 0)."""
    if hasattr(net, "clear_cache"):
        net.clear_cache()
    return case.run(net, device, precision)


def shift(names: Sequence[str], precision: str, device: torch.device) -> dict[str, Any]:
    """Per case: fp32 vs golden, then ``precision`` vs fp32 (backbones of one golden built once)."""
    out: dict[str, Any] = {}
    built: dict[str, torch.nn.Module] = {}
    for name in names:
        case = GOLDEN_CASES[name]
        t0 = time.perf_counter()
        try:
            if case.golden not in built:
                built.clear()
                gc.collect()
                built[case.golden] = build_backbone(case).to(device)
            net = built[case.golden]
            fp32 = _uncached(case, net, device, "fp32")
            low = _uncached(case, net, device, precision)
            out[name] = {
                "fp32": compare(fp32),
                "shift": compare(low, fp32),
                f"{precision}_value": low.value.tolist(),
                "seconds": time.perf_counter() - t0,
            }
        except Exception as err:  # one broken golden must not hide the others
            out[name] = {"error": f"{type(err).__name__}: {err}", "seconds": time.perf_counter() - t0}
        print(f"{name}: {json.dumps(out[name], default=str)[:400]}", flush=True)
    return out


def markdown_table(doc: dict[str, Any]) -> str:
    """The README table of a bf16_shift JSON."""
    p = doc["precision"]
    env = doc["environment"]
    lines = [
        f'`precision="{p}"` against float32 on the visible goldens (`python benchmarks/bf16_shift.py`, '
        f"{doc['device']}, torch {env['torch']}, {doc['created'][:10]}; full-size fill-v1 backbones). Δ = max |{p} − "
        "fp32|; the embeddings are every output the backbone's encoders produced (their largest |value| in brackets).",
        "",
        f"| metric on golden | fp32 value (= golden) | {p} value | max \\|Δ value\\| | max \\|Δ embeddings\\| |",
        "|---|---|---|---|---|",
    ]
    for name, r in doc["cases"].items():
        if "error" in r:
            lines.append(f"| `{name}` | error: {r['error']} | | | |")
            continue
        fp32, sh = r["fp32"], r["shift"]
        ok = "" if fp32["ok"] else " (**fails the golden**)"
        values = ", ".join(f"{v:.6g}" for v in fp32["value"])
        low = ", ".join(f"{v:.6g}" for v in r[f"{p}_value"])
        lines.append(
            f"| `{name}` | {values}{ok} | {low} | {sh['value_max_abs_diff']:.2e} | "
            f"{sh['embeddings_max_abs_diff']:.2e} ({sh['embeddings_max_abs']:.3g}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; exit status 1 when a case errored or its fp32 run failed the golden."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=sorted(GOLDEN_CASES), default=list(GOLDEN_CASES))
    parser.add_argument("--precision", choices=["bf16", "fp16"], default="bf16")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, metavar="JSON", help="print the README table of a results file")
    args = parser.parse_args(argv)
    if args.markdown:  # the README itself is written by benchmarks/render_readme.py
        print(markdown_table(json.loads(args.markdown.read_text())), end="")
        return 0
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(GOLDEN_THREADS)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "precision": args.precision,
        "device": str(device),
        "environment": environment(device),
        "cases": shift(args.cases, args.precision, device),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(markdown_table(doc), end="")
    bad = [k for k, v in doc["cases"].items() if "error" in v or not v["fp32"]["ok"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
