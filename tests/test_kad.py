"""KAD vs kadtk's calc_kernel_audio_distance (estimators golden) and an independent NumPy MMD²."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torchmetrics_av.functional.kad as kad_module
from tests.conftest import golden_path
from tests.estimators_inputs import checked_embeddings
from torchmetrics_av.functional import kernel_audio_distance, median_pairwise_distance

# Golden README §7 (estimators).
KAD_F32_ATOL = 1e-4
KAD_F64_ATOL = 1e-6
BANDWIDTH_RTOL = 1e-6
DATA = ["e768", "e128", "e2048", "e128_big"]
VARIANTS = ["default", "swapped", "fixed_bw", "iq", "imq", "float64"]


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(golden_path("estimators") / "estimators.pt", weights_only=True)


@pytest.fixture(scope="module")
def embeddings(golden: dict) -> dict:
    return {name: checked_embeddings(golden["embeddings"][name]) for name in DATA}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("data", DATA)
def test_matches_kadtk(golden: dict, embeddings: dict, data: str, variant: str) -> None:
    ref = golden["kad"][data]["variants"][variant]
    target, preds = embeddings[data]
    if ref["y"] == "ref":  # kadtk called with the sets swapped: y (bandwidth side) = the reference set
        target, preds = preds, target
    dtype = torch.float64 if ref["precision"] == "float64" else torch.float32
    value = kernel_audio_distance(preds, target, kernel=ref["kernel"], bandwidth=ref["bandwidth_arg"], dtype=dtype)
    assert value.dtype == torch.float64 and value.ndim == 0
    assert float(value) == pytest.approx(ref["value"], abs=KAD_F64_ATOL if dtype == torch.float64 else KAD_F32_ATOL)


@pytest.mark.parametrize("data", DATA)
def test_bandwidth_from_target_equals_kadtk_swapped(golden: dict, embeddings: dict, data: str) -> None:
    target, preds = embeddings[data]
    ref = golden["kad"][data]
    assert median_pairwise_distance(preds) == pytest.approx(ref["median_bandwidth_gen"], rel=BANDWIDTH_RTOL)
    assert median_pairwise_distance(target) == pytest.approx(ref["median_bandwidth_ref"], rel=BANDWIDTH_RTOL)
    value = kernel_audio_distance(preds, target, bandwidth_from="target")
    assert float(value) == pytest.approx(ref["variants"]["swapped"]["value"], abs=KAD_F32_ATOL)


def test_median_is_the_lower_middle_value() -> None:
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])  # distances 1, 3, 7, 2, 6, 4: lower middle 3, np.median 3.5
    assert median_pairwise_distance(x) == 3.0


def _numpy_mmd(x: np.ndarray, y: np.ndarray, h: float, kernel: str) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # direct differences, not the norm expansion
        g = 1.0 / (2.0 * h * h + 1e-8)
        return {"gaussian": np.exp(-g * d2), "iq": 1 / (1 + g * d2), "imq": 1 / np.sqrt(1 + g * d2)}[kernel]

    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(100.0 * (xx + yy - 2.0 * k(x, y).mean()))


@pytest.mark.parametrize("kernel", ["gaussian", "iq", "imq"])
def test_matches_independent_numpy_in_float64(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(30, 6)) * 1.2 + 0.3
    expected = _numpy_mmd(x, y, 2.5, kernel)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    value = kernel_audio_distance(ty, tx, kernel=kernel, bandwidth=2.5, dtype=torch.float64)
    assert float(value) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    monkeypatch.setattr(kad_module, "_BLOCK_ROWS", 7)  # row blocks that do not divide N, diagonal across blocks
    blocked = kernel_audio_distance(ty, tx, kernel=kernel, bandwidth=2.5, dtype=torch.float64)
    assert float(blocked) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_scale_and_symmetry() -> None:
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(50, 4, generator=g, dtype=torch.float64), torch.randn(60, 4, generator=g, dtype=torch.float64)
    a = kernel_audio_distance(y, x, bandwidth=1.5, dtype=torch.float64)
    b = kernel_audio_distance(x, y, bandwidth=1.5, dtype=torch.float64, scale=1.0)
    assert float(a) == pytest.approx(100.0 * float(b), rel=1e-12)


def test_bad_input_raises() -> None:
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="kernel"):
        kernel_audio_distance(x, x, kernel="laplace")
    with pytest.raises(ValueError, match="bandwidth_from"):
        kernel_audio_distance(x, x, bandwidth_from="both")
    with pytest.raises(ValueError, match="dtype"):
        kernel_audio_distance(x, x, dtype=torch.float16)
    with pytest.raises(ValueError, match="bandwidth"):
        kernel_audio_distance(x, x, bandwidth=0.0)
    with pytest.raises(ValueError, match="features"):
        kernel_audio_distance(x, torch.randn(10, 4))
    with pytest.raises(ValueError, match="at least 2 rows"):
        kernel_audio_distance(x[:1], x)
    with pytest.raises(ValueError, match="NaN"):
        kernel_audio_distance(torch.full((4, 3), float("nan")), x)
    with pytest.raises(ValueError, match="median pairwise distance is 0"):
        kernel_audio_distance(torch.zeros(5, 3), x)
