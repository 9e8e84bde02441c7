"""The Makefile's install stages: `make demo` installs only the core packages (its ≤ 15 min include set-up),
the test, bench and lint targets every extra. Read from `make -n -B` (commands printed, none run)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORE_INSTALL = "pip install -q -e ."
EXTRAS_INSTALL = "pip install -q -e '.["

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned_commands(target: str) -> list[str]:
    out = subprocess.run(
        ["make", "-n", "-B", target, "VENV=/nonexistent/venv"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def installs(commands: list[str], what: str) -> bool:
    return any(line.rstrip().endswith(what) if what == CORE_INSTALL else what in line for line in commands)


@pytest.mark.parametrize("target", ["demo", "replicate"])
def test_demo_and_replicate_install_only_the_core_packages(target):
    commands = planned_commands(target)
    assert installs(commands, CORE_INSTALL), commands
    assert not installs(commands, EXTRAS_INSTALL), commands
    assert any(f"xlt_jax.{'demo' if target == 'demo' else 'experiments.grid'}" in line for line in commands)


@pytest.mark.parametrize("target", ["test", "bench", "lint"])
def test_tests_bench_and_lint_install_every_extra(target):
    commands = planned_commands(target)
    extras = [line for line in commands if EXTRAS_INSTALL in line]
    assert extras and all(name in extras[0] for name in ("test", "hf", "tpu", "tfds", "parse")), commands
