"""Graceful preemption: SIGTERM (what a preempted Cloud TPU VM receives) ends a run at a step boundary.

The training loops call `reached(step)` once per step; when it returns True they save that step, wait for
the checkpoint to be on disk and raise `Preempted`, which the binaries turn into a message and exit status 0
(rerunning the same command resumes there).

- `jax.distributed` initialised (multi-host, or a TPU VM started with `XLT_DISTRIBUTED_INITIALIZE=1`):
  JAX's preemption sync manager catches SIGTERM on any host, tells the others through the coordination
  service and picks the same step for everyone (the step after the largest one any host has reached), so
  every host writes its part of one complete checkpoint. `jax.distributed.initialize` installs its handler
  in C++; no Python handler may replace it.
- Otherwise: inside `watch()`, SIGTERM only sets a flag read at the next step boundary. A second SIGTERM
  while the first is pending restores the default action and kills the process (an impatient `kill`
  still works).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator

import jax
from jax.experimental import multihost_utils

from xlt_jax.errors import Preempted

__all__ = ["Preempted", "reached", "requested", "watch"]

_notice = threading.Event()
_depth = 0  # nesting of `watch` blocks (the protocol runner wraps the nested runs' own blocks)


def _on_sigterm(signum: int, frame: object) -> None:
    if _notice.is_set():  # second notice: give up gracefully, die now
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _notice.set()
    logging.warning("SIGTERM received: saving a checkpoint at the next step boundary, then exiting")


def _jax_notifier() -> bool:
    """JAX's own SIGTERM notifier and sync manager are running (installed by `jax.distributed.initialize`)."""
    return jax.distributed.is_initialized()


@contextlib.contextmanager
def watch() -> Iterator[None]:
    """Inside the block a single-process run takes SIGTERM as a preemption notice instead of dying.

    A no-op off the main thread (Python delivers signals there only) and once `jax.distributed` runs (JAX's
    notifier handles SIGTERM then, and replaces this handler if it is initialised inside the block); the
    previous handler is restored when the outermost block exits.
    """
    global _depth
    if _jax_notifier() or threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth == 0:
        _notice.clear()
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            signal.signal(signal.SIGTERM, previous)


def reached(step: int) -> bool:
    """True at the step every host saves and stops at after a preemption notice. Call it at every step."""
    if _jax_notifier():
        return multihost_utils.reached_preemption_sync_point(step)
    return _notice.is_set()


def requested() -> bool:
    """A notice is pending (Python's handler only): callers between steps, e.g. the protocol runner, stop too."""
    return _notice.is_set()


def stop(step: int, what: str, directory: object) -> Preempted:
    """The exception a loop raises once step `step` is saved (logged on process 0)."""
    message = (f"preempted: {what} saved step {step} in {directory} and stopped; rerun the same command to resume")
    if jax.process_index() == 0:
        logging.warning(message)
    return Preempted(message)
