"""The results store `WORKDIR/results.jsonl`: one JSON row per evaluated number.

Every evaluated number is one JSON row (`ResultRow`): which model, task, language, train and eval
transformation, protocol setting and metric. Rows are only ever appended, by any number of processes at
once, so a sweep can run many evaluations into one workdir and every table or plot is derived from the
rows, never typed by hand (DESIGN §6); the tables themselves are computed in `xlt_jax.tables`.

Durability: `append_rows` takes an exclusive `flock`, writes a whole batch with one `os.write` (continued
only after a short write), then fsyncs before unlocking. Rows already in the file are never rewritten; the one
exception is a partial line left by a writer that crashed mid-write, which the next append removes (with a warning)
so that it cannot become a corrupt line in the middle of the file. `read_rows` skips such an
unterminated last line with a warning, but a malformed *complete* line is corruption and raises.
A `gs://` workdir has no `flock`: there each append is a new object under `results.d/`, merged on read
(`xlt_jax.result_objects`).

Protocol (REFERENCE_SPEC §4.1): for a task, base language and derived transformation T,
  BZ = bilingual model, fine-tuned on the original, evaluated on T;  BS = bilingual, fine-tuned and
  evaluated on T;  MZ = monolingual, fine-tuned on the original, evaluated on T.
A row names its model (`model`), the corpus variant of the experiment's bilingual pretraining corpus
(`corpus`), and for a monolingual model the bilingual model it is the baseline of (`twin`), so that the
tables can keep every bilingual model apart and give each its own MZ. Rows written before these two
fields existed read back with "".
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import functools
import json
import math
import os
import pathlib
import subprocess
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from etils import epath

from xlt_jax import result_objects, storage
from xlt_jax.errors import DataFormatError

RESULTS_FILE = "results.jsonl"
SETTINGS = ("BZ", "BS", "MZ", "")  # "" = outside the derived-language protocol (e.g. cross-lingual, orig→orig)
IDENTITY = "none"  # transform name of untransformed (original) data
UNKNOWN_COMMIT = "unknown"
COMMIT_ENV = "XLT_CODE_COMMIT"  # overrides git detection, for deployments that ship the code without .git

# Metric names in rows are the keys `xlt_jax.metrics` returns ("accuracy", "f1", "exact_match", ...), except
# POS token accuracy, which is stored as "token_accuracy" so that it cannot be mistaken for another accuracy.
# Headline metrics per task (REFERENCE_SPEC §4.1): XNLI accuracy, NER F1, POS (seqeval) F1, XQuAD F1,
# Tatoeba accuracy; POS token accuracy is the cleaner number (§0.10, §4.4) and gets its own column.
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "pos": ("f1", "token_accuracy"),
    "ner": ("f1",),
    "nli": ("accuracy",),
    "qa": ("f1",),
    "tatoeba": ("accuracy",),
}

_REQUIRED_TEXT = ("model", "task", "lang", "train_transform", "eval_transform", "metric", "split", "commit", "time")
_FSYNC_UNSUPPORTED = (errno.EINVAL, errno.ENOTSUP, errno.EBADF)


class TruncatedRowWarning(RuntimeWarning):
    """An incomplete last row, left by a writer that was interrupted mid-write, was skipped or removed."""


# ------------------------------------------------------------------------------------------------------
# Provenance


def utc_now() -> str:
    """Current UTC time as ISO 8601 with seconds and an explicit +00:00 offset."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _git(args: Sequence[str], cwd: str) -> str | None:
    """stdout of `git ARGS` in `cwd`, or None when git is missing, fails or hangs."""
    # GIT_OPTIONAL_LOCKS=0: `git status` must not take index.lock while somebody else uses the checkout.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def code_commit(directory: str | os.PathLike | None = None) -> str:
    """Git commit of the code in `directory` (default: the xlt_jax package), `<sha>-dirty` when tracked
    files anywhere in the repository, or untracked files inside `directory`, differ from HEAD, and
    "unknown" when `directory` is not tracked by a git checkout (e.g. an installed copy) or git is missing.

    `$XLT_CODE_COMMIT` wins when set. Cached per process: the answer describes the code that was imported.
    """
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    where = os.fspath(directory) if directory is not None else os.path.dirname(os.path.abspath(__file__))
    return _git_commit(os.path.abspath(where))


