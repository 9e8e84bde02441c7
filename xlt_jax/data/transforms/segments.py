"""Segments of a token-id sequence: the unit that inversion and permutation reorder (REFERENCE_SPEC §1.1).

A segment is a maximal run of ordinary tokens between two *fixed* tokens. Fixed tokens are `<s>` and `</s>`
(the reference's boundaries) and `<pad>` (so that a padded batch behaves exactly like its unpadded rows:
right padding ends the last segment where the reference's "last position" rule would). Fixed tokens never
move. `<unk>`, `<mask>` and every other id are ordinary tokens and move with their segment.

Everything here works on a whole padded batch `[B, L]` at once with cumulative max/min scans, so no Python
loop touches individual tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from xlt_jax.data.vocab import SPECIALS, SpecialIds


def fixed_ids(specials: SpecialIds = SPECIALS) -> tuple[int, ...]:
    """Ids that end a segment and stay in place: bos, eos and pad."""
    return (specials.bos, specials.eos, specials.pad)


def fixed_mask(ids: np.ndarray, fixed: Iterable[int] = fixed_ids()) -> np.ndarray:
    """Boolean mask of the positions holding a fixed token (a handful of `==`, faster than `np.isin`)."""
    ids = np.asarray(ids)
    mask = np.zeros(ids.shape, dtype=bool)
    for value in fixed:
        mask |= ids == value
    return mask


@dataclasses.dataclass(frozen=True)
class SegmentBounds:
    """Per position: whether it is fixed and the first/last position of its segment (inclusive).

    A fixed position is a segment of its own (`start == end == position`).
    """

    fixed: np.ndarray  # bool [..., L]
    start: np.ndarray  # int64 [..., L]
    end: np.ndarray  # int64 [..., L]


def segment_bounds(ids: np.ndarray, fixed: Iterable[int] = fixed_ids()) -> SegmentBounds:
    """Segment start/end of every position of a `[..., L]` id array, vectorised over leading axes."""
    ids = np.asarray(ids)
    length = ids.shape[-1]
    is_fixed = fixed_mask(ids, fixed)
    pos = np.broadcast_to(np.arange(length, dtype=np.int64), ids.shape)
    # The last fixed position at or before i, and the first at or after i.
    last_fixed = np.maximum.accumulate(np.where(is_fixed, pos, -1), axis=-1)
    next_fixed = np.flip(np.minimum.accumulate(np.flip(np.where(is_fixed, pos, length), -1), axis=-1), -1)
    start = np.where(is_fixed, pos, last_fixed + 1)
    end = np.where(is_fixed, pos, next_fixed - 1)
    return SegmentBounds(fixed=is_fixed, start=start, end=end)


def segment_ids(ids: np.ndarray, fixed: Iterable[int] = fixed_ids()) -> np.ndarray:
    """Non-decreasing group number per position; every fixed token and every run gets its own number.

    Sorting a row by `(segment_ids, anything)` with a stable sort therefore moves tokens only inside their
    own segment, which is how permutation is vectorised.
    """
    is_fixed = fixed_mask(ids, fixed)
    return 2 * np.cumsum(is_fixed, axis=-1, dtype=np.int64) + (~is_fixed)


def segments(ids: np.ndarray, fixed: Iterable[int] = fixed_ids()) -> list[slice]:
    """Slices of the non-empty runs of ordinary tokens of ONE sequence (the reference's per-example view)."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"segments() takes one sequence, got shape {ids.shape}")
    is_fixed = fixed_mask(ids, fixed)
    edges = np.flatnonzero(np.diff(np.concatenate([[True], is_fixed, [True]]).astype(np.int8)))
    # edges alternate: run start (fixed -> ordinary), run end (ordinary -> fixed)
    return [slice(int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2], strict=True)]
