"""PaSSTKLDivergence: formula vs scipy, golden KL matrices from stored logits, windows, DDP, merge, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from tests.conftest import golden_path
from tests.ddp import run_ddp
from tests.test_fad import audio_batch, tiny_passt
from torchmetrics_av import PaSSTKLDivergence
from torchmetrics_av.functional import kl_divergence_from_logits
from torchmetrics_av.preprocessing import sliding_windows

KL_SOFTMAX_ATOL = 1e-5
KL_SIGMOID_ATOL = 1e-4


def test_softmax_kl_matches_scipy_entropy():
    g = torch.Generator().manual_seed(0)
    p, t = torch.randn(5, 527, generator=g) * 3, torch.randn(5, 527, generator=g) * 3
    got = kl_divergence_from_logits(p, t)
    pp = scipy.special.softmax(p.double().numpy(), axis=1)
    pt = scipy.special.softmax(t.double().numpy(), axis=1)
    expected = [scipy.stats.entropy(pt[i], pp[i]) for i in range(5)]  # KL(target || preds)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_sigmoid_variant_formula():
    g = torch.Generator().manual_seed(1)
    p, t = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    sp, st = scipy.special.expit(p.double().numpy()), scipy.special.expit(t.double().numpy())
    expected = (st * (np.log(st) - np.log(sp))).sum(1)  # no (1 - sigma) terms, as in both references
    np.testing.assert_allclose(kl_divergence_from_logits(p, t, "sigmoid").numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize("key", ["fastvideo", "avbench"])
def test_golden_kl_matrices_from_stored_logits(key):
    golden = torch.load(golden_path("passt") / "passt_golden.pt", weights_only=True)
    ref = golden[key]
    names = ref["kl_matrix_names"]
    logit_key = "kl_logits" if key == "fastvideo" else "logits"
    logits = torch.stack([ref["clips"][n][logit_key] for n in names])
    n = len(names)
    # entry [i, j] = KL(names[j] || names[i]): preds = row i, target = column j
    preds = logits.repeat_interleave(n, 0)
    target = logits.repeat(n, 1)
    soft = kl_divergence_from_logits(preds, target, "softmax").reshape(n, n)
    sig = kl_divergence_from_logits(preds, target, "sigmoid").reshape(n, n)
    torch.testing.assert_close(soft, ref["kl_matrix_softmax"], atol=KL_SOFTMAX_ATOL, rtol=0)
    torch.testing.assert_close(sig, ref["kl_matrix_sigmoid"], atol=KL_SIGMOID_ATOL, rtol=0)


@pytest.mark.parametrize(
    "seconds,expected",
    [
        (1.0, [(0, 32000, False)]),
        (1.5, [(0, 48000, False)]),
        (1.6, [(0, 51200, True)]),
        (5.0, [(0, 160000, True)]),
        (10.0, [(0, 320000, False)]),
        (12.5, [(0, 320000, False), (160000, 240000, True)]),
        (15.0, [(0, 320000, False), (160000, 320000, False)]),
        (20.0, [(0, 320000, False), (160000, 320000, False), (320000, 320000, False)]),
    ],
)
def test_sliding_windows_rule(seconds, expected):
    sr = 32000
    x = torch.arange(1, int(seconds * sr) + 1, dtype=torch.float32)
    windows = sliding_windows(x, sr)
    assert len(windows) == len(expected)
    for w, (start, valid, padded) in zip(windows, expected):
        assert w.numel() == (320000 if padded else valid)
        assert w[0] == start + 1 and int((w != 0).sum()) == valid


@pytest.fixture(scope="module")
def tiny():
    return tiny_passt()


def test_identical_pairs_give_zero_and_forward_returns_batch_mean(tiny):
    x = audio_batch(3, seed=1)
    kl = PaSSTKLDivergence(sample_rate=16000, backbone=tiny)
    assert float(kl(x, x)) == pytest.approx(0.0, abs=1e-12)
    y = audio_batch(2, seed=2)
    batch = kl(y, y.flip(0))
    assert float(batch) > 0
    total = kl.compute()
    assert float(total) == pytest.approx(float(batch) * 2 / 5, rel=1e-9)
    assert kl.details["n_samples"] == 5 and kl.details["kl_softmax"].shape == (5,)
    rows = kl.per_sample()
    assert sorted(rows) == ["ids", "kl_sigmoid", "kl_softmax"] and rows["ids"].tolist() == [-1] * 5
    assert float(rows["kl_softmax"].mean()) == pytest.approx(float(total), rel=1e-12)


def test_per_clip_rates_and_silence(tiny):
    x = audio_batch(2, seed=3)
    kl = PaSSTKLDivergence(backbone=tiny)
    assert kl([x[0], torch.zeros(800)], [x[1], x[0]], sample_rate=[16000, 8000], target_sample_rate=16000) is not None
    kl.compute()
    assert kl.details["n_skipped_silent"] == 1 and kl.details["n_samples"] == 1
    only_silent = PaSSTKLDivergence(sample_rate=16000, backbone=tiny)
    assert only_silent(torch.zeros(1, 800), x[:1], ids=[7]) is None
    with pytest.raises(ValueError, match=r"no scored samples \(1 silent"):
        only_silent.compute()
    assert only_silent.details["skipped_ids"].tolist() == [7]


def test_failed_update_leaves_the_state_untouched(tiny):
    x = audio_batch(2, seed=3)
    kl = PaSSTKLDivergence(sample_rate=16000, backbone=tiny)
    kl.update(x, x.flip(0), ids=[0, 1])
    before = kl.per_sample()
    calls = []
    hook = tiny.register_forward_hook(lambda *a: calls.append(1))
    try:
        for bad in (
            lambda: kl.update(x, [x[0], torch.full((800,), float("nan"))], ids=[2, 3]),  # bad target after good preds
            lambda: kl.update(x, x, ids=[2]),  # bad ids: checked before the model runs
            lambda: kl(x, x[:1], ids=[2, 3]),  # forward raises the same way
        ):
            with pytest.raises(ValueError):
                bad()
    finally:
        hook.remove()
    assert calls == []
    assert len(kl.sample_id) == len(kl.kl_softmax) == 1  # one appended batch, nothing from the failed ones
    after = kl.per_sample()
    assert torch.equal(after["ids"], before["ids"]) and torch.equal(after["kl_softmax"], before["kl_softmax"])


def test_deprecated_names_warn_and_still_work(tiny):
    x = audio_batch(2, seed=3)
    with pytest.warns(FutureWarning, match="audio_length"):
        old = PaSSTKLDivergence(sample_rate=16000, backbone=tiny, protocol="av-benchmark", audio_length=4.0)
    assert old.duration == 4.0 and old.audio_length == 4.0
    new = PaSSTKLDivergence(sample_rate=16000, backbone=tiny, protocol="av-benchmark", duration=4.0)
    old.update(x, x.flip(0))
    new.update(x, x.flip(0))
    assert torch.equal(old.compute(), new.compute())
    with pytest.warns(FutureWarning, match=r"details\['n_pairs'\] is deprecated"):
        assert old.details["n_pairs"] == old.details["n_samples"] == 2
    with pytest.warns(FutureWarning, match=r"details\['sample_id'\] is deprecated"):
        assert old.details["sample_id"].tolist() == old.details["ids"].tolist() == [-1, -1]
    with pytest.warns(FutureWarning, match="pair_kept"):
        assert old.details["pair_kept"].tolist() == [True, True]
    with pytest.raises(ValueError, match="`duration` applies to protocol='av-benchmark' only"):
        PaSSTKLDivergence(backbone=tiny, duration=4.0)
    with pytest.raises(ValueError, match="not both"), pytest.warns(FutureWarning):
        PaSSTKLDivergence(backbone=tiny, protocol="av-benchmark", duration=4.0, audio_length=4.0)


def test_bad_inputs(tiny):
    kl = PaSSTKLDivergence(sample_rate=16000, backbone=tiny)
    with pytest.raises(ValueError, match="paired"):
        kl.update(audio_batch(2), audio_batch(3))
    with pytest.raises(ValueError, match="`target` is an empty batch"):
        kl.update(audio_batch(1), [])
    with pytest.raises(ValueError, match="batch_size"):
        PaSSTKLDivergence(batch_size=0)
    with pytest.raises(ValueError, match=r"`preds\[1\]` lasts 0.1000 s; PaSST needs at least 0.1500 s"):
        kl.update([audio_batch(1)[0], torch.rand(1600) - 0.5], audio_batch(2))


def test_merge_state(tiny):
    x, y = audio_batch(5, seed=4), audio_batch(5, seed=5)
    full = PaSSTKLDivergence(sample_rate=16000, backbone=tiny)
    full.update(x, y)
    a, b = PaSSTKLDivergence(sample_rate=16000, backbone=tiny), PaSSTKLDivergence(sample_rate=16000, backbone=tiny)
    a.update(x[:2], y[:2])
    b.update(x[2:], y[2:])
    a.merge_state(b)
    torch.testing.assert_close(a.compute(), full.compute())
    # torchmetrics' merge_state concatenates the incoming metric's samples first: compare as multisets.
    torch.testing.assert_close(a.details["kl_softmax"].sort().values, full.details["kl_softmax"].sort().values)


def test_half_keeps_float64_states(tiny):
    kl = PaSSTKLDivergence(sample_rate=16000, backbone=tiny_passt())
    kl.update(audio_batch(2, seed=6), audio_batch(2, seed=7))
    before = kl.compute().clone()
    kl.to(torch.float16)
    assert kl.kl_softmax[0].dtype == torch.float64 and kl.kl_sigmoid[0].dtype == torch.float64
    kl._computed = None
    assert torch.equal(kl.compute(), before)


def _ddp_kl(rank: int, world: int) -> tuple[float, list[float]]:
    x, y = audio_batch(5, seed=8), audio_batch(5, seed=9)
    kl = PaSSTKLDivergence(sample_rate=16000, backbone=tiny_passt())
    if rank == 0:
        kl.update(x[:1], y[:1])
        kl.update(x[1:4], y[1:4])
    else:
        kl.update(x[4:], y[4:])
    value = float(kl.compute())
    return value, kl.details["kl_softmax"].tolist()


def _ddp_kl_idle(rank: int, world: int) -> tuple[float, list[float]]:
    x, y = audio_batch(3, seed=10), audio_batch(3, seed=11)
    kl = PaSSTKLDivergence(sample_rate=16000, backbone=tiny_passt())
    if rank == 1:
        kl.update(x, y)
    return float(kl.compute()), kl.details["kl_softmax"].tolist()


@pytest.mark.ddp
def test_ddp_equals_single_process():
    x, y = audio_batch(5, seed=8), audio_batch(5, seed=9)
    single = PaSSTKLDivergence(sample_rate=16000, backbone=tiny_passt())
    single.update(x, y)
    expected = float(single.compute())
    per_sample = single.details["kl_softmax"].tolist()
    for value, gathered in run_ddp(_ddp_kl, 2):
        assert value == pytest.approx(expected, rel=1e-9)
        assert gathered == pytest.approx(per_sample, rel=1e-9)  # rank 0's samples, then rank 1's
    x, y = audio_batch(3, seed=10), audio_batch(3, seed=11)
    single = PaSSTKLDivergence(sample_rate=16000, backbone=tiny_passt())
    single.update(x, y)
    for value, gathered in run_ddp(_ddp_kl_idle, 2):  # a rank without samples
        assert value == pytest.approx(float(single.compute()), rel=1e-9)
        assert len(gathered) == 3


def test_fd_and_kl_share_one_forward_per_window():
    from torchmetrics_av import FrechetAudioDistance

    net = tiny_passt()
    seen = []
    net.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    x, y = audio_batch(3, seconds=2.0, seed=12), audio_batch(3, seconds=2.0, seed=13)
    for protocol in ("fastvideo", "av-benchmark"):
        seen.clear()
        net.clear_cache()
        fd = FrechetAudioDistance(sample_rate=16000, backbone=net, protocol=protocol)
        kl = PaSSTKLDivergence(sample_rate=16000, backbone=net, protocol=protocol)
        fd.update(preds=x, target=y)
        kl.update(x, y)
        assert sum(seen) == 6, protocol  # 1.5-10 s clips: the KL window is the FD window under both protocols
        uncached = PaSSTKLDivergence(sample_rate=16000, backbone=tiny_passt(), protocol=protocol)
        uncached.backbone.cache_size = 0
        uncached.update(x, y)
        torch.testing.assert_close(kl.compute(), uncached.compute())
