"""Dropout with explicit keys, and the counter-based random bits behind its masks.

Layers own parameters only and take dropout keys as arguments, so a scanned stack carries no RNG state and
the same weights run identically under `nnx.scan` or a Python loop (see layers.py).

The masks are drawn with Threefry-2x32, the generator of `jax.random`, written out here for speed on CPU:
`jax.random.bits(key, shape, jnp.uint16)` spends a whole 64-bit evaluation on each 16-bit draw, and jax lowers
Threefry on CPU as a rolled 5-step loop, one set of fusions per step. Both together made dropout masks ~10% of
the roberta8 CPU train step. Here one evaluation gives four draws and the 20 rounds are unrolled (as jax
already lowers them on TPU and GPU); the hash is bit-identical to jax's `threefry2x32_p` (tested).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_PARITY = 0x1BD11BDA


def dropout(x: jax.Array, rate: float, key: jax.Array, deterministic: bool) -> jax.Array:
    """Inverted dropout. The drop rate is quantised to 1/65536 (16-bit draws); scaling uses the realised rate."""
    if deterministic or rate <= 0.0:
        return x
    return apply_keep_mask(x, keep_mask(key, x.shape, rate), rate)


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
    """Where dropout at `rate` keeps an element (boolean, `shape`)."""
    return uniform_bits16(key, shape) >= round(rate * 65536)


def apply_keep_mask(x: jax.Array, keep: jax.Array, rate: float) -> jax.Array:
    """Zero the dropped elements of `x` and scale the kept ones by 1 / (1 - realised rate). Linear in `x`, so
    it is also dropout's VJP under the same mask."""
    scale = 65536 / (65536 - round(rate * 65536))
    return jnp.where(keep, x * scale, jnp.zeros_like(x)).astype(x.dtype)


def uniform_bits16(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform uint16 draws of `shape` from a typed PRNG key, four per Threefry evaluation.

    The counter of each group of four draws is (row over the leading axes, group along the last axis): every
    element has its own counter, so the draws do not depend on how the array is sharded and the computation
    partitions along any axis, as with `jax.random`'s partitionable Threefry.
    """
    *lead, n = shape
    groups = -(-n // 4)
    counter_shape = (*lead, groups)
    if math.prod(lead) >= 2**32 or groups >= 2**32:
        raise ValueError(f"random bits of shape {shape} need counters beyond 32 bits")
    rows = jnp.zeros(counter_shape, jnp.uint32)
    for axis, stride in enumerate(math.prod(lead[axis + 1 :]) for axis in range(len(lead))):
        rows = rows + jax.lax.broadcasted_iota(jnp.uint32, counter_shape, axis) * jnp.uint32(stride)
    cols = jax.lax.broadcasted_iota(jnp.uint32, counter_shape, len(lead))
    k1, k2 = jax.random.bits(key, (2,), jnp.uint32)  # any key implementation → one Threefry key pair
    words = jnp.stack(threefry2x32(k1, k2, rows, cols), axis=-1)  # [..., groups, 2] uint32
    draws = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(*lead, 4 * groups)
    return draws[..., :n]


def threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32, 20 rounds (Salmon et al., SC 2011): hashes the counter pairs (x1, x2) under key (k1, k2).

    The same function as jax's `threefry2x32_p` (uint32 arrays, broadcast together), unrolled.
    """
    ks = (k1, k2, k1 ^ k2 ^ jnp.uint32(_KEY_PARITY))
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = x1 ^ ((x2 << r) | (x2 >> (32 - r)))
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x1, x2
