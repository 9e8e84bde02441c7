"""Cross-entropy of the gathered MLM rows, projected only as far as the batch uses them.

The data pipeline gathers a fixed budget of P rows per group (`data.max_predictions_per_seq`), sized so that a
group almost never holds more predictions; so a quarter or more of those rows are padding (weight 0), and each
costs the vocabulary projection a real row costs. With `model.prediction_tiers` = T > 1 the head projects the
smallest of T row counts (the tiers: multiples of 8 from about P/2 to P) that covers every group's last
predicted row, chosen per batch on the device by `lax.switch`: every branch has static shapes, the loss and
gradients are those of all P rows (the rows left out have weight 0), and the work is close to that of the
exact number of predictions, as a PyTorch loop gets from a dynamic shape.

Why a hand-written VJP rather than autodiff of the switch: autodiff keeps the residuals of every branch,
zero-filled in the branches not taken. Here the forward writes one residual, the softmax of the rows it
projected, padded to [G, P, V], and the backward switches on the same tier. It also forms the logits'
cotangent (softmax - one-hot) x cotangent in one pass and computes the bias gradient as a product, as
`layers.tied_logits` does.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from xlt_jax.models.layers import constrain
from xlt_jax.models.platform import traced_platform

_OVER_ROWS = (((0,), (0,)), ((), ()))  # dot_general dimension numbers: contract the row axis of both
AUTO_CPU_TIERS = 8


def resolve_count(value: int, platform: str | None = None) -> int:
    """Tiers for `model.prediction_tiers` = `value` on `platform` (default: the platform being traced for).

    0 (auto) is 8 on CPU and 1 (the whole budget, no switch) elsewhere. On a CPU the rows left out are the
    step's time (roberta8 with the transliteration vocabulary: 3.8% of the step). In the paper's TPU plan
    they would be about 2% of the FLOPs by estimate (120 rows per sequence of 512, one tier for the whole
    batch of 128, so set by its fullest sequence: ~104), while the float32 softmax this VJP keeps raised the
    temporaries by 7% (largest v3-8 batch 424 → 400) and the 8 branches the compile from 50 to 61 s (v3-8)
    and 59 to 92 s (v4-8).
    """
    if value:
        return value
    return AUTO_CPU_TIERS if (platform or traced_platform()) == "cpu" else 1


def tiers(rows: int, count: int, multiple: int = 8) -> tuple[int, ...]:
    """The row counts the head may project per group: `count` of them, multiples of `multiple` spread evenly
    from rows/2 to `rows` (the last is `rows` itself), or just `rows` when `count` <= 1."""
    if count <= 1 or rows <= multiple:
        return (rows,)
    low = rows / 2
    steps = (low + (rows - low) * i / (count - 1) for i in range(count))
    return tuple(sorted({min(rows, multiple * math.ceil(s / multiple)) for s in steps}))


def tier_for(weights: np.ndarray, rows_tiers: tuple[int, ...]) -> int:
    """Host-side: the tier the device picks for a batch's `mlm_weights` [G, P] (bench FLOP counts use it)."""
    weights = np.asarray(weights)
    used = int(np.max(np.where(weights > 0, np.arange(1, weights.shape[-1] + 1), 0), initial=0))
    return rows_tiers[int(np.searchsorted(rows_tiers, used, side="left"))]


def projected_rows(weights: np.ndarray, count: int) -> int:
    """Host-side: rows the head projects for a batch's `mlm_weights` [G, P] with `count` tiers (all groups)."""
    weights = np.asarray(weights)
    return weights.shape[0] * tier_for(weights, tiers(weights.shape[-1], count))


def _tier_index(weights: jax.Array, rows_tiers: tuple[int, ...]) -> jax.Array:
    """Index of the smallest tier that covers every group's last row of nonzero weight."""
    last = jnp.max(jnp.where(weights > 0, jnp.arange(1, weights.shape[-1] + 1), 0))
    return jnp.searchsorted(jnp.asarray(rows_tiers), jax.lax.stop_gradient(last), side="left")


def _pad_rows(x: jax.Array, rows: int) -> jax.Array:
    """`x` [G, m, ...] padded with zeros to [G, rows, ...]."""
    return jnp.pad(x, [(0, 0), (0, rows - x.shape[1])] + [(0, 0)] * (x.ndim - 2))


