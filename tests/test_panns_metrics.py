"""FD-PANN, FD-VGG, KL-PANNS and ISC-PANNS through the metric classes on the PANNs/VGGish golden (tests/golden/panns:
av-benchmark 050a5cd ``evaluate()`` with fill-v1 weights), at the README's tolerances.

Two routes: the stored golden features through each metric's ``_reduce`` (its reduction alone, no model), and one
end-to-end run of the 22 golden clips through ``update()`` with full-size fill-v1 models, the three PANNs metrics
sharing one backbone (one forward per clip).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.conftest import golden_path
from tests.panns_inputs import clip_entries, load_clip
from torchmetrics_av import FrechetAudioDistance, InceptionScore, KLDivergence
from torchmetrics_av.backbones import PANNs, VGGish

# Golden README §8 (tests/golden/panns/README.md).
FD_RTOL = 1e-5  # from our features (eigenvalue trace)
FD_STORED_RTOL = 1e-5  # the golden's own float32 features; FD-PANN's 2048-d covariances are rank-deficient
KL_ATOL = 1e-6  # per pair and mean, against av-benchmark's float32 compute_kl
KL_SIGMOID_ATOL = 5e-6
ISC_ATOL = 1e-9

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return torch.load(golden_path("panns") / "panns_golden.pt", weights_only=True)


def _stored(golden: dict[str, Any], key: str, side: str) -> torch.Tensor:
    av = golden["avbench"]
    side_key = "pred" if side == "pred" else "gt"
    rows = [av["clips"][f"{side_key}/{s}"][key] for s in av["row_order"][side_key]]
    return torch.cat([r.reshape(-1, r.shape[-1]) for r in rows])


# ---------------------------------------------------------------------------------------------------------------------
# the stored golden features through each metric's reduction


def test_isc_panns_from_stored_logits(golden):
    av = golden["avbench"]
    isc = InceptionScore(protocol="av-benchmark")  # backbone="panns": never built, _reduce needs no model
    rows = {"ids": torch.arange(14), "logits": _stored(golden, "logits", "pred")}
    assert float(isc._reduce(rows)) == pytest.approx(av["isc"]["inception_score_mean"], abs=ISC_ATOL)
    assert float(isc._summary(rows)["inception_score_std"]) == pytest.approx(
        av["isc"]["inception_score_std"], abs=ISC_ATOL
    )


@pytest.mark.parametrize(("backbone", "key", "metric"), [("panns", "emb2048", "FD-PANN"), ("vggish", "vggish_emb", "FD-VGG")])
def test_fd_from_stored_features(golden, backbone, key, metric):
    av = golden["avbench"]
    fd = FrechetAudioDistance(protocol="av-benchmark", backbone=backbone)
    preds, target = _stored(golden, key, "pred"), _stored(golden, key, "gt")
    ref = av["fd_pann" if backbone == "panns" else "fd_vgg"]
    assert (preds.shape[0], target.shape[0]) == (ref["n_gen"], ref["n_ref"])  # VGGish: every 0.96 s example
    rows = {"preds_embeddings": preds.double(), "target_embeddings": target.double()}
    assert float(fd._reduce(rows)) == pytest.approx(av["metrics"][metric], rel=FD_STORED_RTOL)


# ---------------------------------------------------------------------------------------------------------------------
# end to end: the 22 golden clips through update(), full-size fill-v1 models


@pytest.fixture(scope="module")
def run(golden, fill_v1) -> dict[str, Any]:
    av = golden["avbench"]
    entries = clip_entries(golden)
    panns, vggish = PANNs(pretrained=False), VGGish(pretrained=False)
    fill_v1(panns.model)
    fill_v1(vggish.model)
    forwards: list[int] = []
    panns.register_forward_hook(lambda m, args, out: forwards.append(args[0].shape[0]))
    metrics = {
        "FD-PANN": FrechetAudioDistance(protocol="av-benchmark", backbone=panns),
        "FD-VGG": FrechetAudioDistance(protocol="av-benchmark", backbone=vggish),
        "KL-PANNS": KLDivergence(protocol="av-benchmark", backbone=panns),
        "ISC-PANNS": InceptionScore(protocol="av-benchmark", backbone=panns),
    }

    def clips(side: str, stems: list[str]) -> tuple[list[torch.Tensor], list[int]]:
        names = [f"{side}/{s}" for s in stems]
        return [load_clip(entries[n]) for n in names], [entries[n]["sample_rate"] for n in names]

    pred, pred_rates = clips("pred", av["row_order"]["pred"])
    gt, gt_rates = clips("gt", av["row_order"]["gt"])
    pred_ids, gt_ids = list(range(len(pred))), list(range(len(gt)))
    for name in ("FD-PANN", "FD-VGG"):
        # Unpaired: all generated against all reference clips, in av-benchmark's sorted row order.
        metrics[name].update(preds=pred, target=gt, sample_rate=pred_rates, target_sample_rate=gt_rates, ids=pred_ids)
    kl_pred, kl_pred_rates = clips("pred", av["kl_pairs_order"])
    kl_gt, kl_gt_rates = clips("gt", av["kl_pairs_order"])
    metrics["KL-PANNS"].update(kl_pred, kl_gt, sample_rate=kl_pred_rates, target_sample_rate=kl_gt_rates)
    metrics["ISC-PANNS"].update(pred, sample_rate=pred_rates, ids=pred_ids)
    values = {name: m.compute() for name, m in metrics.items()}
    return {"metrics": metrics, "values": values, "forwards": sum(forwards)}


@slow
def test_one_panns_forward_per_clip_feeds_fd_kl_and_is(run):
    # 14 generated + 8 reference clips, less one: gt/s00 is pred/s00 (same samples, a memo hit). KL and IS reuse
    # the outputs FD-PANN memoised.
    assert run["forwards"] == 21


@slow
def test_fd_pann_and_fd_vgg(golden, run):
    av = golden["avbench"]
    for name, ref in (("FD-PANN", av["fd_pann"]), ("FD-VGG", av["fd_vgg"])):
        details = run["metrics"][name].details
        assert (details["n_preds"], details["n_target"]) == (ref["n_gen"], ref["n_ref"]), name
        assert float(run["values"][name]) == pytest.approx(av["metrics"][name], rel=FD_RTOL), name


@slow
def test_kl_panns(golden, run):
    av = golden["avbench"]
    kl = run["metrics"]["KL-PANNS"]
    expected = torch.tensor([p["kl_softmax"] for p in av["kl_per_pair"]], dtype=torch.float64)
    torch.testing.assert_close(kl.per_sample()["kl_softmax"], expected, atol=KL_ATOL, rtol=0)
    assert float(run["values"]["KL-PANNS"]) == pytest.approx(av["metrics"]["KL-PANNS-softmax"], abs=KL_ATOL)
    assert float(kl.details["kl_sigmoid_mean"]) == pytest.approx(av["kl"]["kl_sigmoid"], abs=KL_SIGMOID_ATOL)


@slow
def test_isc_panns(golden, run):
    av = golden["avbench"]
    isc = run["metrics"]["ISC-PANNS"]
    assert float(run["values"]["ISC-PANNS"]) == pytest.approx(av["metrics"]["ISC-PANNS-mean"], abs=ISC_ATOL)
    assert float(isc.details["inception_score_std"]) == pytest.approx(av["metrics"]["ISC-PANNS-std"], abs=ISC_ATOL)
