r"""Bootstrap confidence intervals and the paired bootstrap test, on per-sample rows of any metric.

Every helper works from **index draws**: a ``(num, n)`` tensor of row indices drawn with replacement, so a metric that
can reduce any subset of its per-sample rows (``reduce(idx) -> value``) gets a bootstrap for free, and two metrics
given the same draws are resampled identically (paired).

(The generic helper is ``bootstrap_statistic``: a function named ``bootstrap`` would be shadowed by this module's own
name in ``torchmetrics_av.functional``.)

* Resampler: :func:`bootstrap_indices` uses NumPy's legacy ``np.random.RandomState(seed).randint(0, n, (num, n))``
  (Mersenne-Twister; NumPy freezes this stream, so a seed gives the same draws on every NumPy version and platform,
  unlike ``np.random.Generator`` or ``torch.Generator`` streams, which carry no such promise).
* Interval: the **percentile** interval (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13): the
  ``(1 − ci)/2`` and ``(1 + ci)/2`` quantiles of the bootstrap values, linear interpolation between order statistics
  (``numpy.percentile``'s default). ``std`` is the bootstrap standard error (``ddof=1``). ``value`` is the estimate on
  all rows, not the bootstrap mean.
* Paired test: :func:`paired_bootstrap` resamples the shared ids once per draw for both models and reports the
  two-sided p-value of ``H0: difference = 0`` by the **shifted bootstrap** (the null is imposed by centring the
  bootstrap differences on 0; Efron & Tibshirani 1993, ch. 16) with the ``+1`` correction of Davison & Hinkley,
  *Bootstrap Methods and their Application*, 1997, ch. 4: ``p = (1 + #{b : |d*_b − d̂| ≥ |d̂|}) / (num + 1)``.
  It is never 0, and its resolution is ``1 / (num + 1)``.

Example:
    >>> import torch
    >>> from torchmetrics_av.functional import bootstrap_statistic
    >>> x = torch.arange(100, dtype=torch.float64)
    >>> out = bootstrap_statistic(lambda idx: x[idx].mean(), len(x), num=200, seed=0)
    >>> float(out["value"]), bool(out["low"] < 49.5 < out["high"])
    (49.5, True)
"""

from __future__ import annotations

from collections.abc import Callable

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

DEFAULT_NUM = 1000
DEFAULT_CI = 0.95
# A percentile interval needs enough draws to place its two quantiles; below this it is mostly interpolation.
MIN_NUM = 2


def _check_num_ci(num: int, ci: float) -> None:
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < MIN_NUM:
        raise ValueError(f"`num` (number of bootstrap draws) must be an integer >= {MIN_NUM}, got {num!r}")
    if not 0.0 < float(ci) < 1.0:
        raise ValueError(f"`ci` must be a coverage level in (0, 1), e.g. 0.95, got {ci!r}")


