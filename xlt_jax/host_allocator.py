"""Keep the host memory XLA:CPU frees at the end of a step for the next step, instead of returning it to Linux.

Why: XLA:CPU allocates an execution's temporaries as one block (315 MiB for the small CPU-experiment model's
train step) with `posix_memalign` on a worker thread and frees it when the step ends. glibc serves a block that
large on a worker thread with `mmap` (a thread arena's heaps are capped at 64 MiB) and unmaps it on `free`, so
every step faults the whole block back in, page by page, each page zeroed by the kernel: 84,000 page faults and
~135 ms of kernel CPU time per 195 ms step on a 2-core machine (measured with `getrusage`, strace showing one
mmap/munmap pair of the block per step). With one malloc arena, no mmap and no trimming, the block stays in
the heap and is reused, step after step: 0 faults, and the step takes ~130 ms.

This is glibc's `mallopt`, set in-process because entry points cannot set `GLIBC_TUNABLES` for themselves; it must
run before JAX starts its CPU client (a thread keeps the arena it first allocated from), which is why the binaries
call it first. (A preloaded tcmalloc or jemalloc, which keep freed pages for a while, is the other way; not
measured here. An accelerator's step temporaries are not host memory at all.) The cost: freed memory stays with the
process, and the heap ends up holding about two step blocks (most likely the next step's block is taken before the
last one is freed; inferred, not traced): peak RSS 1.01 → 1.59 GiB for the small model's step, 4.79 → 7.94 GiB for
roberta8 at 8 × 512. One arena also serialises the (rare) large allocations of many threads.
`XLT_HOST_ALLOCATOR=system` keeps glibc's defaults, for a machine short of memory.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import resource
import sys

from xlt_jax.errors import ConfigError

ENV = "XLT_HOST_ALLOCATOR"
MODES = ("retain", "system")

# glibc's <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -2, -4, -8
_SETTINGS = (
    (_M_ARENA_MAX, 1),  # worker threads allocate from the main heap, which can hold blocks of any size
    (_M_MMAP_MAX, 0),  # never serve a block with its own mmap (unmapped, and so re-faulted, on free)
    (_M_TRIM_THRESHOLD, -1),  # never give the heap's free top back (-1: no trimming at all, `man mallopt`)
    (_M_TOP_PAD, 64 << 20),  # grow the heap in 64 MiB steps rather than page by page
)

_applied = False


def mode() -> str:
    """`XLT_HOST_ALLOCATOR`: "retain" (default) or "system"."""
    value = os.environ.get(ENV, "retain").strip().lower() or "retain"
    if value not in MODES:
        raise ConfigError(f"{ENV}={os.environ[ENV]!r}: expected one of {MODES}")
    return value


def retain_freed_memory() -> bool:
    """Apply the settings above once per process; True if they are in effect after the call.

    Does nothing with `XLT_HOST_ALLOCATOR=system`, off glibc, or once JAX's backends exist (too late to move
    their threads to the main arena: a warning says so).
    """
    global _applied
    wanted = mode()
    if _applied:
        return True
    if wanted == "system" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if _jax_backends_initialized():
        logging.warning("%s: JAX's backends already exist; host memory is not retained (call it first)", __name__)
        return False
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    failed = [param for param, value in _SETTINGS if mallopt(param, value) != 1]
    if failed:
        logging.warning("%s: glibc refused mallopt parameters %s; keeping its defaults", __name__, failed)
        return False
    _applied = True
    return True


def in_effect() -> str:
    """"retain" once `retain_freed_memory` has applied its settings in this process, else "system"."""
    return "retain" if _applied else "system"


def page_faults() -> int:
    """Minor page faults of this process so far (what a retained heap avoids; the training loop logs them)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _jax_backends_initialized() -> bool:
    bridge = sys.modules.get("jax._src.xla_bridge")
    check = getattr(bridge, "backends_are_initialized", None)
    return bool(check and check())
