"""The output memo PaSST and PANNs share (backbones/memo.py): LRU size, what disables it, what empties it."""

from __future__ import annotations

import pytest
import torch

from torchmetrics_av.testing import tiny_backbone

# One model input per backbone: a 1 s window (PaSST, 32 kHz) / clip (PANNs, 16 kHz).
RATES = {"passt": 32000, "panns": 16000}


def _inputs(kind: str, n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(RATES[kind], generator=g) - 0.5 for _ in range(n)]


def _forwards(net: torch.nn.Module) -> list[int]:
    seen: list[int] = []
    net.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    return seen


@pytest.mark.parametrize("kind", ["passt", "panns"])
def test_lru_keeps_the_last_inputs_and_a_cast_empties_it(kind):
    net = tiny_backbone(kind, cache_size=2)
    seen = _forwards(net)
    a, b, c = _inputs(kind, 3)
    first, _ = net.embed([a])
    net.embed([b, c])  # evicts a
    assert len(net._cache) == 2 and sum(seen) == 3
    again, _ = net.embed([b, c, a])
    assert sum(seen) == 4  # b, c from the memo; a ran again
    assert torch.equal(again[2], first[0])
    net.to(torch.float32)  # any _apply: the outputs belonged to the old device/dtype
    assert len(net._cache) == 0


@pytest.mark.parametrize("kind", ["passt", "panns"])
def test_cache_size_zero_disables_the_memo_even_with_entries_left(kind):
    net = tiny_backbone(kind)
    seen = _forwards(net)
    (x,) = _inputs(kind, 1)
    net.embed([x])
    net.embed([x])
    assert sum(seen) == 1
    net.cache_size = 0  # the suite and users switch it off on a live backbone
    net.embed([x])
    assert sum(seen) == 2  # PaSST used to answer from the entries left in its memo


@pytest.mark.parametrize("kind", ["passt", "panns"])
@pytest.mark.parametrize("bad", [-1, 1.5, True, "8"])
def test_bad_cache_size_is_rejected_at_construction(kind, bad):
    with pytest.raises(ValueError, match="`cache_size` must be a non-negative int"):
        tiny_backbone(kind, cache_size=bad)
