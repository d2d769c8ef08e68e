"""The shared life cycle (base.py) and the protocol specs (protocols.py), on small KL / CLAP metrics."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from tests.test_fad import audio_batch
from torchmetrics_av import CLAPScore, PaSSTKLDivergence
from torchmetrics_av.base import unique_sample_order
from torchmetrics_av.protocols import AV_BENCHMARK, FASTVIDEO, PROTOCOLS, get_protocol
from torchmetrics_av.testing import tiny_backbone

PACKAGE = Path(__file__).resolve().parents[1] / "torchmetrics_av"


@pytest.fixture(scope="module")
def passt():
    return tiny_backbone("passt", embed_dim=16)


@pytest.fixture(scope="module")
def clap():
    return tiny_backbone("clap")


# ---------------------------------------------------------------------------------------------------------------------
# forward


def test_forward_is_the_batch_value_and_accumulates(passt):
    x, y = audio_batch(3, seed=1), audio_batch(3, seed=2)
    kl = PaSSTKLDivergence(sample_rate=16000, backbone=passt)
    first = kl(x[:2], y[:2])
    alone = PaSSTKLDivergence(sample_rate=16000, backbone=passt)
    alone.update(x[:2], y[:2])
    assert torch.equal(first, alone.compute())  # forward == update + compute of a fresh metric on the batch
    second = kl(x[2:], y[2:])
    rows = kl.per_sample()["kl_softmax"]
    assert float(second) == pytest.approx(float(rows[2]), rel=1e-12)  # the batch alone, not the running mean
    assert float(kl.compute()) == pytest.approx(float(rows.mean()), rel=1e-12)
    assert kl.update_count == 2


def test_forward_that_raises_or_has_no_row_keeps_the_accumulated_state(clap):
    loud = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    metric = CLAPScore(sample_rate=16000, backbone=clap)
    metric.update(loud, ["a dog barks", "rain"])
    value = metric.compute().clone()
    # torchmetrics' default forward would reset, fail to compute the batch, and lose the state (issue 8).
    assert metric(torch.zeros(2, 16000), ["wind", "sea"]) is None  # all silent: counted, nothing to reduce
    with pytest.raises(ValueError, match="NaN"):
        metric(torch.full((1, 16000), float("nan")), ["a cat"])
    assert torch.equal(metric.compute(), value)
    assert metric.details["n_samples"] == 2 and metric.details["n_skipped_silent"] == 2


def test_per_sample_order_is_by_id_then_arrival(passt):
    x, y = audio_batch(5, seed=3), audio_batch(5, seed=4)
    kl = PaSSTKLDivergence(sample_rate=16000, backbone=passt)
    kl.update(x[:2], y[:2])  # no ids
    kl.update(x[2:], y[2:], ids=[9, 4, 9])  # id 9 repeated
    rows = kl.per_sample()
    assert rows["ids"].tolist() == [4, 9, -1, -1]
    singles = [PaSSTKLDivergence(sample_rate=16000, backbone=passt) for _ in range(5)]
    for i, m in enumerate(singles):
        m.update(x[i : i + 1], y[i : i + 1])
    expected = torch.stack([singles[i].compute() for i in (3, 2, 0, 1)])
    torch.testing.assert_close(rows["kl_softmax"], expected, rtol=1e-6, atol=1e-9)
    assert kl.compute() == rows["kl_softmax"].mean()
    assert kl.details["n_duplicates_dropped"] == 1 and kl.details["n_samples"] == 4
    assert unique_sample_order(torch.tensor([9, 4, 9, -1])).tolist() == [1, 0, 3]


def test_dtype_casts_after_compute_do_not_change_the_next_compute(passt):
    kl = PaSSTKLDivergence(sample_rate=16000, backbone=passt)
    kl.update(audio_batch(2, seed=5), audio_batch(2, seed=6))
    value = kl.compute()
    for cast in (lambda m: m.to(torch.bfloat16), lambda m: m.set_dtype(torch.float16), lambda m: m.half()):
        cast(kl)
        again = kl.compute()
        assert again.dtype == torch.float64 and torch.equal(again, value)
    assert kl.kl_softmax[0].dtype == torch.float64 and kl.sample_id[0].dtype == torch.int64
    kl.update(audio_batch(1, seed=7), audio_batch(1, seed=8))  # still accumulates after the casts
    assert kl.compute().dtype == torch.float64


def test_plot_returns_figure_and_axis(passt):
    pytest.importorskip("matplotlib")
    kl = PaSSTKLDivergence(sample_rate=16000, backbone=passt)
    values = [kl(audio_batch(2, seed=s), audio_batch(2, seed=s + 1)) for s in (10, 20)]
    fig, ax = kl.plot()
    assert fig is not None and ax.get_ylabel() == "PaSSTKLDivergence"
    _, ax2 = kl.plot(values, ax=ax)
    assert ax2 is ax


# ---------------------------------------------------------------------------------------------------------------------
# protocols


def test_protocol_specs():
    assert PROTOCOLS == ("fastvideo", "av-benchmark")
    assert get_protocol("fastvideo") is FASTVIDEO and get_protocol(AV_BENCHMARK) is AV_BENCHMARK
    with pytest.raises(ValueError, match=r"`protocol` must be one of \('fastvideo', 'av-benchmark'\), got 'fadtk'"):
        get_protocol("fadtk")
    with pytest.raises(dataclasses.FrozenInstanceError):
        FASTVIDEO.duration = 8.0  # type: ignore[misc]
    # The rules each harness applies (reference/fastvideo.md, reference/avbench.md).
    assert (FASTVIDEO.resampler, FASTVIDEO.remove_dc, FASTVIDEO.peak_dbfs, FASTVIDEO.duration) == (
        "soxr_hq",
        False,
        -1.0,
        None,
    )
    assert (AV_BENCHMARK.resampler, AV_BENCHMARK.remove_dc, AV_BENCHMARK.peak_dbfs, AV_BENCHMARK.duration) == (
        "torchaudio",
        True,
        None,
        8.0,
    )
    assert FASTVIDEO.skips_silent and not AV_BENCHMARK.skips_silent
    assert (FASTVIDEO.eps_policy, AV_BENCHMARK.eps_policy) == ("always", "on_failure")


def test_duration_rule_is_the_same_everywhere():
    assert AV_BENCHMARK.resolve_duration() == 8.0 and AV_BENCHMARK.resolve_duration(4) == 4.0
    assert FASTVIDEO.resolve_duration() is None
    with pytest.raises(ValueError, match="applies to protocol='av-benchmark' only"):
        FASTVIDEO.resolve_duration(8.0)
    for bad in (0, -1.0, float("nan"), float("inf"), "8", True):
        with pytest.raises(ValueError, match="`duration`"):
            AV_BENCHMARK.resolve_duration(bad)
    with pytest.raises(ValueError, match="at least 4.8 s"):
        AV_BENCHMARK.resolve_duration(4.0, minimum=4.8)
    with pytest.warns(FutureWarning, match="`duration_sec` is deprecated"):
        assert AV_BENCHMARK.resolve_duration(None, 6.0, alias="duration_sec") == 6.0


def test_only_protocols_py_compares_protocol_names():
    """Acceptance of issue 8: protocol rules are spec fields, never ``protocol == "..."`` outside protocols.py."""
    pattern = re.compile(r"protocol ?[!=]=")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{i}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "protocols.py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_metric_files_hold_no_life_cycle_code():
    """Acceptance of issue 8: no ``def forward`` and no id de-duplication in audio/ and av/ (base.py owns them)."""
    for folder in ("audio", "av"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            text = path.read_text()
            assert "def forward" not in text and "unique_sample_order" not in text, path.name
