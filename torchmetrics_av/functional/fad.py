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
benchmarks/bench_fad.py and benchmarks/bench_fd_compute.py for the speed ratios.

From feature rows, :func:`frechet_distance_from_features` also has ``method="lowrank"``, exact for any N and the
fast route when N < D: with centred rows ``X1 (n1×D)``, ``X2 (n2×D)`` the non-zero eigenvalues of ``S1 S2`` are the
squared singular values of ``X1 X2ᵀ / √((n1−1)(n2−1))``, so ``tr √(S1 S2) = ‖X1 X2ᵀ‖_* / √((n1−1)(n2−1))``: one
``n1×n2`` SVD, and no round-off null space (the ``D − rank`` eigenvalues that are exactly 0 in theory never appear).
Every route that takes square roots of the ``D`` eigenvalues of ``S1 S2`` (the references' ``sqrtm`` / ``eig``,
torchmetrics' ``eigvals``, ``method="eigh"``) also adds ``√`` of the ``D − rank`` round-off eigenvalues (±1e-13
each), so with a singular covariance it sits *below* the exact FD. Measured, reference minus exact (``"lowrank"``,
itself checked against 40-digit mpmath to 1e-14):

=====================================  ============  ==========  ==========  =============  ==========
set (D, N gen / ref)                   reference     ref − exact relative    eigvals (tm)   ``"eigh"``
=====================================  ============  ==========  ==========  =============  ==========
PaSST ``fd_formula.rank_deficient``    av-benchmark  −3.9e-5     −5.5e-8     −4.1e-5        −2.0e-5
(768, 100 / 120)                       (scipy sqrtm)
estimators ``e128`` (128, 50 / 50)     fadtk (eig)   −2.1e-5     −3.0e-7     −2.5e-5        −1.2e-5
``e128_small`` (128, 100 / 300)        fadtk         −5.3e-6     −1.1e-7     −7.3e-6        −4.2e-6
``e768`` (768, 150 / 200)              fadtk         −2.8e-4     −9.4e-7     −2.8e-4        −1.8e-4
``e2048`` (2048, 60 / 60)              fadtk         −3.0e-3     −2.2e-6     −3.1e-3        −2.4e-3
``e128_big`` (128, 800 / 600, full)    fadtk         −1.4e-7     −6.2e-9     +1e-12         +6e-13
=====================================  ============  ==========  ==========  =============  ==========

(fadtk and av-benchmark also round the means to float32: ~1e-7 of the mean term, the whole gap in the full-rank
row.) All of these lie inside the goldens' reference tolerances (fadtk rtol 5e-6), but they are null-space noise,
not signal.

``method="auto"`` takes ``"lowrank"`` when no eps is added (``eps_policy`` ``"never"`` / ``"on_failure"``: the
exact route is always finite, so the retry never fires), ``min(n1, n2) < D`` (a covariance is singular) and
``n1·n2 ≤ D²`` (so the ``n1×n2`` product and its SVD cost less than the ``D×D`` route); else ``"eigh"``.

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
# Methods of frechet_distance_from_features (rows known): also the exact low-rank route and the automatic choice.
FeatureFDMethod = Literal["eigh", "scipy", "lowrank", "auto"]
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
        m = _congruence_lower(factor, sigma2)
    else:
        w, v = torch.linalg.eigh(s1)
        root1 = (v * w.clamp(min=0).sqrt()) @ v.T
        m = root1 @ sigma2 @ root1
    ev = torch.linalg.eigvalsh((m + m.T) / 2)
    return ev.clamp(min=0).sqrt().sum()


def _congruence_lower(factor: Tensor, sigma: Tensor) -> Tensor:
    # Lᵀ S L with L lower-triangular. On CPU float64 two BLAS trmm calls (D³ flops each) replace two dense GEMMs
    # (2·D³ each); the result agrees with the dense product to round-off (~1e-15 relative).
    cpu64 = factor.device.type == "cpu" and factor.dtype == torch.float64 == sigma.dtype
    if cpu64 and not (factor.requires_grad or sigma.requires_grad):
        from scipy.linalg.blas import dtrmm

        sl = dtrmm(1.0, factor.numpy(), sigma.numpy(), side=1, lower=1)
        return torch.from_numpy(dtrmm(1.0, factor.numpy(), sl, side=0, lower=1, trans_a=1, overwrite_b=1))
    return factor.T @ sigma @ factor


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


