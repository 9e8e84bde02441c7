"""What a plan would cost on this machine: seconds per step from analytic FLOPs over measured FLOP/s.

For each distinct pretraining model (model block, vocabulary rows, sequence length, objective) one jitted
train step runs at a probe batch on one device (`measure`), giving this machine's FLOP/s for that model; the
figure is cached in `$XLT_CACHE_DIR/step_times.json` (keyed by the model, the probe batch, the device, the
CPU and the jax version), so later dry runs only read it. Then, with `xlt_jax.models.flops_per_example`:

  pretraining   steps × global batch × training FLOPs of a sequence (MLM head on the predicted rows)
  fine-tuning   (max_steps, else epochs × ⌊rows / batch⌋) × batch × encoder training FLOPs at the
                task's assumed row length (`cost.row_len`: batches are bucketed, not padded to max_len)
  evaluation    examples × targets × one third of that (a forward pass)

Fine-tuning and evaluation use the FLOP/s of the model they start from. Training rows are counted in the
data (each (task, lang, split, source) read once); alignment steps are not costed (seconds).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import platform
import time
from collections.abc import Callable, Mapping, Sequence

import ml_collections

from xlt_jax import results
from xlt_jax.data.io import atomic_write
from xlt_jax.experiments.plan import Step

CACHE_FILE = "step_times.json"
Measure = Callable[[ml_collections.ConfigDict, int], dict]


def cache_path(setting: str) -> pathlib.Path:
    """`auto` = $XLT_CACHE_DIR/step_times.json (default ~/.cache/xlt_jax/step_times.json), else the path."""
    if setting and setting != "auto":
        return pathlib.Path(setting)
    root = os.environ.get("XLT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "xlt_jax")
    return pathlib.Path(root) / CACHE_FILE


def vocab_rows(run_config: ml_collections.ConfigDict) -> int:
    """Embedding rows of a pretraining run: V pieces, ×2 with transliteration, + T5 sentinels."""
    from xlt_jax.data.pretrain import pipeline

    sentinels = int(run_config.data.num_sentinels) if run_config.data.objective == "span" else 0
    return pipeline.vocab_layout(run_config.data, int(run_config.tokenizer.vocab_size), sentinels).size


def sequence_flops(run_config: ml_collections.ConfigDict, rows: int, seq_len: int, *, head: bool) -> float:
    """Training FLOPs of one sequence: with the pretraining head (predicted MLM rows / T5 targets) or encoder only."""
    from xlt_jax.data.pretrain import mlm, span_corruption
    from xlt_jax.models import flops_per_example

    data = run_config.data
    if data.objective == "span":
        targets = span_corruption.random_spans_helper(seq_len, data.noise_density, data.mean_noise_span_length)[1]
        return flops_per_example(run_config, rows, seq_len, target_len=targets if head else 1)
    if not head:
        return flops_per_example(run_config, rows, seq_len, predicted=0)
    # -1 (one group per batch shard, resolved from the mesh at run time) is counted per sequence: an upper bound.
    wanted, group = int(data.max_predictions_per_seq), max(1, int(data.get("mlm_group_size", 0)))
    if wanted < 0:  # sized from the mask rate per group of sequences (mlm.py): rows per sequence, a fraction
        predicted = mlm.auto_max_predictions(group * seq_len, float(data.mlm_probability)) / group
    else:
        predicted = wanted or None
    return flops_per_example(run_config, rows, seq_len, predicted=predicted)


def _machine() -> dict:
    import jax

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    return {"device": jax.devices()[0].device_kind, "cpu": cpu, "jax": jax.__version__}


def model_key(run_config: ml_collections.ConfigDict, probe_batch: int) -> str:
    """Cache key of a measurement: what decides the step's speed, and where it was measured."""
    model = {k: v for k, v in run_config.model.to_dict().items() if k != "num_langs"}  # metric slots: no speed
    what = {"model": model, "rows": vocab_rows(run_config),
            "seq_len": int(run_config.data.seq_len), "objective": str(run_config.data.objective),
            "probe_batch": probe_batch, **_machine()}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def measure(run_config: ml_collections.ConfigDict, probe_batch: int) -> dict:
    """Compile and time the real jitted train step of `run_config`'s model on one device at `probe_batch`."""
    import jax

    from xlt_jax.data.pretrain import pipeline
    from xlt_jax.models import build_model
    from xlt_jax.training import optimizer, partitioning, steps
    from xlt_jax.training import state as state_lib

    device = jax.devices()[0]
    mesh = partitioning.make_mesh(ml_collections.ConfigDict({"shape": (1, 1, 1)}), [device])
    rules = partitioning.logical_rules(run_config.mesh.rules)
    rows = vocab_rows(run_config)
    layout = pipeline.vocab_layout(run_config.data, int(run_config.tokenizer.vocab_size),
                                   int(run_config.data.num_sentinels) if run_config.data.objective == "span" else 0)
    tx = optimizer.make_optimizer(run_config.optimizer, 1000)
    schedule = optimizer.learning_rate_schedule(run_config.optimizer, 1000)
    created = state_lib.create_train_state(lambda rngs: build_model(run_config.model, rows, rngs=rngs), tx, mesh,
                                           rules, seed=0)
    train_step = steps.make_train_step(created.model_def, tx, schedule, mesh=mesh, state_shardings=created.shardings)
    probe = copy.deepcopy(run_config)
    probe.data.mlm_group_size = 0  # a probe of one sequence has no group; its FLOPs are counted per sequence
    with partitioning.sharding_context(mesh, rules):
        batch = partitioning.global_batch(pipeline.example_batch(probe.data, layout, probe_batch), mesh)
        t0 = time.perf_counter()
        train_step.lower(created.state, batch).compile()
        compile_s = time.perf_counter() - t0
        state, times = created.state, []
        for _ in range(3):  # the first call may still move buffers; the fastest of the rest is the step
            t0 = time.perf_counter()
            state, metrics = train_step(state, batch)
            jax.block_until_ready(metrics["loss"])
            times.append(time.perf_counter() - t0)
    step_s = min(times[1:])
    flops = sequence_flops(probe, rows, int(run_config.data.seq_len), head=True) * probe_batch
    return {"step_s": round(step_s, 4), "compile_s": round(compile_s, 2), "flops_per_s": flops / step_s}


