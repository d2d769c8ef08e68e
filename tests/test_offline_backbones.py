"""Every backbone end to end through the checkpoint table: ``download`` from a ``file://`` mirror served through
``$TORCHMETRICS_AV_MIRROR`` (a login node), then ``TORCHMETRICS_AV_OFFLINE=1`` with every network call refused (a
compute node), and the backbone builds from the weights folder with the mirror's exact weights.

The mirror holds tiny models in each publisher's layout: the file names of the table, the containers of the official
files (openai-whisper's ``{"dims", "model_state_dict"}``, laion_clap's training state, PANNs' ``{"model"}``, ...),
``save_pretrained`` folders with tokenizer files, FunASR model folders (``config.yaml``, ``configuration.json``,
``am.mvn``, sentencepiece model) and a hub snapshot with its manifest. The table is the real one with each published
digest and size replaced by those of the tiny file; the GPT-2 rank file is served with its real bytes (openai-whisper
bundles them) and keeps its real digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import socket
import urllib.request
from pathlib import Path

import pytest
import torch

from torchmetrics_av import weights
from torchmetrics_av.downloads import DOWNLOADED, download
from torchmetrics_av.weights import CHECKPOINTS, GROUPS, SNAPSHOT_MANIFEST, Checkpoint, checkpoint

# The backbone groups whose files the mirror serves (every backbone of torchmetrics_av.backbones).
BACKBONE_GROUPS = (
    "passt",
    "clap-fastvideo",
    "clap-av-benchmark",
    "whisper",
    "hf-whisper",
    "glm-asr",
    "sensevoice",
    "audiobox",
    "imagebind",
    "synchformer",
    "panns",
    "vggish",
    "msclap",
)
PASST_TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2}
# openai-whisper "base" keeps its layer and head counts (its alignment heads are set for that shape), width 64.
WHISPER_TINY_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 64,
    "n_audio_head": 8,
    "n_audio_layer": 6,
    "n_vocab": 51865,
    "n_text_ctx": 448,
    "n_text_state": 64,
    "n_text_head": 8,
    "n_text_layer": 6,
}
PANNS_TINY = {"channels": (4, 8, 8, 16, 16, 32)}
VGGISH_TINY = {"widths": (4, 8, 8, 16), "hidden": 32}
# Kaldi-nnet CMVN width of each FunASR front end: 80 mel bins x the LFR stack (SenseVoice 7, FSMN-VAD 5).
SENSEVOICE_CMVN_DIM, VAD_CMVN_DIM = 80 * 7, 80 * 5


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same_state(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = module.state_dict()
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(got[k], v), k


def _json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _toy_tokenizer_files(folder: Path, *, with_config: bool) -> None:
    """A toy RoBERTa byte-level BPE in the hub's file set: vocab.json, merges.txt, tokenizer.json (+ the
    tokenizer_config.json / special_tokens_map.json of a from_pretrained folder, or roberta-base's config.json)."""
    from tests.test_clap import toy_roberta_tokenizer

    tok = toy_roberta_tokenizer()
    tok.save_pretrained(folder)  # tokenizer.json + tokenizer_config.json
    model = json.loads((folder / "tokenizer.json").read_text())["model"]
    _json(folder / "vocab.json", model["vocab"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    if with_config:
        # FacebookAI/roberta-base has no tokenizer_config.json: AutoTokenizer picks the class from config.json.
        (folder / "tokenizer_config.json").unlink()
        _json(folder / "config.json", {"model_type": "roberta"})
    else:
        specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
        _json(folder / "special_tokens_map.json", {**specials, "mask_token": "<mask>"})


def _cmvn(dim: int) -> str:
    """A Kaldi-nnet am.mvn (the format FunASR's load_cmvn reads) with shift 0 and scale 1."""
    zeros, ones = " ".join(["0"] * dim), " ".join(["1"] * dim)
    return (
        f"<Nnet>\n<Splice> {dim} {dim}\n[ 0 ]\n<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {zeros} ]\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {ones} ]\n</Nnet>\n"
    )


def _funasr_folder(folder: Path, config: dict, state: dict, cmvn_dim: int, bpe: tuple[str, Path] | None) -> None:
    """A FunASR hub model folder: config.yaml, model.pt, am.mvn and the configuration.json naming them."""
    import yaml

    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(state, folder / "model.pt")
    (folder / "am.mvn").write_text(_cmvn(cmvn_dim))
    metas: dict = {"init_param": "model.pt", "config": "config.yaml", "frontend_conf": {"cmvn_file": "am.mvn"}}
    if bpe is not None:
        shutil.copyfile(bpe[1], folder / bpe[0])
        metas["tokenizer_conf"] = {"bpemodel": bpe[0]}
    configuration = {"framework": "pytorch", "model": {"type": "funasr"}, "file_path_metas": metas}
    _json(folder / "configuration.json", configuration)


def _write_mirror(root: Path, tmp: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Write every backbone's tiny files into ``root``; returns the weights each backbone must end up with."""
    from safetensors.torch import save_file

    from tests.test_audiobox import SMALL_ENCODER, SMALL_MODEL
    from tests.test_clap import hf_to_laion
    from tests.test_imagebind import SMALL as IMAGEBIND_TINY
    from tests.test_synchformer import TINY as SYNCHFORMER_TINY
    from torchmetrics_av.backbones import CLAP, PaSST, Synchformer
    from torchmetrics_av.backbones.audiobox import Audiobox
    from torchmetrics_av.backbones.clap import small_clap_config
    from torchmetrics_av.backbones.glm_asr import tiny_glm_asr
    from torchmetrics_av.backbones.hf_whisper import tiny_hf_whisper
    from torchmetrics_av.backbones.imagebind import ImageBind
    from torchmetrics_av.backbones.msclap import tiny_msclap
    from torchmetrics_av.backbones.msclap.tokenizer import whisper_bpe_file
    from torchmetrics_av.backbones.panns import tiny_panns
    from torchmetrics_av.backbones.sensevoice import tiny_sensevoice
    from torchmetrics_av.backbones.vggish import tiny_vggish

    def at(name: str) -> Path:
        path = root / checkpoint(name).filename
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    torch.manual_seed(0)
    expected: dict[str, dict[str, torch.Tensor]] = {}

    net = PaSST(pretrained=False, **PASST_TINY)
    torch.save(net.model.state_dict(), at("passt_s_swa_p16_128_ap476"))
    expected["passt"] = _state(net.model)

    # laion_clap's published layout: training state around "module."-prefixed laion names.
    clap = CLAP(pretrained=False, protocol="av-benchmark", config=small_clap_config(fusion=False))
    laion = {"module." + k: v for k, v in hf_to_laion(clap.model.state_dict()).items()}
    torch.save({"epoch": 15, "state_dict": laion}, at("laion_clap_music_speech_audioset_epoch_15_esc_89.98"))
    _toy_tokenizer_files(root / "roberta-base", with_config=True)
    expected["clap-av-benchmark"] = _state(clap.model)

    fused = CLAP(pretrained=False, protocol="fastvideo", config=small_clap_config(fusion=True))
    fused.model.save_pretrained(root / "clap-htsat-fused")  # config.json + model.safetensors
    from transformers import ClapFeatureExtractor

    ClapFeatureExtractor().to_json_file(root / "clap-htsat-fused" / "preprocessor_config.json")
    _toy_tokenizer_files(root / "clap-htsat-fused", with_config=False)
    expected["clap-fastvideo"] = _state(fused.model)

    import whisper

    model = whisper.model.Whisper(whisper.model.ModelDimensions(**WHISPER_TINY_DIMS))
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0.0, 0.02)  # torch.empty in openai-whisper
    torch.save({"dims": WHISPER_TINY_DIMS, "model_state_dict": model.state_dict()}, at("whisper-base"))
    expected["whisper"] = _state(model)

    hf = tiny_hf_whisper()
    folder = root / "whisper-base"
    folder.mkdir()
    hf.model.config.to_json_file(folder / "config.json")
    # The hub's model.safetensors stores the tied output projection once, as the token embedding.
    state = {k: v.clone().contiguous() for k, v in hf.model.state_dict().items() if k != "proj_out.weight"}
    save_file(state, str(folder / "model.safetensors"))
    hf.model.generation_config.to_json_file(folder / "generation_config.json")
    hf.processor.feature_extractor.to_json_file(folder / "preprocessor_config.json")
    for c in CHECKPOINTS.values():  # the tokenizer files, which HFWhisper does not read (it builds its own)
        if c.filename.startswith("whisper-base/") and not (root / c.filename).exists():
            (root / c.filename).write_text("{}\n")
    expected["hf-whisper"] = _state(hf.model)

    aes = Audiobox(pretrained=False, encoder_config=SMALL_ENCODER, model_config=SMALL_MODEL)
    aes.model.save_pretrained(root / "audiobox-aesthetics")  # config.json + model.safetensors
    expected["audiobox"] = _state(aes.model)

    ib = ImageBind(pretrained=False, **IMAGEBIND_TINY)
    torch.save(ib.model.state_dict(), at("imagebind_huge"))
    expected["imagebind"] = _state(ib.model)

    sf = Synchformer(pretrained=False, **SYNCHFORMER_TINY)
    torch.save(sf.model.state_dict(), at("synchformer_24-01-04T16-39-21"))
    expected["synchformer"] = _state(sf.model)

    panns = tiny_panns()
    torch.save({"iteration": 600000, "model": panns.model.state_dict()}, at("panns_cnn14_16k_map0.438"))
    expected["panns"] = _state(panns.model)

    vggish = tiny_vggish()
    torch.save(vggish.model.state_dict(), at("vggish-10086976"))
    expected["vggish"] = _state(vggish.model)

    ms = tiny_msclap()
    torch.save({"model": ms.model.state_dict()}, at("msclap-2023"))
    shutil.copyfile(whisper_bpe_file(), at("gpt2_bpe_r50k_base"))  # the real bytes: the tokenizer checks them
    expected["msclap"] = _state(ms.model)

    glm = tiny_glm_asr(max_new_tokens=2)
    snap = root / checkpoint("zai-org/GLM-ASR-Nano-2512").filename
    glm.model.save_pretrained(snap)
    glm.processor.save_pretrained(snap)
    listing = [
        {
            "path": p.name,
            "size": p.stat().st_size,
            # The hub lists an LFS SHA-256 for the weights, none for small text files.
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest() if p.suffix == ".safetensors" else None,
        }
        for p in sorted(snap.iterdir())
    ]
    _json(snap / SNAPSHOT_MANIFEST, {"repo": "zai-org/GLM-ASR-Nano-2512", "revision": "main", "files": listing})
    expected["glm-asr"] = _state(glm.model)

    sv = tiny_sensevoice(tmp / "sensevoice-src")
    kw, vad_kw = sv.pipeline.kwargs, sv.pipeline.vad_kwargs
    fbank = {k: kw["frontend_conf"][k] for k in ("fs", "window", "n_mels", "frame_length", "frame_shift")}
    sv_config = {
        "model": "SenseVoiceSmall",
        "model_conf": dict(kw["model_conf"]),
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": dict(kw["encoder_conf"]),
        "tokenizer": "SentencepiecesTokenizer",
        "tokenizer_conf": {"bpemodel": None, "unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontend",
        "frontend_conf": {**fbank, "lfr_m": 7, "lfr_n": 6, "cmvn_file": None},
    }
    vad_config = {
        "model": "FsmnVADStreaming",
        "model_conf": dict(vad_kw["model_conf"]),
        "encoder": "FSMN",
        "encoder_conf": dict(vad_kw["encoder_conf"]),
        "frontend": "WavFrontendOnline",
        "frontend_conf": {**fbank, "lfr_m": 5, "lfr_n": 1, "cmvn_file": None},
    }
    bpe = ("chn_jpn_yue_eng_ko_spectok.bpe.model", tmp / "sensevoice-src" / "toy.model")
    _funasr_folder(root / "SenseVoiceSmall", sv_config, sv.model.state_dict(), SENSEVOICE_CMVN_DIM, bpe)
    _funasr_folder(root / "fsmn-vad", vad_config, sv.vad_model.state_dict(), VAD_CMVN_DIM, None)
    expected["sensevoice"] = _state(sv.model)
    expected["sensevoice-vad"] = _state(sv.vad_model)
    return expected


def _mirror_table(root: Path) -> dict[str, Checkpoint]:
    """The real table, each published digest / size replaced by the tiny file's (the GPT-2 file keeps its own)."""
    table = {}
    for c in CHECKPOINTS.values():
        path = root / c.filename
        if c.snapshot or not path.is_file() or c.name == "gpt2_bpe_r50k_base":
            table[c.name] = c
            continue
        data = path.read_bytes()
        changes: dict = {}
        if c.sha256:
            changes["sha256"] = hashlib.sha256(data).hexdigest()
        if c.md5:
            changes["md5"] = hashlib.md5(data).hexdigest()
        if c.size is not None:
            changes["size"] = len(data)
        table[c.name] = dataclasses.replace(c, **changes)
    return table


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """``download`` of every backbone group from the mirror, through the environment, into a fresh weights folder."""
    tmp = tmp_path_factory.mktemp("offline-backbones")
    root = tmp / "mirror"
    root.mkdir()
    expected = _write_mirror(root, tmp)
    table = _mirror_table(root)
    wdir = tmp / "weights"
    with pytest.MonkeyPatch.context() as mp:
        for env in ("HF_HUB_OFFLINE", "TORCHMETRICS_AV_OFFLINE", "HF_ENDPOINT"):
            mp.delenv(env, raising=False)
        mp.setenv("TORCHMETRICS_AV_MIRROR", root.as_uri())
        mp.setenv("TORCHMETRICS_AV_CACHE", str(wdir))
        mp.setattr(weights, "CHECKPOINTS", table)
        rows = download(BACKBONE_GROUPS, progress=False)
    assert {r.status for r in rows} == {DOWNLOADED}, [r for r in rows if r.status != DOWNLOADED]
    return wdir, table, expected


@pytest.fixture
def offline(filled, monkeypatch):
    """A compute node: the filled folder as the cache, offline mode on, no mirror, every connection refused."""
    wdir, table, expected = filled

    def refuse(*args, **kwargs):
        raise AssertionError(f"a network call was attempted: {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    import huggingface_hub
    import transformers.utils.hub as tf_hub

    for name in ("hf_hub_download", "snapshot_download"):
        monkeypatch.setattr(huggingface_hub, name, refuse)
        if hasattr(tf_hub, name):
            monkeypatch.setattr(tf_hub, name, refuse)
    monkeypatch.delenv("TORCHMETRICS_AV_MIRROR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TORCHMETRICS_AV_OFFLINE", "1")
    monkeypatch.setenv("TORCHMETRICS_AV_CACHE", str(wdir))
    monkeypatch.setattr(weights, "CHECKPOINTS", table)
    return wdir, expected


def test_download_fills_the_table_layout(filled):
    wdir, table, _ = filled
    for group in BACKBONE_GROUPS:
        for name in GROUPS[group]:
            c = table[name]
            assert (wdir / c.filename / SNAPSHOT_MANIFEST if c.snapshot else wdir / c.filename).is_file(), name
    assert weights.missing_checkpoints(BACKBONE_GROUPS, wdir, table=table) == []


def test_passt(offline):
    from torchmetrics_av.backbones import PaSST

    _, expected = offline
    _assert_same_state(PaSST(**PASST_TINY).model, expected["passt"])


def test_clap_av_benchmark_and_its_roberta_tokenizer(offline):
    from torchmetrics_av.backbones import CLAP
    from torchmetrics_av.backbones.clap import small_clap_config

    wdir, expected = offline
    net = CLAP(protocol="av-benchmark", config=small_clap_config(fusion=False))
    _assert_same_state(net.model, expected["clap-av-benchmark"])
    ids, _ = net.tokenize(["Hello world"])  # roberta-base/ from the folder: the toy vocabulary's ids
    assert ids[0, :4].tolist() == [0, 31414, 232, 2]


def test_clap_fastvideo_folder_and_tokenizer(offline):
    from torchmetrics_av.backbones import CLAP

    wdir, expected = offline
    net = CLAP(protocol="fastvideo")
    _assert_same_state(net.model, expected["clap-fastvideo"])
    assert net.tokenize(["Hello world"])[0].tolist() == [[0, 31414, 232, 2]]
    assert not (wdir / "hub").exists()  # nothing went through the Hugging Face hub cache


def test_openai_whisper(offline):
    from torchmetrics_av.backbones import Whisper

    _, expected = offline
    asr = Whisper(name="base")
    _assert_same_state(asr.model, expected["whisper"])
    assert asr.checkpoint_id.startswith("whisper-base@sha256:")


def test_hf_whisper(offline):
    from torchmetrics_av.backbones import HFWhisper

    _, expected = offline
    asr = HFWhisper(max_new_tokens=2)
    _assert_same_state(asr.model, expected["hf-whisper"])
    assert asr.checkpoint_id.startswith("whisper-base/model.safetensors@sha256:")


def test_audiobox(offline):
    from tests.test_audiobox import SMALL_ENCODER
    from torchmetrics_av.backbones.audiobox import Audiobox

    _, expected = offline
    _assert_same_state(Audiobox(encoder_config=SMALL_ENCODER).model, expected["audiobox"])


def test_imagebind(offline):
    from tests.test_imagebind import SMALL
    from torchmetrics_av.backbones.imagebind import ImageBind

    _, expected = offline
    _assert_same_state(ImageBind(**SMALL).model, expected["imagebind"])


def test_synchformer(offline):
    from tests.test_synchformer import TINY
    from torchmetrics_av.backbones import Synchformer

    _, expected = offline
    _assert_same_state(Synchformer(**TINY).model, expected["synchformer"])


def test_panns_and_vggish(offline):
    from torchmetrics_av.backbones.panns import PANNs
    from torchmetrics_av.backbones.vggish import VGGish

    _, expected = offline
    _assert_same_state(PANNs(**PANNS_TINY).model, expected["panns"])
    _assert_same_state(VGGish(**VGGISH_TINY).model, expected["vggish"])


def test_msclap_and_its_gpt2_rank_file(offline):
    from torchmetrics_av.backbones.msclap import MSCLAP, tiny_msclap_config

    wdir, expected = offline
    net = MSCLAP(config=tiny_msclap_config())
    _assert_same_state(net.model, expected["msclap"])
    assert net.tokenizer.bpe_file == wdir / "r50k_base.tiktoken"  # the table's copy, not openai-whisper's
    assert net.tokenizer.gpt2_encode("Hello world") == [15496, 995]


def test_glm_asr_snapshot(offline):
    from torchmetrics_av.backbones.glm_asr import GLMASR

    _, expected = offline
    asr = GLMASR(max_new_tokens=2)
    _assert_same_state(asr.model, expected["glm-asr"])
    assert len(asr.transcribe([0.1 * torch.randn(16000)])) == 1


def test_sensevoice_funasr_folders(offline):
    from torchmetrics_av.backbones.sensevoice import SenseVoice

    _, expected = offline
    asr = SenseVoice()
    _assert_same_state(asr.model, expected["sensevoice"])
    _assert_same_state(asr.vad_model, expected["sensevoice-vad"])
    assert len(asr.transcribe([0.1 * torch.randn(16000)])) == 1


def test_offline_error_lists_every_missing_file_of_a_folder(offline, tmp_path, monkeypatch):
    from torchmetrics_av.backbones import CLAP

    wdir, _ = offline
    monkeypatch.setenv("TORCHMETRICS_AV_CACHE", str(tmp_path))  # an empty folder this time
    with pytest.raises(weights.WeightsNotFoundError) as err:
        CLAP(protocol="fastvideo")
    message = str(err.value)
    for name in GROUPS["clap-fastvideo"]:
        assert checkpoint(name).filename in message and checkpoint(name).source in message
    assert f"download --weights-dir {tmp_path} clap-fastvideo" in message and "weights=" in message


def test_cli_weights_dir_is_the_table_layout(offline, tmp_path):
    """`torchmetrics-av evaluate --weights-dir DIR` offline reads DIR as `download` wrote it, verified by the table."""
    import soundfile as sf

    from torchmetrics_av.cli import main

    wdir, _ = offline
    gen = tmp_path / "gen"
    gen.mkdir()
    rng = torch.Generator().manual_seed(0)
    for stem in ("a", "b"):
        sf.write(gen / f"{stem}.wav", (0.1 * torch.randn(16000, generator=rng)).numpy(), 16000)
    texts = tmp_path / "t.json"
    texts.write_text(json.dumps({"a": "one two", "b": "three"}))
    out = tmp_path / "w.json"
    argv = ["evaluate", "--gen", str(gen), "--transcripts", str(texts), "--metrics", "wer", "--device", "cpu"]
    argv += ["--asr-backend", "openai-whisper"]  # the default HF whisper reads a folder; this is the one-file entry
    assert main([*argv, "--weights-dir", str(wdir), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["provenance"]["backbones"]["Whisper"].startswith("whisper-base@sha256:")  # the table entry, not a copy
