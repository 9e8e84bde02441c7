"""Moving parameters into a model whose vocabulary layout differs: the MZ case of transliteration.

REFERENCE_SPEC §1.4: a monolingual model has V embedding rows, but a transliterated evaluation set uses ids
[V, 2V). The reference feeds them to a V-row model anyway (on TPU the gather clamps every derived id to row
V-1). xlt_jax defines the case explicitly instead: the model is resized to the layout the data needs, rows
of the ids it already had keep their trained values, the new copy's rows are RANDOMLY INITIALISED with the
model's own initialiser and never trained ("no transfer" through the embeddings), and T5 sentinels move
with the top of the vocabulary (VocabLayout: sentinels count down from the last row).

Every parameter with a `vocab` logical axis is resized the same way (input embeddings, T5's untied logits
kernel, RoBERTa's MLM output bias), so the rule needs no knowledge of the architecture. The merge also fills
a fresh task model with pretrained backbone weights: subtrees the checkpoint does not have (a new task
head) keep their fresh initialisation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError

Path = tuple[str, ...]


def row_map(old: VocabLayout, new: VocabLayout) -> np.ndarray:
    """New row of every old row: natural and copied ids keep their id, sentinels move to the new top."""
    if old.base_size != new.base_size or old.num_sentinels != new.num_sentinels or new.copies < old.copies:
        raise ConfigError(f"cannot resize vocabulary layout {old} to {new}: only adding copies of V is defined")
    ids = np.arange(old.base_size * old.copies)
    sentinels = new.base_size * new.copies + np.arange(old.num_sentinels)
    return np.concatenate([ids, sentinels]).astype(np.int32)


def vocab_axes(model_fn: Callable[[nnx.Rngs], nnx.Module]) -> dict[Path, int]:
    """Path -> axis of every parameter whose logical axis names include `vocab` (built abstractly)."""
    abstract = nnx.eval_shape(lambda: model_fn(nnx.Rngs(0)))
    out = {}
    for path, variable in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
        names = variable.get_metadata().get("out_sharding") or ()
        if "vocab" in names:
            out[tuple(str(p) for p in path)] = names.index("vocab")
    return out


def _path(key_path: tuple) -> Path:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in key_path)


def _lookup(tree: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def merge_params(
    fresh: dict,
    loaded: dict,
    *,
    axes: dict[Path, int],
    rows: np.ndarray | None,
    shardings: Any,
) -> dict:
    """`fresh` with every leaf that `loaded` has replaced by the loaded value; runs jitted onto `shardings`.

    Leaves of equal shape are copied. A leaf on a `vocab` axis (`axes`) whose size differs takes the loaded
    rows at `rows` (from `row_map`) and keeps the fresh values elsewhere. Any other shape difference means
    the checkpoint belongs to another architecture: ConfigError naming the parameter.
    """
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(fresh)[0]:
        path = _path(key_path)
        old = _lookup(loaded, path)
        if old is None or old.shape == leaf.shape:
            continue
        axis = axes.get(path)
        ok = (
            axis is not None
            and rows is not None
            and old.shape[axis] == len(rows)
            and old.shape[:axis] + old.shape[axis + 1 :] == leaf.shape[:axis] + leaf.shape[axis + 1 :]
        )
        if not ok:
            raise ConfigError(
                f"parameter {'/'.join(path)}: checkpoint shape {old.shape} does not fit the model's {leaf.shape}"
            )

    def merge(fresh_tree: dict, loaded_tree: dict) -> dict:
        def leaf(key_path: tuple, new: jax.Array) -> jax.Array:
            path = _path(key_path)
            old = _lookup(loaded_tree, path)
            if old is None:
                return new
            if old.shape == new.shape:
                return old.astype(new.dtype)
            index = [slice(None)] * new.ndim
            index[axes[path]] = jnp.asarray(rows)
            return new.at[tuple(index)].set(old.astype(new.dtype))

        return jax.tree_util.tree_map_with_path(leaf, fresh_tree)

    return jax.jit(merge, out_shardings=shardings, donate_argnums=(0,))(fresh, loaded)


def log_resize(old: VocabLayout, new: VocabLayout, axes: dict[Path, int], why: str) -> None:
    if old == new:
        return
    moved = f"; {old.num_sentinels} sentinels move to the top" if old.num_sentinels else ""
    logging.warning(
        "resizing the vocabulary from %d to %d rows (%s): rows [%d, %d) are NEW and randomly initialised "
        "(untrained)%s; parameters resized: %s",
        old.size, new.size, why, old.base_size * old.copies, new.base_size * new.copies, moved,
        ", ".join("/".join(p) for p in sorted(axes)),
    )
