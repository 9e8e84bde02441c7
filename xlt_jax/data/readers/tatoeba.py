"""LASER Tatoeba sentence pairs: two files where line i of one translates line i of the other."""

from __future__ import annotations

import os

from xlt_jax.data.io import open_lines
from xlt_jax.errors import DataFormatError


def read_tatoeba(src_path: str | os.PathLike, eng_path: str | os.PathLike) -> list[tuple[str, str]]:
    """Aligned `(source sentence, English sentence)` pairs, in file order.

    Alignment is by line number only, so unequal line counts mean the files do not belong together:
    that is an error naming both files and the first line of the longer one without a partner.
    Empty lines are kept (dropping them would shift the alignment).
    """
    src = [line for _, line in open_lines(src_path)]
    eng = [line for _, line in open_lines(eng_path)]
    if len(src) != len(eng):
        (longer, n_long), (shorter, n_short) = sorted(
            [(os.fspath(src_path), len(src)), (os.fspath(eng_path), len(eng))], key=lambda item: -item[1]
        )
        raise DataFormatError(
            longer,
            n_short + 1,
            f"files are not line-aligned: {longer} has {n_long} lines but {shorter} has {n_short}",
        )
    return list(zip(src, eng, strict=True))