@functools.cache
def _git_commit(where: str) -> str:
    if not os.path.isdir(where):
        return UNKNOWN_COMMIT
    head = _git(["rev-parse", "--verify", "HEAD"], where)
    # A package copied into some unrelated repository (e.g. site-packages inside a project checkout) is not
    # described by that repository's HEAD: require its files to be tracked there.
    tracked = _git(["ls-files", "--", "."], where)
    if not head or not tracked:
        return UNKNOWN_COMMIT
    tracked_changes = _git(["status", "--porcelain", "--untracked-files=no"], where)
    local_changes = _git(["status", "--porcelain", "--untracked-files=all", "--", "."], where)
    if tracked_changes is None or local_changes is None:
        return UNKNOWN_COMMIT
    dirty = bool(tracked_changes.strip() or local_changes.strip())
    return head.strip() + ("-dirty" if dirty else "")


# ------------------------------------------------------------------------------------------------------
# Rows


@dataclasses.dataclass(frozen=True)
class ResultRow:
    """One evaluated number. `value` is a percentage in [0, 100]; `setting` is BZ, BS, MZ or "".

    `train_lang` is the language of the fine-tuning data ("" when nothing was fine-tuned, e.g. Tatoeba);
    `lang` is the evaluated language (for a derived language: its base language, with `eval_transform`).
    Transforms are spec strings as `xlt_jax.data.transforms.parse` takes them, "none" for original data.
    `corpus` labels the corpus variant of the experiment's bilingual pretraining corpus ("parallel",
    "nonparallel_same", "nonparallel_diff" as the protocol's `corpus=` selects it; "" = unlabelled), on the
    monolingual model's rows too. `twin` is set on a monolingual model's rows: the `model` of the bilingual
    model whose MZ baseline it is (a BZ/BS row is its own model).
    """

    model: str
    task: str
    lang: str
    train_transform: str
    eval_transform: str
    setting: str
    metric: str
    value: float
    n_examples: int
    train_lang: str = ""
    split: str = "dev"
    seed: int = 0
    checkpoint: str = ""
    corpus: str = ""
    twin: str = ""
    commit: str = dataclasses.field(default_factory=code_commit)
    time: str = dataclasses.field(default_factory=utc_now)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError naming the first bad field (see `validation_error`)."""
        problem = self.validation_error()
        if problem:
            raise ValueError(f"invalid result row: {problem}")

    def validation_error(self) -> str | None:
        """"field: what is wrong" for the first invalid field, or None."""
        for name in _REQUIRED_TEXT:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                hint = f" (use {IDENTITY!r} for original data)" if name.endswith("_transform") else ""
                return f"{name}: must be a non-empty string, got {value!r}{hint}"
        for name in ("train_lang", "checkpoint", "corpus", "twin"):
            if not isinstance(getattr(self, name), str):
                return f"{name}: must be a string, got {getattr(self, name)!r}"
        if self.setting not in SETTINGS:
            return f"setting: must be one of {SETTINGS}, got {self.setting!r}"
        if isinstance(self.value, bool) or not isinstance(self.value, int | float) or not math.isfinite(self.value):
            return f"value: must be a finite number, got {self.value!r}"
        if not 0.0 <= self.value <= 100.0:
            return f"value: must be a percentage in [0, 100], got {self.value!r}"
        if isinstance(self.n_examples, bool) or not isinstance(self.n_examples, int) or self.n_examples < 1:
            return f"n_examples: must be a positive integer, got {self.n_examples!r}"
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            return f"seed: must be an integer, got {self.seed!r}"
        try:
            dt.datetime.fromisoformat(self.time)
        except ValueError:
            return f"time: must be an ISO 8601 timestamp, got {self.time!r}"
        if not isinstance(self.extra, dict):
            return f"extra: must be a dict, got {type(self.extra).__name__}"
        try:
            json.dumps(self.extra, allow_nan=False)
        except (TypeError, ValueError) as e:
            return f"extra: must be JSON-serialisable without NaN/Inf ({e})"
        return self._setting_error()

    def _setting_error(self) -> str | None:
        """Contradictions between `setting` and the data the model was fine-tuned and evaluated on."""
        same_lang = self.train_lang in ("", self.lang)
        if self.setting in ("BZ", "BS") and self.twin:
            return f"twin: a {self.setting} row is the bilingual model itself; only a monolingual model names a twin"
        if self.setting == "BS" and (self.train_transform != self.eval_transform or not same_lang):
            return (
                f"train_transform: a BS (supervised) row is fine-tuned on the evaluated data, but "
                f"train={self.train_lang or '-'}/{self.train_transform} and eval={self.lang}/{self.eval_transform}"
            )
        if self.setting in ("BZ", "MZ") and self.train_transform == self.eval_transform and same_lang:
            return (
                f"setting: a {self.setting} (zero-shot) row must be evaluated on other data than it was "
                f"fine-tuned on, but both are {self.lang}/{self.eval_transform}"
            )
        return None

    def to_json(self) -> str:
        """One JSON line (no newline); field order as declared, non-ASCII kept readable."""
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ResultRow:
        """Build and validate a row from a decoded JSON object; ValueError names a missing or unknown field."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - set(fields))
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field (known: {', '.join(fields)})")
        missing = [n for n, f in fields.items() if n not in record and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"{missing[0]}: missing field")
        # Rows read back must not pick up this process's commit or clock as defaults.
        for name in ("commit", "time"):
            if name not in record:
                raise ValueError(f"{name}: missing field")
        row = cls(**record)
        problem = row.validation_error()
        if problem:
            raise ValueError(problem)
        return row


