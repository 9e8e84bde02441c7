r"""Fine-tuning binary: `python -m xlt_jax.finetune --config configs/finetune/TASK.py:ARGS --workdir DIR`.

Starts from a pretraining WORKDIR (`pretrained=PATH` in the config argument), adds the task head and
trains with the paper's recipe; DIR receives the fine-tuned checkpoint, `config.json`, `finetune.json`
and the tokenizer (what `python -m xlt_jax.evaluate` reads). Overrides: `--config.train.epochs=3`; the
config is locked, so a key that does not exist is an error before anything runs. Rerunning the same command
resumes from DIR's last checkpoint (and does nothing once training is complete).
"""

from __future__ import annotations

import ml_collections
from absl import flags

from xlt_jax import cli

cli.define_flags("Fine-tuning config file (configs/finetune/TASK.py:ARGS).")
flags.adopt_module_key_flags(cli)  # listed by --help


def finetune(config: ml_collections.ConfigDict, workdir: str) -> None:
    from xlt_jax.finetuning import trainer

    trainer.run(config, workdir)


def run_main() -> None:
    cli.run(finetune)


if __name__ == "__main__":
    run_main()
