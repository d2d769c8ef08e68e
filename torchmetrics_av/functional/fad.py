r"""Fréchet distance between two Gaussians fitted to embeddings (FD_PaSST, FAD), from features, moments or sums.

.. math::
    FD = \lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{tr}\Sigma_1 + \operatorname{tr}\Sigma_2
         - 2 \operatorname{tr}\sqrt{\Sigma_1 \Sigma_2}

The result is the *squared* distance (no square root), as in FID, FastVideo and av-benchmark.

Eps policy (``eps_policy``): ``"always"`` adds ``eps*I`` to both covariances (FastVideo); ``"on_failure"`` adds it
only when the square root is not finite (av-benchmark); ``"never"``.

Trace-sqrt method (``method``): ``"eigh"`` (default) computes ``tr sqrt(S1 S2)`` as the sum of square roots of the
eigenvalues of the symmetric PSD matrix ``Lᵀ S2 L`` with ``S1 = L Lᵀ`` (a Cholesky factor and one eigenvalues-only
symmetric solve in float64; ``S1^1/2`` from ``eigh`` when ``S1`` is singular; never complex); ``"scipy"`` is the
references' ``scipy.linalg.sqrtm(S1 @ S2)`` with their imaginary-part check (≤ 1e-3 on the diagonal, else
``ValueError`` where av-benchmark would return −1). The two agree to ≤ 1e-6 relative on the golden sets; see
benchmarks/bench_fad.py for the speed ratio.

Example:
    >>> import torch
    >>> from torchmetrics_av.functional import frechet_distance_from_features
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(500, 4, generator=g)
    >>> round(float(frechet_distance_from_features(x, x + 1.0)), 6)  # same covariance, means 2 apart (squared: 4)
    4.0
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

EpsPolicy = Literal["always", "on_failure", "never"]
FDMethod = Literal["eigh", "scipy"]
# pytorch-fid / audioldm_eval / FastVideo / av-benchmark all regularise with 1e-6 * I.
DEFAULT_EPS = 1e-6
# Reference tolerance on the imaginary part of diag(sqrtm(S1 S2)) before it is discarded (pytorch-fid lineage).
IMAG_ATOL = 1e-3


def gaussian_from_sums(feature_sum: Tensor, outer_sum: Tensor, n: Tensor | int) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance (``np.cov`` convention, N−1) from float64 streaming sums.

    Args:
        feature_sum: ``(D,)`` sum of feature rows.
        outer_sum: ``(D, D)`` sum of outer products ``x xᵀ``.
        n: number of rows (≥ 2).

    Returns:
        ``(mu (D,), sigma (D, D))`` in float64.
    """
    n_f = float(n)
    if n_f < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {int(n_f)}")
    mu = feature_sum.to(torch.float64) / n_f
    sigma = (outer_sum.to(torch.float64) - n_f * torch.outer(mu, mu)) / (n_f - 1.0)
    return mu, sigma


def _trace_sqrt_eigh(sigma1: Tensor, sigma2: Tensor) -> Tensor:
    # tr sqrt(S1 S2) = sum sqrt(eig(S1 S2)), and S1 S2 is similar to a symmetric PSD matrix: with S1 = L Lᵀ
    # (Cholesky) it is Lᵀ S2 L, so one Cholesky and one eigenvalues-only symmetric solve suffice (no Schur sqrtm, no
    # complex round-off). A singular S1 (N <= D without eps) has no Cholesky factor; then S1^1/2 from eigh is used and
    # S1's round-off null space is kept on purpose: the references' sqrtm also sums sqrt(round-off eigenvalues) (~1e-5
    # in total on the rank-deficient golden set), and truncating it would move this path away from them by ~4e-5.
    s1 = (sigma1 + sigma1.T) / 2
    factor, info = torch.linalg.cholesky_ex(s1)
    if int(info) == 0:
        m = factor.T @ sigma2 @ factor
    else:
        w, v = torch.linalg.eigh(s1)
        root1 = (v * w.clamp(min=0).sqrt()) @ v.T
        m = root1 @ sigma2 @ root1
    ev = torch.linalg.eigvalsh((m + m.T) / 2)
    return ev.clamp(min=0).sqrt().sum()


def _sqrtm_scipy(a: np.ndarray) -> np.ndarray:
    import scipy.linalg

    return scipy.linalg.sqrtm(a)


