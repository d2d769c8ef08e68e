"""Checkpoint resolution, download, checksums, offline errors; strict PaSST loading of files the tests write."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from torchmetrics_av.backbones import PaSST
from torchmetrics_av.backbones.passt import PASST_CHECKPOINT
from torchmetrics_av.weights import (
    Checkpoint,
    ChecksumError,
    WeightsNotFoundError,
    load_state_dict,
    resolve_checkpoint,
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
