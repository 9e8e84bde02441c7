"""Where a run's files live: a local directory or Cloud Storage (`gs://`), behind one path type.

Every workdir path a binary reads or writes goes through `workdir_path`, which returns an `etils.epath.Path`:
a local path made absolute (Orbax needs absolute paths), a `gs://` URL kept as it is. The pathlib calls the
code uses (`/`, `exists`, `is_dir`, `iterdir`, `mkdir`, `read_text`, `write_bytes`, `unlink`) then work on
both: epath sends `gs://` to gcsfs (or TensorFlow's gfile when TensorFlow is installed), and Orbax writes its
arrays through TensorStore's own GCS driver.

What object storage lacks, and what the code does instead:
- no atomic rename and no fsync: `atomic_write` writes the final object once; a single-object write on GCS is
  atomic (a reader sees the old object or the whole new one), which is all a rename would give;
- no `flock`: result rows go to one new object per append (`results.py`); protocol step locks are skipped
  (`experiments/steplock.py`), so two runners on one `gs://` workdir are unsupported;
- no local file for libraries that only write files (tensorboardX without TensorFlow): they write to a local
  staging directory that `copy_file` copies up (`training/writers.py`).
"""

from __future__ import annotations

import os
import pathlib
import shutil

from etils import epath

from xlt_jax.data import io
from xlt_jax.errors import ConfigError

REMOTE_PREFIX = "gs://"
_CHUNK = 1 << 24


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` is in object storage (no flock, no atomic rename, no local file)."""
    return os.fspath(path).startswith(REMOTE_PREFIX)


def workdir_path(path: str | os.PathLike) -> epath.Path:
    """The path every workdir file goes through: local paths absolute with symlinks resolved, `gs://` kept.

    Other URL schemes are refused rather than taken for a relative local directory named `s3:`.
    """
    text = os.fspath(path)
    if is_remote(text):
        return epath.Path(text.rstrip("/"))
    if "://" in text:
        raise ConfigError(f"{text}: a workdir is a local path or a {REMOTE_PREFIX} URL")
    return epath.Path(os.path.realpath(os.path.expanduser(text)))


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Readers see the old content or all of `data`: local files are written to a temporary name, fsynced and
    renamed; an object is written once under its final name (atomic on GCS, where a rename is a copy)."""
    if is_remote(path):
        epath.Path(path).write_bytes(data)
    else:
        io.atomic_write(path, data)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy one file between any two places (local, `gs://`), streamed, overwriting `dst`."""
    src, dst = epath.Path(src), epath.Path(dst)
    with src.open("rb") as fin, dst.open("wb") as fout:
        shutil.copyfileobj(fin, fout, _CHUNK)


def upload_tree(local: pathlib.Path, dest: epath.Path, *, last: str | None = None) -> None:
    """Copy the files under `local` to `dest`, the file named `last` (a completion marker) after all others."""
    files = sorted(p for p in local.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(local).as_posix() == last)  # stable: `last` moves to the end
    for path in files:
        target = dest / path.relative_to(local).as_posix()
        target.parent.mkdir(parents=True, exist_ok=True)
        copy_file(path, target)


def ancestors(path: epath.Path, levels: int) -> list[epath.Path]:
    """Up to `levels` enclosing directories of `path`, never above a `gs://` bucket."""
    parents = list(path.parents)[:levels]
    if is_remote(path):
        parents = [p for p in parents if is_remote(p) and len(os.fspath(p)) > len(REMOTE_PREFIX)]
    return parents
