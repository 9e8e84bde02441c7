"""The fine-tuned run directory: what `finetune` writes and `evaluate` reads.

    WORKDIR/config.json     the fine-tune config as run
    WORKDIR/finetune.json   resolved facts evaluation needs (task, head, labels, model config, vocabulary
                            layout, training data and transform, the pretrained run it started from)
    WORKDIR/tokenizer/      the pretrained run's tokenizer (so the directory is self-contained)
    WORKDIR/checkpoints/    Orbax train states (`training.checkpointing.Checkpointer`), the last one final
    WORKDIR/events.*        TensorBoard scalars

JSON files are written atomically (`storage.atomic_write`: temporary name and rename, or one object write on
`gs://`), so a reader never sees half a file; Orbax checkpoints are atomic by themselves.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
from etils import epath

from xlt_jax import storage
from xlt_jax.data.tokenizer import Tokenizer
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError
from xlt_jax.finetuning import pretrained
from xlt_jax.finetuning.task_model import HeadSpec
from xlt_jax.training import loop

CONFIG_FILE = loop.CONFIG_FILE
INFO_FILE = "finetune.json"
TOKENIZER_DIR = loop.TOKENIZER_DIR
CHECKPOINT_DIR = loop.CHECKPOINT_DIR


def write_json_atomic(path: epath.Path, obj: Any) -> None:
    """`storage.atomic_write` of `obj` as JSON (process 0 only)."""
    if jax.process_index() != 0:
        return
    storage.atomic_write(path, json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8"))


@dataclasses.dataclass(frozen=True)
class FinetuneInfo:
    """Everything about a fine-tuned model that is not its weights (finetune.json)."""

    task: str
    head: dict  # HeadSpec fields
    label_names: list[str]
    label_targets: list[list[int]]  # text head: target ids of each label word
    model: dict  # the model config block (pretrained, with fine-tune overrides)
    layout: dict  # VocabLayout fields of the model's embedding rows
    train_lang: str
    train_transform: str
    train_source: str
    train_examples: int
    transform_seed: int
    max_len: int
    task_options: dict  # extra `tasks.prepare` options (QA doc_stride, max_query_len)
    bucket: int
    seed: int
    total_steps: int
    pretrained: str
    pretrained_name: str
    pretrained_step: int

    @property
    def head_spec(self) -> HeadSpec:
        return HeadSpec(**self.head)

    @property
    def vocab_layout(self) -> VocabLayout:
        return VocabLayout(**self.layout)

    @property
    def model_config(self) -> ml_collections.ConfigDict:
        return ml_collections.ConfigDict(self.model)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FinetunedRun:
    workdir: epath.Path
    info: FinetuneInfo
    tokenizer: Tokenizer
    step: int
    state_dir: epath.Path


def layout_dict(layout: VocabLayout) -> dict:
    return {"base_size": layout.base_size, "copies": layout.copies, "num_sentinels": layout.num_sentinels}


def save_run_files(workdir: epath.Path, config: ml_collections.ConfigDict, info: FinetuneInfo,
                   tokenizer: Tokenizer) -> None:
    if jax.process_index() != 0:
        return
    write_json_atomic(workdir / CONFIG_FILE, json.loads(config.to_json_best_effort()))
    write_json_atomic(workdir / INFO_FILE, info.to_json())
    if not (workdir / TOKENIZER_DIR).is_dir():
        tokenizer.save(workdir / TOKENIZER_DIR)


def load_finetuned(workdir: str | os.PathLike, step: int = 0) -> FinetunedRun:
    """A fine-tuned run directory: its info, tokenizer and the checkpoint at `step` (0 = the last)."""
    workdir = storage.workdir_path(workdir)
    path = workdir / INFO_FILE
    if not path.is_file():
        raise ConfigError(f"finetuned: {path} is missing; is {workdir} a directory written by xlt_jax.finetune?")
    fields = {f.name for f in dataclasses.fields(FinetuneInfo)}
    record = json.loads(path.read_text())
    unknown = sorted(set(record) - fields)
    missing = sorted(fields - set(record))
    if unknown or missing:
        raise ConfigError(f"{path}: unknown fields {unknown} / missing fields {missing} (written by another version?)")
    info = FinetuneInfo(**record)
    state_dir, chosen = pretrained.state_dir(workdir / CHECKPOINT_DIR, step)
    return FinetunedRun(workdir, info, Tokenizer.load(workdir / TOKENIZER_DIR), chosen, state_dir)
