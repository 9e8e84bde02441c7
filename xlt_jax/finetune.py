r"""Fine-tuning binary: `python -m xlt_jax.finetune --config configs/finetune/TASK.py:ARGS --workdir DIR`.

Starts from a pretraining WORKDIR (`pretrained=PATH` in the config argument), adds the task head and
trains with the paper's recipe; DIR receives the fine-tuned checkpoint, `config.json`, `finetune.json`
and the tokenizer (what `python -m xlt_jax.evaluate` reads). Overrides: `--config.train.epochs=3`; the
config is locked, so a key that does not exist is an error before anything runs. Rerunning the same command
resumes from DIR's last checkpoint (and does nothing once training is complete).
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

# The pretraining binary's --config / --workdir flags and their error reporting (unknown keys, ConfigError).
from xlt_jax import train as cli
from xlt_jax.errors import XltError


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.get_absl_handler().addFilter(cli._QuietLibraries())
    from xlt_jax.finetuning import trainer  # after flag parsing: keeps `--help` and flag errors fast
    from xlt_jax.training import loop

    try:
        trainer.run(flags.FLAGS.config, flags.FLAGS.workdir)
    except (XltError, loop.TrainingDiverged) as e:
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(f"error: {e}")


def run_main() -> None:
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run_main()
