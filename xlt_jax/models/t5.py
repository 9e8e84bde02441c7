"""T5 v1.1-style encoder-decoder trained by span corruption (REFERENCE_SPEC §3.4, after t5x's network.py).

Pre-norm blocks with RMSNorm (eps 1e-6, scale only) and a final norm per stack, no biases anywhere,
gated-GELU FFN (wi_0, wi_1, wo), per-stack relative position biases (32 buckets, max distance 128;
bidirectional in the encoder, causal in the decoder) shared by all layers of the stack, no runtime 1/√d
(folded into the query initialiser), one shared input embedding, untied output logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xlt_jax.data.vocab import SPECIALS
from xlt_jax.models.attention import MultiHeadAttention, attention_bias
from xlt_jax.models.layers import (
    GatedMlp,
    RelativePositionBias,
    axes,
    constrain,
    dense,
    dropout,
    resolve_dtype,
    rms_norm,
)
from xlt_jax.models.losses import token_cross_entropy
from xlt_jax.models.presets import ModelSpec
from xlt_jax.models.stack import LayerStack

RMS_EPS = 1e-6
PAD_ID = SPECIALS.pad

# t5x initialisers: attention kernels variance_scaling(1, fan_in, normal), MLP and logits truncated normal,
# embedding N(0, 1). Fan-in is taken on the flattened 2-D kernel (see layers.dense).
ATTENTION_INIT = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal")
MLP_INIT = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
EMBED_INIT = jax.nn.initializers.normal(1.0)


def _query_init(head_dim: int):
    """The attention kernel init divided by √head_dim: T5's substitute for scaling scores at runtime."""

    def init(key, shape, dtype=jnp.float32):
        return ATTENTION_INIT(key, shape, dtype) / np.sqrt(head_dim).astype(dtype)

    return init


def _attention(spec: ModelSpec, rngs: nnx.Rngs) -> MultiHeadAttention:
    return MultiHeadAttention(
        spec.hidden, spec.heads, spec.head_dim, use_bias=False, kernel_init=ATTENTION_INIT,
        query_init=_query_init(spec.head_dim), scale_at_runtime=False, dropout_rate=spec.dropout,
        dtype=resolve_dtype(spec.dtype), param_dtype=resolve_dtype(spec.param_dtype), rngs=rngs,
        impl=spec.attention_impl,
    )


def _norm(spec: ModelSpec, rngs: nnx.Rngs) -> nnx.RMSNorm:
    return rms_norm(
        spec.hidden, eps=RMS_EPS, dtype=resolve_dtype(spec.dtype), param_dtype=resolve_dtype(spec.param_dtype),
        rngs=rngs,
    )


def _mlp(spec: ModelSpec, rngs: nnx.Rngs) -> GatedMlp:
    return GatedMlp(
        spec.hidden, spec.mlp, dropout_rate=spec.dropout, kernel_init=MLP_INIT, dtype=resolve_dtype(spec.dtype),
        param_dtype=resolve_dtype(spec.param_dtype), rngs=rngs,
    )


class T5EncoderLayer(nnx.Module):
    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        self.pre_attention_norm = _norm(spec, rngs)
        self.attention = _attention(spec, rngs)
        self.pre_mlp_norm = _norm(spec, rngs)
        self.mlp = _mlp(spec, rngs)
        self.dropout_rate = spec.dropout

    def __call__(self, x: jax.Array, bias: jax.Array, *, key: jax.Array, deterministic: bool) -> jax.Array:
        k = jax.random.split(key, 4)
        h = self.pre_attention_norm(x)
        x = x + dropout(self.attention(h, h, bias, key=k[0], deterministic=deterministic), self.dropout_rate, k[1],
                        deterministic)
        h = self.mlp(self.pre_mlp_norm(x), key=k[2], deterministic=deterministic)
        x = x + dropout(h, self.dropout_rate, k[3], deterministic)
        return constrain(x, ("batch", "length", "embed"))


