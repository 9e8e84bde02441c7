r"""Evaluation binary.

  python -m xlt_jax.evaluate --config configs/evaluate.py:ARGS --workdir DIR
      Runs a fine-tuned model (or, for Tatoeba, a pretrained one) on the configured targets and appends
      one row per (target, metric) to DIR/results.jsonl (see xlt_jax/finetuning/evaluation.py).

  python -m xlt_jax.evaluate score --task TASK --predictions FILE --labels FILE [--lang LANG]
      Scores a prediction file in XTREME's format; the last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys

from xlt_jax.metrics.xtreme import TASKS, score_files


def score_main(argv: list[str]) -> dict[str, float | str]:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.evaluate score")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--lang", default=None, help="language code (needed for mlqa)")
    args = parser.parse_args(argv)
    result = score_files(args.task, args.predictions, args.labels, args.lang)
    for name, value in result.items():
        print(f"{name}: {value:.2f}")
    row = {"task": args.task, "lang": args.lang, **result}
    print(json.dumps(row))
    return row


def evaluate_main(argv: list[str]) -> None:
    """The config-driven evaluation; prints the appended result rows as JSON lines."""
    from absl import flags

    from xlt_jax import cli

    cli.define_flags(
        "Evaluation config file (configs/evaluate.py:ARGS).",
        "Directory whose results.jsonl receives one row per (target, metric).",
    )
    flags.adopt_module_key_flags(cli)  # listed by --help

    def evaluate(config, workdir: str) -> None:
        from xlt_jax.finetuning import evaluation

        for row in evaluation.run(config, workdir):
            print(row.to_json())

    cli.run(evaluate, argv=[sys.argv[0], *argv])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "score":
        score_main(argv[1:])
        return
    if not argv:
        sys.exit(__doc__)
    evaluate_main(argv)


if __name__ == "__main__":
    main()
