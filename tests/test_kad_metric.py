"""KernelAudioDistance (the metric): rows per clip or per VGGish example, kadtk's value, de-duplication by clip,
forward, reset, KAD∞ and errors. The estimator itself is checked against kadtk in tests/test_kad.py."""

from __future__ import annotations

import pytest
import torch

from tests.test_fad import audio_batch
from tests.test_fad_backbones import row_at_a_time_vggish
from tests.test_metric_bootstrap import _numpy_kad
from torchmetrics_av import KernelAudioDistance
from torchmetrics_av.backbones.passt import passt_windows
from torchmetrics_av.functional import kad_infinity, kernel_audio_distance
from torchmetrics_av.testing import tiny_backbone

# float64 kernel sums on both sides; the metric's median bandwidth is float32 (kadtk).
KAD_RTOL = 1e-6


@pytest.fixture(scope="module")
def vggish():
    return row_at_a_time_vggish()  # rows independent of their batch mates on any CPU (see its docstring)


@pytest.fixture(scope="module")
def panns():
    return tiny_backbone("panns")


def _clips(seconds: tuple[float, ...], seed: int) -> list[torch.Tensor]:
    return [audio_batch(1, seconds=s, seed=seed + i)[0] for i, s in enumerate(seconds)]


def test_vggish_rows_are_every_example_of_every_clip(vggish):
    gen, ref = _clips((1.0, 2.5, 3.2, 1.2), 1), _clips((2.0, 1.0, 4.1), 10)
    kad = KernelAudioDistance(sample_rate=16000, protocol="av-benchmark", backbone=vggish, kernel_dtype=torch.float64)
    kad.update(preds=gen[:2], target=ref)
    kad.update(preds=gen[2:])
    with torch.no_grad():
        p = torch.cat(vggish.embed([vggish.prepare(c, 16000) for c in gen])).double()
        t = torch.cat(vggish.embed([vggish.prepare(c, 16000) for c in ref])).double()
    value = kad.compute()
    assert (kad.details["n_preds"], kad.details["n_target"]) == (p.shape[0], t.shape[0]) == (7, 7)
    assert float(value) == pytest.approx(_numpy_kad(t.numpy(), p.numpy()), rel=KAD_RTOL)
    assert kad.per_sample()["target_example"].tolist() == [0, 1, 0, 0, 1, 2, 3]
    assert kad.details["bandwidth"] == pytest.approx(float(torch.pdist(p.float()).median()), rel=1e-6)