class T5DecoderLayer(nnx.Module):
    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        self.pre_self_attention_norm = _norm(spec, rngs)
        self.self_attention = _attention(spec, rngs)
        self.pre_cross_attention_norm = _norm(spec, rngs)
        self.encoder_decoder_attention = _attention(spec, rngs)
        self.pre_mlp_norm = _norm(spec, rngs)
        self.mlp = _mlp(spec, rngs)
        self.dropout_rate = spec.dropout

    def __call__(
        self,
        y: jax.Array,
        self_bias: jax.Array,
        encoded: jax.Array,
        cross_bias: jax.Array,
        *,
        key: jax.Array,
        deterministic: bool,
    ) -> jax.Array:
        k = jax.random.split(key, 6)
        rate = self.dropout_rate
        h = self.pre_self_attention_norm(y)
        h = self.self_attention(h, h, self_bias, key=k[0], deterministic=deterministic)
        y = y + dropout(h, rate, k[1], deterministic)
        h = self.pre_cross_attention_norm(y)
        h = self.encoder_decoder_attention(h, encoded, cross_bias, key=k[2], deterministic=deterministic)
        y = y + dropout(h, rate, k[3], deterministic)
        h = self.mlp(self.pre_mlp_norm(y), key=k[4], deterministic=deterministic)
        y = y + dropout(h, rate, k[5], deterministic)
        return constrain(y, ("batch", "length", "embed"))


def _relpos(spec: ModelSpec, *, bidirectional: bool, rngs: nnx.Rngs) -> RelativePositionBias:
    return RelativePositionBias(
        spec.heads, num_buckets=spec.relpos_buckets, max_distance=spec.relpos_max_distance,
        bidirectional=bidirectional, dtype=resolve_dtype(spec.dtype), param_dtype=resolve_dtype(spec.param_dtype),
        rngs=rngs,
    )


class T5Encoder(nnx.Module):
    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        self.relpos_bias = _relpos(spec, bidirectional=True, rngs=rngs)
        self.stack = LayerStack(
            lambda r: T5EncoderLayer(spec, rngs=r), spec.num_layers, scan=spec.scan_layers,
            unroll=spec.scan_unroll, remat_policy=spec.remat_policy, rngs=rngs,
        )
        self.final_norm = _norm(spec, rngs)
        self.dropout_rate = spec.dropout

    def __call__(
        self, x: jax.Array, mask: jax.Array, *, key: jax.Array, deterministic: bool, collect: bool = False
    ) -> list[jax.Array]:
        """Returns [final output] or, with `collect`, [embedding, layer 1, …, layer N-1, final output]
        (Hugging Face's `hidden_states` convention: the last entry is after the final norm)."""
        k = jax.random.split(key, 3)
        x = dropout(x, self.dropout_rate, k[0], deterministic)
        length = x.shape[1]
        bias = attention_bias(None, mask, causal=False, dtype=x.dtype) + self.relpos_bias(length, length)
        out, per_layer = self.stack(x, bias, key=k[1], deterministic=deterministic, collect=collect)
        out = dropout(self.final_norm(out), self.dropout_rate, k[2], deterministic)
        out = constrain(out, ("batch", "length", "embed"))
        return [x, *per_layer[:-1], out] if collect else [out]


class T5Decoder(nnx.Module):
    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        self.relpos_bias = _relpos(spec, bidirectional=False, rngs=rngs)
        self.stack = LayerStack(
            lambda r: T5DecoderLayer(spec, rngs=r), spec.num_decoder_layers, scan=spec.scan_layers,
            unroll=spec.scan_unroll, remat_policy=spec.remat_policy, rngs=rngs,
        )
        self.final_norm = _norm(spec, rngs)
        self.logits_dense = dense(
            spec.hidden, spec.vocab_size, ("embed", "vocab"), use_bias=False, kernel_init=MLP_INIT,
            dtype=resolve_dtype(spec.dtype), param_dtype=resolve_dtype(spec.param_dtype), rngs=rngs,
        )
        self.dropout_rate = spec.dropout

    def __call__(
        self,
        y: jax.Array,
        decoder_mask: jax.Array,
        encoded: jax.Array,
        encoder_mask: jax.Array,
        *,
        key: jax.Array,
        deterministic: bool,
    ) -> jax.Array:
        k = jax.random.split(key, 3)
        y = dropout(y, self.dropout_rate, k[0], deterministic)
        length = y.shape[1]
        self_bias = attention_bias(None, decoder_mask, causal=True, dtype=y.dtype) + self.relpos_bias(length, length)
        cross_bias = attention_bias(None, encoder_mask, causal=False, dtype=y.dtype)
        y, _ = self.stack(y, self_bias, encoded, cross_bias, key=k[1], deterministic=deterministic)
        y = dropout(self.final_norm(y), self.dropout_rate, k[2], deterministic)
        return constrain(self.logits_dense(y), ("batch", "length", "vocab"))