def results_path(workdir: str | os.PathLike) -> epath.Path:
    """WORKDIR/results.jsonl; on a `gs://` workdir it stands for the store (the rows are in results.d/)."""
    return storage.workdir_path(workdir) / RESULTS_FILE


def has_rows(workdir: str | os.PathLike) -> bool:
    """Whether `workdir` holds result rows (a results.jsonl or row objects)."""
    workdir = storage.workdir_path(workdir)
    return (workdir / RESULTS_FILE).exists() or bool(result_objects.object_paths(workdir))


# ------------------------------------------------------------------------------------------------------
# Appending


def _write_all(fd: int, data: bytes) -> None:
    """`os.write` until everything is written: a short write (e.g. a signal) must not drop the tail."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems (and /dev/shm on some kernels) refuse fsync; the data is written
        if e.errno not in _FSYNC_UNSUPPORTED:
            raise


def _last_newline(fd: int, size: int) -> int:
    """Offset just past the last b"\\n" before `size` (0 if none), reading the tail backwards in blocks."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        pos = block.rfind(b"\n")
        if pos >= 0:
            return start + pos + 1
        end = start
    return 0


def _repair_unterminated_tail(fd: int, path: pathlib.Path, size: int) -> None:
    """Make the file end at a line boundary before appending (called under the exclusive lock).

    A writer that died mid-`write` leaves a partial last line. Appending after it would glue our first row
    onto it and turn it into a corrupt line in the middle of the file, so: a tail that is a complete, valid
    row just gets its newline; anything else is cut off with a warning.
    """
    start = _last_newline(fd, size)
    tail = os.pread(fd, size - start, start)
    try:
        ResultRow.from_dict(json.loads(tail.decode("utf-8")))
    except (UnicodeDecodeError, ValueError, TypeError):
        lineno = os.pread(fd, start, 0).count(b"\n") + 1 if start else 1
        warnings.warn(
            f"{path}:{lineno}: removing an incomplete row ({len(tail)} bytes) left by an interrupted write",
            TruncatedRowWarning,
            stacklevel=3,
        )
        os.ftruncate(fd, start)
        return
    _write_all(fd, b"\n")


