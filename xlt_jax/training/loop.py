"""The pretraining loop: `run(config, workdir)` from raw text to checkpoints, metrics and a tokenizer.

Order of work, so every configuration error surfaces before any compute: mesh (must divide the devices),
batch divisibility, then `inputs.build_data` (corpus, tokenizer trained once and saved in WORKDIR/tokenizer,
input pipeline), model and sharded state. Then, per step: this host's rows of the global batch → global
arrays → one jitted update. Metrics come back one step late (the host reads step s while step s+1 runs),
except before a checkpoint or evaluation, which first check the step they save: a NaN/Inf loss or gradient
norm stops the run with `TrainingDiverged` before that state can be written, so the last checkpoint on
disk is always a good one. With `train.nonfinite_policy="skip"` the jitted step instead leaves parameters
and optimizer slots unchanged on such a batch (no extra host sync), the skips are counted
(`train/skipped_steps`), and only `train.max_consecutive_skips` of them in a row stop the run.

Rerunning the same command resumes from the newest checkpoint that restores and verifies (damaged newer
ones are set aside, see `checkpointing`): parameters, optimizer slots, step, RNG and each host's iterator
position are restored together, so the run continues with exactly the batches (and dropout masks) it would
have seen without the interruption. SIGTERM (preemption) saves the next step boundary's state on every
host and stops with `Preempted` (`preemption.py`; the binary exits 0).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from clu import parameter_overview
from etils import epath

from xlt_jax import host_allocator, storage
from xlt_jax.data.pretrain import pipeline
from xlt_jax.errors import ConfigError, TrainingDiverged  # noqa: F401 - TrainingDiverged: loop's public API
from xlt_jax.models import build_model
from xlt_jax.training import (
    checkpointing,
    compile_cache,
    distributed,
    inputs,
    nonfinite,
    optimizer,
    partitioning,
    preemption,
    prefetch,
    steps,
)
from xlt_jax.training import state as state_lib
from xlt_jax.training.metrics import IntervalMeter, format_duration, metric_tag, progress_line, summarize  # noqa: F401
from xlt_jax.training.writers import MetricWriter

CHECKPOINT_DIR = "checkpoints"
TOKENIZER_DIR = inputs.TOKENIZER_DIR
CONFIG_FILE = "config.json"


@dataclasses.dataclass
class RunResult:
    """What one invocation did (tests and notebooks read it; the workdir holds the durable record)."""

    start_step: int
    final_step: int
    history: list[dict[str, float]]  # per step of this invocation: step, loss, grad_norm, learning_rate
    evals: list[dict[str, float]]
    workdir: epath.Path


# -- set-up -----------------------------------------------------------------------------------------


def resolve_config(config: ml_collections.ConfigDict, data: pipeline.PretrainData) -> ml_collections.ConfigDict:
    """A copy with the values derived from the data filled in (the per-language metric slots)."""
    config = copy.deepcopy(config)
    config.model.num_langs = max(int(config.model.num_langs), data.num_langs)
    return config


def save_config(config: ml_collections.ConfigDict, workdir: epath.Path) -> None:
    """Write WORKDIR/config.json; warn when resuming under a different config."""
    if jax.process_index() != 0:
        return
    path = workdir / CONFIG_FILE
    text = config.to_json_best_effort(indent=1, sort_keys=True)
    if path.exists() and path.read_text() != text:
        old, new = _flatten(json.loads(path.read_text())), _flatten(json.loads(text))
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        logging.warning("config differs from the one this workdir was started with: %s", ", ".join(changed))
    path.write_text(text)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resolve_mlm_group_size(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> ml_collections.ConfigDict:
    """`data.mlm_group_size=-1` made concrete: the largest group that is whole in every batch part.

    A prediction group must lie in one host, one batch shard and one microbatch (check_batch_sizes), so the
    largest is a part of the train batch, further divided to fit a part of the eval batch; one budget of rows
    over that many sequences projects the fewest rows the layout allows (roberta8 8 × 128 on one device:
    208 rows instead of 320). Other values are returned unchanged (the config itself when nothing changes).
    """
    if int(config.data.get("mlm_group_size", 0)) != -1:
        return config
    shards, hosts = partitioning.num_batch_shards(mesh), jax.process_count()
    batch = int(config.data.global_batch_size)
    eval_batch = int(config.data.eval_batch_size) or batch
    train_part = batch // math.lcm(shards * int(config.train.grad_accum_steps), hosts)
    eval_part = eval_batch // math.lcm(shards, hosts)
    config = copy.deepcopy(config)
    config.data.mlm_group_size = max(1, math.gcd(train_part, eval_part))
    return config


def check_batch_sizes(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> None:
    """Global batch must split over hosts, batch shards and microbatches (checked before any compute)."""
    shards = partitioning.num_batch_shards(mesh)
    accum = int(config.train.grad_accum_steps)
    batch = int(config.data.global_batch_size)
    if accum < 1:
        raise ConfigError(f"train.grad_accum_steps={accum} must be >= 1")
    if batch % (shards * accum):
        raise ConfigError(
            f"data.global_batch_size={batch} must be a multiple of the {shards} batch shards "
            f"(mesh data × fsdp) × train.grad_accum_steps={accum}"
        )
    eval_batch = int(config.data.eval_batch_size) or batch
    if eval_batch % shards:
        raise ConfigError(f"data.eval_batch_size={eval_batch} must be a multiple of the {shards} batch shards")
    if batch % jax.process_count():
        raise ConfigError(f"data.global_batch_size={batch} must be a multiple of the {jax.process_count()} hosts")
    group = int(config.data.get("mlm_group_size", 0))
    if group > 1 and config.data.objective == "mlm" and int(config.data.max_predictions_per_seq) != 0:
        # Prediction groups are rows of the batch: whole on one host, one shard and one microbatch.
        for key, size, parts in (("global_batch_size", batch, shards * accum), ("eval_batch_size", eval_batch, shards)):
            if size % (group * parts) or size % (group * jax.process_count()):
                raise ConfigError(
                    f"data.mlm_group_size={group}: data.{key}={size} must be a multiple of {group} x {parts} "
                    f"(batch shards{' x train.grad_accum_steps' if parts != shards else ''}) and of {group} x "
                    f"{jax.process_count()} hosts"
                )


def check_host_rows(mesh: jax.sharding.Mesh, global_batch_size: int) -> None:
    """The pipeline gives host i rows [i·B/n, (i+1)·B/n); the mesh must place exactly those on its devices."""
    rows = partitioning.process_batch_rows(mesh, global_batch_size)
    per_host = global_batch_size // jax.process_count()
    expected = slice(jax.process_index() * per_host, (jax.process_index() + 1) * per_host)
    if (rows.start, rows.stop) != (expected.start, expected.stop):
        raise ConfigError(
            f"process {jax.process_index()} holds batch rows [{rows.start}, {rows.stop}) on this mesh but the "
            f"input pipeline feeds rows [{expected.start}, {expected.stop}); use a mesh whose data axes follow "
            "the process order"
        )


# -- metrics ----------------------------------------------------------------------------------------


def _tokens_per_example(batch: Mapping[str, np.ndarray]) -> int:
    keys = ("input_ids",) if "input_ids" in batch else ("encoder_input_ids", "decoder_input_ids")
    return sum(int(np.shape(batch[k])[1]) for k in keys)


# -- the loop ---------------------------------------------------------------------------------------


class _Trainer:
    """Holds the pieces of one invocation; `run` is the public entry point."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: epath.Path):
        self.workdir = workdir
        self.mesh = partitioning.make_mesh(config.mesh)
        self.rules = partitioning.logical_rules(config.mesh.rules)
        config = resolve_mlm_group_size(config, self.mesh)
        check_batch_sizes(config, self.mesh)
        check_host_rows(self.mesh, int(config.data.global_batch_size))
        nonfinite.check_config(config.train)

        self.tokenizer, self.data = inputs.build_data(config, workdir)
        logging.info("pretraining data: %s", json.dumps(self.data.describe()))
        self.config = config = resolve_config(config, self.data)
        save_config(config, workdir)

        self.total_steps = int(config.train.steps)
        self.tx = optimizer.make_optimizer(config.optimizer, self.total_steps)
        self.schedule = optimizer.learning_rate_schedule(config.optimizer, self.total_steps)
        self.checkpointer = checkpointing.Checkpointer(
            workdir / CHECKPOINT_DIR,
            max_to_keep=int(config.train.max_to_keep),
            async_save=bool(config.train.async_checkpointing),
            owner=True,
        )
        fresh = not self.checkpointer.all_steps()
        vocab_size = self.data.vocab_size
        created = state_lib.create_train_state(
            lambda rngs: build_model(config.model, vocab_size, rngs=rngs),
            self.tx, self.mesh, self.rules, int(config.seed), initialize=fresh,
        )
        self.shardings, self.model_def = created.shardings, created.model_def
        self.train_iter = self.data.train_iterator(jax.process_index(), jax.process_count())
        if fresh:
            self.state = created.state
        else:  # the newest checkpoint that restores and verifies (always one: else CheckpointError)
            latest, self.state, data_state = self.checkpointer.restore_latest(created.state)
            self.train_iter.set_state(data_state)
            logging.info("resumed from %s at step %d", self.checkpointer.directory, latest)
        logging.info("model: %d parameters, vocabulary %d", state_lib.parameter_count(self.state), vocab_size)
        # Shape and PartitionSpec of every parameter: where the logical rules put them (no device compute).
        parameter_overview.log_parameter_overview(self.state.params, include_stats="sharding", jax_logging_process=0)
        self.train_step = steps.make_train_step(
            self.model_def, self.tx, self.schedule, mesh=self.mesh, state_shardings=self.shardings,
            grad_accum_steps=int(config.train.grad_accum_steps), skip_nonfinite=config.train.nonfinite_policy == "skip",
        )
        self.nonfinite = nonfinite.NonfiniteGuard(config.train, self._last_checkpoint)
        self.eval_step = steps.make_eval_step(self.model_def, mesh=self.mesh, param_shardings=self.shardings.params)
        self.writer = MetricWriter(workdir)
        self.writer.write_texts(int(jax.device_get(self.state.step)), {"config": config.to_json_best_effort(indent=1)})
        self.lang_names = self.data.lang_names

    # -- pieces of a step --------------------------------------------------------------------------
    def _last_checkpoint(self) -> str:
        self.checkpointer.wait()
        last = self.checkpointer.latest_step()
        if last is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint is step {last} in {self.checkpointer.directory}"

    def evaluate(self, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        max_batches = int(self.config.train.eval_max_batches) or None
        batches: Iterable[dict[str, np.ndarray]] = self.data.eval_batches(jax.process_index(), jax.process_count())
        totals: dict[str, np.ndarray] = {}
        count = 0
        for batch in batches:
            if max_batches is not None and count >= max_batches:
                break
            batch.pop("mlm_overflow", None)
            sums = jax.device_get(self.eval_step(self.state.params, partitioning.global_batch(batch, self.mesh)))
            for key, value in sums.items():
                totals[key] = totals.get(key, 0.0) + np.asarray(value, np.float64)
            count += 1
        scalars = summarize(totals, self.lang_names, "eval")
        scalars["eval/batches"] = float(count)
        self.writer.write_scalars(step, scalars)
        logging.info("evaluation at step %d on %d held-out batches in %.1f s", step, count, time.perf_counter() - t0)
        return scalars

    def save(self, step: int, data_state: Mapping[str, Any]) -> None:
        self.checkpointer.save(step, self.state, data_state)

    def compile(self, batch: Mapping[str, jax.Array]) -> None:
        t0 = time.perf_counter()
        self.train_step.lower(self.state, batch).compile()
        logging.info("compiled the train step in %.1f s", time.perf_counter() - t0)

    def log_interval(self, step: int, meter: IntervalMeter, seconds: float, tokens_per_step: int, faults: int) -> None:
        """Train metrics of the steps since the last log point, and the progress line with ETA. `faults`: the
        process's minor page faults in the interval (per step ~0 when host memory is retained: host_allocator)."""
        steps = meter.count + meter.skipped
        step_time = seconds / steps
        scalars = meter.scalars("train")
        scalars["train/step_time_s"] = step_time
        scalars["train/host_page_faults_per_step"] = faults / steps
        scalars["train/tokens_per_s"] = tokens_per_step / step_time
        self.writer.write_scalars(step, scalars)
        if jax.process_index() == 0:
            logging.info(progress_line(step, self.total_steps, scalars, step_time, scalars["train/tokens_per_s"]))
        meter.reset()

    # -- the loop ----------------------------------------------------------------------------------
    def _prepare_batch(self, local: dict[str, np.ndarray]) -> tuple[dict[str, jax.Array], dict[str, Any]]:
        """In the prefetch thread: host-only figures out of the batch, the rest onto the devices."""
        overflow = local.pop("mlm_overflow", None)
        figures: dict[str, Any] = {"tokens_per_example": _tokens_per_example(local), "metrics": {}}
        if overflow is not None:  # this host's rows only (not summed over hosts)
            figures["metrics"]["mlm_overflow"] = np.sum(overflow, dtype=np.float64)
        return partitioning.global_batch(local, self.mesh), figures

    def run(self, stop_after: int | None) -> RunResult:
        cfg = self.config.train
        start = int(jax.device_get(self.state.step))
        end = self.total_steps if stop_after is None else min(self.total_steps, stop_after)
        history: list[dict[str, float]] = []
        evals: list[dict[str, float]] = []
        meter = IntervalMeter(self.lang_names)
        pending: tuple[int, Any] | None = None
        tokens_per_step = 0
        interval_start, paused, faults_start = time.perf_counter(), 0.0, host_allocator.page_faults()

        def settle() -> None:
            """Read the metrics of the step in flight (blocks until it is done) and check them."""
            nonlocal pending
            if pending is None:
                return
            step, metrics = pending
            pending = None
            host = jax.device_get(metrics)
            applied = self.nonfinite.check(step, host)  # raises TrainingDiverged when the run must stop
            if applied:
                meter.add(host)
            else:
                meter.add_skipped()
            history.append({"step": step, **{k: float(host[k]) for k in ("loss", "grad_norm", "learning_rate")},
                            "skipped": float(not applied)})

        if start >= end:
            logging.info("nothing to do: step %d >= %d", start, end)
            return RunResult(start, start, history, evals, self.workdir)
        inputs_ahead = prefetch.Prefetcher(self.train_iter, self._prepare_batch, depth=int(cfg.prefetch_batches))
        try:
            with partitioning.sharding_context(self.mesh, self.rules):
                for step in range(start + 1, end + 1):
                    (batch, host_figures), data_state, wait = next(inputs_ahead)
                    if step == start + 1:
                        tokens_per_step = host_figures["tokens_per_example"] * int(self.config.data.global_batch_size)
                        self.compile(batch)
                        interval_start, wait, faults_start = time.perf_counter(), 0.0, host_allocator.page_faults()
                    self.state, metrics = self.train_step(self.state, batch)
                    settle()  # the previous step's metrics, while this one runs
                    pending = (step, {**metrics, **host_figures["metrics"], "input_wait_s": wait})
                    preempted = step < end and preemption.reached(step)  # the same step on every host
                    log_now = step % int(cfg.log_every) == 0 or step == end or preempted
                    eval_now = cfg.eval_every > 0 and (step % int(cfg.eval_every) == 0 or step == self.total_steps)
                    eval_now = eval_now and not preempted  # the grace period is short: save and go
                    save_now = step % int(cfg.checkpoint_every) == 0 or step == self.total_steps or preempted
                    if log_now or eval_now or save_now:
                        settle()
                    if log_now and meter.count + meter.skipped:
                        seconds, faults = time.perf_counter() - interval_start - paused, host_allocator.page_faults()
                        self.log_interval(step, meter, seconds, tokens_per_step, faults - faults_start)
                        interval_start, paused, faults_start = time.perf_counter(), 0.0, faults
                    t0 = time.perf_counter()
                    if save_now:
                        self.save(step, data_state)
                    if preempted:
                        self.checkpointer.wait()
                        raise preemption.stop(step, "pretraining", self.checkpointer.directory)
                    if eval_now:
                        evals.append({"step": step, **self.evaluate(step)})
                    paused += time.perf_counter() - t0
                settle()
        finally:
            inputs_ahead.close()
        self.writer.flush()
        return RunResult(start, end, history, evals, self.workdir)

    def close(self) -> None:
        self.checkpointer.close()
        self.writer.close()


def run(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, stop_after: int | None = None
) -> RunResult:
    """Pretrain as `config` says, in `workdir`; resumes from the last checkpoint there if there is one.

    `stop_after` ends this invocation after that global step without a final checkpoint, as a hard kill
    would (tests use it to check that a rerun continues exactly). SIGTERM raises `Preempted` once the next
    step is saved.
    """
    distributed.maybe_initialize(config.distributed)
    workdir = storage.workdir_path(workdir)  # absolute (Orbax needs it) or gs://
    workdir.mkdir(parents=True, exist_ok=True)
    with preemption.watch(), compile_cache.persistent_cache(str(config.train.compilation_cache)):
        trainer = _Trainer(config, workdir)
        try:
            return trainer.run(stop_after)
        finally:
            trainer.close()

