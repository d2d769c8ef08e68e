r"""One self-contained HTML report of a ``torchmetrics-av evaluate`` run (``--report``; ``demo`` always writes one).

:func:`write_report` turns the results document of :func:`torchmetrics_av.cli.runner.run_evaluate` (what
``evaluate --out`` writes as JSON) and its per-sample rows into one HTML file that needs nothing else: the plots are
PNGs embedded as base64 ``data:`` URIs, the styles are inline, there is no script and no network reference, and every
piece of text from the document is HTML-escaped. Sections:

1. a RANDOM WEIGHTS banner when the run used ``--random-weights`` (the numbers are then not the metrics), and the
   checkpoints that could not be found, when the document lists them;
2. corpus values: metric (one row per output of a dict-valued metric), value, which way is better, protocol, ``n``
   and the bootstrap confidence interval when the document has one (with ``evaluate --bootstrap``: its coverage,
   number of resamples and seed, and why a metric has none);
3. per-sample distributions: a histogram per per-sample column, with each sample as a tick and the corpus value as a
   line;
4. DeSync's signed offsets (front and back window) on Synchformer's 21 offset classes;
5. the ``worst_n`` worst samples per per-sample column, with their file names and the metric's other columns (e.g.
   the transcript for WER);
6. files that were not used (broken, skipped by a metric, unmatched), each with the reason;
7. provenance (library / torch versions, protocol, backbones and checkpoints, sample rates, frame rates, inputs) and
   each metric's ``details`` counts.

Expected keys of ``doc`` (all optional except ``metrics``; unknown keys are ignored):

* ``metrics``: ``{name: float | {output: float} | None}``. A value may also be a bootstrap dict ``{"value", "low",
  "high", ...}``.
* ``details``: ``{name: {key: scalar}}``. Read: ``error`` (why the value is ``None``), ``protocol``, the counts
  ``n_samples`` / ``n_pairs`` / ``n_scored`` / ``n_preds`` + ``n_target``, ``higher_is_better`` (``bool`` or
  ``{output: bool}``, overrides :data:`HIGHER_IS_BETTER`) and a confidence interval under ``ci`` or ``bootstrap``
  (``{"low", "high"}``, or ``{output: {"low", "high"}}``), or as ``ci_low`` / ``ci_high``.
* ``ci`` or ``bootstrap`` at the top level: ``{name: {"low", "high"} | {output: {"low", "high"}}}``.
* ``files``: ``n_gen``, ``n_scored``, the lists of :data:`UNUSED_LISTS`, ``broken`` (``[{"file", "error"}]``) and
  ``skipped`` (``{metric: [{"stem", "error"}]}``).
* ``provenance``: ``{key: scalar | list | dict}``, shown as a table (nested dicts flattened to ``a.b``);
  ``random_weights`` (falsy, or the size used) and ``missing_checkpoints`` (``[str]``) drive the banner.
* ``per_sample``: ``{stem: row}``: used when ``rows`` is ``None``.

Per-sample rows (``rows``): ``{stem: {column: value}}`` as in ``doc["per_sample"]``, or a list of dicts with a
``stem`` key (e.g. the rows of ``csv.DictReader`` on ``evaluate --csv``: numeric strings are parsed, empty cells
are missing values). ``file`` is the file name. A metric's per-sample values are the column named like the metric
(``kl_passt``, ``wer``, ``desync``) or, when there is none, every numeric column ``<metric>_<something>``
(``clap_cosine``, ``aesthetics_CE`` ... ``aesthetics_PQ``); its other ``<metric>_*`` columns are shown next to its
worst samples; ``<metric>_error`` / ``<metric>_skipped`` columns say why a sample has no value.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from torchmetrics_av.report import write_report
    >>> doc = {"metrics": {"wer": 0.25}, "provenance": {"protocol": "fastvideo"}}
    >>> rows = {"a": {"file": "a.wav", "wer": 0.5}, "b": {"file": "b.wav", "wer": 0.0}}
    >>> path = write_report(doc, rows, Path(tempfile.mkdtemp()) / "report.html")
    >>> html = path.read_text()
    >>> html.count("data:image/png;base64,"), "a.wav" in html
    (1, True)
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Which way is better for each metric name of the command line: the metric classes' `higher_is_better` (a test checks
# that they agree). A document can override it per metric with `details[name]["higher_is_better"]`.
HIGHER_IS_BETTER: dict[str, bool] = {
    "fd_passt": False,
    "kl_passt": False,
    "clap": True,
    "wer": False,
    "aesthetics": True,
    "imagebind": True,
    "desync": False,
    "fd_vgg": False,
    "fd_panns": False,
    "kl_panns": False,
    "isc_panns": True,
    "isc_passt": True,
    "msclap": True,
}
DEFAULT_WORST_N = 5
# `files` lists of samples that were not used, with what they mean (the CLI's warnings say the same).
UNUSED_LISTS = {
    "unmatched_gen": "generated files without a reference",
    "unmatched_ref": "references without a generated file",
    "without_prompt": "generated files without a prompt (not in CLAP)",
    "unused_prompts": "prompts without a generated file",
    "without_transcript": "generated files without a transcript (not in WER)",
    "unused_transcripts": "transcripts without a generated file",
    "audio_only_gen": "generated audio files without video (not in ImageBind / DeSync)",
}
# `details` keys that count the samples behind a value, in the order they are looked for.
COUNT_KEYS = ("n_samples", "n_pairs", "n_scored")
# The per-sample columns of DeSync's signed offsets (seconds) and the offset classes Synchformer predicts:
# -2.0, -1.8, ..., +2.0 s (torchmetrics_av.functional.desync.OFFSET_RANGE_S / NUM_OFFSET_CLASSES).
DESYNC_OFFSET_COLUMNS = {"desync_offset_front": "front window", "desync_offset_back": "back window"}
DESYNC_OFFSET_RANGE_S, DESYNC_NUM_OFFSET_CLASSES = (-2.0, 2.0), 21
MAX_HISTOGRAM_BINS = 40  # beyond this a histogram of a few thousand samples is mostly empty bins
FIGURE_INCHES, FIGURE_DPI = (5.2, 2.5), 100  # 520 x 250 px: two plots side by side in a 1200 px window
TEXT_CELL_CHARS = 120  # longer texts (transcripts, errors) are cut in table cells; the JSON has them whole
BAR_COLOUR, LINE_COLOUR, FRONT_COLOUR, BACK_COLOUR = "#4c72b0", "#c44e52", "#4c72b0", "#dd8452"

_CSS = """
body { font-family: DejaVu Sans, Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1150px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ccc; }
h3 { font-size: 15px; margin-bottom: 4px; }
table { border-collapse: collapse; margin: 6px 0 12px 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; font-family: DejaVu Sans Mono, monospace; }
.banner { background: #b00020; color: #fff; font-weight: bold; padding: 10px 14px; font-size: 16px; }
.missing { background: #fff4e5; border: 1px solid #f0a020; padding: 8px 12px; white-space: pre-wrap;
           font-family: DejaVu Sans Mono, monospace; font-size: 12px; }
.note { color: #666; font-size: 13px; } .error { color: #b00020; }
.plots { display: flex; flex-wrap: wrap; gap: 8px; } .plots figure { margin: 0; }
figcaption { font-size: 12px; color: #444; }
"""


@dataclass(frozen=True)
class Column:
    """One per-sample value column of a metric.

    Attributes:
        name: the column (``kl_passt``, ``aesthetics_CE``).
        metric: the metric it belongs to.
        output: the metric output it is a sample of (``"CE"`` for ``aesthetics_CE``; ``None`` for a scalar metric).
        higher_is_better: which way is better (``None``: unknown).
    """

    name: str
    metric: str
    output: str | None
    higher_is_better: bool | None


def _number(v: Any) -> float | None:
    """A finite float from a JSON / CSV cell, else ``None`` (text, empty cell, NaN, bool)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        x = float(v)
    elif isinstance(v, str):
        try:
            x = float(v)
        except ValueError:
            return None
    else:
        return None
    return x if math.isfinite(x) else None


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "—" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _e(v: Any, limit: int | None = None) -> str:
    text = _fmt(v)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text)


def _normalise_rows(rows: Any) -> dict[str, dict[str, Any]]:
    """``{stem: row}`` from a mapping of rows or a sequence of dicts with a ``stem`` key."""
    if rows is None:
        return {}
    if isinstance(rows, Mapping):
        return {str(stem): dict(row) for stem, row in rows.items()}
    out: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "stem" not in row:
            raise ValueError(f"`rows[{i}]` must be a dict with a 'stem' key (a row of the per-sample CSV), got {row!r}")
        out[str(row["stem"])] = {k: v for k, v in row.items() if k != "stem" and v != ""}
    return out


def _direction(doc: Mapping[str, Any], metric: str, output: str | None) -> bool | None:
    given = (doc.get("details") or {}).get(metric, {}).get("higher_is_better")
    if isinstance(given, Mapping):
        given = given.get(output) if output is not None else None
    if isinstance(given, bool):
        return given
    return HIGHER_IS_BETTER.get(metric)


def _owner(column: str, metrics: Iterable[str]) -> str | None:
    """The metric a column belongs to: the longest metric name equal to it or followed by ``_`` in it."""
    owners = [m for m in metrics if column == m or column.startswith(m + "_")]
    return max(owners, key=len) if owners else None


def value_columns(doc: Mapping[str, Any], rows: Mapping[str, Mapping[str, Any]]) -> list[Column]:
    """The per-sample value columns of every metric of ``doc["metrics"]``, in metric order (see the module doc)."""
    metrics = list(doc.get("metrics") or {})
    present: dict[str, None] = {}
    for row in rows.values():
        present.update(dict.fromkeys(row))
    numeric = {c for c in present if any(_number(r.get(c)) is not None for r in rows.values())}
    out: list[Column] = []
    for metric in metrics:
        if metric in numeric:
            out.append(Column(metric, metric, None, _direction(doc, metric, None)))
            continue
        for col in present:
            if col in numeric and _owner(col, metrics) == metric and not col.endswith(("_error", "_skipped")):
                output = col[len(metric) + 1 :]
                out.append(Column(col, metric, output, _direction(doc, metric, output)))
    return out


def _context_columns(metric: str, metrics: Sequence[str], columns: Sequence[str], values: set[str]) -> list[str]:
    return [c for c in columns if c not in values and c != metric and _owner(c, metrics) == metric]


def _figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - matplotlib is in the `all` extra
        raise ModuleNotFoundError(
            "the HTML report needs matplotlib: pip install matplotlib (or torchmetrics-av[all])"
        ) from err
    # A bare Figure renders with the Agg canvas: no pyplot, no global backend, no display needed.
    return Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI, layout="constrained")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="data:image/png;base64,{b64}" alt="{html.escape(alt, quote=True)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _histogram(values: Sequence[float], label: str, corpus: float | None, better: bool | None) -> str:
    import numpy as np

    fig = _figure()
    ax = fig.add_subplot()
    x = np.asarray(values, dtype=np.float64)
    edges = np.histogram_bin_edges(x, bins="auto")
    if len(edges) - 1 > MAX_HISTOGRAM_BINS:
        edges = np.histogram_bin_edges(x, bins=MAX_HISTOGRAM_BINS)
    ax.hist(x, bins=edges, color=BAR_COLOUR, alpha=0.8)
    ax.plot(x, np.zeros_like(x), "|", color="k", markersize=12, label="samples")
    if corpus is not None:
        ax.axvline(corpus, color=LINE_COLOUR, linestyle="--", label=f"corpus {corpus:.4g}")
    arrow = {True: "higher is better", False: "lower is better", None: "direction unknown"}[better]
    ax.set_title(f"{label} (n={len(x)}, {arrow})", fontsize=10)
    ax.set_ylabel("samples")
    ax.legend(fontsize=8)
    return _png(fig)


def _desync_histogram(offsets: Mapping[str, Sequence[float]]) -> str:
    import numpy as np

    low, high = DESYNC_OFFSET_RANGE_S
    step = (high - low) / (DESYNC_NUM_OFFSET_CLASSES - 1)
    classes = np.linspace(low, high, DESYNC_NUM_OFFSET_CLASSES)
    fig = _figure()
    ax = fig.add_subplot()
    width = step * 0.4
    for k, (col, label) in enumerate(DESYNC_OFFSET_COLUMNS.items()):
        x = np.asarray(offsets.get(col, []), dtype=np.float64)
        # Each offset is one of the classes; round to the nearest class so float32 noise does not split a bar.
        idx = np.clip(np.round((x - low) / step).astype(int), 0, DESYNC_NUM_OFFSET_CLASSES - 1)
        counts = np.bincount(idx, minlength=DESYNC_NUM_OFFSET_CLASSES)
        colour = FRONT_COLOUR if k == 0 else BACK_COLOUR
        ax.bar(classes + (k - 0.5) * width, counts, width=width, color=colour, label=f"{label} (n={len(x)})")
    ax.axvline(0.0, color="k", linewidth=0.8)
    ax.set_xticks(classes[::2])
    ax.set_xlabel("predicted offset (s); > 0: the audio starts earlier than the video")
    ax.set_ylabel("samples")
    ax.set_title("DeSync: Synchformer offset classes", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def _ci(doc: Mapping[str, Any], metric: str, output: str | None) -> tuple[float | None, float | None]:
    """The ``(low, high)`` interval of a metric (output) wherever the document keeps it (see the module doc)."""
    details = (doc.get("details") or {}).get(metric) or {}
    value = (doc.get("metrics") or {}).get(metric)
    candidates = [
        value if isinstance(value, Mapping) and "low" in value else None,
        details.get("ci"),
        details.get("bootstrap"),
        (doc.get("ci") or {}).get(metric),
        (doc.get("bootstrap") or {}).get(metric),
        {"low": details["ci_low"], "high": details.get("ci_high")} if "ci_low" in details else None,
    ]
    for c in candidates:
        if isinstance(c, Mapping) and output is not None and isinstance(c.get(output), Mapping):
            c = c[output]
        if isinstance(c, Mapping) and ("low" in c or "high" in c):
            return _number(c.get("low")), _number(c.get("high"))
    return None, None


def _count(doc: Mapping[str, Any], metric: str) -> str:
    details = (doc.get("details") or {}).get(metric) or {}
    for key in COUNT_KEYS:
        if isinstance(details.get(key), int):
            return str(details[key])
    if "n_preds" in details:
        return f"{details['n_preds']} gen / {details.get('n_target', '?')} ref"
    scored = ((doc.get("files") or {}).get("n_scored") or {}).get(metric)
    return "—" if scored is None else str(scored)


def _arrow(better: bool | None) -> str:
    return {True: "↑ higher", False: "↓ lower", None: "?"}[better]


def _corpus_table(doc: Mapping[str, Any]) -> str:
    details_all = doc.get("details") or {}
    protocol = (doc.get("provenance") or {}).get("protocol")
    head = "<tr><th>metric</th><th>value</th><th>better</th><th>protocol</th><th>n</th><th>CI low</th><th>CI high</th>"
    lines = ["<table>", head + "</tr>"]
    shown_any = False
    for metric, value in (doc.get("metrics") or {}).items():
        details = details_all.get(metric) or {}
        proto = details.get("protocol", protocol)
        if isinstance(value, Mapping) and "value" in value:
            value = value["value"]
        outputs = list(value.items()) if isinstance(value, Mapping) else [(None, value)]
        for output, v in outputs:
            label = metric if output is None else f"{metric} {output}"
            low, high = _ci(doc, metric, output)
            shown_any = shown_any or (low, high) != (None, None)
            if v is None:
                shown = f'<td class="error">not computed: {_e(details.get("error", "no value"), TEXT_CELL_CHARS)}</td>'
            else:
                shown = f'<td class="num">{_e(_number(v))}</td>'
            lines.append(
                f"<tr><td>{_e(label)}</td>{shown}<td>{_arrow(_direction(doc, metric, output))}</td>"
                f'<td>{_e(proto)}</td><td class="num">{_e(_count(doc, metric))}</td>'
                f'<td class="num">{_e(low)}</td><td class="num">{_e(high)}</td></tr>'
            )
    lines.append("</table>")
    if not shown_any:
        lines.append('<p class="note">No confidence intervals in this document.</p>')
    lines += _bootstrap_notes(details_all)
    return "\n".join(lines)


def _bootstrap_notes(details_all: Mapping[str, Any]) -> list[str]:
    """How the ``evaluate --bootstrap`` intervals were drawn, and why a metric has none."""
    settings, failed = set(), []
    for metric, details in details_all.items():
        boot = details.get("bootstrap") if isinstance(details, Mapping) else None
        if not isinstance(boot, Mapping):
            continue
        if "num" in boot:
            settings.add((boot.get("ci"), boot.get("num"), boot.get("seed")))
        if "error" in boot:
            failed.append(f"{_e(metric)}: {_e(boot['error'], TEXT_CELL_CHARS)}")
    notes = [
        f'<p class="note">CI: {_e(100 * ci if isinstance(ci, int | float) else ci)} % percentile bootstrap '
        f"interval of {_e(num)} resamples (seed {_e(seed)}); it shows sampling variability only, not an "
        "estimator's bias (FD is biased upwards for small N: see FD∞).</p>"
        for ci, num, seed in sorted(settings, key=str)
    ]
    if failed:
        notes.append(f'<p class="note">No bootstrap CI for {"; ".join(failed)}.</p>')
    return notes


def _corpus_value(doc: Mapping[str, Any], col: Column) -> float | None:
    value = (doc.get("metrics") or {}).get(col.metric)
    if isinstance(value, Mapping) and "value" in value:
        value = value["value"]
    if isinstance(value, Mapping):
        value = value.get(col.output)
    return _number(value)


def _cell(v: Any) -> str:
    x = _number(v)
    return f'<td class="num">{_e(x)}</td>' if x is not None else f"<td>{_e(v, TEXT_CELL_CHARS)}</td>"


def _worst_table(col: Column, rows: Mapping[str, Mapping[str, Any]], context: Sequence[str], worst_n: int) -> str:
    scored = [(stem, x) for stem, row in rows.items() if (x := _number(row.get(col.name))) is not None]
    if col.higher_is_better is None:
        return f'<p class="note">{_e(col.name)}: direction unknown, no ranking.</p>'
    # Worst first; ties keep the rows' order (Python's sort is stable).
    scored.sort(key=lambda sx: sx[1], reverse=not col.higher_is_better)
    cells = "".join(f"<th>{_e(c)}</th>" for c in context)
    lines = [f"<h3>{_e(col.name)} ({_arrow(col.higher_is_better)} is better)</h3>", "<table>"]
    lines.append(f"<tr><th>rank</th><th>file</th><th>{_e(col.name)}</th>{cells}</tr>")
    for rank, (stem, x) in enumerate(scored[:worst_n], 1):
        row = rows[stem]
        extra = "".join(_cell(row.get(c)) for c in context)
        lines.append(
            f'<tr><td class="num">{rank}</td><td>{_e(row.get("file", stem))}</td>'
            f'<td class="num">{_e(x)}</td>{extra}</tr>'
        )
    lines.append("</table>")
    return "\n".join(lines)


def _unused_section(doc: Mapping[str, Any], rows: Mapping[str, Mapping[str, Any]]) -> str:
    files = doc.get("files") or {}
    lines: list[str] = []
    broken = files.get("broken") or []
    if broken:
        lines += ["<h3>Files that could not be decoded</h3>", "<table><tr><th>file</th><th>error</th></tr>"]
        lines += [f"<tr><td>{_e(b.get('file'))}</td><td>{_e(b.get('error'))}</td></tr>" for b in broken]
        lines.append("</table>")
    skipped = [(m, s) for m, items in (files.get("skipped") or {}).items() for s in items]
    for stem, row in rows.items():
        for key, v in row.items():
            if key.endswith("_skipped") and v:
                skipped.append((key[: -len("_skipped")], {"stem": stem, "error": v}))
    if skipped:
        lines += ["<h3>Samples a metric rejected</h3>", "<table><tr><th>metric</th><th>file</th><th>reason</th></tr>"]
        for metric, s in skipped:
            stem = str(s.get("stem"))
            name = (rows.get(stem) or {}).get("file", stem)
            lines.append(f"<tr><td>{_e(metric)}</td><td>{_e(name)}</td><td>{_e(s.get('error'))}</td></tr>")
        lines.append("</table>")
    listed = [(key, label, files[key]) for key, label in UNUSED_LISTS.items() if files.get(key)]
    if listed:
        lines += ["<h3>Unmatched files and texts</h3>", "<table><tr><th>what</th><th>n</th><th>stems</th></tr>"]
        for _, label, stems in listed:
            lines.append(
                f'<tr><td>{_e(label)}</td><td class="num">{len(stems)}</td>'
                f"<td>{_e(', '.join(map(str, stems)))}</td></tr>"
            )
        lines.append("</table>")
    return "\n".join(lines) if lines else '<p class="note">Every file was used by every metric that applies.</p>'


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, v in d.items():
        name = f"{prefix}{key}"
        if isinstance(v, Mapping) and v:
            out += _flatten(v, name + ".")
        elif isinstance(v, (list, tuple)):
            out.append((name, ", ".join(_fmt(x) for x in v) if v else "—"))
        else:
            out.append((name, v))
    return out


def _key_value_table(items: Iterable[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in items)
    return f"<table><tr><th>key</th><th>value</th></tr>{body}</table>"


def _details_table(doc: Mapping[str, Any]) -> str:
    details = doc.get("details") or {}
    rows = []
    for metric, d in details.items():
        if not isinstance(d, Mapping):
            continue
        text = ", ".join(f"{k}={_fmt(v)}" for k, v in _flatten(d) if k != "error")
        rows.append(f"<tr><td>{_e(metric)}</td><td>{_e(text)}</td></tr>")
    return f"<table><tr><th>metric</th><th>details</th></tr>{''.join(rows)}</table>" if rows else ""


def render_report(
    doc: Mapping[str, Any], rows: Any = None, *, worst_n: int = DEFAULT_WORST_N, title: str | None = None
) -> str:
    """The report as an HTML string (what :func:`write_report` writes); arguments as there."""
    if isinstance(worst_n, bool) or not isinstance(worst_n, int) or worst_n < 1:
        raise ValueError(f"`worst_n` must be a positive integer (samples listed per metric), got {worst_n!r}")
    if not isinstance(doc, Mapping) or not isinstance(doc.get("metrics"), Mapping):
        raise ValueError("`doc` must be a results document: a dict with a 'metrics' dict (see torchmetrics_av.report)")
    table = _normalise_rows(doc.get("per_sample") if rows is None else rows)
    prov = doc.get("provenance") or {}
    files = doc.get("files") or {}
    metrics = list(doc["metrics"])
    title = title or "torchmetrics-av report"

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]
    if prov.get("random_weights"):
        parts.append(
            f'<div class="banner">!! RANDOM WEIGHTS ({_e(prov["random_weights"])}): these numbers are not the '
            "metrics. They show the pipeline runs; rerun with the official checkpoints to get real values.</div>"
        )
    missing = prov.get("missing_checkpoints")
    if missing:
        text = "\n".join(map(str, missing)) if isinstance(missing, (list, tuple)) else str(missing)
        parts.append(f"<p>Checkpoints that could not be found or downloaded:</p><div class='missing'>{_e(text)}</div>")
    n_gen = files.get("n_gen", len(table))
    inputs = ", ".join(f"{k} {prov[k]}" for k in ("gen_dir", "ref_dir", "ref_stats") if prov.get(k))
    parts.append(f'<p class="note">{_e(n_gen)} generated files; {_e(inputs or "inputs not recorded")}.</p>')

    parts += ["<h2>Corpus values</h2>", _corpus_table(doc)]

    columns = value_columns(doc, table)
    parts.append("<h2>Per-sample distributions</h2>")
    plots = []
    for col in columns:
        values = [x for row in table.values() if (x := _number(row.get(col.name))) is not None]
        if values:
            b64 = _histogram(values, col.name, _corpus_value(doc, col), col.higher_is_better)
            plots.append(_img(b64, f"histogram of {col.name}", f"{col.name}: per-sample values"))
    no_values = [m for m in metrics if not any(c.metric == m for c in columns)]
    parts.append(f'<div class="plots">{"".join(plots)}</div>' if plots else "")
    if no_values:
        parts.append(
            f'<p class="note">No per-sample values (a corpus-level metric, or none scored): {_e(", ".join(no_values))}'
            ".</p>"
        )

    parts.append("<h2>DeSync offsets</h2>")
    offsets = {
        c: [x for row in table.values() if (x := _number(row.get(c))) is not None] for c in DESYNC_OFFSET_COLUMNS
    }
    if any(offsets.values()):
        parts.append(
            _img(_desync_histogram(offsets), "DeSync offset histogram", "signed offsets of the two 4.8 s windows")
        )
    else:
        parts.append('<p class="note">No DeSync offsets in this run.</p>')

    parts.append(f"<h2>Worst {worst_n} samples per metric</h2>")
    present = list(dict.fromkeys(k for row in table.values() for k in row))
    value_names = {c.name for c in columns}
    for col in columns:
        skip = value_names | {c for c in present if c.endswith(("_error", "_skipped"))}
        parts.append(_worst_table(col, table, _context_columns(col.metric, metrics, present, skip), worst_n))
    if not columns:
        parts.append('<p class="note">No per-sample values.</p>')

    parts += ["<h2>Files not used</h2>", _unused_section(doc, table)]
    parts += ["<h2>Provenance</h2>", _key_value_table(_flatten(prov)) if prov else "<p>not recorded</p>"]
    details = _details_table(doc)
    if details:
        parts += ["<h3>Metric details</h3>", details]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def write_report(
    doc: Mapping[str, Any],
    rows: Any,
    path: str | os.PathLike,
    *,
    worst_n: int = DEFAULT_WORST_N,
    title: str | None = None,
) -> Path:
    """Write the self-contained HTML report of a results document (see the module docstring for the keys read).

    Args:
        doc: the results document (``run_evaluate``'s, or ``json.load`` of ``evaluate --out``).
        rows: per-sample rows ``{stem: row}`` or a list of dicts with a ``stem`` key (CSV rows); ``None`` uses
            ``doc["per_sample"]``.
        path: the HTML file to write (its folder must exist).
        worst_n: samples listed per metric in the worst-samples tables.
        title: the page title (default "torchmetrics-av report").

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``doc`` has no ``metrics`` dict, a row has no ``stem``, ``worst_n`` is not a positive integer.
        ModuleNotFoundError: matplotlib is not installed.
    """
    out = Path(path)
    text = render_report(doc, rows, worst_n=worst_n, title=title)
    out.write_text(text, encoding="utf-8")
    return out
