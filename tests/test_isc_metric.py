"""InceptionScore (the metric): logits per sample, av-benchmark's reduction, both backbones, ids, forward, errors.

The reduction itself is checked against av-benchmark's ``compute_isc`` in tests/test_isc.py (functional) and on the
PANNs golden in tests/test_panns_metrics.py; here the metric's plumbing is checked against independent computations
on tiny backbones.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch

from tests.test_fad import audio_batch
from torchmetrics_av import InceptionScore
from torchmetrics_av.backbones.passt import passt_windows
from torchmetrics_av.functional import inception_score
from torchmetrics_av.protocols import get_protocol
from torchmetrics_av.testing import tiny_backbone

# av-benchmark's compute_isc settings (evaluate.py).
SPLITS, SEED = 10, 2020


@pytest.fixture(scope="module")
def panns():
    return tiny_backbone("panns")


@pytest.fixture(scope="module")
def passt():
    return tiny_backbone("passt", embed_dim=16)


def _numpy_isc(logits: np.ndarray, splits: int, seed: int | None) -> tuple[float, float]:
    """Independent IS: legacy permutation, floor-division splits, scipy softmax, population std."""
    z = logits.astype(np.float64)
    if seed is not None:
        z = z[np.random.RandomState(seed).permutation(len(z))]
    p = scipy.special.softmax(z, axis=1)
    n = len(z)
    scores = []
    for i in range(splits):
        part = p[i * n // splits : (i + 1) * n // splits]
        kl = (part * (np.log(part) - np.log(part.mean(axis=0, keepdims=True)))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def test_value_is_av_benchmark_isc_of_the_model_logits():
    net = tiny_backbone("panns", seed=1)
    x = audio_batch(23, seconds=0.5, seed=3)
    isc = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=net)
    isc.update(x[:9])
    isc.update(x[9:])
    spec = get_protocol("av-benchmark")
    # The model input is av-benchmark's AudioDataset(sr=16000) clip, i.e. PANNs.prepare; logits from one forward.
    with torch.no_grad():
        _, logits = net.embed([net.prepare(c, 16000, spec.duration) for c in x])
    mean, std = _numpy_isc(logits.numpy(), SPLITS, SEED)
    value = isc.compute()
    assert value.dtype == torch.float64
    assert float(value) == pytest.approx(mean, rel=1e-9) and mean > 1.02  # clips told apart: not the uniform 1.0
    assert float(isc.details["inception_score_std"]) == pytest.approx(std, rel=1e-9, abs=1e-12)
    rows = isc.per_sample()
    assert rows["logits"].dtype == torch.float32 and rows["logits"].shape == (23, 527)
    torch.testing.assert_close(rows["logits"], logits, rtol=0, atol=1e-6)  # batch composition: ~1e-7


def test_passt_backbone_uses_the_fd_window(passt):
    x = audio_batch(10, seconds=0.5, seed=4)
    for protocol in ("av-benchmark", "fastvideo"):
        isc = InceptionScore(sample_rate=16000, protocol=protocol, backbone=passt, splits=5, shuffle_seed=None)
        isc.update(x)
        windows = [passt_windows(c[None], 16000, protocol, "fd")[0] for c in x]
        with torch.no_grad():
            _, logits = passt.embed(windows)
        assert all(w.numel() == 320000 for w in windows)  # padded to 10 s, one forward per clip
        mean, _ = _numpy_isc(logits.numpy(), 5, None)
        assert float(isc.compute()) == pytest.approx(mean, rel=1e-9), protocol


def test_ids_make_the_order_and_the_duplicates_exact(panns):
    x = audio_batch(12, seconds=0.4, seed=5)
    ref = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    ref.update(x, ids=list(range(12)))
    shuffled = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    order = [7, 3, 11, 0, 5]
    shuffled.update(x[order], ids=order)
    rest = [i for i in range(12) if i not in order]
    shuffled.update(x[rest + [3, 7]], ids=rest + [3, 7])  # two repeats, as DistributedSampler pads
    assert torch.equal(shuffled.compute(), ref.compute())
    assert shuffled.details["n_duplicates_dropped"] == 2 and shuffled.details["ids"].tolist() == list(range(12))


def test_forward_returns_none_below_splits_and_keeps_accumulating(panns):
    x = audio_batch(15, seconds=0.4, seed=6)
    isc = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    assert isc(x[:4]) is None  # 4 clips cannot fill 10 splits: no batch value, but they are kept
    batch = isc(x[4:])
    alone = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    alone.update(x[4:])
    assert torch.equal(batch, alone.compute())
    assert isc.per_sample()["logits"].shape[0] == 15


def test_fewer_clips_than_splits_raises(panns):
    isc = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    isc.update(audio_batch(7, seconds=0.4))
    with pytest.raises(ValueError, match=r"7 scored clips but `splits=10`.*NaN"):
        isc.compute()
    with pytest.raises(ValueError, match="no scored samples"), pytest.warns(UserWarning, match="before the"):
        InceptionScore(sample_rate=16000, backbone=panns).compute()


def test_silent_clips_are_skipped_under_fastvideo(panns):
    x = audio_batch(10, seconds=0.4, seed=7)
    clips = [*x, torch.zeros(8000)]
    isc = InceptionScore(sample_rate=16000, backbone=panns)
    isc.update(clips, ids=list(range(11)))
    isc.compute()
    assert isc.details["n_samples"] == 10 and isc.details["skipped_ids"].tolist() == [10]
    scored = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    scored.update(clips)  # av-benchmark scores silence like any clip
    scored.compute()
    assert scored.details["n_samples"] == 11


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backbone": "vggish"}, "`backbone` of InceptionScore must be one of"),
        ({"splits": 0}, "`splits`"),
        ({"shuffle_seed": 1.5}, "`shuffle_seed`"),
        ({"shuffle_seed": -1}, "`shuffle_seed`"),
        ({"resampler": "sinc"}, "`resampler`"),
        ({"duration": 4.0}, "`duration` applies to protocol='av-benchmark' only"),
        ({"protocol": "av-benchmark", "duration": 0.2}, "at least 0.31 s"),
    ],
)
def test_bad_arguments(panns, kwargs, match):
    kwargs.setdefault("backbone", panns)
    with pytest.raises(ValueError, match=match):
        InceptionScore(**kwargs)


def test_vggish_instance_is_refused_and_short_clips_are_named(panns):
    with pytest.raises(ValueError, match="VGGish backbone .*no class logits"):
        InceptionScore(backbone=tiny_backbone("vggish"))
    isc = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    with pytest.raises(ValueError, match=r"`preds\[1\]` lasts 0.2000 s at 16000 Hz; PANNs needs at least 0.3100 s"):
        isc.update([torch.rand(8000) - 0.5, torch.rand(3200) - 0.5])
    assert len(isc.logits) == 0  # nothing was appended


def test_underflowing_class_raises_instead_of_nan(panns):
    isc = InceptionScore(backbone=panns)
    logits = torch.zeros(10, 527)
    logits[:, 0] = 1000.0  # every other class has probability exp(-1000) = 0 in float64: 0 * log 0 terms
    assert torch.isnan(inception_score(logits)[0])  # what the reference formula gives
    with pytest.raises(ValueError, match="not finite"):
        isc._reduce({"ids": torch.full((10,), -1), "logits": logits})
