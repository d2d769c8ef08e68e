"""FrechetAudioDistance over PANNs and VGGish (FD-PANN, FD-VGG), rows kept on request, FD∞ and the bootstrap.

The golden values are in tests/test_panns_metrics.py; PaSST parity and the streaming sums in tests/test_fad.py.
"""

from __future__ import annotations

import functools

import pytest
import torch

from tests.test_fad import audio_batch
from torchmetrics_av import FrechetAudioDistance
from torchmetrics_av.backbones import VGGish
from torchmetrics_av.functional import fd_infinity, frechet_distance_bootstrap, frechet_distance_from_features
from torchmetrics_av.testing import tiny_backbone

# float64 moments of the same float32 rows, summed in another order (streamed per batch vs at once).
SUM_RTOL = 1e-10
# The bootstrap through the metric against estim's frechet_distance_bootstrap on the same draws: the same float64
# moments route, so only summation order differs.
BOOT_RTOL = 1e-9
AVB = {"sample_rate": 16000, "protocol": "av-benchmark"}


@pytest.fixture(scope="module")
def panns():
    return tiny_backbone("panns")


def row_at_a_time_vggish() -> VGGish:
    """The tiny VGGish with one 0.96 s example per network forward, so that every row is independent of the clips it
    is batched with. On AVX-512 CPUs float32 GEMM rounds differently with the number of rows (measured on an AMD EPYC:
    a ``Linear(32, 128)`` on 3 vs 10 rows differs by 4.8e-7; 0 on the AVX2 machines these tests were written on), and
    the de-duplication tests compare rows embedded in different batches: one row per forward keeps them exact.
    """
    net = tiny_backbone("vggish")
    net.embed = functools.partial(net.embed, batch_size=1)
    return net


@pytest.fixture(scope="module")
def vggish():
    return row_at_a_time_vggish()


def _clips(seconds: tuple[float, ...], seed: int) -> list[torch.Tensor]:
    return [audio_batch(1, seconds=s, seed=seed + i)[0] for i, s in enumerate(seconds)]


def test_fd_pann_is_the_fd_of_the_prepared_clips_embeddings(panns):
    gen, ref = _clips((0.5, 1.0, 9.0, 0.7, 2.0), 1), _clips((1.5, 0.4, 3.0, 0.6), 10)
    fd = FrechetAudioDistance(backbone=panns, **AVB)
    fd.update(preds=gen[:2], target=ref)
    fd.update(preds=gen[2:])
    with torch.no_grad():
        # av-benchmark's AudioDataset(sr=16000) input, one relu(fc1) row per clip.
        p, _ = panns.embed([panns.prepare(c, 16000, 8.0) for c in gen], batch_size=1)
        t, _ = panns.embed([panns.prepare(c, 16000, 8.0) for c in ref], batch_size=1)
    expected = frechet_distance_from_features(p, t, eps_policy="on_failure")
    assert float(fd.compute()) == pytest.approx(float(expected), rel=1e-6)  # float32 batching of the forwards
    assert (fd.details["n_preds"], fd.details["n_target"]) == (5, 4)
    assert len(fd.preds_rows) == 0 and float(fd.preds_n) == 5  # default: streamed sums, no rows


def test_fd_vgg_rows_are_every_example_and_keep_rows_changes_nothing(vggish):
    gen, ref = _clips((1.0, 2.5, 3.2, 1.2), 20), _clips((2.0, 1.0, 4.1), 30)
    streamed = FrechetAudioDistance(backbone=vggish, **AVB)
    kept = FrechetAudioDistance(backbone=vggish, keep_rows=True, **AVB)
    for metric in (streamed, kept):
        metric.update(preds=gen, target=ref)
    with torch.no_grad():
        p = torch.cat(vggish.embed([vggish.prepare(c, 16000) for c in gen]))
        t = torch.cat(vggish.embed([vggish.prepare(c, 16000) for c in ref]))
    assert (p.shape[0], t.shape[0]) == (7, 7)
    value = kept.compute()
    assert float(streamed.compute()) == pytest.approx(float(value), rel=SUM_RTOL)
    assert float(value) == pytest.approx(float(frechet_distance_from_features(p, t, eps_policy="on_failure")), rel=1e-6)
    assert kept.details["n_preds"] == streamed.details["n_preds"] == 7
    rows = kept.per_sample()
    assert rows["preds_example"].tolist() == [0, 0, 1, 0, 1, 2, 0] and rows["preds_ids"].tolist() == [-1] * 7
    assert streamed.per_sample()["preds_embeddings"].shape == (0, 128)


def test_a_repeated_vggish_clip_drops_all_its_rows(vggish):
    gen, ref = _clips((2.5, 1.0, 3.2), 40), _clips((1.0, 2.0, 1.5), 50)
    once = FrechetAudioDistance(backbone=vggish, **AVB)
    once.update(preds=gen, target=ref, ids=[0, 1, 2])
    padded = FrechetAudioDistance(backbone=vggish, **AVB)
    padded.update(preds=[gen[2], gen[0]], target=ref, ids=[2, 0])
    padded.update(preds=[gen[1], gen[0]], ids=[1, 0])  # id 0 again, as DistributedSampler pads a rank
    assert float(padded.compute()) == pytest.approx(float(once.compute()), rel=SUM_RTOL)
    assert padded.details["n_preds_duplicates_dropped"] == 2 and padded.details["n_preds"] == 6


