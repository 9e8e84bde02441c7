"""RoBERTa encoder with the MLM head, as the paper's `RobertaForMaskedLM` (REFERENCE_SPEC §3.1).

Post-LN blocks, learned absolute positions with RoBERTa's padding offset (real tokens count from pad_id + 1
= 2, so max_len + 2 position rows), one token-type row, GELU (erf), LayerNorm eps 1e-5, N(0, 0.02) init with
the padding rows zeroed as Hugging Face does, and an MLM decoder tied to the word embeddings plus a bias.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from xlt_jax.data.vocab import SPECIALS
from xlt_jax.models import prediction_tiers
from xlt_jax.models.attention import MultiHeadAttention, attention_bias
from xlt_jax.models.heads import MlmHead
from xlt_jax.models.layers import (
    Mlp,
    axes,
    constrain,
    dropout,
    layer_norm,
    resolve_dtype,
)
from xlt_jax.models.losses import token_cross_entropy, weighted_sums
from xlt_jax.models.presets import ModelSpec
from xlt_jax.models.stack import LayerStack

LAYER_NORM_EPS = 1e-5
INIT_STD = 0.02
PAD_ID = SPECIALS.pad


def _normal_with_zero_row(row: int) -> Any:
    """N(0, 0.02) with one row zeroed (HF `_init_weights` zeroes `padding_idx` rows)."""
    base = jax.nn.initializers.normal(INIT_STD)

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return base(key, shape, dtype).at[row].set(0)

    return init


def position_ids(attention_mask: jax.Array, pad_id: int = PAD_ID) -> jax.Array:
    """RoBERTa positions: pad_id + 1, pad_id + 2, … over real tokens; padding gets pad_id.

    Counted over the attention mask (HF counts `input_ids != pad`, the same thing for well-formed batches).
    """
    mask = attention_mask.astype(jnp.int32)
    return jnp.cumsum(mask, axis=1) * mask + pad_id


class RobertaEmbeddings(nnx.Module):
    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        dtype, param_dtype = resolve_dtype(spec.dtype), resolve_dtype(spec.param_dtype)
        emb = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.word_embeddings = nnx.Embed(
            spec.vocab_size, spec.hidden, embedding_init=_normal_with_zero_row(PAD_ID),
            embedding_metadata=axes("vocab", "embed"), **emb,
        )
        # Position rows are not a model axis of their own; left unnamed (replicated along that dimension).
        self.position_embeddings = nnx.Embed(
            spec.max_len + PAD_ID + 1, spec.hidden, embedding_init=_normal_with_zero_row(PAD_ID),
            embedding_metadata=axes(None, "embed"), **emb,
        )
        self.token_type_embeddings = nnx.Embed(
            1, spec.hidden, embedding_init=jax.nn.initializers.normal(INIT_STD),
            embedding_metadata=axes(None, "embed"), **emb,
        )
        self.layer_norm = layer_norm(spec.hidden, eps=LAYER_NORM_EPS, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dropout_rate = spec.dropout
        self.max_len = spec.max_len

    def __call__(
        self, input_ids: jax.Array, attention_mask: jax.Array, *, key: jax.Array, deterministic: bool
    ) -> jax.Array:
        if input_ids.shape[-1] > self.max_len:
            raise ValueError(f"input length {input_ids.shape[-1]} exceeds model.max_len={self.max_len}")
        words = self.word_embeddings(input_ids)
        # As torch's `nn.Embedding(padding_idx=pad)` in the reference: a `<pad>` lookup passes no gradient to
        # the pad row (an MLM random replacement may draw `<pad>`); the tied decoder still trains that row.
        words = jnp.where((input_ids == PAD_ID)[..., None], jax.lax.stop_gradient(words), words)
        x = (
            words
            + self.position_embeddings(position_ids(attention_mask))
            + self.token_type_embeddings.embedding[...][0].astype(self.word_embeddings.dtype)
        )
        x = constrain(x, ("batch", "length", "embed"))
        x = self.layer_norm(x)
        return constrain(dropout(x, self.dropout_rate, key, deterministic), ("batch", "length", "embed"))


class RobertaLayer(nnx.Module):
    """Post-LN block: x = LN(x + drop(attn(x))); x = LN(x + drop(mlp(x)))."""

    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        dtype, param_dtype = resolve_dtype(spec.dtype), resolve_dtype(spec.param_dtype)
        init = jax.nn.initializers.normal(INIT_STD)
        self.attention = MultiHeadAttention(
            spec.hidden, spec.heads, spec.head_dim, use_bias=True, kernel_init=init, scale_at_runtime=True,
            dropout_rate=spec.dropout, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
            impl=spec.attention_impl,
        )
        self.attention_norm = layer_norm(
            spec.hidden, eps=LAYER_NORM_EPS, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        self.mlp = Mlp(spec.hidden, spec.mlp, kernel_init=init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.output_norm = layer_norm(spec.hidden, eps=LAYER_NORM_EPS, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dropout_rate = spec.dropout

    def __call__(
        self,
        x: jax.Array,
        bias: jax.Array,
        *,
        key: jax.Array,
        deterministic: bool,
        positions: jax.Array | None = None,
    ) -> jax.Array:
        """The layer's output [B, L, hidden], or with `positions` [groups, P] only those rows, [groups, P, hidden].

        Every position still gives its keys and values; past the attention core each row depends on its own
        position alone, so the output projection and the FFN run on the P rows only. Dropout draws each row's
        mask from its position in the batch: the rows equal the full output's at those positions.
        """
        k_attn, k_res1, k_res2 = jax.random.split(key, 3)
        context = self.attention.context(x, x, bias, key=k_attn, deterministic=deterministic)
        rows = None
        if positions is not None:
            rows = row_numbers(positions, x)
            context = gather_rows(context, positions, ("batch", "length", "heads", "kv"))
            x = gather_rows(x, positions, ("batch", "length", "embed"))
        a = self.attention.project_out(context)
        x = self.attention_norm(x + dropout(a, self.dropout_rate, k_res1, deterministic, rows))
        h = self.mlp(x)
        x = self.output_norm(x + dropout(h, self.dropout_rate, k_res2, deterministic, rows))
        return constrain(x, ("batch", "length", "embed"))


def gather_rows(x: jax.Array, positions: jax.Array, names: tuple[str, ...]) -> jax.Array:
    """`x` [B, L, ...] at `positions` [groups, P], each indexing its group's B/groups sequences flattened
    (sequence-major), as `mlm_positions` do: [groups, P, ...], sharded by the logical `names` of `x`'s axes."""
    flat = x.reshape(positions.shape[0], -1, *x.shape[2:])
    index = positions.reshape(*positions.shape, *[1] * (x.ndim - 2))
    return constrain(jnp.take_along_axis(flat, index, axis=1), names)


