"""The two attention cores (`model.attention_impl`): the hand-written CPU VJP computes what autodiff of the
plain core computes — outputs, the gradients of q, k, v and of a learned bias, with the same dropout masks —
for self, causal and cross attention, and inside whole RoBERTa and T5 models; "auto" picks it on CPU only."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from xlt_jax.errors import ConfigError
from xlt_jax.models import build_model, default_model_config, transfer_weights
from xlt_jax.models.attention import attention_bias, attention_core, resolve_attention_impl

B, H, D = 2, 3, 8


def _operands(lq: int, lk: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    q, d_out = (jnp.asarray(rng.standard_normal((B, lq, H, D)), jnp.float32) for _ in range(2))
    k, v = (jnp.asarray(rng.standard_normal((B, lk, H, D)), jnp.float32) for _ in range(2))
    return q, k, v, d_out


def _bias(kind: str, lq: int, lk: int) -> jax.Array:
    key_mask = jnp.asarray(np.arange(lk)[None, :] < np.array([[lk], [lk - 3]]), jnp.int32)  # row 2 padded
    if kind == "padding":  # [B, 1, 1, Lk]
        return attention_bias(None, key_mask, causal=False, dtype=jnp.float32)
    if kind == "causal":  # [B, 1, L, L]
        return attention_bias(None, key_mask, causal=True, dtype=jnp.float32)
    # learned, as T5's relative position bias: [1, H, Lq, Lk], shared by the batch (its gradient sums over it)
    return jnp.asarray(np.random.default_rng(5).standard_normal((1, H, lq, lk)), jnp.float32)


def _value_and_vjp(impl: str, q, k, v, bias, d_out, rate: float):
    key = jax.random.key(3)

    def core(q, k, v, bias):
        return attention_core(q, k, v, bias, key, dropout_rate=rate, impl=impl)

    out, vjp = jax.vjp(core, q, k, v, bias)
    return out, vjp(d_out)


@pytest.mark.parametrize(
    "kind, lq, lk, rate",
    [("padding", 7, 7, 0.3), ("causal", 7, 7, 0.3), ("learned", 5, 9, 0.3), ("learned", 7, 7, 0.0)],
)
def test_cpu_core_matches_autodiff_of_the_plain_core(kind, lq, lk, rate):
    q, k, v, d_out = _operands(lq, lk)
    bias = _bias(kind, lq, lk)
    out_x, grads_x = jax.jit(_value_and_vjp, static_argnums=(0, 6))("xla", q, k, v, bias, d_out, rate)
    out_c, grads_c = jax.jit(_value_and_vjp, static_argnums=(0, 6))("cpu", q, k, v, bias, d_out, rate)
    np.testing.assert_allclose(out_c, out_x, rtol=1e-5, atol=1e-6)
    for name, gc, gx in zip(("q", "k", "v", "bias"), grads_c, grads_x, strict=True):
        assert gc.shape == gx.shape, name
        np.testing.assert_allclose(gc, gx, rtol=1e-5, atol=1e-5, err_msg=f"gradient of {name}")
    if rate:  # dropout really is on: some attention weights were dropped, so the output differs from rate 0
        out_0, _ = _value_and_vjp("xla", q, k, v, bias, d_out, 0.0)
        assert float(jnp.max(jnp.abs(out_0 - out_x))) > 1e-3
    if kind == "learned":  # a bias gradient that is not zero, so its reduction over the batch is checked
        assert float(jnp.max(jnp.abs(grads_x[3]))) > 1e-3


@nnx.jit
def _loss_and_grads(model, batch, key):
    loss_fn = lambda m: m.loss(batch, deterministic=False, dropout_rng=key)  # noqa: E731
    (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    return loss, grads


def _batch(name: str) -> dict[str, jax.Array]:
    rng = np.random.default_rng(1)
    ids = jnp.asarray(rng.integers(5, 90, size=(2, 10)), jnp.int32)
    mask = jnp.asarray(np.arange(10)[None, :] < np.array([[10], [7]]), jnp.int32)
    if name == "roberta":
        return {"input_ids": ids, "attention_mask": mask, "targets": ids, "loss_mask": mask.astype(jnp.float32),
                "lang_id": jnp.array([0, 1], jnp.int32)}  # fmt: skip
    return {"encoder_input_ids": ids, "encoder_attention_mask": mask, "decoder_input_ids": ids[:, :6],
            "decoder_targets": ids[:, 1:7], "decoder_loss_mask": jnp.ones((2, 6), jnp.float32),
            "lang_id": jnp.array([0, 1], jnp.int32)}  # fmt: skip


@pytest.mark.parametrize("name", ["roberta", "t5"])
def test_models_train_the_same_under_both_cores(name):
    """Whole models, dropout on (T5 too): same loss and gradients of every parameter (T5's relative position
    biases are learned through the attention bias)."""
    models = {}
    for impl in ("xla", "cpu"):
        config = default_model_config(name, "tiny")
        config.update(dtype="float32", dropout=0.1, attention_impl=impl)
        models[impl] = build_model(config, 101, rngs=nnx.Rngs(0 if impl == "xla" else 1))
    transfer_weights(models["xla"], models["cpu"])
    batch, key = _batch(name), jax.random.key(9)
    loss_x, grads_x = _loss_and_grads(models["xla"], batch, key)
    loss_c, grads_c = _loss_and_grads(models["cpu"], batch, key)
    np.testing.assert_allclose(loss_c, loss_x, rtol=1e-6)
    flat_x, flat_c = nnx.to_flat_state(grads_x), nnx.to_flat_state(grads_c)
    assert [p for p, _ in flat_x] == [p for p, _ in flat_c]
    for (path, gx), (_, gc) in zip(flat_x, flat_c, strict=True):
        np.testing.assert_allclose(gc[...], gx[...], rtol=1e-5, atol=1e-6, err_msg=str(path))


def test_auto_means_the_cpu_core_on_cpu_only():
    assert resolve_attention_impl("auto", "cpu") == "cpu"
    assert resolve_attention_impl("auto", "tpu") == resolve_attention_impl("auto", "gpu") == "xla"
    assert resolve_attention_impl("xla", "cpu") == "xla"
    assert jax.default_backend() == "cpu"
    q, k, v, _ = _operands(4, 4)
    bias = jnp.zeros((B, 1, 1, 4))

    def program(impl: str) -> str:
        return str(jax.make_jaxpr(lambda q: attention_core(q, k, v, bias, jax.random.key(0), dropout_rate=0.1,
                                                           impl=impl))(q))  # fmt: skip

    assert "custom_vjp_call" in program("auto") and "custom_vjp_call" in program("cpu")
    assert "custom_vjp_call" not in program("xla")


def test_unknown_attention_impl_is_refused_by_name():
    config = default_model_config("roberta", "tiny")
    config.attention_impl = "flash"
    with pytest.raises(ConfigError, match=r"model.attention_impl 'flash' is not one of \['auto', 'xla', 'cpu'\]"):
        build_model(config, 101, rngs=nnx.Rngs(0))