class T5(nnx.Module):
    """Encoder-decoder. Interface: `loss`, `__call__` (teacher-forced logits), `encode`, `decode`."""

    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        self.spec = spec
        self.shared_embedding = nnx.Embed(
            spec.vocab_size, spec.hidden, embedding_init=EMBED_INIT, embedding_metadata=axes("vocab", "embed"),
            dtype=resolve_dtype(spec.dtype), param_dtype=resolve_dtype(spec.param_dtype), rngs=rngs,
        )
        self.encoder = T5Encoder(spec, rngs=rngs)
        self.decoder = T5Decoder(spec, rngs=rngs)
        self.dropout_rngs = nnx.Rngs(dropout=rngs.dropout())

    def _key(self, deterministic: bool, dropout_rng: jax.Array | None) -> jax.Array:
        if deterministic:
            return jax.random.key(0)  # unused: every dropout is the identity
        return dropout_rng if dropout_rng is not None else self.dropout_rngs.dropout()

    def _embed(self, ids: jax.Array) -> jax.Array:
        return constrain(self.shared_embedding(ids), ("batch", "length", "embed"))

    def encode(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        *,
        deterministic: bool = True,
        return_all_layers: bool = False,
        dropout_rng: jax.Array | None = None,
    ) -> jax.Array | list[jax.Array]:
        """Encoder output [B, L, hidden] (after the final norm), or the list of all hidden states."""
        states = self.encoder(
            self._embed(input_ids), attention_mask, key=self._key(deterministic, dropout_rng),
            deterministic=deterministic, collect=return_all_layers,
        )
        return states if return_all_layers else states[0]

    def decode(
        self,
        encoded: jax.Array,
        encoder_attention_mask: jax.Array,
        decoder_input_ids: jax.Array,
        *,
        deterministic: bool = True,
        dropout_rng: jax.Array | None = None,
    ) -> jax.Array:
        """Teacher-forced decoder logits [B, Lt, vocab] (causal: position t sees decoder inputs ≤ t)."""
        decoder_mask = decoder_input_ids != PAD_ID
        return self.decoder(
            self._embed(decoder_input_ids), decoder_mask, encoded, encoder_attention_mask,
            key=self._key(deterministic, dropout_rng), deterministic=deterministic,
        )

    def __call__(
        self,
        encoder_input_ids: jax.Array,
        encoder_attention_mask: jax.Array,
        decoder_input_ids: jax.Array,
        *,
        deterministic: bool = True,
        dropout_rng: jax.Array | None = None,
    ) -> jax.Array:
        k_enc, k_dec = jax.random.split(self._key(deterministic, dropout_rng))
        encoded = self.encode(
            encoder_input_ids, encoder_attention_mask, deterministic=deterministic, dropout_rng=k_enc
        )
        return self.decode(
            encoded, encoder_attention_mask, decoder_input_ids, deterministic=deterministic, dropout_rng=k_dec
        )

    def loss(
        self, batch: dict[str, jax.Array], *, deterministic: bool, dropout_rng: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean span-corruption cross-entropy over `decoder_loss_mask` (+ z-loss) and the metric sums."""
        logits = self(
            batch["encoder_input_ids"], batch["encoder_attention_mask"], batch["decoder_input_ids"],
            deterministic=deterministic, dropout_rng=dropout_rng,
        )
        return token_cross_entropy(
            logits, batch["decoder_targets"], batch["decoder_loss_mask"], batch["lang_id"],
            num_langs=self.spec.num_langs, z_loss=self.spec.z_loss,
        )


def training_flops_per_sequence(spec: ModelSpec, input_len: int, target_len: int) -> float:
    """Analytic FLOPs of one training step on one (inputs, targets) pair; 6 × matmul multiply-adds.

    Encoder token: 4·d·inner attention projections + 3·d·mlp gated FFN per layer, plus QKᵀ/PV
    (2·input_len·inner). Decoder token: self-attention projections (4·d·inner), cross-attention query and
    output (2·d·inner), FFN (3·d·mlp), QKᵀ/PV over targets and inputs (2·(target_len + input_len)·inner) per
    layer, plus the logits (d·V). Cross-attention keys/values: 2·d·inner per encoder token per decoder layer.
    """
    d, inner, mlp = spec.hidden, spec.heads * spec.head_dim, spec.mlp
    le, ld = spec.num_layers, spec.num_decoder_layers
    enc = le * (4 * d * inner + 3 * d * mlp + 2 * input_len * inner) + ld * 2 * d * inner
    dec = ld * (6 * d * inner + 3 * d * mlp + 2 * (target_len + input_len) * inner) + d * spec.vocab_size
    return 6.0 * (input_len * enc + target_len * dec)
