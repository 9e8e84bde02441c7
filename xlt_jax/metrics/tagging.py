"""Tagging metrics: seqeval entity F1 (PAN-X, and UD-POS for comparability) and token accuracy.

seqeval is used as is, in its default (non-strict) mode, because XTREME and the paper's code both call it
that way; on bare UPOS tags this gives the chunk semantics of REFERENCE_SPEC §0.10, which is why POS also
reports token accuracy.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import seqeval.metrics

# seqeval warns once per bare tag ("PRON seems not to be NE tag") on every POS evaluation: expected on UD
# tags by design (REFERENCE_SPEC §0.10), and dozens of lines of noise in the demo's and the grid's output.
_BARE_TAG_WARNING = r".* seems not to be NE tag"


def _check_aligned(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> None:
    if len(labels) != len(predictions):
        raise ValueError(f"{len(predictions)} predicted sentences for {len(labels)} gold sentences")
    for i, (g, p) in enumerate(zip(labels, predictions, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(p)} predicted tags for {len(g)} gold tags")


def seqeval_f1(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity F1, precision and recall (x100) exactly as XTREME's `evaluate.py::f1`."""
    _check_aligned(labels, predictions)
    gold, pred = [list(s) for s in labels], [list(s) for s in predictions]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_BARE_TAG_WARNING, category=UserWarning)
        return {
            "f1": 100.0 * float(seqeval.metrics.f1_score(gold, pred)),
            "precision": 100.0 * float(seqeval.metrics.precision_score(gold, pred)),
            "recall": 100.0 * float(seqeval.metrics.recall_score(gold, pred)),
        }


def token_accuracy(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    """Share of words whose tag is right (x100): the clean POS number."""
    _check_aligned(labels, predictions)
    total = sum(len(s) for s in labels)
    if total == 0:
        raise ValueError("token accuracy of an empty set is undefined")
    pairs = zip(labels, predictions, strict=True)
    correct = sum(g == p for gs, ps in pairs for g, p in zip(gs, ps, strict=True))
    return {"accuracy": 100.0 * correct / total}