def bootstrap_indices(n: int, num: int = DEFAULT_NUM, seed: int | np.random.RandomState = 0) -> Tensor:
    """``num`` resamples of ``n`` row indices with replacement: ``RandomState(seed).randint(0, n, (num, n))``.

    Args:
        n: number of rows (≥ 1).
        num: number of draws.
        seed: seed of the legacy ``np.random.RandomState`` (``0 ≤ seed < 2³²``), or a ``RandomState`` to continue
            (e.g. to draw both sides of a two-sample statistic from one stream).

    Returns:
        ``(num, n)`` int64 tensor.

    Example:
        >>> bootstrap_indices(5, 2, seed=0).tolist()
        [[4, 0, 3, 3, 3], [1, 3, 2, 4, 0]]
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` must be a positive number of rows, got {n!r}")
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"`num` must be a positive number of draws, got {num!r}")
    rs = seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)
    return torch.from_numpy(rs.randint(0, n, size=(num, n)).astype(np.int64))


def bootstrap_ci(values: Tensor, point: Tensor | float, ci: float = DEFAULT_CI) -> dict[str, Tensor]:
    """Percentile interval and standard error from bootstrap values.

    Args:
        values: ``(num,)`` statistic on each resample.
        point: the statistic on all rows (reported as ``value``).
        ci: coverage of the two-sided interval.

    Returns:
        ``{"value", "low", "high", "std"}`` scalar float64 tensors.
    """
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    _check_num_ci(values.numel(), ci)
    if not bool(torch.isfinite(values).all()):
        raise ValueError("`values` contains NaN or Inf: a resample could not be scored; check the statistic")
    alpha = (1.0 - float(ci)) / 2.0
    q = torch.quantile(values, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64, device=values.device))
    return {
        "value": torch.as_tensor(point, dtype=torch.float64, device=values.device).reshape(()),
        "low": q[0],
        "high": q[1],
        "std": values.std(correction=1),
    }


def _draws(n: int, num: int, seed: int, indices: Tensor | None, name: str = "indices") -> Tensor:
    if indices is None:
        return bootstrap_indices(n, num, seed)
    idx = torch.as_tensor(indices)
    if idx.ndim != 2 or idx.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"`{name}` must be a (num, n) integer tensor of row indices, got {tuple(idx.shape)}")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ValueError(f"`{name}` holds a row index outside [0, {n})")
    return idx.to(torch.int64)


def bootstrap_statistic(
    reduce: Callable[[Tensor], Tensor | float],
    n: int,
    *,
    num: int = DEFAULT_NUM,
    seed: int = 0,
    ci: float = DEFAULT_CI,
    indices: Tensor | None = None,
) -> dict[str, Tensor]:
    """Bootstrap interval of any statistic of ``n`` per-sample rows.

    Args:
        reduce: maps a 1-D int64 tensor of row indices (with repeats) to the statistic of those rows; called once on
            ``arange(n)`` for ``value`` and once per draw.
        n: number of rows.
        num: number of draws (ignored with ``indices``).
        seed: see :func:`bootstrap_indices`.
        ci: coverage of the percentile interval.
        indices: explicit ``(num, n)`` draws (e.g. shared with another metric).

    Returns:
        ``{"value", "low", "high", "std"}`` scalar float64 tensors.
    """
    idx = _draws(n, num, seed, indices)
    point = float(reduce(torch.arange(n)))
    values = torch.tensor([float(reduce(row)) for row in idx], dtype=torch.float64)
    return bootstrap_ci(values, point, ci)


def paired_bootstrap(
    a: Tensor,
    b: Tensor,
    *,
    num: int = DEFAULT_NUM,
    seed: int = 0,
    ci: float = DEFAULT_CI,
    indices: Tensor | None = None,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Paired bootstrap of the difference ``reduce(a) − reduce(b)`` between two models scored on the same ids.

    Args:
        a: ``(N, ...)`` per-sample values (or rows) of model A, row ``i`` on the same id as ``b[i]``.
        b: ``(N, ...)`` the same for model B.
        num: number of draws (ignored with ``indices``).
        seed: see :func:`bootstrap_indices`.
        ci: coverage of the percentile interval of the difference.
        indices: explicit ``(num, N)`` draws of ids.
        reduce: statistic of a subset of rows (default: the mean over rows and any trailing axes, i.e. a metric that
            averages per-sample values); the same draw is applied to ``a`` and ``b``.

    Returns:
        ``{"difference", "low", "high", "std", "p_value"}`` scalar float64 tensors; ``p_value`` is the two-sided
        shifted-bootstrap p-value of ``difference = 0`` (module docstring).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.rand(300, generator=g, dtype=torch.float64)
        >>> out = paired_bootstrap(a + 0.1, a, num=500)
        >>> round(float(out["difference"]), 6), float(out["p_value"]) < 0.01
        (0.1, True)
    """
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.ndim < 1 or a.shape != b.shape:
        raise ValueError(f"`a` and `b` must be aligned per-sample values of equal shape, got {a.shape} and {b.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"`a` and `b` need at least 2 samples, got {a.shape[0]}")
    for name, t in (("a", a), ("b", b)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"`{name}` contains NaN or Inf")
    _check_num_ci(num if indices is None else torch.as_tensor(indices).shape[0], ci)
    a, b = a.to(torch.float64), b.to(torch.float64)
    idx = _draws(a.shape[0], num, seed, indices).to(a.device)
    if reduce is None:
        per_sample = a - b if a.ndim == 1 else (a - b).flatten(1).mean(1)
        diff = per_sample.mean()
        boot = per_sample[idx].mean(1)
    else:
        diff = torch.as_tensor(reduce(a), dtype=torch.float64) - torch.as_tensor(reduce(b), dtype=torch.float64)
        boot = torch.stack([torch.as_tensor(reduce(a[r]) - reduce(b[r]), dtype=torch.float64) for r in idx])
    out = bootstrap_ci(boot, diff, ci)
    extreme = int(((boot - diff).abs() >= diff.abs()).sum())
    return {
        "difference": out["value"],
        "low": out["low"],
        "high": out["high"],
        "std": out["std"],
        "p_value": torch.tensor((1.0 + extreme) / (boot.numel() + 1.0), dtype=torch.float64, device=boot.device),
    }


def frechet_distance_bootstrap(
    preds_rows: Tensor,
    target_rows: Tensor,
    num: int = DEFAULT_NUM,
    seed: int = 0,
    ci: float = DEFAULT_CI,
    *,
    resample: str = "both",
    indices: tuple[Tensor, Tensor | None] | None = None,
    eps: float = DEFAULT_EPS,
    eps_policy: EpsPolicy = "always",
    method: FeatureFDMethod = "eigh",
) -> dict[str, Tensor]:
    """Bootstrap interval of the squared Fréchet distance, resampling embedding rows per side.

    The two sets are independent samples, so each side is resampled on its own: one ``RandomState(seed)`` draws
    ``(num, N1)`` preds indices, then ``(num, N2)`` target indices. With ``resample="preds"`` the reference statistics
    stay fixed (the uncertainty of a model's score against a fixed reference set, as in FD∞). The interval describes
    sampling variability only: FD's small-sample bias (the reason for :func:`~torchmetrics_av.functional.fd_infinity`)
    is not removed, and a resample holds only ~63 % distinct rows, so resampled FDs sit above the point estimate when
    N is small against D. Cost: ``num`` FD evaluations (``method`` as in
    :func:`~torchmetrics_av.functional.frechet_distance_from_features`).

    Args:
        preds_rows: ``(N1, D)`` generated-set embeddings.
        target_rows: ``(N2, D)`` reference-set embeddings.
        num: number of draws (ignored with ``indices``).
        seed: seed of the legacy ``np.random.RandomState``.
        ci: coverage of the percentile interval.
        resample: ``"both"`` (default) or ``"preds"``.
        indices: explicit ``(preds (num, N1), target (num, N2) or None)`` draws; ``None`` for the target side keeps
            it fixed.
        eps: see :func:`~torchmetrics_av.functional.frechet_distance`.
        eps_policy: see :func:`~torchmetrics_av.functional.frechet_distance`.
        method: see :func:`~torchmetrics_av.functional.frechet_distance_from_features`.

    Returns:
        ``{"value", "low", "high", "std"}`` scalar float64 tensors (``value`` = FD on all rows).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(400, 3, generator=g), torch.randn(400, 3, generator=g) + 1.0
        >>> out = frechet_distance_bootstrap(x, y, num=50, seed=0)
        >>> bool(out["low"] < out["value"] < out["high"])
        True
    """
    x, y = _check_features(preds_rows, "preds_rows"), _check_features(target_rows, "target_rows")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"`preds_rows` has {x.shape[1]} features and `target_rows` {y.shape[1]}; they must match")
    if resample not in ("both", "preds"):
        raise ValueError(f"`resample` must be 'both' or 'preds', got {resample!r}")
    if indices is None:
        _check_num_ci(num, ci)
        rs = np.random.RandomState(seed)
        pi = bootstrap_indices(x.shape[0], num, rs)
        ti = bootstrap_indices(y.shape[0], num, rs) if resample == "both" else None
    else:
        pi = _draws(x.shape[0], num, seed, indices[0], "indices[0]")
        ti = None if indices[1] is None else _draws(y.shape[0], num, seed, indices[1], "indices[1]")
        if ti is not None and ti.shape[0] != pi.shape[0]:
            raise ValueError(f"`indices` hold {pi.shape[0]} preds draws and {ti.shape[0]} target draws")
    kw = dict(eps=eps, eps_policy=eps_policy, method=method)
    target = _Rows(y)
    point = _fd_rows(_Rows(x), target, **kw)
    values = torch.stack(
        [
            _fd_rows(_Rows(x[pi[i].to(x.device)]), target if ti is None else _Rows(y[ti[i].to(y.device)]), **kw)
            for i in range(pi.shape[0])
        ]
    )
    return bootstrap_ci(values.cpu(), point.cpu(), ci)
