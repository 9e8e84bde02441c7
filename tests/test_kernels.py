"""The hand-written pieces under the models, each checked against the library computation it replaces:
Threefry and the dropout draws (jax.random), the tied decoder's gradients (autodiff of the plain formula),
and the cross-entropy metric sums (optax, argmax)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.extend.random import threefry2x32_p
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from xlt_jax.models.dropout import dropout, keep_bits, threefry2x32, uniform_bits16, unpack_keep_bits
from xlt_jax.models.layers import tied_logits
from xlt_jax.models.losses import token_cross_entropy
from xlt_jax.models.platform import tracing_for


def test_threefry_is_bit_identical_to_jax():
    rng = np.random.default_rng(0)
    k1, k2, x1, x2 = (jnp.asarray(rng.integers(0, 2**32, size=(4096,), dtype=np.uint64).astype(np.uint32))
                      for _ in range(4))  # fmt: skip
    ours = jax.jit(threefry2x32)(k1, k2, x1, x2)
    theirs = threefry2x32_p.bind(k1, k2, x1, x2)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Scalar keys broadcast over the counters, as with the primitive.
    np.testing.assert_array_equal(threefry2x32(k1[0], k2[0], x1, x2)[1], threefry2x32_p.bind(k1[0], k2[0], x1, x2)[1])


@pytest.mark.parametrize("shape", [(64, 128, 512), (3, 5, 7), (1001,)])
def test_uniform_bits16_are_uniform_and_keyed(shape):
    draws = np.asarray(uniform_bits16(jax.random.key(1), shape))
    assert draws.shape == shape and draws.dtype == np.uint16
    if draws.size > 1_000_000:  # binomial sd of the mean ~0.0003, of a 10% tail ~0.0003
        assert abs(draws.mean() / 65535 - 0.5) < 0.002
        assert abs((draws < 6554).mean() - 0.1) < 0.002
        assert len(np.unique(draws)) == 65536
    np.testing.assert_array_equal(draws, uniform_bits16(jax.random.key(1), shape))
    assert (draws != np.asarray(uniform_bits16(jax.random.key(2), shape))).mean() > 0.99
    # Neighbouring rows and groups use different counters: no repeated rows.
    flat = draws.reshape(-1, shape[-1])
    assert len({row.tobytes() for row in flat}) == len(flat)


def test_uniform_bits16_do_not_depend_on_sharding():
    devices = np.array(jax.devices()[:8]).reshape(2, 4)
    mesh = jax.sharding.Mesh(devices, ("data", "model"))
    key = jax.random.key(3)
    shape = (8, 4, 16, 24)
    want = np.asarray(uniform_bits16(key, shape))
    for spec in (P("data", "model"), P(None, None, "data", "model"), P("model", None, None, "data")):
        fn = jax.jit(lambda k: uniform_bits16(k, shape), out_shardings=NamedSharding(mesh, spec))
        np.testing.assert_array_equal(np.asarray(fn(key)), want)


@pytest.mark.parametrize("shape", [(8, 8, 64, 64), (3, 5, 7), (1001,)])
def test_keep_bits_are_the_draws_above_the_rate_packed_four_to_a_byte(shape):
    key, rate = jax.random.key(5), 0.1
    bits = np.asarray(jax.jit(lambda k: keep_bits(k, shape, rate))(key))
    assert bits.shape == (*shape[:-1], -(-shape[-1] // 4)) and bits.dtype == np.uint8 and bits.max() < 16
    want = np.asarray(uniform_bits16(key, shape)) >= round(rate * 65536)
    got = np.asarray(unpack_keep_bits(jnp.asarray(bits), shape[-1]))
    np.testing.assert_array_equal(got, want)
    # Element 4g + j is bit j of byte g.
    j = np.arange(shape[-1])
    np.testing.assert_array_equal((bits[..., j // 4] >> (j % 4)) & 1, want)


def test_keep_bits_are_written_out_on_cpu_only():
    """On CPU the hash sits in a conditional (a fusion boundary XLA:CPU keeps), elsewhere it stays fusable;
    the bits are the same either way."""
    key, shape = jax.random.key(1), (4, 32, 48)

    def program():
        return jax.make_jaxpr(lambda k: keep_bits(k, shape, 0.1))(key)

    has_cond = lambda jaxpr: any(e.primitive.name == "cond" for e in jaxpr.jaxpr.eqns)  # noqa: E731
    with tracing_for("tpu"):
        fused = program()
        fused_bits = jax.jit(lambda k: keep_bits(k, shape, 0.1))(key)  # a new function: traced here
    assert has_cond(program()) and not has_cond(fused)
    np.testing.assert_array_equal(np.asarray(keep_bits(key, shape, 0.1)), np.asarray(fused_bits))


def test_keep_bits_do_not_depend_on_sharding():
    devices = np.array(jax.devices()[:8]).reshape(2, 4)
    mesh = jax.sharding.Mesh(devices, ("data", "model"))
    key, shape = jax.random.key(4), (8, 4, 16, 64)
    want = np.asarray(keep_bits(key, shape, 0.1))
    for spec in (P("data", "model"), P(None, None, "data", "model")):
        fn = jax.jit(lambda k: keep_bits(k, shape, 0.1), out_shardings=NamedSharding(mesh, spec))
        np.testing.assert_array_equal(np.asarray(fn(key)), want)


def test_dropout_rate_scaling_and_identity():
    x = jnp.ones((256, 1024), jnp.float32)
    y = np.asarray(dropout(x, 0.1, jax.random.key(0), deterministic=False))
    assert abs((y == 0).mean() - 0.1) < 0.005
    kept = y[y != 0]
    np.testing.assert_allclose(kept, 65536 / (65536 - round(0.1 * 65536)))
    assert abs(y.mean() - 1.0) < 0.01  # inverted dropout keeps the expectation
    assert dropout(x, 0.1, jax.random.key(0), deterministic=True) is x
    assert dropout(x, 0.0, jax.random.key(0), deterministic=False) is x
    assert dropout(x.astype(jnp.bfloat16), 0.1, jax.random.key(0), deterministic=False).dtype == jnp.bfloat16


def test_dropout_of_gathered_rows_numbered_by_their_place_has_their_masks():
    """`rows` gives gathered rows the masks they have in the full array (the sparse last layer relies on it)."""
    x = jax.random.normal(jax.random.key(1), (4, 16, 24))  # [B, L, features]
    key = jax.random.key(5)
    full = np.asarray(dropout(x, 0.3, key, deterministic=False)).reshape(2, 32, 24)  # groups of 2 sequences
    positions = jnp.asarray([[0, 5, 17, 31], [2, 3, 16, 30]])  # flat over each group
    rows = jnp.arange(2)[:, None] * 32 + positions
    gathered = jnp.take_along_axis(x.reshape(2, 32, 24), positions[..., None], axis=1)
    got = np.asarray(dropout(gathered, 0.3, key, deterministic=False, rows=rows))
    np.testing.assert_array_equal(got, np.take_along_axis(full, np.asarray(positions)[..., None], axis=1))
    assert (got == 0).any() and (got != 0).any()
    unnumbered = np.asarray(dropout(gathered, 0.3, key, deterministic=False))
    assert not np.array_equal(unnumbered == 0, got == 0)  # numbered by place in `gathered`: other masks
    with pytest.raises(ValueError, match="row numbers of shape"):
        dropout(gathered, 0.3, key, deterministic=False, rows=rows[:, :2])


def test_tied_logits_value_and_gradients_match_autodiff():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 5, 16)), jnp.float32)
    emb = jnp.asarray(rng.normal(size=(37, 16)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(37,)), jnp.float32)
    probe = jnp.asarray(rng.normal(size=(3, 5, 37)), jnp.float32)

    def plain(x, emb, bias):
        return x @ emb.T + bias

    np.testing.assert_allclose(tied_logits(x, emb, bias), plain(x, emb, bias), rtol=1e-6, atol=1e-6)
    ours = jax.grad(lambda *a: jnp.sum(jnp.sin(tied_logits(*a)) * probe), argnums=(0, 1, 2))(x, emb, bias)
    want = jax.grad(lambda *a: jnp.sum(jnp.sin(plain(*a)) * probe), argnums=(0, 1, 2))(x, emb, bias)
    for a, b in zip(ours, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # bf16 compute: cotangents come back in the input dtypes.
    low = [a.astype(jnp.bfloat16) for a in (x, emb, bias)]
    grads = jax.grad(lambda *a: jnp.sum(tied_logits(*a).astype(jnp.float32)), argnums=(0, 1, 2))(*low)
    assert all(g.dtype == jnp.bfloat16 for g in grads)


def test_token_cross_entropy_sums():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 6, 11)).astype(np.float32)
    targets = rng.integers(0, 11, size=(4, 6))
    logits[0, 0, targets[0, 0]] = 50.0  # certainly correct
    logits[1, 1] = 0.0  # an all-tied row: the target is at the maximum
    weights = (rng.random((4, 6)) < 0.6).astype(np.float32)
    weights[0, 0] = weights[1, 1] = 1.0
    lang = np.array([0, 1, 1, 2])
    loss, sums = token_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights),
                                     jnp.asarray(lang), num_langs=3)  # fmt: skip
    ce = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, targets))
    target_logit = np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    correct = (target_logit >= logits.max(-1)).astype(np.float32)
    assert correct[0, 0] == 1 and correct[1, 1] == 1
    np.testing.assert_allclose(sums["loss_sum"], (ce * weights).sum(), rtol=1e-5)
    np.testing.assert_allclose(loss, (ce * weights).sum() / weights.sum(), rtol=1e-5)
    np.testing.assert_allclose(sums["correct_sum"], (correct * weights).sum())
    # Away from ties this is argmax accuracy.
    untied = np.ones_like(weights, bool)
    untied[1, 1] = False
    np.testing.assert_array_equal(correct[untied], (logits.argmax(-1) == targets)[untied])
    for lang_id in range(3):
        rows = lang == lang_id
        np.testing.assert_allclose(sums["lang_loss_sum"][lang_id], (ce * weights)[rows].sum(), rtol=1e-5)
        np.testing.assert_allclose(sums["lang_weight_sum"][lang_id], weights[rows].sum())
        np.testing.assert_allclose(sums["lang_correct_sum"][lang_id], (correct * weights)[rows].sum())


@pytest.mark.parametrize(
    "in_features, out_features, x_shape",
    [(16, 24, (3, 5, 16)), (16, (2, 8), (3, 5, 16)), ((2, 8), 16, (3, 5, 2, 8)), (16, 24, (7, 16))],
)
def test_dense_as_one_2d_product_matches_linear_general(in_features, out_features, x_shape):
    from flax import nnx

    from xlt_jax.models.layers import Dense

    n_in = len(in_features) if isinstance(in_features, tuple) else 1
    kw = dict(axis=tuple(range(-n_in, 0)) if n_in > 1 else -1, use_bias=True,
              bias_init=jax.nn.initializers.normal(1.0))  # fmt: skip
    ours = Dense(in_features, out_features, rngs=nnx.Rngs(0), **kw)
    ref = nnx.LinearGeneral(in_features, out_features, rngs=nnx.Rngs(0), **kw)  # the same parameters
    x = jax.random.normal(jax.random.key(1), x_shape)
    np.testing.assert_array_equal(ours.kernel[...], ref.kernel[...])
    y = ours(x)
    assert isinstance(ours, nnx.LinearGeneral) and type(ours).__call__ is not nnx.LinearGeneral.__call__
    np.testing.assert_allclose(y, ref(x), rtol=1e-5, atol=1e-5)
    assert y.shape == ref(x).shape

    def loss(module, x):
        return jnp.sum(jnp.sin(module(x)))

    g_ours, g_ref = nnx.grad(loss, argnums=(0, 1))(ours, x), nnx.grad(loss, argnums=(0, 1))(ref, x)
    np.testing.assert_allclose(g_ours[1], g_ref[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_ours[0].kernel[...], g_ref[0].kernel[...], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_ours[0].bias[...], g_ref[0].bias[...], rtol=1e-5, atol=1e-5)
