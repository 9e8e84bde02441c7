"""Temperature sampling over languages (XLM / XLM-R / mT5 style, REFERENCE_SPEC §2.2).

With n_l examples of language l, p_l = n_l / Σ n and q_l = p_l^α / Σ_k p_k^α, exactly as XLM's
`set_sampling_probs` (α = `lg_sampling_factor`; XLM's -1 "natural proportions" is α = 1 here).
α < 1 flattens the distribution towards low-resource languages; α → 0 tends to uniform.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from xlt_jax.data import hashing

# Salt that separates the language-choice stream from other draws keyed by the same (seed, position).
_LANGUAGE_SALT = 0x1A46


def _as_named_counts(counts: Mapping[str, int] | np.ndarray) -> tuple[list[str], np.ndarray]:
    if isinstance(counts, Mapping):
        names = [str(k) for k in counts]
        values = np.asarray([counts[k] for k in counts], dtype=np.float64)
    else:
        values = np.asarray(counts, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"counts must be one-dimensional, got shape {values.shape}")
        names = [f"#{i}" for i in range(values.shape[0])]
    return names, values


def temperature_probs(counts: Mapping[str, int] | np.ndarray, alpha: float) -> np.ndarray:
    """Sampling probabilities q_l ∝ p_l^α, in the order of `counts` (a mapping's iteration order).

    Languages with a zero count get q = 0 for every α (nothing can be drawn from them). Negative or
    non-finite counts, an all-zero total and α ≤ 0 or non-finite raise `ValueError`.
    """
    names, values = _as_named_counts(counts)
    if not values.size:
        raise ValueError("temperature_probs needs at least one language")
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a positive finite number (1 = natural proportions), got {alpha}")
    for name, value in zip(names, values, strict=True):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"language {name!r}: count must be a non-negative number, got {value}")
    total = values.sum()
    if total <= 0:
        raise ValueError(f"all counts are zero (languages {', '.join(names)}): nothing to sample")
    p = values / total
    # Raising in log space keeps tiny proportions from underflowing to 0 for small α.
    with np.errstate(divide="ignore"):
        log_q = np.where(p > 0, alpha * np.log(p), -np.inf)
    q = np.exp(log_q - log_q.max())
    return q / q.sum()


def sample_languages(probs: np.ndarray, seed: int, positions: np.ndarray | int) -> np.ndarray:
    """Language index (int32) for each global sequence position, drawn from `probs`.

    Each draw is a pure function of (seed, position) via `hashing.uniform`, so the language of
    sequence k does not depend on batch size, host count or iteration order. Vectorised over any
    shape of `positions`.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1 or not probs.size or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
        raise ValueError(f"probs must be a 1-D probability vector, got {probs!r}")
    cdf = np.cumsum(probs)
    # Guard against rounding: u < 1 must land in the last bin that has mass, never in a trailing empty one.
    cdf[np.flatnonzero(probs)[-1] :] = 1.0
    u = hashing.uniform(seed, _LANGUAGE_SALT, np.asarray(positions, dtype=np.int64))
    # side="right": u falls in [cdf[i-1], cdf[i]); zero-probability bins are empty and never drawn.
    idx = np.searchsorted(cdf, u, side="right")
    return np.minimum(idx, probs.size - 1).astype(np.int32)