@dataclasses.dataclass(frozen=True)
class Throughput:
    flops_per_s: float | None
    source: str  # how it was obtained, for the printout


class Throughputs:
    """FLOP/s per distinct pretraining model: from the cache file, else measured now (and cached)."""

    def __init__(self, path: pathlib.Path, probe_batch: int, *, allow_measure: bool = True,
                 measure_fn: Measure = measure):
        self.path, self.probe_batch, self.allow, self.measure_fn = path, probe_batch, allow_measure, measure_fn
        self.memo: dict[str, Throughput] = {}

    def _cache(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def get(self, run_config: ml_collections.ConfigDict) -> Throughput:
        key = model_key(run_config, self.probe_batch)
        if key not in self.memo:
            self.memo[key] = self._lookup(key, run_config)
        return self.memo[key]

    def _lookup(self, key: str, run_config: ml_collections.ConfigDict) -> Throughput:
        what = (f"{run_config.model.name} {run_config.model.preset} {run_config.model.dtype}, "
                f"{vocab_rows(run_config):,} rows, seq {run_config.data.seq_len}")
        cached = self._cache().get(key)
        if cached:
            return Throughput(cached["flops_per_s"], f"{what}: cached {cached['measured']} ({self._detail(cached)})")
        if not self.allow:
            return Throughput(None, f"{what}: not measured (cost.measure=false)")
        found = self.measure_fn(run_config, self.probe_batch) | {"measured": results.utc_now(), "what": what}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(self._cache() | {key: found}, indent=1, sort_keys=True).encode())
        return Throughput(found["flops_per_s"], f"{what}: measured now ({self._detail(found)})")

    def _detail(self, record: Mapping) -> str:
        return (f"{record['step_s']:.3g} s per step of {self.probe_batch} sequence(s), "
                f"{record['flops_per_s'] / 1e9:.1f} GFLOP/s")


