"""Pack the `<s> … </s>` line stream into fixed-length blocks (REFERENCE_SPEC §2.1).

The reference (HF `run_mlm`, `group_texts`) concatenates encoded lines and cuts the result into L-token
blocks; lines cut at a block edge continue in the next block, and a remainder shorter than L is dropped.
HF does this per `map` batch of 1000 lines, so it drops one remainder per 1000-line group; `group_lines`
reproduces that (0 = one group, the whole stream). A block is fully described by its start position in the
stream, so packing is just an array of starts and reading a batch is one vectorised gather.
"""

from __future__ import annotations

import numpy as np

from xlt_jax.data.pretrain.shards import ShardedCorpus


def block_starts(line_offsets: np.ndarray, block_len: int, group_lines: int = 0) -> np.ndarray:
    """Stream positions (int64) where the `block_len`-token blocks start.

    `line_offsets` holds the start of every line plus the stream end (as `ShardedCorpus.line_offsets`).
    Each group of `group_lines` lines (all lines when 0) yields `len(group) // block_len` blocks.
    """
    if block_len <= 0:
        raise ValueError(f"block_len must be positive, got {block_len}")
    line_offsets = np.asarray(line_offsets, dtype=np.int64)
    num_lines = len(line_offsets) - 1
    step = group_lines if group_lines > 0 else max(num_lines, 1)
    group_begin = line_offsets[0:num_lines:step]
    group_end = line_offsets[np.minimum(np.arange(step, num_lines + step, step), num_lines)][
        : len(group_begin)
    ]
    counts = (group_end - group_begin) // block_len
    total = int(counts.sum())
    first_block = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rank_in_group = np.arange(total, dtype=np.int64) - np.repeat(first_block, counts)
    return np.repeat(group_begin, counts) + rank_in_group * block_len


def gather_blocks(corpus: ShardedCorpus, starts: np.ndarray, block_len: int) -> np.ndarray:
    """The blocks beginning at `starts` as an int32 array [len(starts), block_len]."""
    starts = np.asarray(starts, dtype=np.int64)
    return corpus.take(starts[:, None] + np.arange(block_len, dtype=np.int64)[None, :])


def pack_stream(stream: np.ndarray, block_len: int) -> np.ndarray:
    """In-memory packing of a flat id stream into [n, block_len] (remainder dropped)."""
    n = len(stream) // block_len
    return np.asarray(stream[: n * block_len], dtype=np.int32).reshape(n, block_len)


def split_train_eval(num_blocks: int, eval_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Block indices of the training part (first blocks) and the held-out part (last `eval_fraction`).

    Holding out the *last* blocks keeps held-out text contiguous and disjoint from training text (only the
    one line straddling the cut is shared); at least one block is held out when the fraction is positive.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    num_eval = int(np.ceil(num_blocks * eval_fraction)) if eval_fraction > 0 else 0
    num_eval = min(num_eval, max(num_blocks - 1, 0))
    cut = num_blocks - num_eval
    return np.arange(cut, dtype=np.int64), np.arange(cut, num_blocks, dtype=np.int64)
