"""torchmetrics' ``MetricTester`` contract on FD, KL and WER, against references written with numpy / scipy / jiwer.

torchmetrics' own tester (``tests/unittests/_helpers/testers.py``) is not pip-installable; this file makes the same
checks, in our own code (reference/torchmetrics.md §5):

* ``_class_test``: constants cannot be set, ``clone()``, a pickle round trip, per batch ``forward`` vs the reference on
  that batch (with ``dist_sync_on_step``: on every rank's batch of the step), on one process ``forward`` == a clone's
  ``update`` + ``compute``, ``hash``, an empty ``state_dict()``, and the final ``compute()`` vs the reference on all
  data; on 1 process and on 2 gloo processes, with ``dist_sync_on_step`` False and True;
* ``run_precision_test_cpu``: half (and double) precision inputs still give a tensor;
* plus a ``state_dict`` round trip, ``reset``, and ``.half()`` / ``.double()`` / ``set_dtype`` before and after updates.

The references never call torchmetrics-av: FD and KL take a stand-in backbone with PaSST's interface whose embedding is
the log energy of 4 FFT bands of the model window (recomputed here with numpy), so the reference redoes the whole
pipeline — FastVideo's peak normalisation to -1 dBFS, the 10 s zero-padded window, the features, then ``np.cov`` +
``scipy.linalg.sqrtm`` (FD) or softmax + ``scipy.stats.entropy`` (KL). WER uses an injected ASR and ``jiwer``.
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jiwer
import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats
import torch
from torch import Tensor, nn

from tests.ddp import run_ddp
from torchmetrics_av import FrechetAudioDistance, PaSSTKLDivergence, SpeechWordErrorRate

NUM_PROCESSES = 2
NUM_BATCHES = 2 * NUM_PROCESSES
BATCH_SIZE = 5
SAMPLE_RATE = 32000  # PaSST's rate: no resampling, so the reference needs none either
CLIP_SAMPLES = 2 * SAMPLE_RATE
WINDOW_SAMPLES = 10 * SAMPLE_RATE  # FastVideo's FD window; a 2 s clip's KL window is the same (padded to 10 s)
PEAK_DBFS = -1.0  # FastVideo's pyloudnorm.normalize.peak(x, -1.0)
FD_EPS = 1e-6  # FastVideo's eps * I, always added to both covariances (reference/fastvideo.md §7)
NUM_BANDS, NUM_CLASSES = 4, 527
# Log band energies are ~7-10: this scale keeps the softmax unsaturated, so that the KL values are O(0.01).
LOGIT_SCALE = 0.3
# float64 references vs float64 metrics: only summation order and the eigh-vs-sqrtm square root differ.
ATOL = {"fd": 1e-8, "kl": 1e-10, "wer": 1e-12}


@pytest.fixture(autouse=True)
def _one_thread():
    """Small float64 tensors: one thread is faster (and immune to oversubscription); restored for the other files."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------------------
# stand-in backbone and data


class BandEnergies(nn.Module):
    """PaSST's interface (``embed(windows, batch_size) -> (embeddings, logits)``) with a closed-form model.

    Embedding: log mean power of 4 equal FFT-bin bands of the window (float64); logits: a fixed random linear map of
    it to 527 classes. Strongly input-dependent (a random tiny PaSST barely is), and recomputable with numpy.
    """

    embed_dim = NUM_BANDS
    checkpoint_id = "band-energies"

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        weight = LOGIT_SCALE * torch.randn(NUM_CLASSES, NUM_BANDS, generator=g, dtype=torch.float64)
        self.register_buffer("weight", weight)

    def embed(self, windows: list[Tensor], batch_size: int = 8) -> tuple[Tensor, Tensor]:
        x = torch.stack(windows).to(torch.float64)
        power = torch.fft.rfft(x).abs().square()
        bands = torch.stack([b.mean(dim=-1) for b in power.tensor_split(NUM_BANDS, dim=-1)], dim=-1)
        emb = torch.log(bands)
        return emb, emb @ self.weight.T


