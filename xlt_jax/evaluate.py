"""Evaluation binary.

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


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "score":
        score_main(argv[1:])
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
