"""HFWhisper (FastVideo's Hugging Face Whisper path): stored hub configs vs openai-whisper's tokenizer, the offline
tokenizer, the openai -> HF key mapping, loading, batching, and token equality with openai-whisper on the Whisper
golden (fill-v1 base)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from tests.conftest import load_golden
from torchmetrics_av.backbones.asr import ASRBackbone
from torchmetrics_av.backbones.hf_whisper import (
    HF_WHISPER_REVISION,
    HFWhisper,
    openai_to_hf_state_dict,
    tiny_hf_whisper,
    whisper_base_generation_config,
    whisper_tokenizer,
)
from torchmetrics_av.weights import WeightsNotFoundError

# A small multilingual openai-whisper model: real vocabulary (51865) and 30-s audio context (1500), width 64.
TINY_OPENAI_DIMS = dict(
    n_mels=80,
    n_audio_ctx=1500,
    n_audio_state=64,
    n_audio_head=2,
    n_audio_layer=1,
    n_vocab=51865,
    n_text_ctx=448,
    n_text_state=64,
    n_text_head=2,
    n_text_layer=1,
)


@pytest.fixture(scope="module")
def openai_tokenizer():
    from whisper.tokenizer import get_tokenizer

    return get_tokenizer(True, num_languages=99, task="transcribe")


@pytest.fixture(scope="module")
def tiny() -> HFWhisper:
    torch.manual_seed(0)
    return tiny_hf_whisper(max_new_tokens=2, batch_size=2)


def _tiny_openai_checkpoint(path):
    import whisper

    torch.manual_seed(3)
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**TINY_OPENAI_DIMS))
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0.0, 0.02)  # torch.empty in openai-whisper
    torch.save({"dims": TINY_OPENAI_DIMS, "model_state_dict": model.state_dict()}, path)
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------------
# stored hub facts vs openai-whisper (independent source)


def test_generation_config_matches_openai_whisper(openai_tokenizer):
    ot = openai_tokenizer
    meta = load_golden("wer", "whisper_decode.json")["meta"]
    cfg = whisper_base_generation_config()
    # The suppression list whisper.decode builds from suppress_tokens="-1" plus the task tokens (golden manifest).
    assert cfg["suppress_tokens"] == meta["decode_suppress_tokens"]
    specials = {ot.transcribe, ot.translate, ot.sot, ot.sot_prev, ot.sot_lm, ot.no_speech}
    assert cfg["suppress_tokens"] == sorted(set(ot.non_speech_tokens) | specials)
    assert cfg["begin_suppress_tokens"] == ot.encode(" ") + [ot.eot]  # openai's SuppressBlank
    assert cfg["lang_to_id"] == {f"<|{c}|>": t for c, t in zip(meta["language_codes"], meta["language_tokens"])}
    assert len(cfg["lang_to_id"]) == 99
    st = meta["special_tokens"]
    assert (cfg["decoder_start_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (
        st["sot"],
        st["eot"],
        st["eot"],
    )
    assert cfg["no_timestamps_token_id"] == st["no_timestamps"] == ot.no_timestamps
    assert cfg["task_to_id"] == {"translate": ot.translate, "transcribe": ot.transcribe}
    assert cfg["prev_sot_token_id"] == ot.sot_prev
    assert cfg["forced_decoder_ids"] == [[1, None], [2, ot.transcribe]]  # language detected, task transcribe
    assert cfg["return_timestamps"] is False and cfg["max_length"] == 448


def test_offline_tokenizer_equals_openai_whisper(openai_tokenizer):
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    ot = openai_tokenizer
    tok = whisper_tokenizer()
    assert len(tok) == ot.encoding.n_vocab == 51865
    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
    for i, piece in enumerate(tok.convert_ids_to_tokens(list(range(50257)))):
        assert bytes(byte_of[c] for c in piece) == ot.encoding.decode_single_token_bytes(i), i
    for name, idx in ot.special_tokens.items():
        assert tok.convert_tokens_to_ids(name) == idx, name
    for text in (
        " The quick brown fox jumps over the lazy dog.",
        " 你好，世界！",
        " ¿Qué tal? Naïve café, 3.14 €",
        " 有點",
    ):
        ids = ot.encode(text)
        assert tok.encode(text, add_special_tokens=False) == ids, text
        # skip_special_tokens drops the SOT sequence and end-of-text, as FastVideo's batch_decode does
        assert (
            tok.decode(
                [ot.sot, ot.language_token, ot.transcribe, ot.no_timestamps, *ids, ot.eot], skip_special_tokens=True
            )
            == text
        )
    # timestamp tokens are stripped from the text as well
    assert (
        tok.decode([ot.timestamp_begin, *ot.encode(" hi"), ot.timestamp_begin + 50], skip_special_tokens=True) == " hi"
    )


# ---------------------------------------------------------------------------------------------------------------------
# openai -> HF mapping


def test_openai_to_hf_mapping_reproduces_the_openai_model(tmp_path):
    path = tmp_path / "tiny-openai.pt"
    ref = _tiny_openai_checkpoint(path)
    hf = HFWhisper(weights=path)
    assert hf.model.config.d_model == 64 and hf.model.config.encoder_ffn_dim == 256
    mapped = openai_to_hf_state_dict(ref.state_dict())
    assert set(mapped) == set(hf.model.state_dict())  # every HF tensor comes from exactly one openai tensor
    torch.manual_seed(4)
    mel = torch.randn(2, 80, 3000)
    tokens = torch.tensor([[50258, 50259, 50359, 50363, 440, 1702]] * 2)
    with torch.no_grad():
        enc_ref = ref.encoder(mel)
        enc_hf = hf.model.model.encoder(mel).last_hidden_state
        logits_ref = ref.logits(tokens, enc_ref)
        logits_hf = hf.model(input_features=mel, decoder_input_ids=tokens).logits
    assert (enc_ref - enc_hf).abs().max() <= 1e-5
    assert (logits_ref - logits_hf).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="not an openai-whisper"):
        openai_to_hf_state_dict({"encoder.blocks.0.attn.rotary.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="not an openai-whisper"):
        openai_to_hf_state_dict({"head.weight": torch.zeros(1)})


def test_loading_paths_and_offline_errors(tmp_path, tiny, monkeypatch):
    from safetensors.torch import save_file

    # A Hugging Face folder as the hub stores it: config.json + model.safetensors without the tied proj_out.weight.
    folder = tmp_path / "hf-tiny"
    folder.mkdir()
    tiny.model.config.to_json_file(folder / "config.json")
    state = {k: v.clone().contiguous() for k, v in tiny.model.state_dict().items() if k != "proj_out.weight"}
    save_file(state, str(folder / "model.safetensors"))
    loaded = HFWhisper(weights=folder)
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    assert loaded.checkpoint_id.startswith("hf-tiny@sha256:")
    torch.save({"w": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="neither an openai-whisper checkpoint"):
        HFWhisper(weights=tmp_path / "other.pt")
    with pytest.raises(WeightsNotFoundError, match="missing"):
        HFWhisper(weights=tmp_path / "missing")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Offline, one error names both table files the model is built from, their pinned URLs and `weights=`.
    with pytest.raises(WeightsNotFoundError) as err:
        HFWhisper(cache_dir=tmp_path / "cache")
    for file in ("config.json", "model.safetensors"):
        assert f"whisper-base/{file}  (https://huggingface.co/openai/whisper-base/resolve/{HF_WHISPER_REVISION}/" in (
            str(err.value)
        )
    assert "weights=" in str(err.value)
    with pytest.raises(ValueError, match="`revision`"):
        HFWhisper(revision="main")
    with pytest.raises(ValueError, match="vocab_size 51864"):
        HFWhisper(pretrained=False, config={"vocab_size": 51864})
    with pytest.raises(ValueError, match="`config` only applies"):
        HFWhisper(weights=folder, config={"d_model": 8})
    with pytest.raises(ValueError, match="`max_new_tokens`"):
        HFWhisper(pretrained=False, max_new_tokens=0)


# ---------------------------------------------------------------------------------------------------------------------
# interface, batching, language handling


def test_tiny_batching_features_and_language_forcing(tiny, monkeypatch):
    assert isinstance(tiny, ASRBackbone) and tiny.sample_rate == 16000
    torch.manual_seed(1)
    clips = [0.1 * torch.randn(n) for n in (8000, 16000, 12345)]
    single = [tiny.generate_tokens([c])[0] for c in clips]
    texts = tiny.transcribe(clips)  # batches of 2
    assert texts == tiny.decode(single) and all(isinstance(t, str) for t in texts)
    # 30-s truncation and a per-clip log-mel floor, as for one clip at a time
    long = 0.1 * torch.randn(40 * 16000)
    assert torch.equal(tiny.features([long]), tiny.features([long[: 30 * 16000]]))
    assert torch.equal(tiny.features([clips[0], 10 * clips[1]])[0], tiny.features([clips[0]])[0])

    calls = []
    generate = tiny.model.generate
    monkeypatch.setattr(tiny.model, "generate", lambda **kw: calls.append(kw) or generate(**kw))
    hints = ["en", "English", None, "cjk"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastVideo mode ignores the hints without complaint
        tiny.transcribe(clips + [clips[0]], hints)
    assert all("language" not in kw for kw in calls) and all(kw["max_new_tokens"] == 2 for kw in calls)
    calls.clear()
    with pytest.warns(UserWarning, match="'cjk' is not a language"):
        tiny.transcribe(clips + [clips[0]], hints, force_language=True)
    assert [(kw.get("language"), kw["input_features"].shape[0]) for kw in calls] == [("en", 2), (None, 2)]

    with pytest.raises(ValueError, match=r"`waves\[0\]`"):
        tiny.transcribe([torch.zeros(2, 100)])
    with pytest.raises(ValueError, match="NaN"):
        tiny.transcribe([torch.full((100,), float("nan"))])
    with pytest.raises(ValueError, match="`languages` has 2 entries for 1"):
        tiny.transcribe([clips[0]], ["en", "de"])


# ---------------------------------------------------------------------------------------------------------------------
# golden: HF path == openai-whisper path with the same fill-v1 weights


@pytest.mark.slow
def test_hf_whisper_equals_openai_whisper_on_golden(tmp_path, fill_v1):
    import whisper
    from transformers.modeling_outputs import BaseModelOutput

    g = load_golden("wer", "whisper_golden.pt")
    meta = json.loads(g["meta_json"])
    src = whisper.model.Whisper(whisper.model.ModelDimensions(**meta["dims"]))
    fill_v1(src)
    path = tmp_path / "base-fill-v1.pt"
    torch.save({"dims": meta["dims"], "model_state_dict": src.state_dict()}, path)
    del src
    n_steps = len(g["decode_en_tokens"][0])  # the golden's sample_len (64)
    hf = HFWhisper(weights=path, max_new_tokens=n_steps)
    # HF keeps the encoder's sinusoidal positions as a (frozen) parameter; openai-whisper as a buffer.
    positions = hf.model.model.encoder.embed_positions.weight.numel()
    assert hf.model.num_parameters() - positions == meta["n_parameters"]
    waves = list(g["audio_16k"])

    feats = hf.features(waves)
    # README tolerance for the HF feature extractor vs openai-whisper's log-mel.
    assert (feats - g["mel"]).abs().max() <= 1e-4
    with torch.no_grad():
        enc = hf.model.model.encoder(feats).last_hidden_state
    assert (enc[:, ::25] - g["encoder_output_sub"]).abs().max() <= 1e-4

    # The golden tokens are openai-whisper's decode (our port equals them: test_wer.py::test_whisper_golden), so
    # comparing HF with the golden compares it with openai-whisper without paying for a second decode here.
    hf_en = hf.generate_tokens(waves, ["en"] * len(waves), force_language=True)
    hf_auto = hf.generate_tokens(waves)  # FastVideo's call: no language, the model detects it
    for i in range(len(waves)):
        assert hf_en[i] == g["decode_en_tokens"][i].tolist()
        assert hf_auto[i] == g["decode_auto_tokens"][i].tolist()
    assert hf.decode(hf_en) == list(g["decode_en_text"])
    assert hf.decode(hf_auto) == list(g["decode_auto_text"])
    # The language HF detected is the golden's (its prompt is [sot, <|ar|>, transcribe, notimestamps]).
    lang_ids = hf.model.detect_language(encoder_outputs=BaseModelOutput(enc))  # the encoder output checked above
    codes = {v: k[2:-2] for k, v in hf.model.generation_config.lang_to_id.items()}
    assert [codes[int(t)] for t in lang_ids] == list(g["decode_auto_language"])
