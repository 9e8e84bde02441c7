"""Where a figure came from: machine, date, code commit and command, recorded next to every result.

Absolute speeds hold for one machine at one moment (this project's machines change CPU model between
sessions), so every benchmark line and run summary carries them; the README's generated sections print them.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


def machine() -> str:
    """One line: CPU model, cores, memory, e.g. 'AMD EPYC, 2 cores, 24 GiB'."""
    return f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib():.0f} GiB"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def command() -> str:
    """The command line of this process, as a user would type it (`python -m module ...` when run so)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = spec.name.removesuffix(".__main__") if spec is not None and spec.name else ""
    head = ["python", "-m", name] if name else ["python", *sys.argv[:1]]
    return shlex.join([*head, *sys.argv[1:]])


def record(started: float | None = None, finished: float | None = None) -> dict[str, object]:
    """machine, date, commit, command and host allocator (`xlt_jax.host_allocator`: it changed CPU step times
    by 12-46% here), and wall seconds when both times are given."""
    from xlt_jax import host_allocator
    from xlt_jax.results import code_commit

    out: dict[str, object] = {"machine": machine(), "date": now(), "commit": code_commit(), "command": command(),
                              "host_allocator": host_allocator.in_effect()}
    if started is not None and finished is not None:
        out["wall_s"] = round(finished - started, 1)
    return out