def append_rows(workdir: str | os.PathLike, rows: Iterable[ResultRow]) -> epath.Path:
    """Append `rows` to `WORKDIR/results.jsonl` (created if needed) and return its path.

    All rows are validated first (ValueError naming the row index and field; nothing is written then). The
    batch is written under an exclusive `flock` with one `write`, then fsynced, so concurrent writers never
    interleave and a crash can only leave a partial last line, which readers skip and the next append removes.
    `flock` is advisory and per host: writers on several hosts need a filesystem with working `flock` (local
    disks, NFSv4) or must write from one process. On a `gs://` workdir the batch becomes a new object under
    results.d/ instead (`result_objects`), whose path is returned.
    """
    rows = list(rows)
    for i, row in enumerate(rows):
        if not isinstance(row, ResultRow):
            raise TypeError(f"row {i}: expected ResultRow, got {type(row).__name__}")
        problem = row.validation_error()
        if problem:
            raise ValueError(f"row {i}: {problem}")
    path = results_path(workdir)
    if not rows:
        return path
    payload = "".join(row.to_json() + "\n" for row in rows).encode("utf-8")
    if storage.is_remote(path):
        return result_objects.write_object(path.parent, payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            _repair_unterminated_tail(fd, path, size)
        _write_all(fd, payload)
        _fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock
    return path


# ------------------------------------------------------------------------------------------------------
# Reading


def read_rows(path: str | os.PathLike) -> list[ResultRow]:
    """All rows of a results store (a workdir, or its results.jsonl) or of one results file, in write order.

    A store with row objects (results.d/, written on `gs://`) reads as the merge of its results.jsonl and
    every object (`result_objects.merge`: by time, duplicates once); a store without is its file, as written.
    An unterminated, malformed last line (a crash mid-write) is skipped with a `TruncatedRowWarning` naming
    file:line; any other malformed line raises `DataFormatError` naming file:line and the field. Blank lines
    are ignored. Reads under a shared lock, so a concurrent append is seen whole or not at all.
    """
    path = storage.workdir_path(path)
    workdir = path if path.is_dir() else path.parent if path.name == RESULTS_FILE else None
    objects = result_objects.object_paths(workdir) if workdir is not None else []
    if workdir is not None:
        path = workdir / RESULTS_FILE
    if not objects:
        if not path.exists():
            raise DataFormatError(path, None, "results file does not exist (no evaluation has written rows yet)")
        return _read_file(path)
    sources = [_read_file(path)] if path.exists() else []
    sources += [_parse_data(p, p.read_bytes()) for p in objects]
    return result_objects.merge(sources)


def _read_file(path: epath.Path) -> list[ResultRow]:
    if storage.is_remote(path):
        return _parse_data(path, path.read_bytes())
    with open(path, "rb") as f:
        with contextlib.suppress(OSError):  # a filesystem without flock: read anyway (partial tails tolerated)
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        data = f.read()
    return _parse_data(path, data)


def _parse_data(path: epath.Path, data: bytes) -> list[ResultRow]:
    lines = data.split(b"\n")
    unterminated = lines.pop()  # b"" when the file ends with a newline
    rows: list[ResultRow] = []
    for lineno, raw in enumerate(lines, start=1):
        row = _parse_line(path, lineno, raw)
        if row is not None:
            rows.append(row)
    if unterminated.strip():
        lineno = len(lines) + 1
        try:
            row = _parse_line(path, lineno, unterminated)
        except DataFormatError as e:
            warnings.warn(f"{e} -- skipping an incomplete last row (interrupted write?)", TruncatedRowWarning,
                          stacklevel=3)
        else:
            rows.append(row)
    return rows


def _parse_line(path: pathlib.Path, lineno: int, raw: bytes) -> ResultRow | None:
    if not raw.strip():
        return None
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataFormatError(path, lineno, f"undecodable bytes (not UTF-8): {e.reason}") from e
    except json.JSONDecodeError as e:
        raise DataFormatError(path, lineno, f"invalid JSON: {e.msg} (column {e.colno})") from e
    if not isinstance(record, dict):
        raise DataFormatError(path, lineno, f"expected a JSON object, got {type(record).__name__}")
    try:
        return ResultRow.from_dict(record)
    except (TypeError, ValueError) as e:
        raise DataFormatError(path, lineno, f"invalid row: {e}") from e


# ------------------------------------------------------------------------------------------------------
# Selecting and aggregating


def field_value(row: ResultRow, name: str) -> Any:
    """A row field, or `extra.KEY` for an entry of `extra` (None when absent)."""
    if name.startswith("extra."):
        return row.extra.get(name[len("extra."):])
    return getattr(row, name)


def select_rows(rows: Iterable[ResultRow], **equals: Any) -> list[ResultRow]:
    """Rows whose fields equal the given values; `extra__KEY=v` matches `row.extra[KEY] == v`."""
    wanted = {name.replace("extra__", "extra.", 1): value for name, value in equals.items()}
    return [r for r in rows if all(field_value(r, n) == v for n, v in wanted.items())]
