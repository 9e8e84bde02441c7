"""Token-embedding alignment of a transliteration model's two vocabulary copies (REFERENCE_SPEC §6).

As the reference's `learn_orthogonal_mapping_one_one.py`: the input embedding rows [0, V) (original language)
and [V, 2V) (derived, transliterated language) are L2-normalised; token i of one copy should retrieve token i
of the other among ALL V rows by cosine. `align_nn_identity` searches without a mapping,
`align_nn_procrustes` after an orthogonal map fitted on a training share of the pairs (Procrustes); both are
reported on the validation share, in percent. The reference shuffles unseeded; here the split comes from a
seed and is kept in an index file, so reruns and other models use the same pairs.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib

import numpy as np
import scipy.linalg

from xlt_jax.data.io import atomic_write
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError, DataFormatError

QUERY_CHUNK = 2048  # validation rows scored at once: bounds the [chunk, V] score matrix


@dataclasses.dataclass(frozen=True)
class PairSplit:
    """Indices of the training pairs (to fit the map) and the validation pairs (to score it)."""

    train: np.ndarray
    valid: np.ndarray
    vocab_size: int
    seed: int


def split_pairs(vocab_size: int, train_fraction: float, valid_fraction: float, seed: int) -> PairSplit:
    """Shuffle range(V) with `seed`; the first train_fraction·V are train, the last valid_fraction·V valid."""
    for key, value in (("train_fraction", train_fraction), ("valid_fraction", valid_fraction)):
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"{key} must be in (0, 1], got {value}")
    if train_fraction + valid_fraction > 1.0:
        raise ConfigError(
            f"train_fraction + valid_fraction = {train_fraction + valid_fraction} > 1: the pair sets would overlap"
        )
    order = np.random.default_rng(seed).permutation(vocab_size)
    n_train, n_valid = int(train_fraction * vocab_size), int(valid_fraction * vocab_size)
    if n_train < 1 or n_valid < 1:
        raise ConfigError(f"a vocabulary of {vocab_size} leaves no train or validation pairs at these fractions")
    return PairSplit(order[:n_train], order[vocab_size - n_valid :], vocab_size, seed)


def save_split(split: PairSplit, path: str | os.PathLike) -> None:
    """Write the split atomically: a reader sees no file or the whole file."""
    buffer = io.BytesIO()
    np.savez(buffer, train=split.train, valid=split.valid, vocab_size=split.vocab_size, seed=split.seed)
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


def load_split(path: str | os.PathLike) -> PairSplit:
    try:
        with np.load(path) as f:
            return PairSplit(f["train"], f["valid"], int(f["vocab_size"]), int(f["seed"]))
    except (OSError, KeyError, ValueError) as e:
        raise DataFormatError(path, None, f"not a pair-split index file ({e})") from e


def split_for(
    path: str | os.PathLike, vocab_size: int, train_fraction: float, valid_fraction: float, seed: int
) -> PairSplit:
    """The split stored at `path` if there is one (it must be for this vocabulary size), else a new one."""
    if os.path.exists(path):
        split = load_split(path)
        if split.vocab_size != vocab_size:
            raise ConfigError(f"{path} splits a vocabulary of {split.vocab_size}, the model has {vocab_size}")
        return split
    split = split_pairs(vocab_size, train_fraction, valid_fraction, seed)
    save_split(split, path)
    return split


def vocabulary_copies(embedding: np.ndarray, layout: VocabLayout) -> tuple[np.ndarray, np.ndarray]:
    """(original rows [0, V), derived rows [V, 2V)) of a model whose vocabulary has a transliterated copy."""
    if layout.copies < 2:
        raise ConfigError(
            "the model has one vocabulary copy: only transliteration (translit, translit+...) gives the derived "
            "language its own token embeddings to align; inversion/permutation share one table"
        )
    if embedding.shape[0] != layout.size:
        raise ConfigError(f"embedding has {embedding.shape[0]} rows, the vocabulary layout {layout.size}")
    v = layout.base_size
    return embedding[:v], embedding[v : 2 * v]


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def orthogonal_map(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Orthogonal R minimising ‖source·R − target‖ (the reference's W = U·Vᵀ from svd(targetᵀ·source), R = Wᵀ)."""
    return scipy.linalg.orthogonal_procrustes(source, target)[0]


def nn_accuracy(queries: np.ndarray, candidates: np.ndarray, gold: np.ndarray) -> float:
    """Percent of query rows whose highest-scoring candidate row (dot product) is their gold index."""
    hits = 0
    for lo in range(0, len(queries), QUERY_CHUNK):
        scores = queries[lo : lo + QUERY_CHUNK] @ candidates.T
        hits += int(np.sum(np.argmax(scores, axis=1) == gold[lo : lo + QUERY_CHUNK]))
    return 100.0 * hits / len(queries)


def mean_row_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance between paired rows, unnormalised (the reference's `calculate_embedding_mse`)."""
    return float(np.mean(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=1)))


def align_embeddings(original: np.ndarray, derived: np.ndarray, split: PairSplit) -> dict[str, float]:
    """The alignment figures of one model: NN accuracy without and with the Procrustes map (validation and
    train pairs), and the mean distance between paired rows."""
    if original.shape != derived.shape or original.shape[0] != split.vocab_size:
        raise ConfigError(f"embedding copies {original.shape} / {derived.shape} do not match a split of "
                          f"{split.vocab_size} pairs")  # fmt: skip
    src, tgt = unit_rows(original), unit_rows(derived)
    mapping = orthogonal_map(src[split.train], tgt[split.train])
    return {
        "align_nn_identity": nn_accuracy(src[split.valid], tgt, split.valid),
        "align_nn_procrustes": nn_accuracy(src[split.valid] @ mapping, tgt, split.valid),
        "align_nn_procrustes_train": nn_accuracy(src[split.train] @ mapping, tgt, split.train),
        "embedding_distance": mean_row_distance(original, derived),
    }
