"""CLAPScore and the CLAP backbone: golden parity (../shared/golden/clap, both protocols), front end vs transformers'
ClapFeatureExtractor, checkpoint formats, batch independence, DDP, bad inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, PreTrainedTokenizerFast

from tests.conftest import golden_path
from tests.ddp import run_ddp
from torchmetrics_av import CLAPScore
from torchmetrics_av.backbones import CLAP
from torchmetrics_av.backbones.clap import (
    AVBENCH_CHECKPOINT,
    FASTVIDEO_REPO,
    clap_waveform,
    config_from_laion_state_dict,
    fusion_crop_starts,
    laion_to_hf_state_dict,
    repeat_pad,
    small_clap_config,
)
from torchmetrics_av.weights import WeightsNotFoundError

GOLDEN_PROTOCOL = {"fastvideo": "fastvideo", "av-benchmark": "avbench"}
# README §6 tolerances: features of a port of ClapFeatureExtractor, embeddings, cosines.
FEATURES_ATOL = 1e-4
EMB_ATOL = 1e-5
COSINE_ATOL = 1e-5
# Entry counts of the real laion_clap CLAP state_dict (laion_clap code @ hkchengrex/CLAP 590b52d, transformers 5
# RobertaModel without position_ids) and of ClapModel (golden README §2).
LAION_ENTRIES = {"av-benchmark": 504, "fastvideo": 447}
HF_ENTRIES = {"av-benchmark": 555, "fastvideo": 477}


# ---------------------------------------------------------------------------------------------------------------------
# helpers


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A real transformers tokenizer (padding/truncation machinery, RoBERTa specials) whose words are ``w<id>``, so
    the golden's arbitrary token ids can be fed as text."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({f"w{i}": i for i in range(4, 50265)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def as_words(ids: torch.Tensor) -> str:
    return " ".join(f"w{i}" for i in ids.tolist())


def toy_roberta_tokenizer():
    """transformers' RobertaTokenizer (byte-level BPE) with a toy vocabulary in which "Hello world" has its real
    roberta-base ids [0, 31414, 232, 2] (the ids printed in transformers' RobertaTokenizer docstring)."""
    from transformers import RobertaTokenizer

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for b in range(256):
        chars.append(chr(b) if b in printable else chr(256 + extra))
        extra += b not in printable
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 50264}
    vocab.update({ch: 40000 + j for j, ch in enumerate(chars)})
    merges = [
        ("H", "e"),
        ("He", "l"),
        ("Hel", "l"),
        ("Hell", "o"),
        ("Ġ", "w"),
        ("Ġw", "o"),
        ("Ġwo", "r"),
        ("Ġwor", "l"),
        ("Ġworl", "d"),
    ]
    vocab.update({"".join(m): 45000 + j for j, m in enumerate(merges)})
    vocab.update({"Hello": 31414, "Ġworld": 232})
    return RobertaTokenizer(vocab=vocab, merges=merges)


def small_net(protocol: str = "fastvideo", seed: int = 0, **kwargs) -> CLAP:
    torch.manual_seed(seed)
    return CLAP(pretrained=False, protocol=protocol, config=small_clap_config(fusion=protocol == "fastvideo"), **kwargs)


def hf_to_laion(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Write a ClapModel state dict in laion_clap's names (the inverse of transformers' conversion script)."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key == "text_model.embeddings.token_type_ids":
            continue
        m = re.match(r"^(audio|text)_projection\.linear([12])\.(.*)$", key)
        if m:
            out[f"{m[1]}_projection.{0 if m[2] == '1' else 2}.{m[3]}"] = value
        elif key.startswith("text_model."):
            out["text_branch." + key[len("text_model.") :]] = value
        elif key.startswith("audio_model.audio_encoder."):
            k = "audio_branch." + key[len("audio_model.audio_encoder.") :]
            q = re.match(r"^(.*)\.attention\.self\.(query|key|value)\.(weight|bias)$", k)
            if q:
                qkv.setdefault(f"{q[1]}.attn.qkv.{q[3]}", {})[q[2]] = value
                continue
            for new, old in (
                (".attn.proj.", ".attention.output.dense."),
                (".attn.", ".attention.self."),
                (".norm1.", ".layernorm_before."),
                (".norm2.", ".layernorm_after."),
                (".mlp.fc1.", ".intermediate.dense."),
                (".mlp.fc2.", ".output.dense."),
                (".bn0.", ".batch_norm."),
            ):
                k = k.replace(old, new)
            out[k] = value
        else:
            out[key] = value
    for k, parts in qkv.items():
        out[k] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return out


