"""Transliteration: the derived language's id is the original id plus V (REFERENCE_SPEC §0.2, §1.4).

Kept (unshifted): `<s>`, `</s>`, `<pad>` (only `<pad>` with `shift_special`), plus an optional partial
keep-set for ablations on vocabulary overlap. `<unk>` and `<mask>` ARE shifted, as in the reference. Ids
>= V (already derived, or T5 sentinels at the top of the vocabulary) are never touched.

The reference's partial keep-sets were drawn with replacement, so their nominal fractions are wrong
(§0.6). Here the keep-set has exactly `round(keep_fraction * n)` ids, drawn without replacement from the
`n` shiftable ids with a seeded generator, and its size is logged and exposed.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from xlt_jax.data import hashing
from xlt_jax.data.vocab import SPECIALS, SpecialIds

KEEP_SALT = 0x6B656570  # "keep"

log = logging.getLogger(__name__)


def always_kept(specials: SpecialIds = SPECIALS, *, shift_special: bool = False) -> tuple[int, ...]:
    """Ids the reference never shifts: bos, eos, pad; only pad with `--shift_special`."""
    return (specials.pad,) if shift_special else (specials.bos, specials.eos, specials.pad)


def draw_keep_set(base_size: int, fraction: float, *, seed: int, exclude: tuple[int, ...] = ()) -> np.ndarray:
    """Sorted ids in [0, V) drawn WITHOUT replacement: exactly round(fraction * #candidates) of them."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"keep fraction must be in [0, 1], got {fraction}")
    candidates = np.setdiff1d(np.arange(base_size, dtype=np.int64), np.asarray(exclude, dtype=np.int64))
    size = int(round(fraction * candidates.size))
    chosen = hashing.rng(seed, KEEP_SALT).choice(candidates, size=size, replace=False)
    return np.sort(chosen)


@dataclasses.dataclass(frozen=True, eq=False)
class Transliteration:
    """`id -> id + V` for ids below V that are not in the keep-set; a lookup table makes it one gather."""

    base_size: int
    shift_special: bool = False
    keep_fraction: float = 0.0
    keep_seed: int = 0
    specials: SpecialIds = SPECIALS
    partial_keep_ids: np.ndarray = dataclasses.field(init=False, repr=False)  # sorted, specials excluded
    _offset: np.ndarray = dataclasses.field(init=False, repr=False)  # [V]: 0 (kept) or V

    def __post_init__(self) -> None:
        if self.base_size <= max(self.specials.all):
            raise ValueError(f"base vocabulary size {self.base_size} is smaller than the special ids")
        kept_specials = always_kept(self.specials, shift_special=self.shift_special)
        partial = draw_keep_set(
            self.base_size, self.keep_fraction, seed=self.keep_seed, exclude=kept_specials
        )
        keep = np.zeros(self.base_size, dtype=bool)
        keep[list(kept_specials)] = True
        keep[partial] = True
        offset = np.where(keep, 0, self.base_size).astype(np.int64)
        object.__setattr__(self, "partial_keep_ids", partial)
        object.__setattr__(self, "_offset", offset)
        if self.keep_fraction > 0:
            log.info(
                "transliteration keeps %d of %d shiftable ids unshifted (fraction %.4f, seed %d)",
                partial.size,
                self.base_size - len(kept_specials),
                self.keep_fraction,
                self.keep_seed,
            )

    @property
    def name(self) -> str:
        options = []
        if self.keep_fraction > 0:
            options.append(f"keep={float(self.keep_fraction)!r}")  # repr round-trips exactly
            if self.keep_seed:
                options.append(f"seed={self.keep_seed}")
        if self.shift_special:
            options.append("shift_special")
        return "translit" + (f"[{';'.join(options)}]" if options else "")

    @property
    def keep_size(self) -> int:
        """Number of ids of the partial keep-set (specials excluded)."""
        return int(self.partial_keep_ids.size)

    @property
    def kept(self) -> np.ndarray:
        """Boolean [V]: True for ids that stay unshifted."""
        return self._offset == 0

    def apply_ids(self, ids: np.ndarray) -> np.ndarray:
        """Shift a batch of ids (any shape); dtype is preserved."""
        ids = np.asarray(ids)
        below = ids < self.base_size
        offset = self._offset[np.where(below & (ids >= 0), ids, 0)]
        return (ids + np.where(below & (ids >= 0), offset, 0)).astype(ids.dtype, copy=False)

    def invert(self, ids: np.ndarray) -> np.ndarray:
        """Map derived ids back to the original language: ids in [V, 2V) lose the offset."""
        return invert(ids, self.base_size)


def invert(ids: np.ndarray, base_size: int) -> np.ndarray:
    """Inverse of transliteration on any id array: [V, 2V) -> [0, V); everything else unchanged."""
    ids = np.asarray(ids)
    derived = (ids >= base_size) & (ids < 2 * base_size)
    return (ids - np.where(derived, base_size, 0)).astype(ids.dtype, copy=False)
