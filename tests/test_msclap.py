"""MS-CLAP 2023 backbone: golden parity (tests/golden/msclap, from ../shared/golden/msclap), the official state_dict
layout, strict loading, msclap's tokenisation and 7 s audio rule, GPT-2 vs transformers, bad inputs."""

from __future__ import annotations

import argparse
import hashlib
import math
import random

import numpy as np
import pytest
import torch

from tests.conftest import golden_path
from torchmetrics_av.backbones import MSCLAP
from torchmetrics_av.backbones.msclap import (
    MSCLAP_CHECKPOINT,
    MSCLAPConfig,
    crop_start,
    flatten_44k1,
    load_msclap_state_dict,
    msclap_scores,
    msclap_waveform,
    tiny_msclap,
    tiny_msclap_config,
)
from torchmetrics_av.backbones.msclap.model import MSCLAPModel, dft_kernels, slaney_mel_bank
from torchmetrics_av.weights import WeightsNotFoundError

# Golden README §8 tolerances (float32, CPU).
LOGMEL_ATOL_LOUD = 5e-3  # dB, where the golden is above -60 dB
LOGMEL_ATOL_QUIET = 0.25  # dB, elsewhere (near the -100 dB floor)
LOUD_DB = -60.0
AUDIO_EMB_ATOL = 5e-5  # embeddings of norm ~32, same 44.1 kHz input
TEXT_EMB_ATOL = 1e-5
COSINE_ATOL = 1e-6
# Image and latent: no README tolerance; they feed the audio embedding, so the same bound applies.
IMAGE_ATOL = 5e-5
N_STATE_DICT_ENTRIES = 357
N_PARAMETERS = 159_439_064
NUM_SAMPLES = 7 * 44100


def sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def max_abs(t: torch.Tensor) -> float:
    return float(t.abs().max()) if t.numel() else 0.0


def wave_of(clip: dict) -> torch.Tensor:
    return clip["pcm16"].to(torch.float32) / 32768


# ---------------------------------------------------------------------------------------------------------------------
# fixtures: the golden data and ONE full-size model for the module


@pytest.fixture(scope="module")
def golden():
    return torch.load(golden_path("msclap") / "msclap_golden_trimmed.pt", weights_only=True)


@pytest.fixture(scope="module")
def full(golden, fill_v1):
    """The full-size model with the golden's weights: fill-v1 on the root, the 3 torchlibrosa constants put back."""
    net = MSCLAP(pretrained=False, crop_seed=golden["crop_seed"])
    keep = {k: v.clone() for k, v in net.model.state_dict().items() if k in golden["constant_keys"]}
    fill_v1(net.model)
    net.model.load_state_dict(keep, strict=False)
    return net


@pytest.fixture(scope="module")
def full_outputs(full, golden):
    """Everything the full-size tests compare, computed once: the av-benchmark call (all clips in one batch)."""
    names = list(golden["clips"])
    clips = [wave_of(golden["clips"][n]) for n in names]
    rates = [golden["clips"][n]["sample_rate"] for n in names]
    starts = [golden["clips"][n]["crop_start"] for n in names]
    inputs = torch.stack([full.waveform(c, r, s) for c, r, s in zip(clips, rates, starts)])
    htsat = full.model.audio_encoder.base.htsat
    with torch.no_grad():
        logmel = htsat.logmel(inputs)
        image = htsat.to_image(logmel)
        latent = htsat.latent(image)
        audio_emb = full.model.audio_encoder.projection(latent)
    texts = list(golden["texts"])
    ids, mask = full.tokenize([golden["texts"][t]["caption"] for t in texts])
    text_emb = full.text_embedding(ids, mask)  # one batch: the 77-token captions and the 78-token one
    with torch.no_grad():
        pooled = [
            full.model.caption_encoder.pooled_hidden(*full.tokenize([golden["texts"][t]["caption"]]))[0] for t in texts
        ]
    return {
        "clips": names,
        "logmel": logmel[:, 0],
        "image": image[:, 0],
        "latent": latent,
        "audio_emb": dict(zip(names, audio_emb)),
        "texts": texts,
        "pooled_hidden": dict(zip(texts, pooled)),
        "text_emb": dict(zip(texts, text_emb)),
    }


