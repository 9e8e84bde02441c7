"""Token-id layout shared by the tokenizer, the transformations and the models.

Ids [0, V) are the SentencePiece pieces of the natural language; a transliterated language adds a copy
[V, 2V) (REFERENCE_SPEC §1.4); T5 sentinels sit at the top of the whole vocabulary, counting down,
and are shared by every language.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    """Fixed special-token ids, as in the reference RoBERTa tokenizers."""

    bos: int = 0  # <s>, also CLS
    pad: int = 1  # <pad>
    eos: int = 2  # </s>, also SEP
    unk: int = 3  # <unk>
    mask: int = 4  # <mask>

    @property
    def boundaries(self) -> tuple[int, int]:
        """Ids that end an inversion/permutation segment (REFERENCE_SPEC §1.1)."""
        return (self.bos, self.eos)

    @property
    def all(self) -> tuple[int, ...]:
        return (self.bos, self.pad, self.eos, self.unk, self.mask)


SPECIALS = SpecialIds()


@dataclasses.dataclass(frozen=True)
class VocabLayout:
    """Sizes of the id space: `copies` blocks of `base_size` ids, then `num_sentinels` sentinels."""

    base_size: int
    copies: int = 1
    num_sentinels: int = 0
    specials: SpecialIds = SPECIALS

    @property
    def size(self) -> int:
        """Number of embedding rows the model needs."""
        return self.base_size * self.copies + self.num_sentinels

    def sentinel(self, k: int | np.ndarray) -> int | np.ndarray:
        """Id of `<extra_id_k>`: T5 counts sentinels down from the top of the vocabulary."""
        return self.size - 1 - k

    def is_sentinel(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(ids) >= self.base_size * self.copies

    def with_copies(self, copies: int) -> VocabLayout:
        return dataclasses.replace(self, copies=copies)
