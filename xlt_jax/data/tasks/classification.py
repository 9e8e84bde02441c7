"""Sentence-pair classification (XNLI, SICK): `<s> A </s></s> B </s>` -> one of `NLI_LABELS`.

As RoBERTa encodes pairs (REFERENCE_SPEC §1.1, §4.3). Pairs longer than `max_len` are truncated
longest-first (HF's `truncation=True`: one piece at a time from the longer sentence, from B on ties).
The word stage of a transform runs on each sentence's whitespace-split words separately; the id stage
runs on the whole row, where `<s>`/`</s>` keep A and B apart, so each is reversed or permuted on its own
and the sentence order and separators stay (§1.1). Unlabelled pairs get label -100.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xlt_jax.data.readers.nli import NLI_LABELS
from xlt_jax.data.tasks.base import DEFAULT_BUCKET, IGNORE_INDEX, Features, TaskData, bucket_length
from xlt_jax.data.tasks.sources import LoadedSplit
from xlt_jax.data.vocab import SPECIALS
from xlt_jax.errors import ConfigError

NUM_SPECIALS = 4  # <s> A </s></s> B </s>


def truncate_longest_first(len_a: np.ndarray, len_b: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Kept lengths after HF `longest_first` truncation to `len_a + len_b <= budget`, vectorised.

    The loop removes one piece from the longer sequence, from B on ties: first the difference is taken
    off the longer one, then the two shrink in turn, B first.
    """
    len_a, len_b = np.asarray(len_a, np.int64), np.asarray(len_b, np.int64)
    excess = np.maximum(len_a + len_b - budget, 0)
    levelling = np.minimum(excess, np.abs(len_a - len_b))
    rest = excess - levelling
    cut_a = np.where(len_a > len_b, levelling, 0) + rest // 2
    cut_b = np.where(len_a > len_b, 0, levelling) + (rest - rest // 2)
    return len_a - cut_a, len_b - cut_b


def featurize(
    loaded: LoadedSplit,
    tokenizer: Any,
    *,
    transform: Any,
    seed: int,
    max_len: int,
    bucket: int = DEFAULT_BUCKET,
) -> TaskData:
    """Features of an NLI split: `input_ids`, `attention_mask`, `label` [N], `example_id` [N]."""
    if max_len < NUM_SPECIALS + 2:
        raise ConfigError(f"max_len: {max_len} is too short for a sentence pair")
    examples = loaded.examples
    premises, hypotheses = [e.premise for e in examples], [e.hypothesis for e in examples]
    if transform.word_stage:
        trees = loaded.trees or [(None, None)] * len(examples)  # (premise, hypothesis) trees for syntax
        for i, (a, b) in enumerate(zip(premises, hypotheses, strict=True)):
            words_a, words_b = transform.apply_pair_words(a.split(), b.split(), seed=seed, example_id=i,
                                                          sentences=trees[i])
            premises[i], hypotheses[i] = " ".join(words_a), " ".join(words_b)
    enc_a, enc_b = tokenizer.encode_batch(premises), tokenizer.encode_batch(hypotheses)
    len_a = np.array([len(e) for e in enc_a], np.int64)
    len_b = np.array([len(e) for e in enc_b], np.int64)
    keep_a, keep_b = truncate_longest_first(len_a, len_b, max_len - NUM_SPECIALS)
    row_len = keep_a + keep_b + NUM_SPECIALS
    width = bucket_length(int(row_len.max(initial=NUM_SPECIALS)), bucket=bucket, max_len=max_len)

    input_ids = np.full((len(examples), width), SPECIALS.pad, np.int32)
    for i, (a, b, na, nb) in enumerate(zip(enc_a, enc_b, keep_a.tolist(), keep_b.tolist(), strict=True)):
        input_ids[i, : na + nb + NUM_SPECIALS] = np.concatenate(
            [[SPECIALS.bos], a[:na], [SPECIALS.eos, SPECIALS.eos], b[:nb], [SPECIALS.eos]]
        )
    example_ids = np.arange(len(examples), dtype=np.int64)
    if transform.id_stage:
        input_ids, _ = transform.apply_ids(input_ids, seed=seed, example_ids=example_ids)
    label_index = {name: i for i, name in enumerate(NLI_LABELS)}
    labels = np.array([IGNORE_INDEX if e.label is None else label_index[e.label] for e in examples], np.int32)

    features = Features(
        arrays={
            "input_ids": np.asarray(input_ids, np.int32),
            "attention_mask": (np.asarray(input_ids) != SPECIALS.pad).astype(np.int32),
            "label": labels,
            "example_id": example_ids,
        },
        model_keys=("input_ids", "attention_mask", "label"),
    )
    stats = {
        "pairs": len(examples),
        "truncated_pairs": int(np.count_nonzero((keep_a < len_a) | (keep_b < len_b))),
        "unlabelled": int(np.count_nonzero(labels == IGNORE_INDEX)),
        **{f"label_{name}": int(np.count_nonzero(labels == i)) for i, name in enumerate(NLI_LABELS)},
        **loaded.notes,
    }
    return TaskData(
        task=loaded.task,
        lang=loaded.lang,
        split=loaded.split,
        transform=transform.name,
        source=loaded.description,
        features=features,
        examples=examples,
        label_names=NLI_LABELS,
        stats=stats,
    )


def score(data: TaskData, predictions: np.ndarray) -> dict[str, float]:
    """Accuracy (x100) of predicted label ids [N] or logits [N, 3] against the gold labels."""
    predictions = np.asarray(predictions)
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=-1)
    gold = data.features["label"]
    if len(predictions) != len(gold):
        raise ValueError(f"{len(predictions)} predictions for {len(gold)} pairs")
    if np.any(gold == IGNORE_INDEX):
        raise ConfigError(f"nli/{data.lang}/{data.split}: {np.count_nonzero(gold == IGNORE_INDEX)} pairs lack labels")
    return {"accuracy": 100.0 * float(np.mean(predictions == gold))}
