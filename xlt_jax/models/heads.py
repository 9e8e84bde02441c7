"""Output heads on top of an encoder's hidden states [batch, length, embed].

`MlmHead` is used in pretraining. The task heads (pair classification, token classification, extractive QA)
follow Hugging Face's RoBERTa heads, so that the reference fine-tuning (REFERENCE_SPEC §4.3–4.5) and weight
interop map one to one; the fine-tune code wraps an encoder and one of them. Output dimensions that are not
model axes (number of labels, start/end) are left unnamed (None), i.e. replicated.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from xlt_jax.models.layers import axes, constrain, dense, dropout, gelu_erf, layer_norm, tied_logits


class MlmHead(nnx.Module):
    """RobertaLMHead: dense → GELU (erf) → LayerNorm → decoder tied to the word embeddings, plus a bias."""

    def __init__(
        self, hidden: int, vocab_size: int, *, eps: float, kernel_init: Any, dtype: Any, param_dtype: Any,
        rngs: nnx.Rngs,
    ):
        # The transform is [embed → embed]; its output side is left unnamed because one spec cannot name
        # the same logical axis twice.
        self.dense = dense(
            hidden, hidden, ("embed", None), use_bias=True, kernel_init=kernel_init, dtype=dtype,
            param_dtype=param_dtype, rngs=rngs,
        )
        self.layer_norm = layer_norm(hidden, eps=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros((vocab_size,), param_dtype), **axes("vocab"))

    def transform(self, x: jax.Array) -> jax.Array:
        """The rows the tied decoder reads: dense → GELU → LayerNorm."""
        return self.layer_norm(gelu_erf(self.dense(x)))

    def __call__(self, x: jax.Array, word_embeddings: nnx.Embed) -> jax.Array:
        h = self.transform(x)
        embedding = word_embeddings.embedding[...].astype(h.dtype)
        logits = tied_logits(h, embedding, self.bias[...].astype(h.dtype))
        return constrain(logits, ("batch", "length", "vocab"))


class SequenceClassificationHead(nnx.Module):
    """RobertaClassificationHead: on the `<s>` state, dropout → dense → tanh → dropout → projection."""

    def __init__(
        self, hidden: int, num_labels: int, *, dropout_rate: float, kernel_init: Any, dtype: Any,
        param_dtype: Any, rngs: nnx.Rngs,
    ):
        kw = dict(use_bias=True, kernel_init=kernel_init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dense = dense(hidden, hidden, ("embed", None), **kw)
        self.out_proj = dense(hidden, num_labels, ("embed", None), **kw)
        self.dropout_rate = dropout_rate

    def __call__(self, x: jax.Array, *, key: jax.Array, deterministic: bool) -> jax.Array:
        k1, k2 = jax.random.split(key)
        h = dropout(x[:, 0], self.dropout_rate, k1, deterministic)
        h = jnp.tanh(self.dense(h))
        h = dropout(h, self.dropout_rate, k2, deterministic)
        return self.out_proj(h)


class TokenClassificationHead(nnx.Module):
    """RobertaForTokenClassification's head: dropout → dense to per-token label logits [B, L, num_labels]."""

    def __init__(
        self, hidden: int, num_labels: int, *, dropout_rate: float, kernel_init: Any, dtype: Any,
        param_dtype: Any, rngs: nnx.Rngs,
    ):
        self.classifier = dense(
            hidden, num_labels, ("embed", None), use_bias=True, kernel_init=kernel_init, dtype=dtype,
            param_dtype=param_dtype, rngs=rngs,
        )
        self.dropout_rate = dropout_rate

    def __call__(self, x: jax.Array, *, key: jax.Array, deterministic: bool) -> jax.Array:
        return self.classifier(dropout(x, self.dropout_rate, key, deterministic))


class QuestionAnsweringHead(nnx.Module):
    """RobertaForQuestionAnswering's head: one dense to 2 outputs, split into start and end logits [B, L]."""

    def __init__(self, hidden: int, *, kernel_init: Any, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        self.qa_outputs = dense(
            hidden, 2, ("embed", None), use_bias=True, kernel_init=kernel_init, dtype=dtype,
            param_dtype=param_dtype, rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = self.qa_outputs(x).astype(jnp.float32)
        return logits[..., 0], logits[..., 1]
