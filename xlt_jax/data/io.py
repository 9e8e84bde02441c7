"""Line-oriented reading of (gzipped) UTF-8 files, with errors that name file and line; atomic file writes."""

from __future__ import annotations

import gzip
import io
import os
import pathlib
import secrets
import zlib
from collections.abc import Iterator

from xlt_jax.errors import DataFormatError

_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, OSError)
_BOM = "\ufeff"


def _open_binary(path: str, buffered: bool) -> io.BufferedIOBase:
    if not path.endswith(".gz"):
        return open(path, "rb")  # noqa: SIM115
    # A large BufferedReader around GzipFile makes line iteration ~3x faster than GzipFile's readline.
    raw = gzip.open(path, "rb")  # noqa: SIM115
    return io.BufferedReader(raw, buffer_size=1 << 20) if buffered else raw


def _first_unreadable_line(path: str) -> int:
    """Re-read without read-ahead to find the line at which a corrupt stream breaks (error path only)."""
    complete = 0
    try:
        with _open_binary(path, buffered=False) as f:
            for _ in f:
                complete += 1
    except _GZIP_ERRORS:
        pass
    return complete + 1


def open_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield `(line_number, text)` (1-based, line end incl. `\\r` and a UTF-8 byte order mark stripped) of a
    text or `.gz` file.

    A truncated or corrupt gzip stream, undecodable bytes, a NUL byte (binary data, UTF-16) and a carriage
    return inside a line (CR line ends) raise `DataFormatError` naming the file and the line where reading
    failed; so does a file without any text, since no dataset file is empty and an empty one is a failed copy.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataFormatError(path, None, "file does not exist")
    has_text = False
    try:
        with _open_binary(path, buffered=True) as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8").rstrip("\n").rstrip("\r")
                except UnicodeDecodeError as e:
                    raise DataFormatError(path, lineno, f"undecodable bytes (not UTF-8): {e.reason}") from e
                if lineno == 1 and text.startswith(_BOM):  # a byte order mark is no part of the text
                    text = text[len(_BOM) :]
                if "\0" in text or "\r" in text:
                    raise _control_character(path, lineno, text)
                if not has_text and text.strip():
                    has_text = True
                yield lineno, text
    except _GZIP_ERRORS as e:
        raise DataFormatError(path, _first_unreadable_line(path), f"corrupt or truncated file: {e}") from e
    if not has_text:
        raise DataFormatError(path, 1, "file is empty (no line has text)")


def _control_character(path: str, lineno: int, text: str) -> DataFormatError:
    if "\0" in text:
        return DataFormatError(path, lineno, "NUL byte: binary data, or text not in UTF-8 (e.g. UTF-16)")
    return DataFormatError(path, lineno, "carriage return inside the line (a file with CR line ends?)")


def read_text(path: str | os.PathLike) -> str:
    """Whole file as one string (gzip-aware), with the same error reporting as `open_lines`."""
    return "\n".join(line for _, line in open_lines(path))


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file next to `path`, fsync, then rename: readers see the old or the new file."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, unlike mkstemp's 0o600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
