"""Two local processes × 4 CPU devices (jax.distributed over 127.0.0.1) train like one 8-device process.

Each process runs the real binary, feeds only its half of every global batch and the two halves form one
global array; the first steps' losses must match an in-process 8-device run of the same config.
"""

from __future__ import annotations

import os
import pathlib
import re
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from test_train_loop import read_scalars

from xlt_jax.errors import ConfigError
from xlt_jax.training import distributed, loop

REPO = pathlib.Path(__file__).resolve().parents[1]
BILINGUAL = REPO / "configs" / "pretrain" / "bilingual.py"
STEPS = 3
# The Leipzig sample (real English, 1000 sentences) instead of the whole `lang:en` corpus: each of the three
# runs builds its corpus, and reading all English text of the data directory takes seconds.
OVERRIDES = {"train.steps": STEPS, "train.log_every": 1, "train.eval_every": 0, "train.checkpoint_every": STEPS,
             "corpus.source": "text:raw/lingua_leipzig_sample/{lang}.sentences.txt.gz"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reference_config(cache: pathlib.Path):
    config = runpy.run_path(str(BILINGUAL))["get_config"]("smoke")
    config.data.cache_dir = str(cache)
    for key, value in OVERRIDES.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def test_two_processes_match_one_process(data_dir, tmp_path):
    cache = tmp_path / "shards"
    port = free_port()
    workdir = tmp_path / "two_hosts"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    overrides = [f"--config.{k}={v}" for k, v in OVERRIDES.items()] + [f"--config.data.cache_dir={cache}"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "xlt_jax.train", f"--config={BILINGUAL}:smoke", f"--workdir={workdir}",
             *overrides, f"--config.distributed.coordinator_address=127.0.0.1:{port}",
             "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    try:
        single = loop.run(reference_config(cache), tmp_path / "one_host")  # meanwhile, the same in-process
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"process {i} failed:\n{out[-4000:]}"
    assert "process 1 of 2, 4 local / 8 global devices" in outputs[1]

    # Both hosts wrote their own iterator position into the one checkpoint.
    data_dir_ckpt = workdir / loop.CHECKPOINT_DIR / str(STEPS) / "data"
    written = sorted(p.name for p in data_dir_ckpt.iterdir() if p.name.startswith("process_"))
    assert written == ["process_0-of-2.json", "process_1-of-2.json"]

    two_hosts = read_scalars(workdir)["train/loss"]
    np.testing.assert_allclose(
        [two_hosts[s] for s in range(1, STEPS + 1)], [h["loss"] for h in single.history], rtol=1e-5
    )


def dist_config(**overrides):
    config = runpy.run_path(str(BILINGUAL))["get_config"]("smoke").distributed
    config.update(overrides)
    return config


def test_distributed_settings_come_from_config_then_environment(monkeypatch):
    for name in (distributed.ENV_ADDRESS, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID,
                 distributed.ENV_INITIALIZE):
        monkeypatch.delenv(name, raising=False)
    assert distributed.settings(dist_config()) is None  # single process: nothing to initialise
    # tpu/launch.sh's switch: auto-detection (TPU pod slices) for every config in the process.
    monkeypatch.setenv(distributed.ENV_INITIALIZE, "1")
    assert distributed.settings(dist_config()) == {"coordinator_address": None, "num_processes": None,
                                                   "process_id": None}
    monkeypatch.setenv(distributed.ENV_INITIALIZE, "0")
    assert distributed.settings(dist_config()) is None
    monkeypatch.setenv(distributed.ENV_ADDRESS, "10.0.0.1:1234")
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "4")
    monkeypatch.setenv(distributed.ENV_PROCESS_ID, "3")
    assert distributed.settings(dist_config()) == {
        "coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
    got = distributed.settings(dist_config(coordinator_address="127.0.0.1:9", process_id=0))
    assert got == {"coordinator_address": "127.0.0.1:9", "num_processes": 4, "process_id": 0}
    with pytest.raises(ConfigError, match="process_id=7"):
        distributed.settings(dist_config(process_id=7))
    monkeypatch.setenv(distributed.ENV_PROCESS_ID, "x")
    with pytest.raises(ConfigError, match="JAX_PROCESS_ID"):
        distributed.settings(dist_config())


# -- faults: preemption and a dead host ------------------------------------------------------------------------


class Host:
    """One process of a two-process run; its output is collected by a thread (pipes never fill up)."""

    def __init__(self, index: int, workdir: pathlib.Path, cache: pathlib.Path, port: int, overrides: dict):
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
        args = [f"--config.{k}={v}" for k, v in {**OVERRIDES, **overrides}.items()]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xlt_jax.train", f"--config={BILINGUAL}:smoke", f"--workdir={workdir}", *args,
             f"--config.data.cache_dir={cache}", f"--config.distributed.coordinator_address=127.0.0.1:{port}",
             "--config.distributed.num_processes=2", f"--config.distributed.process_id={index}"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self.ended: float | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
        self.proc.wait()
        self.ended = time.monotonic()

    def wait_for(self, text: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None or any(text in line for line in self.lines), self.output[-4000:]
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.output[-4000:]}"
            time.sleep(0.05)

    def finish(self, timeout: float = 240) -> int:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(timeout=10)
        return self.proc.returncode

    @property
    def output(self) -> str:
        return "".join(self.lines)


def two_hosts(workdir: pathlib.Path, cache: pathlib.Path, overrides: dict) -> list[Host]:
    port = free_port()
    return [Host(i, workdir, cache, port, overrides) for i in range(2)]


# Two processes share two slow cores here (~0.4 s/step with gloo): few steps, one compilation cache.
FAULT_OVERRIDES = {"train.steps": 12, "train.checkpoint_every": 4, "train.log_every": 4,
                   "distributed.heartbeat_timeout_seconds": 10}


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("jax_cache")


def fault_overrides(jax_cache: pathlib.Path) -> dict:
    return {**FAULT_OVERRIDES, "train.compilation_cache": jax_cache}


def committed(workdir: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / loop.CHECKPOINT_DIR).iterdir() if p.name.isdigit())


def test_two_hosts_preempted_then_one_killed_resume_each_time(data_dir, jax_cache, tmp_path):
    """One run, three starts of both hosts: (1) SIGTERM to process 1 only: both save the same step and exit
    0; (2) the rerun resumes there, then process 1 is SIGKILLed: process 0 aborts within the heartbeat
    timeout instead of hanging; (3) the rerun resumes from the last committed step and finishes."""
    cache, workdir = tmp_path / "shards", tmp_path / "run"
    total, every = FAULT_OVERRIDES["train.steps"], FAULT_OVERRIDES["train.checkpoint_every"]
    timeout = FAULT_OVERRIDES["distributed.heartbeat_timeout_seconds"]

    hosts = two_hosts(workdir, cache, fault_overrides(jax_cache))
    hosts[1].wait_for("compiled the train step")
    hosts[1].proc.send_signal(signal.SIGTERM)
    statuses = [h.finish() for h in hosts]
    assert statuses == [0, 0], [h.output[-3000:] for h in hosts]
    saved = [re.findall(r"preempted: pretraining saved step (\d+)", h.output) for h in hosts]
    assert saved[0] and saved[0][-1:] == saved[1][-1:], saved  # every host agreed on the step
    step = int(saved[0][-1])
    assert step < total and committed(workdir)[-1] == step
    written = sorted(p.name for p in (workdir / loop.CHECKPOINT_DIR / str(step) / "data").glob("process_*"))
    assert written == ["process_0-of-2.json", "process_1-of-2.json"]  # one complete two-host checkpoint
    print(f"two hosts, SIGTERM to process 1: both saved step {step} and exited {statuses}")

    hosts = two_hosts(workdir, cache, fault_overrides(jax_cache))
    target = (step // every + 1) * every
    deadline = time.monotonic() + 240
    while target not in committed(workdir):  # committed by both hosts: something newer to resume from
        assert hosts[0].proc.poll() is None and time.monotonic() < deadline, hosts[0].output[-4000:]
        time.sleep(0.02)
    killed_at = time.monotonic()
    hosts[1].proc.send_signal(signal.SIGKILL)
    status = hosts[0].finish(timeout=120)
    detected = hosts[0].ended - killed_at
    hosts[1].finish()
    assert all(f"resumed from {workdir / loop.CHECKPOINT_DIR} at step {step}" in h.output for h in hosts)
    assert status != 0 and "Terminating process because the JAX distributed service detected fatal errors" in (
        hosts[0].output), hosts[0].output[-4000:]
    assert detected < timeout + 20, detected
    print(f"dead host detected by the survivor after {detected:.1f} s (heartbeat timeout {timeout} s); exit {status}")

    last = committed(workdir)[-1]
    hosts = two_hosts(workdir, cache, fault_overrides(jax_cache))
    assert [h.finish() for h in hosts] == [0, 0], [h.output[-3000:] for h in hosts]
    assert all(f"at step {last}" in h.output for h in hosts) and committed(workdir)[-1] == total
