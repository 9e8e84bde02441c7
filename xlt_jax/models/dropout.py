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

import functools
import math

import jax
import jax.numpy as jnp

from xlt_jax.models.platform import traced_platform

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_PARITY = 0x1BD11BDA


def dropout(
    x: jax.Array, rate: float, key: jax.Array, deterministic: bool, rows: jax.Array | None = None
) -> jax.Array:
    """Inverted dropout. The drop rate is quantised to 1/65536 (16-bit draws); scaling uses the realised rate.

    `rows` (integers shaped like `x`'s leading axes), if given, number the rows in place of their row-major
    index: the rows of a larger array gathered into `x` then get exactly the masks they have there.
    """
    if deterministic or rate <= 0.0:
        return x
    return apply_keep_bits(x, keep_bits(key, x.shape, rate, rows), rate)


def keep_bits(key: jax.Array, shape: tuple[int, ...], rate: float, rows: jax.Array | None = None) -> jax.Array:
    """Where dropout at `rate` keeps an element of `shape`, four elements to a byte: bit j of `[..., g]` is
    element `4g + j` of the last axis (uint8 `[..., ceil(n / 4)]`; the draws of `uniform_bits16`).

    Why packed, and written out on CPU: one Threefry evaluation gives the four draws of a byte, but XLA:CPU
    fuses this cheap integer hash into every consumer of the mask, where it runs once per element (four times
    per evaluation) and once per consumer. A `lax.cond` is a fusion boundary XLA:CPU keeps (an
    `optimization_barrier` is expanded before fusion): the bytes are computed once, a quarter of a boolean
    mask's memory, and unpacked in each consumer's fusion. One [8, 8, 512, 512] attention mask: 50 ms fused
    into its consumer, 1.4 ms written out (AMD EPYC). On other platforms the hash stays fused.
    """
    *lead, n = shape
    threshold = jnp.uint32(round(rate * 65536))

    def hashed() -> jax.Array:  # the whole hash inside the branch: its operands would be written out
        x1, x2 = _threefry_draw_words(key, shape, rows)
        halves = (x1 & 0xFFFF, x1 >> 16, x2 & 0xFFFF, x2 >> 16)
        return functools.reduce(
            jnp.bitwise_or, [(h >= threshold).astype(jnp.uint8) << j for j, h in enumerate(halves)]
        )

    if traced_platform() != "cpu":
        return hashed()
    k1 = jax.random.bits(key, (1,), jnp.uint32)[0]  # never zero after `| 1`, which XLA cannot know
    return jax.lax.cond((k1 | 1) != 0, hashed, lambda: jnp.zeros((*lead, -(-n // 4)), jnp.uint8))


def unpack_keep_bits(bits: jax.Array, n: int) -> jax.Array:
    """The boolean mask [..., n] of `keep_bits` (fuses into its consumer)."""
    *lead, groups = bits.shape
    expanded = (bits[..., None] >> jnp.arange(4, dtype=jnp.uint8)) & jnp.uint8(1)
    return expanded.reshape(*lead, 4 * groups)[..., :n].astype(bool)


def apply_keep_bits(x: jax.Array, bits: jax.Array, rate: float) -> jax.Array:
    """Zero the dropped elements of `x` and scale the kept ones by 1 / (1 - realised rate). Linear in `x`, so
    it is also dropout's VJP under the same mask."""
    scale = 65536 / (65536 - round(rate * 65536))
    keep = unpack_keep_bits(bits, x.shape[-1])
    return jnp.where(keep, x * scale, jnp.zeros_like(x)).astype(x.dtype)


def uniform_bits16(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform uint16 draws of `shape` from a typed PRNG key, four per Threefry evaluation."""
    *lead, n = shape
    words = jnp.stack(_threefry_draw_words(key, shape), axis=-1)  # [..., groups, 2] uint32
    draws = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(*lead, -1)
    return draws[..., :n]


def _threefry_draw_words(
    key: jax.Array, shape: tuple[int, ...], rows: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """The two Threefry output words [..., ceil(n / 4)] behind the draws of `shape`: draws 4g, 4g+1 are the low
    and high halves of the first word of group g, draws 4g+2, 4g+3 of the second.

    The counter of each group of four draws is (row over the leading axes, group along the last axis): every
    element has its own counter, so the draws do not depend on how the array is sharded and the computation
    partitions along any axis, as with `jax.random`'s partitionable Threefry. `rows` [*lead], if given, are
    the row counters (see `dropout`).
    """
    *lead, n = shape
    groups = -(-n // 4)
    counter_shape = (*lead, groups)
    if math.prod(lead) >= 2**32 or groups >= 2**32:
        raise ValueError(f"random bits of shape {shape} need counters beyond 32 bits")
    if rows is not None:
        if tuple(rows.shape) != tuple(lead):
            raise ValueError(f"row numbers of shape {rows.shape} for random bits of shape {shape}")
        rows = jnp.broadcast_to(rows.astype(jnp.uint32)[..., None], counter_shape)
    else:
        rows = jnp.zeros(counter_shape, jnp.uint32)
        for axis, stride in enumerate(math.prod(lead[axis + 1 :]) for axis in range(len(lead))):
            rows = rows + jax.lax.broadcasted_iota(jnp.uint32, counter_shape, axis) * jnp.uint32(stride)
    cols = jax.lax.broadcasted_iota(jnp.uint32, counter_shape, len(lead))
    k1, k2 = jax.random.bits(key, (2,), jnp.uint32)  # any key implementation → one Threefry key pair
    return threefry2x32(k1, k2, rows, cols)


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
