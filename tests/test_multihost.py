"""Two local processes × 4 CPU devices (jax.distributed over 127.0.0.1) train like one 8-device process.

Each process runs the real binary, feeds only its half of every global batch and the two halves form one
global array; the first steps' losses must match an in-process 8-device run of the same config.
"""

from __future__ import annotations

import os
import pathlib
import runpy
import socket
import subprocess
import sys

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
