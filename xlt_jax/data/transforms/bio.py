"""Re-canonicalise BIO tags after a reordering (REFERENCE_SPEC §1.2).

Reversing `B-PER I-PER` gives `I-PER B-PER`, which seqeval reads as two entities. Like the paper's
corrected-labels script, the first tag of a run of the same entity type becomes `B-` and the following ones
`I-`. Ignored positions (label -100 on non-first sub-words, or `None`) are transparent: they neither start
nor end a run, because evaluation reads only the labelled positions. Tags without a `B-`/`I-` prefix (`O`,
POS tags) are left alone and end runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

IGNORE_INDEX = -100


@dataclasses.dataclass(frozen=True)
class BioTable:
    """Lookup tables over a label vocabulary: entity type per label, and the B-/I- label of each type."""

    type_of: np.ndarray  # int64 [num_labels], -1 for labels outside BIO entities
    begin: np.ndarray  # int64 [num_types]
    inside: np.ndarray  # int64 [num_types]

    @classmethod
    def from_names(cls, names: Sequence[str]) -> BioTable:
        index = {name: i for i, name in enumerate(names)}
        types = sorted({n[2:] for n in names if n[:2] in ("B-", "I-")})
        missing = [f"{p}-{t}" for t in types for p in "BI" if f"{p}-{t}" not in index]
        if missing:
            raise ValueError(f"BIO label set lacks {missing}; labels: {list(names)}")
        type_index = {t: k for k, t in enumerate(types)}
        type_of = np.array([type_index.get(n[2:], -1) if n[:2] in ("B-", "I-") else -1 for n in names])
        begin = np.array([index[f"B-{t}"] for t in types], dtype=np.int64)
        inside = np.array([index[f"I-{t}"] for t in types], dtype=np.int64)
        return cls(type_of=type_of.astype(np.int64), begin=begin, inside=inside)


def canonicalize_bio_ids(
    labels: np.ndarray, table: BioTable | Sequence[str], *, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Canonical BIO label ids for `labels [..., L]` (label ids into the table's names), vectorised."""
    if not isinstance(table, BioTable):
        table = BioTable.from_names(table)
    labels = np.asarray(labels)
    if table.begin.size == 0:
        return labels.copy()
    valid = labels != ignore_index
    kind = np.where(valid, table.type_of[np.where(valid, labels, 0)], -1)
    pos = np.broadcast_to(np.arange(labels.shape[-1]), labels.shape)
    last_valid = np.maximum.accumulate(np.where(valid, pos, -1), axis=-1)
    prev_valid = np.concatenate([np.full(labels.shape[:-1] + (1,), -1), last_valid[..., :-1]], axis=-1)
    prev_kind = np.where(prev_valid >= 0, np.take_along_axis(kind, np.maximum(prev_valid, 0), axis=-1), -1)
    entity = kind >= 0
    safe_kind = np.maximum(kind, 0)
    canonical = np.where(prev_kind == kind, table.inside[safe_kind], table.begin[safe_kind])
    return np.where(entity, canonical, labels).astype(labels.dtype, copy=False)


def canonicalize_bio(tags: Sequence[str | None], *, ignore: str | None = None) -> list[str | None]:
    """Canonical BIO strings for one sentence; `None` entries and entries equal to `ignore` are skipped."""
    tags = list(tags)
    skip = [t is None or (ignore is not None and t == ignore) for t in tags]
    real = [t for t, s in zip(tags, skip, strict=True) if not s]
    types = sorted({t[2:] for t in real if t[:2] in ("B-", "I-")})
    names = sorted(set(real) | {f"{p}-{t}" for t in types for p in "BI"})
    index = {name: i for i, name in enumerate(names)}
    ids = np.array([IGNORE_INDEX if s else index[t] for t, s in zip(tags, skip, strict=True)], dtype=np.int64)
    fixed = canonicalize_bio_ids(ids, names) if names else ids
    return [t if s else names[i] for t, s, i in zip(tags, skip, fixed.tolist(), strict=True)]
