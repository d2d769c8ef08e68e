"""Checkpoint table, resolution, download, checksums, offline errors, safe unpickling; strict PaSST loading."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import pickle
import re
import socket
import types
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from torchmetrics_av import weights
from torchmetrics_av.backbones import PaSST
from torchmetrics_av.backbones.passt import PASST_CHECKPOINT
from torchmetrics_av.weights import (
    CHECKPOINTS,
    GROUPS,
    WHISPER_ALIASES,
    Checkpoint,
    ChecksumError,
    UnsafeCheckpointError,
    WeightsNotFoundError,
    checkpoint,
    load_state_dict,
    markdown_table,
    missing_checkpoints,
    missing_message,
    resolve_checkpoint,
    select_checkpoints,
    sha256_file,
)


@pytest.fixture
def published(tmp_path):
    src = tmp_path / "published" / "model.pt"
    src.parent.mkdir()
    torch.save({"w": torch.arange(4.0)}, src)
    return src, hashlib.sha256(src.read_bytes()).hexdigest()


def test_download_verify_and_reuse(published, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TORCHMETRICS_AV_OFFLINE", raising=False)
    src, digest = published
    ckpt = Checkpoint(name="m", filename="model.pt", url=src.as_uri(), sha256=digest)
    cache = tmp_path / "cache"
    path = resolve_checkpoint(ckpt, cache_dir=cache)
    assert path == cache / "model.pt" and sha256_file(path) == digest
    assert load_state_dict(path)["w"].tolist() == [0, 1, 2, 3]
    src.unlink()  # second call must use the cache, not the network
    assert resolve_checkpoint(ckpt, cache_dir=cache) == path
    path.write_bytes(b"corrupt")
    with pytest.raises(ChecksumError, match="delete"):
        resolve_checkpoint(ckpt, cache_dir=cache)


def test_checksum_mismatch_leaves_nothing(published, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    src, _ = published
    ckpt = Checkpoint(name="m", filename="model.pt", url=src.as_uri(), sha256="0" * 64)
    with pytest.raises(ChecksumError):
        resolve_checkpoint(ckpt, cache_dir=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def test_unpublished_digest_is_recorded_and_checked(published, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    src, digest = published
    ckpt = Checkpoint(name="m", filename="model.pt", url=src.as_uri())
    path = resolve_checkpoint(ckpt, cache_dir=tmp_path / "c")
    assert json.loads((tmp_path / "c" / "model.pt.sha256").read_text())["sha256"] == digest
    path.write_bytes(b"truncated")
    with pytest.raises(ChecksumError):
        resolve_checkpoint(ckpt, cache_dir=tmp_path / "c")


def test_offline_error_names_file_url_and_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_checkpoint(PASST_CHECKPOINT, cache_dir=tmp_path)
    msg = str(err.value)
    assert PASST_CHECKPOINT.filename in msg and PASST_CHECKPOINT.url in msg and "weights=" in msg


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TORCHMETRICS_AV_OFFLINE", raising=False)
    ckpt = Checkpoint(name="m", filename="x.pt", url=(tmp_path / "missing.pt").as_uri())
    with pytest.raises(WeightsNotFoundError, match="download failed.*weights="):
        resolve_checkpoint(ckpt, cache_dir=tmp_path / "c")


def test_missing_local_path(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="weights="):
        resolve_checkpoint(PASST_CHECKPOINT, tmp_path / "nope.pt")


def test_passt_loads_checkpoint_strictly(tmp_path):
    torch.manual_seed(0)
    src = PaSST(pretrained=False, embed_dim=16, depth=1, num_heads=2)
    path = tmp_path / PASST_CHECKPOINT.filename
    torch.save(src.model.state_dict(), path)
    loaded = PaSST(weights=path, embed_dim=16, depth=1, num_heads=2)
    for k, v in src.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    assert loaded.checkpoint_id.startswith(PASST_CHECKPOINT.name + "@sha256:")
    bad = src.model.state_dict()
    bad.pop("head_dist.weight")
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError, match="head_dist.weight"):
        PaSST(weights=tmp_path / "bad.pt", embed_dim=16, depth=1, num_heads=2)


@pytest.mark.slow
def test_full_size_passt_matches_the_official_layout():
    """README §2: 159 tensors, 86,153,758 parameters, no buffers; key shapes of the official checkpoint."""
    sd = PaSST(pretrained=False).model.state_dict()
    assert len(sd) == 159 and sum(v.numel() for v in sd.values()) == 86_153_758
    assert sd["time_new_pos_embed"].shape == (1, 768, 1, 99) and sd["freq_new_pos_embed"].shape == (1, 768, 12, 1)
    assert sd["patch_embed.proj.weight"].shape == (768, 1, 16, 16) and sd["head.1.weight"].shape == (527, 768)
    assert sd["head_dist.weight"].shape == (527, 768) and sd["blocks.11.attn.qkv.weight"].shape == (2304, 768)


# ---------------------------------------------------------------------------------------------------------------------
# pickled checkpoints: numpy scalars allowed by name, anything else refused with the global named

CALLS: list[str] = []


def _record_call(tag: str) -> str:
    """A global that a weights-only load must never call."""
    CALLS.append(tag)
    return tag


class _Foreign:
    def __reduce__(self):
        return (_record_call, ("ran",))


class _Numpy1Pickler(pickle._Pickler):
    """Writes numpy scalars as numpy 1.x did (``GLOBAL numpy.core.multiarray scalar``), like the 2023 LAION files."""

    def save_global(self, obj, name=None):
        if getattr(obj, "__module__", "") == "numpy._core.multiarray":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n" + obj.__name__.encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


NUMPY1_PICKLE = types.SimpleNamespace(__name__="numpy1_pickle", Pickler=_Numpy1Pickler)


def laion_layout(state: dict) -> dict:
    """The published layout: training state around the weights, numpy float/int scalars included."""
    return {"epoch": 15, "state_dict": collections.OrderedDict(state), "lr": np.float64(1e-4), "step": np.int64(7)}


@pytest.mark.parametrize("numpy_names", ["numpy.core", "numpy._core"])
def test_laion_layout_pt_loads_weights_only(tmp_path, numpy_names):
    path = tmp_path / "laion.pt"
    obj = laion_layout({"module.w": torch.arange(3.0)})
    if numpy_names == "numpy.core":
        torch.save(obj, path, pickle_module=NUMPY1_PICKLE)
    else:
        torch.save(obj, path)
    # Exactly the globals the hub's pickle scan lists for music_speech_audioset_epoch_15_esc_89.98.pt (besides
    # torch's own and _codecs.encode, which torch allows).
    assert set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) == {
        f"{numpy_names}.multiarray.scalar",
        "numpy.dtype",
    }
    loaded = load_state_dict(path)
    assert loaded["lr"] == np.float64(1e-4) and loaded["step"] == 7 and loaded["epoch"] == 15
    assert torch.equal(loaded["state_dict"]["module.w"], torch.arange(3.0))
    assert load_state_dict(path, key="state_dict").keys() == {"module.w"}


def test_forbidden_global_is_refused_and_named(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Foreign()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"tests\.test_weights\._record_call") as err:
        load_state_dict(path)
    assert "weights_only=False" in str(err.value) and "allow_pickle=True" in str(err.value)
    assert CALLS == []  # refused before anything ran


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_pickle_protocol_above_2_is_refused_with_the_reason(tmp_path):
    # torch's weights-only unpickler reads protocol-2 opcodes only (torch.save's default; the LAION files use it:
    # their `_codecs.encode` global is how protocol 2 stores bytes).
    path = tmp_path / "p4.pt"
    torch.save(laion_layout({"w": torch.zeros(1)}), path, pickle_protocol=4)
    with pytest.raises(UnsafeCheckpointError, match="protocol > 2"):
        load_state_dict(path)


def test_clap_loads_laion_layout_by_default_and_refuses_foreign_globals(tmp_path):
    from tests.test_clap import hf_to_laion, small_net
    from torchmetrics_av.backbones import CLAP
    from torchmetrics_av.backbones.clap import small_clap_config

    src = small_net("av-benchmark", seed=3)
    laion = {"module." + k: v for k, v in hf_to_laion(src.model.state_dict()).items()}
    path = tmp_path / "music_speech_audioset_epoch_15_esc_89.98.pt"
    torch.save(laion_layout(laion), path, pickle_module=NUMPY1_PICKLE)
    net = CLAP(weights=path, protocol="av-benchmark", config=small_clap_config(fusion=False))  # allow_pickle=False
    for k, v in src.model.state_dict().items():
        assert torch.equal(net.model.state_dict()[k], v), k
    torch.save({**laion_layout(laion), "payload": _Foreign()}, path)
    with pytest.raises(ValueError, match=r"_record_call.*allow_pickle=True"):
        CLAP(weights=path, protocol="av-benchmark", config=small_clap_config(fusion=False))
    assert CALLS == []


# ---------------------------------------------------------------------------------------------------------------------
# the table

HEX = re.compile(r"[0-9a-f]+")


def test_table_entries_are_well_formed():
    filenames = [c.filename for c in CHECKPOINTS.values()]
    assert len(set(filenames)) == len(filenames)
    for c in CHECKPOINTS.values():
        assert c.license and c.digest_source, c.name
        assert c.url or c.hf_repo, c.name
        if c.sha256 is not None:
            assert len(c.sha256) == 64 and HEX.fullmatch(c.sha256), c.name
        if c.md5 is not None:
            assert len(c.md5) == 32 and HEX.fullmatch(c.md5), c.name
        has_digest = c.sha256 is not None or c.md5 is not None or c.snapshot
        assert (c.digest_by in {"publisher", "third-party"}) == has_digest, c.name
        if c.revision is not None:
            assert len(c.revision) == 40 and HEX.fullmatch(c.revision), c.name
    for group, names in GROUPS.items():
        assert set(names) <= set(CHECKPOINTS), group


def test_whisper_entries_equal_openai_whisper_models():
    import whisper

    from torchmetrics_av.backbones.whisper import whisper_checkpoint

    for name, url in whisper._MODELS.items():
        table = checkpoint(f"whisper-{WHISPER_ALIASES.get(name, name)}")
        assert table.url == url and table.sha256 == url.split("/")[-2], name
        ours = whisper_checkpoint(name)
        assert (ours.url, ours.sha256, ours.filename) == (table.url, table.sha256, table.filename), name


def test_third_party_digests_agree_with_what_the_publishers_state():
    # VGGish: torch.hub file names carry the SHA-256 prefix (vggish-10086976.pth).
    vggish = checkpoint("vggish-10086976")
    assert vggish.sha256.startswith(vggish.filename.split("-")[1].split(".")[0])
    # Audiobox config.json: the 492 bytes are json.dumps of the constructor kwargs (golden README §2).
    from torchmetrics_av.backbones.audiobox import AUDIOBOX_CONFIG, AUDIOBOX_HUB_CONFIG

    raw = json.dumps(AUDIOBOX_HUB_CONFIG, sort_keys=True, indent=2).encode()
    assert len(raw) == AUDIOBOX_CONFIG.size and hashlib.sha256(raw).hexdigest() == AUDIOBOX_CONFIG.sha256


def test_backbones_use_the_table():
    from torchmetrics_av.backbones import audiobox, clap, imagebind, passt, synchformer

    assert passt.PASST_CHECKPOINT is CHECKPOINTS["passt_s_swa_p16_128_ap476"]
    assert clap.AVBENCH_CHECKPOINT is CHECKPOINTS["laion_clap_music_speech_audioset_epoch_15_esc_89.98"]
    assert synchformer.SYNCHFORMER_CHECKPOINT.md5 == "5b2f5594b0730f70e41e549b7c94390c"
    assert imagebind.IMAGEBIND_CHECKPOINT is CHECKPOINTS["imagebind_huge"]
    assert audiobox.AUDIOBOX_WEIGHTS.revision == audiobox.AUDIOBOX_CONFIG.revision == audiobox.AUDIOBOX_HUB_REVISION
    # The fastvideo CLAP folder in the table is the revision the backbone loads from the hub.
    assert {CHECKPOINTS[n].revision for n in GROUPS["clap-fastvideo"]} == {clap.FASTVIDEO_REVISION}
    assert {CHECKPOINTS[n].hf_repo for n in GROUPS["clap-fastvideo"]} == {clap.FASTVIDEO_REPO}
    from torchmetrics_av.backbones.msclap.tokenizer import GPT2_BPE

    assert GPT2_BPE is CHECKPOINTS["gpt2_bpe_r50k_base"] and "gpt2_bpe_r50k_base" in GROUPS["msclap"]
    # No backbone defines a checkpoint of its own: every file it loads is a table entry.
    package = Path(clap.__file__).parent
    private = [p.name for p in package.rglob("*.py") if re.search(r"\bCheckpoint\(", p.read_text())]
    assert private == []


def test_readme_weights_table_is_the_generated_one():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- weights-table:start -->\n")[1].split("<!-- weights-table:end -->")[0]
    assert block == markdown_table(), "run `python -m torchmetrics_av.weights --markdown` and paste it into README"


def test_selection_and_urls(monkeypatch):
    monkeypatch.delenv("TORCHMETRICS_AV_MIRROR", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert [c.name for c in select_checkpoints(["desync", "synchformer"])] == ["synchformer_24-01-04T16-39-21"]
    assert "whisper-large-v3" in {c.name for c in select_checkpoints(["all"])}
    assert "whisper-large-v3" not in {c.name for c in select_checkpoints()}
    assert [c.name for c in select_checkpoints(["whisper-turbo"])] == ["whisper-large-v3-turbo"]
    with pytest.raises(ValueError, match=r"unknown checkpoint or group \['nope'\]"):
        select_checkpoints(["nope"])
    cfg = checkpoint("clap-htsat-fused/config.json")
    assert cfg.download_url() == (
        "https://huggingface.co/laion/clap-htsat-fused/resolve/365dea6ef167def6676140ed93bbc43f84dabb28/config.json"
    )
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example/")
    assert cfg.download_url().startswith("https://hf-mirror.example/laion/clap-htsat-fused/resolve/")
    monkeypatch.setenv("TORCHMETRICS_AV_MIRROR", "file:///srv/ckpt")
    assert checkpoint("panns_cnn14_16k_map0.438").download_url() == "file:///srv/ckpt/Cnn14_16k_mAP%3D0.438.pth"
    assert cfg.source.startswith("https://hf-mirror.example/")  # messages name the real source, not the mirror


# ---------------------------------------------------------------------------------------------------------------------
# verification, offline discipline


def test_md5_and_size_are_checked_on_download_and_load(published, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TORCHMETRICS_AV_OFFLINE", raising=False)
    monkeypatch.delenv("TORCHMETRICS_AV_MIRROR", raising=False)
    src, _ = published
    data = src.read_bytes()
    md5 = hashlib.md5(data).hexdigest()
    good = Checkpoint(name="m", filename="model.pt", url=src.as_uri(), md5=md5, size=len(data))
    path = resolve_checkpoint(good, cache_dir=tmp_path / "c")
    assert json.loads((tmp_path / "c" / "model.pt.sha256").read_text())["md5"] == md5
    with pytest.raises(ChecksumError, match="MD5"):
        resolve_checkpoint(replace(good, md5="0" * 32), cache_dir=tmp_path / "c2")
    with pytest.raises(ChecksumError, match="bytes, expected"):
        resolve_checkpoint(replace(good, size=len(data) + 1), cache_dir=tmp_path / "c3")
    # A record from before MD5s were kept (SHA-256 only) gains the MD5 once, then loads skip hashing.
    record_path = tmp_path / "c" / "model.pt.sha256"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({k: v for k, v in record.items() if k != "md5"}))
    resolve_checkpoint(good, cache_dir=tmp_path / "c")
    assert json.loads(record_path.read_text()) == record
    raw = bytearray(data)
    raw[-1] ^= 1  # same size, one bit flipped
    path.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="MD5"):
        resolve_checkpoint(good, cache_dir=tmp_path / "c")


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("env", ["HF_HUB_OFFLINE", "TORCHMETRICS_AV_OFFLINE"])
def test_offline_never_connects_and_lists_every_missing_file(tmp_path, monkeypatch, env):
    monkeypatch.delenv("TORCHMETRICS_AV_MIRROR", raising=False)
    monkeypatch.setenv(env, "1")
    _no_network(monkeypatch)
    with pytest.raises(WeightsNotFoundError, match="offline mode"):
        resolve_checkpoint(checkpoint("panns_cnn14_16k_map0.438"), cache_dir=tmp_path)
    with pytest.raises(WeightsNotFoundError, match="offline mode"):
        resolve_checkpoint(checkpoint("audiobox-aesthetics"), cache_dir=tmp_path)
    missing = missing_checkpoints(["av-benchmark"], tmp_path)
    assert sorted(c.name for c in missing) == sorted(set(GROUPS["av-benchmark"]))  # all of them, in one list
    message = missing_message(missing, tmp_path)
    assert all(c.filename in message and c.source in message for c in missing)
    assert message.endswith(f"download --weights-dir {tmp_path} av-benchmark")  # the whole group: named by it
    partial = missing_message([checkpoint("imagebind_huge"), *missing_checkpoints(["clap-fastvideo"], tmp_path)])
    assert partial.endswith(" clap-fastvideo imagebind_huge")
    (tmp_path / "vggish-10086976.pth").write_bytes(b"x")
    assert "vggish-10086976" not in {c.name for c in missing_checkpoints(["av-benchmark"], tmp_path)}


def test_http_range_request_and_timeout(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TORCHMETRICS_AV_OFFLINE", raising=False)
    seen = {}

    class Response(io.BytesIO):
        def __init__(self, status, headers):
            super().__init__(b"rest")
            self.status, self.headers = status, headers

    def fake_urlopen(request, timeout):
        seen["range"], seen["timeout"] = request.get_header("Range"), timeout
        return answer

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    answer = Response(206, {"Content-Length": "4", "Content-Range": "bytes 100-103/104"})
    assert weights._open_url("https://example.invalid/f", 100, weights.DOWNLOAD_TIMEOUT_S)[1:] == (100, 104)
    assert seen == {"range": "bytes=100-", "timeout": weights.DOWNLOAD_TIMEOUT_S}
    answer = Response(200, {"Content-Length": "104"})  # range ignored: start again from byte 0
    assert weights._open_url("https://example.invalid/f", 100, 5)[1:] == (0, 104)


# ---------------------------------------------------------------------------------------------------------------------
# folders of the table: several files at once, other revisions, hub snapshots

REV = "0123456789abcdef0123456789abcdef01234567"


def test_at_revision_drops_the_table_digests_and_moves_the_folder():
    pinned = checkpoint("whisper-base/model.safetensors")
    assert weights.at_revision(pinned, None) is pinned
    assert weights.at_revision(pinned, pinned.revision) is pinned
    other = weights.at_revision(pinned, REV)
    assert (other.name, other.filename) == (f"{pinned.name}@{REV}", f"whisper-base@{REV}/model.safetensors")
    assert (other.sha256, other.md5, other.size, other.digest_by) == (None, None, None, "")
    assert (
        other.download_url(mirror="") == f"https://huggingface.co/openai/whisper-base/resolve/{REV}/model.safetensors"
    )
    snap = weights.at_revision(checkpoint("zai-org/GLM-ASR-Nano-2512"), "v1/x")
    assert snap.filename == "GLM-ASR-Nano-2512@v1_x" and snap.snapshot
    with pytest.raises(ValueError, match="not a hub file"):
        weights.at_revision(checkpoint("imagebind_huge"), REV)
    with pytest.raises(ValueError, match="no checkpoint table entry lives in the folder 'nope'"):
        weights.folder_checkpoints("nope")


def test_resolve_files_names_every_missing_file_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHMETRICS_AV_MIRROR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TORCHMETRICS_AV_OFFLINE", "1")
    _no_network(monkeypatch)
    (tmp_path / "audiobox-aesthetics").mkdir()
    (tmp_path / "audiobox-aesthetics" / "config.json").write_text("{}")  # present: not listed (not hashed either)
    with pytest.raises(WeightsNotFoundError) as err:
        weights.resolve_files(["audiobox-aesthetics", "imagebind_huge"], cache_dir=tmp_path, weights_hint="x")
    msg = str(err.value)
    assert msg.startswith("2 checkpoint files not available (offline mode is on")
    assert "audiobox-aesthetics/model.safetensors  (https://huggingface.co/facebook/audiobox-aesthetics/" in msg
    assert "imagebind_huge.pth  (https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth)" in msg
    assert "config.json" not in msg and msg.endswith("audiobox-aesthetics imagebind_huge. Or pass `weights=<x>`.")
    # Online, each failed download is named with its reason; the other files are still fetched.
    monkeypatch.delenv("TORCHMETRICS_AV_OFFLINE")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(b"a")
    good = Checkpoint(name="a", filename="a.bin", url=(src / "a.bin").as_uri())
    gone = [Checkpoint(name=n, filename=f"{n}.bin", url=(src / f"{n}.bin").as_uri()) for n in ("b", "c")]
    with pytest.raises(
        WeightsNotFoundError, match=r"(?s)^2 checkpoint files not available \(download failed.*b\.bin.*c\.bin"
    ):
        weights.resolve_files([good, *gone], cache_dir=tmp_path / "c")
    assert (tmp_path / "c" / "a.bin").read_bytes() == b"a"


def test_another_revision_has_its_own_folder_and_no_table_digest(tmp_path, monkeypatch):
    from torchmetrics_av.backbones import HFWhisper

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TORCHMETRICS_AV_OFFLINE", raising=False)
    # A mirror of a weights folder that holds whisper-base@REV/: its config.json differs from the pinned one.
    mirror = tmp_path / "mirror"
    (mirror / f"whisper-base@{REV}").mkdir(parents=True)
    (mirror / f"whisper-base@{REV}" / "config.json").write_text('{"d_model": 64}')
    monkeypatch.setenv("TORCHMETRICS_AV_MIRROR", mirror.as_uri())
    ckpt = weights.at_revision(checkpoint("whisper-base/config.json"), REV)
    path = resolve_checkpoint(ckpt, cache_dir=tmp_path / "c")  # no pinned digest applies: the download is recorded
    assert path == tmp_path / "c" / f"whisper-base@{REV}" / "config.json"
    assert json.loads(path.with_name("config.json.sha256").read_text())["sha256"] == sha256_file(path)
    monkeypatch.setenv("TORCHMETRICS_AV_OFFLINE", "1")
    monkeypatch.delenv("TORCHMETRICS_AV_MIRROR")
    with pytest.raises(WeightsNotFoundError) as err:
        HFWhisper(revision=REV, cache_dir=tmp_path / "c")
    msg = str(err.value)
    assert msg.startswith("1 checkpoint file not available") and f"whisper-base@{REV}/model.safetensors" in msg
    assert f"/resolve/{REV}/model.safetensors" in msg and "Download them from the URLs above" in msg


def _snapshot_folder(root: Path) -> Path:
    folder = root / "GLM-ASR-Nano-2512"
    folder.mkdir(parents=True)
    files = {"config.json": b"{}", "model.safetensors": b"w" * 64}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    listing = [{"path": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()]
    (folder / weights.SNAPSHOT_MANIFEST).write_text(json.dumps({"files": listing}))
    return folder


def test_snapshot_folder_is_checked_against_its_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHMETRICS_AV_OFFLINE", "1")
    monkeypatch.delenv("TORCHMETRICS_AV_MIRROR", raising=False)
    _no_network(monkeypatch)
    with pytest.raises(
        WeightsNotFoundError, match=r"(?s)GLM-ASR-Nano-2512/  \(https://huggingface.co/.*/tree/.*weights="
    ):
        weights.resolve_folder("GLM-ASR-Nano-2512", cache_dir=tmp_path)
    folder = _snapshot_folder(tmp_path)
    assert weights.resolve_folder("GLM-ASR-Nano-2512", cache_dir=tmp_path, required=["config.json"]) == folder
    with pytest.raises(WeightsNotFoundError, match=r"\['tokenizer.json'\] missing"):
        weights.resolve_folder("GLM-ASR-Nano-2512", cache_dir=tmp_path, required=["tokenizer.json"])
    (folder / "model.safetensors").write_bytes(b"x" * 64)  # same size, other bytes
    with pytest.raises(ChecksumError, match="SHA256"):
        weights.resolve_folder("GLM-ASR-Nano-2512", cache_dir=tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError, match="listed in .* but absent"):
        weights.resolve_folder("GLM-ASR-Nano-2512", cache_dir=tmp_path)
    with pytest.raises(WeightsNotFoundError, match="is not a folder"):
        weights.resolve_folder("GLM-ASR-Nano-2512", tmp_path / "GLM-ASR-Nano-2512" / "config.json")
