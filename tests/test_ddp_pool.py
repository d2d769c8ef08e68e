"""tests/ddp.py's persistent rank pool: results in rank order, world sizes 1-3, and a failing rank that leaves its peer
blocked in a collective fails the call fast, naming the rank, after which a fresh pool serves the next call."""

from __future__ import annotations

import time

import pytest
import torch
import torch.distributed as dist

from tests import ddp
from tests.ddp import DDPError, run_ddp


def _ranks(rank: int, world: int, offset: int) -> tuple[int, int, float]:
    total = torch.tensor([float(rank)])
    dist.all_reduce(total)
    return rank, world, float(total) + offset


def _rank_1_fails(rank: int, world: int) -> None:
    if rank == 1:
        raise AssertionError("rank 1 disagrees")
    dist.all_reduce(torch.ones(1))  # never completes: rank 1 does not join


@pytest.mark.ddp
def test_results_come_in_rank_order_for_1_2_3_ranks():
    for world in (1, 2, 3):
        total = world * (world - 1) / 2
        assert run_ddp(_ranks, world, 10) == [(r, world, total + 10) for r in range(world)]
    pool = ddp._POOLS[2]
    assert run_ddp(_ranks, 2, 0) == [(0, 2, 1.0), (1, 2, 1.0)]
    assert ddp._POOLS[2] is pool  # reused, not respawned


@pytest.mark.ddp
def test_a_failing_rank_kills_the_pool_and_the_next_call_gets_a_fresh_one():
    run_ddp(_ranks, 2, 0)
    pool = ddp._POOLS[2]
    start = time.monotonic()
    with pytest.raises(DDPError, match=r"(?s)rank 1 of 2 raised.*AssertionError: rank 1 disagrees") as err:
        run_ddp(_rank_1_fails, 2)
    assert time.monotonic() - start < 5
    assert "_rank_1_fails" in str(err.value)  # the remote traceback
    assert 2 not in ddp._POOLS and not any(proc.is_alive() for proc in pool.procs)
    assert run_ddp(_ranks, 2, 0) == [(0, 2, 1.0), (1, 2, 1.0)]
    assert ddp._POOLS[2] is not pool
