"""The reference recipe's optimizer: HF linear warmup/decay schedule, AdamW constants, decay mask, clipping."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from xlt_jax.errors import ConfigError
from xlt_jax.training import optimizer


def recipe(**overrides) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(dict(
        learning_rate=1e-4, warmup_steps=10_000, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=1.0))
    config.update(overrides)
    return config


def hf_linear_schedule(step: int, peak: float, warmup: int, total: int) -> float:
    """transformers.get_linear_schedule_with_warmup, as a plain formula."""
    if step < warmup:
        return peak * step / max(1, warmup)
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def test_schedule_is_hf_linear_warmup_then_decay_to_zero():
    schedule = optimizer.learning_rate_schedule(recipe(), total_steps=500_000)
    for step in (0, 1, 5_000, 9_999, 10_000, 10_001, 250_000, 499_999, 500_000, 600_000):
        expected = hf_linear_schedule(step, 1e-4, 10_000, 500_000)
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-3, atol=1e-11)  # float32 arithmetic


def test_constant_and_warmup_stable_decay_schedules():
    constant = optimizer.learning_rate_schedule(recipe(warmup_steps=100, schedule="constant"), total_steps=1000)
    wsd = optimizer.learning_rate_schedule(
        recipe(warmup_steps=100, schedule="wsd", decay_fraction=0.25), total_steps=1000
    )
    for step, c, w in ((0, 0.0, 0.0), (50, 5e-5, 5e-5), (100, 1e-4, 1e-4), (600, 1e-4, 1e-4), (750, 1e-4, 1e-4),
                       (875, 1e-4, 5e-5), (1000, 1e-4, 0.0), (2000, 1e-4, 0.0)):  # fmt: skip
        np.testing.assert_allclose(float(constant(step)), c, rtol=1e-5, atol=1e-12, err_msg=f"constant@{step}")
        np.testing.assert_allclose(float(wsd(step)), w, rtol=1e-5, atol=1e-12, err_msg=f"wsd@{step}")
    with pytest.raises(ConfigError, match="optimizer.schedule"):
        optimizer.learning_rate_schedule(recipe(schedule="cosine"), total_steps=10)


def test_weight_decay_skips_biases_and_norm_scales():
    params = {"layer": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3,))}, "norm": {"scale": jnp.ones((3,))},
              "embedding": jnp.ones((5, 3))}
    mask = optimizer.weight_decay_mask(params)
    assert mask == {"layer": {"kernel": True, "bias": False}, "norm": {"scale": False}, "embedding": True}
    # With decay on and a zero gradient, only the masked-in parameters shrink.
    tx = optimizer.make_optimizer(recipe(warmup_steps=0, weight_decay=0.1, learning_rate=1.0), total_steps=10)
    grads = optax.tree.zeros_like(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(updates["layer"]["kernel"][0, 0]) < 0 and float(updates["embedding"][0, 0]) < 0
    assert float(updates["layer"]["bias"][0]) == 0 and float(updates["norm"]["scale"][0]) == 0


def update_norm(clip_norm: float, gradient: float) -> float:
    """Norm of the first update; with b1 = b2 = 0 and a huge eps AdamW is linear in the (clipped) gradient."""
    tx = optimizer.make_optimizer(recipe(warmup_steps=0, learning_rate=1.0, b1=0.0, b2=0.0, eps=1e6,
                                         clip_norm=clip_norm), 10)
    params = {"w": jnp.zeros((4,))}
    updates, _ = tx.update({"w": jnp.full((4,), gradient)}, tx.init(params), params)
    return float(optax.tree.norm(updates))


def test_gradients_are_clipped_to_global_norm():
    np.testing.assert_allclose(update_norm(1.0, 10.0), update_norm(1.0, 100.0), rtol=1e-5)
    np.testing.assert_allclose(update_norm(0.0, 100.0), 10 * update_norm(0.0, 10.0), rtol=1e-3)  # 0 = off


@pytest.mark.parametrize("scale", [0.01, 10.0])  # a global norm below and above clip_norm = 1
def test_clipping_matches_optax_and_keeps_its_state(scale):
    """The scalar-factor clip (optimizer.clip_by_global_norm) = optax's, and so does the whole update: the same
    numbers and the same optimizer-state tree (checkpoints written before it restore)."""
    rng = np.random.default_rng(0)
    params = {"layer": {"kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), "bias": jnp.zeros(3)}}
    grads = {"layer": {"kernel": jnp.asarray(scale * rng.normal(size=(4, 3)), jnp.float32),
                       "bias": jnp.asarray(scale * rng.normal(size=3), jnp.float32)}}  # fmt: skip
    ours, _ = optimizer.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    theirs, _ = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    np.testing.assert_allclose(optax.tree.norm(ours), min(1.0, float(optax.tree.norm(grads))), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    config = recipe(warmup_steps=0, learning_rate=0.1, weight_decay=0.01)
    tx = optimizer.make_optimizer(config, total_steps=10)
    reference = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(
        optimizer.learning_rate_schedule(config, 10), b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01,
        mask=optimizer.weight_decay_mask))  # fmt: skip
    state, ref_state = tx.init(params), reference.init(params)
    assert jax.tree.structure(state) == jax.tree.structure(ref_state)
    for _ in range(2):
        updates, state = tx.update(grads, state, params)
        ref_updates, ref_state = reference.update(grads, ref_state, params)
        for a, b in zip(jax.tree.leaves((updates, state)), jax.tree.leaves((ref_updates, ref_state)), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
