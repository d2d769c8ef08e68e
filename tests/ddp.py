"""Run a function in N gloo processes on CPU and collect what each rank returns (for DDP equivalence tests).

Spawning the ranks for every call cost ~2.5 s of process start and process-group setup, plus re-importing torch,
torchmetrics_av and the test module in each rank, on every DDP test. So the ranks of a world size are a persistent
pool: spawned on first use, they run each call's function in turn and live until the session ends. What a pool costs
is isolation and failure handling, both kept here:

* isolation: before each job a rank resets the process state a test could change (global RNGs, thread count, default
  dtype, grad mode, environment, working directory; warning filters and context variables are scoped to the job), and
  ranks wait for each other between jobs; a job that leaves the default process group changed retires its pool;
* failure: a rank that raises may leave the others blocked in a collective forever, so on the first error, on a rank
  dying, or on a timeout the whole pool is killed and discarded (the next call starts a fresh one), and the error
  names the rank and carries its traceback.
"""

from __future__ import annotations

import atexit
import contextvars
import ctypes
import os
import pickle
import random
import signal
import socket
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# Longest one run_ddp call may take, pool start included, before its ranks are taken for stuck (e.g. one rank waits in
# a collective that another never joins). Generous: the slowest DDP test runs ~45 s on two shared CPU cores.
CALL_TIMEOUT_S = 600.0
# After the first rank error, how long to wait for the other ranks' errors, so that a consequence (a peer's broken
# collective) is reported next to its cause.
ERROR_GRACE_S = 0.5
# How long a clean exit (at session end, or of a retired pool) may take before the ranks are killed.
SHUTDOWN_TIMEOUT_S = 10.0
# How long terminated (SIGTERM) ranks get to exit before they are killed (SIGKILL).
TERMINATE_GRACE_S = 1.0


class DDPError(RuntimeError):
    """A rank of a run_ddp call raised, died or timed out; the message holds the rank and its remote traceback."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------------------
# rank side


def _die_with_parent(parent_pid: int) -> None:
    """Make the kernel kill this rank when the test process dies (Linux), so a killed session leaves no orphans.

    Without it an orphaned rank only exits once it reads EOF from its pipe, which never happens while it is blocked in
    a collective (gloo's own timeout is 30 min). Elsewhere the pipe's EOF is all there is.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the call above took effect
        os._exit(1)


@dataclass
class _Baseline:
    """The state a rank had when its pool started, restored before every job so that jobs cannot leak into each other.

    A freshly spawned rank is no reference to restore to: torch, ``random`` and NumPy seed themselves from OS entropy
    at start, so a job that drew from a global RNG without seeding it was never reproducible. Restoring one snapshot
    makes every job of a pool see the same state instead of whatever the previous job left.
    """

    torch_rng: torch.Tensor
    python_rng: Any
    numpy_rng: Any
    default_dtype: torch.dtype
    grad_enabled: bool
    environ: dict[str, str]
    cwd: str

    @classmethod
    def capture(cls) -> _Baseline:
        return cls(
            torch.get_rng_state(),
            random.getstate(),
            np.random.get_state(),
            torch.get_default_dtype(),
            torch.is_grad_enabled(),
            dict(os.environ),
            os.getcwd(),
        )

    def restore(self) -> None:
        torch.set_rng_state(self.torch_rng)
        random.setstate(self.python_rng)
        np.random.set_state(self.numpy_rng)
        # The ranks always ran single-threaded (2 ranks share 2 cores in CI); importing tests/conftest.py sets 2.
        torch.set_num_threads(1)
        torch.set_default_dtype(self.default_dtype)
        torch.set_grad_enabled(self.grad_enabled)
        if os.environ != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        os.chdir(self.cwd)


def _send(conn: Connection, message: tuple) -> None:
    # Plain pickle, not multiprocessing's: tensors travel as bytes (copies), as they did through the old result files,
    # instead of being moved into shared memory.
    conn.send_bytes(pickle.dumps(message))


def _serve(rank: int, world: int, port: int, parent_pid: int, conn: Connection) -> None:
    """A rank of a pool: join the gloo group once, then run ``(fn, args)`` jobs until told to exit (``None``) or EOF.

    Replies ``("ready",)`` once joined, then per job ``("ok", result, intact)`` or ``("error", traceback)``. ``intact``
    is False when the job left the default process group destroyed, replaced or with extra groups: the parent then
    retires the pool rather than trust that state to the next job.
    """
    _die_with_parent(parent_pid)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    except BaseException:
        _send(conn, ("error", traceback.format_exc()))
        return
    group, n_groups = dist.group.WORLD, dist.distributed_c10d.get_pg_count()
    baseline = _Baseline.capture()
    _send(conn, ("ready",))
    try:
        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):  # the parent is gone
                break
            try:
                job = pickle.loads(message)  # imports the test module on its first job
                if job is None:
                    break
                fn, args = job
                baseline.restore()  # after the import above: importing tests/conftest.py changes the thread count
                with warnings.catch_warnings():
                    result = contextvars.copy_context().run(fn, rank, world, *args)
                intact = (
                    dist.is_initialized()
                    and dist.group.WORLD is group
                    and dist.distributed_c10d.get_pg_count() == n_groups
                )
                if intact:
                    dist.barrier()  # no rank takes the next job while another still finishes this one's collectives
                reply = pickle.dumps(("ok", result, intact))
            except BaseException:
                reply = pickle.dumps(("error", traceback.format_exc()))
            conn.send_bytes(reply)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        conn.close()