def laion_extras(unused_names: list[str]) -> dict[str, torch.Tensor]:
    """laion_clap entries that have no ClapModel counterpart (classifier head, transforms, STFT kernels, masks)."""
    return {name: torch.zeros(2, 2) for name in unused_names}


# ---------------------------------------------------------------------------------------------------------------------
# goldens


@pytest.fixture(scope="module")
def golden():
    return torch.load(golden_path("clap") / "clap_golden.pt", weights_only=True)


def golden_wave(golden, clip: str) -> torch.Tensor:
    return golden["clips"][clip]["pcm16"].to(torch.float32) / 32768


def check_stats(x: torch.Tensor, stats: dict, rtol: float) -> None:
    x64 = x.to(torch.float64)
    assert x.shape[-1] == stats["n"]
    assert float(x64.sum()) == pytest.approx(stats["sum"], rel=rtol, abs=1e-9)
    assert float((x64 * x64).sum()) == pytest.approx(stats["sumsq"], rel=rtol)
    assert float(x64.abs().max()) == pytest.approx(stats["absmax"], rel=1e-12)
    torch.testing.assert_close(x64[:16], stats["head"].to(torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(x64[-16:], stats["tail"].to(torch.float64), rtol=0, atol=1e-12)


def test_fastvideo_waveforms_match_golden(golden):
    g = golden["fastvideo"]["clips"]
    for name, clip in golden["clips"].items():
        wave = clap_waveform(golden_wave(golden, name), clip["sample_rate"], "fastvideo")
        assert wave.dtype == torch.float64  # FastVideo feeds the float64 peak-normalised array to the extractor
        check_stats(wave, g[name]["peak_normalized"], rtol=1e-9)
        assert 1 + wave.shape[0] // 480 == g[name]["n_mel_frames_full"]


def test_avbench_waveforms_match_golden(golden):
    g = golden["avbench"]["clips"]
    for name, clip in golden["clips"].items():
        wave = clap_waveform(golden_wave(golden, name), clip["sample_rate"], "av-benchmark")
        check_stats(wave, g[name]["dataset_wave"], rtol=1e-6)
        check_stats(repeat_pad(wave), g[name]["repeatpad_wave"], rtol=1e-6)


def test_fusion_crops_match_golden(golden):
    g = golden["fastvideo"]["clips"]
    for name in golden["clips"]:
        if g[name]["fusion_crop_idx"]:
            assert list(fusion_crop_starts(g[name]["n_mel_frames_full"], seed=0)) == g[name]["fusion_crop_idx"]


@pytest.mark.parametrize("protocol", ["fastvideo", "av-benchmark"])
def test_features_match_golden(golden, protocol):
    gp = golden[GOLDEN_PROTOCOL[protocol]]
    net = small_net(protocol)
    names = list(golden["clips"])
    waves = [clap_waveform(golden_wave(golden, n), golden["clips"][n]["sample_rate"], protocol) for n in names]
    feats, longer = net.features(waves)
    for i, name in enumerate(names):
        ref = gp["clips"][name]["input_features"]
        if gp["clips"][name]["input_features_channels_identical"]:
            ref = ref.expand(gp["clips"][name]["input_features_n_channels"], -1, -1)
        assert feats[i].shape == ref.shape
        torch.testing.assert_close(feats[i], ref, rtol=0, atol=FEATURES_ATOL)
        assert bool(longer[i]) == gp["clips"][name]["is_longer"]


def _full_metric(golden, protocol, fill_v1):
    gp = golden[GOLDEN_PROTOCOL[protocol]]
    cfg = ClapConfig(audio_config=gp["model_config"]["audio_config"])
    net = CLAP(pretrained=False, protocol=protocol, config=cfg, tokenizer=word_tokenizer())
    fill_v1(net.model)
    return net, CLAPScore(protocol=protocol, backbone=net)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["fastvideo", "av-benchmark"])
def test_full_size_golden_parity(golden, protocol, fill_v1):
    gp = golden[GOLDEN_PROTOCOL[protocol]]
    net, metric = _full_metric(golden, protocol, fill_v1)
    assert len(net.model.state_dict()) == HF_ENTRIES[protocol]
    pairs = gp["pairs"]
    clips = [golden_wave(golden, c) for c, _ in pairs]
    rates = [golden["clips"][c]["sample_rate"] for c, _ in pairs]
    texts = [as_words(golden["texts"][t]["content_ids"]) for _, t in pairs]
    # Two updates of different sizes: the score must not depend on how the pairs are batched.
    metric.update(clips[:2], texts[:2], sample_rate=rates[:2])
    metric.update(clips[2:], texts[2:], sample_rate=rates[2:])
    value = metric.compute()

    # The metric's number: FastVideo's per-pair cosine / av-benchmark's laion_clap cosine and its mean.
    ref = gp["cosine"] if protocol == "fastvideo" else gp["cosine_laion_code"]
    torch.testing.assert_close(metric.details["score"], ref.to(torch.float64), rtol=0, atol=COSINE_ATOL)
    assert float(value) == pytest.approx(float(ref.to(torch.float64).mean()), abs=COSINE_ATOL)
    if protocol == "av-benchmark":
        assert float(value) == pytest.approx(gp["score_mean"], abs=COSINE_ATOL)

    # Intermediate embeddings (the pairs hold every golden clip once, in the order of golden["clips"]).
    assert [c for c, _ in pairs] == list(golden["clips"])
    audio = net.embed_audio([clap_waveform(c, r, protocol) for c, r in zip(clips, rates)])
    for i, (clip, _) in enumerate(pairs):
        torch.testing.assert_close(audio[i], gp["clips"][clip]["audio_emb"], rtol=0, atol=EMB_ATOL)
        if protocol == "av-benchmark":
            torch.testing.assert_close(audio[i], gp["clips"][clip]["audio_emb_laion_code"], rtol=0, atol=EMB_ATOL)
    names = list(golden["texts"])
    ids, mask = net.tokenize([as_words(golden["texts"][n]["content_ids"]) for n in names])
    text = net.embed_text_ids(ids, mask)
    for i, name in enumerate(names):
        gt = gp["texts"][name]
        n_tok = int(gt["attention_mask"].sum())
        assert ids[i, :n_tok].tolist() == gt["input_ids"][:n_tok].tolist()
        if protocol == "av-benchmark":
            assert ids.shape[1] == 77 and mask[i].tolist() == gt["attention_mask"].tolist()
            torch.testing.assert_close(text[i], gt["text_emb_laion_code"], rtol=0, atol=EMB_ATOL)
        else:
            torch.testing.assert_close(text[i], gt["text_emb"], rtol=0, atol=EMB_ATOL)
    if protocol == "fastvideo":
        # All clip x text cosines (the README's cosine_matrix).
        matrix = torch.nn.functional.normalize(audio, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).T
        torch.testing.assert_close(matrix, gp["cosine_matrix"], rtol=0, atol=COSINE_ATOL)


# ---------------------------------------------------------------------------------------------------------------------
# front end vs transformers' ClapFeatureExtractor (an independent implementation of the same spec)


@pytest.mark.parametrize("fusion", [True, False])
def test_features_match_transformers_extractor(fusion):
    extractor = ClapFeatureExtractor(
        frequency_min=50, frequency_max=14000, truncation="fusion" if fusion else "rand_trunc", padding="repeatpad"
    )
    net = small_net("fastvideo" if fusion else "av-benchmark", crop_seed=3)
    g = torch.Generator().manual_seed(0)
    # short, exactly 10 s, the 480000 < n < 480480 corner case, and two long clips (crops / random window).
    lengths = [700, 144000, 480000, 480200, 530000, 700000]
    waves = [torch.randn(n, generator=g, dtype=torch.float64) * 0.3 for n in lengths]
    feats, longer = net.features(waves)
    for i, w in enumerate(waves):
        np.random.seed(3)  # FastVideo-style batch of one, numpy seeded with the crop seed before the call
        ref = extractor(w.numpy(), sampling_rate=48000, return_tensors="pt")
        torch.testing.assert_close(feats[i], ref["input_features"][0], rtol=0, atol=FEATURES_ATOL)
        if fusion:
            assert bool(longer[i]) == bool(ref["is_longer"][0, 0])


def test_numpy_global_rng_untouched():
    net = small_net("fastvideo")
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    net.features([torch.randn(600000, dtype=torch.float64) * 0.1])
    assert np.array_equal(np.random.get_state()[1], state)


# ---------------------------------------------------------------------------------------------------------------------
# text


def test_tokenisation_of_real_prompt_matches_golden(golden):
    tok = toy_roberta_tokenizer()
    for protocol, gk in GOLDEN_PROTOCOL.items():
        net = small_net(protocol, tokenizer=ClapProcessor(ClapFeatureExtractor(), tok))  # a processor is unwrapped
        ids, mask = net.tokenize(["Hello world"])
        gt = golden[gk]["texts"]["hello_world_real"]
        assert ids[0].tolist() == gt["input_ids"].tolist()
        assert mask[0].tolist() == gt["attention_mask"].tolist()


def test_av_benchmark_truncates_to_77_tokens_fastvideo_rejects_overflow():
    tok = word_tokenizer()
    long_prompt = " ".join(["w500"] * 600)
    ids, mask = small_net("av-benchmark", tokenizer=tok).tokenize([long_prompt, "w7"])
    assert ids.shape == (2, 77) and ids[0, 0] == 0 and ids[0, 76] == 2 and int(mask[0].sum()) == 77
    assert ids[1, :3].tolist() == [0, 7, 2] and ids[1, 3:].eq(1).all() and int(mask[1].sum()) == 3
    ok = " ".join(["w500"] * 510)  # 512 tokens with <s> and </s>: the longest RoBERTa can position
    assert small_net("fastvideo", tokenizer=tok).tokenize([ok])[0].shape == (1, 512)
    metric = CLAPScore(sample_rate=48000, backbone=small_net("fastvideo"), tokenizer=tok)
    with pytest.raises(ValueError, match=r"`target\[1\]` has 602 tokens"):
        metric.update(torch.randn(2, 4800) * 0.1, ["w5", long_prompt])


def test_text_padding_does_not_change_embeddings():
    net = small_net("fastvideo", tokenizer=word_tokenizer())
    prompts = ["w10 w11 w12", "w13", " ".join(f"w{i}" for i in range(20, 60))]
    together = net.embed_text(prompts)
    alone = torch.cat([net.embed_text([p]) for p in prompts])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-6)


