"""BackboneMetric.bootstrap(): the same index draws through independent NumPy statistics, units and tables,
dict-valued metrics, text columns, determinism and errors (DDP equality is in tests/test_metrics_ddp.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from tests.test_fad import audio_batch
from tests.test_isc_metric import _numpy_isc
from torchmetrics_av import InceptionScore, KernelAudioDistance, KLDivergence
from torchmetrics_av.base import BackboneMetric, Rows
from torchmetrics_av.testing import tiny_backbone

NUM, SEED, CI = 200, 7, 0.9
# float64 reductions of the same rows on both sides: only summation order differs.
RTOL = 1e-9
# The metric's median bandwidth is float32 (kadtk), the NumPy one float64: ~1e-7 relative on h, less on KAD.
KAD_RTOL = 1e-6


def _percentile_summary(values: np.ndarray, point: float, ci: float) -> dict[str, float]:
    alpha = (1.0 - ci) / 2.0
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])  # linear interpolation
    return {"value": point, "low": low, "high": high, "std": values.std(ddof=1)}


def _assert_summary(out: dict[str, torch.Tensor], expected: dict[str, float], rtol: float = RTOL) -> None:
    assert sorted(out) == ["high", "low", "std", "value"]
    for key, value in expected.items():
        assert out[key].dtype == torch.float64 and out[key].shape == ()
        assert float(out[key]) == pytest.approx(value, rel=rtol, abs=1e-12), key


@pytest.fixture(scope="module")
def panns():
    return tiny_backbone("panns")


def test_kl_resamples_pairs(panns):
    kl = KLDivergence(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    kl.update(audio_batch(9, seed=1), audio_batch(9, seed=2), ids=[4, 0, 8, 1, 7, 2, 6, 3, 5])
    out = kl.bootstrap(num=NUM, seed=SEED, ci=CI)
    values = kl.per_sample()["kl_softmax"].numpy()  # sorted by id: the order the draws index
    draws = np.random.RandomState(SEED).randint(0, len(values), size=(NUM, len(values)))
    _assert_summary(out, _percentile_summary(values[draws].mean(axis=1), values.mean(), CI))
    assert float(out["value"]) == float(kl.compute())


def test_is_resamples_logit_rows(panns):
    isc = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=panns)
    isc.update(audio_batch(13, seed=3))
    out = isc.bootstrap(num=60, seed=SEED)
    logits = isc.per_sample()["logits"].numpy()
    draws = np.random.RandomState(SEED).randint(0, 13, size=(60, 13))
    # Each resample goes through the whole IS protocol: seeded permutation, 10 splits.
    values = np.array([_numpy_isc(logits[d], 10, 2020)[0] for d in draws])
    _assert_summary(out, _percentile_summary(values, _numpy_isc(logits, 10, 2020)[0], 0.95))


def _numpy_kad(x: np.ndarray, y: np.ndarray, scale: float = 100.0) -> float:
    """kadtk's KAD in float64: Gaussian kernel, bandwidth = lower median of the generated set's pairwise distances."""
    d = np.sqrt(((y[:, None] - y[None]) ** 2).sum(-1))[np.triu_indices(len(y), 1)]
    h = np.sort(d)[(len(d) - 1) // 2]
    gamma = 1.0 / (2.0 * h**2 + 1e-8)

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-gamma * ((a[:, None] - b[None]) ** 2).sum(-1))

    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return scale * (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * k(x, y).mean()
    )


def _unit_rows(example: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """Rows of the drawn clips, a clip being the rows from one example 0 to the next."""
    starts = np.flatnonzero(example == 0)
    ends = np.append(starts[1:], len(example))
    return np.concatenate([np.arange(starts[u], ends[u]) for u in drawn])


def test_kad_resamples_clips_per_side_generated_first():
    kad = KernelAudioDistance(
        sample_rate=16000, protocol="av-benchmark", backbone=tiny_backbone("vggish"), kernel_dtype=torch.float64
    )
    gen = [audio_batch(1, seconds=s, seed=10 + i)[0] for i, s in enumerate((1.0, 2.5, 1.5, 3.2, 1.1, 1.0, 1.2, 2.0))]
    ref = [audio_batch(1, seconds=s, seed=20 + i)[0] for i, s in enumerate((2.1, 1.0, 1.0, 4.0, 1.0, 1.3))]
    kad.update(preds=gen, target=ref, ids=[3, 1, 4, 0, 2, 5, 6, 7], target_ids=[0, 1, 2, 3, 4, 5])
    rows = kad.per_sample()
    # ids 0..7 have 3, 2, 1, 1, 1, 1, 1, 2 examples of 0.96 s
    assert rows["preds_example"].tolist() == [0, 1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    out = kad.bootstrap(num=50, seed=SEED)
    px, tx = rows["preds_embeddings"].numpy(), rows["target_embeddings"].numpy()
    pe, te = rows["preds_example"].numpy(), rows["target_example"].numpy()
    stream = np.random.RandomState(SEED)
    p_draws, t_draws = stream.randint(0, 8, size=(50, 8)), stream.randint(0, 6, size=(50, 6))
    values = np.array([_numpy_kad(tx[_unit_rows(te, t)], px[_unit_rows(pe, p)]) for p, t in zip(p_draws, t_draws)])
    _assert_summary(out, _percentile_summary(values, _numpy_kad(tx, px), 0.95), rtol=KAD_RTOL)
    assert float(out["value"]) == pytest.approx(float(kad.compute()), rel=1e-12)


class _ToyMetric(BackboneMetric):
    """Per-sample numbers and their text spelling; a dict value, as Audiobox's axes."""

    _input_hint = "numbers"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_rows({"a": ((), torch.float64)}, texts=("spelled",))

    def _score(self, values: list[int]) -> Rows:
        return {
            "ids": self._ids_tensor(None, len(values)),
            "a": torch.tensor(values, dtype=torch.float64),
            "spelled": ["x" * v for v in values],
        }

    def _reduce(self, rows: Rows) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([len(t) for t in rows["spelled"]], dtype=torch.float64)
        return {"mean": rows["a"].mean(), "text_mean": lengths.mean(), "max": rows["a"].max()}