# ---------------------------------------------------------------------------------------------------------------------
# test-process side


class _Pool:
    """The ``world`` ranks of one gloo group, each reached through its own pipe."""

    def __init__(self, world: int, deadline: float) -> None:
        ctx = mp.get_context("spawn")
        port = _free_port()
        self.world = world
        self.procs: list[Any] = []
        self.conns: list[Connection] = []
        try:
            for rank in range(world):
                here, there = ctx.Pipe()
                proc = ctx.Process(
                    target=_serve, args=(rank, world, port, os.getpid(), there), name=f"ddp-pool-{world}-rank-{rank}"
                )
                proc.start()
                there.close()
                self.procs.append(proc)
                self.conns.append(here)
            self.gather(deadline, f"starting {world} gloo ranks")
        except BaseException:
            self.kill()
            raise

    def alive(self) -> bool:
        return all(proc.is_alive() for proc in self.procs)

    def gather(self, deadline: float, what: str) -> list[tuple]:
        """Every rank's next reply, in rank order; DDPError on the first error, a dead rank or the deadline."""
        replies: list[tuple] = [()] * self.world
        pending = dict(enumerate(self.conns))
        sentinels = {proc.sentinel: rank for rank, proc in enumerate(self.procs)}
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DDPError(
                    f"{what}: rank(s) {sorted(pending)} of {self.world} did not reply within {CALL_TIMEOUT_S:.0f} s "
                    "(stuck, e.g. in a collective another rank never joined)"
                )
            ready = set(wait([*pending.values(), *sentinels], timeout=left))
            answered = [rank for rank, conn in pending.items() if conn in ready]
            for rank in answered:  # read replies first: a rank that wrote its traceback and then died is reported so
                reply = self._recv(rank, what)
                if reply[0] == "error":
                    raise DDPError(self._errors(what, rank, reply[1], pending))
                replies[rank] = reply
                del pending[rank]
            if not answered and ready:  # only process sentinels: a rank exited without a reply
                dead = sorted(rank for sentinel, rank in sentinels.items() if sentinel in ready)
                for r in dead:
                    self.procs[r].join(TERMINATE_GRACE_S)  # reap it, for its exit code
                codes = ", ".join(f"rank {r}: exit code {self.procs[r].exitcode}" for r in dead)
                raise DDPError(f"{what}: {codes} (a rank process died)")
        return replies

    def _recv(self, rank: int, what: str) -> tuple:
        try:
            return pickle.loads(self.conns[rank].recv_bytes())
        except (EOFError, OSError):
            self.procs[rank].join(TERMINATE_GRACE_S)
            raise DDPError(f"{what}: rank {rank} died (exit code {self.procs[rank].exitcode})") from None

    def _errors(self, what: str, rank: int, remote: str, pending: dict[int, Connection]) -> str:
        """The message of the first error, with any other rank's error that arrives within ERROR_GRACE_S."""
        parts = [f"{what}: rank {rank} of {self.world} raised:\n\n{remote}"]
        others = {conn: r for r, conn in pending.items() if r != rank}
        for conn in wait(list(others), timeout=ERROR_GRACE_S) if others else []:
            try:
                reply = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                parts.append(f"rank {others[conn]} died as well")
                continue
            if reply[0] == "error":
                parts.append(f"rank {others[conn]} raised as well:\n\n{reply[1]}")
        return "\n".join(parts)

    def run(self, payload: bytes, deadline: float, what: str) -> tuple[list[Any], bool]:
        """Send one pickled job to every rank; its per-rank results and whether the pool may take another job."""
        for rank, conn in enumerate(self.conns):
            try:
                conn.send_bytes(payload)
            except OSError:
                raise DDPError(f"{what}: rank {rank} is gone (exit code {self.procs[rank].exitcode})") from None
        replies = self.gather(deadline, what)
        return [reply[1] for reply in replies], all(reply[2] for reply in replies)

    def close(self) -> None:
        """Clean exit: each rank leaves its loop and destroys its process group; ranks still there later are killed."""
        self.ask_to_exit()
        self.join_or_kill(time.monotonic() + SHUTDOWN_TIMEOUT_S)

    def ask_to_exit(self) -> None:
        for conn in self.conns:
            try:
                conn.send_bytes(pickle.dumps(None))
            except OSError:
                pass

    def join_or_kill(self, deadline: float) -> None:
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        self.kill()

    def kill(self) -> None:
        """Stop every rank now (SIGTERM, then SIGKILL): after an error the others may be blocked in a collective."""
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + TERMINATE_GRACE_S
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()


