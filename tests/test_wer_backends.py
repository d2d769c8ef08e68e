"""SpeechWordErrorRate's four ASR backends (tiny random backbones, offline): scoring through each, the protocol's
language-forcing rule (recorded at the backbone), injection, construction errors, and silent clips."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from torchmetrics_av import SpeechWordErrorRate
from torchmetrics_av.audio.wer import _BACKENDS, ASR_BACKENDS, DEFAULT_ASR_BACKEND
from torchmetrics_av.functional.wer import score_transcript
from torchmetrics_av.testing import tiny_backbone
from torchmetrics_av.weights import WeightsNotFoundError

# asr_backend name -> testing.tiny_backbone key ("whisper" there is the openai-whisper model).
TINY_KEY = {"whisper": "hf_whisper", "openai-whisper": "whisper", "glm_asr": "glm_asr", "sensevoice": "sensevoice"}
# Generation caps of the tiny models: a few tokens keep each transcription in milliseconds.
TINY_OVERRIDES = {"whisper": {"max_new_tokens": 3}, "openai-whisper": {"sample_len": 3}, "glm_asr": {}}
REFS = ["the cat sat on the mat", "你好世界"]
LANGS = ["en", "zh"]


def _tiny(name: str):
    return tiny_backbone(TINY_KEY[name], **TINY_OVERRIDES.get(name, {}))


def _clips() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return [0.1 * torch.randn(16000, generator=gen), 0.1 * torch.randn(2, 12000, generator=gen)]  # mono, stereo


class Recorder:
    """Wraps a backbone's ``transcribe`` and records every call's hints and ``force_language``."""

    def __init__(self, backbone):
        self.calls: list[tuple[list, bool]] = []
        self._transcribe = backbone.transcribe

    def __call__(self, waves, languages=None, force_language=False):
        self.calls.append((list(languages) if languages is not None else None, force_language))
        return self._transcribe(waves, languages, force_language=force_language)


@pytest.fixture(scope="module", params=ASR_BACKENDS)
def backend(request):
    return request.param, _tiny(request.param)


def test_the_default_is_fastvideos_hf_whisper():
    assert ASR_BACKENDS == ("whisper", "openai-whisper", "glm_asr", "sensevoice")
    assert DEFAULT_ASR_BACKEND == "whisper"
    assert tuple(_BACKENDS) == ASR_BACKENDS  # one backbone class per name
    assert SpeechWordErrorRate().asr_backend == "whisper"


def test_every_backend_scores_two_clips_without_forcing_the_language(backend, monkeypatch):
    name, bb = backend
    rec = Recorder(bb)
    monkeypatch.setattr(bb, "transcribe", rec)
    metric = SpeechWordErrorRate(sample_rate=16000, asr_backend=name, backbone=bb)
    assert metric.asr_backend == name and metric.forward_language is False
    metric.update(_clips(), REFS, language=LANGS)
    value = float(metric.compute())
    # FastVideo's path: the hints reach the backbone, but it is told not to force them.
    assert rec.calls == [(LANGS, False)]
    rows = metric.per_sample()
    assert len(rows["transcript"]) == 2 and all(isinstance(t, str) for t in rows["transcript"])
    # Each clip's score is the MagiHuman scoring of the transcript the backbone returned, averaged.
    expected = [score_transcript(t, r, lang) for t, r, lang in zip(rows["transcript"], REFS, LANGS)]
    assert rows["wer"].tolist() == [a.wer for a in expected]
    assert rows["char_level"].tolist() == [False, True]  # hints still decide the token unit
    assert value == pytest.approx(math.fsum(a.wer for a in expected) / 2, abs=1e-12)
    assert metric.details["asr_backend"] == name and metric.details["n_silent"] == 0
    # Same clips through the backbone directly (16 kHz mono): the metric adds nothing but the scoring.
    direct = rec._transcribe([_clips()[0], _clips()[1].mean(0)], LANGS, force_language=False)
    assert rows["transcript"] == direct


@pytest.mark.parametrize("protocol", ["fastvideo", "av-benchmark"])
def test_language_forcing_follows_the_protocol_unless_asked(protocol):
    calls = []

    class Plain:  # any object with transcribe() is a backbone
        sample_rate = 16000

        def transcribe(self, waves, languages=None, force_language=False):
            calls.append((list(languages), force_language))
            return ["hello"] * len(waves)

    for forward, forced in ((None, False), (True, True), (False, False)):
        m = SpeechWordErrorRate(sample_rate=16000, protocol=protocol, backbone=Plain(), forward_language=forward)
        m.update(torch.zeros(2, 800), ["hello", "hello there"], language=["en", None])
        assert calls[-1] == (["en", None], forced)
        assert float(m.compute()) == pytest.approx(0.25)
        assert m.asr_backend == "Plain"
    # The asr= callable gets the hints only when they are forwarded.
    seen = []
    asr = lambda audio, languages: seen.append(list(languages)) or ["x"] * len(audio)  # noqa: E731
    SpeechWordErrorRate(sample_rate=16000, protocol=protocol, asr=asr).update(torch.zeros(1, 800), ["x"], "en")
    SpeechWordErrorRate(sample_rate=16000, asr=asr, forward_language=True).update(torch.zeros(1, 800), ["x"], "en")
    assert seen == [[None], ["en"]]


def test_forcing_reaches_hf_whisper_generate(monkeypatch):
    bb = _tiny("whisper")
    kwargs = []
    generate = bb.model.generate
    monkeypatch.setattr(bb.model, "generate", lambda **kw: kwargs.append(sorted(kw)) or generate(**kw))
    SpeechWordErrorRate(sample_rate=16000, backbone=bb).update(torch.zeros(1, 1600), ["a"], language="en")
    SpeechWordErrorRate(sample_rate=16000, backbone=bb, forward_language=True).update(
        torch.zeros(1, 1600), ["a"], language="en"
    )
    # FastVideo: generate(input_features=..., max_new_tokens=256) and nothing else; forced: language="en" too.
    assert kwargs == [["input_features", "max_new_tokens"], ["input_features", "language", "max_new_tokens"]]


def test_silent_clips_are_counted_and_still_scored():
    hyps = {True: "", False: "one two"}  # a silent clip transcribes to nothing, as a real ASR's would
    asr = lambda audio, languages: [hyps[bool(a.abs().max() == 0)] for a in audio]  # noqa: E731
    m = SpeechWordErrorRate(sample_rate=16000, asr=asr)
    m.update(torch.stack([torch.zeros(1600), torch.full((1600,), 0.1)]), ["one two", "one two"])
    m.update(torch.zeros(1, 2, 800), ["one two three"])
    assert float(m.compute()) == pytest.approx((1.0 + 0.0 + 1.0) / 3)  # FastVideo scores them: empty hyp -> 1.0
    d = m.details
    assert d["n_silent"] == 2 and d["n_samples"] == 3 and d["n_skipped_silent"] == 0
    assert m.per_sample()["silent"].tolist() == [True, False, True]


def test_lazy_default_backbone_is_hf_whisper(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from torchmetrics_av.backbones.hf_whisper import HFWhisper

    tiny = _tiny("whisper")
    folder = tmp_path / "hf-tiny"
    folder.mkdir()
    tiny.model.config.to_json_file(folder / "config.json")
    state = {k: v.clone().contiguous() for k, v in tiny.model.state_dict().items() if k != "proj_out.weight"}
    save_file(state, str(folder / "model.safetensors"))  # the hub layout: the tied output projection left out
    m = SpeechWordErrorRate(sample_rate=16000, weights=folder)
    assert isinstance(m.backbone, HFWhisper) and m.backbone.checkpoint_id.startswith("hf-tiny@sha256:")
    # Without weights it wants the checkpoint table's whisper-base files (offline: an error naming them).
    monkeypatch.setenv("TORCHMETRICS_AV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="whisper-base/model.safetensors"):
        SpeechWordErrorRate(sample_rate=16000).update(torch.zeros(1, 800), ["a"])
    m = SpeechWordErrorRate(sample_rate=16000, asr_backend="openai-whisper", model_name="tiny")
    with pytest.raises(WeightsNotFoundError, match="whisper-tiny"):
        m.update(torch.zeros(1, 800), ["a"])


def test_construction_errors():
    with pytest.raises(ValueError, match=r"`asr_backend` must be one of \('whisper', 'openai-whisper', 'glm_asr', "):
        SpeechWordErrorRate(asr_backend="hf-whisper")
    with pytest.raises(ValueError, match=r"asr_backend='openai-whisper'\), not one of asr_backend='glm_asr'"):
        SpeechWordErrorRate(asr_backend="glm_asr", backbone=tiny_backbone("whisper"))
    with pytest.raises(ValueError, match="`backbone` must be a torch.nn.Module ASR backbone.*transcribe"):
        SpeechWordErrorRate(backbone=object())
    with pytest.raises(ValueError, match="not both"):
        SpeechWordErrorRate(asr=lambda a, lang: ["x"] * len(a), asr_backend="whisper")
    with pytest.raises(ValueError, match="`model_name` picks an openai-whisper size"):
        SpeechWordErrorRate(model_name="small")
    assert SpeechWordErrorRate(asr_backend="openai-whisper", model_name="small").model_name == "small"


@pytest.mark.parametrize(
    "backend,module,extra",
    [
        ("whisper", "transformers", "asr"),
        ("whisper", "whisper", "asr"),
        ("openai-whisper", "whisper", "asr"),
        ("glm_asr", "transformers", "asr"),
        ("sensevoice", "funasr", "sensevoice"),
    ],
)
def test_missing_extra_names_the_pip_command_at_construction(monkeypatch, backend, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # find_spec -> None, as when the package is not installed
    with pytest.raises(ModuleNotFoundError, match=rf"{backend}.*requires `{module}`.*torchmetrics-av\[{extra}\]"):
        SpeechWordErrorRate(asr_backend=backend)
