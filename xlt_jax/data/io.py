"""Line-oriented reading of (gzipped) UTF-8 files, with errors that name file and line."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator

from xlt_jax.errors import DataFormatError


def open_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield `(line_number, text)` (1-based, line end incl. `\\r` stripped) of a text or `.gz` file.

    A truncated or corrupt gzip stream and undecodable bytes raise `DataFormatError` naming the file
    and the line where reading failed.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataFormatError(path, None, "file does not exist")
    opener = gzip.open if path.endswith(".gz") else open
    lineno = 0
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataFormatError(path, lineno, f"undecodable bytes (not UTF-8): {e.reason}") from e
                yield lineno, text.rstrip("\n").rstrip("\r")
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DataFormatError(path, lineno + 1, f"corrupt or truncated file: {e}") from e


def read_text(path: str | os.PathLike) -> str:
    """Whole file as one string (gzip-aware), with the same error reporting as `open_lines`."""
    return "\n".join(line for _, line in open_lines(path))
