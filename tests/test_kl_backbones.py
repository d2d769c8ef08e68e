"""KLDivergence over PANNs (KL-PANNS) and the PaSST default: model inputs, one forward per clip shared with IS,
backbone validation. The golden values are in tests/test_panns_metrics.py; PaSST parity in tests/test_kl.py."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from tests.test_fad import audio_batch
from torchmetrics_av import InceptionScore, KLDivergence, PaSSTKLDivergence
from torchmetrics_av.testing import tiny_backbone

# 16 kHz PANNs inputs of float32 kernels: batching moves logits by ~1e-7, a KL value by less.
KL_ATOL = 1e-6


@pytest.fixture(scope="module")
def panns():
    return tiny_backbone("panns")


def _scipy_kl(p_logits: torch.Tensor, t_logits: torch.Tensor) -> np.ndarray:
    pp = scipy.special.softmax(p_logits.double().numpy(), axis=1)
    pt = scipy.special.softmax(t_logits.double().numpy(), axis=1)
    return np.array([scipy.stats.entropy(pt[i], pp[i]) for i in range(len(pp))])  # KL(target || preds)


def test_panns_kl_is_av_benchmark_kl_of_the_prepared_clips(panns):
    preds = [audio_batch(1, seconds=s, sr=22050, seed=i)[0] for i, s in enumerate((0.5, 1.2, 9.0))]
    target = [torch.stack([audio_batch(1, seconds=s, seed=10 + i)[0]] * 2) for i, s in enumerate((0.7, 2.0, 0.4))]
    kl = KLDivergence(sample_rate=22050, target_sample_rate=16000, protocol="av-benchmark", backbone=panns)
    kl.update(preds, target)
    with torch.no_grad():
        # av-benchmark's AudioDataset(sr=16000): mono, DC removal, torchaudio Resample, first 8 s, never padded.
        _, p_logits = panns.embed([panns.prepare(c, 22050, 8.0) for c in preds], batch_size=1)
        _, t_logits = panns.embed([panns.prepare(c, 16000, 8.0) for c in target], batch_size=1)
    expected = _scipy_kl(p_logits, t_logits)
    rows = kl.per_sample()
    np.testing.assert_allclose(rows["kl_softmax"].numpy(), expected, rtol=0, atol=KL_ATOL)
    assert float(kl.compute()) == pytest.approx(expected.mean(), abs=KL_ATOL)
    sig = scipy.special.expit
    st, sp = sig(t_logits.double().numpy()), sig(p_logits.double().numpy())
    assert float(kl.details["kl_sigmoid_mean"]) == pytest.approx((st * np.log(st / sp)).sum(1).mean(), abs=KL_ATOL)
    assert expected.min() > 1e-4  # the clips are told apart: the test would see a swapped pair


def test_fastvideo_protocol_skips_silent_pairs_with_panns(panns):
    x = audio_batch(3, seed=4)
    kl = KLDivergence(sample_rate=16000, backbone=panns)
    kl.update([x[0], torch.zeros(8000), x[2]], [x[1], x[2], x[0]], ids=[0, 1, 2])
    kl.compute()
    assert kl.details["n_samples"] == 2 and kl.details["skipped_ids"].tolist() == [1]


def test_kl_and_is_share_one_panns_forward_per_clip():
    net = tiny_backbone("panns")
    clips = []
    net.register_forward_hook(lambda m, args, out: clips.append(args[0].shape[0]))
    x, y = audio_batch(10, seed=5), audio_batch(10, seed=6)
    kl = KLDivergence(sample_rate=16000, protocol="av-benchmark", backbone=net)
    isc = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=net)
    kl.update(x, y)
    isc.update(x)
    assert sum(clips) == 20  # 10 generated + 10 reference; IS reuses the generated clips' memoised logits
    uncached = tiny_backbone("panns", cache_size=0)
    fresh = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=uncached)
    fresh.update(x)
    torch.testing.assert_close(isc.compute(), fresh.compute(), rtol=1e-9, atol=0)


def test_passt_default_and_alias_agree():
    net = tiny_backbone("passt", embed_dim=16)
    x, y = audio_batch(3, seed=7), audio_batch(3, seed=8)
    a = KLDivergence(sample_rate=16000, backbone=net)
    b = PaSSTKLDivergence(sample_rate=16000, backbone=net)
    a.update(x, y)
    b.update(x, y)
    assert a.backbone_name == b.backbone_name == "passt"
    assert torch.equal(a.compute(), b.compute())


def test_backbone_validation(panns):
    with pytest.raises(ValueError, match=r"`backbone` of KLDivergence must be one of \('passt', 'panns'\)"):
        KLDivergence(backbone="vggish")
    with pytest.raises(ValueError, match="VGGish backbone .*no class logits"):
        KLDivergence(backbone=tiny_backbone("vggish"))
    with pytest.raises(ValueError, match="PaSSTKLDivergence cannot use a PANNs backbone"):
        PaSSTKLDivergence(backbone=panns)
    with pytest.raises(ValueError, match="`backbone` must be a torch.nn.Module"):
        KLDivergence(backbone=3)
    with pytest.raises(ValueError, match="`backbone` must be a torch.nn.Module .*KLDivergence"):
        PaSSTKLDivergence(backbone="passt")  # names are KLDivergence's; the alias keeps its instance-only signature
    with pytest.raises(ValueError, match="at least 0.31 s"):
        KLDivergence(backbone=panns, protocol="av-benchmark", duration=0.1)
    kl = KLDivergence(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    with pytest.raises(ValueError, match=r"`target\[1\]` lasts 0.1000 s at 16000 Hz; PANNs needs at least 0.3100 s"):
        kl.update(audio_batch(2), [torch.rand(8000), torch.rand(1600)])
    assert len(kl.kl_softmax) == 0