def test_fd_infinity_is_the_functional_on_the_synced_rows(panns):
    fd = FrechetAudioDistance(backbone=panns, keep_rows=True, **AVB)
    fd.update(preds=audio_batch(40, seed=2), target=audio_batch(30, seed=3))
    out = fd.fd_infinity(steps=5, min_n=10, seed=4)
    rows = fd.per_sample()
    ref = fd_infinity(rows["preds_embeddings"], rows["target_embeddings"], steps=5, min_n=10, seed=4)
    assert out["seed"] == 4 and out["points"][:, 0].tolist() == [10.0, 17.0, 25.0, 32.0, 40.0]
    for key in ("value", "slope", "r2", "points"):
        assert torch.equal(out[key], ref[key]), key
    streamed = FrechetAudioDistance(backbone=panns, **AVB)
    streamed.update(preds=audio_batch(4, seed=2), target=audio_batch(3, seed=3))
    with pytest.raises(ValueError, match="4 generated and 3 reference rows were streamed into sums; .*keep_rows=True"):
        streamed.fd_infinity()
    with pytest.raises(ValueError, match="keep_rows=True"):
        streamed.bootstrap()


def test_bootstrap_equals_frechet_distance_bootstrap_on_the_same_draws(panns):
    fd = FrechetAudioDistance(backbone=panns, keep_rows=True, **AVB)
    fd.update(preds=audio_batch(30, seed=5), target=audio_batch(25, seed=6))
    rows = fd.per_sample()
    out = fd.bootstrap(num=30, seed=9, ci=0.8)
    # estim's two-sample bootstrap: one RandomState(seed), generated draws first, then reference draws.
    ref = frechet_distance_bootstrap(
        rows["preds_embeddings"], rows["target_embeddings"], num=30, seed=9, ci=0.8, eps_policy="on_failure"
    )
    for key in ("value", "low", "high", "std"):
        assert float(out[key]) == pytest.approx(float(ref[key]), rel=BOOT_RTOL), key
    assert float(out["value"]) == pytest.approx(float(fd.compute()), rel=1e-12)


def test_bootstrap_keeps_loaded_reference_statistics_fixed(panns, tmp_path):
    target = audio_batch(25, seed=8)
    reference = FrechetAudioDistance(backbone=panns, **AVB)
    reference.update(target=target)
    reference.save_reference_stats(tmp_path / "ref.pt")
    fd = FrechetAudioDistance(backbone=panns, keep_rows=True, **AVB)
    fd.load_reference_stats(tmp_path / "ref.pt")
    fd.update(preds=audio_batch(30, seed=7))
    out = fd.bootstrap(num=25, seed=1)
    with torch.no_grad():
        t, _ = panns.embed([panns.prepare(c, 16000, 8.0) for c in target])
    ref = frechet_distance_bootstrap(
        fd.per_sample()["preds_embeddings"], t, num=25, seed=1, resample="preds", eps_policy="on_failure"
    )
    for key in ("value", "low", "high", "std"):
        assert float(out[key]) == pytest.approx(float(ref[key]), rel=1e-6), key  # stats: float64 sums vs rows
    with pytest.raises(ValueError, match="statistics loaded with load_reference_stats"):
        fd.fd_infinity()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backbone": "clap"}, r"`backbone` of FrechetAudioDistance must be one of \('passt', 'panns', 'vggish'\)"),
        ({"backbone": 3}, r"`backbone` must be a torch.nn.Module \(a backbone instance\) or one of"),
        ({"keep_rows": 1}, "keep_rows"),
        ({"protocol": "av-benchmark", "duration": 0.9}, "at least 0.975 s"),
    ],
)
def test_bad_arguments(vggish, kwargs, match):
    kwargs.setdefault("backbone", vggish)
    with pytest.raises(ValueError, match=match):
        FrechetAudioDistance(**kwargs)


def test_short_clips_are_named_before_any_forward(vggish):
    calls = []
    hook = vggish.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        fd = FrechetAudioDistance(backbone=vggish, **AVB)
        with pytest.raises(ValueError, match=r"`target\[1\]` lasts 0.5000 s at 16000 Hz; VGGish needs at least"):
            fd.update(preds=audio_batch(2, seconds=1.0), target=[torch.rand(16000) - 0.5, torch.rand(8000) - 0.5])
    finally:
        hook.remove()
    assert calls == [] and float(fd.preds_n) == 0


class _Compiled(torch.nn.Module):
    """Stands for ``torch.compile``'s wrapper: the compiled module under ``_orig_mod``, attributes passed through."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self._orig_mod = inner

    def __getattr__(self, name: str):
        if name == "_orig_mod":
            return super().__getattr__(name)
        return getattr(self._orig_mod, name)


def test_backbone_kind_is_seen_through_a_compile_wrapper_and_other_modules_are_passt_like(panns):
    from torchmetrics_av.audio.embedding import backbone_name, resolve_backbone

    fd = FrechetAudioDistance(backbone=_Compiled(panns), **AVB)
    assert fd.backbone_name == "panns" and fd.num_features == 32
    x, y = audio_batch(3, seed=11), audio_batch(3, seed=12)
    fd.update(preds=x, target=y)
    plain = FrechetAudioDistance(backbone=panns, **AVB)
    plain.update(preds=x, target=y)
    assert torch.equal(fd.compute(), plain.compute())
    # Any other module keeps the duck-typed PaSST contract of earlier releases (32 kHz FD window, .embed()).
    assert backbone_name(torch.nn.Identity()) is None
    assert resolve_backbone(torch.nn.Identity(), ("passt", "panns"), "FrechetAudioDistance")[0] == "passt"
    with pytest.raises(ValueError, match="must be one of backbones.PANNs, got Identity"):
        resolve_backbone(torch.nn.Identity(), ("panns",), "Owner")
