"""Exact checksums of a checkpoint's arrays, stored next to the input-pipeline state and checked on restore.

A truncated or missing file makes Orbax fail loudly, but a flipped byte inside an uncompressed chunk would
restore as a silently different weight. Each array's checksum is the sum, modulo 2**32, of its elements'
bit patterns times an odd weight derived from the element's position: integer arithmetic, so the value does
not depend on the sharding or reduction order (a checkpoint restored onto another mesh verifies), and any
single flipped bit changes it. It is computed on the devices, in the arrays' own shards: one extra pass
over the state per save and per restore, and a few hundred bytes in the `data` item.

The `data` file itself carries a SHA-256 of its content, so a damaged iterator position is caught too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xlt_jax.errors import CheckpointError

CHECKSUMS_KEY = "_state_checksums"
SHA256_KEY = "_sha256"
_GOLDEN = np.uint32(0x9E3779B1)  # odd: multiplying by it is a bijection modulo 2**32


def _leaf_checksum(x: jax.Array) -> jax.Array:
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = x.dtype.itemsize
    if size > 4:  # 64-bit values become a trailing axis of 32-bit words
        bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    else:
        bits = jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]).astype(jnp.uint32)
    # Row-major element index from per-axis iotas (no reshape: that would regather a sharded array).
    index = jnp.zeros(bits.shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(bits.ndim)):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, bits.shape, axis) * np.uint32(stride % 2**32)
        stride *= bits.shape[axis]
    weights = (index * np.uint32(2) + np.uint32(1)) * _GOLDEN
    return jnp.sum(bits * weights, dtype=jnp.uint32)


@jax.jit
def _tree_checksums(tree: Any) -> Any:
    return jax.tree.map(_leaf_checksum, tree)


def _path_name(path: tuple) -> str:
    return "/".join(str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path)


def checksums(state: Any) -> dict[str, int]:
    """{array path: checksum} of every array leaf of `state` (identical on every host)."""
    sums = _tree_checksums(state)
    flat, _ = jax.tree_util.tree_flatten_with_path(sums)
    # Scalars replicated over the mesh: every host holds the full value in its first local shard.
    return {_path_name(path): int(np.asarray(leaf.addressable_shards[0].data)) for path, leaf in flat}


def _digest(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def seal(data_state: dict[str, Any], sums: Mapping[str, int]) -> dict[str, Any]:
    """The data item to save: the iterator state plus the state's checksums and a digest of both."""
    record = {**data_state, CHECKSUMS_KEY: dict(sums)}
    return {**record, SHA256_KEY: _digest(record)}


def unseal(record: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, int] | None]:
    """(iterator state, state checksums); checksums are None for checkpoints written before they existed."""
    record = dict(record)
    digest = record.pop(SHA256_KEY, None)
    if digest is None:
        return record, None
    if _digest(record) != digest:
        raise CheckpointError("the input-pipeline state file does not match its SHA-256 (damaged data item)")
    sums = record.pop(CHECKSUMS_KEY)
    return record, sums


def verify(state: Any, expected: Mapping[str, int]) -> None:
    """Raise `CheckpointError` naming the arrays of `state` whose checksum differs from the saved one."""
    got = checksums(state)
    wrong = sorted(name for name in got.keys() | expected.keys() if got.get(name) != expected.get(name))
    if wrong:
        shown = ", ".join(wrong[:5]) + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        raise CheckpointError(f"{len(wrong)} restored array(s) differ from what was saved (checksum): {shown}")
