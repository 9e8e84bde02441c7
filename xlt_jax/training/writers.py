"""Metric writers with `clu.metric_writers`' interface: TensorBoard event files and the console.

Hand-written because `clu.metric_writers` cannot be imported without TensorFlow (its package `__init__`
imports the TF summary writer, ENV_NOTES §2), and TensorFlow would add 1.3 GB and 7 s of import time.
tensorboardX writes the same event files without it. Only process 0 writes, as with clu.

tensorboardX writes `gs://` only through google-cloud-storage, outside epath (so untestable here), and
re-uploads its whole buffer at every flush anyway. For a `gs://` logdir the events therefore go to a local
staging directory, copied whole to the logdir (`storage.copy_file`) at most every `sync_secs` when scalars
are written, and at every `flush` and `close`: a lost VM loses at most that much of the curves. Each
invocation writes its own event file (tensorboardX names it by time and host), so copies never clobber the
files of earlier runs.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping

import jax

from xlt_jax import storage

Scalars = Mapping[str, float]


def _format(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e9):
        return str(int(value))
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5) and math.isfinite(value):
        return f"{value:.3e}"
    return f"{value:.4f}"


class MetricWriter:
    """`write_scalars(step, {name: value})` to `logdir` (TensorBoard) and the log; `write_texts` likewise."""

    def __init__(self, logdir: str | os.PathLike, *, console: bool = True, enabled: bool | None = None,
                 sync_secs: float = 60.0):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.console = console
        self._tb = None
        self._target = storage.workdir_path(logdir) if storage.is_remote(logdir) else None
        self._staging: str | None = None
        self._sync_secs, self._synced = sync_secs, time.monotonic()
        if self.enabled:
            from tensorboardX import SummaryWriter  # imported lazily: only the writing process needs it

            if self._target is not None:
                self._staging = tempfile.mkdtemp(prefix="xlt-events-")
            self._tb = SummaryWriter(logdir=self._staging or os.fspath(logdir), flush_secs=30)

    def write_scalars(self, step: int, scalars: Scalars) -> None:
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._tb.add_scalar(name, float(value), global_step=int(step))
        if self.console:
            logging.info("[%d] %s", step, ", ".join(f"{k}={_format(float(v))}" for k, v in sorted(scalars.items())))
        if self._staging is not None and time.monotonic() - self._synced >= self._sync_secs:
            self.flush()

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        if not self.enabled:
            return
        for name, text in texts.items():
            self._tb.add_text(name, text, global_step=int(step))

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._upload()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._upload()
            self._tb = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def _upload(self) -> None:
        """Copy the staged event files to the `gs://` logdir (whole: an object cannot be appended to)."""
        if self._staging is None:
            return
        self._target.mkdir(parents=True, exist_ok=True)
        for name in sorted(os.listdir(self._staging)):
            if os.path.isfile(os.path.join(self._staging, name)):
                storage.copy_file(os.path.join(self._staging, name), self._target / name)
        self._synced = time.monotonic()


def read_scalars(workdir: str | os.PathLike) -> dict[str, dict[int, float]]:
    """Every scalar of the TensorBoard event files in `workdir`, as {tag: {step: value}} (TFRecord framing of
    Event protos, read without TensorFlow)."""
    import struct

    from tensorboardX.proto import event_pb2

    out: dict[str, dict[int, float]] = {}
    for path in sorted(storage.workdir_path(workdir).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out
