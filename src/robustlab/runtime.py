"""Process-level performance settings.

:func:`tune_allocator` keeps large CPU tensors on glibc's heap instead of fresh ``mmap`` regions. By default glibc
serves every allocation above 128 KiB-32 MiB (its threshold adapts) with ``mmap`` and unmaps it on free, so each new
batch-sized tensor is faulted in page by page on first touch. On virtual machines a page fault is expensive: filling a
fresh 38 MB tensor (64 images of 224 px) was measured at 0.24 ms per image against 0.02 ms for a reused one, which
is more than a whole Pillow corruption of the same image. PyTorch's CPU tuning guides suggest jemalloc or tcmalloc
through ``LD_PRELOAD`` for the same reason; this is the in-process equivalent with glibc's own ``mallopt``.

The robustlab command line applies it at start-up, and :func:`robustlab.perturb.perturb` on its first call
(:func:`tune_allocator_once`), so library calls run as fast as the CLI: on this 2-core VM the 15 test corruptions at
batch 4 took 40.2 ms per image untuned against 31.3 ms tuned (``benchmarks/bench_library_vs_cli.py``). Set
``ROBUSTLAB_MALLOC=system`` before the first call to keep glibc's defaults; a host application that already called
:func:`tune_allocator` with its own thresholds keeps them. The cost: up to ``trim_threshold`` bytes of freed memory
stay mapped to the process for reuse instead of being returned to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = ["tune_allocator", "tune_allocator_once"]

_log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_applied: tuple[int, int] | None = None
_tried_once = False


def tune_allocator(*, mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Serve allocations below ``mmap_threshold`` bytes from the reusable heap (glibc on Linux only).

    Args:
        mmap_threshold: allocations at least this large still get their own ``mmap`` (default 256 MiB).
        trim_threshold: freed memory at the top of the heap beyond this many bytes is returned to the system
            (default 1 GiB).

    Returns:
        True when the settings are in effect, False where they do not apply (not Linux/glibc, ``mallopt`` refused,
        or ``ROBUSTLAB_MALLOC=system``). Calling it again with the same values does nothing.

    Raises:
        ValueError: a threshold that is not a positive integer below 2**31.
    """
    global _applied
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
            raise ValueError(f"{name} must be a positive integer below 2**31 bytes, got {value!r}")
    if os.environ.get("ROBUSTLAB_MALLOC", "").strip().lower() == "system":
        return False
    if _applied == (mmap_threshold, trim_threshold):
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # glibc returns 1 on success; the mmap threshold is set first so that a refusal leaves the trim setting alone
    if mallopt(_M_MMAP_THRESHOLD, mmap_threshold) != 1 or mallopt(_M_TRIM_THRESHOLD, trim_threshold) != 1:
        _log.info("mallopt refused the allocator settings; glibc defaults stay in effect")
        return False
    _applied = (mmap_threshold, trim_threshold)
    return True


def tune_allocator_once() -> bool:
    """Apply :func:`tune_allocator`'s defaults the first time any robustlab entry point asks, and never again.

    Library front doors (``perturb()``) call this so that a library user gets the CLI's speed without a setup call.
    It does nothing after the first call, when the allocator was already tuned (with any thresholds), or with
    ``ROBUSTLAB_MALLOC=system``; it never raises.

    Returns:
        True when robustlab's allocator settings are in effect.
    """
    global _tried_once
    if _applied is not None or _tried_once:
        return _applied is not None
    _tried_once = True
    applied = tune_allocator()
    if applied:
        _log.info("robustlab tuned glibc's allocator for batch-sized tensors (ROBUSTLAB_MALLOC=system opts out)")
    return applied
