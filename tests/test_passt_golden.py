"""Full-size parity with ../shared/golden/passt (README §7 tolerances), both protocols, through the public API.

One module-scoped run per protocol feeds the golden clips (at their native, per-clip sample rates) to
FrechetAudioDistance and PaSSTKLDivergence sharing one fill-v1 PaSST, and records every model window and its outputs
so that inputs, embeddings, logits, window means, per-pair KL and FD are all checked from that single pass.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import torch

from tests.conftest import load_golden
from torchmetrics_av import FrechetAudioDistance, PaSSTKLDivergence
from torchmetrics_av.backbones import PaSST
from torchmetrics_av.functional import frechet_distance_from_features
from torchmetrics_av.preprocessing import AVBENCH_AUDIO_LENGTH_S, protocol_waveform

pytestmark = pytest.mark.slow

INPUT_ATOL = 1e-6
EMB_ATOL = 5e-5
LOGIT_ATOL = 5e-5
KL_SOFTMAX_ATOL = 1e-5
KL_SIGMOID_ATOL = 1e-4
FD_RTOL = {"fastvideo": 1e-6, "avbench": 1e-4}
FD_STORED_RTOL = 1e-7
# av-benchmark's FD of the stored 3 vs 3 embeddings has no eps: rank-2 covariances, so every route (the reference's
# sqrtm included) adds sqrt of ~766 round-off eigenvalues of the singular product, and the stored score is defined only
# to the CPU's BLAS/LAPACK round-off. Measured on the CI CPU (OpenBLAS 0.3.31 Haswell kernels): the reference's own
# numpy/scipy code gives 2.3e-7 relative from the stored score, our eigh path 4.4e-7 (2 threads) / 2.6e-7 (1 thread),
# the exact low-rank value 1.8e-6. 1e-7 held only on the CPU that made the golden. The algorithm itself is pinned at
# 1e-7 by test_fd_scipy_path_is_the_reference_algorithm (the reference code run here) and by the formula goldens.
FD_STORED_SINGULAR_RTOL = 1e-6


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return load_golden("passt", "passt_golden.pt")


@pytest.fixture(scope="module")
def passt_full(fill_v1) -> PaSST:
    net = PaSST(pretrained=False)
    fill_v1(net.model)
    return net


class Recorder:
    """Wraps ``PaSST.embed`` to keep every (windows, embeddings, logits) call."""

    def __init__(self, net: PaSST) -> None:
        self.net, self.calls = net, []
        self._orig = net.embed

    def __enter__(self) -> Recorder:
        def embed(windows, batch_size=8):
            emb, logits = self._orig(windows, batch_size)
            self.calls.append(([w.clone() for w in windows], emb.clone(), logits.clone()))
            return emb, logits

        self.net.embed = embed
        return self

    def __exit__(self, *exc: object) -> None:
        del self.net.embed


def _run(golden: dict, net: PaSST, protocol: str) -> dict[str, Any]:
    clips = {c["name"]: c for c in golden["clips"]}
    gens = [clips[g] for g, _ in golden["pairs"]]
    refs = [clips[r] for _, r in golden["pairs"]]
    kwargs = dict(
        sample_rate=[c["sr"] for c in gens],
        target_sample_rate=[c["sr"] for c in refs],
    )
    fd = FrechetAudioDistance(protocol=protocol, backbone=net)
    kl = PaSSTKLDivergence(protocol=protocol, backbone=net)
    with Recorder(net) as rec:
        fd.update(preds=[c["wave"] for c in gens], target=[c["wave"] for c in refs], **kwargs)
        kl.update([c["wave"] for c in gens], [c["wave"] for c in refs], **kwargs)
    return {
        "fd": fd.compute(),
        "fd_details": fd.details,
        "kl": kl.compute(),
        "kl_details": kl.details,
        "calls": rec.calls,
        "gens": [c["name"] for c in gens],
        "refs": [c["name"] for c in refs],
    }


@pytest.fixture(scope="module")
def fastvideo_run(golden, passt_full) -> dict[str, Any]:
    return _run(golden, passt_full, "fastvideo")


@pytest.fixture(scope="module")
def avbench_run(golden, passt_full) -> dict[str, Any]:
    return _run(golden, passt_full, "av-benchmark")


def _check_input(x: torch.Tensor, stats: dict[str, Any], name: str) -> None:
    assert x.dtype == torch.float32
    assert x.numel() == stats["len"], name
    assert int((x != 0).sum()) == stats["n_nonzero"], name
    torch.testing.assert_close(x[:1000], stats["head"], atol=INPUT_ATOL, rtol=0, msg=f"{name} head")
    torch.testing.assert_close(x[-1000:], stats["tail"], atol=INPUT_ATOL, rtol=0, msg=f"{name} tail")
    torch.testing.assert_close(x[::97], stats["stride97"], atol=INPUT_ATOL, rtol=0, msg=f"{name} stride97")


def _sha(x: torch.Tensor) -> str:
    return hashlib.sha256(x.numpy().astype("<f4").tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------------
# fastvideo


def test_fastvideo_fd_windows_and_embeddings(golden, fastvideo_run):
    ref = golden["fastvideo"]["clips"]
    windows, emb, logits = [], [], []
    for w, e, z in fastvideo_run["calls"][:2]:  # FD: preds call, then target call
        windows += w
        emb.append(e)
        logits.append(z)
    names = fastvideo_run["gens"] + fastvideo_run["refs"]
    emb, logits = torch.cat(emb), torch.cat(logits)
    sr = {c["name"]: c["sr"] for c in golden["clips"]}
    for i, name in enumerate(names):
        _check_input(windows[i], ref[name]["fd_input"], name)
        if sr[name] == 32000:  # no resampling: bit equality expected (README §7)
            assert _sha(windows[i]) == ref[name]["fd_input"]["sha256"], name
        torch.testing.assert_close(emb[i], ref[name]["embedding"], atol=EMB_ATOL, rtol=0, msg=name)
        torch.testing.assert_close(logits[i], ref[name]["fd_logits"], atol=LOGIT_ATOL, rtol=0, msg=name)


def test_fastvideo_kl_windows_and_logits(golden, fastvideo_run):
    ref = golden["fastvideo"]["clips"]
    windows, _, logits = fastvideo_run["calls"][2]
    names = fastvideo_run["gens"] + fastvideo_run["refs"]
    start = 0
    for name in names:
        expected = ref[name]["kl_windows"]
        assert len(expected) == ref[name]["kl_n_windows"]
        got = windows[start : start + len(expected)]
        got_logits = logits[start : start + len(expected)]
        for k, (w, exp) in enumerate(zip(got, expected)):
            _check_input(w, exp["input"], f"{name} window {k}")
            torch.testing.assert_close(got_logits[k], exp["logits"], atol=LOGIT_ATOL, rtol=0)
        torch.testing.assert_close(got_logits.mean(0), ref[name]["kl_logits"], atol=LOGIT_ATOL, rtol=0, msg=name)
        start += len(expected)
    assert start == len(windows)


def test_fastvideo_kl_per_pair(golden, fastvideo_run):
    pairs = golden["fastvideo"]["pairs"]
    d = fastvideo_run["kl_details"]
    exp_soft = torch.tensor([p["kl_softmax"] for p in pairs], dtype=torch.float64)
    exp_sig = torch.tensor([p["kl_sigmoid"] for p in pairs], dtype=torch.float64)
    torch.testing.assert_close(d["kl_softmax"], exp_soft, atol=KL_SOFTMAX_ATOL, rtol=0)
    torch.testing.assert_close(d["kl_sigmoid"], exp_sig, atol=KL_SIGMOID_ATOL, rtol=0)
    torch.testing.assert_close(fastvideo_run["kl"], exp_soft.mean(), atol=KL_SOFTMAX_ATOL, rtol=0)
    assert d["n_pairs"] == 3 and d["n_skipped_silent"] == 0


def test_fastvideo_fd(golden, fastvideo_run):
    exp = golden["fastvideo"]["fd"]
    assert float(fastvideo_run["fd"]) == pytest.approx(exp["score"], rel=FD_RTOL["fastvideo"])
    d = fastvideo_run["fd_details"]
    assert (d["n_preds"], d["n_target"], d["n_preds_dropped_nonfinite"], d["n_target_dropped_nonfinite"]) == (
        exp["n_gen"],
        exp["n_ref"],
        exp["n_gen_dropped_nonfinite"],
        exp["n_ref_dropped_nonfinite"],
    )
    assert d["target_source"] == exp["ref_source"]


# ---------------------------------------------------------------------------------------------------------------------
# av-benchmark


def test_avbench_content_length(golden):
    for c in golden["clips"]:
        x = protocol_waveform(c["wave"], c["sr"], 32000, "av-benchmark", audio_length=golden["avbench"]["audio_length"])
        assert x.numel() == golden["avbench"]["clips"][c["name"]]["n_content"], c["name"]
    assert golden["avbench"]["audio_length"] == AVBENCH_AUDIO_LENGTH_S


def test_avbench_windows_embeddings_logits(golden, avbench_run):
    ref = golden["avbench"]["clips"]
    names = avbench_run["gens"] + avbench_run["refs"]
    windows = avbench_run["calls"][0][0] + avbench_run["calls"][1][0]
    emb = torch.cat([avbench_run["calls"][0][1], avbench_run["calls"][1][1]])
    logits = torch.cat([avbench_run["calls"][0][2], avbench_run["calls"][1][2]])
    kl_windows, _, kl_logits = avbench_run["calls"][2]
    for i, name in enumerate(names):
        _check_input(windows[i], ref[name]["input"], name)
        torch.testing.assert_close(emb[i], ref[name]["embedding"], atol=EMB_ATOL, rtol=0, msg=name)
        torch.testing.assert_close(logits[i], ref[name]["logits"], atol=LOGIT_ATOL, rtol=0, msg=name)
        # av-benchmark's KL uses the FD window's logits: one window per clip, the same input.
        assert torch.equal(kl_windows[i], windows[i])
        torch.testing.assert_close(kl_logits[i], ref[name]["logits"], atol=LOGIT_ATOL, rtol=0, msg=name)


def test_avbench_kl(golden, avbench_run):
    pairs = golden["avbench"]["pairs"]
    d = avbench_run["kl_details"]
    torch.testing.assert_close(
        d["kl_softmax"],
        torch.tensor([p["kl_softmax"] for p in pairs], dtype=torch.float64),
        atol=KL_SOFTMAX_ATOL,
        rtol=0,
    )
    torch.testing.assert_close(
        d["kl_sigmoid"],
        torch.tensor([p["kl_sigmoid"] for p in pairs], dtype=torch.float64),
        atol=KL_SIGMOID_ATOL,
        rtol=0,
    )
    assert float(avbench_run["kl"]) == pytest.approx(golden["avbench"]["kl_mean"]["kl_softmax"], abs=KL_SOFTMAX_ATOL)
    assert float(d["kl_sigmoid_mean"]) == pytest.approx(golden["avbench"]["kl_mean"]["kl_sigmoid"], abs=KL_SIGMOID_ATOL)


def test_avbench_fd(golden, avbench_run):
    assert float(avbench_run["fd"]) == pytest.approx(golden["avbench"]["fd"]["score"], rel=FD_RTOL["avbench"])


# ---------------------------------------------------------------------------------------------------------------------
# FD from the stored embeddings (model-independent)


@pytest.mark.parametrize("key,policy", [("fastvideo", "always"), ("avbench", "on_failure")])
def test_fd_from_stored_embeddings(golden, key, policy):
    clips = golden[key]["clips"]
    gen = torch.stack([clips[g]["embedding"] for g, _ in golden["pairs"]])
    ref = torch.stack([clips[r]["embedding"] for _, r in golden["pairs"]])
    value = frechet_distance_from_features(gen, ref, eps_policy=policy, method="eigh")
    rtol = FD_STORED_RTOL if policy == "always" else FD_STORED_SINGULAR_RTOL
    assert float(value) == pytest.approx(golden[key]["fd"]["score"], rel=rtol)


@pytest.mark.parametrize("key,policy", [("fastvideo", "always"), ("avbench", "on_failure")])
def test_fd_scipy_path_is_the_reference_algorithm(golden, key, policy):
    """method="scipy" must equal the references' numpy code (float32 mean, np.cov, sqrtm(s1 @ s2)) run here.

    It is compared with the reference algorithm on this machine rather than with the stored score because, for the
    rank-2 covariances without eps (avbench), the reference's own result moves by ~2e-7 relative with the LAPACK
    build (round-off eigenvalues of the singular product enter sqrtm; see FD_STORED_SINGULAR_RTOL).
    """
    np = pytest.importorskip("numpy")
    scipy_linalg = pytest.importorskip("scipy.linalg")
    clips = golden[key]["clips"]
    gen = torch.stack([clips[g]["embedding"] for g, _ in golden["pairs"]])
    ref = torch.stack([clips[r]["embedding"] for _, r in golden["pairs"]])
    x, y = gen.numpy(), ref.numpy()
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    if policy == "always":
        s1, s2 = s1 + 1e-6 * np.eye(768), s2 + 1e-6 * np.eye(768)
    diff = x.mean(0) - y.mean(0)
    expected = diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy_linalg.sqrtm(s1 @ s2).real)
    value = frechet_distance_from_features(gen, ref, eps_policy=policy, method="scipy")
    assert float(value) == pytest.approx(float(expected), rel=FD_STORED_RTOL)
