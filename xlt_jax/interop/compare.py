r"""Train xlt_jax's RoBERTa and Hugging Face's side by side on identical batches: do they learn alike?

    python -m xlt_jax.interop.compare --config configs/pretrain/bilingual.py:lang=en,transform=translit \
        --workdir runs/compare [--config.train.steps=2000] [--models=xlt_jax,hf]

Both models start from the same weights (xlt_jax's initialisation, converted), see the same batches from
xlt_jax's input pipeline (masks included) and use the same optimizer settings (`config.optimizer`; the
PyTorch peer mirrors AdamW, clipping and the schedule). Dropout is drawn independently, so the curves agree
in distribution, not bit for bit. Every step appends one row to WORKDIR/curves.jsonl (training loss and
gradient norm of each model; held-out loss every `train.eval_every` steps on `train.eval_max_batches`
batches, 8 when 0), and WORKDIR/curves.png plots them. The last line printed is a JSON summary.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import time
from collections.abc import Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import flags

from xlt_jax import cli, provenance
from xlt_jax.data.io import atomic_write

MODELS = ("xlt_jax", "hf")
DEFAULT_EVAL_BATCHES = 8

cli.define_flags("Pretraining config file (configs/pretrain/*.py:ARGS); model.name must be roberta.")
flags.DEFINE_list("models", list(MODELS), "Which models to train: xlt_jax, hf, or both.")
flags.DEFINE_bool(
    "hf_masked_only", True,
    "Run the Hugging Face MLM head on predicted positions only (the same loss and gradients, far less work).",
)
flags.adopt_module_key_flags(cli)


class _Ours:
    """xlt_jax's real train and eval steps on the configured mesh."""

    def __init__(self, config: ml_collections.ConfigDict, vocab_size: int):
        from xlt_jax.models import build_model
        from xlt_jax.training import optimizer, partitioning, steps
        from xlt_jax.training import state as state_lib

        self.partitioning = partitioning
        self.mesh = partitioning.make_mesh(config.mesh)
        self.rules = partitioning.logical_rules(config.mesh.rules)
        total = int(config.train.steps)
        tx = optimizer.make_optimizer(config.optimizer, total)
        created = state_lib.create_train_state(
            lambda rngs: build_model(config.model, vocab_size, rngs=rngs), tx, self.mesh, self.rules, int(config.seed)
        )
        self.state = created.state
        self.initial_params = jax.device_get(created.state.params)
        self.step_fn = steps.make_train_step(
            created.model_def, tx, optimizer.learning_rate_schedule(config.optimizer, total), mesh=self.mesh,
            state_shardings=created.shardings,
        )
        self.eval_fn = steps.make_eval_step(created.model_def, mesh=self.mesh, param_shardings=created.shardings.params)

    def train_step(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        with self.partitioning.sharding_context(self.mesh, self.rules):
            self.state, metrics = self.step_fn(self.state, self.partitioning.global_batch(batch, self.mesh))
        metrics = jax.device_get(metrics)
        return {k: float(metrics[k]) for k in ("loss", "grad_norm", "learning_rate")}

    def eval_loss(self, batches: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
        loss = weight = correct = 0.0
        with self.partitioning.sharding_context(self.mesh, self.rules):
            for batch in batches:
                sums = jax.device_get(self.eval_fn(self.state.params, self.partitioning.global_batch(batch, self.mesh)))
                loss, weight = loss + float(sums["loss_sum"]), weight + float(sums["weight_sum"])
                correct += float(sums["correct_sum"])
        return {"loss": loss / max(weight, 1.0), "accuracy": correct / max(weight, 1.0)}


def compare(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    models: Sequence[str] = MODELS,
    *,
    hf_masked_only: bool = True,
) -> dict:
    """Run the comparison; returns the summary (final losses, per-model step time, curve gap)."""
    from xlt_jax.interop.torch_peer import TorchMlmPeer
    from xlt_jax.models import resolve_model_config
    from xlt_jax.training import inputs, loop, partitioning

    unknown = sorted(set(models) - set(MODELS))
    if unknown or not models:
        raise cli.ConfigError(f"--models={','.join(models)}: choose from {', '.join(MODELS)}")
    if config.model.name != "roberta" or config.data.objective != "mlm":
        raise cli.ConfigError("the side-by-side comparison needs model.name='roberta' and data.objective='mlm'")
    started = time.time()
    workdir = pathlib.Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config = loop.resolve_mlm_group_size(config, partitioning.make_mesh(config.mesh))
    _, data = inputs.build_data(config, workdir)
    config = loop.resolve_config(config, data)
    total = int(config.train.steps)
    ours = _Ours(config, data.vocab_size)
    trainers: dict[str, object] = {}
    if "xlt_jax" in models:
        trainers["xlt_jax"] = ours
    if "hf" in models:
        spec = resolve_model_config(config.model, data.vocab_size)
        trainers["hf"] = TorchMlmPeer(
            spec, config.optimizer, total, params=ours.initial_params, seed=int(config.seed), masked_only=hf_masked_only
        )
    num_eval = int(config.train.eval_max_batches) or DEFAULT_EVAL_BATCHES
    eval_batches = [_host(b) for b in _take(data.eval_batches(), num_eval)]
    eval_every = int(config.train.eval_every) or max(total // 10, 1)
    seconds = dict.fromkeys(trainers, 0.0)
    rows = []
    iterator = data.train_iterator()
    with (workdir / "curves.jsonl").open("w") as out:
        for step in range(1, total + 1):
            batch = _host(next(iterator))
            row: dict[str, float] = {"step": step}
            for name, trainer in trainers.items():
                t0 = time.perf_counter()
                m = trainer.train_step(batch)
                seconds[name] += time.perf_counter() - t0
                row.update({f"{name}/loss": m["loss"], f"{name}/grad_norm": m["grad_norm"]})
                row["learning_rate"] = m["learning_rate"]
            if step % eval_every == 0 or step == total:
                for name, trainer in trainers.items():
                    e = trainer.eval_loss(eval_batches)
                    row.update({f"{name}/eval_loss": e["loss"], f"{name}/eval_accuracy": e["accuracy"]})
                logging.info("step %d: %s", step, json.dumps({k: round(v, 4) for k, v in row.items()}))
            out.write(json.dumps(row) + "\n")
            out.flush()
            rows.append(row)
    summary = summarize(rows, seconds) | provenance.record(started, time.time())
    summary["tokens_per_step"] = int(config.data.global_batch_size) * int(config.data.seq_len)
    plot_curves(rows, workdir / "curves.png", title=f"{config.data.mode} {config.data.langs} {config.data.transform}")
    atomic_write(workdir / "compare.json", (json.dumps(summary, indent=1) + "\n").encode())
    return summary


def _take(iterator, n: int) -> list:
    return [batch for _, batch in zip(range(n), iterator, strict=False)]


def _host(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    batch = dict(batch)
    batch.pop("mlm_overflow", None)
    return batch


PLATEAU_REFERENCE_FRACTION = 0.25  # the plateau's level: held-out loss a quarter of the way into the run
PLATEAU_EXIT_NATS = 0.3  # "left the plateau": held-out loss this far below that level


def plateau_exit(evals: Sequence[Mapping[str, float]], name: str) -> int | None:
    """First evaluated step whose held-out loss is `PLATEAU_EXIT_NATS` below the loss a quarter of the way in
    (past warmup and the first fast drop to unigram statistics), or None if the run never got there."""
    key = f"{name}/eval_loss"
    points = [(r["step"], r[key]) for r in evals if key in r]
    if len(points) < 4:
        return None
    reference = points[int(len(points) * PLATEAU_REFERENCE_FRACTION)][1]
    return next((step for step, loss in points if loss < reference - PLATEAU_EXIT_NATS), None)


def summarize(rows: Sequence[Mapping[str, float]], seconds: Mapping[str, float]) -> dict:
    """Final held-out losses, the step each model left the plateau, the largest gap between the two held-out
    curves, and seconds per step."""
    evals = [r for r in rows if any(k.endswith("/eval_loss") for k in r)]
    summary: dict = {"steps": len(rows), "seconds_per_step": {k: v / max(len(rows), 1) for k, v in seconds.items()}}
    for name in seconds:
        if evals and f"{name}/eval_loss" in evals[-1]:
            summary[f"{name}_final_eval_loss"] = evals[-1][f"{name}/eval_loss"]
            summary[f"{name}_plateau_exit_step"] = plateau_exit(evals, name)
    if evals and all(f"{m}/eval_loss" in evals[0] for m in MODELS):
        gaps = [abs(r["xlt_jax/eval_loss"] - r["hf/eval_loss"]) for r in evals]
        summary["max_eval_loss_gap"] = max(gaps)
    return summary


def plot_curves(rows: Sequence[Mapping[str, float]], path: pathlib.Path, *, title: str = "") -> None:
    """Training loss (moving average over 25 steps) and held-out loss of each model against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.array([r["step"] for r in rows])
    for name, color in zip(MODELS, ("tab:blue", "tab:orange"), strict=True):
        if f"{name}/loss" not in rows[0]:
            continue
        loss = np.array([r[f"{name}/loss"] for r in rows])
        window = min(25, len(loss))
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color=color, alpha=0.6, label=f"{name} train (avg {window})")
        evals = [(r["step"], r[f"{name}/eval_loss"]) for r in rows if f"{name}/eval_loss" in r]
        if evals:
            ax.plot(*zip(*evals, strict=True), "o-", color=color, label=f"{name} held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("MLM loss (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _main(config: ml_collections.ConfigDict, workdir: str) -> None:
    summary = compare(config, workdir, flags.FLAGS.models, hf_masked_only=flags.FLAGS.hf_masked_only)
    print(json.dumps(summary))


if __name__ == "__main__":
    cli.run(_main)