@functools.cache
def _rows(task: str, lang: str, split: str, source: str) -> int:
    from xlt_jax.data.tasks import sources

    return len(sources.load(task, lang, split, source=source or None).examples)


def finetune_steps(step: Step, count: Callable[[str, str, str, str], int] = _rows) -> int:
    c = step.config
    if int(c.train.max_steps):
        return int(c.train.max_steps)
    rows = count(step.task, str(c.lang), str(c.train_split), str(c.train_source))
    rows = min(rows, int(c.max_train_examples) or rows)
    return int(c.train.epochs) * (rows // int(c.train.global_batch_size))


def evaluate_examples(step: Step, split: str, count: Callable[[str, str, str, str], int] = _rows) -> int:
    from xlt_jax.finetuning.evaluation import parse_targets

    c = step.config
    total = 0
    for lang, _ in parse_targets(str(c.targets)):
        rows = count(step.task, lang, split, str(c.source))
        total += min(rows, int(c.max_examples) or rows)
    return total


def evaluation_split(step: Step, by_name: Mapping[str, Step]) -> str:
    """The split an evaluation step reads (as `finetuning.evaluation.resolve_split`)."""
    from xlt_jax.finetuning.evaluation import DEFAULT_SPLIT

    if str(step.config.split):
        return str(step.config.split)
    parent = by_name.get(step.after[0])
    if step.task == "nli" and parent is not None and parent.kind == "finetune" \
            and str(parent.config.train_source).startswith("xnli_dev"):
        return "test"
    return DEFAULT_SPLIT[step.task]


def _step_flops(step: Step, pre: Step, by_name: Mapping[str, Step], row_len: Mapping[str, int]) -> float:
    rows = vocab_rows(pre.config)
    if step.kind == "pretrain":
        per_sequence = sequence_flops(step.config, rows, int(step.config.data.seq_len), head=True)
        return int(step.config.train.steps) * int(step.config.data.global_batch_size) * per_sequence
    per_row = sequence_flops(pre.config, rows, int(row_len[step.task]), head=False)
    if step.kind == "finetune":
        return finetune_steps(step) * int(step.config.train.global_batch_size) * per_row
    return evaluate_examples(step, evaluation_split(step, by_name)) * per_row / 3  # a forward pass


def plan_seconds(plan: Sequence[Step], status: Mapping[str, str], throughputs: Throughputs,
                 row_len: Mapping[str, int], context: Sequence[Step] = ()) -> dict[str, float | None]:
    """Estimated seconds of the plan's unfinished steps by kind (None: some model has no measurement, or is a
    reused run whose config the plan does not hold). `context`: other steps the plan's steps may depend on
    (a grid cell's shared runs live in an earlier cell)."""
    by_name = {s.name: s for s in (*context, *plan)}
    spent: dict[str, float | None] = {"pretrain": 0.0, "finetune": 0.0, "evaluate": 0.0}

    def pretraining(step: Step) -> Step:
        while step.kind not in ("pretrain", "reuse"):
            step = by_name[step.after[0]]
        return step

    for step in plan:
        if step.kind not in spent or status.get(step.name) not in ("todo", "stale"):
            continue
        pre = pretraining(step)
        speed = throughputs.get(pre.config).flops_per_s if pre.config is not None else None
        if speed is None or spent[step.kind] is None:
            spent[step.kind] = None
        else:
            spent[step.kind] += _step_flops(step, pre, by_name, row_len) / speed
    return spent


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
