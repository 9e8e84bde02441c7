"""T5 text-to-text classification: label words as decoder targets, and generated tokens back to labels.

The encoder reads the same pair rows as the classification head (`<s> A </s></s> B </s>`, transformed
the same way); the decoder learns to write the label word ("entailment", ...) followed by `</s>`, starting
from the decoder start id `<s>` as in span-corruption pretraining. Label words are never transformed:
they are the output vocabulary, not part of the language under study. Host-side NumPy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from xlt_jax.data.tasks import IGNORE_INDEX, Features
from xlt_jax.data.vocab import SPECIALS

DECODER_KEYS = ("decoder_input_ids", "decoder_targets", "decoder_loss_mask")


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
    rows = targets[np.where(has_label, labels, 0)]
    decoder_input = np.concatenate([np.full((len(rows), 1), SPECIALS.bos, np.int32), rows[:, :-1]], axis=1)
    loss_mask = ((rows != SPECIALS.pad) & has_label[:, None]).astype(np.float32)
    arrays = {
        **features.arrays,
        "decoder_input_ids": decoder_input.astype(np.int32),
        "decoder_targets": rows.astype(np.int32),
        "decoder_loss_mask": loss_mask,
    }
    model_keys = tuple(k for k in features.model_keys if k != label_key) + DECODER_KEYS
    return dataclasses.replace(features, arrays=arrays, model_keys=model_keys)


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
