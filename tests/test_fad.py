"""FrechetAudioDistance: formula golden, eigen vs scipy, streaming state, DDP, merge, state_dict, dtype, bad input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.linalg
import torch

from tests.conftest import golden_path
from tests.ddp import run_ddp
from torchmetrics_av import FrechetAudioDistance
from torchmetrics_av.backbones import PaSST
from torchmetrics_av.functional import frechet_distance, frechet_distance_from_features, gaussian_from_sums
from torchmetrics_av.testing import tiny_backbone

FORMULA_ATOL = 2e-5  # README §7: vs the references' own FD on the regenerated sets
STREAM_ATOL = 1e-6  # README §7: float64 streaming moments vs stream64.*
# The formula golden accumulated its float64 streaming sums in 256-row chunks (README §6).
STREAM_CHUNK = 256
TINY = dict(embed_dim=16, depth=1, num_heads=2)


def tiny_passt(seed: int = 0) -> PaSST:
    return tiny_backbone("passt", seed=seed, **TINY)


def audio_batch(n: int, seconds: float = 0.5, sr: int = 16000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, int(seconds * sr), generator=g) - 0.5) * torch.linspace(0.2, 1.0, n).unsqueeze(1)


# ---------------------------------------------------------------------------------------------------------------------
# formula-level golden (README §6)


@pytest.fixture(scope="module")
def formula():
    return torch.load(golden_path("passt") / "passt_golden.pt", weights_only=True)["fd_formula"]


def _make_set(formula, n: int, seed: int, params: dict) -> torch.Tensor:
    d, k = formula["D"], formula["K"]
    z = torch.randn((n, d + k), generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    zd = z[:, :d]
    zr = torch.roll(zd, shifts=-1, dims=1)
    f = z[:, d:][:, torch.arange(d) % k]
    return ((params["a"] * zd + params["b"] * zr) + params["c"] * f) + params["mu"]


def _stream_moments(x: torch.Tensor):
    s1 = torch.zeros(x.shape[1], dtype=torch.float64)
    s2 = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    for start in range(0, x.shape[0], STREAM_CHUNK):
        c = x[start : start + STREAM_CHUNK].double()
        s1 += c.sum(0)
        s2 += c.T @ c
    return gaussian_from_sums(s1, s2, x.shape[0])


@pytest.fixture(scope="module")
def formula_cases(formula):
    out = {}
    for name, case in formula["cases"].items():
        x = _make_set(formula, case["n_gen"], case["seed_gen"], formula["params_gen"])
        y = _make_set(formula, case["n_ref"], case["seed_ref"], formula["params_ref"])
        out[name] = (case, x, y, _stream_moments(x), _stream_moments(y))
    return out


def test_formula_sets_regenerate_exactly(formula_cases):
    for case, x, y, *_ in formula_cases.values():
        assert hashlib.sha256(x.numpy().tobytes()).hexdigest() == case["sha256_gen"]
        assert hashlib.sha256(y.numpy().tobytes()).hexdigest() == case["sha256_ref"]
        torch.testing.assert_close(x.double().sum(0), case["colsum64_gen"], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("method", ["eigh", "scipy"])
@pytest.mark.parametrize("case_name", ["full", "near_singular", "rank_deficient"])
def test_formula_fastvideo_eps_always(formula_cases, case_name, method):
    case, _, _, (m1, s1), (m2, s2) = formula_cases[case_name]
    value = float(frechet_distance(m1, s1, m2, s2, eps_policy="always", method=method))
    assert value == pytest.approx(case["fastvideo"], abs=FORMULA_ATOL)
    assert value == pytest.approx(case["stream64"]["fd_eps1e-6"], abs=STREAM_ATOL)


@pytest.mark.parametrize("method", ["eigh", "scipy"])
@pytest.mark.parametrize("case_name", ["full", "near_singular", "rank_deficient"])
def test_formula_avbench_eps_on_failure(formula_cases, case_name, method):
    case, _, _, (m1, s1), (m2, s2) = formula_cases[case_name]
    value = float(frechet_distance(m1, s1, m2, s2, eps_policy="on_failure", method=method))
    assert value == pytest.approx(case["avbench"], abs=FORMULA_ATOL)
    if case_name != "rank_deficient":
        # With N < D and no eps, sqrt(round-off eigenvalues) of the null space shift the trace by ~1e-5 in any
        # implementation (scipy on our own float64 moments: -3.0e-6 from stream64; eigh: +1.6e-5), so only the
        # README's reference tolerance above applies there.
        assert value == pytest.approx(case["stream64"]["fd_noeps"], abs=STREAM_ATOL)


@pytest.mark.parametrize("case_name", ["full", "near_singular", "rank_deficient"])
@pytest.mark.parametrize("policy", ["always", "on_failure"])
def test_eigh_agrees_with_scipy(formula_cases, case_name, policy):
    _, _, _, (m1, s1), (m2, s2) = formula_cases[case_name]
    a = float(frechet_distance(m1, s1, m2, s2, eps_policy=policy, method="eigh"))
    b = float(frechet_distance(m1, s1, m2, s2, eps_policy=policy, method="scipy"))
    assert a == pytest.approx(b, rel=1e-6)


def test_fd_symmetric_in_arguments(formula_cases):
    _, _, _, (m1, s1), (m2, s2) = formula_cases["full"]
    assert float(frechet_distance(m1, s1, m2, s2)) == pytest.approx(float(frechet_distance(m2, s2, m1, s1)), rel=1e-12)


def test_functional_against_numpy_reference():
    """Independent formula: numpy/scipy on a small full-rank problem."""
    g = torch.Generator().manual_seed(3)
    x, y = (
        torch.randn(300, 6, generator=g, dtype=torch.float64),
        torch.randn(200, 6, generator=g, dtype=torch.float64) * 1.5 + 0.3,
    )
    xn, yn = x.numpy(), y.numpy()
    s1, s2 = np.cov(xn, rowvar=False), np.cov(yn, rowvar=False)
    d = xn.mean(0) - yn.mean(0)
    expected = d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    for method in ("eigh", "scipy"):
        assert float(frechet_distance_from_features(x, y, eps_policy="never", method=method)) == pytest.approx(
            expected, rel=1e-10
        )


def test_functional_errors():
    with pytest.raises(ValueError, match="preds"):
        frechet_distance_from_features(torch.zeros(1, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="target.*NaN"):
        frechet_distance_from_features(torch.zeros(4, 3), torch.full((4, 3), float("nan")))
    with pytest.raises(ValueError, match="features"):
        frechet_distance_from_features(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="method"):
        frechet_distance(torch.zeros(2), torch.eye(2), torch.zeros(2), torch.eye(2), method="svd")


# ---------------------------------------------------------------------------------------------------------------------
# metric with a tiny PaSST


@pytest.fixture(scope="module")
def tiny():
    return tiny_passt()


def test_metric_matches_functional_on_its_own_embeddings(tiny):
    preds, target = audio_batch(5, seed=1), audio_batch(4, seed=2)
    fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny, batch_size=2)
    fd.update(preds=preds[:2], target=target)
    fd.update(preds=preds[2:])
    from torchmetrics_av.backbones.passt import passt_windows

    def embed(batch):
        w = [passt_windows(c.unsqueeze(0), 16000, "fastvideo", "fd")[0] for c in batch]
        return tiny.embed(w)[0]

    expected = frechet_distance_from_features(embed(preds), embed(target), eps_policy="always")
    torch.testing.assert_close(fd.compute(), expected, rtol=1e-9, atol=1e-9)
    assert fd.details["n_preds"] == 5 and fd.details["n_target"] == 4


def test_identical_sets_give_zero(tiny):
    x = audio_batch(4, seed=5)
    fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    fd.update(preds=x, target=x)
    assert abs(float(fd.compute())) < 1e-6


def test_batch_composition_does_not_matter(tiny):
    x = audio_batch(6, seed=7)
    a = FrechetAudioDistance(sample_rate=16000, backbone=tiny, batch_size=6)
    b = FrechetAudioDistance(sample_rate=16000, backbone=tiny, batch_size=1)
    a.update(preds=x, target=x.flip(0) * 0.5)
    for i in range(6):
        b.update(preds=x[i : i + 1])
        b.update(target=x.flip(0)[i : i + 1] * 0.5)
    torch.testing.assert_close(a.compute(), b.compute(), rtol=1e-5, atol=1e-6)


def test_silent_and_nonfinite_are_counted(tiny):
    x = audio_batch(3, seed=8)
    silent = torch.zeros(1, 8000)
    fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    fd.update(preds=torch.cat([x, silent]), target=x)
    fd.compute()
    assert fd.details["n_preds_skipped_silent"] == 1 and fd.details["n_preds"] == 3
    av = FrechetAudioDistance(sample_rate=16000, backbone=tiny, protocol="av-benchmark")
    av.update(preds=torch.cat([x, silent]), target=x)
    av.compute()  # av-benchmark does not peak-normalise: silence is a valid (finite) input there
    assert av.details["n_preds"] == 4 and av.details["n_preds_skipped_silent"] == 0


def test_forward_returns_the_batch_fd_or_none(tiny):
    x = audio_batch(3, seed=9)
    fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    assert fd(preds=x[:1]) is None  # fewer than 2 embeddings per side: no batch FD, and the state is intact
    batch = fd(preds=x[1:], target=x)
    alone = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    alone.update(preds=x[1:], target=x)
    torch.testing.assert_close(batch, alone.compute(), rtol=1e-12, atol=1e-12)  # this batch alone
    fd.compute()
    assert fd.details["n_preds"] == 3 and fd.details["n_target"] == 3
    with pytest.raises(ValueError, match="NaN"):
        fd(preds=x, target=torch.full((2, 800), float("nan")))
    fd.compute()
    assert fd.details["n_preds"] == 3 and fd.details["n_target"] == 3  # the failed batch added nothing


def test_reset_real_features(tiny):
    x = audio_batch(3, seed=10)
    keep = FrechetAudioDistance(sample_rate=16000, backbone=tiny, reset_real_features=False)
    keep.update(preds=x, target=x)
    keep.reset()
    keep.update(preds=x * 0.5)
    keep.compute()
    assert keep.details["n_target"] == 3 and keep.details["n_preds"] == 3
    clear = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    clear.update(preds=x, target=x)
    clear.reset()
    clear.update(preds=x)
    with pytest.raises(ValueError, match="target"):
        clear.compute()


def test_reference_stats_file_roundtrip(tiny, tmp_path):
    x, y = audio_batch(4, seed=11), audio_batch(4, seed=12)
    ref = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    ref.update(target=y)
    ref.save_reference_stats(tmp_path / "stats.pt")
    direct = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    direct.update(preds=x, target=y)
    loaded = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    loaded.load_reference_stats(tmp_path / "stats.pt")
    loaded.update(preds=x)
    torch.testing.assert_close(loaded.compute(), direct.compute(), rtol=1e-12, atol=1e-12)
    assert loaded.details["target_source"] == "stats"
    loaded.reset()  # loaded statistics survive reset()
    loaded.update(preds=x)
    torch.testing.assert_close(loaded.compute(), direct.compute(), rtol=1e-12, atol=1e-12)
    # state_dict carries the loaded statistics
    restored = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    restored.load_state_dict(loaded.state_dict())
    restored.update(preds=x)
    torch.testing.assert_close(restored.compute(), direct.compute(), rtol=1e-12, atol=1e-12)
    assert not any(k.startswith("backbone") or ".model." in k for k in loaded.state_dict())
    loaded.clear_reference_stats()
    with pytest.raises(ValueError, match="target"):
        loaded.compute()
    other = FrechetAudioDistance(sample_rate=16000, backbone=tiny, protocol="av-benchmark")
    with pytest.raises(ValueError, match="protocol"):
        other.load_reference_stats(tmp_path / "stats.pt")
    other_ckpt = FrechetAudioDistance(sample_rate=16000, backbone=tiny_passt(seed=1))
    other_ckpt.backbone.checkpoint_id = "passt_s_swa_p16_128_ap476@sha256:0123456789abcdef"
    with pytest.raises(ValueError, match="checkpoint"):
        other_ckpt.load_reference_stats(tmp_path / "stats.pt")


def test_merge_state(tiny):
    x, y = audio_batch(6, seed=13), audio_batch(5, seed=14)
    full = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    full.update(preds=x, target=y)
    a = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    b = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    a.update(preds=x[:2], target=y[:4])
    b.update(preds=x[2:], target=y[4:])
    a.merge_state(b)
    torch.testing.assert_close(a.compute(), full.compute(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cast", ["half", "bfloat16_to", "double"])
def test_dtype_casts_keep_float64_states(tiny, cast):
    fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny_passt())
    x = audio_batch(3, seed=15)
    fd.update(preds=x, target=x * 0.7)
    before = fd.preds_outer.clone()
    if cast == "half":
        fd.half()
    elif cast == "bfloat16_to":
        fd.to(torch.bfloat16)
    else:
        fd.double()
    for name in ("preds_sum", "preds_outer", "target_n", "loaded_target_outer"):
        assert getattr(fd, name).dtype == torch.float64, name
    assert torch.equal(fd.preds_outer, before)


def test_bad_inputs(tiny):
    fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    with pytest.raises(ValueError, match="preds.*target|give"):
        fd.update()
    with pytest.raises(ValueError, match="`preds` is an empty batch"):
        fd.update(preds=[])
    with pytest.raises(ValueError, match="`preds`"):
        fd.update(preds=torch.zeros(16000))
    with pytest.raises(ValueError, match=r"`target\[1\]` contains NaN"):
        fd.update(target=[torch.zeros(100), torch.full((100,), float("nan"))])
    with pytest.raises(ValueError, match="channel-last"):
        fd.update(preds=torch.zeros(2, 16000, 2))
    with pytest.raises(ValueError, match="dtype"):
        fd.update(preds=torch.zeros(2, 100, dtype=torch.int32))
    with pytest.raises(ValueError, match="sample_rate.*entries"):
        fd.update(preds=torch.zeros(2, 100), sample_rate=[16000])
    with pytest.raises(ValueError, match="`sample_rate` is required"):
        FrechetAudioDistance(backbone=tiny).update(preds=torch.zeros(2, 100))
    with pytest.raises(ValueError, match="protocol"):
        FrechetAudioDistance(protocol="fadtk")
    with pytest.raises(ValueError, match="method"):
        FrechetAudioDistance(method="svd")
    with pytest.raises(ValueError, match="preds \\(generated\\) has 0"):
        fd.compute()


def test_int16_input_equals_scaled_float(tiny):
    codes = (audio_batch(3, seed=16) * 32767).round().to(torch.int16)
    a = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    b = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    a.update(preds=codes, target=codes.flip(0))
    b.update(preds=codes.float() / 32768, target=codes.flip(0).float() / 32768)
    torch.testing.assert_close(a.compute(), b.compute())


# ---------------------------------------------------------------------------------------------------------------------
# DDP


def _ddp_fd(rank: int, world: int, protocol: str) -> float:
    x, y = audio_batch(7, seed=20), audio_batch(5, seed=21)
    fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny_passt(), protocol=protocol)
    # Uneven split: rank 0 gets 5 generated clips in two calls and all references; rank 1 gets 2 and no references.
    if rank == 0:
        fd.update(preds=x[:3])
        fd.update(preds=x[3:5], target=y)
    else:
        fd.update(preds=x[5:])
    value = float(fd.compute())
    assert fd.details["n_preds"] == 7 and fd.details["n_target"] == 5
    return value


def _ddp_fd_idle_rank(rank: int, world: int) -> float:
    x, y = audio_batch(4, seed=22), audio_batch(4, seed=23)
    fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny_passt())
    if rank == 0:
        fd.update(preds=x, target=y)
    return float(fd.compute())


@pytest.mark.ddp
@pytest.mark.parametrize("protocol", ["fastvideo", "av-benchmark"])
def test_ddp_equals_single_process(protocol):
    x, y = audio_batch(7, seed=20), audio_batch(5, seed=21)
    single = FrechetAudioDistance(sample_rate=16000, backbone=tiny_passt(), protocol=protocol)
    single.update(preds=x, target=y)
    expected = float(single.compute())
    results = run_ddp(_ddp_fd, 2, protocol)
    assert results[0] == pytest.approx(expected, rel=1e-6)
    assert results[1] == pytest.approx(expected, rel=1e-6)


@pytest.mark.ddp
def test_ddp_rank_without_data():
    x, y = audio_batch(4, seed=22), audio_batch(4, seed=23)
    single = FrechetAudioDistance(sample_rate=16000, backbone=tiny_passt())
    single.update(preds=x, target=y)
    results = run_ddp(_ddp_fd_idle_rank, 2)
    assert results == pytest.approx([float(single.compute())] * 2, rel=1e-9)


def _sampler_run(rank: int, world: int, n: int, seed: int) -> tuple[float, float, list[float]]:
    """FD + KL over a dataset of n clips split by a real DistributedSampler (pads ranks with repeats)."""
    from torch.utils.data import DistributedSampler

    from torchmetrics_av import PaSSTKLDivergence

    x, y = audio_batch(n, seed=seed), audio_batch(n, seed=seed + 1)
    net = tiny_passt()
    fd = FrechetAudioDistance(sample_rate=16000, backbone=net)
    kl = PaSSTKLDivergence(sample_rate=16000, backbone=net)
    idx = list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False))
    for start in range(0, len(idx), 2):
        b = torch.tensor(idx[start : start + 2])
        fd.update(preds=x[b], target=y[b], ids=b, target_ids=b)
        kl.update(x[b], y[b], ids=b)
    return float(fd.compute()), float(kl.compute()), kl.details["kl_softmax"].tolist()


@pytest.mark.ddp
def test_sampler_duplicates_dropped_with_ids_1_2_3_processes():
    n = 7  # not divisible by 2 or 3: DistributedSampler repeats samples to even out the ranks
    single = _sampler_run(0, 1, n, 30)
    for world in (2, 3):
        for fd_value, kl_value, per_pair in run_ddp(_sampler_run, world, n, 30):
            assert fd_value == pytest.approx(single[0], rel=1e-9)
            assert kl_value == pytest.approx(single[1], rel=1e-6)
            # Sorted by id: the same order at any world size. Values move at float32 round-off only, because a clip's
            # forward is batched with different neighbours on different world sizes.
            assert per_pair == pytest.approx(single[2], rel=1e-5, abs=1e-10)


def test_ids_without_repeats_equal_no_ids(tiny):
    x, y = audio_batch(4, seed=31), audio_batch(4, seed=32)
    a = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    b = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    a.update(preds=x, target=y)
    b.update(preds=x[:2], target=y[:2], ids=[0, 1], target_ids=[0, 1])
    b.update(preds=x[2:], target=y[2:])
    b.update(preds=x[:1], ids=[0])  # a repeat: dropped
    torch.testing.assert_close(b.compute(), a.compute(), rtol=1e-9, atol=1e-9)
    assert b.details["n_preds_duplicates_dropped"] == 1
    rows = b.per_sample()  # only the clips given with ids are rows; the others are in the float64 sums
    assert rows["preds_ids"].tolist() == [0, 1] and rows["target_ids"].tolist() == [0, 1]
    assert rows["preds_embeddings"].shape == (2, TINY["embed_dim"]) and rows["preds_embeddings"].dtype == torch.float64
    alone = FrechetAudioDistance(sample_rate=16000, backbone=tiny)
    alone.update(preds=x[:2], target=y[:2], ids=[0, 1], target_ids=[0, 1])
    assert torch.equal(alone.per_sample()["target_embeddings"], rows["target_embeddings"])
    with pytest.raises(ValueError, match="ids"):
        b.update(preds=x[:2], ids=[0])
    with pytest.raises(ValueError, match="non-negative"):
        b.update(preds=x[:2], ids=[-1, 3])
    keep = FrechetAudioDistance(sample_rate=16000, backbone=tiny, reset_real_features=False)
    keep.update(preds=x, target=y, target_ids=[0, 1, 2, 3])
    keep.reset()
    keep.update(preds=x)
    torch.testing.assert_close(keep.compute(), a.compute(), rtol=1e-9, atol=1e-9)