def test_float32_default_is_the_functional_on_the_synced_rows(panns):
    kad = KernelAudioDistance(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    kad.update(preds=audio_batch(6, seed=2), target=audio_batch(5, seed=3))
    rows = kad.per_sample()
    assert rows["preds_embeddings"].dtype == torch.float64 and rows["preds_embeddings"].shape == (6, 32)
    assert torch.equal(kad.compute(), kernel_audio_distance(rows["preds_embeddings"], rows["target_embeddings"]))
    fixed = KernelAudioDistance(sample_rate=16000, protocol="av-benchmark", backbone=panns, bandwidth=2.0)
    fixed.update(preds=audio_batch(6, seed=2), target=audio_batch(5, seed=3))
    expected = kernel_audio_distance(rows["preds_embeddings"], rows["target_embeddings"], bandwidth=2.0)
    assert torch.equal(fixed.compute(), expected) and fixed.details["bandwidth"] == 2.0
    other = KernelAudioDistance(
        sample_rate=16000, protocol="av-benchmark", backbone=panns, bandwidth_from="target", kernel="imq", scale=1.0
    )
    other.update(preds=audio_batch(6, seed=2), target=audio_batch(5, seed=3))
    expected = kernel_audio_distance(
        rows["preds_embeddings"], rows["target_embeddings"], bandwidth_from="target", kernel="imq", scale=1.0
    )
    assert torch.equal(other.compute(), expected)


def test_repeated_clip_ids_drop_all_their_rows(vggish):
    gen, ref = _clips((2.5, 1.0, 3.2), 20), _clips((1.0, 2.0, 1.5), 30)
    once = KernelAudioDistance(sample_rate=16000, protocol="av-benchmark", backbone=vggish)
    once.update(preds=gen, target=ref, ids=[0, 1, 2], target_ids=[0, 1, 2])
    twice = KernelAudioDistance(sample_rate=16000, protocol="av-benchmark", backbone=vggish)
    twice.update(preds=[gen[2], gen[0]], target=ref[:2], ids=[2, 0], target_ids=[0, 1])
    twice.update(preds=[gen[1], gen[0]], target=[ref[2], ref[0]], ids=[1, 0], target_ids=[2, 0])
    assert torch.equal(twice.compute(), once.compute())
    assert twice.details["n_preds_duplicates_dropped"] == 2  # the 2.5 s clip's two example rows
    assert twice.details["n_target_duplicates_dropped"] == 1
    assert torch.equal(twice.per_sample()["preds_embeddings"], once.per_sample()["preds_embeddings"])


def test_forward_and_reset(panns):
    x, y = audio_batch(4, seed=4), audio_batch(4, seed=5)
    kad = KernelAudioDistance(sample_rate=16000, protocol="av-benchmark", backbone=panns, reset_real_features=False)
    batch = kad(preds=x[:3], target=y[:3])
    alone = KernelAudioDistance(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    alone.update(preds=x[:3], target=y[:3])
    assert torch.equal(batch, alone.compute())
    assert kad(preds=x[3:]) is None  # one generated row and no reference in this batch: no batch value
    kad.reset()
    kad.update(preds=x[:3])
    assert torch.equal(kad.compute(), alone.compute())  # the reference rows survived reset()
    assert kad.details["n_target"] == 3


def test_kad_infinity_is_the_functional_on_the_synced_rows(panns):
    kad = KernelAudioDistance(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    kad.update(preds=audio_batch(12, seed=6), target=audio_batch(9, seed=7))
    out = kad.kad_infinity(steps=4, min_n=4, seed=3)
    rows = kad.per_sample()
    ref = kad_infinity(rows["preds_embeddings"], rows["target_embeddings"], steps=4, min_n=4, seed=3)
    assert out["seed"] == 3 and out["points"][:, 0].tolist() == [4.0, 6.0, 9.0, 12.0]
    for key in ("value", "slope", "r2", "points"):
        assert torch.equal(out[key], ref[key]), key


def test_passt_rows_are_the_fd_window_embeddings():
    net = tiny_backbone("passt", embed_dim=16)
    x, y = audio_batch(3, seed=8), audio_batch(3, seed=9)
    kad = KernelAudioDistance(sample_rate=16000, backbone=net)
    kad.update(preds=x, target=y)
    with torch.no_grad():
        emb, _ = net.embed([passt_windows(c[None], 16000, "fastvideo", "fd")[0] for c in x])
    torch.testing.assert_close(kad.per_sample()["preds_embeddings"], emb.double(), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backbone": "clap"}, "`backbone` of KernelAudioDistance must be one of"),
        ({"kernel": "poly"}, "`kernel`"),
        ({"bandwidth": 0.0}, "`bandwidth`"),
        ({"bandwidth_from": "both"}, "`bandwidth_from`"),
        ({"scale": 0}, "`scale`"),
        ({"kernel_dtype": torch.float16}, "`kernel_dtype`"),
        ({"reset_real_features": "no"}, "reset_real_features"),
        ({"protocol": "av-benchmark", "duration": 0.5}, "at least 0.975 s"),
    ],
)
def test_bad_arguments(vggish, kwargs, match):
    kwargs.setdefault("backbone", vggish)
    with pytest.raises(ValueError, match=match):
        KernelAudioDistance(**kwargs)


def test_bad_updates_leave_the_state_untouched(vggish):
    kad = KernelAudioDistance(sample_rate=16000, protocol="av-benchmark", backbone=vggish)
    with pytest.raises(ValueError, match="give `preds`"):
        kad.update()
    with pytest.raises(ValueError, match="`target_ids` were given without `target`"):
        kad.update(preds=audio_batch(2, seconds=1.0), target_ids=[0, 1])
    with pytest.raises(ValueError, match=r"`target\[0\]` lasts 0.5000 s at 16000 Hz; VGGish needs at least 0.9750 s"):
        kad.update(preds=audio_batch(2, seconds=1.0), target=audio_batch(1, seconds=0.5))
    assert len(kad.preds_rows) == 0
    kad.update(preds=audio_batch(1, seconds=1.0), target=audio_batch(3, seconds=1.0))
    with pytest.raises(ValueError, match="at least 2 embedding rows per side; preds"):
        kad.compute()


def test_from_frechet_equals_kad_fed_the_same_clips():
    """KAD on an FD's kept rows (no second forward) equals a KAD that embedded the same clips itself."""
    from torchmetrics_av import FrechetAudioDistance

    net = tiny_backbone("passt")
    g = torch.Generator().manual_seed(1)
    preds, target = torch.rand(5, 16000, generator=g) - 0.5, torch.rand(6, 16000, generator=g) - 0.5
    fd = FrechetAudioDistance(sample_rate=16000, backbone=net, keep_rows=True)
    kad = KernelAudioDistance(sample_rate=16000, backbone=net, kernel_dtype=torch.float64)
    for metric in (fd, kad):
        metric.update(preds=preds[:3], target=target[:2])
        metric.update(preds=preds[3:], target=target[2:])
    from_fd = KernelAudioDistance.from_frechet(fd, kernel_dtype=torch.float64)
    assert float(from_fd.compute()) == pytest.approx(float(kad.compute()), rel=1e-12)
    assert from_fd.details["n_preds"] == 5 and from_fd.details["n_target"] == 6
    streamed = FrechetAudioDistance(sample_rate=16000, backbone=net)
    streamed.update(preds=preds, target=target)
    with pytest.raises(ValueError, match="keep_rows"):
        KernelAudioDistance.from_frechet(streamed)
