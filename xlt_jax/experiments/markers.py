"""Markers and status of a plan's steps: which are finished, which must run, which cannot be resumed safely.

Every pretrain/align/finetune/evaluate step ends by writing `<step workdir>/DONE.json` atomically (config
fingerprint, timing, summary); a rerun skips finished steps. A finished *training* step whose config changed
is an error (its dependents would silently mix models); a changed evaluation simply runs again (the results
store keeps the last row per cell).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import ml_collections

from xlt_jax import results, storage
from xlt_jax.errors import ConfigError
from xlt_jax.experiments.plan import DONE_FILE, Step  # noqa: F401 - DONE_FILE: the protocol re-exports it

RERUNNABLE = ("evaluate", "align")  # steps whose rows are simply written again when their config changed
# Leaf config keys that do not change what a run computes: editing them never makes a finished step stale.
NON_SEMANTIC_KEYS = frozenset({
    "log_every", "checkpoint_every", "max_to_keep", "async_checkpointing", "eval_every", "eval_max_batches",
    "cache_dir", "mesh", "distributed", "batch_size", "prefetch_batches", "compilation_cache",
    # NaN handling: a run that finished under the default "stop" met no NaN, so "skip" would compute the same
    # (and workdirs finished before these keys existed stay resumable).
    "nonfinite_policy", "max_consecutive_skips",
    # How predicted MLM rows are laid out (per sequence or per group): the same predictions and loss up to float
    # rounding, overflow aside (< 1e-5 per sequence either way), as a different mesh would sum them.
    "mlm_group_size",
    # Layers per iteration of a scanned loop: the same weights and layout, the same values up to float rounding
    # (and workdirs finished before the key existed stay resumable).
    "scan_unroll",
    # The attention core's implementation: the same function and dropout masks, values equal to float rounding.
    "attention_impl",
    # The last layer on the predicted rows only: the same loss and dropout masks, values equal to float rounding.
    "last_layer_predicted_only",
    # How many gathered MLM rows the head projects per batch: the rows left out have weight 0, so the same loss
    # and gradients to float rounding.
    "prediction_tiers",
})


def _semantic(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _semantic(v) for k, v in sorted(tree.items()) if k not in NON_SEMANTIC_KEYS}
    return tree


def config_dict(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json_best_effort(sort_keys=True))


def fingerprint(step: Step) -> str:
    """What a finished step's outputs depend on: its kind and config, minus bookkeeping keys."""
    payload = {"kind": step.kind, "config": _semantic(config_dict(step.config)) if step.config else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def read_marker(step: Step) -> dict | None:
    if step.marker is None or not step.marker.is_file():
        return None
    try:
        return json.loads(step.marker.read_text())
    except (OSError, ValueError):  # unreadable marker: the step is not known to be finished
        logging.warning("%s: unreadable marker; the step will run again", step.marker)
        return None


def write_marker(step: Step, summary: dict, seconds: float) -> None:
    """DONE.json, written atomically (`storage.atomic_write`): present means finished."""
    import jax

    if jax.process_index() != 0:
        return
    record = {
        "step": step.name, "kind": step.kind, "fingerprint": fingerprint(step), "finished": results.utc_now(),
        "seconds": round(seconds, 1), "commit": results.code_commit(), "summary": summary,
        "config": config_dict(step.config),
    }
    step.workdir.mkdir(parents=True, exist_ok=True)
    storage.atomic_write(step.marker, json.dumps(record, indent=1, sort_keys=True).encode("utf-8"))


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def plan_status(plan: Sequence[Step]) -> dict[str, str]:
    """done | todo | stale (finished under another config) | reuse | missing (reused run without a
    checkpoint) | skip. A step whose dependency will run is `todo` too."""
    status: dict[str, str] = {}
    for step in plan:
        if step.kind == "skip":
            status[step.name] = "skip"
        elif step.kind == "reuse":
            from xlt_jax.finetuning import pretrained

            found = pretrained.checkpoint_steps(step.workdir / "checkpoints")
            status[step.name] = "reuse" if found else "missing"
        else:
            marker = read_marker(step)
            if marker is None:
                status[step.name] = "todo"
            elif marker.get("fingerprint") != fingerprint(step):
                status[step.name] = "stale"
            elif any(status[d] in ("todo", "stale") for d in step.after):
                status[step.name] = "todo"
            else:
                status[step.name] = "done"
    return status


def check_runnable(plan: Sequence[Step], status: dict[str, str]) -> None:
    """Refuse, before any compute, what cannot be resumed safely."""
    for step in plan:
        if status[step.name] == "missing":
            raise ConfigError(f"{step.name}: {step.workdir} has no finished checkpoint to reuse")
        if status[step.name] == "stale" and step.kind not in RERUNNABLE:
            old = read_marker(step).get("config", {})
            changed = _changed_keys(_semantic(old), _semantic(config_dict(step.config)))
            raise ConfigError(
                f"{step.name}: finished in {step.workdir} under another config (changed: "
                f"{', '.join(changed) or 'unknown'}); later steps were built on it. Use a new --workdir, restore "
                f"the config, or delete {step.workdir} (and the steps after it) to redo it"
            )


def format_plan(plan: Sequence[Step], status: dict[str, str], *, header: str = "") -> str:
    counts = {s: sum(1 for v in status.values() if v == s) for s in dict.fromkeys(status.values())}
    lines = [header] if header else []
    lines.append(f"{len(plan)} steps: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    width = max(len(step.name) for step in plan)
    for i, step in enumerate(plan, start=1):
        settings = ",".join(s or "orig" for s in step.settings) or "-"
        row = f"{i:3d}  {status[step.name]:<7}  {step.kind:<8}  {step.name:<{width}}  {settings:<8}  {step.note}"
        lines.append(row)
    return "\n".join(lines)

