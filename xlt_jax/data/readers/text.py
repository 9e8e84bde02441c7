"""Plain text, one sentence or document per line (e.g. `raw/lingua_leipzig_sample/*.txt.gz`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from xlt_jax.data.io import open_lines


def read_lines(path: str | os.PathLike) -> Iterator[str]:
    """Yield the non-blank lines of a text or `.gz` file (line ends incl. `\\r` stripped).

    Whitespace-only lines are skipped too: they carry no text to tokenize or pretrain on.
    """
    for _, line in open_lines(path):
        if line.strip():
            yield line
