"""torchmetrics conventions on every metric: constructor validation, plot(), higher_is_better, missing extras, dtype
casts, and clips too short for a model (issue 8, item 5)."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from torchmetrics_av import (
    AudioboxAesthetics,
    CLAPScore,
    DeSync,
    FrechetAudioDistance,
    ImageBindScore,
    PaSSTKLDivergence,
    SpeechWordErrorRate,
)
from torchmetrics_av.testing import tiny_backbone

ALL = [
    FrechetAudioDistance,
    PaSSTKLDivergence,
    CLAPScore,
    AudioboxAesthetics,
    SpeechWordErrorRate,
    ImageBindScore,
    DeSync,
]
BAD_RATES = [0, -16000, 22050.5, "16000", True, float("nan"), [16000, 0], []]
BAD_FPS = [0, -25.0, float("nan"), float("inf"), "25", True, [25.0, 0]]
BAD_COUNTS = [0, -1, 2.5, "8", True]


def fake_asr(audio, languages):
    return ["a"] * len(audio)


# ---------------------------------------------------------------------------------------------------------------------
# constructor validation


@pytest.mark.parametrize("bad", BAD_RATES, ids=repr)
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_sample_rate_must_be_positive_integer_hz(cls, bad):
    with pytest.raises(ValueError, match="`sample_rate`"):
        cls(sample_rate=bad)


@pytest.mark.parametrize("bad", BAD_RATES, ids=repr)
@pytest.mark.parametrize("cls", [FrechetAudioDistance, PaSSTKLDivergence], ids=lambda c: c.__name__)
def test_target_sample_rate_must_be_positive_integer_hz(cls, bad):
    with pytest.raises(ValueError, match="`target_sample_rate`"):
        cls(sample_rate=16000, target_sample_rate=bad)


@pytest.mark.parametrize("bad", BAD_FPS, ids=repr)
@pytest.mark.parametrize("cls", [ImageBindScore, DeSync], ids=lambda c: c.__name__)
def test_video_fps_must_be_positive_and_finite(cls, bad):
    with pytest.raises(ValueError, match="`video_fps`"):
        cls(sample_rate=16000, video_fps=bad)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_protocol_backbone_and_weights_are_checked(cls):
    with pytest.raises(ValueError, match=r"`protocol` must be one of \('fastvideo', 'av-benchmark'\)"):
        cls(protocol="mmaudio")
    with pytest.raises(ValueError, match="`backbone` must be a torch.nn.Module"):
        cls(backbone="passt")
    with pytest.raises(ValueError, match="`weights` must be a local checkpoint path"):
        cls(weights=3)


@pytest.mark.parametrize("bad", BAD_COUNTS, ids=repr)
@pytest.mark.parametrize(
    "cls,arg",
    [
        (FrechetAudioDistance, "batch_size"),
        (PaSSTKLDivergence, "batch_size"),
        (CLAPScore, "batch_size"),
        (ImageBindScore, "clip_batch_size"),
    ],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_batch_sizes_must_be_positive_ints(cls, arg, bad):
    with pytest.raises(ValueError, match=f"`{arg}` must be a positive int"):
        cls(**{arg: bad})


def test_other_arguments_are_checked():
    cases = [
        (lambda: FrechetAudioDistance(method="svd"), "`method`"),
        (lambda: FrechetAudioDistance(eps=0.0), "`eps`"),
        (lambda: FrechetAudioDistance(eps=float("nan")), "`eps`"),
        (lambda: FrechetAudioDistance(resampler="sinc"), "`resampler`"),
        (lambda: PaSSTKLDivergence(resampler="sinc"), "`resampler`"),
        (lambda: FrechetAudioDistance(reset_real_features="no"), "`reset_real_features`"),
        (lambda: SpeechWordErrorRate(reduction="sum"), "`reduction`"),
        (lambda: SpeechWordErrorRate(asr=fake_asr, forward_language=1), "`forward_language`"),
        (lambda: SpeechWordErrorRate(model_name=""), "`model_name`"),
        (lambda: SpeechWordErrorRate(asr="whisper"), "`asr`"),
        (lambda: CLAPScore(crop_seed=1.5), "`crop_seed`"),
        (lambda: CLAPScore(tokenizer="roberta"), "`tokenizer`"),
        (lambda: DeSync(keep_logits="yes"), "`keep_logits`"),
        (lambda: DeSync(bf16=1), "`bf16`"),
        (lambda: DeSync(protocol="av-benchmark", duration=4.0), "at least 4.8 s"),
        (lambda: ImageBindScore(protocol="av-benchmark", duration=3.0), "at least 4 s"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()


@pytest.mark.parametrize(
    "cls", [FrechetAudioDistance, PaSSTKLDivergence, CLAPScore, ImageBindScore, DeSync], ids=lambda c: c.__name__
)
def test_duration_is_one_rule_everywhere(cls):
    assert cls(protocol="av-benchmark").duration == 8.0
    assert cls(protocol="av-benchmark", duration=6).duration == 6.0
    assert cls().duration is None  # fastvideo: whole clips
    with pytest.raises(ValueError, match="`duration` applies to protocol='av-benchmark' only"):
        cls(duration=6.0)
    with pytest.raises(ValueError, match="`duration`"):
        cls(protocol="av-benchmark", duration=-1.0)


def test_deprecated_duration_aliases_warn():
    for cls in (FrechetAudioDistance, PaSSTKLDivergence):
        with pytest.warns(FutureWarning, match="`audio_length` is deprecated"):
            assert cls(protocol="av-benchmark", audio_length=6.0).duration == 6.0
    with pytest.warns(FutureWarning, match="`duration_sec` is deprecated"):
        assert ImageBindScore(protocol="av-benchmark", duration_sec=6.0).duration == 6.0
    with pytest.raises(ValueError, match="applies to protocol='av-benchmark' only"), pytest.warns(FutureWarning):
        ImageBindScore(duration_sec=6.0)


# ---------------------------------------------------------------------------------------------------------------------
# optional dependencies


@pytest.mark.parametrize(
    "make,module,extra",
    [
        (lambda: FrechetAudioDistance(), "hear21passt", "passt"),
        (lambda: PaSSTKLDivergence(), "hear21passt", "passt"),
        (lambda: CLAPScore(), "transformers", "clap"),
        (lambda: SpeechWordErrorRate(asr=fake_asr), "jiwer", "asr"),
        (lambda: SpeechWordErrorRate(), "whisper", "asr"),
        (lambda: AudioboxAesthetics(), "audiobox_aesthetics", "aesthetics"),
        (lambda: ImageBindScore(protocol="av-benchmark"), "torchvision", "video"),
    ],
    ids=["fd", "kl", "clap", "wer-jiwer", "wer-whisper", "aesthetics", "imagebind"],
)
def test_missing_extra_fails_at_construction_with_the_pip_command(monkeypatch, make, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # find_spec -> None, as when the package is not installed
    with pytest.raises(ModuleNotFoundError, match=rf"requires `{module}`.*pip install 'torchmetrics-av\[{extra}\]'"):
        make()


def test_injected_backbone_or_asr_needs_no_model_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "hear21passt", None)
    monkeypatch.setitem(sys.modules, "whisper", None)
    monkeypatch.setitem(sys.modules, "audiobox_aesthetics", None)
    FrechetAudioDistance(backbone=torch.nn.Identity())
    SpeechWordErrorRate(asr=fake_asr)
    AudioboxAesthetics(backbone=torch.nn.Identity())


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'torchmetrics-av\[all\]'"):
        DeSync().plot(torch.tensor(0.4))


# ---------------------------------------------------------------------------------------------------------------------
# plot, higher_is_better


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_plot_single_and_multiple_values(cls):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    metric = cls()
    if cls is AudioboxAesthetics:
        one = {axis: torch.tensor(5.0 + i) for i, axis in enumerate(("CE", "CU", "PC", "PQ"))}
        many = [one, {k: v + 0.5 for k, v in one.items()}]
    else:
        one, many = torch.tensor(0.5, dtype=torch.float64), [torch.tensor(0.5), torch.tensor(0.25)]
    fig, ax = metric.plot(one)
    assert fig is not None and ax.get_ylabel() == cls.__name__
    low, high = metric.plot_lower_bound, metric.plot_upper_bound
    if low is not None:
        assert ax.get_ylim()[0] < low  # the bounds frame the axis (with torchmetrics' 10 % margin)
    if high is not None:
        assert ax.get_ylim()[1] > high
    _, ax2 = metric.plot(many, ax=ax)
    assert ax2 is ax
    plt.close("all")


def test_higher_is_better_per_output():
    assert FrechetAudioDistance.higher_is_better is False and PaSSTKLDivergence.higher_is_better is False
    assert SpeechWordErrorRate.higher_is_better is False and DeSync.higher_is_better is False
    assert CLAPScore.higher_is_better is True and ImageBindScore.higher_is_better is True
    # Production complexity is not a quality scale: the dict output has no single direction.
    assert AudioboxAesthetics.higher_is_better is None
    assert AudioboxAesthetics.higher_is_better_per_output == {"CE": True, "CU": True, "PC": None, "PQ": True}
    assert (FrechetAudioDistance.plot_lower_bound, PaSSTKLDivergence.plot_lower_bound) == (0.0, 0.0)
    assert (CLAPScore.plot_lower_bound, CLAPScore.plot_upper_bound) == (-1.0, 1.0)
    assert (DeSync.plot_lower_bound, DeSync.plot_upper_bound) == (0.0, 2.0)


# ---------------------------------------------------------------------------------------------------------------------
# dtype casts


def test_dict_value_is_not_cast_after_compute():
    metric = AudioboxAesthetics(sample_rate=16000, backbone=tiny_backbone("audiobox"))
    metric.update(torch.rand(2, 16000) - 0.5)
    value = metric.compute()
    metric.to(torch.bfloat16)
    again = metric.compute()
    assert all(again[k].dtype == torch.float64 and torch.equal(again[k], value[k]) for k in value)


def test_wer_survives_set_dtype_half():
    metric = SpeechWordErrorRate(sample_rate=16000, asr=lambda audio, lang: ["the cat sat"] * len(audio))
    metric.update(torch.zeros(2, 1600), ["the cat sat down", "a cat sat"])
    before = metric.compute()
    metric.set_dtype(torch.float16)
    assert metric.text_bytes[0].dtype == torch.uint8 and metric.errors[0].dtype == torch.int64
    metric.update(torch.zeros(1, 1600), ["the cat sat"])
    rows = metric.per_sample()
    assert rows["transcript"] == ["the cat sat"] * 3 and rows["reference"][0] == "the cat sat down"
    assert float(metric.compute()) == pytest.approx((float(before) * 2 + 0.0) / 3, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# clips too short for a model


def test_too_short_clips_raise_naming_the_minimum_or_are_scored():
    """Models that cannot take a clip raise ValueError with the minimum; the others score it as their reference."""
    kl = PaSSTKLDivergence(sample_rate=16000, backbone=tiny_backbone("passt"))
    with pytest.raises(ValueError, match=r"`preds\[0\]` lasts 0.1000 s; PaSST needs at least 0.1500 s"):
        kl.update(torch.rand(1, 1600) - 0.5, torch.rand(1, 16000) - 0.5)  # 0.1 s: the unpadded KL window
    ib = ImageBindScore(sample_rate=16000, video_fps=25.0, backbone=tiny_backbone("imagebind"))
    with pytest.raises(ValueError, match=r"`preds\[0\]`.*at least 400 \(25 ms\)"):
        ib.update(torch.rand(1, 160) - 0.5, torch.zeros(1, 25, 3, 32, 32, dtype=torch.uint8))
    ds = DeSync(sample_rate=16000, video_fps=25.0, backbone=tiny_backbone("synchformer"))
    with pytest.raises(ValueError, match=r"too short.*at least 4.8 s"):
        ds.update(torch.rand(1, 16000) - 0.5, torch.zeros(1, 25, 3, 32, 32, dtype=torch.uint8))
    # FD pads to 10 s, CLAP repeat-pads, Whisper pads to 30 s, Audiobox pads and masks: one sample is scored.
    one = torch.rand(2, 1) - 0.5
    fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny_backbone("passt"))
    fd.update(preds=one, target=one.flip(0))
    clap = CLAPScore(sample_rate=16000, backbone=tiny_backbone("clap"))
    clap.update(one, ["a dog", "rain"])
    wer = SpeechWordErrorRate(sample_rate=16000, backbone=tiny_backbone("whisper"))
    wer.update(one, ["a dog", "rain"])
    aes = AudioboxAesthetics(sample_rate=16000, backbone=tiny_backbone("audiobox"))
    aes.update(one)
    values = [fd.compute(), clap.compute(), wer.compute(), *aes.compute().values()]
    assert all(math.isfinite(float(v)) for v in values)
