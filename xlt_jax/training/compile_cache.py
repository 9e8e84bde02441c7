"""JAX's persistent compilation cache for the binaries: a rerun (or a same-shaped model) skips XLA compiles.

`setting`: "auto" = `$XLT_CACHE_DIR/jax` (default `~/.cache/xlt_jax/jax`), a path, or "" for off. A process
that already has a cache directory keeps it; the previous setting is restored on exit, so library callers
and tests are unaffected.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator


def default_dir() -> pathlib.Path:
    root = os.environ.get("XLT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "xlt_jax")
    return pathlib.Path(root) / "jax"


@contextlib.contextmanager
def persistent_cache(setting: str, auto_dir: os.PathLike | None = None) -> Iterator[os.PathLike | None]:
    """Use the cache `setting` names inside the block; yields its directory (None when off or inherited)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    if not setting or jax.config.jax_compilation_cache_dir:
        yield None
        return
    path = (auto_dir or default_dir()) if setting == "auto" else pathlib.Path(setting)
    previous = (jax.config.jax_persistent_cache_min_compile_time_secs,)
    jax.config.update("jax_compilation_cache_dir", os.fspath(path))
    # Cache every compile that took more than a tenth of a second (the default, 1 s, skips the eval steps).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    cc.reset_cache()
    try:
        yield path
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[0])
        cc.reset_cache()
