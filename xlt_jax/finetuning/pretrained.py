"""Reading a run directory written by the pretraining loop, and restoring only the parameters it holds.

A pretraining WORKDIR (`xlt_jax.training.loop`) holds `config.json` (the run config), `tokenizer/` and
`checkpoints/<step>/state` (the Orbax `TrainState`: params, optimizer slots, step, RNG). Fine-tuning and
evaluation need only the parameters, so they are restored with Orbax's partial restore: the target tree
names just the `params` subtrees a task model uses (RoBERTa's MLM head and T5's decoder are never read for
an encoder head), each leaf carrying the sharding it gets on the current mesh.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from xlt_jax import storage
from xlt_jax.data.tokenizer import Tokenizer
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError
from xlt_jax.training import loop

STATE_ITEM = "state"  # the Orbax item of `training.checkpointing.Checkpointer` that holds the TrainState
HF_PREFIX = "hf:"  # pretrained=hf:DIR: a Hugging Face checkpoint directory (interop.hf_import)


def checkpoint_steps(checkpoint_dir: epath.Path) -> list[int]:
    """Finished checkpoint steps in `checkpoint_dir`: Orbax renames a local step directory once complete; on
    `gs://` (no atomic rename) it writes in place and marks each finished item, which Orbax checks here."""
    if not checkpoint_dir.is_dir():
        return []
    return sorted(int(p.name) for p in checkpoint_dir.iterdir() if p.name.isdigit() and (p / STATE_ITEM).is_dir()
                  and ocp.utils.is_checkpoint_finalized(p / STATE_ITEM))


def state_dir(checkpoint_dir: epath.Path, step: int = 0) -> tuple[epath.Path, int]:
    """`checkpoints/<step>/state` for `step` (0 = the latest) and the step chosen."""
    steps = checkpoint_steps(checkpoint_dir)
    if not steps:
        raise ConfigError(f"{checkpoint_dir}: no finished checkpoint (expected <step>/{STATE_ITEM} directories)")
    chosen = steps[-1] if step == 0 else step
    if chosen not in steps:
        raise ConfigError(f"{checkpoint_dir}: no checkpoint at step {step}; available: {steps}")
    return checkpoint_dir / str(chosen) / STATE_ITEM, chosen


def read_json_config(path: epath.Path) -> ml_collections.ConfigDict:
    if not path.is_file():
        raise ConfigError(f"{path}: missing; is {path.parent} a run directory written by xlt_jax?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


@dataclasses.dataclass(frozen=True)
class PretrainedRun:
    """What a fine-tune or evaluation takes from a pretraining WORKDIR."""

    workdir: epath.Path  # storage.workdir_path: absolute, or gs://
    config: ml_collections.ConfigDict  # the pretraining run config (config.json)
    tokenizer: Tokenizer
    layout: VocabLayout  # id layout of the model's embedding rows (copies of V, then sentinels)
    step: int
    state_dir: epath.Path  # checkpoints/<step>/state

    @property
    def model_config(self) -> ml_collections.ConfigDict:
        return self.config.model

    @property
    def name(self) -> str:
        return self.workdir.name


def model_layout(config: ml_collections.ConfigDict, tokenizer: Tokenizer, vocab_size: int) -> VocabLayout:
    """The layout behind `vocab_size` embedding rows: V-sized copies, then the span objective's sentinels."""
    sentinels = tokenizer.num_sentinels
    if config.data.get("objective") == "span":
        sentinels = max(sentinels, int(config.data.num_sentinels))
    copies, rest = divmod(vocab_size - sentinels, tokenizer.base_size)
    if copies < 1 or rest:
        raise ConfigError(
            f"embedding of {vocab_size} rows is not k x V={tokenizer.base_size} + {sentinels} sentinels; "
            "the checkpoint and tokenizer do not belong together"
        )
    return VocabLayout(tokenizer.base_size, copies=copies, num_sentinels=sentinels)


def saved_param_shapes(path: epath.Path) -> dict:
    """Shapes of the saved `params` tree (from the checkpoint's metadata, no array is read)."""
    metadata = ocp.PyTreeCheckpointer().metadata(path).item_metadata
    tree = metadata.tree if hasattr(metadata, "tree") else metadata
    if "params" not in tree:
        raise ConfigError(f"{path}: not a train-state checkpoint (no 'params'; has {sorted(tree)})")
    return jax.tree.map(lambda m: tuple(m.shape), tree["params"])


