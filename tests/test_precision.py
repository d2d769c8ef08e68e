"""torchmetrics_av.precision: encoder autocast hooks, float32 heads, the precision scope, on every backbone."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from benchmarks.cases import CASES, ForwardSpy, _leaves, compare_outputs, replay
from torchmetrics_av.precision import PRECISIONS, check_precision, current_precision, install, precision_scope


class _Record:
    """Picklable forward hook that records the output dtype of a module under a name."""

    def __init__(self, seen: dict[str, torch.dtype], name: str) -> None:
        self.seen, self.name = seen, name

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.seen[self.name] = output.dtype


class _Net(nn.Module):
    autocast_modules = ("encoder",)
    float32_modules = ("encoder.head",)

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential()
        self.encoder.add_module("body", nn.Linear(8, 8))
        self.encoder.add_module("head", nn.Linear(8, 3))
        self.seen: dict[str, torch.dtype] = {}
        self.encoder.body.register_forward_hook(_Record(self.seen, "body"))
        self.encoder.head.register_forward_hook(_Record(self.seen, "head"))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def test_check_precision():
    assert [check_precision(p) for p in PRECISIONS] == ["fp32", "bf16", "fp16"]
    with pytest.raises(ValueError, match="`precision` must be one of"):
        check_precision("fp64")


def test_encoder_runs_in_low_precision_and_the_nested_head_in_float32():
    net = install(_Net())
    x = torch.randn(4, 8)
    ref = net(x)  # outside any scope the hooks do nothing
    assert net.seen == {"body": torch.float32, "head": torch.float32}
    with precision_scope("bf16"):
        y = net(x)
    assert net.seen == {"body": torch.bfloat16, "head": torch.float32}
    assert y.dtype == torch.float32 and 0 < float((y - ref).abs().max()) < 0.1
    with precision_scope("fp32"):
        assert torch.equal(net(x), ref)


def test_scope_switches_off_an_outer_autocast_and_nests():
    lin = nn.Linear(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lin(torch.randn(2, 4)).dtype == torch.bfloat16
        with precision_scope("fp32"):
            assert lin(torch.randn(2, 4)).dtype == torch.float32
            with precision_scope("bf16"):
                assert current_precision() == "bf16"
            assert current_precision() == "fp32"
    assert current_precision() is None


def test_autocast_state_is_restored_when_an_encoder_raises():
    net = install(_Net())
    with precision_scope("bf16"):
        with pytest.raises(RuntimeError):
            net(torch.randn(4, 5))  # wrong width: the encoder raises inside its autocast region
        assert not torch.is_autocast_enabled("cpu")
        assert net(torch.randn(1, 8)).dtype == torch.float32  # and the hooks still pair up afterwards


def test_install_is_idempotent_checks_names_and_survives_copy_and_pickle():
    net = install(install(_Net()))
    assert len(net.encoder._forward_pre_hooks) == 1
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        with precision_scope("bf16"):
            clone(torch.randn(2, 8))
        assert clone.seen["body"] == torch.bfloat16

    class Stale(_Net):
        autocast_modules = ("decoder",)

    with pytest.raises(ValueError, match="'decoder'"):
        install(Stale())


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_backbone_autocasts_its_encoders(name):
    """The named submodules exist and are the ones the backbone calls: bf16 and fp16 move the outputs, fp32 does not,
    and whatever the precision, the backbone hands float32 to the metric."""
    case = CASES[name]
    net = case.build("tiny")  # installs the hooks
    case.set_batch(net, 2)
    with ForwardSpy(net, case.forwards) as spy:
        case.metric(net, 2, "fp32")(**case.inputs(2, "tiny", torch.Generator().manual_seed(0)))
    ref = [c.output for c in spy.calls]
    assert compare_outputs(ref, replay(net, spy.calls, "fp32")) == {"max_abs_diff": 0.0, "mismatches": 0}
    for precision in ("bf16", "fp16"):
        out = replay(net, spy.calls, precision)
        assert {t.dtype for t in _leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point()} <= {
            torch.float32,
            torch.float64,
        }
        assert compare_outputs(ref, out)["max_abs_diff"] > 0, f"{name}: {precision} changed nothing"


# ---------------------------------------------------------------------------------------------------------------------
# metrics: precision= on the base class


def _metric_classes() -> list[type]:
    import torchmetrics_av

    exported = [getattr(torchmetrics_av, name) for name in torchmetrics_av.__all__ if name != "__version__"]
    from torchmetrics import MetricCollection

    # The suite (a function and its MetricCollection class) is checked by test_suite_passes_precision_to_every_member.
    return [obj for obj in exported if isinstance(obj, type) and not issubclass(obj, MetricCollection)]


def test_suite_passes_precision_to_every_member():
    from torchmetrics_av import av_benchmark_suite
    from torchmetrics_av.testing import tiny_backbone

    names = ("passt", "panns", "vggish", "clap", "msclap")
    nets = {n: tiny_backbone(n, **({"protocol": "av-benchmark"} if n == "clap" else {})) for n in names}
    suite = av_benchmark_suite(nets, sample_rate=16000, video_fps=25.0, precision="bf16")
    members = list(suite.values(copy_state=False)) if hasattr(suite, "values") else list(suite.members.values())
    assert members and {m.precision for m in members} == {"bf16"}
    with pytest.raises(ValueError, match="`precision`"):
        av_benchmark_suite(nets, sample_rate=16000, video_fps=25.0, precision="half")


@pytest.mark.parametrize("cls", _metric_classes(), ids=lambda c: c.__name__)
def test_every_metric_takes_precision_and_checks_it(cls):
    from torchmetrics_av.base import BackboneMetric

    assert issubclass(cls, BackboneMetric)
    kwargs = {"video_fps": 25.0} if cls.__name__ in ("ImageBindScore", "DeSync") else {}
    assert cls(sample_rate=16000, precision="bf16", **kwargs).precision == "bf16"
    assert cls(sample_rate=16000, **kwargs).precision == "fp32"
    with pytest.raises(ValueError, match="`precision`"):
        cls(sample_rate=16000, precision="half", **kwargs)


def test_fd_at_bf16_moves_keeps_float64_and_ignores_an_outer_autocast():
    from torchmetrics_av import FrechetAudioDistance

    net = CASES["passt"].build("tiny")
    g = torch.Generator().manual_seed(0)
    preds, target = 0.1 * torch.randn(3, 16000, generator=g), 0.1 * torch.randn(4, 16000, generator=g)
    values = {}
    for precision in ("fp32", "bf16"):
        fd = FrechetAudioDistance(sample_rate=16000, backbone=net, precision=precision)
        fd.update(preds=preds, target=target)
        values[precision] = fd.compute()
        assert values[precision].dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):  # e.g. Lightning's bf16-mixed around validation
        fd = FrechetAudioDistance(sample_rate=16000, backbone=net)
        fd.update(preds=preds, target=target)
    assert torch.equal(fd.compute(), values["fp32"])
    # A tiny random PaSST has an FD of ~1e-4, all of it within bf16 noise: only "it moved" is checkable here (the
    # full-size shift is measured on the goldens by benchmarks/bf16_shift.py).
    assert torch.isfinite(values["bf16"]) and values["bf16"] != values["fp32"]


@pytest.mark.parametrize("kind", ["passt", "panns"])
def test_shared_backbone_memo_keeps_precisions_apart(kind):
    """An fp32 and a bf16 metric sharing one backbone: the bf16 one gets bf16 outputs, not the fp32 memo."""
    from torchmetrics_av import KLDivergence
    from torchmetrics_av.testing import tiny_backbone

    g = torch.Generator().manual_seed(0)
    preds, target = 0.3 * torch.randn(2, 16000, generator=g), 0.3 * torch.randn(2, 16000, generator=g)

    def kl(net, precision):
        metric = KLDivergence(sample_rate=16000, backbone=net, precision=precision)
        metric.update(preds=preds, target=target)
        return metric.per_sample()["kl_softmax"]

    shared = tiny_backbone(kind)
    fresh = tiny_backbone(kind)  # the same seeded weights, an empty memo
    assert torch.equal(kl(shared, "fp32"), kl(fresh, "fp32"))
    fresh.clear_cache()
    bf16_alone = kl(fresh, "bf16")
    assert not torch.equal(bf16_alone, kl(shared, "fp32"))  # bf16 moves the outputs of these random nets
    assert torch.equal(kl(shared, "bf16"), bf16_alone)  # ...and the shared memo does not hide that
