"""`run(config, workdir)` behind `python -m xlt_jax.align`: the alignment figures of one pretrained model.

A model with a derived language: token-embedding alignment (REFERENCE_SPEC §6; NN, optionally CSLS) and the
Gromov–Wasserstein distance between the most frequent original tokens and the most frequent derived tokens
need a transliterated vocabulary copy and read only the input embedding table from the checkpoint; the
per-layer contextual alignment runs the encoder on held-out sentences and their derived versions, for any
transformation. A natural language pair (a bilingual `lang+lang2` model, or two models with `pretrained2`):
bilingual lexicon induction P@1 with the MUSE dictionary and the GW distance between the two languages' most
frequent tokens. Figures are appended to WORKDIR/results.jsonl as task `align` rows, next to the protocol's
rows for the correlation with Δ(BZ−BS).
"""

from __future__ import annotations

import logging
import os

import jax
import ml_collections
import numpy as np

from xlt_jax import results, storage
from xlt_jax.analysis import alignment, contextual, gw, lexicon, overlap
from xlt_jax.data import transforms
from xlt_jax.data.readers.muse import read_muse
from xlt_jax.errors import ConfigError
from xlt_jax.finetuning import pretrained as pretrained_lib

TASK = "align"
EMBEDDING_METRICS = ("align_nn_identity", "align_nn_procrustes")
CSLS_METRICS = ("align_csls_identity", "align_csls_procrustes")


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
    config: ml_collections.ConfigDict, model: pretrained_lib.PretrainedRun, embedding: np.ndarray,
    workdir: os.PathLike, row,
) -> list[results.ResultRow]:
    original, derived = alignment.vocabulary_copies(embedding, model.layout)
    split_file = workdir / f"align_split_V{model.layout.base_size}_seed{int(config.seed)}.npz"
    split = alignment.split_for(
        split_file, model.layout.base_size, float(config.train_fraction), float(config.valid_fraction),
        int(config.seed),
    )  # fmt: skip
    figures = alignment.align_embeddings(original, derived, split, csls=bool(config.csls))
    logging.info("embedding alignment of %s: %s", model.workdir, figures)
    extra = {
        "embedding_distance": figures["embedding_distance"],
        "align_nn_procrustes_train": figures["align_nn_procrustes_train"],
        "n_train_pairs": len(split.train),
        "candidates": model.layout.base_size,  # every derived row; chance accuracy = 100 / candidates %
        "split_file": str(split_file),
    }
    metrics = EMBEDDING_METRICS + (CSLS_METRICS if config.csls else ())
    extra["csls_neighbours"] = alignment.CSLS_NEIGHBOURS if config.csls else 0
    return [row(m, figures[m], len(split.valid), "valid", split.seed, extra) for m in metrics]


def frequent_ids(side: overlap.Side, tokenizer, n: int, sentences: int) -> np.ndarray:
    """The side's `n` most frequent non-special token ids in its first `sentences` pretraining sentences."""
    (counts,), _, _ = overlap.side_counts([side], tokenizer, sentences)
    return gw.most_frequent(counts, n)


def gw_row(config: ml_collections.ConfigDict, clouds: list[tuple[np.ndarray, np.ndarray]], row) -> results.ResultRow:
    """One `gw_distance` row between two (table, frequent ids) clouds."""
    (table_a, ids_a), (table_b, ids_b) = clouds
    figures = gw.gw_figures(table_a[ids_a], table_b[ids_b])
    logging.info("Gromov-Wasserstein: %s", figures)
    extra = {**figures, "frequency_sentences": int(config.frequency_sentences), "distance": "cosine",
             "note": "squared cosine-distance units; lower = more isomorphic; not a percentage"}  # fmt: skip
    return row(gw.METRIC, figures[gw.METRIC], int(figures["n_points"]), "frequent_tokens", 0, extra)


def derived_gw_row(config, model: pretrained_lib.PretrainedRun, lang: str, embedding: np.ndarray, row):
    """GW between the most frequent tokens of the original language and of the derived one (one table)."""
    n, sentences = int(config.gw_tokens), int(config.frequency_sentences)
    sides = [overlap.Side(lang), overlap.Side(lang, str(model.config.data.transform))]
    counts, _, _ = overlap.side_counts(sides, model.tokenizer, sentences)
    return gw_row(config, [(embedding, gw.most_frequent(c, n)) for c in counts], row)


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


