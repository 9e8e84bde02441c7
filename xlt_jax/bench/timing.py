"""Wall-clock timing shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def timed_calls(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls of `fn` (which must block until its result is ready)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times
