"""``evaluate --bootstrap N`` and ``--fd-inf``: confidence intervals, FD∞ and KAD added to a run's document.

Both work on what the metrics already hold after ``compute()``: no file is decoded and no model runs again.

* ``--bootstrap N`` (``--bootstrap-seed S``, default 0; ``--ci C``, default 0.95): every metric with a value gets
  ``details[name]["bootstrap"] = {"value", "low", "high", "std", "num", "seed", "ci"}`` from its own
  ``metric.bootstrap(num=N, seed=S, ci=C)`` (a dict-valued metric, Audiobox, has one ``{"value", "low", "high",
  "std"}`` per axis next to ``num`` / ``seed`` / ``ci``). A metric whose bootstrap cannot run (no value, too few
  samples, a resample it cannot reduce) gets ``{"error": reason, "num", "seed", "ci"}`` instead; the run goes on.
* ``--fd-inf``: for every FD metric ``fd_<backbone>`` with a value, two more metrics computed from its embedding
  rows (the FD metrics are built with ``keep_rows=True``):

  * ``fd_<backbone>_inf``: FD∞ (fadtk's ``score_inf``: :meth:`FrechetAudioDistance.fd_infinity
    <torchmetrics_av.audio.fad.FrechetAudioDistance.fd_infinity>`), the intercept of FD against 1/n over
    ``--fd-inf-steps`` generated-set sizes from ``--fd-inf-min-n`` to N, drawn with replacement from
    ``np.random.RandomState(--bootstrap-seed)``; ``details``: ``slope``, ``r2``, ``points`` (``[n, FD_n]``),
    ``seed``, ``steps``, ``min_n``, ``n_preds``, ``n_target``.
  * ``kad_<backbone>``: KAD (kadtk defaults: :class:`~torchmetrics_av.audio.kad.KernelAudioDistance` with the
    Gaussian kernel, median bandwidth of the generated rows, float32 kernel sums, ×100) on the same rows, hence no
    second forward; ``details``: ``bandwidth``, ``n_preds``, ``n_target`` and, with ``--bootstrap``, ``bootstrap``.

  Both need the reference as rows: with ``--ref-stats`` they are ``null`` with the reason in ``details``.

Example:
    >>> import argparse
    >>> from torchmetrics_av.cli.estimators import add_estimator_options, keeps_rows
    >>> p = argparse.ArgumentParser()
    >>> add_estimator_options(p)
    >>> args = p.parse_args(["--bootstrap", "200", "--ci", "0.9"])
    >>> args.bootstrap, args.bootstrap_seed, args.ci, args.fd_inf, keeps_rows(args)
    (200, 0, 0.9, False, True)
    >>> keeps_rows(argparse.Namespace())  # a run without these options (e.g. `reference`) keeps sums
    False
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from torchmetrics_av.base import BOOTSTRAP_CI, BOOTSTRAP_MIN_NUM, BOOTSTRAP_SEED
from torchmetrics_av.functional.infinity import DEFAULT_MIN_N, DEFAULT_STEPS

# NumPy's legacy RandomState takes seeds in [0, 2**32).
SEED_LIMIT = 2**32
# Name of FD's estimators: `fd_passt` -> `fd_passt_inf` (FD∞) and `kad_passt` (KAD on the same rows).
FD_PREFIX, INF_SUFFIX, KAD_PREFIX = "fd_", "_inf", "kad_"


def _int_at_least(minimum: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be an integer >= {minimum}, got {value}")
        return value

    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"the seed must be an integer in [0, 2**32), got {text!r}")
    return value


def _coverage(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"--ci is a coverage level in (0, 1), e.g. 0.95, got {text!r}")
    return value


def add_estimator_options(p: argparse.ArgumentParser) -> None:
    """The ``evaluate`` options ``--bootstrap``, ``--bootstrap-seed``, ``--ci``, ``--fd-inf`` and its sizes."""
    p.add_argument(
        "--bootstrap",
        type=_int_at_least(BOOTSTRAP_MIN_NUM, "--bootstrap"),
        metavar="N",
        help="percentile bootstrap CI of every metric from N resamples of its per-sample rows (pairs, clips; FD/KAD: "
        "each side's clips), in details[metric].bootstrap = {value, low, high, std, num, seed, ci}, or "
        "{error} when it cannot run; no model runs again (FD: N matrix square roots)",
    )
    p.add_argument(
        "--bootstrap-seed",
        type=_seed,
        default=BOOTSTRAP_SEED,
        help="seed of numpy's RandomState for the bootstrap and FD∞ draws (default 0)",
    )
    p.add_argument("--ci", type=_coverage, default=BOOTSTRAP_CI, help="coverage of the bootstrap CI (default 0.95)")
    p.add_argument(
        "--fd-inf",
        action="store_true",
        help="add fd_<backbone>_inf (FD∞: fadtk's intercept of FD against 1/n; details: slope, r2, points) and "
        "kad_<backbone> (KAD, kadtk defaults, on the same embeddings) for every FD metric; needs --ref, not "
        "--ref-stats",
    )
    p.add_argument(
        "--fd-inf-steps",
        type=_int_at_least(2, "--fd-inf-steps"),
        default=DEFAULT_STEPS,
        help=f"FD∞: number of generated-set sizes (default {DEFAULT_STEPS}, fadtk's)",
    )
    p.add_argument(
        "--fd-inf-min-n",
        type=_int_at_least(1, "--fd-inf-min-n"),
        default=DEFAULT_MIN_N,
        help=f"FD∞: smallest generated-set size (default {DEFAULT_MIN_N}, fadtk's; above N the sizes run down to N)",
    )


def keeps_rows(args: argparse.Namespace) -> bool:
    """Whether FD must keep its embedding rows (``keep_rows=True``): ``--bootstrap`` or ``--fd-inf`` asked."""
    return bool(getattr(args, "bootstrap", None)) or bool(getattr(args, "fd_inf", False))


def _message(err: BaseException) -> str:
    return str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"


def _floats(out: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _floats(v) if isinstance(v, Mapping) else float(v) for k, v in out.items()}


def bootstrap_entry(metric: Any, value: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``details[name]["bootstrap"]`` of one metric: its ``bootstrap()`` as floats, or the reason it has none."""
    settings = {"num": args.bootstrap, "seed": args.bootstrap_seed, "ci": args.ci}
    if value is None:
        return {"error": "the metric has no value", **settings}
    try:
        out = metric.bootstrap(num=args.bootstrap, seed=args.bootstrap_seed, ci=args.ci)
    except Exception as err:  # noqa: BLE001 - a CI that cannot be formed is reported, never ends the run
        return {"error": _message(err), **settings}
    return {**_floats(out), **settings}


