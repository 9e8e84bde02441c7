"""Metric writers with `clu.metric_writers`' interface: TensorBoard event files and the console.

Hand-written because `clu.metric_writers` cannot be imported without TensorFlow (its package `__init__`
imports the TF summary writer, ENV_NOTES §2), and TensorFlow would add 1.3 GB and 7 s of import time.
tensorboardX writes the same event files without it. Only process 0 writes, as with clu.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping

import jax

Scalars = Mapping[str, float]


def _format(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e9):
        return str(int(value))
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5) and math.isfinite(value):
        return f"{value:.3e}"
    return f"{value:.4f}"


class MetricWriter:
    """`write_scalars(step, {name: value})` to `logdir` (TensorBoard) and the log; `write_texts` likewise."""

    def __init__(self, logdir: str | os.PathLike, *, console: bool = True, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.console = console
        self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter  # imported lazily: only the writing process needs it

            self._tb = SummaryWriter(logdir=os.fspath(logdir), flush_secs=30)

    def write_scalars(self, step: int, scalars: Scalars) -> None:
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._tb.add_scalar(name, float(value), global_step=int(step))
        if self.console:
            logging.info("[%d] %s", step, ", ".join(f"{k}={_format(float(v))}" for k, v in sorted(scalars.items())))

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        if not self.enabled:
            return
        for name, text in texts.items():
            self._tb.add_text(name, text, global_step=int(step))

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_scalars(workdir: str | os.PathLike) -> dict[str, dict[int, float]]:
    """Every scalar of the TensorBoard event files in `workdir`, as {tag: {step: value}} (TFRecord framing of
    Event protos, read without TensorFlow)."""
    import pathlib
    import struct

    from tensorboardX.proto import event_pb2

    out: dict[str, dict[int, float]] = {}
    for path in sorted(pathlib.Path(workdir).glob("events.out.tfevents.*")):
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