def natural_pair_rows(
    config: ml_collections.ConfigDict, models: list[pretrained_lib.PretrainedRun], langs: list[str], row
) -> list[results.ResultRow]:
    """BLI P@1 (MUSE, seeded split) and GW between the two languages' most frequent tokens; `models` holds
    one bilingual model (one shared table) or one model per language."""
    src, tgt = langs
    path = lexicon.dictionary_path(src, tgt)  # before any checkpoint is read: a missing dictionary is an error
    tables = [input_embedding(m)[: m.layout.base_size] for m in models]  # the natural-language rows [0, V)
    if len(models) == 1:  # one bilingual model: both languages index its one table
        models, tables = models * 2, tables * 2
    tokenizers = [m.tokenizer for m in models]
    pairs = lexicon.token_pairs(read_muse(path), tokenizers[0], tokenizers[1])
    split = lexicon.split_lexicon(pairs, float(config.bli_test), int(config.seed))
    candidates = lexicon.word_candidates(tokenizers[1])

    def induce(held_out: lexicon.LexiconSplit) -> dict[str, float]:
        return lexicon.bli_figures(tables[0], tables[1], held_out, candidates, csls=bool(config.csls),
                                   src_rows=lexicon.word_candidates(tokenizers[0]))  # fmt: skip

    figures = induce(split)
    logging.info("lexicon induction %s->%s: %s", src, tgt, figures)
    extra = {"dictionary": str(path), "n_train_pairs": len(split.train), "n_candidates": len(candidates),
             "shared_table": models[0] is models[1],
             "csls_neighbours": alignment.CSLS_NEIGHBOURS if config.csls else 0,
             "split_note": f"MUSE 0-5000/5000-6500 splits missing: seeded split, {config.bli_test} of the "
                           "single-token source words held out"}  # fmt: skip
    per_metric = {m: {} for m in figures}
    apart = lexicon.spelled_apart(split)
    if models[0] is models[1] and len(apart.test_sources):  # P@1 of the words a shared spelling does not give
        extra["own_translation_share"] = lexicon.own_translation_share(split)
        extra["n_spelled_apart"] = len(apart.test_sources)
        per_metric = {m: {"value_spelled_apart": v} for m, v in induce(apart).items()}
    rows = [row(m, v, len(split.test_sources), "test", split.seed, {**extra, **per_metric[m]})
            for m, v in figures.items()]  # fmt: skip
    if int(config.gw_tokens) > 0:
        n, sentences = int(config.gw_tokens), int(config.frequency_sentences)
        clouds = [(table, frequent_ids(overlap.Side(lang), tok, n, sentences))
                  for table, tok, lang in zip(tables, tokenizers, langs, strict=True)]  # fmt: skip
        rows.append(gw_row(config, clouds, row))
    return rows


def natural_languages(config: ml_collections.ConfigDict, models: list[pretrained_lib.PretrainedRun]) -> list[str]:
    """The model's languages (each model's first with `pretrained2`); `pair=SRC-TGT` picks and orders two of
    them as the source and target of a natural pair (e.g. `fr-en`, or two languages of a multilingual model)."""
    langs = [str(m.config.data.langs).split("+")[0] for m in models] if len(models) == 2 else \
        str(models[0].config.data.langs).split("+")  # fmt: skip
    if not config.pair:
        return langs
    chosen = str(config.pair).split("-")
    if len(chosen) != 2 or len(set(chosen)) != 2 or not set(chosen) <= set(langs):
        raise ConfigError(f"pair={config.pair!r}: expected SRC-TGT, two different languages of {'+'.join(langs)}")
    return chosen


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> list[results.ResultRow]:
    """Compute the alignment figures of `config.pretrained` (and `pretrained2`) and append their rows to
    WORKDIR/results.jsonl."""
    model = pretrained_lib.load_pretrained(config.pretrained, int(config.step))
    models = [model]
    if config.pretrained2:
        models.append(pretrained_lib.load_pretrained(config.pretrained2, int(config.step2)))
    workdir = storage.workdir_path(workdir)
    transform = str(model.config.data.transform)
    langs = natural_languages(config, models)
    if transform == results.IDENTITY and len(langs) > 2:
        raise ConfigError(f"{model.workdir} has languages {'+'.join(langs)}: choose two with pair=SRC-TGT")
    if len(models) == 2 or (transform == results.IDENTITY and len(langs) == 2):
        rows = natural_pair_rows(config, models, langs, pair_row_factory(config, models, langs))
        results.append_rows(workdir, rows)
        return rows
    with_embeddings = model.layout.copies >= 2
    with_contextual = int(config.contextual.sentences) > 0
    if not with_embeddings and not with_contextual:
        raise ConfigError(
            f"{model.workdir} has one vocabulary copy: only transliteration gives the derived language token "
            "embeddings of its own to align; set contextual.sentences > 0 for the per-layer contextual alignment"
        )
    lang = langs[0]  # a bilingual run: its natural language comes first
    if transform == results.IDENTITY:
        raise ConfigError(f"{model.workdir} has no derived language (data.transform is 'none') and no second "
                          "language: nothing to align")  # fmt: skip

    def row(metric, value, n, split, seed, extra) -> results.ResultRow:
        return results.ResultRow(
            model=config.model_name or model.name, task=TASK, lang=lang,
            train_transform=results.IDENTITY, eval_transform=transform, setting="",
            metric=metric, value=float(value), n_examples=n, split=split, seed=seed,
            checkpoint=str(model.state_dir), corpus=config.corpus, extra={**extra, "step": model.step},
        )  # fmt: skip

    rows = []
    if with_embeddings:
        embedding = input_embedding(model)
        rows += embedding_rows(config, model, embedding, workdir, row)
        if int(config.gw_tokens) > 0:
            rows.append(derived_gw_row(config, model, lang, embedding, row))
    if with_contextual:
        rows += contextual_rows(config, model, lang, row)
    results.append_rows(workdir, rows)
    return rows


def pair_row_factory(config: ml_collections.ConfigDict, models: list[pretrained_lib.PretrainedRun], langs: list[str]):
    """Rows of a natural pair: `train_lang` = source language, `lang` = target language, no transform."""
    name = config.model_name or "+".join(m.name for m in models)

    def row(metric, value, n, split, seed, extra) -> results.ResultRow:
        return results.ResultRow(
            model=name, task=TASK, lang=langs[1], train_lang=langs[0], train_transform=results.IDENTITY,
            eval_transform=results.IDENTITY, setting="", metric=metric, value=float(value), n_examples=n,
            split=split, seed=seed, checkpoint=",".join(str(m.state_dir) for m in models), corpus=config.corpus,
            extra={**extra, "step": [m.step for m in models]},
        )  # fmt: skip

    return row
