"""Sentence retrieval (Tatoeba): encode sources and targets one sentence per row, match by cosine.

No fine-tuning (REFERENCE_SPEC §0.8, §4.6). Every sentence is its own row `<s> pieces </s>`, truncated to
`max_len`. Two sets of features are built:

- `derived` source (the paper's protocol): queries are the original sentences, candidates the same
  sentences transformed (word stage on whitespace-split words, then the id stage), line i <-> line i;
- `pairs` source (XTREME): queries are the English sides, candidates the other language's sentences;
  a transformation, if given, applies to the candidates only.

`mean_pool` averages hidden states over the attention mask, specials included, as both references do.
Rows of a batch are padded, but the mask keeps padding out of the mean, so the embeddings do not depend
on the batch (the reference's batch size 1 is not needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xlt_jax.data.tasks.base import DEFAULT_BUCKET, Features, TaskData, bucket_length
from xlt_jax.data.tasks.sources import LoadedSplit
from xlt_jax.data.vocab import SPECIALS
from xlt_jax.errors import ConfigError


def encode_sentences(
    tokenizer: Any,
    sentences: Sequence[str],
    *,
    max_len: int,
    transform: Any = None,
    seed: int = 0,
    example_ids: np.ndarray | None = None,
    bucket: int = DEFAULT_BUCKET,
    trees: Sequence[Any] | None = None,
) -> Features:
    """Rows `<s> pieces </s>` (at most `max_len` ids) of `sentences`, optionally transformed (`trees`: one
    per sentence, for a syntax transform)."""
    if max_len < 3:
        raise ConfigError(f"max_len: {max_len} leaves no room for a sentence")
    example_ids = np.arange(len(sentences), dtype=np.int64) if example_ids is None else np.asarray(example_ids)
    texts = list(sentences)
    if transform is not None and transform.word_stage:
        trees = trees if trees is not None else [None] * len(texts)
        texts = [transform.apply_text(t, seed=seed, example_id=int(i), sentence=tree)
                 for t, i, tree in zip(texts, example_ids, trees, strict=True)]
    encoded = [e[: max_len - 2] for e in tokenizer.encode_batch(texts)]
    lengths = np.array([len(e) + 2 for e in encoded], np.int64)
    width = bucket_length(int(lengths.max(initial=2)), bucket=bucket, max_len=max_len)
    input_ids = np.full((len(texts), width), SPECIALS.pad, np.int32)
    for r, ids in enumerate(encoded):
        input_ids[r, : len(ids) + 2] = np.concatenate([[SPECIALS.bos], ids, [SPECIALS.eos]])
    if transform is not None and transform.id_stage:
        input_ids, _ = transform.apply_ids(input_ids, seed=seed, example_ids=example_ids)
    return Features(
        arrays={
            "input_ids": np.asarray(input_ids, np.int32),
            "attention_mask": (np.asarray(input_ids) != SPECIALS.pad).astype(np.int32),
            "example_id": np.arange(len(texts), dtype=np.int64),
        },
        model_keys=("input_ids", "attention_mask"),
    )


def featurize(
    loaded: LoadedSplit,
    tokenizer: Any,
    *,
    transform: Any,
    seed: int,
    max_len: int,
    bucket: int = DEFAULT_BUCKET,
) -> TaskData:
    """Query features in `TaskData.features`, candidate features in `extra["targets"]` (row i <-> row i)."""
    n = len(loaded.examples)
    ids = np.arange(n, dtype=np.int64)
    if loaded.source == "pairs":
        queries = [eng for _, eng in loaded.examples]
        candidates = [src for src, _ in loaded.examples]
    else:
        queries = candidates = list(loaded.examples)
    common = dict(max_len=max_len, seed=seed, bucket=bucket)
    source = encode_sentences(tokenizer, queries, **common)
    target = encode_sentences(tokenizer, candidates, transform=transform, example_ids=ids, trees=loaded.trees, **common)
    return TaskData(
        task=loaded.task,
        lang=loaded.lang,
        split=loaded.split,
        transform=transform.name,
        source=loaded.description,
        features=source,
        examples=list(loaded.examples),
        stats={"sentences": n, **loaded.notes},
        extra={"targets": target, "mode": "pairs" if loaded.source == "pairs" else "derived"},
    )


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean of `hidden [B, L, D]` over positions where `attention_mask [B, L]` is 1 (specials included)."""
    mask = np.asarray(attention_mask, dtype=np.float64)[..., None]
    total = (np.asarray(hidden, dtype=np.float64) * mask).sum(axis=1)
    return (total / np.maximum(mask.sum(axis=1), 1.0)).astype(np.float32)


def score(data: TaskData, query_embeddings: np.ndarray, target_embeddings: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy (x100) of finding row i among the targets for query i, by cosine."""
    from xlt_jax.metrics.retrieval import retrieval_accuracy

    return retrieval_accuracy(np.asarray(query_embeddings), np.asarray(target_embeddings))
