"""Hostile-input fuzzing: hypothesis strategies that damage real data files, and the outcome oracle.

A case is a real slice of a data file, a short sequence of mutations (truncation, flipped bytes, dropped or
extra columns, re-encoding as latin-1 / UTF-16, empty file, a huge line, NUL bytes, ...), stored plain or
gzipped, and for `.gz` optionally damaged after compression. The reader under test must then either parse
it or raise an `XltError` naming the file and line (or key), within a time limit; `check_file_case` also
compares gzipped with plain reading, so a damaged or truncated stream can never yield part of the data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import os
import pathlib
import re
import signal
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st

from xlt_jax.errors import DataFormatError, XltError

CASE_SECONDS = 20  # hard limit per case: a hang fails the test instead of stalling the run
HUGE_LINE_BYTES = 2 << 20
ENCODINGS = ("latin-1", "utf-16", "utf-16-le", "utf-16-be", "cp1252", "utf-8-sig")
BOM = "\ufeff".encode()
# Field values that look numeric to Python's int()/float() or str.isdigit() but are not ASCII integers.
TRICKY_FIELDS = ("²", "٣", "१", "1_0", " 1", "+1", "-1", "0x1", "1e3", "NaN", "inf", "1.5", "", "_", " ", "０")
FIELD_TEXT = st.one_of(st.text(max_size=12), st.sampled_from(TRICKY_FIELDS))


def profile() -> settings:
    """`fuzz` under `--hypothesis-profile=fuzz` (`make fuzz`), else the deterministic `xlt-sample` (conftest)."""
    name = settings.get_current_profile_name()
    return settings(settings.get_profile("xlt-sample" if name == "default" else name))


@contextlib.contextmanager
def time_limit(seconds: float = CASE_SECONDS) -> Iterator[None]:
    """Raise TimeoutError in the main thread after `seconds`: hypothesis' deadline cannot stop a hang."""

    def expire(signum, frame):
        raise TimeoutError(f"case did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------------------ mutations


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _edit_line(data: bytes, index: int, edit: Callable[[bytes], bytes]) -> bytes:
    lines = _lines(data)
    i = index % len(lines)
    lines[i] = edit(lines[i])
    return b"\n".join(lines)


def _edit_column(line: bytes, index: int, edit: Callable[[list[bytes], int], None]) -> bytes:
    columns = line.split(b"\t")
    edit(columns, index % len(columns))
    return b"\t".join(columns)


def _reencode(data: bytes, encoding: str) -> bytes:
    return data.decode("utf-8", "replace").encode(encoding, "replace")


def _huge_line(data: bytes, index: int) -> bytes:
    """Line `index` repeated (joined by its own text, no newline) to about HUGE_LINE_BYTES."""

    def grow(line: bytes) -> bytes:
        line = line or b"x"
        return line * max(1, HUGE_LINE_BYTES // len(line))

    return _edit_line(data, index, grow)


@st.composite
def mutation(draw: st.DrawFn) -> tuple[str, Callable[[bytes], bytes]]:
    """One named mutation of a file's (uncompressed) bytes."""
    kind = draw(st.sampled_from((
        "truncate", "flip", "drop_column", "extra_column", "replace_column", "replace_column", "replace_column",
        "encoding", "empty", "huge_line", "huge_run", "nul", "insert_bytes", "delete_line", "duplicate_line",
        "line_ends",
    )))  # field replacement is listed three times: most format rules are about field values
    at = draw(st.integers(0, 1 << 30))
    if kind == "truncate":
        return f"truncate@{at}", lambda d: d[: at % (len(d) + 1)]
    if kind == "flip":
        mask = draw(st.integers(1, 255))
        return f"flip@{at}^{mask}", lambda d: _flip(d, at, mask)
    if kind == "drop_column":
        col = draw(st.integers(0, 11))
        return f"drop_column@{at}:{col}", lambda d: _edit_line(d, at, lambda ln: _edit_column(ln, col, _pop))
    if kind in ("extra_column", "replace_column"):
        text = draw(FIELD_TEXT).encode("utf-8", "surrogatepass")
        col = draw(st.integers(0, 11))
        edit = (lambda cs, i: cs.insert(i, text)) if kind == "extra_column" else _setter(text)
        return f"{kind}@{at}:{col}={text!r}", lambda d: _edit_line(d, at, lambda ln: _edit_column(ln, col, edit))
    if kind == "encoding":
        encoding = draw(st.sampled_from(ENCODINGS))
        return f"encoding={encoding}", lambda d: _reencode(d, encoding)
    if kind == "empty":
        return "empty", lambda d: b""
    if kind == "huge_line":
        return f"huge_line@{at}", lambda d: _huge_line(d, at)
    if kind == "huge_run":  # a short run of bytes repeated: deep JSON nesting, 10^5-digit numbers, ...
        span = draw(st.integers(1, 4))
        times = draw(st.sampled_from((1000, 10_000, 200_000)))
        return f"huge_run@{at}:{span}x{times}", lambda d: _repeat_run(d, at, span, times)
    if kind == "nul":
        count = draw(st.integers(1, 4))
        return f"nul@{at}x{count}", lambda d: _insert(d, at, b"\x00" * count)
    if kind == "insert_bytes":
        blob = draw(st.binary(min_size=1, max_size=16))
        return f"insert@{at}={blob!r}", lambda d: _insert(d, at, blob)
    if kind == "delete_line":
        return f"delete_line@{at}", lambda d: _splice_line(d, at, 1, 0)
    if kind == "duplicate_line":
        return f"duplicate_line@{at}", lambda d: _splice_line(d, at, 0, 2)
    style = draw(st.sampled_from((b"\r\n", b"\r")))
    return f"line_ends={style!r}", lambda d: d.replace(b"\r\n", b"\n").replace(b"\n", style)


def _flip(data: bytes, at: int, mask: int) -> bytes:
    if not data:
        return data
    i = at % len(data)
    return data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]


def _repeat_run(data: bytes, at: int, span: int, times: int) -> bytes:
    i = at % (len(data) + 1)
    return data[:i] + (data[i : i + span] or b"[") * times + data[i:]


def _insert(data: bytes, at: int, blob: bytes) -> bytes:
    i = at % (len(data) + 1)
    return data[:i] + blob + data[i:]


def _pop(columns: list[bytes], i: int) -> None:
    columns.pop(i)


def _setter(text: bytes) -> Callable[[list[bytes], int], None]:
    def edit(columns: list[bytes], i: int) -> None:
        columns[i] = text

    return edit


def _splice_line(data: bytes, at: int, drop: int, copies: int) -> bytes:
    lines = _lines(data)
    i = at % len(lines)
    lines[i : i + 1] = [lines[i]] * copies if copies else lines[i + drop : i + 1]
    return b"\n".join(lines)


def mutations(max_size: int = 3) -> st.SearchStrategy[list[tuple[str, Callable[[bytes], bytes]]]]:
    return st.lists(mutation(), min_size=1, max_size=max_size)


def apply(data: bytes, steps: Sequence[tuple[str, Callable[[bytes], bytes]]]) -> bytes:
    for _, step in steps:
        data = step(data)
    return data


@st.composite
def gzip_damage(draw: st.DrawFn) -> tuple[str, Callable[[bytes], bytes]]:
    """Damage to a compressed stream: truncation, a flipped byte, trailing garbage, a second member."""
    kind = draw(st.sampled_from(("none", "truncate", "flip", "trailing_garbage", "second_member", "no_trailer")))
    at = draw(st.integers(0, 1 << 30))
    if kind == "truncate":
        return f"gz_truncate@{at}", lambda z: z[: at % len(z)]
    if kind == "flip":
        mask = draw(st.integers(1, 255))
        return f"gz_flip@{at}^{mask}", lambda z: _flip(z, at, mask)
    if kind == "trailing_garbage":
        blob = draw(st.binary(min_size=1, max_size=8))
        return f"gz_garbage={blob!r}", lambda z: z + blob
    if kind == "second_member":
        return "gz_second_member", lambda z: z + gzip.compress(b"extra\tline\n", mtime=0)
    if kind == "no_trailer":
        return "gz_no_trailer", lambda z: z[:-8]
    return "gz_intact", lambda z: z


# ------------------------------------------------------------------------------------------------ oracle


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a reader did with one file: its value, or the line and message of its error (path removed)."""

    value: Any = None
    line: int | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.message is None


def run_reader(read: Callable[..., Any], paths: Sequence[pathlib.Path], *, line_required: bool,
               key_words: Sequence[str] = ()) -> Outcome:
    """Call `read(*paths)` under the time limit; check that an error is an XltError naming one of `paths`.

    An error must give the line (`line_required`), or else name a key: one of `key_words` in its message.
    Any other exception type propagates and fails the test.
    """
    with time_limit():
        try:
            return Outcome(value=materialize(read(*paths)))
        except XltError as e:
            message = str(e)
            named = [os.fspath(p) for p in paths if os.fspath(p) in message]
            assert named, f"error names none of the files {[os.fspath(p) for p in paths]}: {message}"
            if isinstance(e, DataFormatError):
                assert e.path in named, f"error is about {e.path}, not one of the files: {message}"
            line = getattr(e, "line", None)
            if line is None:
                assert not line_required or any(k in message for k in key_words), f"no line or key: {message}"
            else:
                assert line >= 1, message
            for i, p in enumerate(paths):  # plain and gzipped copies must give the same message
                message = message.replace(os.fspath(p), f"<file {i}>")
            return Outcome(line=line, message=message)


def materialize(value: Any) -> Any:
    """Comparable plain data; generators read to the end (lazy readers must fail while consumed, not later)."""
    if isinstance(value, Iterator | list | tuple):
        return [materialize(v) for v in value]
    if dataclasses.is_dataclass(value):
        return {f.name: materialize(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value.tolist() if hasattr(value, "tolist") else value


def check_file_case(read: Callable[..., Any], data: bytes, suffix: str, damage: Callable[[bytes], bytes], *,
                    companions: Sequence[pathlib.Path] = (), line_required: bool = True,
                    key_words: Sequence[str] = (), agrees: Callable[[bytes, Any], None] | None = None) -> Outcome:
    """Read `data` stored plain, then gzipped (and damaged by `damage`); both must be clean.

    Intact gzip must read exactly like the plain file. A damaged stream must raise unless it still
    decompresses (e.g. a changed header byte, a valid second member): then it must read like the plain file
    holding what it decompresses to, so truncated or corrupt compression never passes as a shorter file.
    `read(path, *companions)` may take intact companion files (e.g. the other side of a Tatoeba pair);
    `agrees(content, value)` checks a successful parse against the bytes it came from.
    """

    def outcome(path: pathlib.Path) -> Outcome:
        return run_reader(read, [path, *companions], line_required=line_required, key_words=key_words)

    with tempfile.TemporaryDirectory() as tmp:
        plain = pathlib.Path(tmp) / f"damaged{suffix}"
        plain.write_bytes(data)
        plain_outcome = outcome(plain)
        compressed = gzip.compress(data, mtime=0)
        damaged = damage(compressed)
        packed = pathlib.Path(tmp) / f"damaged{suffix}.gz"
        packed.write_bytes(damaged)
        gz_outcome = outcome(packed)
        try:
            content = gzip.decompress(damaged)
        except (OSError, EOFError, zlib.error):  # not decompressible: the reader must have refused the file
            assert not gz_outcome.ok, "damaged gzip stream read without error"
            return plain_outcome
        if content != data:
            plain.write_bytes(content)
            plain_outcome = outcome(plain)
        assert gz_outcome == plain_outcome, f"gzip and plain reads differ:\n{gz_outcome}\n{plain_outcome}"
        if content.startswith(BOM) and not content.startswith(BOM * 2):  # a byte order mark is not text (a
            plain.write_bytes(content[len(BOM) :])  # second one is: U+FEFF, zero-width no-break space)
            unmarked = outcome(plain)
            same = unmarked == plain_outcome or not (unmarked.ok or plain_outcome.ok) and unmarked.line == 1
            assert same, f"a UTF-8 byte order mark changed what was read:\n{plain_outcome}\n{unmarked}"
    problem = never_valid(content)
    assert not (problem and plain_outcome.ok), f"a file with {problem} was read without error"
    if plain_outcome.ok and agrees is not None:
        agrees(content, plain_outcome.value)
    event("parsed" if plain_outcome.ok else f"error: {_gist(plain_outcome.message)}")
    return plain_outcome


def never_valid(content: bytes) -> str | None:
    """What makes a file invalid in every text format read here, or None."""
    if not content.strip():
        return "no content"
    if b"\x00" in content:
        return "a NUL byte"
    if re.search(rb"\r(?![\r\n]|\Z)", content):  # CRs ending a line (or the file) are line ends
        return "a carriage return inside a line"
    return None


def _gist(message: str) -> str:
    """The kind of an error message (its words, without quoted values or numbers), for statistics."""
    text = message.split(": ", 1)[-1]
    return re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", text)[:60]


def json_paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) into a JSON document, the root excluded."""
    out = []
    items = document.items() if isinstance(document, dict) else enumerate(document) if isinstance(
        document, list) else ()
    for key, value in items:
        out.append((*prefix, key))
        out.extend(json_paths(value, (*prefix, key)))
    return out


# Strings that are paths out of a directory, or no path at all.
HOSTILE_PATHS = ("../outside", "/etc/passwd", "ud/../../x", ".", "", "a\\b", "ud//x")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(HOSTILE_PATHS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def json_mutation(draw: st.DrawFn, document: Any) -> tuple[str, Any]:
    """A structural change to a JSON document: delete a key or element, or replace a value."""
    document = json.loads(json.dumps(document))
    paths = json_paths(document)
    path = draw(st.sampled_from(paths))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        del parent[path[-1]]
        return f"delete {path}", document
    value = draw(JSON_VALUES)
    parent[path[-1]] = value
    return f"set {path}={value!r}", document
