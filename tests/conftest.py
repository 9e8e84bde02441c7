"""Shared test setup: 8 fake CPU devices and the real data directory."""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from xlt_jax.data import paths  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The filled data directory (`make data`); tests skip nothing: a missing directory is an error."""
    root = paths.data_dir()
    if not (root / "ud" / "en_ewt" / "dev.conllu.gz").exists():
        raise RuntimeError(
            f"data directory {root} is not filled; run `make data` (or python -m xlt_jax.data.download)"
        )
    return root
