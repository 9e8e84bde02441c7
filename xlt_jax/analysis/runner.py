"""`run(config, workdir)` behind `python -m xlt_jax.align`: the alignment figures of one pretrained model.

Token-embedding alignment (REFERENCE_SPEC §6) needs a transliterated vocabulary copy and reads only the
input embedding table from the checkpoint; the per-layer contextual alignment runs the encoder on held-out
sentences and their derived versions, for any transformation. Figures are appended to WORKDIR/results.jsonl
as task `align` rows, next to the protocol's rows for the correlation with Δ(BZ−BS).
"""

from __future__ import annotations

import logging
import os
import pathlib

import jax
import ml_collections
import numpy as np

from xlt_jax import results
from xlt_jax.analysis import alignment, contextual
from xlt_jax.data import transforms
from xlt_jax.errors import ConfigError
from xlt_jax.finetuning import pretrained as pretrained_lib

TASK = "align"
EMBEDDING_METRICS = ("align_nn_identity", "align_nn_procrustes")


def input_embedding(run: pretrained_lib.PretrainedRun) -> np.ndarray:
    """The model's input embedding table [rows, d] as float32, restored alone from the checkpoint."""
    *parents, name = pretrained_lib.EMBEDDING_PATHS[run.config.model.name]
    shapes = pretrained_lib.saved_param_shapes(run.state_dir)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = {name: jax.ShapeDtypeStruct(tuple(_at(shapes, parents)[name]), np.float32, sharding=sharding)}
    for key in reversed(parents):
        target = {key: target}
    restored = pretrained_lib.restore_params(run.state_dir, target)
    return np.asarray(_at(restored, parents)[name], np.float32)


def _at(tree: dict, path: list[str]) -> dict:
    for key in path:
        tree = tree[key]
    return tree


def embedding_rows(
    config: ml_collections.ConfigDict, model: pretrained_lib.PretrainedRun, workdir: pathlib.Path, row
) -> list[results.ResultRow]:
    original, derived = alignment.vocabulary_copies(input_embedding(model), model.layout)
    split_file = workdir / f"align_split_V{model.layout.base_size}_seed{int(config.seed)}.npz"
    split = alignment.split_for(
        split_file, model.layout.base_size, float(config.train_fraction), float(config.valid_fraction),
        int(config.seed),
    )  # fmt: skip
    figures = alignment.align_embeddings(original, derived, split)
    logging.info("embedding alignment of %s: %s", model.workdir, figures)
    extra = {
        "embedding_distance": figures["embedding_distance"],
        "align_nn_procrustes_train": figures["align_nn_procrustes_train"],
        "n_train_pairs": len(split.train),
        "candidates": model.layout.base_size,  # every derived row; chance accuracy = 100 / candidates %
        "split_file": str(split_file),
    }
    return [row(m, figures[m], len(split.valid), "valid", split.seed, extra) for m in EMBEDDING_METRICS]


def contextual_rows(config: ml_collections.ConfigDict, model: pretrained_lib.PretrainedRun, lang: str, row):
    c = config.contextual
    transform = transforms.parse(str(model.config.data.transform), model.tokenizer.layout())
    figures, extra = contextual.contextual_alignment(
        model, lang, transform, sentences=int(c.sentences), max_len=int(c.max_len), batch_size=int(c.batch_size),
        mesh_config=config.mesh, seed=int(c.transform_seed),
    )  # fmt: skip
    logging.info("contextual alignment of %s: %s", model.workdir, figures)
    return [row(name, value, int(extra["sentences"]), "dev", int(c.transform_seed), extra)
            for name, value in figures.items()]  # fmt: skip


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> list[results.ResultRow]:
    """Compute the alignment figures of `config.pretrained` and append their rows to WORKDIR/results.jsonl."""
    model = pretrained_lib.load_pretrained(config.pretrained, int(config.step))
    workdir = pathlib.Path(workdir)
    with_embeddings = model.layout.copies >= 2
    with_contextual = int(config.contextual.sentences) > 0
    if not with_embeddings and not with_contextual:
        raise ConfigError(
            f"{model.workdir} has one vocabulary copy: only transliteration gives the derived language token "
            "embeddings of its own to align; set contextual.sentences > 0 for the per-layer contextual alignment"
        )
    lang = str(model.config.data.langs).split("+")[0]  # a bilingual run: its natural language comes first
    if str(model.config.data.transform) == results.IDENTITY:
        raise ConfigError(f"{model.workdir} has no derived language (data.transform is 'none'): nothing to align")

    def row(metric, value, n, split, seed, extra) -> results.ResultRow:
        return results.ResultRow(
            model=config.model_name or model.name, task=TASK, lang=lang,
            train_transform=results.IDENTITY, eval_transform=str(model.config.data.transform), setting="",
            metric=metric, value=float(value), n_examples=n, split=split, seed=seed,
            checkpoint=str(model.state_dir), corpus=config.corpus, extra={**extra, "step": model.step},
        )  # fmt: skip

    rows = embedding_rows(config, model, workdir, row) if with_embeddings else []
    if with_contextual:
        rows += contextual_rows(config, model, lang, row)
    results.append_rows(workdir, rows)
    return rows
