"""Parameter-tree helpers shared by the Hugging Face converters and `models/stack.py::transfer_weights` (plain
nested dicts of arrays; NumPy is this module's only dependency).

A `LayerStack` holds its blocks either scanned (one dict of arrays stacked on a leading `layers` axis) or
looped (a dict keyed by integer layer index); converters read either form and write the one asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Array = np.ndarray


def get(tree: Mapping, path: tuple[Any, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def put(tree: dict, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def is_scanned(blocks: Mapping) -> bool:
    """Scanned stacks hold named sub-dicts; looped ones hold integer layer indices."""
    return not all(isinstance(k, int) for k in blocks)


def num_layers(blocks: Mapping, probe: tuple[str, ...]) -> int:
    """Layer count of a stack; `probe` is the path of any per-layer array inside one block."""
    if is_scanned(blocks):
        return int(np.asarray(get(blocks, probe)).shape[0])
    return len(blocks)


def layer_getter(blocks: Mapping) -> Callable[[int, tuple[str, ...]], Array]:
    """`(layer index, path inside a block) -> array`, for either layout."""
    if is_scanned(blocks):
        return lambda i, path: np.asarray(get(blocks, path))[i]
    return lambda i, path: np.asarray(get(blocks[i], path))


def stack_blocks(layers: list[dict], *, scan: bool) -> dict:
    """Per-layer dicts → the `blocks` value of a scanned (stacked) or looped (indexed) stack."""
    if scan:
        import jax

        return jax.tree.map(lambda *xs: np.stack(xs), *layers)
    return dict(enumerate(layers))


def to_numpy(state_dict: Mapping[str, Any]) -> dict[str, Array]:
    """float32 NumPy arrays from torch tensors or arrays (a bf16 checkpoint is widened)."""
    out = {}
    for key, value in state_dict.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().float().numpy()
        out[key] = np.asarray(value)
    return out
