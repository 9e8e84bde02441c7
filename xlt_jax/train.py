r"""Pretraining binary: `python -m xlt_jax.train --config configs/pretrain/X.py:ARGS --workdir DIR`.

Overrides: `--config.train.steps=1000 --config.mesh.shape='(2,4,1)'`. The config is locked, so a key that
does not exist is an error before anything runs. Rerunning the same command resumes from DIR's last
checkpoint. Multi-host: set `--config.distributed.coordinator_address=HOST:PORT` with
`num_processes`/`process_id` (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) on every host.
"""

from __future__ import annotations

import ml_collections
from absl import flags

from xlt_jax import cli

cli.define_flags("Pretraining config file (configs/pretrain/*.py:ARGS).")
flags.adopt_module_key_flags(cli)  # listed by --help


def pretrain(config: ml_collections.ConfigDict, workdir: str) -> None:
    from xlt_jax.training import loop

    loop.run(config, workdir)


def run_main() -> None:
    cli.run(pretrain)


if __name__ == "__main__":
    run_main()
