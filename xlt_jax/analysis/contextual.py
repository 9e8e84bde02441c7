"""Contextual alignment per layer: do the original and the derived version of the same sentence get similar
representations, layer by layer (embeddings, layer 1, ..., layer N)?

Two figures per layer on mean-pooled hidden states of N held-out sentences (the language's first evaluation
file, UD dev for English: never pretraining text) and their derived versions. A syntax transformation reorders
a tree, so then the sentences are the gold trees of the language's first UD dev/test treebank, both sides
written from the tree's words (as both sides of a syntax-derived pretraining corpus are):
  - `contextual_retrieval_l<k>`: % of original sentences whose nearest derived sentence by cosine is their own
    (Tatoeba's protocol with the derived language as the other side);
  - `contextual_cka_l<k>`: linear CKA (Kornblith et al., 2019) between the two sets of representations, x100.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xlt_jax.data import corpora
from xlt_jax.data.readers.conllu import read_conllu
from xlt_jax.data.tasks import Features, retrieval
from xlt_jax.errors import ConfigError
from xlt_jax.finetuning import inference, loading
from xlt_jax.finetuning.pretrained import PretrainedRun
from xlt_jax.finetuning.task_model import HeadSpec, task_model_fn
from xlt_jax.metrics.retrieval import retrieval_accuracy
from xlt_jax.training import partitioning


def held_out_sentences(lang: str, limit: int) -> tuple[list[str], str]:
    """The first `limit` sentences of the language's first evaluation file, and that file's path."""
    sources = corpora.evaluation_sources(lang)
    if not sources:
        raise ConfigError(f"no evaluation text for language {lang!r} in the data directory")
    source = sources[0]
    sentences = [s for s in itertools.islice(source.sentences(), limit) if s.strip()]
    if len(sentences) < 2:
        raise ConfigError(f"{source.path}: fewer than 2 sentences for the contextual alignment")
    return sentences, str(source.path)


def held_out_trees(lang: str, limit: int) -> tuple[list[str], list, str]:
    """(texts, trees, path) of the first `limit` gold trees of `lang`'s first UD dev/test treebank."""
    files = corpora.ud_treebanks(lang, ("dev", "test"))
    if not files:
        raise ConfigError(f"contextual alignment under a syntax transformation needs gold UD dev/test trees of "
                          f"{lang!r}; the data directory has none")  # fmt: skip
    trees = [t for t in itertools.islice(read_conllu(files[0]), limit) if len(t)]
    if len(trees) < 2:
        raise ConfigError(f"{files[0]}: fewer than 2 trees for the contextual alignment")
    return [corpora.treebank_text(t) for t in trees], trees, str(files[0])


def pooled_layers(
    model: PretrainedRun, feature_sets: list[Features], mesh_config: ml_collections.ConfigDict, batch_size: int
) -> list[np.ndarray]:
    """Mean-pooled hidden states [N, layers + 1, d] (embedding output first) of every row of each feature set;
    the parameters are loaded and the step compiled once."""
    mesh = partitioning.make_mesh(mesh_config)
    rules = partitioning.logical_rules(mesh_config.rules)
    head = HeadSpec("retrieval", pool_layer=0)
    loaded = loading.load_task_params(
        state_dir=model.state_dir, model_fn_for=lambda v: task_model_fn(model.model_config, v, head),
        saved_layout=model.layout, target_layout=model.layout, mesh=mesh, rules=rules, subtree="backbone",
    )  # fmt: skip

    def pool_all(params: dict, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        states = loaded.model_def.merge(params).backbone.encode(
            batch["input_ids"], batch["attention_mask"], deterministic=True, return_all_layers=True
        )
        mask = batch["attention_mask"].astype(jnp.float32)[:, None, :, None]  # [B, 1, L, 1]
        hidden = jnp.stack(states, axis=1).astype(jnp.float32)  # [B, layers + 1, L, d]
        return {"pooled": jnp.sum(hidden * mask, axis=2) / jnp.maximum(jnp.sum(mask, axis=2), 1.0)}

    step = jax.jit(
        pool_all,
        in_shardings=(loaded.shardings, partitioning.batch_sharding(mesh, 1)),
        out_shardings=partitioning.replicated(mesh),
    )
    return [
        inference.predict_features(step, loaded.params, f, batch_size=batch_size, mesh=mesh, rules=rules)["pooled"]
        for f in feature_sets
    ]


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same n examples, [n, d1] and [n, d2]: 1 for representations
    equal up to rotation and isotropic scaling, 0 for unrelated ones."""
    x = np.asarray(x, np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, np.float64) - np.mean(y, axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norm) if norm > 0 else 0.0


def layer_figures(original: np.ndarray, derived: np.ndarray) -> dict[str, float]:
    """`contextual_retrieval_l<k>` and `contextual_cka_l<k>` (x100) for every layer k of [N, layers + 1, d]."""
    if original.shape != derived.shape:
        raise ValueError(f"representations differ in shape: {original.shape} vs {derived.shape}")
    figures = {}
    for k in range(original.shape[1]):
        figures[f"contextual_retrieval_l{k}"] = retrieval_accuracy(original[:, k], derived[:, k])["accuracy"]
        cka = linear_cka(original[:, k], derived[:, k])
        figures[f"contextual_cka_l{k}"] = min(100.0, 100.0 * cka)  # CKA ≤ 1 but for rounding
    return figures


def contextual_alignment(
    model: PretrainedRun,
    lang: str,
    transform,
    *,
    sentences: int,
    max_len: int,
    batch_size: int,
    mesh_config: ml_collections.ConfigDict,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, object]]:
    """Per-layer figures for `sentences` held-out sentences of `lang`, and what they were run on."""
    trees = None
    if transform.syntax is not None:
        texts, trees, path = held_out_trees(lang, sentences)
    else:
        texts, path = held_out_sentences(lang, sentences)
    max_len = min(max_len, int(model.model_config.max_len))  # longer sentences are cut, as for Tatoeba
    common = dict(max_len=max_len, seed=seed, bucket=retrieval.DEFAULT_BUCKET)
    original = retrieval.encode_sentences(model.tokenizer, texts, **common)
    derived = retrieval.encode_sentences(model.tokenizer, texts, transform=transform, trees=trees, **common)
    figures = layer_figures(*pooled_layers(model, [original, derived], mesh_config, batch_size))
    return figures, {"sentences": len(texts), "sentence_source": path, "max_len": max_len}
