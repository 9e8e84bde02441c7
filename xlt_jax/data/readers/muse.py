"""MUSE bilingual dictionaries in the hunalign packaging (`dictionaries/muse_full/<src>-<tgt>.dict`)."""

from __future__ import annotations

import os

from xlt_jax.data.io import open_lines
from xlt_jax.errors import DataFormatError

SEPARATOR = " @ "


def read_muse(path: str | os.PathLike) -> list[tuple[str, str]]:
    """`(source word, target word)` pairs in file order; a source word may appear on several lines.

    Quirk: hunalign lines are `<target> @ <source>`, i.e. the REVERSE of the file name's `<src>-<tgt>`
    order (`en-hi.dict` has `और @ and`); we swap them back. A line without exactly one ` @ ` or with an
    empty word is an error naming file and line.
    """
    pairs = []
    for lineno, line in open_lines(path):
        parts = line.split(SEPARATOR)
        if len(parts) != 2:
            raise DataFormatError(
                path, lineno, f"expected '<target>{SEPARATOR}<source>' with one separator, got {line!r}"
            )
        target, source = parts
        if not target.strip() or not source.strip():
            raise DataFormatError(path, lineno, f"empty word in {line!r}")
        pairs.append((source, target))
    return pairs
