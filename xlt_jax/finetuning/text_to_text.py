"""T5 text to text: decoder targets for NLI label words and QA answers, and generated tokens back to them.

NLI: the encoder reads the same pair rows as the classification head (`<s> A </s></s> B </s>`, transformed
the same way); the decoder learns to write the label word ("entailment", ...) followed by `</s>`, starting
from the decoder start id `<s>` as in span-corruption pretraining. Label words are never transformed:
they are the output vocabulary, not part of the language under study.

QA: the encoder reads the extractive task's rows (`<s> question </s></s> window </s>`, `tasks/qa.py`).
Training keeps ONE row per question: the first window holding the whole first gold answer, or the first
window when none does. The target is the answer as it stands in that window: its context pieces, exactly
as transformed (reversed under inversion, copy ids under transliteration), then `</s>`, at most
`QA_TARGET_LEN` ids. A question whose answer no window holds gets the untransformed pieces of the answer
text. At evaluation every window generates greedily; the question's answer is the generation of the window
with the highest mean log-probability (tokens up to and including the first `</s>`; first window on ties).
It is mapped back to text: cut at `</s>`, piece order reversed when the features were inverted (QA inversion
is sub-word level and reverses each window, so an answer is a reversed contiguous run of pieces), copy ids
folded to the natural vocabulary by `Tokenizer.decode`, then scored with SQuAD EM/F1. Host-side NumPy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from xlt_jax.data.tasks import IGNORE_INDEX, Features, TaskData
from xlt_jax.data.vocab import SPECIALS, VocabLayout

DECODER_KEYS = ("decoder_input_ids", "decoder_targets", "decoder_loss_mask")
QA_TARGET_LEN = 32  # generated answer ids: up to 31 pieces + </s> (HF's max_answer_length is 30 pieces)


def label_targets(tokenizer: Any, label_names: Sequence[str]) -> np.ndarray:
    """[num_labels, T] target ids: the pieces of each label word, `</s>`, then pad (T = longest + 1)."""
    pieces = [list(tokenizer.encode(name)) + [SPECIALS.eos] for name in label_names]
    if len({tuple(p) for p in pieces}) != len(pieces):
        raise ValueError(f"label words {list(label_names)} do not encode to distinct piece sequences")
    out = np.full((len(pieces), max(map(len, pieces))), SPECIALS.pad, np.int32)
    for i, p in enumerate(pieces):
        out[i, : len(p)] = p
    return out


def add_decoder_fields(features: Features, targets: np.ndarray, label_key: str = "label") -> Features:
    """Features with teacher-forcing fields for each row's label (rows without a label get no loss)."""
    labels = features[label_key]
    has_label = labels != IGNORE_INDEX
    arrays = {**features.arrays, **teacher_forcing(targets[np.where(has_label, labels, 0)], has_label)}
    model_keys = tuple(k for k in features.model_keys if k != label_key) + DECODER_KEYS
    return dataclasses.replace(features, arrays=arrays, model_keys=model_keys)


def teacher_forcing(rows: np.ndarray, has_target: np.ndarray) -> dict[str, np.ndarray]:
    """Decoder fields for target `rows` [N, T]: inputs shifted right from `<s>`, loss on non-pad targets."""
    decoder_input = np.concatenate([np.full((len(rows), 1), SPECIALS.bos, np.int32), rows[:, :-1]], axis=1)
    return {
        "decoder_input_ids": decoder_input.astype(np.int32),
        "decoder_targets": rows.astype(np.int32),
        "decoder_loss_mask": ((rows != SPECIALS.pad) & has_target[:, None]).astype(np.float32),
    }


