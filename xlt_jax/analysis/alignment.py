"""Token-embedding alignment of a transliteration model's two vocabulary copies (REFERENCE_SPEC §6).

As the reference's `learn_orthogonal_mapping_one_one.py`: the input embedding rows [0, V) (original language)
and [V, 2V) (derived, transliterated language) are L2-normalised; token i of one copy should retrieve token i
of the other among ALL V rows by cosine. `align_nn_identity` searches without a mapping,
`align_nn_procrustes` after an orthogonal map fitted on a training share of the pairs (Procrustes); both are
reported on the validation share, in percent. The reference shuffles unseeded; here the split comes from a
seed and is kept in an index file, so reruns and other models use the same pairs.

CSLS (cross-domain similarity local scaling, Conneau et al. 2018) is the retrieval option next to plain NN:
CSLS(x, y) = 2·cos(x, y) − r_T(x) − r_S(y), where r_T(x) is the mean cosine of x to its k = 10 nearest
candidates and r_S(y) the mean cosine of candidate y to its k nearest (mapped) source rows. It penalises
*hubs*, candidates near everything, which plain NN retrieves for many queries at once.
"""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
import scipy.linalg
from etils import epath

from xlt_jax import storage
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError, DataFormatError

QUERY_CHUNK = 2048  # validation rows scored at once: bounds the [chunk, V] score matrix
CSLS_NEIGHBOURS = 10  # k of CSLS, as in MUSE


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
    epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
    storage.atomic_write(path, buffer.getvalue())


def load_split(path: str | os.PathLike) -> PairSplit:
    try:
        with np.load(io.BytesIO(epath.Path(path).read_bytes())) as f:  # local or gs://
            return PairSplit(f["train"], f["valid"], int(f["vocab_size"]), int(f["seed"]))
    except (OSError, KeyError, ValueError) as e:
        raise DataFormatError(path, None, f"not a pair-split index file ({e})") from e


def split_for(
    path: str | os.PathLike, vocab_size: int, train_fraction: float, valid_fraction: float, seed: int
) -> PairSplit:
    """The split stored at `path` if there is one (it must be for this vocabulary size), else a new one."""
    if epath.Path(path).exists():
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


def nearest(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Index of each query row's highest-scoring candidate row (dot product: cosine for unit rows)."""
    return np.concatenate([np.argmax(queries[lo : lo + QUERY_CHUNK] @ candidates.T, axis=1)
                           for lo in range(0, len(queries), QUERY_CHUNK)])  # fmt: skip


def mean_top_k_similarity(rows: np.ndarray, others: np.ndarray, k: int = CSLS_NEIGHBOURS) -> np.ndarray:
    """Per row, the mean dot product with its k highest-scoring rows of `others` (CSLS's neighbourhood r).
    In float32: a mean of similarities needs no more, and it is the [rows, others] pass that costs."""
    k = min(k, len(others))
    rows, others = np.asarray(rows, np.float32), np.asarray(others, np.float32)
    means = [np.partition(rows[lo : lo + QUERY_CHUNK] @ others.T, -k, axis=1)[:, -k:].mean(axis=1)
             for lo in range(0, len(rows), QUERY_CHUNK)]  # fmt: skip
    return np.concatenate(means) if means else np.zeros(0)


def csls_nearest(
    queries: np.ndarray, candidates: np.ndarray, sources: np.ndarray, k: int = CSLS_NEIGHBOURS
) -> np.ndarray:
    """Index of each query row's best candidate by CSLS. `sources` are all (mapped) source rows, the
    queries among them: r_S(y) is a candidate's mean similarity to its k nearest sources. (r_T(x) is the
    same for every candidate of a query, so it never changes the ranking; it is kept for the formula.)"""
    r_source = mean_top_k_similarity(candidates, sources, k)
    best = []
    for lo in range(0, len(queries), QUERY_CHUNK):
        cosine = queries[lo : lo + QUERY_CHUNK] @ candidates.T
        nearest_k = min(k, cosine.shape[1])
        r_target = np.partition(cosine, -nearest_k, axis=1)[:, -nearest_k:].mean(axis=1)
        best.append(np.argmax(2.0 * cosine - r_target[:, None] - r_source[None, :], axis=1))
    return np.concatenate(best)


def hit_rate(predicted: np.ndarray, gold: np.ndarray) -> float:
    """Percent of predictions equal to their gold index."""
    return 100.0 * float(np.mean(np.asarray(predicted) == np.asarray(gold)))


def nn_accuracy(queries: np.ndarray, candidates: np.ndarray, gold: np.ndarray) -> float:
    """Percent of query rows whose highest-scoring candidate row (dot product) is their gold index."""
    return hit_rate(nearest(queries, candidates), gold)


def csls_accuracy(queries: np.ndarray, candidates: np.ndarray, gold: np.ndarray, sources: np.ndarray) -> float:
    """Percent of query rows whose best candidate by CSLS is their gold index."""
    return hit_rate(csls_nearest(queries, candidates, sources), gold)


def mean_row_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance between paired rows, unnormalised (the reference's `calculate_embedding_mse`)."""
    return float(np.mean(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=1)))


def align_embeddings(
    original: np.ndarray, derived: np.ndarray, split: PairSplit, *, csls: bool = False
) -> dict[str, float]:
    """The alignment figures of one model: NN accuracy without and with the Procrustes map (validation and
    train pairs), the mean distance between paired rows, and with `csls` the CSLS accuracies
    (`align_csls_identity`, `align_csls_procrustes`; every original row, mapped, is a CSLS source)."""
    if original.shape != derived.shape or original.shape[0] != split.vocab_size:
        raise ConfigError(f"embedding copies {original.shape} / {derived.shape} do not match a split of "
                          f"{split.vocab_size} pairs")  # fmt: skip
    src, tgt = unit_rows(original), unit_rows(derived)
    mapping = orthogonal_map(src[split.train], tgt[split.train])
    figures = {
        "align_nn_identity": nn_accuracy(src[split.valid], tgt, split.valid),
        "align_nn_procrustes": nn_accuracy(src[split.valid] @ mapping, tgt, split.valid),
        "align_nn_procrustes_train": nn_accuracy(src[split.train] @ mapping, tgt, split.train),
        "embedding_distance": mean_row_distance(original, derived),
    }
    if csls:
        mapped = src @ mapping
        figures["align_csls_identity"] = csls_accuracy(src[split.valid], tgt, split.valid, src)
        figures["align_csls_procrustes"] = csls_accuracy(mapped[split.valid], tgt, split.valid, mapped)
    return figures
