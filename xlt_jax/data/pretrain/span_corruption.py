"""T5 span corruption (REFERENCE_SPEC §3.4), vectorised over a batch of equal-length raw blocks.

Semantics of T5's `random_spans_noise_mask` + `noise_span_to_unique_sentinel`: a raw block of length n
gets `round(n * density)` noise tokens in `round(noise / mean_span)` spans; non-noise and noise spans
alternate, starting with non-noise, and the span lengths of each kind are a uniformly random composition
(T5's `_random_segmentation`). Inputs keep the non-noise tokens and put one sentinel per noise span;
targets hold each noise span preceded by its sentinel; both end with EOS. Sentinel k is
`layout.sentinel(k)`, shared by every language and added after any transformation, so never transformed.

Because every block has the same raw length, every row has the same noise count and span count, and
inputs/targets have fixed lengths: the whole batch is built with array operations, with per-example
randomness from `xlt_jax.data.hashing` keyed by (seed, example id, draw).

Difference from t5x/mT5: raw blocks come from the same `<s> … </s>` line stream as MLM (the line markers
delimit the segments inversion/permutation act on, REFERENCE_SPEC §1.1), whereas T5 concatenates
documents without markers; the markers are ordinary tokens here and may be noised.
"""

from __future__ import annotations

import numpy as np

from xlt_jax.data import hashing
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError

_SALT_NONNOISE = 0x53504E01
_SALT_NOISE = 0x53504E02


def noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a raw block, clamped as T5 does (≥1 noise, ≥1 non-noise, ≥1 span)."""
    num_noise = int(round(length * noise_density))
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    return num_noise, num_spans


def random_spans_helper(
    inputs_length: int,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    extra_tokens_per_span_inputs: int = 1,
    extra_tokens_per_span_targets: int = 1,
) -> tuple[int, int]:
    """(raw tokens length, targets length) so that corrupted inputs fill exactly `inputs_length`.

    Port of T5's `random_spans_helper` (both lengths count the EOS): 512 -> (568, 114).
    """

    def lengths(tokens_length: int) -> tuple[int, int]:
        num_noise = int(round(tokens_length * noise_density))
        num_spans = int(round(num_noise / mean_noise_span_length))
        return (
            tokens_length - num_noise + num_spans * extra_tokens_per_span_inputs + 1,
            num_noise + num_spans * extra_tokens_per_span_targets + 1,
        )

    tokens_length = inputs_length - 1
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    _, targets_length = lengths(tokens_length)
    if noise_density == 0.5 and targets_length > inputs_length:  # T5's tweak to keep targets <= inputs
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def corrupted_lengths(
    raw_length: int, noise_density: float, mean_noise_span_length: float
) -> tuple[int, int]:
    """(inputs length, targets length), EOS included, produced from a raw block of `raw_length`."""
    num_noise, num_spans = noise_counts(raw_length, noise_density, mean_noise_span_length)
    return raw_length - num_noise + num_spans + 1, num_noise + num_spans + 1


def random_segmentation(num_items: int, num_segments: int, keys: np.ndarray) -> np.ndarray:
    """Lengths [B, num_segments] of a uniformly random split of `num_items` into positive parts.

    As T5: choose `num_segments - 1` distinct cut points among the `num_items - 1` gaps. `keys` [B, K]
    are the per-row hash keys (uint64) whose low bits order the gaps; rows are independent.
    """
    batch = keys.shape[0]
    if num_segments == 1:
        return np.full((batch, 1), num_items, dtype=np.int64)
    gaps = hashing.hash64(0, keys, np.arange(num_items - 1, dtype=np.int64)[None, :])
    cuts = np.sort(np.argpartition(gaps, num_segments - 2, axis=1)[:, : num_segments - 1], axis=1) + 1
    bounds = np.concatenate(
        [np.zeros((batch, 1), np.int64), cuts.astype(np.int64), np.full((batch, 1), num_items, np.int64)],
        axis=1,
    )
    return np.diff(bounds, axis=1)


def random_spans_noise_mask(
    length: int,
    *,
    seed: int,
    example_ids: np.ndarray,
    draws: np.ndarray,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
) -> np.ndarray:
    """bool [B, length]: True at noise positions; spans alternate non-noise/noise, starting non-noise."""
    example_ids = np.asarray(example_ids, dtype=np.int64)
    draws = np.asarray(draws, dtype=np.int64)
    batch = len(example_ids)
    num_noise, num_spans = noise_counts(length, noise_density, mean_noise_span_length)
    row_key = hashing.hash64(seed, example_ids, draws)[:, None]
    nonnoise = random_segmentation(length - num_noise, num_spans, row_key ^ np.uint64(_SALT_NONNOISE))
    noise = random_segmentation(num_noise, num_spans, row_key ^ np.uint64(_SALT_NOISE))
    span_ends = np.cumsum(np.stack([nonnoise, noise], axis=2).reshape(batch, 2 * num_spans), axis=1)
    starts_indicator = np.zeros((batch, length), dtype=np.int32)
    np.put_along_axis(starts_indicator, span_ends[:, :-1], 1, axis=1)
    return np.cumsum(starts_indicator, axis=1) % 2 == 1


def _first_of_runs(mask: np.ndarray) -> np.ndarray:
    previous = np.concatenate([np.zeros((mask.shape[0], 1), dtype=bool), mask[:, :-1]], axis=1)
    return mask & ~previous


def _replace_runs_with_sentinels(raw: np.ndarray, runs: np.ndarray, layout: VocabLayout) -> np.ndarray:
    """Each run of `runs` becomes one sentinel (numbered from 0 per row); other tokens are kept.

    Every row keeps the same number of tokens (fixed counts), so the result reshapes to [B, n].
    """
    first = _first_of_runs(runs)
    sentinel_index = np.cumsum(first, axis=1) - 1
    values = np.where(first, layout.sentinel(sentinel_index).astype(np.int32), raw)
    keep = ~runs | first
    return values[keep].reshape(raw.shape[0], -1)


def _append(ids: np.ndarray, token: int, length: int, pad: int) -> np.ndarray:
    batch, n = ids.shape
    out = np.full((batch, max(length, n + 1)), pad, dtype=np.int32)
    out[:, :n] = ids
    out[:, n] = token
    return out


def span_corrupt(
    raw: np.ndarray,
    *,
    layout: VocabLayout,
    seed: int,
    example_ids: np.ndarray,
    draws: np.ndarray,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    inputs_length: int = 0,
    targets_length: int = 0,
) -> dict[str, np.ndarray]:
    """Encoder/decoder arrays of the T5 batch dict for raw blocks [B, n] (int32, transformed already).

    Outputs are padded (pad id, masks 0) to `inputs_length` / `targets_length` when those exceed the
    natural lengths; with `random_spans_helper` lengths no padding is needed.
    """
    raw = np.asarray(raw, dtype=np.int32)
    _, num_spans = noise_counts(raw.shape[1], noise_density, mean_noise_span_length)
    if num_spans > layout.num_sentinels:
        raise ConfigError(
            f"span corruption of {raw.shape[1]}-token blocks needs {num_spans} sentinels; the vocabulary "
            f"layout has {layout.num_sentinels} (data.num_sentinels)"
        )
    noise = random_spans_noise_mask(
        raw.shape[1],
        seed=seed,
        example_ids=example_ids,
        draws=draws,
        noise_density=noise_density,
        mean_noise_span_length=mean_noise_span_length,
    )
    pad, eos = layout.specials.pad, layout.specials.eos
    natural_inputs, natural_targets = corrupted_lengths(raw.shape[1], noise_density, mean_noise_span_length)
    inputs = _append(_replace_runs_with_sentinels(raw, noise, layout), eos, inputs_length, pad)
    targets = _append(_replace_runs_with_sentinels(raw, ~noise, layout), eos, targets_length, pad)
    decoder_inputs = np.concatenate(
        [np.full((raw.shape[0], 1), layout.specials.bos, np.int32), targets[:, :-1]], axis=1
    )
    target_mask = np.zeros(targets.shape, dtype=np.float32)
    target_mask[:, :natural_targets] = 1.0
    encoder_mask = np.zeros(inputs.shape, dtype=np.int32)
    encoder_mask[:, :natural_inputs] = 1
    return {
        "encoder_input_ids": inputs,
        "encoder_attention_mask": encoder_mask,
        "decoder_input_ids": decoder_inputs,
        "decoder_targets": targets,
        "decoder_loss_mask": target_mask,
    }