@pytest.fixture(scope="module")
def tiny():
    return tiny_msclap()


# ---------------------------------------------------------------------------------------------------------------------
# state_dict layout and constructor constants (full size)


@pytest.mark.slow
def test_state_dict_matches_official_manifest(full, golden):
    entries = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in full.model.state_dict().items()]
    assert len(entries) == N_STATE_DICT_ENTRIES
    assert entries == [e[:3] for e in golden["manifest"]]  # keys, shapes, dtypes AND order
    assert sum(p.numel() for p in full.model.parameters()) == N_PARAMETERS == golden["n_parameters"]
    # fill-v1 touches parameters only: every manifest "buffer" is a buffer here, every other entry a parameter.
    buffers = {k for k, _ in full.model.named_buffers()}
    assert buffers == {e[0] for e in golden["manifest"] if e[3].startswith("buffer")}


@pytest.mark.slow
def test_constructor_constants_are_bit_exact(full, golden):
    """The 3 torchlibrosa kernels, the Swin index/mask buffers and num_batches_tracked equal the reference
    constructor's bytes (fill-v1 leaves buffers alone and the fixture restores the 3 kernels from our constructor)."""
    assert len(golden["constructor_sha256"]) == 21
    state = full.model.state_dict()
    for key, digest in golden["constructor_sha256"].items():
        assert sha256(state[key]) == digest, key


