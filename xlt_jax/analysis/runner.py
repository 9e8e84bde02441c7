"""`run(config, workdir)` behind `python -m xlt_jax.align`: embedding alignment of one pretrained model.

Only the input embedding table is read from the checkpoint (no model is built); the figures are appended to
WORKDIR/results.jsonl as task `align` rows, next to the protocol's rows for the correlation with Δ(BZ−BS).
"""

from __future__ import annotations

import logging
import os
import pathlib

import jax
import ml_collections
import numpy as np

from xlt_jax import results
from xlt_jax.analysis import alignment
from xlt_jax.finetuning import pretrained as pretrained_lib

TASK = "align"


def input_embedding(run: pretrained_lib.PretrainedRun) -> np.ndarray:
    """The model's input embedding table [rows, d] as float32, restored alone from the checkpoint."""
    path = pretrained_lib.EMBEDDING_PATHS[run.config.model.name]
    shapes = pretrained_lib.saved_param_shapes(run.state_dir)
    shape = shapes
    for key in path:
        shape = shape[key]
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target: dict = jax.ShapeDtypeStruct(tuple(shape), np.float32, sharding=sharding)
    for key in reversed(path):
        target = {key: target}
    restored = pretrained_lib.restore_params(run.state_dir, target)
    for key in path:
        restored = restored[key]
    return np.asarray(restored, np.float32)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> list[results.ResultRow]:
    """Compute the alignment of `config.pretrained` and append its rows to WORKDIR/results.jsonl."""
    model = pretrained_lib.load_pretrained(config.pretrained, int(config.step))
    original, derived = alignment.vocabulary_copies(input_embedding(model), model.layout)
    workdir = pathlib.Path(workdir)
    split_file = workdir / f"align_split_V{model.layout.base_size}_seed{int(config.seed)}.npz"
    split = alignment.split_for(
        split_file, model.layout.base_size, float(config.train_fraction), float(config.valid_fraction),
        int(config.seed),
    )  # fmt: skip
    figures = alignment.align_embeddings(original, derived, split)
    logging.info("alignment of %s: %s", model.workdir, figures)
    extra = {
        "embedding_distance": figures["embedding_distance"],
        "align_nn_procrustes_train": figures["align_nn_procrustes_train"],
        "n_train_pairs": len(split.train),
        "split_file": str(split_file),
        "step": model.step,
    }
    rows = [
        results.ResultRow(
            model=config.model_name or model.name, task=TASK, lang=_base_language(model.config),
            train_transform=results.IDENTITY, eval_transform=str(model.config.data.transform), setting="",
            metric=metric, value=figures[metric], n_examples=len(split.valid), split="valid",
            seed=split.seed, checkpoint=str(model.state_dir), extra=extra,
        )  # fmt: skip
        for metric in ("align_nn_identity", "align_nn_procrustes")
    ]
    results.append_rows(workdir, rows)
    return rows


def _base_language(config: ml_collections.ConfigDict) -> str:
    """The natural language of a bilingual run (its first language)."""
    return str(config.data.langs).split("+")[0]
