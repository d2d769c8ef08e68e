"""DDP (gloo, 1/2/3 ranks): uneven shards, a rank with no data and DistributedSampler-style repeats give the
single-process values of KL-PANNS, IS (PANNs and PaSST), FD (PANNs, VGGish) and KAD, and bootstrap() is identical
on every rank."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.ddp import run_ddp
from tests.test_fad import audio_batch
from torchmetrics_av import FrechetAudioDistance, InceptionScore, KernelAudioDistance, KLDivergence
from torchmetrics_av.testing import tiny_backbone

# Generated clips (IS needs >= 10), reference clips, and the first N_PAIRS of each are the KL pairs.
N_GEN, N_REF, N_PAIRS = 12, 7, 7
# Lengths vary so VGGish gives 1-3 example rows per clip.
GEN_SECONDS = (1.0, 2.5, 1.2, 3.1, 1.0, 1.6, 2.2, 1.1, 1.0, 2.0, 1.4, 1.0)
REF_SECONDS = (2.0, 1.0, 1.3, 3.5, 1.0, 1.1, 2.4)
BOOT = {"num": 20, "seed": 5}
# Ranks run 1 thread, the single process 2, and batches differ (VGGish batches examples across clips): float32
# embeddings may differ in the last bits.
RTOL = 1e-6
ATOL = 1e-9
# KAD is 100 x a difference of kernel means: those last bits reach ~1e-6 absolute on resamples near 0.
KAD_ATOL = 1e-5


def _data() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    gen = [audio_batch(1, seconds=s, seed=100 + i)[0] for i, s in enumerate(GEN_SECONDS)]
    ref = [audio_batch(1, seconds=s, seed=200 + i)[0] for i, s in enumerate(REF_SECONDS)]
    return gen, ref


def _shards(n: int, rank: int, world: int) -> list[int]:
    """Uneven contiguous shards; with 3 ranks the last has nothing; the last non-empty rank repeats id 0."""
    if world == 1:
        return list(range(n))
    cuts = {2: [0, n - 3, n], 3: [0, 1, n, n]}[world]
    part = list(range(cuts[rank], cuts[rank + 1]))
    last = max(r for r in range(world) if cuts[r + 1] > cuts[r])
    return part + [0] if rank == last else part


def _metrics() -> dict[str, Any]:
    panns, vggish = tiny_backbone("panns"), tiny_backbone("vggish")
    passt = tiny_backbone("passt", embed_dim=16)
    common = {"sample_rate": 16000, "protocol": "av-benchmark"}
    return {
        "KL-PANNS": KLDivergence(backbone=panns, batch_size=1, **common),
        "ISC-PANNS": InceptionScore(backbone=panns, batch_size=1, **common),
        "ISC-PASST": InceptionScore(backbone=passt, batch_size=1, **common),
        "FD-PANN": FrechetAudioDistance(backbone=panns, batch_size=1, keep_rows=True, **common),
        "FD-VGG": FrechetAudioDistance(backbone=vggish, keep_rows=True, **common),
        # float64 kernel sums: kadtk's float32 norm expansion is ~1e-5 noisy, which would hide a plumbing error.
        "KAD-VGG": KernelAudioDistance(backbone=vggish, kernel_dtype=torch.float64, **common),
    }


def _run(rank: int, world: int) -> dict[str, Any]:
    gen, ref = _data()
    metrics = _metrics()
    g, r, pairs = _shards(N_GEN, rank, world), _shards(N_REF, rank, world), _shards(N_PAIRS, rank, world)
    for name, metric in metrics.items():
        if name.startswith("KL") and pairs:
            metric.update([gen[i] for i in pairs], [ref[i] for i in pairs], ids=pairs)
        elif name.startswith("ISC") and g:
            metric.update([gen[i] for i in g], ids=g)
        elif name.startswith(("FD", "KAD")):
            if g:
                metric.update(preds=[gen[i] for i in g], ids=g)
            if r:
                metric.update(target=[ref[i] for i in r], target_ids=r)
    out = {}
    for name, metric in metrics.items():
        out[name] = float(metric.compute())
        out[f"{name} bootstrap"] = {k: float(v) for k, v in metric.bootstrap(**BOOT).items()}
    out["ISC-PANNS std"] = float(metrics["ISC-PANNS"].details["inception_score_std"])
    out["FD-VGG n_preds"] = metrics["FD-VGG"].details["n_preds"]
    return out


@pytest.mark.ddp
def test_ddp_ranks_equal_the_single_process():
    single = _run(0, 1)
    # Every 0.96 s example of the 12 clips is a row: 96-frame examples of 400-sample frames every 160 samples.
    examples = [1 + ((int(16000 * sec) - 400) // 160 + 1 - 96) // 96 for sec in GEN_SECONDS]
    assert single["FD-VGG n_preds"] == sum(examples) == 17
    for world in (2, 3):
        results = run_ddp(_run, world)
        for rank, got in enumerate(results):
            assert got == results[0], (world, rank)  # every rank reports the same numbers, bootstrap included
        for key, value in single.items():
            atol = KAD_ATOL if key.startswith("KAD") else ATOL
            if isinstance(value, dict):
                for stat, v in value.items():
                    assert results[0][key][stat] == pytest.approx(v, rel=RTOL, abs=atol), (world, key, stat)
            else:
                assert results[0][key] == pytest.approx(value, rel=RTOL, abs=atol), (world, key)
