"""Inversion and Permutation (REFERENCE_SPEC §1.2, §1.3), at sub-word level (default) or word level.

Both are expressed as a *source index map*: `src[b, j]` is the old position of the token that ends up at
new position `j`. Applying a reordering is a gather with that map, so ids, labels and QA offsets all travel
together. Inversion maps position i of segment [s, e] to s + e - i (an involution, computed with scans);
permutation is a stable argsort of each row by (segment number, uniform key), where the key is
`hashing.uniform(seed, salt, example_id, position)`: every segment gets a uniform shuffle that depends only
on (seed, example id), never on the batch it happens to be in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from xlt_jax.data import hashing
from xlt_jax.data.transforms import segments as seg

# Salts keep the permutation streams independent of other users of (seed, example id, position), such as
# MLM masking.
PERM_SALT = 0x7065726D  # "perm"
WORD_PERM_SALT = 0x77706572  # "wper"

LEVELS = ("subword", "word")


def inversion_index(ids: np.ndarray, fixed: Iterable[int] = seg.fixed_ids()) -> np.ndarray:
    """Source index map that reverses every segment of every row of `ids [B, L]`; its own inverse."""
    bounds = seg.segment_bounds(ids, fixed)
    pos = np.arange(np.shape(ids)[-1], dtype=np.int64)
    return bounds.start + bounds.end - pos


def permutation_index(
    ids: np.ndarray,
    *,
    seed: int,
    example_ids: np.ndarray,
    fixed: Iterable[int] = seg.fixed_ids(),
) -> np.ndarray:
    """Source index map that shuffles every segment of `ids [B, L]` uniformly, keyed by (seed, example id)."""
    ids = np.asarray(ids)
    example_ids = np.asarray(example_ids, dtype=np.int64)
    pos = np.arange(ids.shape[-1], dtype=np.int64)
    group = seg.segment_ids(ids, fixed).astype(np.float64)
    noise = hashing.uniform(seed, PERM_SALT, example_ids[:, None], pos[None, :])
    # group + noise is non-decreasing across groups (rounding can only produce ties with the next group's
    # first key, and the stable sort breaks those by position), so tokens never leave their segment.
    return np.argsort(group + noise, axis=-1, kind="stable")


def gather(values: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Reorder `values [B, L, ...]` by a source index map `src [B, L]`."""
    values = np.asarray(values)
    index = src.reshape(src.shape + (1,) * (values.ndim - src.ndim))
    return np.take_along_axis(values, index, axis=1)


def word_order(kind: str, n: int, *, seed: int, example_id: int) -> np.ndarray:
    """Order (old indices in new order) of the `n` words of one sentence for `inv` or `perm`."""
    if kind == "inv":
        return np.arange(n - 1, -1, -1, dtype=np.int64)
    keys = hashing.uniform(seed, WORD_PERM_SALT, int(example_id), np.arange(n, dtype=np.int64))
    return np.argsort(keys, kind="stable")


def take(items: Sequence[Any], order: np.ndarray) -> list[Any]:
    """`items` listed in `order` (a word-level gather; words are Python strings)."""
    return [items[i] for i in order.tolist()]


@dataclasses.dataclass(frozen=True)
class Reorder:
    """Inversion (`kind="inv"`) or permutation (`kind="perm"`) at sub-word or word level."""

    kind: str
    level: str = "subword"
    fixed: tuple[int, ...] = seg.fixed_ids()

    def __post_init__(self) -> None:
        if self.kind not in ("inv", "perm"):
            raise ValueError(f"unknown reordering {self.kind!r}")
        if self.level not in LEVELS:
            raise ValueError(f"unknown level {self.level!r}; valid: {LEVELS}")

    @property
    def name(self) -> str:
        return self.kind if self.level == "subword" else f"{self.kind}@word"

    def index_map(self, ids: np.ndarray, *, seed: int, example_ids: np.ndarray) -> np.ndarray:
        """Source index map for a batch `[B, L]`."""
        if self.kind == "inv":
            return inversion_index(ids, self.fixed)
        return permutation_index(ids, seed=seed, example_ids=example_ids, fixed=self.fixed)

    def apply_words(
        self, words: Sequence[str], tags: Sequence[Any] | None = None, *, seed: int, example_id: int
    ) -> tuple[list[str], list[Any] | None]:
        """Reorder one sentence's words (and their tags) as a whole."""
        order = word_order(self.kind, len(words), seed=seed, example_id=example_id)
        return take(words, order), (None if tags is None else take(tags, order))
