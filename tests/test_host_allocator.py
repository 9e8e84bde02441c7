"""xlt_jax.host_allocator: XLA:CPU's per-step temporaries stay in the heap instead of being faulted in anew."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import jax
import pytest

from xlt_jax import host_allocator
from xlt_jax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
BILINGUAL = REPO / "configs" / "pretrain" / "bilingual.py"

# A jitted function whose temporary (sin(x), a dot operand, 64 MiB) is one large block per call: the page
# faults of its steady-state calls show whether that block is mapped anew each time.
_PROBE = """
import resource, sys
from xlt_jax import host_allocator
applied = host_allocator.retain_freed_memory()
import jax, jax.numpy as jnp
f = jax.jit(lambda x, v: jnp.sin(x).T @ v)
x, v = jnp.ones((8192, 2048)), jnp.ones(8192)
for _ in range(30):  # under load the heap first grows to hold the few blocks an async free leaves live at once
    f(x, v).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    f(x, v).block_until_ready()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""
_TEMP_PAGES = 8192 * 2048 * 4 // 4096


def _probe(mode: str) -> tuple[str, float]:
    env = {**os.environ, host_allocator.ENV: mode, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=180, env=env,
                          cwd=REPO, check=True)  # fmt: skip
    applied, faults = proc.stdout.split()[-2:]
    return applied, float(faults)


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_retained_block_is_reused_where_glibc_maps_it_anew_each_call():
    retained, retained_faults = _probe("retain")
    system, system_faults = _probe("system")
    assert (retained, system) == ("True", "False")
    assert system_faults > 0.5 * _TEMP_PAGES  # glibc's defaults: the 64 MiB block is faulted in on every call
    assert retained_faults < 0.05 * _TEMP_PAGES


_HUGE = """
import ctypes
from xlt_jax import host_allocator
assert host_allocator.retain_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes, libc.sbrk.restype, libc.sbrk.argtypes = [ctypes.c_void_p], ctypes.c_void_p, [ctypes.c_long]
start = libc.sbrk(0)
block = libc.malloc(5 << 29)  # 2.5 GiB: more than a C int of bytes (roberta8's 8 x 512 step has ~3.5 GiB)
grown = libc.sbrk(0)
libc.free(block)
print(grown - start, grown - libc.sbrk(0))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_a_block_larger_than_2_gib_stays_in_the_heap_after_free():
    """Address space only (no page is touched): the block extends the heap and freeing it does not shrink it."""
    proc = subprocess.run([sys.executable, "-c", _HUGE], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, host_allocator.ENV: "retain"}, check=True)  # fmt: skip
    grown, shrunk = map(int, proc.stdout.split())
    assert grown >= 5 << 29 and shrunk == 0


def test_an_unknown_mode_names_the_variable(monkeypatch):
    monkeypatch.setenv(host_allocator.ENV, "jemalloc")
    with pytest.raises(ConfigError, match=r"XLT_HOST_ALLOCATOR='jemalloc'.*retain.*system"):
        host_allocator.retain_freed_memory()


def test_too_late_once_jax_has_its_backends(monkeypatch, caplog):
    """In this process JAX's CPU client (and its threads) already exist: nothing is applied, and it says so."""
    jax.devices()
    monkeypatch.setattr(host_allocator, "_applied", False)
    monkeypatch.delenv(host_allocator.ENV, raising=False)
    assert host_allocator.retain_freed_memory() is False
    assert host_allocator.in_effect() == "system"
    assert "already exist" in caplog.text


def test_the_binaries_apply_it_before_their_body_runs(tmp_path):
    body = ("from xlt_jax import cli, host_allocator\n"
            "cli.define_flags('config')\n"
            "cli.run(lambda config, workdir: print('ALLOCATOR', host_allocator.in_effect()))\n")  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", body, f"--config={BILINGUAL}:smoke", f"--workdir={tmp_path}"],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "ALLOCATOR retain" in proc.stdout
