"""CPU memory allocator tuning: keep the memory torch frees in the process, for the next batch to reuse.

Why: torch allocates CPU tensors with the C library's ``malloc``. glibc serves a large request (above a threshold that
starts at 128 KiB and grows to at most 32 MiB) with a fresh ``mmap`` and returns it to the kernel on ``free``, so each
forward of an audio model touches its activation memory for the first time again: every 4 KiB page costs a page fault
and a zeroing in the kernel. On the backbones' batched forwards that is a large share of the CPU time: with glibc's
defaults, half of the tiny PaSST's forward is system time (1.25 M page faults per ten batches of eight 10 s windows),
and a full-size PaSST forward of 4 windows took 10.2 s untuned against 7.0 s tuned on 2 quiet CPU cores
(``benchmarks/run_all.py``, section ``allocator``, measures both on the machine at hand). Keeping freed memory for
reuse removes the faults; the values computed are the same, bit for bit (only where memory comes from changes). The
cost is memory: the process keeps what it freed, so its resident size stays at its peak and grows by fragmentation
(the full-size ImageBind and PaSST parity tests in one process: 4.7 GB untuned, 6.7 GB tuned; 1.23x faster).

``torchmetrics-av`` applies :func:`tune_cpu_allocator` when it starts (the state is in its JSON's provenance,
``cpu_allocator``); the Python API never changes the process's allocator by itself: a training script or notebook that
wants the same speed calls it once, first thing. Set ``TORCHMETRICS_AV_CPU_ALLOCATOR=default`` to keep glibc's
behaviour; settings of your own (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``) are never
overridden. Elsewhere than Linux with glibc (macOS, musl, Windows) it does nothing.

Example:
    >>> from torchmetrics_av.allocator import cpu_allocator_state, tune_cpu_allocator
    >>> cpu_allocator_state() in ("default", "tuned", "user", "unsupported")
    True
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading

# mallopt() parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Requests below this many bytes come from the heap, whose freed memory is reused: mallopt's largest value (a C int).
# The largest tensor of a PaSST batch is its attention matrix, B x 12 heads x 1190^2 float32: 0.54 GB at the CLI's
# batch of 8, 2.2 GB at batch 32 (that one is still mmap-ed and returned).
MMAP_THRESHOLD_BYTES = 2**31 - 1
# glibc builds that cap the threshold refuse the value above: then its largest dynamic threshold (32 MiB on 64-bit,
# DEFAULT_MMAP_THRESHOLD_MAX in malloc.c), which still keeps most activation tensors of a batch.
FALLBACK_MMAP_THRESHOLD_BYTES = 32 << 20
# Free memory at the top of the heap is returned to the kernel only above this: never below mallopt's maximum.
TRIM_THRESHOLD_BYTES = 2**31 - 1
# The opt-out, and the environment variables through which a user has tuned glibc's malloc already (then: "user").
OPT_OUT_ENV = "TORCHMETRICS_AV_CPU_ALLOCATOR"
USER_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")

_lock = threading.Lock()
_tuned = False


def _user_settings() -> bool:
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    others = any(os.environ.get(name) for name in USER_MALLOC_ENV if name != "GLIBC_TUNABLES")
    return others or "glibc.malloc." in tunables


def _glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def cpu_allocator_state() -> str:
    """How this process's CPU allocator is set: ``"tuned"`` (:func:`tune_cpu_allocator` applied), ``"user"`` (glibc
    malloc settings in the environment, left as they are), ``"unsupported"`` (not Linux with glibc) or ``"default"``.

    Example:
        >>> cpu_allocator_state() in ("default", "tuned", "user", "unsupported")
        True
    """
    if _tuned:
        return "tuned"
    if not _glibc():
        return "unsupported"
    return "user" if _user_settings() else "default"


def tune_cpu_allocator() -> bool:
    """Keep freed CPU memory in the process (glibc ``mallopt``), so that batched forwards stop paying page faults.

    Process-wide and lasting (there is no undo: call it once, at the start of a script); thread-safe and idempotent.
    Not applied when ``$TORCHMETRICS_AV_CPU_ALLOCATOR`` is ``default``, when the environment already sets glibc malloc
    options, or off glibc. Results are bit-identical either way; the peak resident memory is kept until exit.

    Returns:
        Whether the allocator is tuned now (also ``True`` on a repeated call).

    Example:
        >>> from torchmetrics_av.allocator import tune_cpu_allocator
        >>> tune_cpu_allocator() in (True, False)  # False: off glibc, opted out, or tuned by the user already
        True
    """
    global _tuned
    with _lock:
        if _tuned:
            return True
        if os.environ.get(OPT_OUT_ENV, "").lower() == "default" or not _glibc() or _user_settings():
            return False
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        thresholds = (MMAP_THRESHOLD_BYTES, FALLBACK_MMAP_THRESHOLD_BYTES)
        if not any(mallopt(M_MMAP_THRESHOLD, value) for value in thresholds):  # mallopt: 1 = set, 0 = refused
            return False
        # The threshold set above also stops glibc from trimming at 2x its dynamic threshold; this keeps the top too.
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        _tuned = True
        return True
