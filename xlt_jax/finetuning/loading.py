"""Sharded task-model parameters from checkpoints: the start of a fine-tune, and models to evaluate.

Only parameters are restored (`pretrained.restore_params`), straight into the shards the model's logical
axes give them on the current mesh (`training.state.create_train_state` computes those without
initialising anything). A fine-tune starts from the pretrained backbone plus a freshly initialised head
and zero optimizer slots (`init_finetune_state`); a model whose vocabulary layout differs from the saved
one (MZ for transliteration) is initialised whole and the saved values merged in (`vocab_resize`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from etils import epath
from flax import nnx
from jax.sharding import Mesh

from xlt_jax.data.vocab import VocabLayout
from xlt_jax.finetuning import pretrained, vocab_resize
from xlt_jax.training import partitioning
from xlt_jax.training import state as state_lib

ModelFn = Callable[[nnx.Rngs], nnx.Module]


@dataclasses.dataclass(frozen=True)
class LoadedParams:
    params: dict
    shardings: dict
    model_def: state_lib.ModelDef
    resized: bool  # the vocabulary got new, untrained rows


def abstract_params(model_fn: ModelFn, mesh: Mesh, rules: partitioning.LogicalRules) -> state_lib.ShardedState:
    """Parameter shapes with their shardings on `mesh` (nothing is initialised)."""
    return state_lib.create_train_state(model_fn, optax.identity(), mesh, rules, 0, initialize=False)


def merge_checkpoint(
    fresh: dict,
    shardings: dict,
    *,
    state_dir: epath.Path,
    saved_fn: ModelFn,
    target_fn: ModelFn,
    saved_layout: VocabLayout,
    target_layout: VocabLayout,
    mesh: Mesh,
    rules: partitioning.LogicalRules,
    subtree: str | None = None,
    why: str = "",
) -> dict:
    """`fresh` params (of `target_fn`'s model) overwritten by the checkpoint's (of `saved_fn`'s model).

    With `subtree="backbone"`, the checkpoint is a pretraining run whose params are the backbone alone.
    """
    if saved_layout == target_layout:  # same shapes: the fresh model's own shapes and shardings are the target
        saved = state_lib.abstract_with_shardings(fresh, shardings)
    else:
        saved = abstract_params(saved_fn, mesh, rules).state.params
    target = saved[subtree] if subtree else saved
    loaded = pretrained.restore_params(state_dir, target)
    if subtree:
        loaded = {subtree: loaded}
    axes = vocab_resize.vocab_axes(target_fn)
    rows = None
    if saved_layout != target_layout:
        vocab_resize.log_resize(saved_layout, target_layout, axes, why)
        rows = vocab_resize.row_map(saved_layout, target_layout)
    return vocab_resize.merge_params(fresh, loaded, axes=axes, rows=rows, shardings=shardings)


def load_task_params(
    *,
    state_dir: epath.Path,
    model_fn_for: Callable[[int], ModelFn],
    saved_layout: VocabLayout,
    target_layout: VocabLayout,
    mesh: Mesh,
    rules: partitioning.LogicalRules,
    subtree: str | None = None,
    seed: int = 0,
    why: str = "",
) -> LoadedParams:
    """Parameters of the model `model_fn_for(target_layout.size)` from a checkpoint saved at `saved_layout`.

    Without a change of vocabulary and with every parameter in the checkpoint, they are restored straight
    into their shards; otherwise a fresh model (seeded by `seed`) is initialised and the saved values merged in.
    """
    target_fn = model_fn_for(target_layout.size)
    if saved_layout == target_layout:
        created = abstract_params(target_fn, mesh, rules)
        target = created.state.params
        if subtree is None:
            params = pretrained.restore_params(state_dir, target)
            return LoadedParams(params, created.shardings.params, created.model_def, resized=False)
        if set(target) == {subtree}:  # the whole model is the saved subtree (e.g. a backbone without head)
            params = {subtree: pretrained.restore_params(state_dir, target[subtree])}
            return LoadedParams(params, created.shardings.params, created.model_def, resized=False)
    created = state_lib.create_train_state(target_fn, optax.identity(), mesh, rules, seed)
    params = merge_checkpoint(
        created.state.params, created.shardings.params, state_dir=state_dir,
        saved_fn=model_fn_for(saved_layout.size), target_fn=target_fn, saved_layout=saved_layout,
        target_layout=target_layout, mesh=mesh, rules=rules, subtree=subtree, why=why,
    )
    return LoadedParams(params, created.shardings.params, created.model_def, resized=saved_layout != target_layout)


def init_subtree(model_fn: ModelFn, subtree: str, shardings: dict, seed: int, mesh: Mesh,
                 rules: partitioning.LogicalRules) -> dict:
    """The freshly initialised parameters of one subtree (e.g. the task head), with the same values
    `create_train_state(..., seed)` would give them; XLA drops every other initialiser from the program."""

    def init() -> dict:
        model = model_fn(nnx.Rngs(params=seed, dropout=seed + 1))
        return nnx.to_pure_dict(nnx.state(model, nnx.Param))[subtree]

    with partitioning.sharding_context(mesh, rules):
        return jax.jit(init, out_shardings=shardings)()


def init_finetune_state(
    model_fn_for: Callable[[int], ModelFn],
    tx: optax.GradientTransformation,
    *,
    state_dir: epath.Path,
    saved_layout: VocabLayout,
    target_layout: VocabLayout,
    mesh: Mesh,
    rules: partitioning.LogicalRules,
    seed: int,
    subtree: str = "backbone",
    why: str = "",
) -> state_lib.ShardedState:
    """The first train state of a fine-tune: pretrained `subtree`, freshly initialised rest, zero optimizer slots.

    The backbone is restored straight into its shards and only the other parameters are initialised, so no
    random backbone is ever computed; with a vocabulary change the whole model is initialised and merged.
    """
    target_fn = model_fn_for(target_layout.size)
    if saved_layout != target_layout:
        created = state_lib.create_train_state(target_fn, tx, mesh, rules, seed)
        params = merge_checkpoint(
            created.state.params, created.shardings.params, state_dir=state_dir,
            saved_fn=model_fn_for(saved_layout.size), target_fn=target_fn, saved_layout=saved_layout,
            target_layout=target_layout, mesh=mesh, rules=rules, subtree=subtree, why=why,
        )
        return dataclasses.replace(created, state=created.state.replace(params=params))
    created = state_lib.create_train_state(target_fn, tx, mesh, rules, seed, initialize=False)
    abstract, shardings = created.state, created.shardings
    params = {subtree: pretrained.restore_params(state_dir, abstract.params[subtree])}
    for name in abstract.params:
        if name != subtree:
            params[name] = init_subtree(target_fn, name, shardings.params[name], seed, mesh, rules)
    state = state_lib.TrainState(
        step=jax.device_put(jnp.zeros((), jnp.int32), shardings.step),
        params=params,
        opt_state=jax.jit(tx.init, out_shardings=shardings.opt_state)(params),
        rng=jax.device_put(jax.random.key_data(jax.random.key(seed)), shardings.rng),
    )
    return dataclasses.replace(created, state=state)
