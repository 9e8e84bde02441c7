"""Device mesh and logical-axis sharding, both from the config.

Model code names the axes of parameters and activations logically (`batch`, `embed`, `mlp`, ...); this module
owns the only mapping from those names onto the physical mesh `('data', 'fsdp', 'tensor')`. The mesh uses Auto
axis types (GSPMD style): with jax 0.10's default Explicit axes, gathers inside `nnx.Embed` fail to shard
(ENV_NOTES §3).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from xlt_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
# The batch dimension is split over both data-parallel axes: FSDP shards parameters but not the work.
BATCH_AXES = ("data", "fsdp")

LogicalRules = tuple[tuple[str, str | tuple[str, ...] | None], ...]


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Replace a single -1 in `shape` by the remaining device count; the product must equal `num_devices`."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(MESH_AXES):
        raise ConfigError(f"mesh.shape {shape} must have {len(MESH_AXES)} entries for axes {MESH_AXES}")
    if shape.count(-1) > 1:
        raise ConfigError(f"mesh.shape {shape}: at most one axis may be -1")
    if any(s == 0 or s < -1 for s in shape):
        raise ConfigError(f"mesh.shape {shape}: sizes must be positive (or -1 for 'the rest')")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise ConfigError(
                f"mesh.shape {shape} does not divide the {num_devices} devices: "
                f"the fixed axes need a multiple of {known}"
            )
        shape = tuple(num_devices // known if s == -1 else s for s in shape)
    if math.prod(shape) != num_devices:
        raise ConfigError(
            f"mesh.shape {shape} uses {math.prod(shape)} devices but {num_devices} are available; "
            "set one axis to -1 to take the rest"
        )
    return shape


def make_mesh(mesh_config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Mesh over ('data', 'fsdp', 'tensor') from `config.mesh.shape`, with Auto axis types."""
    devices = list(devices if devices is not None else jax.devices())
    shape = resolve_mesh_shape(mesh_config.shape, len(devices))
    return jax.make_mesh(
        shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES), devices=devices
    )


def logical_rules(rules_config: Mapping[str, Any]) -> LogicalRules:
    """Flax rules `((logical, mesh_axes), ...)` from the config mapping `logical -> mesh axis | tuple | None`."""
    rules = []
    for logical, target in rules_config.items():
        if target is None or target == "":
            axes = None
        elif isinstance(target, str):
            axes = target
        else:
            axes = tuple(target)
        for axis in (axes,) if isinstance(axes, str) else axes or ():
            if axis not in MESH_AXES:
                raise ConfigError(f"mesh.rules.{logical}: unknown mesh axis {axis!r}; mesh axes are {MESH_AXES}")
        rules.append((logical, axes))
    return tuple(rules)


@contextlib.contextmanager
def sharding_context(mesh: Mesh, rules: LogicalRules) -> Iterator[None]:
    """Mesh + logical rules active: needed to create models (eager sharding) and to trace steps."""
    with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
        yield


def _axis_size(mesh: Mesh, entry: str | tuple[str, ...] | None) -> int:
    if entry is None:
        return 1
    names = (entry,) if isinstance(entry, str) else entry
    return math.prod(mesh.shape[n] for n in names)


def fit_spec(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh, name: str = "") -> PartitionSpec:
    """Drop mesh axes from dimensions they do not divide (jit out_shardings must tile evenly), with a warning."""
    entries = list(spec) + [None] * (len(shape) - len(spec))
    fitted = []
    for dim, (size, entry) in enumerate(zip(shape, entries, strict=True)):
        if entry is not None and size % _axis_size(mesh, entry):
            logging.warning(
                "%s: dimension %d (size %d) is not divisible by mesh axes %s; replicating it instead",
                name or "array", dim, size, entry,
            )
            entry = None
        fitted.append(entry)
    return PartitionSpec(*fitted)


def param_specs(abstract_params: nnx.State) -> dict:
    """Mesh PartitionSpecs (pure dict) of an abstract `nnx.Param` state; call inside `sharding_context`."""
    return nnx.to_pure_dict(nnx.get_partition_spec(abstract_params))


def named_shardings(abstract_tree: Any, specs: Any, mesh: Mesh) -> Any:
    """NamedShardings for `abstract_tree` (ShapeDtypeStruct leaves) from a matching tree of specs."""
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract_tree)
    spec_leaves = treedef.flatten_up_to(specs)
    shardings = [
        NamedSharding(mesh, fit_spec(spec, leaf.shape, mesh, jax.tree_util.keystr(path)))
        for (path, leaf), spec in zip(paths_and_leaves, spec_leaves, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, shardings)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Leading (batch) dimension over ('data', 'fsdp'), the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def batch_shardings(mesh: Mesh, batch: Mapping[str, Any]) -> dict[str, NamedSharding]:
    return {k: batch_sharding(mesh, np.ndim(v)) for k, v in batch.items()}


def num_batch_shards(mesh: Mesh) -> int:
    """How many ways the global batch is split: its size must be a multiple of this."""
    return _axis_size(mesh, BATCH_AXES)


def process_batch_rows(mesh: Mesh, global_batch_size: int) -> slice:
    """The contiguous rows of the global batch that this process's devices hold (what it must feed)."""
    index_map = batch_sharding(mesh, 1).addressable_devices_indices_map((global_batch_size,))
    starts = sorted({idx[0].indices(global_batch_size)[:2] for idx in index_map.values()})
    lo, hi = starts[0][0], starts[-1][1]
    covered = sum(b - a for a, b in starts)
    if covered != hi - lo:
        raise ConfigError(f"this process's devices do not hold a contiguous block of the batch: {starts}")
    return slice(lo, hi)


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble global arrays from each process's rows of the batch (this host's contiguous slice)."""
    return {
        k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(v)), np.asarray(v))
        for k, v in local_batch.items()
    }
