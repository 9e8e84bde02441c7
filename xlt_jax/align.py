r"""Alignment analysis binary: `python -m xlt_jax.align --config configs/align.py:pretrained=RUN --workdir DIR`.

Nearest-neighbour alignment of the original and transliterated token embeddings of a pretrained model, without
and with an orthogonal Procrustes map (REFERENCE_SPEC §6); one row per figure is appended to DIR/results.jsonl
and printed as a JSON line.
"""

from __future__ import annotations

import ml_collections
from absl import flags

from xlt_jax import cli

cli.define_flags(
    "Alignment config file (configs/align.py:ARGS).",
    "Directory whose results.jsonl receives the rows; it also keeps the token-pair split for reruns.",
)
flags.adopt_module_key_flags(cli)  # listed by --help


def align(config: ml_collections.ConfigDict, workdir: str) -> None:
    from xlt_jax.analysis import runner

    for row in runner.run(config, workdir):
        print(row.to_json())


def run_main() -> None:
    cli.run(align)


if __name__ == "__main__":
    run_main()
