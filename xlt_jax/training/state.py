"""The train state as a plain pytree, and its sharded creation.

NNX modules are split once into a static graph definition and pure arrays: the jitted step then takes and
returns only arrays (`jax.jit` on pure pytrees has far less per-call overhead than `nnx.jit`, ENV_NOTES §9),
and the checkpoint holds readable `params/...` paths. Creation follows ENV_NOTES §3 (B): the abstract state
from `eval_shape` gives the logical shardings, and one `jax.jit` with those `out_shardings` initialises every
parameter and optimizer slot directly in its shards, so no device ever holds a full copy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, PartitionSpec

from xlt_jax.training import partitioning

ModelFn = Callable[[nnx.Rngs], nnx.Module]


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training and goes into a checkpoint."""

    step: jax.Array  # int32 scalar: optimizer updates done
    params: dict  # nnx.to_pure_dict of the model's nnx.Param state
    opt_state: optax.OptState
    rng: jax.Array  # uint32[2] raw key data (portable through checkpoints); dropout keys derive from it


@dataclasses.dataclass(frozen=True)
class ModelDef:
    """What turns a params dict back into a module: the graph definition and the non-parameter state.

    The non-parameter state holds the RNG streams of dropout; the step reseeds them from (state.rng, step,
    microbatch), so they need no checkpointing and dropout is reproducible after a resume.
    """

    graphdef: nnx.GraphDef
    rest: dict  # pure dict: merging must create fresh Variables inside each trace, so none are shared
    rng_streams: tuple[str, ...]

    @classmethod
    def from_split(cls, graphdef: nnx.GraphDef, rest: nnx.State) -> ModelDef:
        tags = {getattr(v, "tag", None) for _, v in nnx.to_flat_state(rest) if isinstance(v, nnx.RngKey)}
        return cls(graphdef, nnx.to_pure_dict(rest), tuple(sorted(t for t in tags if t)))

    def merge(self, params: dict) -> nnx.Module:
        return nnx.merge(self.graphdef, params, self.rest)

    def reseed(self, model: nnx.Module, key: jax.Array) -> None:
        """Give every RNG stream of `model` a fresh key derived from `key` (stacked keys under scan too)."""
        streams = {name: jax.random.fold_in(key, i) for i, name in enumerate(self.rng_streams)}
        if streams:
            nnx.reseed(model, policy="match_shape", **streams)


@dataclasses.dataclass(frozen=True)
class ShardedState:
    """A freshly created state with its shardings and model definition."""

    state: TrainState  # arrays, or ShapeDtypeStructs with shardings when created with initialize=False
    shardings: TrainState  # NamedSharding leaves
    model_def: ModelDef


def _split(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest


def state_specs(tx: optax.GradientTransformation, abstract: TrainState, param_specs: dict) -> TrainState:
    """PartitionSpecs of the whole state: optimizer slots follow their parameter, counters are replicated."""
    opt_specs = optax.tree_map_params(
        tx,
        lambda _, spec: spec,
        abstract.opt_state,
        param_specs,
        transform_non_params=lambda _: PartitionSpec(),
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )
    return TrainState(step=PartitionSpec(), params=param_specs, opt_state=opt_specs, rng=PartitionSpec())


def create_train_state(
    model_fn: ModelFn,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    rules: partitioning.LogicalRules,
    seed: int,
    *,
    initialize: bool = True,
) -> ShardedState:
    """Initialise model and optimizer directly in their shards on `mesh`.

    With `initialize=False` (a checkpoint will be restored) `state` holds only ShapeDtypeStructs carrying the
    shardings, the restore target, and no parameter is computed (XLA drops the unused initialisers).
    """

    def init() -> tuple[TrainState, nnx.State]:
        graphdef, params, rest = _split(model_fn(nnx.Rngs(params=seed, dropout=seed + 1)))
        del graphdef
        params = nnx.to_pure_dict(params)
        key = jax.random.key_data(jax.random.key(seed))
        state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=key)
        return state, rest

    with partitioning.sharding_context(mesh, rules):
        abstract_model = nnx.eval_shape(lambda: model_fn(nnx.Rngs(params=seed, dropout=seed + 1)))
        graphdef, abstract_param_state, _ = _split(abstract_model)
        param_specs = partitioning.param_specs(abstract_param_state)
        abstract_state, abstract_rest = jax.eval_shape(init)
        shardings = partitioning.named_shardings(abstract_state, state_specs(tx, abstract_state, param_specs), mesh)
        rest_shardings = jax.tree.map(lambda _: partitioning.replicated(mesh), abstract_rest)
        if initialize:
            state, rest = jax.jit(init, out_shardings=(shardings, rest_shardings))()
        else:
            state = abstract_with_shardings(abstract_state, shardings)
            rest = jax.jit(lambda: init()[1], out_shardings=rest_shardings)()
    return ShardedState(state, shardings, ModelDef.from_split(graphdef, rest))


def abstract_train_state(
    model_fn: ModelFn, tx: optax.GradientTransformation, mesh: Mesh, rules: partitioning.LogicalRules, seed: int
) -> ShardedState:
    """The state as ShapeDtypeStructs with their shardings, computing nothing on `mesh`.

    For ahead-of-time compilation on a device topology with no devices attached (a Cloud TPU slice described
    by `jax.experimental.topologies`): the few eager computations (optimizer-slot placeholders, the dropout
    RNG streams captured by the model definition) run on the host CPU.
    """
    host = jax.devices("cpu")[0]

    def init() -> tuple[TrainState, nnx.State]:
        graphdef, params, rest = _split(model_fn(nnx.Rngs(params=seed, dropout=seed + 1)))
        del graphdef
        params = nnx.to_pure_dict(params)
        key = jax.random.key_data(jax.random.key(seed))
        state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=key)
        return state, rest

    with partitioning.sharding_context(mesh, rules):
        abstract_model = nnx.eval_shape(lambda: model_fn(nnx.Rngs(params=seed, dropout=seed + 1)))
        graphdef, abstract_param_state, _ = _split(abstract_model)
        param_specs = partitioning.param_specs(abstract_param_state)
        abstract_state, _ = jax.eval_shape(init)
    with jax.default_device(host):
        specs = state_specs(tx, abstract_state, param_specs)
        with nnx.use_eager_sharding(False):
            rest = jax.jit(lambda: init()[1])()
    shardings = partitioning.named_shardings(abstract_state, specs, mesh)
    return ShardedState(
        abstract_with_shardings(abstract_state, shardings), shardings, ModelDef.from_split(graphdef, rest)
    )


def abstract_with_shardings(state: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying the target shardings: the restore target for a checkpoint (any mesh)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), state, shardings)


def parameter_count(state: TrainState) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(state.params))