def vocab_rows(param_shapes: dict, embedding_path: tuple[str, ...]) -> int:
    node: Any = param_shapes
    for key in embedding_path:
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"checkpoint has no parameter {'/'.join(embedding_path)}")
        node = node[key]
    return int(node[0])


# Where each architecture keeps its input embedding table (vocab rows first).
EMBEDDING_PATHS = {"roberta": ("embeddings", "word_embeddings", "embedding"), "t5": ("shared_embedding", "embedding")}


def load_pretrained(workdir: str | os.PathLike, step: int = 0) -> PretrainedRun:
    """Config, tokenizer, vocabulary layout and checkpoint location of a pretraining run directory.

    `hf:DIR` names a local Hugging Face checkpoint instead, converted once into a cached run directory
    (`xlt_jax.interop.hf_import`).
    """
    if str(workdir).startswith(HF_PREFIX):
        from xlt_jax.interop import hf_import

        workdir = hf_import.resolve(str(workdir))
    if not str(workdir) or not storage.workdir_path(workdir).is_dir():
        raise ConfigError(f"pretrained: {str(workdir)!r} is not a directory (give a pretraining WORKDIR)")
    workdir = storage.workdir_path(workdir)
    config = read_json_config(workdir / loop.CONFIG_FILE)
    tokenizer = Tokenizer.load(workdir / loop.TOKENIZER_DIR)
    path, chosen = state_dir(workdir / loop.CHECKPOINT_DIR, step)
    name = config.model.name
    if name not in EMBEDDING_PATHS:
        raise ConfigError(f"{workdir}: model.name {name!r} is not one of {sorted(EMBEDDING_PATHS)}")
    rows = vocab_rows(saved_param_shapes(path), EMBEDDING_PATHS[name])
    layout = model_layout(config, tokenizer, rows)
    logging.info("pretrained %s model from %s (step %d, %d embedding rows: %s)", name, workdir, chosen, rows, layout)
    return PretrainedRun(workdir, config, tokenizer, layout, chosen, path)


def restore_params(path: epath.Path, target: dict) -> dict:
    """Restore the subtrees of `params` named by `target` (ShapeDtypeStruct leaves with shardings).

    Everything else in the checkpoint (optimizer slots, unused heads) is left on disk. Shapes must match
    the saved ones exactly; vocabulary resizing happens afterwards (`vocab_resize`).
    """
    restore_args = jax.tree.map(
        lambda s: ocp.ArrayRestoreArgs(sharding=s.sharding, global_shape=s.shape, dtype=s.dtype), target
    )
    try:
        restored = ocp.PyTreeCheckpointer().restore(
            path,
            args=ocp.args.PyTreeRestore(
                item={"params": target}, restore_args={"params": restore_args}, partial_restore=True
            ),
        )
    except (ValueError, KeyError) as e:
        raise ConfigError(f"{path}: parameters do not match the model built from the run's config: {e}") from e
    return restored["params"]


def _int_keys(tree: Any) -> Any:
    """Orbax stores the integer layer indices of looped stacks as strings; give them back as ints."""
    if not isinstance(tree, dict):
        return tree
    keys = list(tree)
    if keys and all(isinstance(k, str) and k.isdigit() for k in keys):
        return {int(k): _int_keys(v) for k, v in tree.items()}
    return {k: _int_keys(v) for k, v in tree.items()}


def restore_all_params(path: epath.Path) -> dict:
    """Every parameter of the checkpoint at `path`, on the first local device, without building the model
    that wrote it (shapes and dtypes from the checkpoint's metadata). Exports use it."""
    metadata = ocp.PyTreeCheckpointer().metadata(path).item_metadata
    tree = metadata.tree if hasattr(metadata, "tree") else metadata
    if "params" not in tree:
        raise ConfigError(f"{path}: not a train-state checkpoint (no 'params'; has {sorted(tree)})")
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), tree["params"])
    return _int_keys(restore_params(path, target))
