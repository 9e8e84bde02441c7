"""Inversion for extractive QA features (REFERENCE_SPEC §1.2, `modify_inputs_invert_qa`).

A feature is `<s> question </s></s> context-window </s>` (+ pad). Question and context are reversed
separately (they are separate segments) and the source index map `index_map` (new position -> old
position; an involution) is returned with the result, so that:

- training targets follow the reversal: `start' = index_map[end]`, `end' = index_map[start]` (a reversed
  span starts at its old last token);
- offsets are permuted with the map, so every position still points at its characters in the ORIGINAL
  context, and a span predicted in reversed space `(s', e')`, `s' <= e'`, is the original text
  `context[offsets'[e'][0] : offsets'[s'][1]]` in original order.

Permutation and syntax have no such span mapping (an answer's tokens are scattered, or syntax works on
words before tokenisation), so QA refuses them, as the reference does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from xlt_jax.data.transforms import order, segments
from xlt_jax.errors import TransformError


@dataclasses.dataclass(frozen=True)
class QAFeatures:
    """Transformed QA features; `index_map [B, L]` maps new positions to old ones."""

    input_ids: np.ndarray
    index_map: np.ndarray
    start_positions: np.ndarray | None = None
    end_positions: np.ndarray | None = None
    offsets: np.ndarray | None = None
    inverted: bool = False


def refuse(kind: str) -> TransformError:
    """The error for a reordering that QA cannot map spans through."""
    return TransformError(
        f"transformation {kind!r} cannot be applied to QA: answer spans are only defined through an "
        "inversion (use 'inv', 'translit' or 'translit+inv'); the reference refuses it too"
    )


def invert_features(
    input_ids: np.ndarray,
    *,
    start_positions: np.ndarray | None = None,
    end_positions: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
    fixed: Iterable[int] = segments.fixed_ids(),
) -> QAFeatures:
    """Reverse question and context of every feature; move span targets and offsets along."""
    input_ids = np.asarray(input_ids)
    index_map = order.inversion_index(input_ids, tuple(fixed))
    new_start = new_end = None
    if (start_positions is None) != (end_positions is None):
        raise ValueError("pass both start_positions and end_positions, or neither")
    if start_positions is not None:
        start = np.asarray(start_positions, dtype=np.int64)[:, None]
        end = np.asarray(end_positions, dtype=np.int64)[:, None]
        new_start = np.take_along_axis(index_map, end, axis=1)[:, 0]
        new_end = np.take_along_axis(index_map, start, axis=1)[:, 0]
    return QAFeatures(
        input_ids=order.gather(input_ids, index_map),
        index_map=index_map,
        start_positions=new_start,
        end_positions=new_end,
        offsets=None if offsets is None else order.gather(offsets, index_map),
        inverted=True,
    )


def identity_features(
    input_ids: np.ndarray,
    *,
    start_positions: np.ndarray | None = None,
    end_positions: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
) -> QAFeatures:
    """Features left in order (no reordering requested), with the identity index map."""
    input_ids = np.asarray(input_ids)
    index_map = np.broadcast_to(np.arange(input_ids.shape[-1], dtype=np.int64), input_ids.shape).copy()
    return QAFeatures(input_ids, index_map, start_positions, end_positions, offsets, inverted=False)


def char_span(offsets: np.ndarray, start: int, end: int, *, inverted: bool) -> tuple[int, int]:
    """Character span `[a, b)` in the ORIGINAL context of a predicted token span `start <= end`.

    `offsets` are the (permuted) offsets of the feature the prediction was made on. In reversed space the
    span's first original character sits on its LAST token and its last character on its FIRST token.
    """
    if inverted:
        return int(offsets[end][0]), int(offsets[start][1])
    return int(offsets[start][0]), int(offsets[end][1])


def original_token_span(index_map: np.ndarray, start: int, end: int) -> tuple[int, int]:
    """Token span in the original feature of a span `start <= end` predicted in transformed space."""
    a, b = int(index_map[start]), int(index_map[end])
    return min(a, b), max(a, b)
