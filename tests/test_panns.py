"""PANNs Cnn14 (16 kHz) parity with tests/golden/panns (av-benchmark 050a5cd, fill-v1 weights), README §8 tolerances.

One module-scoped run prepares the 22 golden clips (PCM16 FLAC at their native rates) with ``PANNs.prepare`` and
embeds them with ``PANNs.embed``; inputs, log-mels, embeddings and logits are checked per clip, then the corpus values
av-benchmark reports (FD-PANN, KL-PANNS-softmax, ISC-PANNS) through the library's functional reductions. The formula
cases (ISC / KL / FD at realistic scales, inputs regenerated from seeds) close the file. Tiny-model tests cover the
state_dict contract, strict loading of official-format files, the checksum and the API's errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import pickle
import shutil
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import golden_path
from tests.panns_inputs import clip_entries, load_clip, row_names
from torchmetrics_av.backbones import PANNs
from torchmetrics_av.backbones.panns import (
    PANNS_CHECKPOINT,
    PANNS_MIN_SAMPLES,
    load_panns_state_dict,
    slaney_mel_matrix,
    stft_kernels,
    tiny_panns,
)
from torchmetrics_av.functional import frechet_distance_from_features, inception_score, kl_divergence_from_logits
from torchmetrics_av.weights import ChecksumError, WeightsNotFoundError, resolve_checkpoint

# README §8 "Recommended checks for a faithful port".
INPUT_ATOL = 1e-6
LOGMEL_ATOL_DB = 1e-4
EMB_ATOL = 3e-6
LOGIT_ATOL = 2e-6
FD_RTOL = 1e-5  # from our features, eigenvalue trace
KL_ATOL = 1e-6  # against av-benchmark's float32 compute_kl
KL_RECHECK_ATOL = 1e-8  # float64 against the float64 re-check, same logits
KL_SIGMOID_ATOL = 5e-6
ISC_ATOL = 1e-9
FORMULA_KL_RTOL = 1e-5
FORMULA_FD_RTOL = 1e-6  # float64 means
# formula.py (golden generator): 8 shared factors mixed into every column.
FORMULA_K = 8
FORMULA_CLASSES = 527
# formula.py fd_params: the parameter generator is seeded with seed + 100000.
FD_PARAM_SEED_OFFSET = 100000

slow = pytest.mark.slow


def _sha(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().astype("<f4").tobytes()).hexdigest()


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return torch.load(golden_path("panns") / "panns_golden.pt", weights_only=True)


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return json.loads((golden_path("panns") / "state_dict_manifest.json").read_text())


@pytest.fixture(scope="module")
def panns_full(fill_v1) -> PANNs:
    net = PANNs(pretrained=False)
    fill_v1(net.model)
    return net


@pytest.fixture(scope="module")
def run(golden, panns_full) -> dict[str, Any]:
    net = panns_full
    entries, names = clip_entries(golden), row_names(golden)
    waves = [net.prepare(load_clip(entries[n]), entries[n]["sample_rate"]) for n in names]
    with torch.no_grad():
        logmels = {n: net.model.logmel(w[None])[0, 0] for n, w in zip(names, waves)}
        pre_fc1 = net.model.pooled(logmels["pred/s02"][None, None])[0]
        emb, logits = net.embed(waves)
    return {
        "names": names,
        "waves": dict(zip(names, waves)),
        "logmel": logmels,
        "pre_fc1": pre_fc1,
        "emb": dict(zip(names, emb)),
        "logits": dict(zip(names, logits)),
    }


def _rows(values: dict[str, torch.Tensor], side: str, stems: list[str]) -> torch.Tensor:
    return torch.stack([values[f"{side}/{s}"] for s in stems])


# ---------------------------------------------------------------------------------------------------------------------
# state_dict contract and the frozen front-end tensors


def test_state_dict_matches_the_official_key_set(golden, manifest):
    model = PANNs(pretrained=False).model
    state = model.state_dict()
    expected = manifest["cnn14"]
    assert list(state) == [e["key"] for e in expected] and len(state) == 84
    for e in expected:
        assert list(state[e["key"]].shape) == e["shape"], e["key"]
        assert str(state[e["key"]].dtype) == f"torch.{e['dtype']}", e["key"]
    # The three DSP constants are buffers (fill-v1 leaves them alone, as the golden did); everything else trains.
    models = golden["models"]
    dsp = models["cnn14_not_filled"]
    assert sum(p.numel() for p in model.parameters()) == models["cnn14_n_params_filled"]
    assert sum(state[k].numel() for k in dsp) == models["cnn14_n_params"] - models["cnn14_n_params_filled"]
    assert {n for n, _ in model.named_parameters()}.isdisjoint(dsp)


def test_frontend_tensors_are_the_checkpoint_constants(golden):
    fe = golden["frontend"]
    real, imag = stft_kernels()
    assert _sha(real) == fe["cnn14_stft_conv_real_sha256"]
    assert _sha(imag) == fe["cnn14_stft_conv_imag_sha256"]
    assert _sha(slaney_mel_matrix()) == fe["cnn14_melW_sha256"]
    state = PANNs(pretrained=False).model.state_dict()
    assert torch.equal(state["spectrogram_extractor.stft.conv_real.weight"], real)
    assert torch.equal(state["spectrogram_extractor.stft.conv_imag.weight"], imag)
    assert torch.equal(state["logmel_extractor.melW"], slaney_mel_matrix())


def test_frontend_tensors_match_independent_formulas():
    import librosa

    mel = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=50, fmax=8000)
    assert np.array_equal(slaney_mel_matrix().numpy(), mel.T)
    real, imag = stft_kernels()
    n = np.arange(512)
    k = np.arange(257)[:, None]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / 512)
    np.testing.assert_allclose(real[:, 0].numpy(), np.cos(2 * np.pi * k * n / 512) * hann, rtol=0, atol=1e-6)
    np.testing.assert_allclose(imag[:, 0].numpy(), -np.sin(2 * np.pi * k * n / 512) * hann, rtol=0, atol=1e-6)


@slow
def test_fill_v1_reproduces_the_golden_weights(panns_full, manifest):
    state = panns_full.model.state_dict()
    for e in manifest["cnn14"]:
        assert math.isclose(float(state[e["key"]].double().sum()), e["sum64"], rel_tol=1e-9, abs_tol=1e-9), e["key"]


# ---------------------------------------------------------------------------------------------------------------------
# per clip: 16 kHz input, log-mel, pooled features, embeddings, logits


@slow
def test_model_inputs(golden, run):
    entries = clip_entries(golden)
    for name in run["names"]:
        x, ref = run["waves"][name], golden["avbench"]["clips"][name]
        stats = ref["input"]
        assert x.dtype == torch.float32 and x.numel() == stats["len"] == ref["n_input"], name
        assert int((x != 0).sum()) == stats["n_nonzero"], name
        torch.testing.assert_close(x[:400], stats["head"], atol=INPUT_ATOL, rtol=0, msg=name)
        torch.testing.assert_close(x[-400:], stats["tail"], atol=INPUT_ATOL, rtol=0, msg=name)
        torch.testing.assert_close(x[::97], stats["stride97"], atol=INPUT_ATOL, rtol=0, msg=name)
        if entries[name]["sample_rate"] == 16000:  # mono mean + DC removal only: bit-equal (README §8)
            assert _sha(x) == stats["sha256"], name


@slow
def test_logmel(golden, run):
    for name in run["names"]:
        lm, ref = run["logmel"][name], golden["avbench"]["clips"][name]["logmel"]
        assert list(lm.shape) == ref["shape"] and lm.shape[0] == golden["avbench"]["clips"][name]["logmel_frames"]
        for key, got in (("first3", lm[:3]), ("last3", lm[-3:]), ("stride25", lm[::25])):
            torch.testing.assert_close(got, ref[key], atol=LOGMEL_ATOL_DB, rtol=0, msg=f"{name} {key}")
        assert abs(float(lm.min()) - ref["min"]) <= LOGMEL_ATOL_DB and abs(float(lm.max()) - ref["max"]) <= 1e-4
    full = golden["avbench"]["full"]["pred/s02"]["logmel"]
    torch.testing.assert_close(run["logmel"]["pred/s02"], full, atol=LOGMEL_ATOL_DB, rtol=0)
    # The DC-only clip is exactly the -100 dB floor after DC removal.
    assert bool((run["logmel"]["pred/s06"] == -100.0).all())


@slow
def test_pooled_features_embeddings_and_logits(golden, run):
    clips = golden["avbench"]["clips"]
    torch.testing.assert_close(run["pre_fc1"], clips["pred/s02"]["pre_fc1"], atol=EMB_ATOL, rtol=0)
    for name in run["names"]:
        torch.testing.assert_close(run["emb"][name], clips[name]["emb2048"], atol=EMB_ATOL, rtol=0, msg=name)
        torch.testing.assert_close(run["logits"][name], clips[name]["logits"], atol=LOGIT_ATOL, rtol=0, msg=name)


# ---------------------------------------------------------------------------------------------------------------------
# corpus values of evaluate()


@slow
def test_fd_pann(golden, run):
    av = golden["avbench"]
    order = av["row_order"]
    preds, target = _rows(run["emb"], "pred", order["pred"]), _rows(run["emb"], "gt", order["gt"])
    assert (preds.shape[0], target.shape[0]) == (av["fd_pann"]["n_gen"], av["fd_pann"]["n_ref"])
    # av-benchmark: eps*I only when sqrtm is not finite (it was finite here), all preds vs all references.
    assert av["fd_pann"]["eps_retry"] is False
    # The default eigenvalue trace (scipy's sqrtm of a 2048² product costs ~10x more here; the formula cases and
    # FD-VGG cover it): rank-deficient covariances (22 rows, 2048 dims) put it ~1.4e-6 relative from sqrtm.
    fd = frechet_distance_from_features(preds, target, eps_policy="on_failure")
    assert float(fd) == pytest.approx(av["metrics"]["FD-PANN"], rel=FD_RTOL)


@slow
def test_kl_panns(golden, run):
    av = golden["avbench"]
    stems = av["kl_pairs_order"]
    pred, gt = _rows(run["logits"], "pred", stems), _rows(run["logits"], "gt", stems)
    soft = kl_divergence_from_logits(pred, gt, "softmax")
    sig = kl_divergence_from_logits(pred, gt, "sigmoid")
    exp_soft = torch.tensor([p["kl_softmax"] for p in av["kl_per_pair"]], dtype=torch.float64)
    assert [p["stem"] for p in av["kl_per_pair"]] == stems
    torch.testing.assert_close(soft, exp_soft, atol=KL_ATOL, rtol=0)
    assert float(soft.mean()) == pytest.approx(av["metrics"]["KL-PANNS-softmax"], abs=KL_ATOL)
    assert float(sig.mean()) == pytest.approx(av["kl"]["kl_sigmoid"], abs=KL_SIGMOID_ATOL)
    # s00: identical clips. KL of equal logits is exactly 0; the run's s00 pair is within KL_ATOL of it (above), since
    # its two clips were embedded in different batches (float32 GEMM rounding depends on the rows on AVX-512 CPUs).
    assert float(kl_divergence_from_logits(pred[:1], pred[:1], "softmax")) == 0.0
    # float64 on the stored logits against the float64 re-check.
    logits = {n: c["logits"] for n, c in av["clips"].items()}
    sp, sg = _rows(logits, "pred", stems), _rows(logits, "gt", stems)
    recheck = golden["recheck_kl"]
    torch.testing.assert_close(
        kl_divergence_from_logits(sp, sg, "softmax"),
        torch.tensor(recheck["per_pair_softmax"], dtype=torch.float64),
        atol=KL_RECHECK_ATOL,
        rtol=0,
    )
    torch.testing.assert_close(
        kl_divergence_from_logits(sp, sg, "sigmoid"),
        torch.tensor(recheck["per_pair_sigmoid"], dtype=torch.float64),
        atol=KL_RECHECK_ATOL,
        rtol=0,
    )


@slow
def test_isc_panns(golden, run):
    av = golden["avbench"]
    order = av["row_order"]["pred"]
    assert np.random.RandomState(2020).permutation(len(order)).tolist() == av["isc_permutation"]
    mean, std = inception_score(_rows(run["logits"], "pred", order))
    assert float(mean) == pytest.approx(av["metrics"]["ISC-PANNS-mean"], abs=ISC_ATOL)
    assert float(std) == pytest.approx(av["metrics"]["ISC-PANNS-std"], abs=ISC_ATOL)
    stored = _rows({n: c["logits"] for n, c in av["clips"].items()}, "pred", order)
    mean_s, std_s = inception_score(stored)
    assert float(mean_s) == pytest.approx(av["isc"]["inception_score_mean"], abs=ISC_ATOL)
    assert float(std_s) == pytest.approx(av["isc"]["inception_score_std"], abs=ISC_ATOL)


# ---------------------------------------------------------------------------------------------------------------------
# formula cases (README §6): inputs regenerated from their seeds, checked by SHA-256 first


def _isc_formula(n: int, seed: int, scale: float, shift: float) -> torch.Tensor:
    z = torch.randn((n, FORMULA_CLASSES + FORMULA_K), generator=torch.Generator().manual_seed(seed))
    shared = z[:, FORMULA_CLASSES:][:, torch.arange(FORMULA_CLASSES) % FORMULA_K]
    return scale * z[:, :FORMULA_CLASSES] + shift * shared


def _fd_params(d: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + FD_PARAM_SEED_OFFSET)
    mu = 0.5 * torch.randn(d, generator=g)
    a = 0.5 + torch.rand(d, generator=g)
    b = 0.3 * torch.randn(d, generator=g)
    c = 0.4 * torch.rand(d, generator=g)
    return {"mu": mu, "a": a, "b": b, "c": c}


def _fd_formula(n: int, d: int, seed: int, p: dict[str, torch.Tensor]) -> torch.Tensor:
    z = torch.randn((n, d + FORMULA_K), generator=torch.Generator().manual_seed(seed))
    zd = z[:, :d]
    shared = z[:, d:][:, torch.arange(d) % FORMULA_K]
    return ((p["a"] * zd + p["b"] * torch.roll(zd, -1, 1)) + p["c"] * shared) + p["mu"]


@pytest.mark.parametrize("case", ["n7_fewer_than_splits", "n10_one_per_split", "n37", "n256", "n256_flat"])
def test_formula_isc(golden, case):
    ref = golden["formula"]["isc"][case]
    assert ref["k"] == FORMULA_K
    logits = _isc_formula(ref["n"], ref["seed"], ref["scale"], ref["shift"])
    assert _sha(logits) == ref["sha256"]
    assert torch.equal(logits[[0, 1, -1]], ref["rows_0_1_last"])
    if ref["n"] < 10:  # av-benchmark returns NaN for empty splits; the library refuses instead of returning NaN
        assert math.isnan(ref["mean"]) and math.isnan(ref["std"])
        with pytest.raises(ValueError, match="splits"):
            inception_score(logits)
        return
    mean, std = inception_score(logits)
    assert float(mean) == pytest.approx(ref["mean"], abs=ISC_ATOL)
    assert float(std) == pytest.approx(ref["std"], abs=ISC_ATOL)


@pytest.mark.parametrize("case", ["n5_close", "n64_far"])
def test_formula_kl(golden, case):
    ref = golden["formula"]["kl"][case]
    gt = _isc_formula(ref["n"], ref["seed_gt"], ref["scale"], ref["scale"] / 2)
    noise = torch.randn((ref["n"], FORMULA_CLASSES), generator=torch.Generator().manual_seed(ref["seed_pred"]))
    pred = gt + ref["pert"] * noise
    assert _sha(gt) == ref["sha256_gt"] and _sha(pred) == ref["sha256_pred"]
    soft = kl_divergence_from_logits(pred, gt, "softmax").mean()
    sig = kl_divergence_from_logits(pred, gt, "sigmoid").mean()
    assert float(soft) == pytest.approx(ref["kl_softmax"], rel=FORMULA_KL_RTOL)
    assert float(sig) == pytest.approx(ref["kl_sigmoid"], rel=FORMULA_KL_RTOL)


@pytest.mark.parametrize("case", ["d128_full", "d128_near_singular", "d128_rank_deficient"])
def test_formula_fd(golden, case):
    ref = golden["formula"]["fd"][case]
    sets = []
    for side, n in (("gen", ref["n_gen"]), ("ref", ref["n_ref"])):
        params = _fd_params(ref["d"], ref[f"seed_{side}"])
        for key, value in params.items():
            assert torch.equal(value, ref[f"params_{side}"][key]), (side, key)
        x = _fd_formula(n, ref["d"], ref[f"seed_{side}"], params)
        assert _sha(x) == ref[f"sha256_{side}"]
        sets.append(x)
    assert ref["eps_retry"] is False
    for method in ("eigh", "scipy"):
        fd = frechet_distance_from_features(sets[0], sets[1], eps_policy="on_failure", method=method)
        assert float(fd) == pytest.approx(ref["avbench"], rel=FORMULA_FD_RTOL), method
        swapped = frechet_distance_from_features(sets[1], sets[0], eps_policy="on_failure", method=method)
        assert float(swapped) == pytest.approx(ref["avbench_swapped"], rel=FORMULA_FD_RTOL), method


# ---------------------------------------------------------------------------------------------------------------------
# loading official-format files, checksum, offline, API errors (tiny models: the same code path at test size)


def _official_file(path, state: dict[str, torch.Tensor]) -> None:
    # audioset_tagging_cnn's checkpoint layout: the state_dict under "model" plus the training sampler (NumPy int64
    # arrays and lists) and the iteration count.
    sampler = {"indexes_per_class": [np.arange(5, dtype=np.int64)], "queue": [3, 1], "pointers_of_classes": [0, 2]}
    torch.save({"iteration": 600000, "model": state, "sampler": sampler}, path)


def test_official_format_loads_strictly(tmp_path):
    source = tiny_panns(seed=1)
    path = tmp_path / "Cnn14_16k_mAP=0.438.pth"
    _official_file(path, source.model.state_dict())
    net = tiny_panns(weights=path)
    for key, value in source.model.state_dict().items():
        assert torch.equal(net.model.state_dict()[key], value), key
    assert net.checkpoint_id.startswith(f"{PANNS_CHECKPOINT.name}@sha256:")
    bare = tmp_path / "bare.pth"
    torch.save(source.model.state_dict(), bare)
    assert torch.equal(tiny_panns(weights=bare).model.fc1.weight, source.model.fc1.weight)


def test_numpy1_pickle_names_are_allowed(tmp_path):
    # The official file was written in 2020 under NumPy 1, whose arrays pickle as numpy.core.multiarray._reconstruct;
    # NumPy 2 writes numpy._core. A protocol-2 pickle spells GLOBALs as text lines, so the old name can be put back.
    state = tiny_panns().model.state_dict()
    sampler = {"indexes_per_class": [np.arange(5, dtype=np.int64)]}
    buf = io.BytesIO()
    torch.save({"model": state, "sampler": sampler}, buf, pickle_protocol=2, _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    assert raw.count(b"numpy._core.multiarray") == 1
    path = tmp_path / "numpy1.pth"
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    loaded = load_panns_state_dict(path)
    assert list(loaded) == list(state) and torch.equal(loaded["fc1.weight"], state["fc1.weight"])


def test_extra_or_missing_keys_fail(tmp_path):
    state = tiny_panns().model.state_dict()
    extra = tmp_path / "extra.pth"
    _official_file(extra, {**state, "fc2.weight": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="Unexpected key"):
        tiny_panns(weights=extra)
    missing = tmp_path / "missing.pth"
    _official_file(missing, {k: v for k, v in state.items() if k != "logmel_extractor.melW"})
    with pytest.raises(RuntimeError, match="Missing key"):
        tiny_panns(weights=missing)


def test_other_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "args.pth"
    torch.save({"model": tiny_panns().model.state_dict(), "args": argparse.Namespace(lr=1e-3)}, path)
    with pytest.raises((pickle.UnpicklingError, ValueError), match="argparse.Namespace"):  # UnsafeCheckpointError
        load_panns_state_dict(path)


def test_published_md5_is_checked(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TORCHMETRICS_AV_OFFLINE", raising=False)
    src = tmp_path / "published.pth"
    _official_file(src, tiny_panns().model.state_dict())
    md5 = hashlib.md5(src.read_bytes(), usedforsecurity=False).hexdigest()
    good = dataclasses.replace(PANNS_CHECKPOINT, url=src.as_uri(), md5=md5)
    path = resolve_checkpoint(good, cache_dir=tmp_path / "cache")
    assert json.loads(path.with_name(path.name + ".sha256").read_text())["md5"] == md5
    assert resolve_checkpoint(good, cache_dir=tmp_path / "cache") == path  # cached copy accepted
    bad = dataclasses.replace(PANNS_CHECKPOINT, url=src.as_uri())  # the real published MD5: a tiny file fails it
    with pytest.raises(ChecksumError, match="MD5"):
        resolve_checkpoint(bad, cache_dir=tmp_path / "other")
    assert not (tmp_path / "other" / PANNS_CHECKPOINT.filename).exists()
    # A file put in the cache by hand (no digest record) is hashed and checked against the published MD5.
    hand = tmp_path / "hand"
    hand.mkdir()
    shutil.copy(src, hand / PANNS_CHECKPOINT.filename)
    assert resolve_checkpoint(good, cache_dir=hand) == hand / PANNS_CHECKPOINT.filename
    with pytest.raises(ChecksumError, match="MD5"):
        resolve_checkpoint(PANNS_CHECKPOINT, cache_dir=hand)


def test_offline_without_cache_names_file_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHMETRICS_AV_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="Cnn14_16k") as err:
        PANNs(cache_dir=tmp_path)
    assert "zenodo.org/records/3987831" in str(err.value) and "weights=" in str(err.value)
    with pytest.raises(WeightsNotFoundError):
        PANNs(weights=tmp_path / "absent.pth")


def test_input_errors():
    net = tiny_panns()
    with pytest.raises(ValueError, match="at least 4960"):
        net(torch.zeros(1, PANNS_MIN_SAMPLES - 1))
    assert net(torch.zeros(1, PANNS_MIN_SAMPLES))[0].shape == (1, 32)
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        net(torch.zeros(PANNS_MIN_SAMPLES))
    with pytest.raises(ValueError, match="waves\\[1\\]"):
        net.embed([torch.zeros(8000), torch.zeros(1, 8000)])
    with pytest.raises(ValueError, match="sample_rate"):
        net.prepare(torch.zeros(1, 100), 0)
    with pytest.raises(ValueError, match="NaN"):
        net.prepare(torch.full((1, 100), float("nan")), 16000)


def test_prepare_is_the_avbench_loading_rule():
    net = tiny_panns()
    g = torch.Generator().manual_seed(0)
    clip = 0.3 * torch.randn(2, 150000, generator=g) + torch.tensor([[0.05], [-0.02]])
    x = net.prepare(clip, 16000)
    mono = clip.numpy().astype(np.float64).mean(axis=0)
    expected = (mono - mono.mean())[: 8 * 16000]
    assert x.shape == (128000,) and x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-6, rtol=0)
    assert net.prepare(clip[:, :20000], 16000).shape == (20000,)  # shorter than 8 s: not padded
    assert net.prepare(clip, 16000, duration=None).shape == (150000,)
    assert net.prepare(clip[:, :44100], 44100).shape == (16000,)  # ceil(16000 * T / sr)


def test_embed_batches_equal_lengths_and_keeps_order():
    net = tiny_panns()
    g = torch.Generator().manual_seed(3)
    waves = [0.1 * torch.randn(n, generator=g) for n in (8000, 12000, 8000, 5000, 8000)]
    with torch.no_grad():
        emb, logits = net.embed(waves, batch_size=2)
        for i, w in enumerate(waves):
            e, z = net(w[None])
            torch.testing.assert_close(emb[i], e[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(logits[i], z[0], atol=1e-6, rtol=0)


def test_tiny_builder_is_seeded_and_leaves_the_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, b = tiny_panns(seed=5), tiny_panns(seed=5)
    assert torch.equal(torch.rand(3), expected_next)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert not torch.equal(tiny_panns(seed=6).model.fc1.weight, a.model.fc1.weight)
    assert list(a.model.state_dict()) == list(PANNs(pretrained=False).model.state_dict())
