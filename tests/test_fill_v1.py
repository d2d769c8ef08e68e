"""fill-v1 (tests/fill_v1.py) against the rule in the goldens' fill.py docstring and the goldens' own fingerprints."""

from __future__ import annotations

import zlib

import pytest
import torch
from torch import nn

from tests.fill_v1 import fill_v1


def rule(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The docstring's draw for one parameter: float32 randn from a crc32(name)-seeded generator, times 0.02."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return torch.randn(shape, generator=g, dtype=torch.float32) * 0.02


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.bn = nn.BatchNorm1d(3)
        self.scale = nn.Parameter(torch.zeros(()))
        self.weights = nn.Parameter(torch.zeros(5))  # ends with "weights", not "weight": no +1
        self.table = nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))
        self.steps = nn.Parameter(torch.arange(3), requires_grad=False)  # integer: untouched
        self.register_buffer("window", torch.arange(4.0))
        self.register_buffer("cache", torch.full((2,), 7.0), persistent=False)


def hand_built() -> nn.Module:
    root = nn.Module()
    root.blocks = nn.ModuleList([Block(), Block()])
    root.head_weight = nn.Parameter(torch.zeros(6))  # 1-D "...weight" that is no norm: +1 all the same (name rule)
    with torch.no_grad():
        for block in root.blocks:
            block.bn.running_mean.fill_(3.0)
            block.bn.running_var.fill_(5.0)
            block.bn.num_batches_tracked.fill_(11)
    return root


def test_parameters_follow_the_docstring_rule():
    torch.manual_seed(123)  # the global RNG plays no part
    net = fill_v1(hand_built())
    params = dict(net.named_parameters())
    assert set(params) >= {"blocks.0.proj.weight", "blocks.1.norm.weight", "head_weight"}
    for name, p in params.items():
        if not p.is_floating_point():
            continue
        expected = rule(name, tuple(p.shape))
        if p.dim() == 1 and name.endswith("weight"):
            expected = expected + 1.0
        assert p.dtype == (torch.float64 if name.endswith("table") else torch.float32), name
        assert torch.equal(p, expected.to(p.dtype)), name
    # The four cases the rule distinguishes, spelled out once.
    b = net.blocks[1]
    assert torch.equal(b.proj.weight, rule("blocks.1.proj.weight", (3, 4)))
    assert torch.equal(b.proj.bias, rule("blocks.1.proj.bias", (3,)))  # 1-D but "bias": no +1
    assert torch.equal(b.norm.weight, rule("blocks.1.norm.weight", (3,)) + 1.0)
    assert torch.equal(b.weights, rule("blocks.1.weights", (5,)))
    assert torch.equal(b.scale.detach(), rule("blocks.1.scale", ()))
    # Seeds come from the full name: the two blocks differ although their shapes are equal.
    assert not torch.equal(net.blocks[0].proj.weight, b.proj.weight)


def test_buffers_and_integer_parameters():
    net = fill_v1(hand_built())
    for block in net.blocks:
        assert torch.equal(block.bn.running_mean, torch.zeros(3))
        assert torch.equal(block.bn.running_var, torch.ones(3))
        assert int(block.bn.num_batches_tracked) == 11  # any other buffer stays as it was
        assert torch.equal(block.window, torch.arange(4.0)) and torch.equal(block.cache, torch.full((2,), 7.0))
        assert block.steps.tolist() == [0, 1, 2]


def test_names_are_relative_to_the_root():
    net = hand_built()
    fill_v1(net.blocks[0])  # a sub-module as the root: its names lose the "blocks.0." prefix
    assert torch.equal(net.blocks[0].proj.weight, rule("proj.weight", (3, 4)))
    assert torch.equal(fill_v1(hand_built()).blocks[1].norm.bias, fill_v1(hand_built()).blocks[1].norm.bias)


# README §2 of the ImageBind golden: float64 sum, first and last element of fill-v1 tensors of the real model,
# made by the goldens' own fill.py (so these numbers do not come from tests/fill_v1.py).
IMAGEBIND_FINGERPRINT = {
    "modality_trunks.audio.blocks.0.attn.bias_k": ((1, 1, 768), -0.605824727, 0.0195714701, 0.00363065233),
    "modality_trunks.audio.blocks.11.norm_2.weight": ((768,), 768.190082, 0.967319906, 1.01375961),
    "modality_trunks.vision.blocks.31.mlp.fc2.bias": ((1280,), -1.69579812, 0.00642513297, -0.0102593284),
    "modality_heads.audio.2.weight": ((1024, 768), 2.15029636, 0.0151316654, -0.0491632819),
}
LOG_20 = 2.99573231  # the same table: the buffer log_logit_scale keeps its constructor value log(20)


def test_reproduces_the_imagebind_golden_fingerprint():
    root = nn.Module()
    for name, (shape, *_) in IMAGEBIND_FINGERPRINT.items():
        *path, leaf = name.split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, nn.Module())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, nn.Parameter(torch.empty(shape)))
    root.get_submodule("modality_heads.audio").register_buffer("log_logit_scale", torch.tensor(LOG_20))
    fill_v1(root)
    state = root.state_dict()
    for name, (_, total, first, last) in IMAGEBIND_FINGERPRINT.items():
        flat = state[name].flatten()
        assert float(flat.double().sum()) == pytest.approx(total, abs=1e-6), name
        assert float(flat[0]) == pytest.approx(first, rel=1e-8) and float(flat[-1]) == pytest.approx(last, rel=1e-8)
    assert float(state["modality_heads.audio.log_logit_scale"]) == pytest.approx(LOG_20, abs=1e-7)
