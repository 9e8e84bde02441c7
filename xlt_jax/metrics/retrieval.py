"""Retrieval metrics: Tatoeba top-1 accuracy by cosine, and BUCC pair-set F1."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def nearest_neighbours(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Index of each query's most cosine-similar candidate (= L2 nearest after normalisation, as FAISS
    `IndexFlatL2` on unit vectors in XTREME)."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    c = candidates / np.maximum(np.linalg.norm(candidates, axis=1, keepdims=True), 1e-12)
    return np.argmax(q @ c.T, axis=1)


def retrieval_accuracy(queries: np.ndarray, candidates: np.ndarray) -> dict[str, float]:
    """Share of queries i whose nearest candidate is row i (x100): line-aligned Tatoeba."""
    if queries.shape != candidates.shape:
        raise ValueError(f"aligned sets must match in shape: {queries.shape} vs {candidates.shape}")
    predicted = nearest_neighbours(queries, candidates)
    return {"accuracy": 100.0 * float(np.mean(predicted == np.arange(len(queries))))}


def bucc_f1(gold_pairs: Iterable[str], predicted_pairs: Iterable[str]) -> dict[str, float]:
    """F1 over the sets of `src_id\\ttgt_id` pairs, as XTREME's `bucc_f1`."""
    gold = {tuple(line.split("\t")) for line in gold_pairs}
    pred = {tuple(line.split("\t")) for line in predicted_pairs}
    correct = len(gold & pred)
    if correct == 0:
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    precision, recall = correct / len(pred), correct / len(gold)
    return {
        "f1": 100.0 * 2 * precision * recall / (precision + recall),
        "precision": 100.0 * precision,
        "recall": 100.0 * recall,
    }
