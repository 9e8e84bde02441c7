"""MLM masking (REFERENCE_SPEC §3.2, §0.3), vectorised over a [B, L] batch.

Like HF's `DataCollatorForLanguageModeling`: every non-special position is selected with probability 0.15
(Bernoulli, so the count varies per sequence); selected positions become `<mask>` (80%), a random id
(10%) or stay unchanged (10%); the loss covers selected positions only. Masks are dynamic: they depend on
the draw (epoch) as well as the example, so each epoch sees new masks, yet any batch can be rebuilt
exactly. All randomness is one counter-based hash per position (`xlt_jax.data.hashing`), so a sequence
gets the same mask whatever batch, host or order it is processed in.

The derived language uses the original `<mask>` id (PM masks after transforming). Random replacements come
from `[0, V)` for every sequence as in the reference (`"original_vocab"`), or from the sequence's own copy
of the vocabulary, `[cV, (c+1)V)`, with `"same_language"`.

Predicted positions can be gathered (`max_predictions` = P > 0), as Google's BERT does with
`max_predictions_per_seq`: the batch then carries `mlm_positions`, `mlm_targets`, `mlm_weights` [B, P]
instead of dense [B, L] targets, and the model projects only those P rows onto the vocabulary, which is
most of the work the MLM head would waste on unpredicted positions. A sequence whose Bernoulli draw selects
more than P positions keeps a uniformly random P of them (the rest are not masked at all, so inputs and loss
agree) and counts the rest in `mlm_overflow` [B]; `auto_max_predictions` sizes P so that this happens to
fewer than one sequence in 100,000 (P = 24, 40, 120 for L = 64, 128, 512 at 15%).

With `group_size` = G > 1, G consecutive sequences share one budget of P rows: `mlm_positions` [B/G, P]
index the group's G·L positions flattened (sequence-major), and `mlm_overflow` is [B/G]. A sum of G
Bernoulli counts varies relatively less than one, so the budget that overflows as rarely is far smaller per
sequence (L = 64, 15%: 24 rows per sequence alone, 13 in groups of 16, 11 in groups of 128; the expected count
is 9.3): fewer rows projected onto the vocabulary for the same predictions.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from scipy import stats

from xlt_jax.data import hashing
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError

REPLACEMENT_MODES = ("original_vocab", "same_language")
_SALT_SELECT = 0x4D4C4D01  # position selection and 80/10/10 action
_SALT_RANDOM_ID = 0x4D4C4D02  # replacement ids
_U24 = float(1 << 24)


@dataclasses.dataclass(frozen=True)
class MLMConfig:
    """Masking rates; defaults are the reference recipe."""

    probability: float = 0.15
    mask_rate: float = 0.8
    random_rate: float = 0.1
    random_replacement: str = "original_vocab"

    def __post_init__(self) -> None:
        if self.random_replacement not in REPLACEMENT_MODES:
            raise ConfigError(
                f"data.random_replacement={self.random_replacement!r}; expected one of {REPLACEMENT_MODES}"
            )
        if not 0.0 <= self.probability <= 1.0:
            raise ConfigError(f"data.mlm_probability={self.probability} is not in [0, 1]")
        if self.mask_rate < 0 or self.random_rate < 0 or self.mask_rate + self.random_rate > 1.0:
            raise ConfigError(
                f"data.mask_rate={self.mask_rate} + data.random_rate={self.random_rate} must lie in [0, 1]"
            )


def auto_max_predictions(length: int, probability: float, tail: float = 1e-5, multiple: int = 8) -> int:
    """Smallest P (a multiple of `multiple`, at most `length`) with P(Binomial(length, probability) > P) < tail.

    An upper bound: specials are never selected, so the real count per sequence is smaller still.
    """
    if probability <= 0.0:
        return min(multiple, length)
    quantile = int(stats.binom.isf(tail, length, probability)) + 1
    return min(length, multiple * math.ceil(quantile / multiple))


@functools.lru_cache(maxsize=8)
def special_table(layout: VocabLayout) -> np.ndarray:
    """bool[layout.size]: ids never selected for prediction.

    The five specials in every vocabulary copy (the transliterated `<unk>`/`<mask>` included, since the
    reference derives its special-token mask before transforming) and all sentinels.
    """
    table = np.zeros(layout.size, dtype=bool)
    for copy in range(layout.copies):
        table[np.asarray(layout.specials.all) + copy * layout.base_size] = True
    table[layout.base_size * layout.copies :] = True
    return table


def _position_bits(seed: int, example_ids: np.ndarray, draws: np.ndarray, length: int) -> np.ndarray:
    return hashing.hash64(
        seed, _SALT_SELECT, example_ids[:, None], draws[:, None], np.arange(length, dtype=np.int64)[None, :]
    )


def mask_tokens(
    ids: np.ndarray,
    *,
    layout: VocabLayout,
    seed: int,
    example_ids: np.ndarray,
    draws: np.ndarray,
    config: MLMConfig = MLMConfig(),
    vocab_copy: np.ndarray | None = None,
    max_predictions: int = 0,
    group_size: int = 1,
) -> dict[str, np.ndarray]:
    """MLM inputs, targets and masks for a batch `ids` [B, L] (int32).

    `example_ids` [B] and `draws` [B] key the randomness; `vocab_copy` [B] says which vocabulary copy
    each sequence is written in (0 = original, 1 = transliterated), used only by `"same_language"`.
    Returns `input_ids` and `attention_mask` (1 on non-pad) [B, L], and either dense `targets` (the id where
    predicted, else 0) and `loss_mask` (float32) [B, L], or with `max_predictions` = P > 0 the gathered
    `mlm_positions`, `mlm_targets`, `mlm_weights` [B, P] (ascending positions; padding slots have weight 0)
    and `mlm_overflow` [B] (selected positions dropped because the row had more than P); with `group_size`
    G > 1 those are [B/G, P] and [B/G], P rows per group of G sequences (module docstring).
    """
    ids = np.asarray(ids, dtype=np.int32)
    batch, length = ids.shape
    example_ids = np.asarray(example_ids, dtype=np.int64).reshape(batch)
    draws = np.asarray(draws, dtype=np.int64).reshape(batch)
    bits = _position_bits(seed, example_ids, draws, length)
    # Two independent 24-bit uniforms from one 64-bit hash: selection (high bits), action (middle bits).
    u_select = (bits >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / _U24)
    u_action = ((bits >> np.uint64(16)) & np.uint64(0xFFFFFF)).astype(np.float32) * np.float32(1.0 / _U24)
    selected = (u_select < np.float32(config.probability)) & ~special_table(layout)[ids]
    gathered = None
    if max_predictions > 0:
        if group_size < 1 or batch % group_size:
            raise ConfigError(f"data.mlm_group_size={group_size} must divide the batch of {batch} sequences")
        groups = (batch // group_size, group_size * length)  # a group's positions, flattened
        gathered = _gather_predictions(
            selected.reshape(groups), u_select.reshape(groups), ids.reshape(groups), max_predictions
        )
        selected = gathered.pop("selected").reshape(batch, length)
    to_mask = selected & (u_action < np.float32(config.mask_rate))
    to_random = selected & ~to_mask & (u_action < np.float32(config.mask_rate + config.random_rate))

    input_ids = np.where(to_mask, np.int32(layout.specials.mask), ids)
    rows, cols = np.nonzero(to_random)
    if len(rows):
        offset = np.zeros(len(rows), dtype=np.int64)
        if config.random_replacement == "same_language" and vocab_copy is not None:
            offset = np.asarray(vocab_copy, dtype=np.int64).reshape(batch)[rows] * layout.base_size
        random_ids = hashing.randint(
            seed, 0, layout.base_size, _SALT_RANDOM_ID, example_ids[rows], draws[rows], cols
        )
        input_ids[rows, cols] = (random_ids + offset).astype(np.int32)
    out = {"input_ids": input_ids, "attention_mask": (ids != layout.specials.pad).astype(np.int32)}
    if gathered is not None:
        return out | gathered
    return out | {"targets": np.where(selected, ids, np.int32(0)), "loss_mask": selected.astype(np.float32)}


def _gather_predictions(
    selected: np.ndarray, u_select: np.ndarray, ids: np.ndarray, max_predictions: int
) -> dict[str, np.ndarray]:
    """Up to P selected positions per row: the P with the smallest selection draw (a uniform subset)."""
    batch, length = selected.shape
    p = min(max_predictions, length)
    # Rank selected positions by their draw (unselected ones last), keep the first P, restore position order.
    order = np.argsort(np.where(selected, u_select, np.float32(2.0)), axis=1, kind="stable")[:, :p]
    kept = np.take_along_axis(selected, order, axis=1)
    positions = np.sort(np.where(kept, order, length), axis=1)
    valid = positions < length
    positions = np.where(valid, positions, 0).astype(np.int32)
    kept_mask = np.zeros_like(selected)
    rows = np.broadcast_to(np.arange(batch)[:, None], positions.shape)
    kept_mask[rows[valid], positions[valid]] = True
    return {
        "selected": kept_mask,
        "mlm_positions": positions,
        "mlm_targets": np.where(valid, np.take_along_axis(ids, positions, axis=1), 0).astype(np.int32),
        "mlm_weights": valid.astype(np.float32),
        "mlm_overflow": (selected.sum(axis=1) - valid.sum(axis=1)).astype(np.int32),
    }


def dense_targets(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(`targets`, `loss_mask`) [B, L] of a batch in either format (the gathered one is scattered back)."""
    if "mlm_positions" not in batch:
        return np.asarray(batch["targets"]), np.asarray(batch["loss_mask"])
    batch_size, length = np.shape(batch["input_ids"])
    flat = np.zeros(batch_size * length, np.int32)
    weights = np.zeros(batch_size * length, np.float32)
    positions = np.asarray(batch["mlm_positions"])
    valid = np.asarray(batch["mlm_weights"]) > 0
    span = batch_size * length // positions.shape[0]  # positions per row of `mlm_positions`: L, or G·L
    index = (np.arange(positions.shape[0])[:, None] * span + positions)[valid]
    flat[index] = np.asarray(batch["mlm_targets"])[valid]
    weights[index] = 1.0
    return flat.reshape(batch_size, length), weights.reshape(batch_size, length)