def _fd_infinity(fd: Any, args: argparse.Namespace) -> tuple[float, dict[str, Any]]:
    out = fd.fd_infinity(steps=args.fd_inf_steps, min_n=args.fd_inf_min_n, seed=args.bootstrap_seed)
    rows = fd.per_sample()
    details = {
        "slope": float(out["slope"]),
        "r2": float(out["r2"]),
        "points": [[int(n), float(v)] for n, v in out["points"].tolist()],
        "seed": out["seed"],
        "steps": args.fd_inf_steps,
        "min_n": args.fd_inf_min_n,
        "n_preds": int(rows["preds_embeddings"].shape[0]),
        "n_target": int(rows["target_embeddings"].shape[0]),
    }
    return float(out["value"]), details


def kad_from_fd(fd: Any) -> Any:
    """A :class:`~torchmetrics_av.audio.kad.KernelAudioDistance` (kadtk defaults) holding ``fd``'s embedding rows.

    The rows are handed over as they are (ids, VGGish example index, float64 embeddings), so the KAD is on exactly
    the FD's samples and nothing is embedded twice; its ``bootstrap()`` resamples clips per side as FD's does.

    Raises:
        ValueError: ``fd`` streamed clips into sums or uses reference statistics from a file (no reference rows).
    """
    from torchmetrics_av import KernelAudioDistance

    return KernelAudioDistance.from_frechet(fd)


def _kad(fd: Any, args: argparse.Namespace) -> tuple[float, dict[str, Any]]:
    kad = kad_from_fd(fd)
    value = float(kad.compute())
    d = kad.details
    details: dict[str, Any] = {
        "bandwidth": float(d["bandwidth"]),
        "kernel": kad.kernel,
        "n_preds": d["n_preds"],
        "n_target": d["n_target"],
    }
    if getattr(args, "bootstrap", None):
        details["bootstrap"] = bootstrap_entry(kad, value, args)
    return value, details


def _derived(name: str, fd: Any, value: Any, args: argparse.Namespace) -> dict[str, tuple[Any, dict[str, Any]]]:
    """``{fd_x_inf: (value, details), kad_x: (value, details)}`` of one FD metric; ``None`` values give reasons."""
    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    stem = name.removeprefix(FD_PREFIX)
    for key, estimate in ((f"{name}{INF_SUFFIX}", _fd_infinity), (f"{KAD_PREFIX}{stem}", _kad)):
        if value is None:
            out[key] = (None, {"error": f"{name} has no value"})
            continue
        try:
            v, details = estimate(fd, args)
        except Exception as err:  # noqa: BLE001 - e.g. --ref-stats (no reference rows): null with the reason
            out[key] = (None, {"error": _message(err)})
            continue
        out[key] = (v, details)
    for _, details in out.values():
        details["protocol"] = fd.protocol
        details["higher_is_better"] = False  # distances
    return out


def add_estimates(doc: dict[str, Any], metrics: Mapping[str, Any], args: argparse.Namespace) -> None:
    """Add what ``--bootstrap`` / ``--fd-inf`` ask for to the document, in place (see the module docstring).

    Args:
        doc: the run's document (``metrics``, ``details``), after every metric's ``compute()``.
        metrics: the run's metric objects by name.
        args: the parsed ``evaluate`` options (absent options ask for nothing).
    """
    from torchmetrics_av import FrechetAudioDistance

    if getattr(args, "bootstrap", None):
        for name, metric in metrics.items():
            doc["details"][name]["bootstrap"] = bootstrap_entry(metric, doc["metrics"][name], args)
    if not getattr(args, "fd_inf", False):
        return
    values: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for name, value in doc["metrics"].items():  # each estimate right after its FD, in the document's order
        values[name], details[name] = value, doc["details"][name]
        metric = metrics.get(name)
        if isinstance(metric, FrechetAudioDistance) and name.startswith(FD_PREFIX):
            for key, (v, d) in _derived(name, metric, value, args).items():
                values[key], details[key] = v, d
    doc["metrics"], doc["details"] = values, details
