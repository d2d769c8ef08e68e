"""VGGish parity with tests/golden/panns (av-benchmark 050a5cd + torchvggish f3f9096, fill-v1 weights), README §8.

One module-scoped run prepares the 22 golden clips with ``VGGish.prepare`` and embeds them with ``VGGish.embed``;
the log-mel examples and the per-example embeddings are checked per clip, then FD-VGG (every 0.96 s example of every
file is a row, all predictions vs all references). Tiny-model tests cover the state_dict contract, strict loading with
the two ignored PCA keys, the SHA-256 prefix check and the short-clip error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

import numpy as np
import pytest
import scipy.signal
import torch

from tests.conftest import golden_path
from tests.panns_inputs import clip_entries, load_clip, row_names
from torchmetrics_av.backbones import VGGish
from torchmetrics_av.backbones.vggish import (
    VGGISH_CHECKPOINT,
    VGGISH_IGNORED_KEYS,
    VGGISH_MIN_SAMPLES,
    periodic_hann,
    tiny_vggish,
    vggish_mel_matrix,
)
from torchmetrics_av.functional import frechet_distance_from_features
from torchmetrics_av.weights import ChecksumError, WeightsNotFoundError, resolve_checkpoint

# README §8 "Recommended checks for a faithful port".
EXAMPLES_ATOL = 1e-5
EMB_ATOL = 2e-6
FD_RTOL = 1e-5  # from our features
FD_STORED_RTOL = 1e-6  # from the stored features, scipy sqrtm
# The mel matrix is float64 arithmetic on linspace/log: only rounding may differ.
MEL_ATOL = 1e-12

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return torch.load(golden_path("panns") / "panns_golden.pt", weights_only=True)


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return json.loads((golden_path("panns") / "state_dict_manifest.json").read_text())


@pytest.fixture(scope="module")
def vggish_full(fill_v1) -> VGGish:
    net = VGGish(pretrained=False)
    fill_v1(net.model)
    return net


@pytest.fixture(scope="module")
def run(golden, vggish_full) -> dict[str, Any]:
    net = vggish_full
    entries, names = clip_entries(golden), row_names(golden)
    waves = [net.prepare(load_clip(entries[n]), entries[n]["sample_rate"]) for n in names]
    with torch.no_grad():
        rows = net.embed(waves)
    return {
        "names": names,
        "examples": {n: net.examples(w) for n, w in zip(names, waves)},
        "rows": dict(zip(names, rows)),
    }


def _cat(values: dict[str, torch.Tensor], side: str, stems: list[str]) -> torch.Tensor:
    return torch.cat([values[f"{side}/{s}"] for s in stems])


# ---------------------------------------------------------------------------------------------------------------------
# state_dict contract and front-end constants


def test_state_dict_matches_the_official_key_set(golden, manifest):
    state = VGGish(pretrained=False).model.state_dict()
    expected = manifest["vggish_avbench"]
    assert list(state) == [e["key"] for e in expected] and len(state) == 18
    for e in expected:
        assert list(state[e["key"]].shape) == e["shape"] and str(state[e["key"]].dtype) == f"torch.{e['dtype']}"
    assert sum(v.numel() for v in state.values()) == golden["models"]["vggish_n_params"]
    # The torch-hub model = these keys + its PCA postprocessor, exactly the two keys the loader ignores.
    hub = [e["key"] for e in manifest["vggish_torchvggish_hub"]]
    assert [k for k in hub if k not in state] == list(VGGISH_IGNORED_KEYS)
    assert golden["models"]["vggish_strict_false"]["unexpected_keys"] == list(VGGISH_IGNORED_KEYS)


def test_frontend_constants(golden):
    torch.testing.assert_close(vggish_mel_matrix(), golden["frontend"]["vggish_mel_matrix_f64"], atol=MEL_ATOL, rtol=0)
    periodic = scipy.signal.get_window("hann", 400, fftbins=True)
    np.testing.assert_allclose(periodic_hann().numpy(), periodic, atol=1e-15, rtol=0)


@slow
def test_fill_v1_reproduces_the_golden_weights(vggish_full, manifest):
    state = vggish_full.model.state_dict()
    for e in manifest["vggish_avbench"]:
        assert math.isclose(float(state[e["key"]].double().sum()), e["sum64"], rel_tol=1e-9, abs_tol=1e-9), e["key"]


# ---------------------------------------------------------------------------------------------------------------------
# per clip: examples and embeddings


@slow
def test_examples(golden, run):
    for name in run["names"]:
        ex, ref = run["examples"][name], golden["avbench"]["clips"][name]
        stats = ref["vggish_examples"]
        assert ex.dtype == torch.float32 and list(ex.shape) == stats["shape"], name
        assert ex.shape[0] == ref["vggish_n_examples"], name
        torch.testing.assert_close(ex[:, [0, 47, 95]], stats["frames_0_47_95"], atol=EXAMPLES_ATOL, rtol=0, msg=name)
        assert abs(float(ex.min()) - stats["min"]) <= EXAMPLES_ATOL and abs(float(ex.max()) - stats["max"]) <= 1e-5


@slow
def test_embeddings(golden, run):
    for name in run["names"]:
        torch.testing.assert_close(
            run["rows"][name], golden["avbench"]["clips"][name]["vggish_emb"], atol=EMB_ATOL, rtol=0, msg=name
        )


@slow
def test_fd_vgg(golden, run):
    av = golden["avbench"]
    order = av["row_order"]
    preds, target = _cat(run["rows"], "pred", order["pred"]), _cat(run["rows"], "gt", order["gt"])
    assert (preds.shape[0], target.shape[0]) == (av["fd_vgg"]["n_gen"], av["fd_vgg"]["n_ref"])  # 67 / 40 examples
    assert av["fd_vgg"]["eps_retry"] is False
    for method in ("eigh", "scipy"):
        fd = frechet_distance_from_features(preds, target, eps_policy="on_failure", method=method)
        assert float(fd) == pytest.approx(av["metrics"]["FD-VGG"], rel=FD_RTOL), method
    stored = {n: c["vggish_emb"] for n, c in av["clips"].items()}
    fd_stored = frechet_distance_from_features(
        _cat(stored, "pred", order["pred"]), _cat(stored, "gt", order["gt"]), eps_policy="on_failure", method="scipy"
    )
    assert float(fd_stored) == pytest.approx(av["metrics"]["FD-VGG"], rel=FD_STORED_RTOL)


# ---------------------------------------------------------------------------------------------------------------------
# loading, checksum, API (tiny models: the same code path at test size)


def test_official_file_loads_strictly_ignoring_only_the_pca_keys(tmp_path):
    source = tiny_vggish(seed=1)
    state = source.model.state_dict()
    official = tmp_path / "vggish-10086976.pth"
    torch.save(state, official)
    assert torch.equal(tiny_vggish(weights=official).model.embeddings[4].weight, source.model.embeddings[4].weight)
    hub = tmp_path / "hub.pth"
    pca = {"pproc.pca_eigen_vectors": torch.eye(128), "pproc.pca_means": torch.zeros(128, 1)}
    torch.save({**state, **pca}, hub)
    net = tiny_vggish(weights=hub)
    assert net.checkpoint_id.startswith(f"{VGGISH_CHECKPOINT.name}@sha256:")
    assert list(net.model.state_dict()) == list(state)
    extra = tmp_path / "extra.pth"
    torch.save({**state, **pca, "pproc.other": torch.zeros(1)}, extra)
    with pytest.raises(RuntimeError, match="Unexpected key.*pproc.other"):
        tiny_vggish(weights=extra)
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in state.items() if k != "features.0.bias"}, missing)
    with pytest.raises(RuntimeError, match="Missing key.*features.0.bias"):
        tiny_vggish(weights=missing)


def test_published_sha256_is_checked(tmp_path, monkeypatch):
    # torch-hub file names publish the SHA-256 prefix: the table's full digest must carry it.
    assert VGGISH_CHECKPOINT.sha256.startswith(VGGISH_CHECKPOINT.filename.split("-")[1].split(".")[0])
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TORCHMETRICS_AV_OFFLINE", raising=False)
    src = tmp_path / "published.pth"
    torch.save(tiny_vggish().model.state_dict(), src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    good = dataclasses.replace(VGGISH_CHECKPOINT, url=src.as_uri(), sha256=digest)
    assert resolve_checkpoint(good, cache_dir=tmp_path / "cache").exists()
    bad = dataclasses.replace(VGGISH_CHECKPOINT, url=src.as_uri())  # the real digest 10086976...: this file fails it
    with pytest.raises(ChecksumError, match="10086976"):
        resolve_checkpoint(bad, cache_dir=tmp_path / "other")
    assert not (tmp_path / "other" / VGGISH_CHECKPOINT.filename).exists()


def test_offline_without_cache_names_file_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHMETRICS_AV_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="vggish-10086976.pth") as err:
        VGGish(cache_dir=tmp_path)
    assert "harritaylor/torchvggish/releases" in str(err.value) and "weights=" in str(err.value)


def test_short_clip_is_a_value_error():
    net = tiny_vggish()
    with pytest.raises(ValueError, match="at least 15600"):
        net.examples(torch.zeros(VGGISH_MIN_SAMPLES - 1))
    assert net.examples(torch.zeros(VGGISH_MIN_SAMPLES)).shape == (1, 96, 64)
    with pytest.raises(ValueError, match=r"waves\[1\].*15600"):
        net.embed([torch.zeros(16000), torch.zeros(15000)])
    with pytest.raises(ValueError, match="1-D"):
        net.examples(torch.zeros(1, 16000))


def test_example_count_and_forward_agree_with_embed():
    net = tiny_vggish()
    g = torch.Generator().manual_seed(0)
    # Frames 1 + (L - 400) // 160; examples 1 + (frames - 96) // 96: 8 s -> 798 frames -> 8; 3 s -> 298 -> 3.
    for seconds, n in ((8, 8), (3, 3), (1, 1)):
        assert net.examples(torch.zeros(seconds * 16000)).shape[0] == n
    waves = 0.1 * torch.randn(2, 48000, generator=g)
    with torch.no_grad():
        batched = net(waves)
        rows = net.embed(list(waves), batch_size=4)
    assert batched.shape == (2, 3, 128)
    for b in range(2):
        torch.testing.assert_close(batched[b], rows[b], atol=1e-6, rtol=0)


def test_prepare_and_builder():
    net = tiny_vggish()
    clip = torch.zeros(2, 44100 * 9) + 0.25
    x = net.prepare(clip, 44100)
    assert x.shape == (128000,) and float(x.abs().max()) < 1e-6  # a DC-only clip is silence after DC removal
    torch.manual_seed(7)
    expected_next = torch.rand(2)
    torch.manual_seed(7)
    a, b = tiny_vggish(seed=2), tiny_vggish(seed=2)
    assert torch.equal(torch.rand(2), expected_next)
    assert all(torch.equal(a.model.state_dict()[k], v) for k, v in b.model.state_dict().items())
    assert list(a.model.state_dict()) == list(VGGish(pretrained=False).model.state_dict())
