"""Accuracy for XNLI, PAWS-X, SICK and Tatoeba index predictions."""

from __future__ import annotations

from collections.abc import Sequence


def accuracy(labels: Sequence, predictions: Sequence) -> dict[str, float]:
    """`{"accuracy": 100 * mean(prediction == label)}`; lengths must match, as XTREME asserts."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        raise ValueError("accuracy of an empty set is undefined")
    correct = sum(int(p == g) for p, g in zip(predictions, labels, strict=True))
    return {"accuracy": 100.0 * correct / len(labels)}