def generated_labels(generated: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Label id of each generated sequence (exact match up to its first `</s>`), -1 for anything else."""
    generated = np.asarray(generated)
    width = targets.shape[1]
    if generated.shape[1] < width:
        pad = np.full((len(generated), width - generated.shape[1]), SPECIALS.pad, generated.dtype)
        generated = np.concatenate([generated, pad], axis=1)
    generated = generated[:, :width]
    # Everything after the first </s> becomes padding, so trailing garbage does not matter.
    after_eos = np.cumsum(generated == SPECIALS.eos, axis=1) - (generated == SPECIALS.eos) > 0
    cleaned = np.where(after_eos, SPECIALS.pad, generated)
    match = np.all(cleaned[:, None, :] == targets[None, :, :], axis=-1)  # [N, num_labels]
    return np.where(match.any(axis=1), match.argmax(axis=1), -1)


# -- QA ---------------------------------------------------------------------------------------------


def qa_training_rows(features: Features) -> np.ndarray:
    """Per question, the row it trains on: its first window holding the answer, else its first window."""
    example_ids = features["example_id"]
    holds = features["start_positions"] > 0
    order = np.lexsort((features["window"], ~holds, example_ids))
    if not len(order):
        return order
    return order[np.r_[True, example_ids[order][1:] != example_ids[order][:-1]]]


def add_answer_fields(data: TaskData, tokenizer: Any, target_len: int = QA_TARGET_LEN) -> tuple[Features, dict]:
    """One row per question with its answer as decoder target (see module docstring), and counts for logs."""
    features = data.features
    rows = qa_training_rows(features)
    targets = np.full((len(rows), target_len), SPECIALS.pad, np.int32)
    outside = truncated = 0
    for i, r in enumerate(rows.tolist()):
        start, end = int(features["start_positions"][r]), int(features["end_positions"][r])
        if start > 0:
            pieces = features["input_ids"][r, start : end + 1]
        else:
            example = data.examples[int(features["example_id"][r])]
            pieces = np.asarray(tokenizer.encode(example.answers[0][0]) if example.answers else [], np.int32)
            outside += 1
        truncated += len(pieces) > target_len - 1
        pieces = pieces[: target_len - 1]
        targets[i, : len(pieces) + 1] = np.append(pieces, SPECIALS.eos)
    arrays = {k: v[rows] for k, v in features.arrays.items()}
    arrays.update(teacher_forcing(targets, np.ones(len(rows), bool)))
    keys = ("input_ids", "attention_mask", *DECODER_KEYS)
    text_features = dataclasses.replace(features, arrays=arrays, model_keys=keys)
    return text_features, {"answer_outside_windows": outside, "answers_truncated": truncated}


def answer_ids(generated: np.ndarray, *, inverted: bool) -> np.ndarray:
    """The answer pieces of one generation, in original order: up to the first `</s>`, reversed if inverted."""
    generated = np.asarray(generated)
    eos = np.flatnonzero(generated == SPECIALS.eos)
    ids = generated[: eos[0]] if len(eos) else generated
    return ids[::-1] if inverted else ids


def mean_logprob(generated: np.ndarray, logprob: np.ndarray) -> np.ndarray:
    """[N] mean log-probability of each generation's tokens up to and including its first `</s>`."""
    is_eos = np.asarray(generated) == SPECIALS.eos
    counted = (np.cumsum(is_eos, axis=1) - is_eos) == 0
    return np.sum(np.where(counted, logprob, 0.0), axis=1) / np.maximum(counted.sum(axis=1), 1)


def qa_predictions(
    data: TaskData, generated: np.ndarray, logprob: np.ndarray, tokenizer: Any, layout: VocabLayout
) -> dict[str, str]:
    """`{question id: answer text}`: the best-scoring window's generation of each question, as text."""
    features = data.features
    if len(generated) != len(features):
        raise ValueError(f"{len(generated)} generations for {len(features)} features")
    scores = mean_logprob(generated, logprob)
    example_ids = features["example_id"]
    order = np.lexsort((np.arange(len(features)), -scores, example_ids))
    best = order[np.r_[True, example_ids[order][1:] != example_ids[order][:-1]]] if len(order) else order
    answers = {e.id: "" for e in data.examples}
    inverted = bool(data.extra.get("inverted", False))
    for f in best.tolist():
        ids = answer_ids(generated[f], inverted=inverted)
        answers[data.examples[int(example_ids[f])].id] = tokenizer.decode(ids, layout=layout)
    return answers
