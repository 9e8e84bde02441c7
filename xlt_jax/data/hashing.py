"""Counter-based randomness for host-side data code.

Every random decision of the input pipeline (masking, permutation, span noise) is a pure function of
(seed, example id, position, salt). This is what makes batches independent of batch size, host count
and iteration order, and it vectorises over whole batches. NumPy's Generator API is stateful and per
stream, so it cannot give per-element keys without one generator per example; hence this small hash.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection on uint64 with good avalanche."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def hash64(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """uint64 hash of (seed, *keys); the keys broadcast against each other."""
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(seed, dtype=np.uint64) + _GOLDEN)
        for key in keys:
            k = np.asarray(key).astype(np.int64).view(np.uint64)
            h = _mix(h ^ (k + _GOLDEN + (h << np.uint64(6)) + (h >> np.uint64(2))))
        return h


def uniform(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """Uniform floats in [0, 1) keyed by (seed, *keys), broadcast like `hash64`."""
    return (hash64(seed, *keys) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def randint(seed: int, low: int, high: int, *keys: np.ndarray | int) -> np.ndarray:
    """Integers in [low, high) keyed by (seed, *keys)."""
    span = np.uint64(high - low)
    return (hash64(seed, *keys) % span).astype(np.int64) + low


def rng(seed: int, *keys: int) -> np.random.Generator:
    """A NumPy Generator for one (seed, *keys) stream, for per-example sequential draws."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(int(k) & 0xFFFFFFFFFFFF for k in keys)])