def test_dict_values_and_text_columns_are_resampled_together():
    metric = _ToyMetric()
    metric.update([1, 5, 2, 9, 4, 4, 7])
    out = metric.bootstrap(num=NUM, seed=SEED)
    assert sorted(out) == ["max", "mean", "text_mean"]
    assert {k: float(v) for k, v in out["mean"].items()} == {k: float(v) for k, v in out["text_mean"].items()}
    a = np.array([1, 5, 2, 9, 4, 4, 7], dtype=np.float64)
    draws = np.random.RandomState(SEED).randint(0, 7, size=(NUM, 7))
    _assert_summary(out["max"], _percentile_summary(a[draws].max(axis=1), 9.0, 0.95))


def test_deterministic_for_a_seed_and_argument_errors():
    metric = _ToyMetric()
    metric.update([3, 1, 4, 1, 5, 9, 2, 6])
    first, again, other = metric.bootstrap(seed=3), metric.bootstrap(seed=3), metric.bootstrap(seed=4)
    assert all(torch.equal(first["mean"][k], again["mean"][k]) for k in first["mean"])
    assert not torch.equal(first["mean"]["low"], other["mean"]["low"]) or not torch.equal(
        first["mean"]["std"], other["mean"]["std"]
    )
    assert torch.equal(first["mean"]["value"], metric.compute()["mean"])
    for kwargs, match in (
        ({"num": 1}, "`num`"),
        ({"num": 10.0}, "`num`"),
        ({"seed": -1}, "`seed`"),
        ({"seed": 2**32}, "`seed`"),
        ({"ci": 1.0}, "`ci`"),
        ({"ci": 0}, "`ci`"),
    ):
        with pytest.raises(ValueError, match=match):
            metric.bootstrap(**kwargs)
    with pytest.raises(ValueError, match="no per-sample rows to resample; call update"):
        _ToyMetric().bootstrap()


def test_wer_corpus_bootstrap_resamples_error_and_word_counts_together():
    from torchmetrics_av import SpeechWordErrorRate

    hyps = ["a b c", "a x", "b", "a b c d e", "x y", "c"]
    refs = ["a b c", "a b", "b c d", "a b c d", "a b c d e", "c"]
    wer = SpeechWordErrorRate(sample_rate=16000, asr=lambda audio, languages: hyps, reduction="corpus")
    wer.update(torch.zeros(6, 1600), refs)
    out = wer.bootstrap(num=NUM, seed=SEED)
    rows = wer.per_sample()
    errors = (rows["substitutions"] + rows["deletions"] + rows["insertions"]).double().numpy()
    words = rows["words"].double().numpy()
    draws = np.random.RandomState(SEED).randint(0, 6, size=(NUM, 6))
    values = errors[draws].sum(axis=1) / words[draws].sum(axis=1)  # Σ errors / Σ words of each resample
    _assert_summary(out, _percentile_summary(values, errors.sum() / words.sum(), 0.95))


def test_audiobox_bootstrap_is_one_interval_per_axis():
    from torchmetrics_av import AudioboxAesthetics

    aes = AudioboxAesthetics(sample_rate=16000, backbone=tiny_backbone("audiobox"))
    aes.update(audio_batch(5, seconds=1.0, seed=30))
    out = aes.bootstrap(num=40, seed=SEED)
    rows = aes.per_sample()
    draws = np.random.RandomState(SEED).randint(0, 5, size=(40, 5))  # one draw of clips shared by the four axes
    assert sorted(out) == ["CE", "CU", "PC", "PQ"]
    for axis in out:
        v = rows[axis].numpy()
        _assert_summary(out[axis], _percentile_summary(v[draws].mean(axis=1), v.mean(), 0.95))