def test_av_benchmark_uses_laion_text_layer_norm_eps():
    net = small_net("av-benchmark")
    text_eps = {m.eps for m in net.model.text_model.modules() if isinstance(m, torch.nn.LayerNorm)}
    audio_eps = {m.eps for m in net.model.audio_model.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert text_eps == {1e-5} and audio_eps == {1e-5}
    fv = small_net("fastvideo")
    assert {m.eps for m in fv.model.text_model.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-12}
    assert {
        m.eps
        for m in small_net("av-benchmark", text_layer_norm_eps=1e-12).model.text_model.modules()
        if isinstance(m, torch.nn.LayerNorm)
    } == {1e-12}


# ---------------------------------------------------------------------------------------------------------------------
# checkpoint formats


@pytest.mark.parametrize("protocol", ["fastvideo", "av-benchmark"])
def test_laion_key_mapping_full_size_manifest(protocol, golden):
    with torch.device("meta"):
        hf = ClapModel(ClapConfig(audio_config=golden[GOLDEN_PROTOCOL[protocol]]["model_config"]["audio_config"]))
    hf_state = hf.state_dict()
    laion = hf_to_laion(hf_state)
    laion.pop("text_branch.embeddings.position_ids")  # transformers >= 4.31 RobertaModel has no such entry
    # Shifted-window masks live in the odd blocks of every stage but the last (whose resolution is one window).
    depths = hf.config.audio_config.depths
    masks = [f"audio_branch.layers.{s}.blocks.{b}.attn_mask" for s, d in enumerate(depths[:-1]) for b in range(1, d, 2)]
    unused = [k for k in golden["avbench"]["laion_unmapped_keys"] if not k.endswith("attn_mask")] + masks
    if protocol == "av-benchmark":
        assert sorted(unused) == sorted(golden["avbench"]["laion_unmapped_keys"])
    laion.update(laion_extras(unused))
    assert len(laion) == LAION_ENTRIES[protocol]
    renamed, dropped = laion_to_hf_state_dict({"state_dict": {"module." + k: v for k, v in laion.items()}})
    assert sorted(dropped) == sorted(unused)
    assert set(renamed) == set(hf_state) - {
        "text_model.embeddings.position_ids",
        "text_model.embeddings.token_type_ids",
    }
    assert all(renamed[k].shape == hf_state[k].shape for k in renamed)
    cfg = config_from_laion_state_dict(renamed)
    ref = hf.config.audio_config
    for attr in (
        "enable_fusion",
        "patch_embeds_hidden_size",
        "depths",
        "num_attention_heads",
        "window_size",
        "hidden_size",
    ):
        assert list(np.atleast_1d(getattr(cfg.audio_config, attr))) == list(np.atleast_1d(getattr(ref, attr))), attr
    assert cfg.text_config.num_hidden_layers == 12 and cfg.text_config.num_attention_heads == 12


@pytest.mark.parametrize("protocol", ["fastvideo", "av-benchmark"])
def test_load_official_laion_pt(tmp_path, protocol):
    src = small_net(protocol, seed=1)
    laion = hf_to_laion(src.model.state_dict())
    laion.update(
        laion_extras(
            [
                "audio_branch.head.weight",
                "audio_transform.sequential.0.weight",
                "audio_branch.layers.0.blocks.1.attn_mask",
                "audio_branch.logmel_extractor.melW",
            ]
        )
    )
    path = tmp_path / AVBENCH_CHECKPOINT.filename
    torch.save({"epoch": 15, "state_dict": {"module." + k: v for k, v in laion.items()}}, path)
    net = CLAP(weights=path, protocol=protocol, config=small_clap_config(fusion=protocol == "fastvideo"))
    for k, v in src.model.state_dict().items():
        assert torch.equal(net.model.state_dict()[k], v), k
    assert net.checkpoint_id.startswith(AVBENCH_CHECKPOINT.filename + "@sha256:")
    wave = [torch.randn(96000, dtype=torch.float64) * 0.1]
    torch.testing.assert_close(net.embed_audio(wave), src.embed_audio(wave), rtol=0, atol=0)
    # Wrong architecture and foreign keys are errors, not silent partial loads.
    with pytest.raises(ValueError, match="does not match the CLAP architecture"):
        CLAP(weights=path, protocol=protocol, config=small_clap_config(fusion=protocol != "fastvideo"))
    torch.save({"state_dict": {**laion, "audio_branch.new_layer.weight": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match=r"unexpected \['audio_model.audio_encoder.new_layer.weight'\]"):
        CLAP(weights=path, protocol=protocol, config=small_clap_config(fusion=protocol == "fastvideo"))
    torch.save({"state_dict": {**laion, "decoder.weight": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="not a laion_clap checkpoint"):
        CLAP(weights=path, protocol=protocol)


def test_load_from_pretrained_dir_and_state_dict_file(tmp_path):
    src = small_net("av-benchmark", seed=2)
    src.model.save_pretrained(tmp_path / "ckpt")
    word_tokenizer().save_pretrained(tmp_path / "ckpt")
    net = CLAP(weights=tmp_path / "ckpt", protocol="av-benchmark")
    for k, v in src.model.state_dict().items():
        assert torch.equal(net.model.state_dict()[k], v), k
    assert net.tokenize(["w9 w8"])[0][0, :4].tolist() == [0, 9, 8, 2]  # tokenizer found in the folder
    assert {m.eps for m in net.model.text_model.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-5}
    # A bare ClapModel state dict (HF names) with an explicit config.
    torch.save(src.model.state_dict(), tmp_path / "clap.pt")
    net2 = CLAP(weights=tmp_path / "clap.pt", protocol="av-benchmark", config=small_clap_config(fusion=False))
    wave = [torch.randn(48000) * 0.1]
    torch.testing.assert_close(net2.embed_audio(wave), src.embed_audio(wave), rtol=0, atol=0)


def test_offline_errors_name_the_file_and_the_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCHMETRICS_AV_CACHE", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=re.escape(FASTVIDEO_REPO) + ".*weights="):
        CLAP(protocol="fastvideo")
    with pytest.raises(WeightsNotFoundError, match=re.escape(AVBENCH_CHECKPOINT.filename) + ".*weights="):
        CLAP(protocol="av-benchmark")
    with pytest.raises(WeightsNotFoundError, match="laion/larger_clap_general.*weights="):
        CLAP(protocol="av-benchmark", hub_repo="laion/larger_clap_general")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        CLAP(weights=tmp_path / "missing.pt")
    with pytest.raises(WeightsNotFoundError, match="tokenizer="):
        small_net("av-benchmark").tokenize(["a dog barks"])


# ---------------------------------------------------------------------------------------------------------------------
# metric behaviour


def _clips(n_long: int = 2, short_s: tuple[int, ...] = (1, 3, 7, 10)):
    g = torch.Generator().manual_seed(5)
    clips = [torch.randn(16000 * s, generator=g) * 0.2 for s in short_s]
    clips += [torch.randn(2, 16000 * 12 + 37 * k, generator=g) * 0.2 for k in range(n_long)]  # > 10 s: fusion crops
    texts = [f"w{100 + i} w{7 * i + 5} w42" for i in range(len(clips))]
    return clips, texts


@pytest.mark.parametrize("protocol", ["fastvideo", "av-benchmark"])
def test_batch_composition_does_not_change_scores(protocol):
    clips, texts = _clips()
    net = small_net(protocol)
    batched = CLAPScore(sample_rate=16000, protocol=protocol, backbone=net, tokenizer=word_tokenizer())
    batched.update(clips, texts)
    value = batched.compute()
    single = CLAPScore(sample_rate=16000, protocol=protocol, backbone=net, tokenizer=word_tokenizer(), batch_size=1)
    for i in reversed(range(len(clips))):
        single.update([clips[i]], [texts[i]])
    single.compute()
    torch.testing.assert_close(batched.per_sample()["score"], single.per_sample()["score"].flip(0), rtol=0, atol=1e-6)
    assert float(value) == pytest.approx(float(single.compute()), abs=1e-7)
    if protocol == "fastvideo":
        waves = [clap_waveform(c[None] if c.ndim == 1 else c, 16000, protocol) for c in clips]
        assert net.features(waves)[1].all()  # FastVideo's batch of one: every clip goes through the fusion branch


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric CLAPScore was called before")
def test_cosine_and_mean_by_independent_formula():
    clips, texts = _clips(n_long=1)
    net = small_net("fastvideo", tokenizer=word_tokenizer())
    metric = CLAPScore(sample_rate=16000, backbone=net)
    metric.update(clips[:3], texts[:3])
    metric.update(clips[3:], texts[3:])
    value = metric.compute()
    audio = net.embed_audio([clap_waveform(c[None] if c.ndim == 1 else c, 16000, "fastvideo") for c in clips])
    text = net.embed_text(texts)
    expected = (audio.double() * text.double()).sum(-1) / (audio.double().norm(dim=-1) * text.double().norm(dim=-1))
    torch.testing.assert_close(metric.per_sample()["score"], expected, rtol=0, atol=1e-6)
    assert float(value) == pytest.approx(float(expected.mean()), abs=1e-6)
    assert value.dtype == torch.float64 and metric.details["n_samples"] == len(clips)
    assert metric.details["n_skipped_silent"] == 0
    assert not any(k.startswith(("backbone", "_backbone")) for k in metric.state_dict())
    assert not any(p.requires_grad for p in net.parameters())
    metric.reset()
    with pytest.raises(ValueError, match="no scored samples"):
        metric.compute()


def test_crop_seed_only_affects_clips_longer_than_10s():
    g = torch.Generator().manual_seed(1)
    short, long = torch.randn(400000, generator=g) * 0.1, torch.randn(700000, generator=g) * 0.1
    a = small_net("fastvideo", crop_seed=0).features([short, long])[0]
    b = small_net("fastvideo", crop_seed=1).features([short, long])[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1, 0], b[1, 0])  # repeat-padded clip; whole-clip channel
    assert not torch.equal(a[1, 1:], b[1, 1:])  # the three crops


def test_silence_policy():
    tok = word_tokenizer()
    silent, loud = torch.zeros(1, 32000), torch.randn(1, 32000) * 0.1
    fv = CLAPScore(sample_rate=16000, backbone=small_net("fastvideo"), tokenizer=tok)
    fv.update([loud, silent, loud], ["w5", "w6", "w7"])
    value = fv.compute()
    assert torch.isfinite(value)
    assert fv.details["n_skipped_silent"] == 1 and fv.details["skipped_ids"].tolist() == [-1]
    assert fv.details["score"].shape == (2,) and fv.details["n_samples"] == 2
    with pytest.warns(FutureWarning, match="scored"):
        assert fv.details["scored"].tolist() == [True, False, True]  # deprecated: one flag per clip seen
    only_silent = CLAPScore(sample_rate=16000, backbone=small_net("fastvideo"), tokenizer=tok)
    only_silent.update([silent], ["w5"])
    with pytest.raises(ValueError, match="1 silent clips skipped"):
        only_silent.compute()
    av = CLAPScore(sample_rate=16000, protocol="av-benchmark", backbone=small_net("av-benchmark"), tokenizer=tok)
    av.update([silent], ["w5"])
    assert torch.isfinite(av.compute()) and av.details["n_skipped_silent"] == 0


def test_repeated_ids_are_counted_once():
    clips, texts = _clips(n_long=0, short_s=(1, 2, 3))
    clips.append(torch.zeros(1, 16000))  # a silent clip: skipped, and its repeat must not count twice either
    texts.append("w9")
    net, tok = small_net("fastvideo"), word_tokenizer()
    plain = CLAPScore(sample_rate=16000, backbone=net, tokenizer=tok)
    plain.update(clips, texts)
    expected = plain.compute()
    # Two "ranks" of a DistributedSampler-like split: ids 2, 0 | 3, 1, 0, 3 (ids 0 and 3 repeated), in any order.
    order = [2, 0, 3, 1, 0, 3]
    with_ids = CLAPScore(sample_rate=16000, backbone=net, tokenizer=tok)
    with_ids.update([clips[i] for i in order[:2]], [texts[i] for i in order[:2]], ids=order[:2])
    with_ids.update([clips[i] for i in order[2:]], [texts[i] for i in order[2:]], ids=torch.tensor(order[2:]))
    value = with_ids.compute()
    assert float(value) == pytest.approx(float(expected), abs=1e-6)  # float32 batch-composition noise
    rows, plain_rows = with_ids.per_sample(), plain.per_sample()
    torch.testing.assert_close(rows["score"], plain_rows["score"], rtol=0, atol=1e-6)
    assert rows["ids"].tolist() == [0, 1, 2]  # sorted by id; id 3 is the silent clip
    assert with_ids.details["skipped_ids"].tolist() == [3] and plain.details["skipped_ids"].tolist() == [-1]
    assert with_ids.details["n_duplicates_dropped"] == 2 and with_ids.details["n_skipped_silent"] == 1
    assert with_ids.details["n_samples"] == plain.details["n_samples"] == 3  # scored clips only
    assert plain_rows["ids"].tolist() == [-1, -1, -1] and plain.details["n_duplicates_dropped"] == 0
    with pytest.raises(ValueError, match="`ids` must hold one integer per sample"):
        with_ids.update(clips[:2], texts[:2], ids=[0])
    with pytest.raises(ValueError, match="`ids` must be non-negative"):
        with_ids.update(clips[:2], texts[:2], ids=[0, -3])


def test_bad_inputs():
    metric = CLAPScore(sample_rate=16000, backbone=small_net("fastvideo"), tokenizer=word_tokenizer())
    audio = torch.randn(2, 16000) * 0.1
    with pytest.raises(ValueError, match=r"`target` has 1 texts for 2 clips"):
        metric.update(audio, ["w5"])
    with pytest.raises(ValueError, match=r"`target\[1\]` is empty"):
        metric.update(audio, ["w5", "  "])
    with pytest.raises(ValueError, match=r"`target\[0\]` must be a string"):
        metric.update(audio, [5, 6])
    with pytest.raises(ValueError, match=r"`target` must be a list of strings, one per sample, got a bare str"):
        metric.update(audio[:1], "w5")
    with pytest.raises(ValueError, match=r"`preds\[0\]` contains NaN"):
        metric.update(torch.full((1, 100), float("nan")), ["w5"])
    with pytest.raises(ValueError, match="`sample_rate` is required"):
        CLAPScore(backbone=small_net("fastvideo")).update(audio, ["w5", "w6"])
    with pytest.raises(ValueError, match="`backbone` was built for protocol 'fastvideo'"):
        CLAPScore(protocol="av-benchmark", backbone=small_net("fastvideo"))
    with pytest.raises(ValueError, match="`protocol` must be one of"):
        CLAPScore(protocol="laion")
    with pytest.raises(ValueError, match="`sample_rate` must hold positive integer"):
        CLAPScore(sample_rate=-5)


# ---------------------------------------------------------------------------------------------------------------------
# DDP


def _ddp_worker(rank: int, world: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    clips, texts = _clips(n_long=1, short_s=(1, 3))
    metric = CLAPScore(sample_rate=16000, backbone=small_net("fastvideo"), tokenizer=word_tokenizer())
    half = (len(clips) + 1) // 2
    mine = slice(0, half) if rank == 0 else slice(half, None)
    metric.update(clips[mine] + [torch.zeros(1, 800)] * rank, texts[mine] + ["w9"] * rank)  # rank 1: one silent clip
    value = metric.compute()
    return float(value), metric.per_sample()["score"], metric.details["skipped_ids"]


@pytest.mark.ddp
def test_ddp_matches_single_process():
    results = run_ddp(_ddp_worker, 2)
    clips, texts = _clips(n_long=1, short_s=(1, 3))
    single = CLAPScore(sample_rate=16000, backbone=small_net("fastvideo"), tokenizer=word_tokenizer())
    single.update(clips + [torch.zeros(1, 800)], texts + ["w9"])
    value = float(single.compute())
    for rank_value, cosine, skipped in results:
        assert rank_value == pytest.approx(value, abs=1e-6)
        torch.testing.assert_close(cosine, single.details["score"], rtol=0, atol=1e-6)  # rank 0's samples first
        assert skipped.tolist() == single.details["skipped_ids"].tolist() == [-1]
