"""Models behind one small interface; the trainer imports only this package.

    model = build_model(config.model, layout.size, rngs=nnx.Rngs(seed))
    loss, sums = model.loss(batch, deterministic=False)     # sums: loss_sum, weight_sum, correct_sum, lang_*
    hidden = model.encode(input_ids, attention_mask, return_all_layers=True)

Sharded creation (ENV_NOTES §3): on a mesh with Auto axes, inside
`with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):`, where `rules` maps every name of `LOGICAL_AXES`
(`layers`, and any axis left unsharded, → None):

    abstract = nnx.eval_shape(lambda: build_model(cfg, V, rngs=nnx.Rngs(seed)))   # shardings, no memory
    specs = nnx.get_partition_spec(nnx.state(abstract))                             # mesh PartitionSpecs
    model = nnx.jit(lambda: build_model(cfg, V, rngs=nnx.Rngs(seed)))()             # created sharded
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)                              # also inside the context

Without a mesh the model is built unsharded (eager sharding off), its parameters still carrying their
logical names. Besides `nnx.Param`, a model holds one `nnx.Rngs` stream for dropout (`dropout_rngs`),
advanced on every non-deterministic call unless `loss(..., dropout_rng=key)` passes a key explicitly.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from flax import nnx
from flax.core import spmd as core_spmd

from xlt_jax.errors import ConfigError
from xlt_jax.models.layers import LOGICAL_AXES, param_creation_context
from xlt_jax.models.presets import PRESETS, ModelSpec, default_model_config, resolve_model_config
from xlt_jax.models.roberta import Roberta
from xlt_jax.models.stack import REMAT_POLICIES, transfer_weights
from xlt_jax.models.t5 import T5

__all__ = [
    "LOGICAL_AXES",
    "PRESETS",
    "REMAT_POLICIES",
    "ModelSpec",
    "build_model",
    "count_params",
    "default_model_config",
    "flops_per_example",
    "flops_per_token",
    "param_creation_context",
    "resolve_model_config",
    "transfer_weights",
]

_MODELS = {"roberta": Roberta, "t5": T5}


def _model_block(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Accept either `config.model` or a whole run config that has a `model` block."""
    if "name" not in config and "model" in config:
        return config.model
    return config


def _check_rules_cover_axes() -> None:
    rules = dict(core_spmd.get_logical_axis_rules())
    missing = [name for name in LOGICAL_AXES if name not in rules]
    if missing:
        raise ConfigError(
            "a mesh is set, so the model needs logical axis rules (nnx.logical_axis_rules) naming every logical "
            f"axis; missing: {', '.join(missing)} (map unsharded ones to None)"
        )


def build_model(config: ml_collections.ConfigDict, vocab_size: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """Build the model `config.name` ∈ {"roberta", "t5"} at `config.preset` with overrides, for `vocab_size` ids.

    Under `jax.set_mesh` + `nnx.logical_axis_rules`, parameters are created sharded (eager sharding; inside
    `nnx.jit` they never exist unsharded). Without a mesh, eager sharding is switched off for the build.
    """
    spec = resolve_model_config(_model_block(config), vocab_size)
    cls = _MODELS[spec.name]
    if not jax.sharding.get_abstract_mesh().empty:
        _check_rules_cover_axes()
    with param_creation_context():
        return cls(spec, rngs=rngs)


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def flops_per_example(
    config: ml_collections.ConfigDict,
    vocab_size: int,
    seq_len: int,
    target_len: int = 0,
    predicted: float | None = None,
    projected: float | None = None,
) -> float:
    """Analytic training FLOPs (forward + backward) for one example; see each model's
    `training_flops_per_sequence` (`predicted`: MLM rows gathered, None = all; `projected`: of them, the rows
    the head projects, None = all gathered). Use this, not `cost_analysis`, which counts a scanned layer body
    once."""
    spec = resolve_model_config(_model_block(config), vocab_size)
    if spec.name == "t5":
        from xlt_jax.models.t5 import training_flops_per_sequence

        return training_flops_per_sequence(spec, seq_len, target_len)
    from xlt_jax.models.roberta import training_flops_per_sequence

    return training_flops_per_sequence(spec, seq_len, predicted, projected)


def flops_per_token(
    config: ml_collections.ConfigDict, vocab_size: int, seq_len: int, target_len: int = 0
) -> float:
    """`flops_per_example / seq_len`: training FLOPs per input token (for T5, per encoder input token)."""
    return flops_per_example(config, vocab_size, seq_len, target_len) / seq_len
