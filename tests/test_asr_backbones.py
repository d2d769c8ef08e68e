"""The common ASR interface over all four backends (tiny random instances), GLM-ASR's and SenseVoice's FastVideo calls,
the shared input checks, and the offline errors of the snapshot-based backends."""

from __future__ import annotations

import sys

import pytest
import torch

from torchmetrics_av.backbones.asr import ASRBackbone, check_asr_inputs, language_code
from torchmetrics_av.weights import WeightsNotFoundError


def _clips() -> list[torch.Tensor]:
    torch.manual_seed(7)
    return [0.1 * torch.randn(16000), 0.1 * torch.randn(24000)]  # two 16 kHz clips, 1 s and 1.5 s


def _tiny(name: str):
    torch.manual_seed(0)
    if name == "openai-whisper":
        from torchmetrics_av.backbones.whisper import Whisper

        tiny = dict(n_audio_state=32, n_audio_head=2, n_audio_layer=1, n_text_state=32, n_text_head=2, n_text_layer=1)
        return Whisper(pretrained=False, name="tiny", dims=tiny, sample_len=2)
    if name == "whisper":
        from torchmetrics_av.backbones.hf_whisper import tiny_hf_whisper

        return tiny_hf_whisper(max_new_tokens=2)
    if name == "glm_asr":
        from torchmetrics_av.backbones.glm_asr import tiny_glm_asr

        return tiny_glm_asr(max_new_tokens=2)
    from torchmetrics_av.backbones.sensevoice import tiny_sensevoice

    return tiny_sensevoice()


@pytest.mark.parametrize("backend", ["whisper", "openai-whisper", "glm_asr", "sensevoice"])
def test_every_backend_transcribes_through_the_common_interface(backend):
    threads = torch.get_num_threads()
    asr = _tiny(backend)
    assert torch.get_num_threads() == threads  # no backend changes torch's global thread count
    assert isinstance(asr, ASRBackbone) and asr.sample_rate == 16000
    clips = _clips()
    texts = asr.transcribe(clips, ["en", None], force_language=True)
    assert isinstance(texts, list) and len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert all(t == t.strip() for t in texts)
    plain = asr.transcribe(clips)
    assert len(plain) == 2 and all(isinstance(t, str) for t in plain)
    with pytest.raises(ValueError, match="`waves`"):
        asr.transcribe(clips[0])
    with pytest.raises(ValueError, match="`languages` has 1 entries for 2"):
        asr.transcribe(clips, ["en"])


def test_openai_whisper_transcribe_forwards_hints_only_when_forced(monkeypatch):
    asr = _tiny("openai-whisper")
    seen = []
    monkeypatch.setattr(asr, "forward", lambda audio, languages=None: seen.append(languages) or ["x"] * len(audio))
    clips = _clips()
    asr.transcribe(clips, ["en", "de"])
    asr.transcribe(clips, ["en", "de"], force_language=True)
    assert seen == [None, ["en", "de"]]


