"""Result rows on object storage: one object per append under WORKDIR/results.d/, merged on read.

Cloud Storage has neither `flock` nor append: a shared `results.jsonl` would need a read-modify-write per
append, and two writers would drop each other's rows. So on a `gs://` workdir every `results.append_rows`
call writes its batch as a new object `results.d/<UTC time>-<host>-<pid>-<random>.jsonl`, once and whole: a
single-object write is atomic (a reader sees all of a batch or none of it) and no writer ever touches
another's object, however many processes or hosts write at once.

`results.read_rows` reads every object, plus a `results.jsonl` beside them (a local run's rows, or a workdir
fetched from Cloud Storage and appended to locally), and `merge` puts them in one list: ordered by the rows'
`time`, ties by source (the file first, then objects by name, i.e. by the writer's clock when it wrote) and
line; identical rows (every field, `time` and `commit` included) are kept once, so a batch that reached the
store twice (a retried upload under a new name, a copied file) counts once. Clocks of different hosts
disagree, so "the last row per cell" across hosts is as good as their clocks.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import uuid
from collections.abc import Sequence
from typing import Protocol

from etils import epath

from xlt_jax import storage

OBJECTS_DIR = "results.d"
SUFFIX = ".jsonl"


class _Row(Protocol):
    time: str

    def to_json(self) -> str: ...


def object_name(now: dt.datetime | None = None) -> str:
    """`<UTC time, µs>-<host>-<pid>-<random>.jsonl`: unique per append, sorting in write order per clock."""
    now = now or dt.datetime.now(dt.UTC)
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:40] or "host"
    return f"{now:%Y%m%dT%H%M%S%fZ}-{host}-{os.getpid()}-{uuid.uuid4().hex[:12]}{SUFFIX}"


def write_object(workdir: epath.Path, payload: bytes) -> epath.Path:
    """Store one batch of JSON lines as a new object of `workdir`'s results; returns its path."""
    directory = workdir / OBJECTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / object_name()
    storage.atomic_write(path, payload)
    return path


def object_paths(workdir: epath.Path) -> list[epath.Path]:
    """The row objects of `workdir`, by name ([] when it has none)."""
    directory = workdir / OBJECTS_DIR
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _when(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)  # a row without offset was written in UTC


def merge(sources: Sequence[Sequence[_Row]]) -> list[_Row]:
    """The rows of every source in one list: by time, then source, then position; duplicates dropped."""
    keyed = [(_when(row.time), s, i, row) for s, rows in enumerate(sources) for i, row in enumerate(rows)]
    keyed.sort(key=lambda item: item[:3])
    seen: set[str] = set()
    out = []
    for *_, row in keyed:
        identity = row.to_json()
        if identity not in seen:
            seen.add(identity)
            out.append(row)
    return out