class _Rows:
    """float64 feature rows with their moments computed on first use (reused across FD∞ / bootstrap draws)."""

    def __init__(self, x: Tensor) -> None:
        self.x = x
        self._moments: tuple[Tensor, Tensor] | None = None
        self._centred: tuple[Tensor, Tensor] | None = None

    @property
    def n(self) -> int:
        return self.x.shape[0]

    def moments(self) -> tuple[Tensor, Tensor]:
        # Uncentred float64 sums, exactly what the streaming metric keeps (gaussian_from_sums).
        if self._moments is None:
            self._moments = gaussian_from_sums(self.x.sum(0), self.x.T @ self.x, self.n)
        return self._moments

    def centred(self) -> tuple[Tensor, Tensor]:
        if self._centred is None:
            mu = self.x.mean(0)
            self._centred = (mu, self.x - mu)
        return self._centred


def _resolve_method(method: str, eps_policy: str, n1: int, n2: int, d: int) -> str:
    if method not in ("eigh", "scipy", "lowrank", "auto"):
        raise ValueError(f"`method` must be 'eigh', 'scipy', 'lowrank' or 'auto', got {method!r}")
    if method == "lowrank" and eps_policy == "always":
        raise ValueError(
            "method='lowrank' is the exact trace of the unregularised covariances; with eps_policy='always' "
            "(eps·I added) use method='eigh', or eps_policy='never'/'on_failure'"
        )
    if method == "auto":
        low = eps_policy != "always" and min(n1, n2) < d and n1 * n2 <= d * d
        return "lowrank" if low else "eigh"
    return method


def _fd_lowrank(a: _Rows, b: _Rows) -> Tensor:
    mu1, x1 = a.centred()
    mu2, x2 = b.centred()
    diff = mu1 - mu2
    norm = ((a.n - 1.0) * (b.n - 1.0)) ** 0.5
    tr_covmean = torch.linalg.svdvals(x1 @ x2.T).sum() / norm
    traces = x1.square().sum() / (a.n - 1.0) + x2.square().sum() / (b.n - 1.0)
    return diff.dot(diff) + traces - 2.0 * tr_covmean


def _fd_rows(a: _Rows, b: _Rows, *, eps: float, eps_policy: EpsPolicy, method: str) -> Tensor:
    if eps_policy not in ("always", "on_failure", "never"):
        raise ValueError(f"`eps_policy` must be 'always', 'on_failure' or 'never', got {eps_policy!r}")
    route = _resolve_method(method, eps_policy, a.n, b.n, a.x.shape[1])
    if route == "lowrank":
        return _fd_lowrank(a, b)
    return frechet_distance(*a.moments(), *b.moments(), eps=eps, eps_policy=eps_policy, method=route)


def frechet_distance_from_features(
    preds: Tensor,
    target: Tensor,
    *,
    eps: float = DEFAULT_EPS,
    eps_policy: EpsPolicy = "always",
    method: FeatureFDMethod = "eigh",
) -> Tensor:
    """Squared Fréchet distance between two feature sets (rows are samples), float64 moments.

    Args:
        preds: ``(N1, D)`` generated-set embeddings.
        target: ``(N2, D)`` reference-set embeddings.
        eps: see :func:`frechet_distance`.
        eps_policy: see :func:`frechet_distance`.
        method: ``"eigh"`` / ``"scipy"`` (see :func:`frechet_distance`), ``"lowrank"`` (the exact ``n1×n2`` SVD
            route of the module docstring; not with ``eps_policy="always"``) or ``"auto"`` (``"lowrank"`` where it is
            exact and cheaper, else ``"eigh"``).

    Returns:
        Scalar float64 tensor.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(50, 300, generator=g), torch.randn(40, 300, generator=g)  # N < D: singular
        >>> a = frechet_distance_from_features(x, y, eps_policy="never", method="lowrank")
        >>> b = frechet_distance_from_features(x, y, eps_policy="never", method="scipy")
        >>> bool(abs(a - b) / a < 1e-6)
        True
    """
    x, y = _check_features(preds, "preds"), _check_features(target, "target")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"`preds` has {x.shape[1]} features and `target` {y.shape[1]}; they must match")
    return _fd_rows(_Rows(x), _Rows(y), eps=eps, eps_policy=eps_policy, method=method)