def test_glm_asr_uses_fastvideos_prompt_and_generate(monkeypatch):
    from torchmetrics_av.backbones.glm_asr import tiny_glm_asr

    torch.manual_seed(0)
    asr = tiny_glm_asr(max_new_tokens=2)
    assert asr.prompt == (
        "<|user|>\n<|begin_of_audio|><|pad|><|end_of_audio|>\nPlease transcribe this audio into text\n<|assistant|>\n"
    )
    clips = _clips()
    inputs = asr._inputs(clips[:1])
    ids = inputs["input_ids"][0].tolist()
    audio_id = asr.model.config.audio_token_id
    n_audio = ids.count(audio_id)
    # One placeholder per encoder output frame: 100 mel frames/s, conv stride 2, then 4 frames merged per token.
    frames = (16000 // 160 + 1) // 2
    assert n_audio == (frames - 4) // 4 + 1
    collapsed = [t for i, t in enumerate(ids) if t != audio_id or ids[i - 1] != audio_id]
    assert asr.processor.tokenizer.decode(collapsed) == asr.prompt
    assert inputs["input_features"].shape == (1, 128, 3000)

    calls = []
    generate = asr.model.generate
    monkeypatch.setattr(asr.model, "generate", lambda **kw: calls.append(kw) or generate(**kw))
    one_by_one = asr.transcribe(clips)
    asr.batch_size = 2
    together = asr.transcribe(clips)  # left-padded prompts
    assert together == one_by_one
    assert all(kw["do_sample"] is False and kw["max_new_tokens"] == 2 for kw in calls)
    assert [kw["input_ids"].shape[0] for kw in calls] == [1, 1, 2]


def test_sensevoice_calls_funasr_like_fastvideo(monkeypatch):
    from torchmetrics_av.backbones.sensevoice import tiny_sensevoice

    torch.manual_seed(0)
    asr = tiny_sensevoice()
    assert asr.pipeline.vad_kwargs["max_single_segment_time"] == 30000
    calls = []
    raw = "<|en|><|NEUTRAL|><|Speech|><|withitn|>Hello world."
    monkeypatch.setattr(asr.pipeline, "generate", lambda **kw: calls.append(kw) or [{"key": "k", "text": raw}])
    texts = asr.transcribe(_clips(), ["en", "Cantonese"])
    from funasr.utils.postprocess_utils import rich_transcription_postprocess

    assert texts == [rich_transcription_postprocess(raw).strip()] * 2
    expected = {
        "cache": {},
        "language": "auto",
        "use_itn": True,
        "batch_size_s": 60,
        "merge_vad": True,
        "merge_length_s": 15,
    }
    for kw in calls:
        assert {k: v for k, v in kw.items() if k != "input"} == expected
        assert kw["input"].dtype.name == "float32" and kw["input"].ndim == 1
    calls.clear()
    with pytest.warns(UserWarning, match="'de' is not a language of SenseVoice"):
        asr.transcribe(_clips(), ["Cantonese", "de"], force_language=True)
    assert [kw["language"] for kw in calls] == ["yue", "auto"]


def test_sensevoice_without_funasr_names_the_install_command(monkeypatch):
    from torchmetrics_av.backbones.sensevoice import SenseVoice

    monkeypatch.setitem(sys.modules, "funasr", None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "torchmetrics-av\[sensevoice\]"'):
        SenseVoice()


def test_snapshot_backends_offline_and_folder_errors(tmp_path, monkeypatch):
    from torchmetrics_av.backbones.glm_asr import GLMASR
    from torchmetrics_av.backbones.sensevoice import SenseVoice

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        WeightsNotFoundError, match=r"(?s)offline.*GLM-ASR-Nano-2512/ .*zai-org/GLM-ASR-Nano-2512.*weights="
    ):
        GLMASR(cache_dir=tmp_path)
    with pytest.raises(
        WeightsNotFoundError, match=r"(?s)SenseVoiceSmall/model\.pt .*weights=.*fsmn-vad/model\.pt .*weights="
    ):
        SenseVoice(cache_dir=tmp_path)
    with pytest.raises(WeightsNotFoundError, match="is not a folder"):
        GLMASR(weights=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match=r"\['config.json'\] missing"):
        GLMASR(weights=tmp_path / "empty")


def test_shared_input_checks_and_language_codes():
    waves, langs = check_asr_inputs([torch.zeros(3, dtype=torch.float64)])
    assert waves[0].dtype == torch.float32 and langs == [None]
    for bad, match in (
        ([], "`waves` must be a non-empty list"),
        ([torch.zeros(0)], r"`waves\[0\]`"),
        ([torch.zeros(1, 4)], r"`waves\[0\]`"),
        ([torch.tensor([0.0, float("inf")])], "NaN or Inf"),
    ):
        with pytest.raises(ValueError, match=match):
            check_asr_inputs(bad)
    with pytest.raises(ValueError, match=r"`languages\[0\]` must be a string or None"):
        check_asr_inputs([torch.zeros(3)], [3])
    assert language_code("EN_us", ["en"]) == "en"
    assert language_code("Mandarin", ["zh"], {"mandarin": "zh"}) == "zh"
    assert language_code("cjk", ["zh", "ja"]) is None


@pytest.mark.parametrize(
    "backend,arg",
    [("whisper", "batch_size"), ("whisper", "max_new_tokens"), ("glm_asr", "batch_size"),
     ("glm_asr", "max_new_tokens"), ("openai-whisper", "batch_size")],
)  # fmt: skip
@pytest.mark.parametrize("bad", [0, 2.5, "8", True], ids=repr)
def test_counts_must_be_positive_ints(backend, arg, bad):
    # The library-wide check: a bool is not a count (`batch_size=True` used to pass as 1).
    from torchmetrics_av.backbones import GLMASR, HFWhisper, Whisper

    cls = {"whisper": HFWhisper, "glm_asr": GLMASR, "openai-whisper": Whisper}[backend]
    with pytest.raises(ValueError, match=f"`{arg}` must be a positive int"):
        cls(pretrained=False, **{arg: bad})


def test_config_overrides_only_shape_random_models(tmp_path):
    from torchmetrics_av.backbones import GLMASR, HFWhisper, Whisper

    for make, arg in (
        (lambda: HFWhisper(config={"d_model": 64}), "config"),
        (lambda: GLMASR(weights=tmp_path, pretrained=False, config={}), "config"),
        (lambda: Whisper(dims={"n_audio_state": 64}), "dims"),
    ):
        with pytest.raises(ValueError, match=f"`{arg}` only applies to `pretrained=False`"):
            make()