_POOLS: dict[int, _Pool] = {}


def _drop(world: int) -> None:
    pool = _POOLS.pop(world, None)
    if pool is not None:
        pool.kill()


@atexit.register
def shutdown() -> None:
    """Close every pool, all at once (registered at exit; also callable to free the ranks early)."""
    pools = list(_POOLS.values())
    _POOLS.clear()
    for pool in pools:
        pool.ask_to_exit()
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
    for pool in pools:
        pool.join_or_kill(deadline)


def run_ddp(fn: Callable[..., Any], world: int, *args: Any) -> list[Any]:
    """Call ``fn(rank, world, *args)`` on every rank of a ``world``-process gloo group; return the per-rank results.

    ``fn`` must be a module-level function (pickled by reference); ``args`` and results must be picklable (use CPU
    tensors / floats). The ranks run single-threaded and are reused by later calls of the same world size (each job
    starts from the state the ranks had when the pool started: see _Baseline). Raises DDPError when a rank raises
    (its traceback in the message), dies, or the call takes over CALL_TIMEOUT_S.
    """
    if world < 1:
        raise ValueError(f"`world` must be a positive int, got {world!r}")
    deadline = time.monotonic() + CALL_TIMEOUT_S
    payload = pickle.dumps((fn, args))  # fails here, pool untouched, for a lambda or a local function
    what = f"run_ddp({getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)!s}, world={world})"
    pool = _POOLS.get(world)
    if pool is None or not pool.alive():
        _drop(world)
        pool = _POOLS[world] = _Pool(world, deadline)
    try:
        results, reusable = pool.run(payload, deadline, what)
    except BaseException:  # a failed job (or Ctrl-C) leaves ranks in unknown places: never reuse them
        _drop(world)
        raise
    if not reusable:
        del _POOLS[world]
        pool.close()
    return results