def test_front_end_constants_by_independent_formulas():
    import librosa

    mel = slaney_mel_bank()
    ref = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T
    np.testing.assert_array_equal(mel.numpy(), ref)
    # The conv kernels are a Hann-windowed DFT: conv1d of a signal equals a float64 torch.stft.
    real, imag = dft_kernels()
    x = torch.randn(1, 1, 1024 * 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    conv = torch.complex(
        torch.nn.functional.conv1d(x, real.double(), stride=320),
        torch.nn.functional.conv1d(x, imag.double(), stride=320),
    )[0]
    window = torch.hann_window(1024, periodic=True, dtype=torch.float64)
    stft = torch.stft(x[0], 1024, hop_length=320, window=window, center=False, return_complex=True)[0]
    torch.testing.assert_close(conv, stft, rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# tokenizer


def test_gpt2_bpe_offline(tiny):
    tok = tiny.tokenizer
    assert tok.gpt2_encode("Hello world") == [15496, 995]
    assert tok.gpt2_encode(" Hello world") == [18435, 995]
    assert tok.gpt2_encode("hello world") == [31373, 995]
    assert tok.gpt2_encode("!!") == [3228] and tok.gpt2_encode(" !") == [5145]  # merged in plain GPT-2 ...
    assert tok.caption_ids("!!") == [0, 0, 220, 50256]  # ... split by msclap's special pad token "!"
    assert tok.caption_ids(" !") == [220, 0, 220, 50256]


def test_tokenizer_matches_golden(golden, tiny):
    captions = [t["caption"] for t in golden["texts"].values()]
    ids, mask = tiny.tokenize(captions)
    assert ids.shape == (len(captions), 78) and ids.dtype == mask.dtype == torch.long
    for i, (name, t) in enumerate(golden["texts"].items()):
        n = t["input_ids"].shape[0]  # 77, or the token count of a longer caption (no truncation)
        one_ids, one_mask = tiny.tokenize([t["caption"]])
        assert torch.equal(one_ids[0], t["input_ids"]) and torch.equal(one_mask[0], t["attention_mask"]), name
        assert torch.equal(ids[i, :n], t["input_ids"]) and torch.equal(mask[i, :n], t["attention_mask"]), name
        assert not ids[i, n:].any() and not mask[i, n:].any()
        pooled = int((ids[i] != 0).sum()) - 1
        assert pooled == t["pooled_index"] and int(ids[i, pooled]) == t["pooled_token_id"], name
        if t["ids_if_bang_not_special"] is not None:
            plain = tiny.tokenizer.gpt2_encode(t["caption"]) + [220, 50256]
            assert plain == t["ids_if_bang_not_special"]


def test_tokenizer_errors(tiny, tmp_path):
    with pytest.raises(ValueError, match="texts"):
        tiny.tokenize("a caption, not a list")
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        tiny.tokenize(["ok", 3])
    with pytest.raises(ValueError, match=r"texts\[0\].*1024"):
        tiny.tokenize(["word " * 1100])
    bad = tmp_path / "not_gpt2.tiktoken"
    bad.write_bytes(b"IQ== 0\n")
    from torchmetrics_av.backbones.msclap.tokenizer import MSCLAPTokenizer

    with pytest.raises(ValueError, match="r50k_base"):
        MSCLAPTokenizer(bad)
    with pytest.raises(WeightsNotFoundError, match="bpe_file"):
        MSCLAPTokenizer(tmp_path / "missing.tiktoken")


# ---------------------------------------------------------------------------------------------------------------------
# audio front end


def test_model_inputs_match_golden(golden):
    for name, c in golden["clips"].items():
        flat = flatten_44k1(wave_of(c), c["sample_rate"])
        assert flat.shape[0] == c["flat_len_44k1"] == math.prod(c["resampled_44k1_shape"])
        # torchaudio.transforms.Resample, as the reference: exactly the same float32 samples (README §8).
        assert sha256(flat.view(c["resampled_44k1_shape"])) == c["resampled_44k1_sha256"], name
        x = msclap_waveform(wave_of(c), c["sample_rate"], start=c["crop_start"])
        assert x.shape == (NUM_SAMPLES,) and x.dtype == torch.float32
        assert sha256(x) == c["model_input_sha256"], name
        if c["crop_start"] is not None:
            # The seeded rule reproduces the reference's draw after random.seed(crop_seed).
            assert crop_start(flat.shape[0], golden["crop_seed"]) == c["crop_start"]
            assert c["crop_randrange_arg"] == flat.shape[0] - NUM_SAMPLES
            seeded = msclap_waveform(wave_of(c), c["sample_rate"], crop_seed=golden["crop_seed"])
            assert sha256(seeded) == c["model_input_sha256"]
        else:
            assert c["repeat_factor"] == -(-NUM_SAMPLES // flat.shape[0])


def test_waveform_rule_by_hand():
    x = torch.arange(1, 100001, dtype=torch.float32).reshape(2, 50000) / 1e6
    out = msclap_waveform(x, 44100)  # stereo: concatenated (not averaged), then tiled across the channel boundary
    flat = x.reshape(-1)
    assert torch.equal(out[:100000], flat) and torch.equal(out[100000:200000], flat)
    assert torch.equal(out[-8700:], flat[:8700])
    exact = torch.randn(NUM_SAMPLES)
    assert torch.equal(msclap_waveform(exact, 44100), exact)  # equality is tiled once, not cropped
    long = torch.randn(NUM_SAMPLES + 1000)
    start = random.Random(7).randrange(1000)
    assert torch.equal(msclap_waveform(long, 44100, crop_seed=7), long[start : start + NUM_SAMPLES])
    assert torch.equal(msclap_waveform(long, 44100, start=1000), long[1000:])
    state = random.getstate()
    msclap_waveform(long, 44100)
    assert random.getstate() == state  # the global RNG is not touched
    with pytest.raises(ValueError, match="crop start"):
        msclap_waveform(long, 44100, start=1001)
    with pytest.raises(ValueError, match="empty"):
        msclap_waveform(torch.zeros(0), 44100)


# ---------------------------------------------------------------------------------------------------------------------
# full-size golden parity


@pytest.mark.slow
def test_logmel_image_latent_match_golden(full_outputs, golden):
    for i, name in enumerate(full_outputs["clips"]):
        c = golden["clips"][name]
        if "logmel" in c:
            ref, got = c["logmel"], full_outputs["logmel"][i]
            loud = ref > LOUD_DB
            assert got.shape == ref.shape == (965, 64)
            assert max_abs((got - ref)[loud]) <= LOGMEL_ATOL_LOUD
            assert max_abs((got - ref)[~loud]) <= LOGMEL_ATOL_QUIET
        if "image" in c:
            torch.testing.assert_close(full_outputs["image"][i], c["image"], rtol=0, atol=IMAGE_ATOL)
        torch.testing.assert_close(full_outputs["latent"][i], c["latent"], rtol=0, atol=AUDIO_EMB_ATOL)


@pytest.mark.slow
def test_audio_embeddings_match_golden(full_outputs, golden):
    for name, emb in full_outputs["audio_emb"].items():
        c = golden["clips"][name]
        torch.testing.assert_close(emb, c["audio_emb"], rtol=0, atol=AUDIO_EMB_ATOL)
        torch.testing.assert_close(emb, c["audio_emb_batch1"], rtol=0, atol=AUDIO_EMB_ATOL)


@pytest.mark.slow
def test_text_embeddings_match_golden(full_outputs, golden):
    for name in full_outputs["texts"]:
        t = golden["texts"][name]
        torch.testing.assert_close(full_outputs["pooled_hidden"][name], t["pooled_hidden"], rtol=0, atol=TEXT_EMB_ATOL)
        torch.testing.assert_close(full_outputs["text_emb"][name], t["text_emb"], rtol=0, atol=TEXT_EMB_ATOL)


@pytest.mark.slow
def test_scores_match_golden(full, full_outputs, golden):
    pairs = golden["pairs"]
    clips = [wave_of(golden["clips"][c]) for c, _ in pairs]
    rates = [golden["clips"][c]["sample_rate"] for c, _ in pairs]
    texts = [golden["texts"][t]["caption"] for _, t in pairs]
    starts = [golden["clips"][c]["crop_start"] for c, _ in pairs]
    cosine = msclap_scores(full, clips, rates, texts, crop_starts=starts)
    assert cosine.dtype == torch.float32 and cosine.shape == (len(pairs),)
    torch.testing.assert_close(cosine, golden["cosine"], rtol=0, atol=COSINE_ATOL)
    assert float(cosine.double().mean()) == pytest.approx(golden["score"], abs=COSINE_ATOL)
    # The same cosines by an independent float64 formula on the fixture's embeddings.
    a = np.stack([full_outputs["audio_emb"][c].double().numpy() for c, _ in pairs])
    t = np.stack([full_outputs["text_emb"][n].double().numpy() for _, n in pairs])
    ref = (a * t).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(t, axis=1)
    np.testing.assert_allclose(cosine.double().numpy(), ref, rtol=0, atol=COSINE_ATOL)


# ---------------------------------------------------------------------------------------------------------------------
# loading


def official_file(tmp_path, net, extra=None, drop=None):
    state = dict(net.model.state_dict())
    state.update(extra or {})
    for k in drop or ():
        state.pop(k)
    path = tmp_path / "CLAP_weights_2023.pth"
    torch.save({"model": state}, path)
    return path


def test_strict_loading_of_official_layout(tmp_path, tiny):
    cfg = tiny.model.config
    with torch.no_grad():
        for p in tiny.model.parameters():
            p.add_(0.5)  # anything but the constructor's values
    path = official_file(tmp_path, tiny)
    loaded = MSCLAP(weights=path, config=cfg)
    for (k, a), (k2, b) in zip(tiny.model.state_dict().items(), loaded.model.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert loaded.checkpoint_id.startswith("CLAP_weights_2023.pth@sha256:")
    # A bare state dict is accepted too.
    bare = tmp_path / "bare.pth"
    torch.save(tiny.model.state_dict(), bare)
    assert torch.equal(MSCLAP(weights=bare, config=cfg).model.logit_scale, tiny.model.logit_scale)

    key = "audio_encoder.projection.linear1.weight"
    with pytest.raises(ValueError, match="missing"):
        MSCLAP(weights=official_file(tmp_path, tiny, drop=[key]), config=cfg)
    with pytest.raises(ValueError, match="unexpected"):
        MSCLAP(weights=official_file(tmp_path, tiny, extra={"head.weight": torch.zeros(1)}), config=cfg)
    with pytest.raises(ValueError, match="wrong shape"):
        MSCLAP(weights=official_file(tmp_path, tiny, extra={key: torch.zeros(3, 3)}), config=cfg)
    with pytest.raises(ValueError, match="does not match"):
        MSCLAP(weights=path)  # tiny file into the full-size architecture


def test_legacy_gpt2_buffers_are_checked_and_dropped(tmp_path, tiny):
    n = tiny.model.config.text_positions
    legacy = {
        "caption_encoder.base.h.0.attn.bias": torch.ones(n, n, dtype=torch.uint8).tril().view(1, 1, n, n),
        "caption_encoder.base.h.0.attn.masked_bias": torch.tensor(-1e4),
    }
    MSCLAP(weights=official_file(tmp_path, tiny, extra=legacy), config=tiny.model.config)
    legacy["caption_encoder.base.h.0.attn.masked_bias"] = torch.tensor(0.0)
    with pytest.raises(ValueError, match="masked_bias"):
        load_msclap_state_dict(MSCLAPModel(tiny.model.config), {**tiny.model.state_dict(), **legacy}, "test")


def test_checkpoint_record_and_offline_error(tmp_path, monkeypatch):
    assert (MSCLAP_CHECKPOINT.hf_repo, MSCLAP_CHECKPOINT.filename) == ("microsoft/msclap", "CLAP_weights_2023.pth")
    monkeypatch.setenv("TORCHMETRICS_AV_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"CLAP_weights_2023\.pth.*weights="):
        MSCLAP(cache_dir=tmp_path, config=tiny_msclap_config())
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        MSCLAP(weights=tmp_path / "nope.pth", config=tiny_msclap_config())


def test_unsafe_pickle_needs_allow_pickle(tmp_path, tiny):
    path = tmp_path / "pickled.pth"
    # msclap-style training files may hold argparse namespaces, which torch.load(weights_only=True) refuses.
    torch.save({"model": tiny.model.state_dict(), "args": argparse.Namespace(lr=1e-3)}, path)
    with pytest.raises(ValueError, match="allow_pickle"):
        MSCLAP(weights=path, config=tiny.model.config)
    MSCLAP(weights=path, config=tiny.model.config, allow_pickle=True)


# ---------------------------------------------------------------------------------------------------------------------
# GPT-2 tower vs transformers (an independent implementation of the same network)


def test_gpt2_tower_matches_transformers(tiny):
    import transformers

    cfg = tiny.model.config
    hf_cfg = transformers.GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.text_positions,
        n_embd=cfg.text_width,
        n_layer=cfg.text_layers,
        n_head=cfg.text_heads,
    )
    hf = transformers.GPT2Model(hf_cfg).eval()
    hf.load_state_dict(tiny.model.caption_encoder.base.state_dict(), strict=True)  # same names, same Conv1D layout
    ids, mask = tiny.tokenize(["Hello world", "Wow! A crowd cheers!!"])
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        got = tiny.model.caption_encoder.base(ids)
    pooled = (ids != 0).sum(-1) - 1
    rows = torch.arange(2)
    torch.testing.assert_close(got[rows, pooled], ref[rows, pooled], rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# functional path, batch independence, bad inputs (tiny)


def test_scores_are_cosines_of_the_embeddings_and_batch_independent(tiny):
    gen = torch.Generator().manual_seed(1)
    clips = [torch.randn(16000, generator=gen) * 0.1, torch.randn(2, 48000 * 5, generator=gen) * 0.1]
    clips.append(torch.randn(16000 * 9, generator=gen) * 0.1)
    rates = [16000, 48000, 16000]
    texts = ["a beep", "an engine idles, then revs up twice!", "word " * 90]  # 77-token padding and a longer caption
    together = msclap_scores(tiny, clips, rates, texts)
    # One clip / caption at a time, and the cosine by hand in float64.
    a = torch.cat([tiny.embed_audio([c], r) for c, r in zip(clips, rates)]).double()
    t = torch.cat([tiny.embed_text([t]) for t in texts]).double()
    alone = (a * t).sum(1) / a.norm(dim=1) / t.norm(dim=1)
    torch.testing.assert_close(together.double(), alone, rtol=0, atol=1e-6)
    assert -1.0 <= float(together.min()) and float(together.max()) <= 1.0


def test_text_embedding_is_independent_of_extra_padding(tiny):
    ids, mask = tiny.tokenize(["Hello world"])
    wide = torch.nn.functional.pad(ids, (0, 40)), torch.nn.functional.pad(mask, (0, 40))
    assert torch.equal(tiny.text_embedding(ids, mask), tiny.text_embedding(*wide))
    assert torch.equal(tiny.text_embedding(ids, mask), tiny.text_embedding(ids[:, :4], mask[:, :4]))


def test_bad_inputs(tiny):
    with pytest.raises(ValueError, match="one caption per clip"):
        msclap_scores(tiny, [torch.zeros(100)], 16000, ["a", "b"])
    with pytest.raises(ValueError, match="texts"):
        msclap_scores(tiny, [torch.zeros(100)], 16000, "a")
    with pytest.raises(ValueError, match="preds"):
        msclap_scores(tiny, [], 16000, [])
    with pytest.raises(ValueError, match="NaN"):
        msclap_scores(tiny, [torch.full((100,), float("nan"))], 16000, ["a"])
    with pytest.raises(ValueError, match="sample_rate"):
        msclap_scores(tiny, [torch.zeros(100)], 0, ["a"])
    with pytest.raises(ValueError, match="crop_starts"):
        tiny.embed_audio([torch.zeros(100)], 16000, crop_starts=[0, 1])
    with pytest.raises(ValueError, match="frames"):
        tiny.audio_embedding(torch.zeros(1, 400000))
    with pytest.raises(ValueError, match="x"):
        tiny.audio_embedding(torch.zeros(100))
    ids, mask = tiny.tokenize(["Hello world"])
    holed_ids, holed_mask = ids.clone(), mask.clone()
    holed_ids[0, 1], holed_mask[0, 1] = 0, 0
    with pytest.raises(ValueError, match="up to the pooled"):
        tiny.text_embedding(holed_ids, holed_mask)
    with pytest.raises(ValueError, match="pad id"):
        tiny.text_embedding(torch.where(mask == 0, 5, ids), mask)
    with pytest.raises(ValueError, match="non-zero id"):
        tiny.text_embedding(torch.zeros_like(ids), mask)
    with pytest.raises(ValueError, match="crop_seed"):
        MSCLAP(pretrained=False, config=tiny_msclap_config(), crop_seed=1.5)
    with pytest.raises(ValueError, match="unknown MSCLAPConfig"):
        tiny_msclap_config(depth=3)
    with pytest.raises(ValueError, match="audio_heads"):
        MSCLAPConfig(audio_embed_dim=8, audio_heads=(3, 1, 1, 1))


def test_tiny_is_deterministic_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = tiny_msclap(seed=3), tiny_msclap(seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (k, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), k
    key = "audio_encoder.projection.linear1.weight"
    assert not torch.equal(tiny_msclap(seed=4).model.state_dict()[key], a.model.state_dict()[key])
