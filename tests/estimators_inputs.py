"""Seeded recipes of the estimator goldens' inputs (tests/golden/estimators/README.md), checked by SHA-256.

The shared golden stores the inputs (4 MB); they were drawn with NumPy's PCG64 ``default_rng``, whose streams are
stable across NumPy versions, so the tests regenerate them here and compare the SHA-256 of the little-endian float32
bytes with the stored digests instead of carrying the arrays.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

# make_logits: AudioSet-sized class axis (527, as PaSST / PANNs) and 12 latent clusters of the golden recipe.
LOGIT_CLASSES = 527
LOGIT_CLUSTERS = 12


def sha256_f32(a: np.ndarray | torch.Tensor) -> str:
    """SHA-256 of the little-endian float32 bytes (the digest the golden stores)."""
    if isinstance(a, torch.Tensor):
        a = a.numpy()
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()


def make_logits(seed: int, n: int, scale: float) -> np.ndarray:
    """``(n, 527)`` float32 clustered logits, drawn in the golden's order."""
    rng = np.random.default_rng(seed)
    prior = rng.normal(-5.0, 1.5, LOGIT_CLASSES)
    centres = 0.5 * rng.normal(0.0, 1.0, (LOGIT_CLUSTERS, LOGIT_CLASSES))
    for m in range(LOGIT_CLUSTERS):
        idx = rng.choice(LOGIT_CLASSES, 3, replace=False)
        centres[m, idx] += rng.uniform(6.0, 10.0, 3)
    labels = rng.integers(0, LOGIT_CLUSTERS, n)
    return (scale * (prior + centres[labels] + rng.normal(0.0, 1.0, (n, LOGIT_CLASSES)))).astype(np.float32)


def make_embeddings(seed: int, d: int, n_ref: int, n_gen: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ref (n_ref, d), gen (n_gen, d))`` float32 low-rank-plus-noise embedding sets, drawn in the golden's order."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 1.0, (k, d)) / np.sqrt(k)
    scale = 0.5 + rng.uniform(0.0, 1.0, k)
    mu_ref = 0.3 * rng.normal(0.0, 1.0, d)
    noise = 0.2 + 0.3 * rng.uniform(0.0, 1.0, d)
    ref = mu_ref + (rng.normal(0.0, 1.0, (n_ref, k)) * scale) @ w + rng.normal(0.0, 1.0, (n_ref, d)) * noise
    mu_gen = mu_ref + 0.15 * rng.normal(0.0, 1.0, d)
    scale_g = scale * (0.8 + 0.4 * rng.uniform(0.0, 1.0, k))
    w_g = w + 0.3 * rng.normal(0.0, 1.0, (k, d)) / np.sqrt(k)
    gen = mu_gen + (rng.normal(0.0, 1.0, (n_gen, k)) * scale_g) @ w_g + rng.normal(0.0, 1.0, (n_gen, d)) * (1.1 * noise)
    return ref.astype(np.float32), gen.astype(np.float32)


def checked_logits(case: dict) -> torch.Tensor:
    """Regenerate a golden ISC case's logits and fail unless the SHA-256 matches the stored one."""
    logits = make_logits(case["seed"], case["n"], case["scale"])
    assert sha256_f32(logits) == case["sha256_logits"], "logit recipe does not reproduce the golden input"
    return torch.from_numpy(logits)


def checked_embeddings(spec: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Regenerate a golden embedding pair (ref, gen) and fail unless both SHA-256 digests match."""
    ref, gen = make_embeddings(spec["seed"], spec["d"], spec["n_ref"], spec["n_gen"], spec["k"])
    assert sha256_f32(ref) == spec["sha256_ref"], f"embedding recipe does not reproduce {spec['name']} ref"
    assert sha256_f32(gen) == spec["sha256_gen"], f"embedding recipe does not reproduce {spec['name']} gen"
    return torch.from_numpy(ref), torch.from_numpy(gen)
