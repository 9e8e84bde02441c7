"""The platform a model is traced for, which the models' automatic choices follow.

Three choices are made per backend when the step is traced: the attention core (`model.attention_impl`
"auto"), layers per scanned iteration (`model.scan_unroll` 0) and whether dropout masks are written out
before use (`dropout.keep_bits`). Tracing normally happens for the backend that runs the program,
`jax.default_backend()`; `bench tpu` traces on this CPU host for a TPU and says so with `tracing_for`, so its
plans are the programs a TPU would run.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import jax

_TARGET: contextvars.ContextVar[str | None] = contextvars.ContextVar("xlt_jax_target_platform", default=None)


def traced_platform() -> str:
    """"cpu", "tpu", "gpu", …: the platform being traced for."""
    return _TARGET.get() or jax.default_backend()


@contextlib.contextmanager
def tracing_for(platform: str) -> Iterator[None]:
    """Trace for `platform` inside this block (only tracing reads it: compile or lower the step here)."""
    token = _TARGET.set(platform)
    try:
        yield
    finally:
        _TARGET.reset(token)