def _trace_sqrt_scipy(s1: np.ndarray, s2: np.ndarray) -> float | None:
    covmean = _sqrtm_scipy(s1 @ s2)
    if not np.isfinite(covmean).all():
        return None
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAG_ATOL):
            worst = float(np.max(np.abs(np.diagonal(covmean).imag)))
            raise ValueError(
                f"sqrtm(S1 S2) has an imaginary diagonal component of {worst:.3g} (> {IMAG_ATOL}); the covariances are "
                "too ill-conditioned for method='scipy' (av-benchmark would report -1). Use method='eigh' or add eps."
            )
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(
    mu1: Tensor,
    sigma1: Tensor,
    mu2: Tensor,
    sigma2: Tensor,
    *,
    eps: float = DEFAULT_EPS,
    eps_policy: EpsPolicy = "always",
    method: FDMethod = "eigh",
) -> Tensor:
    """Squared Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``, in float64.

    Args:
        mu1: ``(D,)`` mean of the first (generated) set.
        sigma1: ``(D, D)`` covariance of the first set.
        mu2: ``(D,)`` mean of the second (reference) set.
        sigma2: ``(D, D)`` covariance of the second set.
        eps: diagonal regulariser.
        eps_policy: ``"always"`` (FastVideo), ``"on_failure"`` (av-benchmark) or ``"never"``.
        method: ``"eigh"`` (fast symmetric path) or ``"scipy"`` (the references' ``sqrtm``).

    Returns:
        Scalar float64 tensor (on ``mu1``'s device).

    Raises:
        ValueError: shapes disagree, inputs are not finite, or (``"scipy"``) the square root is not real enough or
            stays non-finite.
    """
    if mu1.ndim != 1 or mu1.shape != mu2.shape or sigma1.shape != (mu1.numel(),) * 2 or sigma2.shape != sigma1.shape:
        raise ValueError(
            f"expected mu (D,) and sigma (D, D) on both sides, got {tuple(mu1.shape)}, {tuple(sigma1.shape)}, "
            f"{tuple(mu2.shape)}, {tuple(sigma2.shape)}"
        )
    if eps_policy not in ("always", "on_failure", "never"):
        raise ValueError(f"`eps_policy` must be 'always', 'on_failure' or 'never', got {eps_policy!r}")
    if method not in ("eigh", "scipy"):
        raise ValueError(f"`method` must be 'eigh' or 'scipy', got {method!r}")
    mu1, mu2, sigma1, sigma2 = (t.to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    for name, t in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"`{name}` contains NaN or Inf")
    if eps_policy == "always":
        eye = torch.eye(sigma1.shape[0], dtype=torch.float64, device=sigma1.device)
        sigma1, sigma2 = sigma1 + eps * eye, sigma2 + eps * eye
    diff = mu1 - mu2
    mean_term = diff.dot(diff)
    traces = sigma1.trace() + sigma2.trace()
    if method == "eigh":
        tr_covmean = _trace_sqrt_eigh(sigma1, sigma2)
        if not bool(torch.isfinite(tr_covmean)) and eps_policy == "on_failure":
            eye = torch.eye(sigma1.shape[0], dtype=torch.float64, device=sigma1.device)
            tr_covmean = _trace_sqrt_eigh(sigma1 + eps * eye, sigma2 + eps * eye)
    else:
        s1, s2 = sigma1.cpu().numpy(), sigma2.cpu().numpy()
        tr = _trace_sqrt_scipy(s1, s2)
        if tr is None and eps_policy == "on_failure":
            offset = np.eye(s1.shape[0]) * eps
            tr = _trace_sqrt_scipy(s1 + offset, s2 + offset)
        if tr is None:
            raise ValueError("sqrtm(S1 S2) is not finite; use eps_policy='always' or method='eigh'")
        tr_covmean = torch.tensor(tr, dtype=torch.float64, device=mu1.device)
    if not bool(torch.isfinite(tr_covmean)):
        raise ValueError("tr sqrt(S1 S2) is not finite; check the covariances")
    return mean_term + traces - 2.0 * tr_covmean


def _check_features(x: Tensor, name: str) -> Tensor:
    if x.ndim != 2:
        raise ValueError(f"`{name}` must be (N, D) features, got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"`{name}` needs at least 2 rows to estimate a covariance, got {x.shape[0]}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"`{name}` contains NaN or Inf rows; drop them first")
    return x.to(torch.float64)


def frechet_distance_from_features(
    preds: Tensor,
    target: Tensor,
    *,
    eps: float = DEFAULT_EPS,
    eps_policy: EpsPolicy = "always",
    method: FDMethod = "eigh",
) -> Tensor:
    """Squared Fréchet distance between two feature sets (rows are samples), float64 moments.

    Args:
        preds: ``(N1, D)`` generated-set embeddings.
        target: ``(N2, D)`` reference-set embeddings.
        eps: see :func:`frechet_distance`.
        eps_policy: see :func:`frechet_distance`.
        method: see :func:`frechet_distance`.

    Returns:
        Scalar float64 tensor.
    """
    x, y = _check_features(preds, "preds"), _check_features(target, "target")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"`preds` has {x.shape[1]} features and `target` {y.shape[1]}; they must match")
    mu1, s1 = gaussian_from_sums(x.sum(0), x.T @ x, x.shape[0])
    mu2, s2 = gaussian_from_sums(y.sum(0), y.T @ y, y.shape[0])
    return frechet_distance(mu1, s1, mu2, s2, eps=eps, eps_policy=eps_policy, method=method)