def reference_features(clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy redo of the pipeline for 32 kHz mono clips: peak -1 dBFS (float64 gain, rounded to float32), zero-pad to
    10 s, band log-energies, logits."""
    x = clips.astype(np.float64)
    gain = 10.0 ** (PEAK_DBFS / 20.0) / np.abs(x).max(axis=1, keepdims=True)
    x = (x * gain).astype(np.float32).astype(np.float64)
    x = np.pad(x, ((0, 0), (0, WINDOW_SAMPLES - x.shape[1])))
    power = np.abs(np.fft.rfft(x, axis=1)) ** 2
    emb = np.log(np.stack([b.mean(axis=1) for b in np.array_split(power, NUM_BANDS, axis=1)], axis=1))
    weight = BandEnergies().weight.numpy()
    return emb, emb @ weight.T


def audio_data(seed: int) -> Tensor:
    """(NUM_BATCHES, BATCH_SIZE, T) tones + noise of random pitch and level (never silent)."""
    g = torch.Generator().manual_seed(seed)
    n = NUM_BATCHES * BATCH_SIZE
    t = torch.arange(CLIP_SAMPLES, dtype=torch.float64) / SAMPLE_RATE
    freq = 50.0 + 12000.0 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    tone = torch.sin(2 * math.pi * freq * t) * torch.rand(n, 1, generator=g, dtype=torch.float64)
    noise = torch.randn(n, CLIP_SAMPLES, generator=g, dtype=torch.float64) * torch.rand(n, 1, generator=g)
    return (0.4 * (tone + noise)).float().reshape(NUM_BATCHES, BATCH_SIZE, CLIP_SAMPLES)


def fd_reference(preds: Tensor, target: Tensor) -> float:
    p, _ = reference_features(preds.numpy())
    t, _ = reference_features(target.numpy())
    eye = np.eye(NUM_BANDS)
    s1, s2 = np.cov(p, rowvar=False) + FD_EPS * eye, np.cov(t, rowvar=False) + FD_EPS * eye
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    diff = p.mean(axis=0) - t.mean(axis=0)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def kl_reference(preds: Tensor, target: Tensor) -> float:
    _, p = reference_features(preds.numpy())
    _, t = reference_features(target.numpy())
    p, t = scipy.special.softmax(p, axis=1), scipy.special.softmax(t, axis=1)
    return float(np.mean([scipy.stats.entropy(t[i], p[i]) for i in range(len(p))]))  # KL(target || preds)


# WER: clip k is a constant level k / 1000 at 16 kHz; the ASR reads the level back and returns HYPS[k]. The texts are
# already lower-case without punctuation, so the metric's normalisation leaves them unchanged and jiwer sees the same.
WER_RATE = 16000
REFS = [f"the {w} sat" + " on the mat" * (i % 4) + f" number {i}" for i, w in enumerate(["cat", "dog", "owl"] * 7)][:20]
# A substitution, an insertion, a deletion or none, so that per-sample WERs differ and mean != corpus.
HYPS = [[r.replace("sat", "sits"), r + " yes", r.replace("the ", "", 1), r][i % 4] for i, r in enumerate(REFS)]


def toy_asr(audio: list[Tensor], languages: list[str | None]) -> list[str]:
    return [HYPS[round(float(a[0]) * 1000)] for a in audio]


def wer_data() -> tuple[Tensor, list[list[str]]]:
    levels = torch.arange(NUM_BATCHES * BATCH_SIZE, dtype=torch.float32) / 1000
    audio = levels[:, None].expand(-1, WER_RATE // 10).reshape(NUM_BATCHES, BATCH_SIZE, -1).contiguous()
    refs = [REFS[b * BATCH_SIZE : (b + 1) * BATCH_SIZE] for b in range(NUM_BATCHES)]
    return audio, refs


def wer_reference(preds: Tensor, target: list[str], reduction: str = "mean") -> float:
    hyps = toy_asr(list(preds), [None] * len(target))
    if reduction == "corpus":
        return float(jiwer.wer(list(target), hyps))
    return float(np.mean([jiwer.wer(r, h) for r, h in zip(target, hyps)]))


@dataclass
class Case:
    """One metric under test: its class and arguments, data shaped like torchmetrics' (batches first), reference."""

    metric: Callable[..., Any]
    args: dict[str, Any]
    preds: Tensor
    target: Any
    reference: Callable[[Any, Any], float]
    atol: float
    state_dict_keys: tuple[str, ...] = ()  # keys a default state_dict() holds (FD: loaded reference statistics)


def make_case(name: str) -> Case:
    if name == "fd":
        return Case(
            FrechetAudioDistance,
            {"sample_rate": SAMPLE_RATE, "backbone": BandEnergies()},
            audio_data(0),
            audio_data(1),
            fd_reference,
            ATOL["fd"],
            ("loaded_target_sum", "loaded_target_outer", "loaded_target_n"),
        )
    if name == "kl":
        return Case(
            PaSSTKLDivergence,
            {"sample_rate": SAMPLE_RATE, "backbone": BandEnergies()},
            audio_data(2),
            audio_data(3),
            kl_reference,
            ATOL["kl"],
        )
    audio, refs = wer_data()
    reduction = "corpus" if name == "wer_corpus" else "mean"
    return Case(
        SpeechWordErrorRate,
        {"sample_rate": WER_RATE, "asr": toy_asr, "reduction": reduction},
        audio,
        refs,
        lambda p, t: wer_reference(p, t, reduction),
        ATOL["wer"],
    )


def _cat(case: Case, batches: list[int]) -> tuple[Any, Any]:
    preds = torch.cat([case.preds[i] for i in batches])
    target = [t for i in batches for t in case.target[i]] if isinstance(case.target, list) else None
    return preds, target if target is not None else torch.cat([case.target[i] for i in batches])


def _close(value: Tensor, expected: float, atol: float, what: str) -> None:
    assert isinstance(value, Tensor) and value.dtype == torch.float64, what
    assert abs(float(value) - expected) <= atol, f"{what}: {float(value)!r} vs reference {expected!r}"


# ---------------------------------------------------------------------------------------------------------------------
# the checks of torchmetrics' _class_test


def class_test(rank: int, world: int, name: str, dist_sync_on_step: bool) -> float:
    case = make_case(name)
    metric = case.metric(dist_sync_on_step=dist_sync_on_step, **case.args)
    with pytest.raises(RuntimeError):
        metric.is_differentiable = not metric.is_differentiable
    with pytest.raises(RuntimeError):
        metric.higher_is_better = not metric.higher_is_better
    clone = metric.clone()
    assert clone is not metric and type(clone) is type(metric)
    metric = pickle.loads(pickle.dumps(metric.to("cpu")))
    metric_clone = copy.deepcopy(metric)
    for i in range(rank, NUM_BATCHES, world):
        batch_value = metric(case.preds[i], case.target[i])
        if rank == 0 and world == 1 and i == 0:
            metric_clone.update(case.preds[i], case.target[i])
            assert torch.equal(batch_value, metric_clone.compute())
        if dist_sync_on_step and world > 1:
            if rank == 0:  # the step's batches of every rank (rank r holds batch i + r)
                expected = case.reference(*_cat(case, [i + r for r in range(world)]))
                _close(batch_value, expected, case.atol, f"{name} synced forward, step {i}")
        else:
            _close(batch_value, case.reference(case.preds[i], case.target[i]), case.atol, f"{name} forward {i}")
    assert hash(metric)
    assert set(metric.state_dict()) == set(case.state_dict_keys)
    result = metric.compute()
    _close(result, case.reference(*_cat(case, list(range(NUM_BATCHES)))), case.atol, f"{name} compute")
    return float(result)


def _ddp_class_test(rank: int, world: int, name: str) -> list[float]:
    torch.set_num_threads(1)
    return [class_test(rank, world, name, dist_sync_on_step) for dist_sync_on_step in (False, True)]


NAMES = ["fd", "kl", "wer", "wer_corpus"]


@pytest.mark.parametrize("dist_sync_on_step", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_class_metric_single_process(name: str, dist_sync_on_step: bool) -> None:
    class_test(0, 1, name, dist_sync_on_step)


@pytest.mark.ddp
@pytest.mark.parametrize("name", ["fd", "kl", "wer"])
def test_class_metric_ddp(name: str) -> None:
    results = run_ddp(_ddp_class_test, NUM_PROCESSES, name)
    assert results[0] == pytest.approx(results[1], abs=0)  # every rank computes the same synced value


# ---------------------------------------------------------------------------------------------------------------------
# precision, state_dict, reset


@pytest.mark.parametrize("dtype", [torch.half, torch.double])
@pytest.mark.parametrize("name", NAMES)
def test_precision_cpu(name: str, dtype: torch.dtype) -> None:
    """run_precision_test_cpu: inputs cast to ``dtype`` (floating ones) still give a tensor."""
    case = make_case(name)
    metric = case.metric(**case.args).to("cpu")
    preds = case.preds[0].to(dtype)
    target = case.target[0].to(dtype) if isinstance(case.target, Tensor) else case.target[0]
    out = metric(preds, target)
    assert isinstance(out, Tensor)
    assert isinstance(metric.compute(), Tensor)


@pytest.mark.parametrize("name", NAMES)
def test_metric_casts_before_and_after_updates_change_nothing(name: str) -> None:
    case = make_case(name)
    plain = case.metric(**case.args)
    for i in range(NUM_BATCHES):
        plain.update(case.preds[i], case.target[i])
    expected = plain.compute()
    for before, after in (
        (lambda m: m.half(), lambda m: m.double()),
        (lambda m: m.set_dtype(torch.float16), lambda m: m.set_dtype(torch.float64)),
        (lambda m: m.to(torch.bfloat16), lambda m: m.float()),
    ):
        metric = case.metric(**case.args)
        before(metric)
        metric.update(case.preds[0], case.target[0])
        first = metric.compute()
        after(metric)
        assert torch.equal(metric.compute(), first)  # the cached value is not cast either
        for i in range(1, NUM_BATCHES):
            metric.update(case.preds[i], case.target[i])
        assert torch.equal(metric.compute(), expected)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_and_reset(name: str) -> None:
    case = make_case(name)
    metric = case.metric(**case.args)
    metric.persistent(True)
    for i in range(2):
        metric.update(case.preds[i], case.target[i])
    restored = case.metric(**case.args)
    restored.persistent(True)
    restored.load_state_dict(metric.state_dict())
    for m in (metric, restored):
        for i in range(2, NUM_BATCHES):
            m.update(case.preds[i], case.target[i])
    assert torch.equal(restored.compute(), metric.compute())
    _close(restored.compute(), case.reference(*_cat(case, list(range(NUM_BATCHES)))), case.atol, name)
    metric.reset()
    assert metric.update_count == 0
    with pytest.raises(ValueError), pytest.warns(UserWarning, match="before the ``update``"):
        metric.compute()
    metric.update(case.preds[1], case.target[1])
    _close(metric.compute(), case.reference(case.preds[1], case.target[1]), case.atol, f"{name} after reset")