def row_numbers(positions: jax.Array, x: jax.Array) -> jax.Array:
    """The row-major index over `x`'s [B, L] of each gathered position [groups, P] (dropout's row counters)."""
    span = x.shape[0] // positions.shape[0] * x.shape[1]
    return jnp.arange(positions.shape[0], dtype=positions.dtype)[:, None] * span + positions


class Roberta(nnx.Module):
    """RoBERTa + MLM head. Interface: `loss`, `__call__` (MLM logits), `encode`."""

    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        self.spec = spec
        self.embeddings = RobertaEmbeddings(spec, rngs=rngs)
        self.encoder = LayerStack(
            lambda r: RobertaLayer(spec, rngs=r), spec.num_layers, scan=spec.scan_layers,
            unroll=spec.scan_unroll, remat_policy=spec.remat_policy, rngs=rngs,
        )
        self.lm_head = MlmHead(
            spec.hidden, spec.vocab_size, eps=LAYER_NORM_EPS, kernel_init=jax.nn.initializers.normal(INIT_STD),
            dtype=resolve_dtype(spec.dtype), param_dtype=resolve_dtype(spec.param_dtype), rngs=rngs,
        )
        # The only RNG state of the model: a counter-based stream for dropout (see layers.py docstring).
        self.dropout_rngs = nnx.Rngs(dropout=rngs.dropout())

    def _key(self, deterministic: bool, dropout_rng: jax.Array | None) -> jax.Array:
        if deterministic:
            return jax.random.key(0)  # unused: every dropout is the identity
        return dropout_rng if dropout_rng is not None else self.dropout_rngs.dropout()

    def encode(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        *,
        deterministic: bool = True,
        return_all_layers: bool = False,
        dropout_rng: jax.Array | None = None,
        positions: jax.Array | None = None,
    ) -> jax.Array | list[jax.Array]:
        """Final hidden states [B, L, hidden], or the list [embedding output, layer 1, …, layer N].

        With `positions` [groups, P] (as `mlm_positions`), only those rows of the final states, [groups, P,
        hidden]; the last layer computes no others when `model.last_layer_predicted_only` is on.
        """
        k_emb, k_enc = jax.random.split(self._key(deterministic, dropout_rng))
        x = self.embeddings(input_ids, attention_mask, key=k_emb, deterministic=deterministic)
        bias = attention_bias(None, attention_mask, causal=False, dtype=x.dtype)
        sparse_last = positions is not None and self.spec.last_layer_predicted_only
        last_kwargs = {"positions": positions} if sparse_last else None
        out, per_layer = self.encoder(
            x, bias, key=k_enc, deterministic=deterministic, collect=return_all_layers, last_kwargs=last_kwargs
        )
        if positions is not None and not sparse_last:
            out = gather_rows(out, positions, ("batch", "length", "embed"))
        return [x, *per_layer] if return_all_layers else out

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        *,
        deterministic: bool = True,
        dropout_rng: jax.Array | None = None,
    ) -> jax.Array:
        """MLM logits [B, L, vocab] in the compute dtype."""
        h = self.encode(input_ids, attention_mask, deterministic=deterministic, dropout_rng=dropout_rng)
        return self.lm_head(h, self.embeddings.word_embeddings)

    def loss(
        self, batch: dict[str, jax.Array], *, deterministic: bool, dropout_rng: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean MLM cross-entropy over the predicted positions and the metric sums (see losses.py).

        A batch with `mlm_positions` [B, P] (data.max_predictions_per_seq) projects only those rows onto the
        vocabulary, or with [B/G, P] those of each group of G sequences (data.mlm_group_size, positions
        flattened over the group); one with dense `targets`/`loss_mask` [B, L] projects every position, as
        Hugging Face does. With row tiers (`model.prediction_tiers`; by default on CPU) the gathered rows past
        the last one any group uses are left out of the projection (`prediction_tiers.py`). All give the same
        loss.
        """
        positions = batch.get("mlm_positions")
        h = self.encode(
            batch["input_ids"], batch["attention_mask"], deterministic=deterministic, dropout_rng=dropout_rng,
            positions=positions,
        )
        lang_id = batch["lang_id"]
        if positions is not None:
            batch_size, length = batch["input_ids"].shape
            groups = positions.shape[0]  # B, or B/G
            if groups != batch_size:  # each prediction's language: that of the sequence it lies in
                lang_id = jnp.take_along_axis(lang_id.reshape(groups, -1), positions // length, axis=1)
            targets, weights = batch["mlm_targets"], batch["mlm_weights"]
            tiers = prediction_tiers.resolve_count(self.spec.prediction_tiers)
            if tiers > 1:  # only as many gathered rows as the batch uses
                ce, correct = prediction_tiers.cross_entropy(
                    self.lm_head.transform(h), self.embeddings.word_embeddings.embedding[...],
                    self.lm_head.bias[...], targets, weights, count=tiers,
                )
                return weighted_sums(ce, correct, weights, lang_id, num_langs=self.spec.num_langs)
        else:
            targets, weights = batch["targets"], batch["loss_mask"]
        logits = self.lm_head(h, self.embeddings.word_embeddings)
        return token_cross_entropy(logits, targets, weights, lang_id, num_langs=self.spec.num_langs)


def training_flops_per_sequence(
    spec: ModelSpec, seq_len: int, predicted: float | None = None, projected: float | None = None
) -> float:
    """Analytic FLOPs of one training step (forward + backward) on one sequence of `seq_len` tokens.

    6 × multiply-adds per token (2 per MAC, ×3 for forward + backward) of every matmul: per layer the four
    attention projections (4·d·inner) and the FFN (2·d·mlp), plus the attention products QKᵀ and PV
    (2·seq_len·inner per token per layer); the MLM head (dense d² and the tied decoder d·V) on the `predicted`
    rows the model projects (data.max_predictions_per_seq; None = every position, as Hugging Face does).
    With `predicted` rows (> 0) and `model.last_layer_predicted_only`, the last layer's output projection and
    FFN run on those rows only; of them the head projects `projected` (`model.prediction_tiers` picks fewer
    when the batch leaves the last ones empty; None = all `predicted`). Embedding gathers, biases, norms and
    softmax are not counted.
    """
    d, inner = spec.hidden, spec.heads * spec.head_dim
    every_row = 3 * d * inner + 2 * seq_len * inner  # Q, K, V and the attention products: every position
    per_row = d * inner + 2 * d * spec.mlp  # output projection and FFN: only the rows that go on
    last_rows = predicted if predicted and spec.last_layer_predicted_only else seq_len
    encoder_macs = spec.num_layers * seq_len * every_row + ((spec.num_layers - 1) * seq_len + last_rows) * per_row
    head_macs = d * d + d * spec.vocab_size
    head_rows = seq_len if predicted is None else predicted if projected is None else projected
    return 6.0 * (encoder_macs + head_rows * head_macs)
