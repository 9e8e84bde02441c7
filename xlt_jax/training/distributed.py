"""Multi-process start-up: `jax.distributed.initialize` when the config or the environment asks for it.

Sources, in order of precedence: `config.distributed.{coordinator_address, num_processes, process_id}`, then
the environment (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`). With
`config.distributed.initialize=True` and no address, JAX auto-detects the cluster (TPU pod slices, SLURM);
`XLT_DISTRIBUTED_INITIALIZE=1` in the environment does the same for every config of a process, so
`tpu/launch.sh` can start any binary (the protocol runner's nested configs included) on all workers.
Must run before anything touches the devices.

A host that dies (killed, VM lost) stops sending heartbeats; after `distributed.heartbeat_timeout_seconds`
the coordination service declares it dead and every other host aborts with "Terminating process because
the JAX distributed service detected fatal errors" instead of waiting forever in a collective (a dead
coordinator, process 0, is noticed at the next failed heartbeat, within a second or so). Rerunning all
hosts then resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
import os

import jax
import ml_collections

from xlt_jax.errors import ConfigError

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_INITIALIZE = "XLT_DISTRIBUTED_INITIALIZE"  # 1/true: as config.distributed.initialize=True


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as e:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from e


def settings(dist_config: ml_collections.ConfigDict) -> dict | None:
    """Keyword arguments for `jax.distributed.initialize`, or None for a single-process run."""
    address = dist_config.coordinator_address or os.environ.get(ENV_ADDRESS) or None
    num = dist_config.num_processes if dist_config.num_processes > 0 else _env_int(ENV_NUM_PROCESSES)
    pid = dist_config.process_id if dist_config.process_id >= 0 else _env_int(ENV_PROCESS_ID)
    initialize = dist_config.initialize or os.environ.get(ENV_INITIALIZE, "").lower() in ("1", "true")
    if address is None and not initialize:
        if num is not None and num > 1:
            raise ConfigError(
                f"distributed.num_processes={num} but no coordinator address: set distributed.coordinator_address "
                f"or {ENV_ADDRESS}"
            )
        return None
    if address is not None and (num is None) != (pid is None):
        raise ConfigError("distributed: give both num_processes and process_id, or neither (auto-detection)")
    if num is not None and pid is not None and not 0 <= pid < num:
        raise ConfigError(f"distributed.process_id={pid} is not in [0, num_processes={num})")
    return {"coordinator_address": address, "num_processes": num, "process_id": pid}


def maybe_initialize(dist_config: ml_collections.ConfigDict) -> bool:
    """Initialise the JAX distributed runtime if asked (once per process); True if it is running."""
    if jax.distributed.is_initialized():
        return True
    kwargs = settings(dist_config)
    if kwargs is None:
        return False
    heartbeat = int(dist_config.heartbeat_timeout_seconds)
    if heartbeat < 1:
        raise ConfigError(f"distributed.heartbeat_timeout_seconds={heartbeat} must be >= 1")
    jax.distributed.initialize(**kwargs, heartbeat_timeout_seconds=heartbeat)
    logging.info(
        "jax.distributed: process %d of %d, %d local / %d global devices; a host silent for %d s is declared "
        "dead and the others abort",
        jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count(), heartbeat,
    )
    return True
