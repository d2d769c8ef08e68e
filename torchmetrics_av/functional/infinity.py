r"""FD∞ and KAD∞: the sample-size-free extrapolation of fadtk / kadtk (``score_inf``).

A distance estimated from ``n`` generated samples is biased by roughly ``slope / n``. fadtk ("Adapting Fréchet Audio
Distance for Generative Music Evaluation", ICASSP 2024) evaluates it at ``steps`` sizes ``n`` and fits
``d(n) = value + slope / n``; the intercept ``value`` is FD∞ (KAD∞ for the kernel distance).

Protocol (fadtk 1.1.0 ``FrechetAudioDistance.score_inf``, kadtk 1.1.0 ``KernelAudioDistance.score_inf``):

1. the **reference statistics use every target row and are never resampled**;
2. ``ns = [int(t) for t in np.linspace(min_n, N, steps)]`` with ``N`` the number of generated rows (NumPy's float64
   linspace, then truncation: not always the exact rational floor). If ``min_n > N`` the sizes run *downwards* from
   ``min_n`` to ``N`` and more rows than exist are drawn, as fadtk does silently;
3. for each ``n`` in that order, ``n`` generated rows are drawn **with replacement** (so a draw of ``n = N`` rows holds
   only ~63 % distinct rows: the statistics are those of a bootstrap sample). ``seed`` reproduces fadtk after
   ``np.random.seed(seed)``: ``np.random.RandomState(seed).choice(N, n, replace=True)`` step by step (the legacy
   Mersenne-Twister stream, frozen by NumPy); ``indices`` passes explicit draws instead;
4. the distance of each draw to the reference;
5. least squares of the distances on ``1/n`` (``np.polyfit(1/n, d, 1)``), and
   ``r2 = 1 − Σ(d − fit)² / Σ(d − mean d)²``.

Differences from fadtk, all within the golden tolerances (rtol 2e-6 on points and fit): fadtk rounds every mean to
float32 (``np.mean`` of float32 arrays; ~4e-7 of the mean term) and merges the reference statistics per file; here
the moments are float64 from all rows. fadtk's trace is ``scipy.linalg.eig`` of ``S1 S2``; here ``method`` of
:func:`~torchmetrics_av.functional.frechet_distance_from_features`. fadtk casts cached embeddings to float16; pass
float16-rounded rows to reproduce its CLI on audio. fadtk raises ``ValueError`` when its square root has an imaginary
diagonal part above 1e-3; the symmetric and low-rank routes here have none (never triggered on the goldens).

Example:
    >>> import torch
    >>> from torchmetrics_av.functional import fd_infinity
    >>> g = torch.Generator().manual_seed(0)
    >>> target, preds = torch.randn(400, 4, generator=g), torch.randn(300, 4, generator=g) + 1.0
    >>> out = fd_infinity(preds, target, steps=5, min_n=50, seed=0)
    >>> [int(n) for n in out["points"][:, 0]]
    [50, 112, 175, 237, 300]
    >>> 3.0 < float(out["value"]) < 5.0  # the squared mean shift 4 · 1², up to sampling noise
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from torchmetrics_av.functional.fad import (
    DEFAULT_EPS,
    EpsPolicy,
    FeatureFDMethod,
    _check_features,
    _fd_rows,
    _Rows,
)
from torchmetrics_av.functional.kad import (
    KAD_SCALE,
    BandwidthFrom,
    KADKernel,
    kernel_audio_distance,
)

# fadtk / kadtk score_inf defaults.
DEFAULT_STEPS = 25
DEFAULT_MIN_N = 500


def infinity_sizes(n_rows: int, steps: int = DEFAULT_STEPS, min_n: int = DEFAULT_MIN_N) -> list[int]:
    """Draw sizes of fadtk: ``[int(t) for t in np.linspace(min_n, n_rows, steps)]`` (NumPy rounding kept on purpose).

    Args:
        n_rows: number of generated rows ``N``.
        steps: number of sizes (≥ 2).
        min_n: first size (≥ 2); may exceed ``n_rows`` (the sizes then decrease, as in fadtk).

    Returns:
        ``steps`` integers.
    """
    for name, v in (("steps", steps), ("min_n", min_n), ("n_rows", n_rows)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
            raise ValueError(f"`{name}` must be an integer >= 2, got {v!r}")
    ns = [int(t) for t in np.linspace(min_n, n_rows, steps)]
    if len(set(ns)) < 2:
        raise ValueError(
            f"all {steps} draw sizes equal {ns[0]} (min_n == number of generated rows): the 1/n fit is degenerate; "
            "lower `min_n`"
        )
    return ns


def infinity_draws(n_rows: int, ns: Sequence[int], seed: int) -> list[Tensor]:
    """Row draws with replacement, one per size, from ``np.random.RandomState(seed)`` in order (fadtk after seeding).

    Args:
        n_rows: number of generated rows to draw from.
        ns: draw sizes, in order.
        seed: seed of the legacy Mersenne-Twister stream (0 ≤ seed < 2³²).

    Returns:
        List of int64 index tensors of lengths ``ns``.
    """
    rs = np.random.RandomState(seed)
    return [torch.from_numpy(rs.choice(n_rows, size=n, replace=True).astype(np.int64)) for n in ns]


def fit_inverse_n(ns: Sequence[int], values: Sequence[float] | Tensor) -> tuple[float, float, float]:
    """Least-squares line of ``values`` on ``1/n``: ``(intercept, slope, r2)`` as fadtk computes them, in float64.

    Args:
        ns: the draw sizes (at least two distinct).
        values: the distance at each size.

    Returns:
        ``(intercept, slope, r2)``; ``r2 = 1 − SS_res / SS_tot``.
    """
    x = 1.0 / np.asarray(ns, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"`ns` and `values` must be 1-D of equal length, got {x.shape} and {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("`values` contains NaN or Inf")
    xc, yc = x - x.mean(), y - y.mean()
    sxx = float(xc @ xc)
    if sxx == 0.0:
        raise ValueError("the 1/n fit needs at least two distinct sizes")
    slope = float(xc @ yc) / sxx
    intercept = float(y.mean()) - slope * float(x.mean())
    ss_tot = float(yc @ yc)
    if ss_tot == 0.0:
        raise ValueError("every point has the same value: R² is undefined (are all rows identical?)")
    resid = y - (slope * x + intercept)
    return intercept, slope, 1.0 - float(resid @ resid) / ss_tot


def _resolve_draws(
    n_rows: int, steps: int, min_n: int, seed: int | None, indices: Sequence[Tensor] | None
) -> tuple[list[Tensor], int | None]:
    if indices is not None:
        if seed is not None:
            raise ValueError("give `seed` or `indices`, not both")
        draws = []
        for i, idx in enumerate(indices):
            idx = torch.as_tensor(idx)
            if idx.ndim != 1 or idx.dtype not in (torch.int32, torch.int64) or idx.numel() < 2:
                raise ValueError(f"`indices[{i}]` must be a 1-D integer tensor of at least 2 row indices")
            if int(idx.min()) < 0 or int(idx.max()) >= n_rows:
                raise ValueError(f"`indices[{i}]` holds a row index outside [0, {n_rows})")
            draws.append(idx.to(torch.int64))
        if len({len(d) for d in draws}) < 2:
            raise ValueError("`indices` needs draws of at least two different sizes for the 1/n fit")
        return draws, None
    if seed is None:
        # fadtk draws from the unseeded global RNG; a fresh seed is drawn and reported so the run can be repeated.
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    return infinity_draws(n_rows, infinity_sizes(n_rows, steps, min_n), seed), seed


def _extrapolate(draws: list[Tensor], seed: int | None, score: Callable[[Tensor], float]) -> dict:
    ns = [len(d) for d in draws]
    values = [score(d) for d in draws]
    intercept, slope, r2 = fit_inverse_n(ns, values)
    f64 = dict(dtype=torch.float64)
    return {
        "value": torch.tensor(intercept, **f64),
        "slope": torch.tensor(slope, **f64),
        "r2": torch.tensor(r2, **f64),
        "points": torch.tensor([[float(n), v] for n, v in zip(ns, values)], **f64),
        "seed": seed,
    }


def fd_infinity(
    preds: Tensor,
    target: Tensor,
    *,
    steps: int = DEFAULT_STEPS,
    min_n: int = DEFAULT_MIN_N,
    seed: int | None = None,
    indices: Sequence[Tensor] | None = None,
    eps: float = DEFAULT_EPS,
    eps_policy: EpsPolicy = "on_failure",
    method: FeatureFDMethod = "auto",
) -> dict:
    """FD∞ as fadtk computes it: squared Fréchet distances of resampled generated sets, extrapolated to ``n → ∞``.

    Args:
        preds: ``(N, D)`` generated-set embeddings (rows are resampled with replacement).
        target: ``(M, D)`` reference-set embeddings (all rows, never resampled).
        steps: number of draw sizes (fadtk: 25).
        min_n: smallest draw size (fadtk: 500; may exceed ``N``, see the module docstring).
        seed: seed of ``np.random.RandomState`` for the draws (fadtk after ``np.random.seed(seed)``); ``None`` draws a
            fresh seed and returns it under ``"seed"``.
        indices: explicit draws (a sequence of 1-D index tensors into ``preds``, one per step, in order); overrides
            ``steps`` / ``min_n``; not with ``seed``.
        eps: see :func:`~torchmetrics_av.functional.frechet_distance`.
        eps_policy: ``"on_failure"`` (default: fadtk retries with ``eps·I`` only when the square root is not finite),
            ``"always"`` or ``"never"``.
        method: trace-sqrt route per draw, see
            :func:`~torchmetrics_av.functional.frechet_distance_from_features`; ``"auto"`` (default) takes the exact
            low-rank route for draws with fewer rows than dimensions (fadtk's ``eig`` adds null-space round-off there,
            ≤ 1e-6 relative on the goldens) and ``"eigh"`` otherwise.

    Returns:
        ``{"value", "slope", "r2"}`` scalar float64 tensors (``value`` = the intercept = FD∞), ``"points"`` a
        ``(steps, 2)`` float64 tensor of ``[n, FD_n]`` rows in draw order, and ``"seed"`` (``None`` with ``indices``).

    Raises:
        ValueError: bad shapes or values, fewer than two distinct draw sizes, or an FD failure of a draw.
    """
    x = _check_features(preds, "preds")
    y = _check_features(target, "target")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"`preds` has {x.shape[1]} features and `target` {y.shape[1]}; they must match")
    draws, seed = _resolve_draws(x.shape[0], steps, min_n, seed, indices)
    reference = _Rows(y)

    def score(idx: Tensor) -> float:
        return float(_fd_rows(_Rows(x[idx.to(x.device)]), reference, eps=eps, eps_policy=eps_policy, method=method))

    return _extrapolate(draws, seed, score)


def kad_infinity(
    preds: Tensor,
    target: Tensor,
    *,
    steps: int = DEFAULT_STEPS,
    min_n: int = DEFAULT_MIN_N,
    seed: int | None = None,
    indices: Sequence[Tensor] | None = None,
    kernel: KADKernel = "gaussian",
    bandwidth: float | None = None,
    bandwidth_from: BandwidthFrom = "preds",
    scale: float = KAD_SCALE,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """KAD∞ as kadtk computes it: KAD of resampled generated sets extrapolated to ``n → ∞`` (draws and fit of FD∞).

    With ``bandwidth=None`` and ``bandwidth_from="preds"`` the median bandwidth is recomputed for every draw from the
    resampled rows, duplicates included (their zero distances pull the median down), as kadtk does; the unbiased
    estimator then counts duplicate rows as distinct pairs (kadtk's behaviour, kept).

    Args:
        preds: ``(N, D)`` generated-set embeddings.
        target: ``(M, D)`` reference-set embeddings (all rows, never resampled).
        steps: see :func:`fd_infinity`.
        min_n: see :func:`fd_infinity`.
        seed: see :func:`fd_infinity`.
        indices: see :func:`fd_infinity`.
        kernel: see :func:`~torchmetrics_av.functional.kernel_audio_distance`.
        bandwidth: see :func:`~torchmetrics_av.functional.kernel_audio_distance`.
        bandwidth_from: see :func:`~torchmetrics_av.functional.kernel_audio_distance`.
        scale: see :func:`~torchmetrics_av.functional.kernel_audio_distance`.
        dtype: see :func:`~torchmetrics_av.functional.kernel_audio_distance`.

    Returns:
        As :func:`fd_infinity`, with ``value`` = KAD∞ and ``points`` = ``[n, KAD_n]``.

    Example:
        >>> import torch
        >>> from torchmetrics_av.functional import kad_infinity
        >>> g = torch.Generator().manual_seed(0)
        >>> target, preds = torch.randn(300, 4, generator=g), torch.randn(200, 4, generator=g) + 1.0
        >>> out = kad_infinity(preds, target, steps=4, min_n=50, seed=0, dtype=torch.float64)
        >>> out["points"].shape, float(out["value"]) > 0
        (torch.Size([4, 2]), True)
    """
    _check_features(preds, "preds")
    _check_features(target, "target")
    draws, seed = _resolve_draws(preds.shape[0], steps, min_n, seed, indices)

    def score(idx: Tensor) -> float:
        return float(
            kernel_audio_distance(
                preds[idx.to(preds.device)],
                target,
                kernel=kernel,
                bandwidth=bandwidth,
                bandwidth_from=bandwidth_from,
                scale=scale,
                dtype=dtype,
            )
        )

    return _extrapolate(draws, seed, score)
