r"""Alignment analysis binary.

  python -m xlt_jax.align --config configs/align.py:pretrained=RUN --workdir DIR
      Nearest-neighbour alignment of the original and transliterated token embeddings of a pretrained model,
      without and with an orthogonal Procrustes map (REFERENCE_SPEC §6), and per layer the retrieval accuracy
      and linear CKA between held-out sentences and their derived versions; one row per figure is appended
      to DIR/results.jsonl and printed as a JSON line.

  python -m xlt_jax.align correlate RESULTS.jsonl [...] --task nli [--alignment align_nn_identity] [--out DIR]
      Spearman correlation of the alignment with Δ(BZ−BS) over the derived languages the result files hold
      (align rows plus protocol rows); prints a markdown table, then one JSON line; --out also writes the
      table and a scatter plot there.

  python -m xlt_jax.align overlap A B --workdir DIR [--tokenizer TOK] [--max-sentences N] [--vocab-size V]
      Sub-word overlap of two corpora, A and B each LANG or LANG:TRANSFORM (`en en:translit+inv`, `en fr`):
      type overlap |E1∩E2|/|E1∪E2| and token overlap in %, two rows in DIR/results.jsonl, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys


def align_main(argv: list[str]) -> None:
    from absl import flags

    from xlt_jax import cli

    cli.define_flags(
        "Alignment config file (configs/align.py:ARGS).",
        "Directory whose results.jsonl receives the rows; it also keeps the token-pair split for reruns.",
    )
    flags.adopt_module_key_flags(cli)  # listed by --help

    def align(config, workdir: str) -> None:
        from xlt_jax.analysis import runner

        for row in runner.run(config, workdir):
            print(row.to_json())

    cli.run(align, argv=[sys.argv[0], *argv])


def correlate_main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.align correlate")
    parser.add_argument("results", nargs="+", help="results.jsonl files (align rows and protocol rows)")
    parser.add_argument("--task", required=True, help="protocol task whose Δ(BZ−BS) is correlated (nli, pos, ...)")
    parser.add_argument("--alignment", default="align_nn_identity",
                        help="align row metric: align_nn_identity, align_nn_procrustes, contextual_cka_l<k>, ...")
    parser.add_argument("--out", default=None, help="directory for correlation_<task>.md and .png")
    args = parser.parse_args(argv)

    from xlt_jax import results, storage
    from xlt_jax.analysis import correlation
    from xlt_jax.errors import XltError
    from xlt_jax.experiments import report

    try:
        rows = [row for path in args.results for row in results.read_rows(path)]
        found = correlation.correlate(rows, args.task, args.alignment)
    except XltError as e:
        sys.exit(f"error: {e}")
    table = "\n".join(correlation.markdown(found)) + "\n"
    if args.out:
        out = storage.workdir_path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        storage.atomic_write(out / f"correlation_{args.task}.md", table.encode("utf-8"))
        storage.atomic_write(out / f"correlation_{args.task}.png",
                             report.figure_png(correlation.correlation_figure(found)))
    summary = {
        "task": found.task, "metric": found.metric, "alignment": found.alignment_metric,
        "spearman": found.spearman, "p_value": found.p_value, "n": len(found.points),
    }  # fmt: skip
    print(table, end="")
    print(json.dumps(summary))
    return summary


def overlap_main(argv: list[str]) -> dict:
    from xlt_jax.analysis import overlap
    from xlt_jax.errors import XltError

    try:
        return overlap.run(argv)
    except (XltError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "correlate":
        correlate_main(argv[1:])
        return
    if argv and argv[0] == "overlap":
        overlap_main(argv[1:])
        return
    if not argv:
        sys.exit(__doc__)
    align_main(argv)


if __name__ == "__main__":
    main()
