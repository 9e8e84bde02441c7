"""The fine-tuning loop: `run(config, workdir)` from a pretraining run directory to a fine-tuned checkpoint.

Order of work, so configuration errors surface before any compute: mesh and batch divisibility, the
pretrained run (config, tokenizer, checkpoint), the training split (`tasks.prepare`, transformed by
`train_transform`), then the sharded task model: a fresh head, the pretrained backbone restored into it
(resized if the training data needs more vocabulary copies than the pretrained model has, see
`vocab_resize`). Training is the reference recipe (REFERENCE_SPEC §4.2): AdamW, linear warmup/decay,
fixed epochs, no checkpoint selection; the train step is the pretraining trainer's own
(`training.steps.make_train_step`), the task model exposing the same `loss` interface. As in pretraining,
SIGTERM saves the next step and stops with `Preempted`, and a damaged newest checkpoint is set aside for
the previous good one.

Batches are shuffled per epoch by a permutation keyed by (seed, epoch) and cropped to bucket lengths, so
the step compiles once per bucket. Rerunning the same command resumes from the last checkpoint: the
position in the data follows from the step alone, so the same batches come next.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

from xlt_jax import storage
from xlt_jax.data import parse, tasks, transforms
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError
from xlt_jax.finetuning import artifacts, loading, pretrained, text_to_text
from xlt_jax.finetuning.task_model import TASK_KIND, HeadSpec, resolve_kind, task_model_fn
from xlt_jax.training import checkpointing, distributed, loop, optimizer, partitioning, preemption, steps
from xlt_jax.training import state as state_lib
from xlt_jax.training.writers import MetricWriter

# Options of `tasks.prepare` that a task's config may carry (each task's featurize accepts them).
TASK_OPTIONS = {"qa": ("doc_stride", "max_query_len"), "ner": ("canonicalize_bio",)}


@dataclasses.dataclass
class FinetuneResult:
    start_step: int
    final_step: int
    history: list[dict[str, float]]  # per logged interval: step, loss, accuracy, learning_rate
    workdir: epath.Path
    info: artifacts.FinetuneInfo


# -- set-up -----------------------------------------------------------------------------------------


def model_config_for(pre: pretrained.PretrainedRun, overrides: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The pretrained model's config with the fine-tune overrides (dropout >= 0, non-empty strings) applied.

    Structure (sizes, scan layout) always comes from the pretrained run, or its checkpoint would not fit.
    """
    model = copy.deepcopy(pre.model_config)
    if overrides.dropout >= 0:
        model.dropout = float(overrides.dropout)
    for key in ("dtype", "remat_policy"):
        if overrides[key]:
            model[key] = overrides[key]
    return model


def task_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return {k: config[k] for k in TASK_OPTIONS.get(config.task, ()) if k in config}