def _projected(m: int, keep_softmax: bool):
    """The forward of tier `m`: per-row cross-entropy and correctness (and the softmax) of the first m rows."""

    def run(h: jax.Array, embedding: jax.Array, bias: jax.Array, targets: jax.Array):
        rows = h.shape[1]
        logits = jnp.einsum("gpe,ve->gpv", h[:, :m], embedding) + bias
        logits = constrain(logits.astype(jnp.float32), ("batch", "length", "vocab"))
        lse = jax.nn.logsumexp(logits, axis=-1)
        target_logit = jnp.take_along_axis(logits, targets[:, :m, None], axis=-1)[..., 0]
        # Correct = the target's logit is the row maximum (losses.row_cross_entropy says why not argmax).
        correct = (target_logit >= jnp.max(logits, axis=-1)).astype(jnp.float32)
        out = (_pad_rows(lse - target_logit, rows), _pad_rows(correct, rows))
        if keep_softmax:
            out += (_pad_rows(jnp.exp(logits - lse[..., None]), rows),)
        return out

    return run


def _switch(index: jax.Array, rows_tiers: tuple[int, ...], keep_softmax: bool, *args):
    return jax.lax.switch(index, [_projected(m, keep_softmax) for m in rows_tiers], *args)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _tiered(rows_tiers, h, embedding, bias, targets, index):
    return _switch(index, rows_tiers, False, h, embedding.astype(h.dtype), bias.astype(h.dtype), targets)


def _tiered_fwd(rows_tiers, h, embedding, bias, targets, index):
    ce, correct, softmax = _switch(
        index, rows_tiers, True, h, embedding.astype(h.dtype), bias.astype(h.dtype), targets
    )
    return (ce, correct), (h, embedding, bias, targets, index, softmax)


def _backward(m: int):
    """The backward of tier `m`: gradients of h, the embedding and the bias from the first m rows."""

    def run(h: jax.Array, embedding: jax.Array, softmax: jax.Array, targets: jax.Array, g: jax.Array):
        groups, rows, width = h.shape
        vocab = embedding.shape[0]
        one_hot = jnp.arange(vocab) == targets[:, :m, None]
        d_logits = ((softmax[:, :m] - one_hot) * g[:, :m, None]).astype(h.dtype).reshape(-1, vocab)
        h_rows = h[:, :m].reshape(-1, width)
        d_h = jnp.dot(d_logits, embedding.astype(h.dtype), preferred_element_type=jnp.float32)
        d_embedding = jax.lax.dot_general(d_logits, h_rows, _OVER_ROWS, preferred_element_type=jnp.float32)
        d_bias = jnp.dot(jnp.ones((d_logits.shape[0],), d_logits.dtype), d_logits,
                         preferred_element_type=jnp.float32)  # fmt: skip
        return _pad_rows(d_h.astype(h.dtype).reshape(groups, m, width), rows), d_embedding, d_bias

    return run


def _tiered_bwd(rows_tiers, residuals, cotangents):
    h, embedding, bias, targets, index, softmax = residuals
    g_ce, _ = cotangents  # `correct` is a step function of the logits: no gradient flows through it
    d_h, d_embedding, d_bias = jax.lax.switch(
        index, [_backward(m) for m in rows_tiers], h, embedding, softmax, targets, g_ce.astype(jnp.float32)
    )
    return d_h, d_embedding.astype(embedding.dtype), d_bias.astype(bias.dtype), None, None


_tiered.defvjp(_tiered_fwd, _tiered_bwd)


def cross_entropy(
    h: jax.Array,
    embedding: jax.Array,
    bias: jax.Array,
    targets: jax.Array,
    weights: jax.Array,
    *,
    count: int,
) -> tuple[jax.Array, jax.Array]:
    """Per-row cross-entropy and correctness (float32 [G, P]) of the tied decoder `h @ embeddingᵀ + bias` on
    the transformed gathered rows `h` [G, P, E], projecting only the smallest of `count` tiers that covers the
    last row of nonzero `weights` [G, P] in any group; rows past it read 0 (and have weight 0)."""
    rows_tiers = tiers(h.shape[1], count)
    return _tiered(rows_tiers, h, embedding, bias, targets, _tier_index(weights, rows_tiers))
