"""Where datasets live: `$XLT_DATA_DIR` (default `./data`), laid out like `shared/data`."""

from __future__ import annotations

import os
import pathlib

DATA_DIR_ENV = "XLT_DATA_DIR"
MIRROR_ENV = "XLT_DATA_MIRROR"


def data_dir() -> pathlib.Path:
    """The data directory; relative paths resolve against the working directory."""
    return pathlib.Path(os.environ.get(DATA_DIR_ENV, "data")).resolve()


def data_path(relative: str | os.PathLike) -> pathlib.Path:
    """Absolute path of a file of the data directory, e.g. `ud/en_ewt/dev.conllu.gz`."""
    return data_dir() / relative


def mirror_dir() -> pathlib.Path | None:
    """Local mirror directory to copy datasets from, if set (an HTTP mirror URL gives None here)."""
    value = os.environ.get(MIRROR_ENV)
    if not value or "://" in value:
        return None
    return pathlib.Path(value).resolve()
