"""Multi-head attention, its additive bias, and two implementations of the attention core.

`model.attention_impl` picks the core: "xla" is plain einsums and softmax, differentiated by JAX; "cpu" is
the same function with a hand-written VJP for XLA:CPU; "auto" is "cpu" when tracing for the CPU backend and
"xla" on every other (the orientations below are for XLA:CPU's kernels; TPU plans compile the plain core).

Why a CPU core: XLA:CPU hands a dot to its fast library (YNNPACK) only when the left operand contracts over
its minor axis. Autodiff's dV = Pᵀ·dO and dK = dSᵀ·Q contract over the query axis of the [Lq, Lk] matrices
and fall back to a generic kernel at ~120 GFLOP/s against 240–360 for the other products (roberta8, length
512, AMD EPYC). Here they are computed transposed (dVᵀ = dOᵀ·P, dKᵀ = Qᵀ·dS) from head-major operands, and
the other four products are written in the orientation YNNPACK takes (the VJP fixes them; left to autodiff,
XLA's layout assignment moved the forward product and dQ into slower ones). The dropout mask is drawn once
and kept for the backward pass: in a scanned layer the backward loop otherwise draws it again, with the hash
fused into its consumer at four Threefry evaluations per 32-bit word. Same values to float rounding and the
same dropout masks; the README gives the gains.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xlt_jax.errors import ConfigError
from xlt_jax.models.dropout import apply_keep_bits, dropout, keep_bits
from xlt_jax.models.layers import constrain, dense
from xlt_jax.models.platform import traced_platform

ATTENTION_IMPLS = ("auto", "xla", "cpu")
_TOKEN_MAJOR = ("batch", "length", "heads", "kv")
_HEAD_MAJOR = ("batch", "heads", "length", "kv")


def check_attention_impl(impl: str) -> str:
    """`impl` if it names an implementation, else a ConfigError naming `model.attention_impl`."""
    if impl not in ATTENTION_IMPLS:
        raise ConfigError(f"model.attention_impl {impl!r} is not one of {list(ATTENTION_IMPLS)}")
    return impl


def resolve_attention_impl(impl: str, platform: str | None = None) -> str:
    """"xla" or "cpu" for `impl` on `platform` (default: the platform being traced for)."""
    if check_attention_impl(impl) != "auto":
        return impl
    return "cpu" if (platform or traced_platform()) == "cpu" else "xla"


def attention_bias(
    query_mask: jax.Array | None, key_mask: jax.Array, *, causal: bool, dtype: Any
) -> jax.Array:
    """Additive attention bias [B, 1, Lq, Lk]: 0 where a query may attend a key, a large negative otherwise.

    `causal` is self-attention: query i sees keys 0..i (Lq = Lk when no query mask is given).
    """
    allowed = key_mask[:, None, None, :].astype(bool)
    if query_mask is not None:
        allowed = allowed & query_mask[:, None, :, None].astype(bool)
    if causal:
        lk = key_mask.shape[-1]
        lq = query_mask.shape[-1] if query_mask is not None else lk
        allowed = allowed & jnp.tril(jnp.ones((lq, lk), dtype=bool))[None, None]
    return jnp.where(allowed, 0.0, jnp.finfo(dtype).min / 2).astype(dtype)


def attention_core(
    q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array, key: jax.Array, *, dropout_rate: float, impl: str
) -> jax.Array:
    """softmax(q·kᵀ + bias) with dropout, times v: q [B, Lq, H, D], k and v [B, Lk, H, D], bias broadcastable
    to [B, H, Lq, Lk]; returns [B, Lq, H, D]. `dropout_rate` 0 is the deterministic call."""
    bias = bias.astype(q.dtype)
    if resolve_attention_impl(impl) == "cpu":
        if bias.ndim != 4:
            raise ValueError(f"attention bias must have 4 axes [B|1, H|1, Lq|1, Lk|1], got shape {bias.shape}")
        return _cpu_core(q, k, v, bias, key, float(dropout_rate))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) + bias
    probs = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(q.dtype)
    probs = dropout(probs, dropout_rate, key, deterministic=False)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


def _head_major(x: jax.Array) -> jax.Array:
    """[B, L, H, D] -> [B, H, L, D]."""
    return constrain(x.transpose(0, 2, 1, 3), _HEAD_MAJOR)


def _forward(q, k, v, bias, key, rate):
    qh, kh, vh = _head_major(q), _head_major(k), _head_major(v)
    scores = jnp.einsum("bhqd,bhkd->bhqk", qh, kh) + bias
    probs = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(q.dtype)
    # The mask is drawn once and kept for the backward pass (a bit per weight), not drawn again there.
    keep = keep_bits(key, probs.shape, rate) if rate > 0 else None
    dropped = apply_keep_bits(probs, keep, rate) if rate > 0 else probs
    context = jnp.einsum("bhqk,bhkd->bhqd", dropped, vh)
    return context.transpose(0, 2, 1, 3), (qh, kh, vh, probs, keep)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _cpu_core(q, k, v, bias, key, rate):
    return _forward(q, k, v, bias, key, rate)[0]


def _cpu_core_fwd(q, k, v, bias, key, rate):
    context, residuals = _forward(q, k, v, bias, key, rate)
    # Of the bias only its broadcast axes and dtype are needed: a zero-size array keeps them (T5's bias is a
    # full [B, H, Lq, Lk] array per layer).
    bias_like = jnp.zeros([1 if n == 1 else 0 for n in bias.shape], bias.dtype)
    return context, (*residuals, bias_like)


def _cpu_core_bwd(rate, residuals, d_context):
    qh, kh, vh, probs, keep, bias_like = residuals
    doh = _head_major(d_context)
    d_probs = jnp.einsum("bhqd,bhkd->bhqk", doh, vh)
    dropped = probs
    if keep is not None:  # dropout is linear: its VJP is the same masked scaling
        d_probs = apply_keep_bits(d_probs, keep, rate)
        # Recomputed rather than kept: one elementwise pass costs less than saving (in a rolled stack,
        # stacking) another [B, H, Lq, Lk] array (roberta8 8 × 512 step, unrolled layers: keeping it +1.3%).
        dropped = apply_keep_bits(probs, keep, rate)
    p32, dp32 = probs.astype(jnp.float32), d_probs.astype(jnp.float32)
    d_scores = (p32 * (dp32 - jnp.sum(dp32 * p32, axis=-1, keepdims=True))).astype(qh.dtype)
    dv_t = jnp.einsum("bhdq,bhqk->bhdk", doh.swapaxes(2, 3), dropped)
    dk_t = jnp.einsum("bhdq,bhqk->bhdk", qh.swapaxes(2, 3), d_scores)
    dq = jnp.einsum("bhqk,bhkd->bhqd", d_scores, kh)
    broadcast = tuple(i for i, n in enumerate(bias_like.shape) if n == 1 and d_scores.shape[i] != 1)
    d_bias = jnp.sum(d_scores, axis=broadcast, keepdims=True).astype(bias_like.dtype)
    return dq.transpose(0, 2, 1, 3), dk_t.transpose(0, 3, 1, 2), dv_t.transpose(0, 3, 1, 2), d_bias, None


_cpu_core.defvjp(_cpu_core_fwd, _cpu_core_bwd)


class MultiHeadAttention(nnx.Module):
    """Multi-head attention with [embed]→[heads, kv] projections.

    `scale_at_runtime=True` divides scores by √head_dim (BERT/RoBERTa); T5 instead folds that factor into the
    query kernel's initialiser (`query_init`), so the runtime product is unscaled.
    """

    def __init__(
        self,
        hidden: int,
        heads: int,
        head_dim: int,
        *,
        use_bias: bool,
        kernel_init: Any,
        query_init: Any | None = None,
        scale_at_runtime: bool,
        dropout_rate: float,
        dtype: Any,
        param_dtype: Any,
        rngs: nnx.Rngs,
        impl: str = "auto",
    ):
        proj = dict(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        in_names = ("embed", "heads", "kv")
        self.query = dense(hidden, (heads, head_dim), in_names, kernel_init=query_init or kernel_init, **proj)
        self.key = dense(hidden, (heads, head_dim), in_names, kernel_init=kernel_init, **proj)
        self.value = dense(hidden, (heads, head_dim), in_names, kernel_init=kernel_init, **proj)
        self.out = dense((heads, head_dim), hidden, ("heads", "kv", "embed"), kernel_init=kernel_init, **proj)
        self.scale = 1.0 / np.sqrt(head_dim) if scale_at_runtime else 1.0
        self.dropout_rate = dropout_rate
        self.impl = check_attention_impl(impl)  # fails at construction; "auto" resolves when traced

    def __call__(
        self, inputs_q: jax.Array, inputs_kv: jax.Array, bias: jax.Array, *, key: jax.Array, deterministic: bool
    ) -> jax.Array:
        context = self.context(inputs_q, inputs_kv, bias, key=key, deterministic=deterministic)
        return self.project_out(context)

    def project_out(self, context: jax.Array) -> jax.Array:
        """The output projection of `context` [..., heads, kv] (any rows of it) to [..., embed]."""
        return constrain(self.out(context), ("batch", "length", "embed"))

    def context(
        self, inputs_q: jax.Array, inputs_kv: jax.Array, bias: jax.Array, *, key: jax.Array, deterministic: bool
    ) -> jax.Array:
        """The attention-weighted values [B, Lq, heads, kv], before the output projection."""
        q = constrain(self.query(inputs_q), _TOKEN_MAJOR)
        k = constrain(self.key(inputs_kv), _TOKEN_MAJOR)
        v = constrain(self.value(inputs_kv), _TOKEN_MAJOR)
        if self.scale != 1.0:
            q = q * jnp.asarray(self.scale, q.dtype)
        rate = 0.0 if deterministic else self.dropout_rate
        return constrain(attention_core(q, k, v, bias, key, dropout_rate=rate, impl=self.impl), _TOKEN_MAJOR)
