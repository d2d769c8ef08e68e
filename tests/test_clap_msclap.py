"""CLAPScore(model="ms-clap-2023"): av-benchmark's MS-CLAP-Score through the metric (golden, tests/golden/msclap),
per-pair rows, the float64 mean, batch/rank independence, the shared backbone, bad arguments (tiny MS-CLAP)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import golden_path
from tests.ddp import run_ddp
from torchmetrics_av import CLAPScore
from torchmetrics_av.backbones import MSCLAP
from torchmetrics_av.backbones.msclap import msclap_scores, tiny_msclap, tiny_msclap_config
from torchmetrics_av.testing import tiny_backbone

# tests/golden/msclap/README.md (shared README §8): cosines and MS-CLAP-Score within 1e-6.
COSINE_ATOL = 1e-6
# Cosines of one pair in different batches: float32 batch-composition noise of the tiny towers.
BATCH_ATOL = 1e-6


def _pairs(n_long: int = 1):
    g = torch.Generator().manual_seed(3)
    clips = [torch.randn(16000, generator=g) * 0.1, torch.randn(2, 48000 * 2, generator=g) * 0.1]
    clips += [torch.randn(16000 * 8 + 11 * k, generator=g) * 0.1 for k in range(n_long)]  # > 7 s: the seeded crop
    rates = [16000, 48000] + [16000] * n_long
    texts = ["a beep", "rain on a tin roof!", *[f"engine {k} idles" for k in range(n_long)]]
    return clips, rates, texts


@pytest.fixture(scope="module")
def tiny():
    return tiny_msclap()


# ---------------------------------------------------------------------------------------------------------------------
# golden (full size, fill-v1 weights)


@pytest.mark.slow
def test_msclap_score_through_the_metric_matches_golden(fill_v1):
    golden = torch.load(golden_path("msclap") / "msclap_golden_trimmed.pt", weights_only=True)
    net = MSCLAP(pretrained=False, crop_seed=golden["crop_seed"])
    constants = {k: v.clone() for k, v in net.model.state_dict().items() if k in golden["constant_keys"]}
    fill_v1(net.model)
    net.model.load_state_dict(constants, strict=False)  # the golden keeps torchlibrosa's constructor constants
    clips = [golden["clips"][c]["pcm16"] for c, _ in golden["pairs"]]  # int16: the metric scales by 1/32768
    rates = [golden["clips"][c]["sample_rate"] for c, _ in golden["pairs"]]
    texts = [golden["texts"][t]["caption"] for _, t in golden["pairs"]]
    metric = CLAPScore(model="ms-clap-2023", backbone=net, crop_seed=golden["crop_seed"], protocol="av-benchmark")
    # The 9 s clip is cropped by the seeded rule, which reproduces the golden's crop start (test_msclap.py).
    metric.update(clips[:2], texts[:2], sample_rate=rates[:2], ids=[0, 1])
    metric.update(clips[2:], texts[2:], sample_rate=rates[2:], ids=[2, 3, 4])
    value = metric.compute()
    rows = metric.per_sample()
    assert rows["ids"].tolist() == [0, 1, 2, 3, 4]
    torch.testing.assert_close(rows["score"], golden["cosine"].double(), rtol=0, atol=COSINE_ATOL)
    assert value.dtype == torch.float64
    assert float(value) == pytest.approx(golden["score"], abs=COSINE_ATOL)


# ---------------------------------------------------------------------------------------------------------------------
# rows and reduction (tiny)


def test_rows_are_msclap_cosines_and_the_value_their_float64_mean(tiny):
    clips, rates, texts = _pairs()
    metric = CLAPScore(model="ms-clap-2023", backbone=tiny)
    metric.update(clips[:1], texts[:1], sample_rate=rates[:1])
    metric.update(clips[1:], texts[1:], sample_rate=rates[1:])
    value = metric.compute()
    rows = metric.per_sample()["score"]
    assert rows.dtype == torch.float64 and rows.shape == (3,)
    torch.testing.assert_close(rows, msclap_scores(tiny, clips, rates, texts).double(), rtol=0, atol=BATCH_ATOL)
    # Independent formula: numpy cosine of the backbone's embeddings, one clip / caption at a time, float64 mean.
    a = np.concatenate([tiny.embed_audio([c], r).double().numpy() for c, r in zip(clips, rates)])
    t = np.concatenate([tiny.embed_text([x]).double().numpy() for x in texts])
    ref = (a * t).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(t, axis=1)
    np.testing.assert_allclose(rows.numpy(), ref, rtol=0, atol=BATCH_ATOL)
    assert float(value) == pytest.approx(float(rows.mean()), abs=1e-15)
    assert value.dtype == torch.float64 and metric.details["n_samples"] == 3


def test_stereo_is_concatenated_and_silence_is_scored(tiny):
    g = torch.Generator().manual_seed(9)
    stereo = torch.randn(2, 44100, generator=g) * 0.1  # at 44.1 kHz: no resampling, so the rule is visible
    metric = CLAPScore(sample_rate=44100, model="ms-clap-2023", backbone=tiny)  # fastvideo: LAION would skip silence
    metric.update([stereo, torch.zeros(16000)], ["a", "b"])
    metric.compute()
    rows = metric.per_sample()["score"]
    assert metric.details["n_skipped_silent"] == 0 and rows.shape == (2,)
    # msclap's rule: (C, T) channels one after the other, i.e. the same as the 2 s mono clip left + right.
    flat = msclap_scores(tiny, [stereo.reshape(-1)], 44100, ["a"])
    mean = msclap_scores(tiny, [stereo.mean(0)], 44100, ["a"])
    assert float(rows[0]) == pytest.approx(float(flat[0]), abs=BATCH_ATOL)
    assert abs(float(rows[0]) - float(mean[0])) > 1e-4


def test_crop_seed_reaches_a_built_backbone_and_must_match_an_injected_one(tiny, monkeypatch):
    built = {}

    def fake_msclap(**kwargs):
        built.update(kwargs)
        return MSCLAP(
            pretrained=False,
            config=tiny_msclap_config(),
            crop_seed=kwargs["crop_seed"],
            batch_size=kwargs["batch_size"],
        )

    monkeypatch.setattr("torchmetrics_av.backbones.msclap.MSCLAP", fake_msclap)
    metric = CLAPScore(sample_rate=16000, model="ms-clap-2023", crop_seed=7, batch_size=3, weights="w.pth")
    assert metric.backbone.crop_seed == 7 and metric.backbone.batch_size == 3
    assert built == {"weights": "w.pth", "crop_seed": 7, "batch_size": 3}
    monkeypatch.undo()
    long = torch.randn(16000 * 9, generator=torch.Generator().manual_seed(2)) * 0.1
    metric.update([long], ["x"])
    other = CLAPScore(sample_rate=16000, model="ms-clap-2023", backbone=tiny_msclap(crop_seed=8), crop_seed=8)
    other.update([long], ["x"])
    assert float(metric.compute()) != float(other.compute())  # a 9 s clip: the crop differs
    with pytest.raises(ValueError, match="`backbone.crop_seed` is 0 but `crop_seed` is 7"):
        CLAPScore(model="ms-clap-2023", backbone=tiny, crop_seed=7)


def test_batches_ids_forward_and_bootstrap(tiny):
    clips, rates, texts = _pairs(n_long=2)
    one = CLAPScore(model="ms-clap-2023", backbone=tiny)
    one.update(clips, texts, sample_rate=rates)
    expected = one.compute()
    # Reversed, one pair per call, with a repeated id (a DistributedSampler pad): counted once, sorted by id.
    order = [3, 2, 1, 0, 2]
    split = CLAPScore(model="ms-clap-2023", backbone=tiny)
    for i in order:
        batch_value = split([clips[i]], [texts[i]], sample_rate=[rates[i]], ids=[i])
        assert batch_value.dtype == torch.float64 and batch_value.ndim == 0
    assert float(split.compute()) == pytest.approx(float(expected), abs=BATCH_ATOL)
    assert split.details["n_duplicates_dropped"] == 1 and split.per_sample()["ids"].tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(split.per_sample()["score"], one.per_sample()["score"], rtol=0, atol=BATCH_ATOL)
    with pytest.raises(ValueError, match=r"`target\[0\]` is empty"):
        split([clips[0]], [" "], sample_rate=[rates[0]], ids=[9])  # a failing forward adds nothing
    assert split.per_sample()["ids"].tolist() == [0, 1, 2, 3]
    ci = split.bootstrap(num=20, seed=1)
    assert float(ci["low"]) <= float(ci["value"]) <= float(ci["high"])
    assert float(ci["value"]) == pytest.approx(float(split.compute()), abs=1e-15)


def test_shared_with_the_registry_tiny_backbone():
    net = tiny_backbone("msclap")
    a = CLAPScore(sample_rate=16000, model="ms-clap-2023", backbone=net)
    b = CLAPScore(sample_rate=16000, model="ms-clap-2023", backbone=net)
    x = torch.randn(2, 16000, generator=torch.Generator().manual_seed(4)) * 0.1
    a.update(x, ["a", "b"])
    b.update(x, ["a", "b"])
    assert torch.equal(a.compute(), b.compute())
    assert not any("backbone" in k for k in a.state_dict()) and not any(p.requires_grad for p in net.parameters())


def test_bad_arguments(tiny):
    laion = tiny_backbone("clap")
    with pytest.raises(ValueError, match="`model` must be one of"):
        CLAPScore(model="msclap")
    with pytest.raises(ValueError, match="MSCLAP with model='ms-clap-2023'"):
        CLAPScore(model="ms-clap-2023", backbone=laion)
    with pytest.raises(ValueError, match=r"an MSCLAP needs model='ms-clap-2023'"):
        CLAPScore(backbone=tiny)
    with pytest.raises(ValueError, match="`tokenizer` applies to model='laion' only"):
        CLAPScore(model="ms-clap-2023", backbone=tiny, tokenizer=lambda t, **kw: t)
    with pytest.raises(ValueError, match="`duration` does not apply to model='ms-clap-2023'"):
        CLAPScore(model="ms-clap-2023", backbone=tiny, protocol="av-benchmark", duration=8.0)
    metric = CLAPScore(sample_rate=16000, model="ms-clap-2023", backbone=tiny)
    audio = torch.randn(2, 16000) * 0.1
    with pytest.raises(ValueError, match=r"`target` has 1 texts for 2 clips"):
        metric.update(audio, ["a"])
    with pytest.raises(ValueError, match=r"`target` must be a list of strings, one per sample, got a bare str"):
        metric.update(audio[:1], "a")
    with pytest.raises(ValueError, match=r"`target\[1\]`.*1024"):
        metric.update(audio, ["a", "word " * 1100])
    with pytest.raises(ValueError, match=r"`preds\[0\]` contains NaN"):
        metric.update(torch.full((1, 100), float("nan")), ["a"])
    with pytest.raises(ValueError, match="`sample_rate` is required"):
        CLAPScore(model="ms-clap-2023", backbone=tiny).update(audio, ["a", "b"])
    with pytest.raises(ValueError, match="no scored samples"):
        metric.compute()


# ---------------------------------------------------------------------------------------------------------------------
# DDP


def _ddp_worker(rank: int, world: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    clips, rates, texts = _pairs(n_long=2)
    metric = CLAPScore(model="ms-clap-2023", backbone=tiny_msclap())
    mine = [i for i in range(len(clips)) if i % world == rank] + [0] * rank  # rank 1 repeats id 0
    metric.update([clips[i] for i in mine], [texts[i] for i in mine], sample_rate=[rates[i] for i in mine], ids=mine)
    value = metric.compute()
    rows = metric.per_sample()
    return float(value), rows["score"], rows["ids"]


@pytest.mark.ddp
def test_ddp_two_ranks_equal_one():
    results = run_ddp(_ddp_worker, 2)
    clips, rates, texts = _pairs(n_long=2)
    single = CLAPScore(model="ms-clap-2023", backbone=tiny_msclap())
    single.update(clips, texts, sample_rate=rates, ids=list(range(len(clips))))
    value = float(single.compute())
    for rank_value, score, ids in results:
        assert rank_value == pytest.approx(value, abs=BATCH_ATOL)
        assert ids.tolist() == [0, 1, 2, 3]
        torch.testing.assert_close(score, single.per_sample()["score"], rtol=0, atol=BATCH_ATOL)