def check_batch(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> None:
    batch, accum = int(config.train.global_batch_size), int(config.train.grad_accum_steps)
    shards = partitioning.num_batch_shards(mesh)
    if accum < 1 or batch % (shards * accum) or batch % jax.process_count():
        raise ConfigError(
            f"train.global_batch_size={batch} must be a multiple of the {shards} batch shards (mesh data x fsdp) "
            f"x train.grad_accum_steps={accum}, and of the {jax.process_count()} hosts"
        )
    loop.check_host_rows(mesh, batch)


def check_lengths(config: ml_collections.ConfigDict, model_config: ml_collections.ConfigDict) -> None:
    if int(config.max_len) > int(model_config.max_len):
        raise ConfigError(
            f"max_len={config.max_len} exceeds the pretrained model's model.max_len={model_config.max_len} "
            "(its position table); lower max_len"
        )


def prepare_training_data(
    config: ml_collections.ConfigDict, pre: pretrained.PretrainedRun, kind: str
) -> tuple[tasks.TaskData, tasks.Features, np.ndarray | None]:
    """The training split's TaskData, the features the model trains on, and the text head's label targets
    (NLI; QA text targets are per question, in the features' decoder fields)."""
    data = tasks.prepare(
        config.task, pre.tokenizer, lang=config.lang, split=config.train_split,
        transform=config.train_transform or "none", seed=int(config.transform_seed), max_len=int(config.max_len),
        source=config.train_source or None, limit=int(config.max_train_examples) or None,
        bucket=int(config.bucket), **parse.tree_options(config), **task_options(config),
    )
    logging.info("training data: %s", json.dumps(data.describe()))
    features = data.features
    targets = None
    if kind == "text" and config.task == "qa":
        features, counts = text_to_text.add_answer_fields(data, pre.tokenizer)
        logging.info("text-to-text QA: %d training rows (one per question), %s", len(features), json.dumps(counts))
    elif kind == "text":
        targets = text_to_text.label_targets(pre.tokenizer, data.label_names)
        features = text_to_text.add_decoder_fields(features, targets)
    return data, features, targets


def data_fingerprint(config: ml_collections.ConfigDict, num_rows: int) -> str:
    """What fixes the sequence of training batches; a resumed run must have the same."""
    desc = [config.task, config.lang, config.train_split, config.train_transform, config.train_source,
            config.transform_seed, config.max_len, config.max_train_examples, config.bucket, config.seed,
            config.train.global_batch_size, num_rows]  # fmt: skip
    trees = parse.tree_options(config)
    if trees["trees"] != "gold":  # parsed trees change the data; gold runs keep their earlier fingerprints
        desc.append(trees)
    if int(config.group_by_length):  # likewise: random batches keep their earlier fingerprints
        desc.append(["group_by_length", int(config.group_by_length)])
    return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]


def total_steps(config: ml_collections.ConfigDict, num_rows: int) -> tuple[int, int]:
    """(steps per epoch, total steps): full batches only, epochs x batches, capped by train.max_steps."""
    per_epoch = num_rows // int(config.train.global_batch_size)
    if per_epoch < 1:
        raise ConfigError(
            f"train.global_batch_size={config.train.global_batch_size} exceeds the {num_rows} training rows"
        )
    total = int(config.train.epochs) * per_epoch
    if int(config.train.max_steps) > 0:
        total = min(total, int(config.train.max_steps))
    if total < 1:
        raise ConfigError(f"train.epochs={config.train.epochs}: nothing to train")
    return per_epoch, total


def finetune_info(
    config: ml_collections.ConfigDict,
    pre: pretrained.PretrainedRun,
    data: tasks.TaskData,
    head: HeadSpec,
    model_config: ml_collections.ConfigDict,
    layout: VocabLayout,
    targets: np.ndarray | None,
    total: int,
) -> artifacts.FinetuneInfo:
    """What evaluation must know about the fine-tuned model besides its weights (finetune.json)."""
    return artifacts.FinetuneInfo(
        task=config.task, head=dataclasses.asdict(head), label_names=list(data.label_names or ()),
        label_targets=targets.tolist() if targets is not None else [],
        model=json.loads(model_config.to_json_best_effort()), layout=artifacts.layout_dict(layout),
        train_lang=config.lang, train_transform=data.transform, train_source=data.source,
        train_examples=len(data.examples), transform_seed=int(config.transform_seed), max_len=int(config.max_len),
        task_options=task_options(config), bucket=int(config.bucket), seed=int(config.seed), total_steps=total,
        pretrained=os.fspath(pre.workdir), pretrained_name=pre.name, pretrained_step=pre.step,
    )


