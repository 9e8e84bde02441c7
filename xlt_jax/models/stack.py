"""The stack of transformer layers: scanned (parameters stacked on a `layers` axis) or a Python loop, with
optional rematerialisation, how many layers a scanned iteration runs, and moving weights between the layouts.

Dropout keys are split per layer here and passed in, so a scanned stack carries no RNG state and the same
weights run identically under `nnx.scan` or a Python loop (see layers.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from xlt_jax.errors import ConfigError
from xlt_jax.interop import tree
from xlt_jax.models.platform import traced_platform

# jax.checkpoint policies by config name; "none" means no rematerialisation at all.
REMAT_POLICIES: dict[str, Any] = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
}


def check_scan_unroll(value: int) -> int:
    """`model.scan_unroll` as given (0 = auto), or a ConfigError naming the key."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ConfigError(f"model.scan_unroll must be 0 (auto) or a positive integer, got {value!r}")


def resolve_scan_unroll(value: int, num_layers: int, platform: str | None = None) -> int:
    """Layers per iteration of the scanned loop on `platform` (default: the platform being traced for).

    0 (auto) is every layer on CPU and 1 elsewhere. On XLA:CPU a rolled loop stacks each layer's saved
    activations into loop buffers and its body fuses worse: roberta8's step is 6–9% slower rolled than fully
    unrolled (`bench ab`, README "Performance"); the weights stay stacked either way. On TPU the rolled loop is
    the usual choice (one body to compile; MaxText and t5x scan by default), so auto leaves it rolled there.
    """
    if check_scan_unroll(value) == 0:
        value = num_layers if (platform or traced_platform()) == "cpu" else 1
    return min(value, num_layers)


class LayerStack(nnx.Module):
    """`num_layers` copies of one block, run under `nnx.scan` (parameters stacked on a leading `layers` axis)
    or as a Python loop over an `nnx.List`, with optional rematerialisation of each block.

    A block is called as `block(x, *context, key=key, deterministic=...)` and returns the new `x`; `context`
    (masks, biases, encoder outputs) is the same for every layer.
    """

    def __init__(
        self,
        make_layer: Callable[[nnx.Rngs], nnx.Module],
        num_layers: int,
        *,
        scan: bool,
        remat_policy: str,
        rngs: nnx.Rngs,
        unroll: int = 1,
    ):
        if remat_policy not in REMAT_POLICIES:
            raise ConfigError(f"model.remat_policy {remat_policy!r} is not one of {sorted(REMAT_POLICIES)}")
        self.num_layers = num_layers
        self.scan = scan
        self.unroll = check_scan_unroll(unroll)
        self.remat_policy = remat_policy
        if scan:

            @nnx.split_rngs(splits=num_layers)
            @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
            def create(layer_rngs: nnx.Rngs) -> nnx.Module:
                return make_layer(layer_rngs)

            self.blocks = create(rngs)
        else:
            self.blocks = nnx.List([make_layer(rngs) for _ in range(num_layers)])

    def _step_fn(
        self, context: tuple[jax.Array, ...], deterministic: bool, **kwargs: Any
    ) -> Callable[..., jax.Array]:
        def step(layer: nnx.Module, x: jax.Array, key: jax.Array) -> jax.Array:
            return layer(x, *context, key=key, deterministic=deterministic, **kwargs)

        if self.remat_policy == "none":
            return step
        return nnx.remat(step, policy=REMAT_POLICIES[self.remat_policy], prevent_cse=not self.scan)

    def __call__(
        self,
        x: jax.Array,
        *context: jax.Array,
        key: jax.Array,
        deterministic: bool,
        collect: bool = False,
        last_kwargs: dict[str, Any] | None = None,
    ) -> tuple[jax.Array, list[jax.Array]]:
        """Run all layers; returns the final output and, if `collect`, every layer's output in order.

        `last_kwargs` are keyword arguments for the final layer alone (RoBERTa passes it the predicted
        positions, whose rows alone it then computes).
        """
        if collect and last_kwargs:
            raise ValueError("collect=True needs every layer's full output; it cannot take last_kwargs")
        keys = jax.random.split(key, self.num_layers)
        step = self._step_fn(context, deterministic)
        last = self._step_fn(context, deterministic, **last_kwargs) if last_kwargs else step
        if not self.scan:
            outputs = []
            for i, layer in enumerate(self.blocks):
                x = (last if i == self.num_layers - 1 else step)(layer, x, keys[i])
                outputs.append(x)
            return x, outputs if collect else []
        if not last_kwargs:
            x, stacked = self._scan(self.blocks, step, x, keys, collect)
            return x, [stacked[i] for i in range(self.num_layers)] if collect else []
        head, tail = _split_last_layer(self.blocks)
        if self.num_layers > 1:
            x, _ = self._scan(head, step, x, keys[:-1], collect=False)
        return last(tail, x, keys[-1]), []

    def _scan(
        self, blocks: nnx.Module, step: Callable[..., jax.Array], x: jax.Array, keys: jax.Array, collect: bool
    ) -> tuple[jax.Array, jax.Array | None]:
        @nnx.scan(
            unroll=resolve_scan_unroll(self.unroll, keys.shape[0]),
            in_axes=(0, nnx.Carry, 0),
            out_axes=(nnx.Carry, 0),
            transform_metadata={nnx.PARTITION_NAME: "layers"},
        )
        def body(layer: nnx.Module, h: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array | None]:
            h = step(layer, h, k)
            return h, (h if collect else None)

        return body(blocks, x, keys)


def _split_last_layer(blocks: nnx.Module) -> tuple[nnx.Module, nnx.Module]:
    """Stacked layers [N] → (layers [N - 1], stacked as before; the last layer, unstacked, as one block)."""
    graphdef, state = nnx.split(blocks)
    head = nnx.merge(graphdef, jax.tree.map(lambda a: a[:-1], state))
    tail = jax.tree.map(lambda a: a[-1], state)
    return head, nnx.merge(graphdef, nnx.spmd.remove_axis(tail, 0, {nnx.PARTITION_NAME: "layers"}))


# --- moving weights between the scanned and the looped layout ------------------------------------------


def _stack_paths(model: nnx.Module) -> list[tuple[tuple[Any, ...], LayerStack]]:
    return [(tuple(path), m) for path, m in nnx.iter_modules(model) if isinstance(m, LayerStack)]


def transfer_weights(src: nnx.Module, dst: nnx.Module) -> None:
    """Copy every parameter of `src` into `dst`, converting each `LayerStack` between scanned and looped form.

    Both models must come from the same config apart from `scan_layers` / `remat_policy` / dtypes. Useful for
    loading a scanned checkpoint into the (faster on CPU, ENV_NOTES §8) loop layout and for tests.
    """
    pure = nnx.to_pure_dict(nnx.state(src, nnx.Param))
    dst_stacks = dict(_stack_paths(dst))
    for path, src_stack in _stack_paths(src):
        dst_stack = dst_stacks[path]
        sub = tree.get(pure, (*path, "blocks"))
        if src_stack.scan and not dst_stack.scan:
            sub = {i: jax.tree.map(lambda a, i=i: a[i], sub) for i in range(src_stack.num_layers)}
        elif dst_stack.scan and not src_stack.scan:
            per_layer = [sub[i] for i in range(src_stack.num_layers)]
            sub = jax.tree.map(lambda *xs: jnp.stack(xs), *per_layer)
        tree.put(pure, (*path, "blocks"), sub)
    dst_state = nnx.state(dst, nnx.Param)
    nnx.replace_by_pure_dict(dst_state, pure)
    nnx.update(dst, dst_state)
