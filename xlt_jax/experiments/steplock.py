"""Per-step locks of the protocol runner, so that several runners can share one workdir.

Two `python -m xlt_jax.experiments.protocol` processes on the same WORKDIR (a resubmitted job, a second
shell) would otherwise both see a step as unfinished and both run it: two trainings writing one checkpoint
directory, evaluation rows appended twice. A runner therefore holds an exclusive `flock` on
`<step>/DONE.json.lock` while it runs a step; a second runner waits for it, then finds the new DONE.json
and skips the step. The lock is released by the kernel when its process dies, so a crash never leaves a
stale lock behind. `flock` is advisory and, across hosts, needs a filesystem that supports it (local disks,
NFSv4); multi-host runs take no lock, since every host must run the step together. Object storage
(a `gs://` workdir) has no lock at all: there no lock is taken, and two runners on one such workdir are
unsupported (each would run the unfinished steps).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator

from etils import epath

from xlt_jax import storage

LOCK_SUFFIX = ".lock"


@contextlib.contextmanager
def step_lock(marker: epath.Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold the exclusive lock beside `marker` (the step's DONE.json) for the duration of the block."""
    if not enabled or storage.is_remote(marker):
        yield
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    lock_path = marker.with_name(marker.name + LOCK_SUFFIX)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logging.info("%s: another runner holds %s; waiting for it", marker.parent, lock_path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def finished_meanwhile(seen: dict | None, now: dict | None, fingerprint: str) -> bool:
    """Whether another runner finished the step since this runner read its marker (`seen` at start)."""
    return now is not None and now != seen and now.get("fingerprint") == fingerprint