def training_batches(
    features: tasks.Features,
    *,
    batch_size: int,
    seed: int,
    bucket: int,
    per_epoch: int,
    group_by_length: int = 0,
    start_step: int = 0,
    host_index: int = 0,
    host_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """This host's training batches from global step `start_step` on, epoch after epoch.

    Epoch e is a permutation keyed by (seed, e) cut into full batches, so the batches after step s depend
    on s alone: a resumed run continues with exactly the batches an uninterrupted run would have seen.
    """
    for epoch in itertools.count(start_step // per_epoch):
        batches = tasks.iterate_batches(
            features, batch_size, seed=seed, epoch=epoch, shuffle=True, drop_remainder=True, bucket=bucket,
            group_by_length=group_by_length, keys=features.model_keys, host_index=host_index, host_count=host_count,
        )
        skip = start_step - epoch * per_epoch if epoch == start_step // per_epoch else 0
        yield from itertools.islice(batches, skip, None)


# -- the loop ---------------------------------------------------------------------------------------


class _Finetuner:
    def __init__(self, config: ml_collections.ConfigDict, workdir: epath.Path):
        self.config, self.workdir = config, workdir
        self.mesh = partitioning.make_mesh(config.mesh)
        self.rules = partitioning.logical_rules(config.mesh.rules)
        check_batch(config, self.mesh)
        pre = pretrained.load_pretrained(config.pretrained, int(config.pretrained_step))
        model_config = model_config_for(pre, config.model)
        check_lengths(config, model_config)
        kind = resolve_kind(config.task, model_config.name, config.head)
        data, self.features, targets = prepare_training_data(config, pre, kind)
        self.per_epoch, self.total = total_steps(config, len(self.features))
        self.fingerprint = data_fingerprint(config, len(self.features))

        copies = transforms.parse(config.train_transform or "none", pre.tokenizer.layout()).copies
        layout = pre.layout.with_copies(max(pre.layout.copies, copies))
        head = HeadSpec(
            kind,
            num_labels=len(data.label_names or ()) if kind in ("classification", "tagging") else 0,
            target_len=int(self.features["decoder_targets"].shape[1]) if kind == "text" else 0,
        )
        self.info = finetune_info(config, pre, data, head, model_config, layout, targets, self.total)

        self.tx = optimizer.make_optimizer(config.optimizer, self.total)
        self.schedule = optimizer.learning_rate_schedule(config.optimizer, self.total)
        self.checkpointer = checkpointing.Checkpointer(
            workdir / artifacts.CHECKPOINT_DIR, max_to_keep=int(config.train.max_to_keep),
            async_save=bool(config.train.async_checkpointing), owner=True,
        )
        try:
            self._init_state(pre, model_config, head, layout, data.transform, copies, kind)
        except BaseException:
            self.checkpointer.close()
            raise
        self.writer = MetricWriter(workdir)

    def _init_state(
        self, pre: pretrained.PretrainedRun, model_config: ml_collections.ConfigDict, head: HeadSpec,
        layout: VocabLayout, transform: str, copies: int, kind: str,
    ) -> None:
        """The pretrained start (first invocation) or the last checkpoint (a rerun), and the train step."""
        config, workdir = self.config, self.workdir
        fresh = not self.checkpointer.all_steps()

        def model_fn_for(vocab_size: int):
            return task_model_fn(model_config, vocab_size, head)

        if fresh:
            created = loading.init_finetune_state(
                model_fn_for, self.tx, state_dir=pre.state_dir, saved_layout=pre.layout, target_layout=layout,
                mesh=self.mesh, rules=self.rules, seed=int(config.seed),
                why=f"train_transform={transform} needs {copies} vocabulary copies",
            )
            self.state = created.state
            logging.info("task model: %s head on %s from %s step %d", kind, model_config.name, pre.workdir, pre.step)
        else:
            created = state_lib.create_train_state(
                model_fn_for(layout.size), self.tx, self.mesh, self.rules, int(config.seed), initialize=False
            )
            latest, self.state, data_state = self.checkpointer.restore_latest(created.state)
            if data_state.get("fingerprint") != self.fingerprint:
                raise ConfigError(
                    f"{workdir}: its checkpoints were written for other training data or batch settings "
                    f"(fingerprint {data_state.get('fingerprint')} != {self.fingerprint}); use a new workdir"
                )
            logging.info("resumed fine-tuning from %s at step %d", self.checkpointer.directory, latest)
        self.shardings, self.model_def = created.shardings, created.model_def
        artifacts.save_run_files(workdir, config, self.info, pre.tokenizer)
        self.train_step = steps.make_train_step(
            self.model_def, self.tx, self.schedule, mesh=self.mesh, state_shardings=self.shardings,
            grad_accum_steps=int(config.train.grad_accum_steps),
        )

    def batches(self, step: int) -> Iterator[dict[str, np.ndarray]]:
        cfg = self.config
        return training_batches(
            self.features, batch_size=int(cfg.train.global_batch_size), seed=int(cfg.seed), bucket=int(cfg.bucket),
            group_by_length=int(cfg.group_by_length), per_epoch=self.per_epoch, start_step=step,
            host_index=jax.process_index(), host_count=jax.process_count(),
        )

    def _log(self, step: int, meter: loop.IntervalMeter, seconds: float, tokens: int) -> dict[str, float]:
        scalars = meter.scalars("train")
        loss = scalars.get("train/loss", math.nan)
        if not (math.isfinite(loss) and math.isfinite(scalars.get("train/grad_norm", math.nan))):
            raise loop.TrainingDiverged(
                f"non-finite fine-tuning loss at step {step} (loss={loss}); stopping without saving this state. "
                "Lower optimizer.learning_rate."
            )
        step_time = seconds / max(meter.count, 1)
        scalars["train/step_time_s"] = step_time
        scalars["train/tokens_per_s"] = tokens / max(seconds, 1e-9)
        self.writer.write_scalars(step, scalars)
        if jax.process_index() == 0:
            logging.info(loop.progress_line(step, self.total, scalars, step_time, scalars["train/tokens_per_s"]))
        return scalars

    def run(self, stop_after: int | None) -> FinetuneResult:
        cfg = self.config.train
        start = int(jax.device_get(self.state.step))
        end = self.total if stop_after is None else min(self.total, stop_after)
        history: list[dict[str, float]] = []
        meter = loop.IntervalMeter([])
        pending: list[Mapping[str, jax.Array]] = []
        t0, tokens = time.perf_counter(), 0
        step = start
        with partitioning.sharding_context(self.mesh, self.rules):
            for local in self.batches(start) if start < end else ():
                self.state, metrics = self.train_step(self.state, partitioning.global_batch(local, self.mesh))
                step += 1
                pending.append(metrics)
                tokens += int(np.prod(local["input_ids"].shape)) * jax.process_count()
                preempted = step < end and preemption.reached(step)  # the same step on every host
                save_now = step == self.total or (cfg.checkpoint_every > 0 and step % int(cfg.checkpoint_every) == 0)
                save_now = save_now or preempted
                if step % int(cfg.log_every) == 0 or step == end or save_now:
                    for m in jax.device_get(pending):
                        meter.add(m)
                    pending = []
                    scalars = self._log(step, meter, time.perf_counter() - t0, tokens)
                    history.append({"step": step, **{k.split("/", 1)[1]: v for k, v in scalars.items()}})
                    meter.reset()
                    t0, tokens = time.perf_counter(), 0
                if save_now:
                    self.checkpointer.save(step, self.state, {"step": step, "fingerprint": self.fingerprint})
                if preempted:
                    self.checkpointer.wait()
                    raise preemption.stop(step, "fine-tuning", self.checkpointer.directory)
                if step >= end:
                    break
        if start >= end:
            logging.info("nothing to do: step %d >= %d", start, end)
        self.writer.flush()
        return FinetuneResult(start, max(start, step), history, self.workdir, self.info)

    def close(self) -> None:
        self.checkpointer.close()
        self.writer.close()


def check_config(config: ml_collections.ConfigDict) -> None:
    """Values every run needs (unknown keys are refused earlier: `get_config` returns a locked config)."""
    if config.task not in TASK_KIND or config.task == "tatoeba":
        raise ConfigError(f"task: {config.task!r} cannot be fine-tuned; one of pos | ner | nli | qa")
    if not config.pretrained:
        raise ConfigError("pretrained: give the pretraining WORKDIR to start from (pretrained=PATH)")


def run(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, stop_after: int | None = None
) -> FinetuneResult:
    """Fine-tune as `config` says into `workdir`; resumes from its last checkpoint if there is one.

    `stop_after` ends this invocation after that step without a final checkpoint (as a hard kill would);
    SIGTERM raises `Preempted` once the next step is saved.
    """
    check_config(config)
    distributed.maybe_initialize(config.distributed)
    workdir = storage.workdir_path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with preemption.watch():
        finetuner = _Finetuner(config, workdir)
        try:
            return finetuner.run(stop_after)
        finally:
            finetuner.close()
