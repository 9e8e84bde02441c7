"""The jitted train step (gradient accumulation + one AdamW update) and eval step.

Both are `jax.jit` over pure pytrees with explicit shardings; the train step donates the state so parameters
and optimizer slots are updated in place. The model is only touched through `model.loss(batch,
deterministic=...)`, which returns the mean loss and metric SUMS (loss_sum, weight_sum, correct_sum and
per-language arrays), so sums over microbatches and hosts are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from xlt_jax.training import partitioning
from xlt_jax.training.state import ModelDef, TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
TrainStep = Callable[[TrainState, Batch], tuple[TrainState, Metrics]]
EvalStep = Callable[[dict, Batch], Metrics]


def split_microbatches(batch: Batch, num: int, mesh: Mesh) -> Batch:
    """[B, ...] -> [num, B/num, ...] taking every num-th row, so each microbatch stays spread over all devices.

    Each device holds a contiguous block of rows; a strided split gives every microbatch an equal part of
    every block, so no data moves between devices.
    """
    sharding = NamedSharding(mesh, PartitionSpec(None, partitioning.BATCH_AXES))

    def split(x: jax.Array) -> jax.Array:
        rows = x.shape[0]
        if rows % num:
            raise ValueError(f"batch of {rows} rows does not split into {num} microbatches")
        x = jnp.swapaxes(x.reshape(rows // num, num, *x.shape[1:]), 0, 1)
        return jax.lax.with_sharding_constraint(x, sharding)

    return jax.tree.map(split, batch)


def _weighted_loss_fn(model_def: ModelDef, weighted: bool = True) -> Callable:
    """Loss × number of predicted tokens: summing it over microbatches and dividing by the total weight gives
    the token-weighted mean of the whole global batch (what one un-accumulated step would compute). With
    `weighted` False, the mean loss itself: one batch's gradient comes out divided by its weight already, the
    1/weight applied to the logits' cotangent rather than in a pass over every parameter's gradient."""

    def fn(params: dict, batch: Batch, key: jax.Array) -> tuple[jax.Array, tuple[jax.Array, Metrics]]:
        model = model_def.merge(params)
        model_def.reseed(model, key)
        loss, sums = model.loss(batch, deterministic=False)
        weight = jax.lax.stop_gradient(sums["weight_sum"]).astype(jnp.float32)
        return loss.astype(jnp.float32) * (weight if weighted else 1.0), (weight, sums)

    return fn


def make_train_step(
    model_def: ModelDef,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    *,
    mesh: Mesh,
    state_shardings: TrainState,
    grad_accum_steps: int = 1,
    skip_nonfinite: bool = False,
) -> TrainStep:
    """Jitted `(state, batch) -> (state, metrics)`; the batch's leading axis is sharded over (data, fsdp).

    `skip_nonfinite`: a batch whose loss or gradient norm is NaN/Inf leaves parameters and optimizer slots
    as they were (selected on the devices, so the host need not look first); the step counter still
    advances, as the batch was consumed, and `metrics["skipped"]` is 1.
    """
    grad_fn = jax.value_and_grad(_weighted_loss_fn(model_def), has_aux=True)
    mean_grad_fn = jax.value_and_grad(_weighted_loss_fn(model_def, weighted=False), has_aux=True)

    def step_fn(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        if grad_accum_steps == 1:  # the mean's gradient: the division by the weight is already in it
            # (The model divides by max(weight, 1e-8), the accumulating path by max(weight, 1): weights are
            # counts, so they differ only at weight 0, where the loss and its gradient are 0 either way.)
            (mean_loss, (weight, sums)), grads = mean_grad_fn(state.params, batch, jax.random.fold_in(key, 0))
        else:
            microbatches = split_microbatches(batch, grad_accum_steps, mesh)

            def accumulate(carry: Any, xs: tuple[Batch, jax.Array]) -> tuple[Any, None]:
                mb, index = xs
                (wl, (w, s)), g = grad_fn(state.params, mb, jax.random.fold_in(key, index))
                return jax.tree.map(jnp.add, carry, (wl, w, s, g)), None

            first = jax.tree.map(lambda x: x[0], microbatches)
            sums_shape = jax.eval_shape(lambda: model_def.merge(state.params).loss(first, deterministic=True)[1])
            zero = jnp.zeros((), jnp.float32)
            init = (zero, zero, jax.tree.map(jnp.zeros_like, sums_shape), jax.tree.map(jnp.zeros_like, state.params))
            (wloss, weight, sums, grads), _ = jax.lax.scan(
                accumulate, init, (microbatches, jnp.arange(grad_accum_steps))
            )
            denom = jnp.maximum(weight, 1.0)
            mean_loss = wloss / denom
            grads = jax.tree.map(lambda g: g / denom, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(sums)
        metrics["loss"] = mean_loss
        metrics["grad_norm"] = optax.tree.norm(grads)
        metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
        if skip_nonfinite:
            finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
            keep = lambda new, old: jnp.where(finite, new, old)
            params, opt_state = jax.tree.map(keep, (params, opt_state), (state.params, state.opt_state))
            metrics["skipped"] = 1.0 - finite.astype(jnp.float32)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, partitioning.batch_sharding(mesh, 1)),
        out_shardings=(state_shardings, partitioning.replicated(mesh)),
        donate_argnums=(0,),
    )


def make_eval_step(model_def: ModelDef, *, mesh: Mesh, param_shardings: dict) -> EvalStep:
    """Jitted `(params, batch) -> metric sums` without dropout."""

    def eval_fn(params: dict, batch: Batch) -> Metrics:
        _, sums = model_def.merge(params).loss(batch, deterministic=True)
        return sums

    return jax.jit(
        eval_fn,
        in_shardings=(param_shardings, partitioning.batch_sharding(mesh, 1)),
        out_shardings=partitioning.replicated(mesh),
    )
