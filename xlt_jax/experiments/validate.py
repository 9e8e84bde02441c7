"""Check a whole experiment plan before any compute: every step's config against the others and the data.

A protocol or grid is hours of pretraining followed by fine-tuning and evaluation; a fine-tuning length the
pretrained position table cannot hold, a missing evaluation file or a batch the devices cannot split would
otherwise surface only when that step starts. `plan_problems` reads configs (and, for reused runs, their
saved config.json) and opens each data file once; it runs nothing on a device. The runner calls
`check_plan_whole`, which raises one `ConfigError` listing every problem.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from xlt_jax.errors import ConfigError, XltError

RETRIEVAL_MAX_LEN = 128  # Tatoeba's sentence length (finetuning.evaluation.TATOEBA_MAX_LEN), REFERENCE_SPEC §4.6


def check_plan_whole(plan: Sequence[Any]) -> None:
    problems = plan_problems(plan)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"the plan has {len(problems)} problem(s); nothing was run:\n{listed}")


def plan_problems(plan: Sequence[Any]) -> list[str]:
    """Every problem found, as `step: what is wrong (key = value)` lines."""
    return [p for problems in step_problems(plan).values() for p in problems]


def step_problems(plan: Sequence[Any]) -> dict[str, list[str]]:
    """The problems of each step that has some (step name -> lines), so a grid can leave out what cannot run."""
    _data_problem.cache_clear()  # the data directory may have changed since the last plan
    models = {s.name: _model_facts(s) for s in plan if s.kind in ("pretrain", "reuse")}
    finetuned = {s.name: s for s in plan if s.kind == "finetune"}
    found: dict[str, list[str]] = {}
    for step in plan:
        problems: list[str] = []
        try:
            if step.kind == "pretrain":
                problems += _pretrain_problems(step)
            elif step.kind == "reuse" and models[step.name].get("error"):
                problems.append(f"{step.name}: {models[step.name]['error']}")
            elif step.kind == "align":
                problems += _align_problems(step, models[step.after[0]])
            elif step.kind == "finetune":
                problems += _finetune_problems(step, models[step.after[0]])
            elif step.kind == "evaluate":
                problems += _evaluate_problems(step, models, finetuned)
        except XltError as e:
            problems.append(f"{step.name}: {e}")
        if problems:
            found[step.name] = problems
    return found


# -- facts about each pretrained model ------------------------------------------------------------------


def _model_facts(step: Any) -> dict[str, Any]:
    """name, max_len, vocabulary copies and objective of a planned or reused pretraining run."""
    if step.kind == "pretrain":
        return _facts_from(step.config.to_dict())
    path = step.workdir / "config.json"  # an epath: local or gs://
    if not path.is_file():
        return {"error": f"no finished pretraining run at {step.workdir} ({path.name} missing)"}
    try:
        return _facts_from(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError) as e:
        return {"error": f"{path}: unreadable run config ({e})"}


def _facts_from(config: dict) -> dict[str, Any]:
    model, data = config["model"], config["data"]
    return {
        "name": model["name"],
        "max_len": int(model["max_len"]),
        "translit": "translit" in str(data.get("transform", "")),
        "seq_len": int(data["seq_len"]),
    }


# -- per step -------------------------------------------------------------------------------------------


def _pretrain_problems(step: Any) -> list[str]:
    c = step.config
    out = []
    if c.model.name == "roberta" and int(c.data.seq_len) > int(c.model.max_len):
        out.append(f"{step.name}: data.seq_len={c.data.seq_len} exceeds the position table (model.max_len="
                   f"{c.model.max_len})")
    out += _batch_problems(step.name, int(c.data.global_batch_size), c.mesh, int(c.train.grad_accum_steps))
    return out


def _align_problems(step: Any, model: dict[str, Any]) -> list[str]:
    if model.get("error") or model["translit"]:
        return []  # a reused run's error is reported once, at its step
    return [f"{step.name}: {step.after[0]} has no transliterated vocabulary copy whose embeddings could be aligned"]


def _finetune_problems(step: Any, model: dict[str, Any]) -> list[str]:
    c = step.config
    out = []
    if model.get("error"):
        return out  # reported once, at the pretraining step
    if model["name"] == "roberta" and int(c.max_len) > model["max_len"]:
        out.append(f"{step.name}: max_len={c.max_len} exceeds the pretrained position table (model.max_len="
                   f"{model['max_len']} of {step.after[0]}); set the fine-tuning max_len <= {model['max_len']}")
    if "translit" in str(c.train_transform) and not model["translit"]:
        out.append(f"{step.name}: train_transform={c.train_transform!r} needs a transliterated vocabulary copy, "
                   f"which {step.after[0]} was not pretrained with")
    problem = _data_problem(step.task, str(c.lang), str(c.train_split), str(c.train_source), str(c.train_transform))
    if problem:
        out.append(f"{step.name}: training data: {problem}")
    return out


def _evaluate_problems(step: Any, models: dict[str, dict], finetuned: dict[str, Any]) -> list[str]:
    from xlt_jax.finetuning.evaluation import DEFAULT_SPLIT, parse_targets

    c = step.config
    parent = step.after[0]
    pre = parent if parent in models else finetuned[parent].after[0]
    model = models[pre]
    if model.get("error"):
        return []
    out = []
    # As finetuning.evaluation: Tatoeba sentences are cut to the model's table; fine-tuned tasks keep theirs.
    if step.task == "tatoeba":
        default_len = min(RETRIEVAL_MAX_LEN, model["max_len"])
    else:
        default_len = int(finetuned[parent].config.max_len)
    max_len = int(c.max_len) or default_len
    if model["name"] == "roberta" and max_len > model["max_len"]:
        out.append(f"{step.name}: evaluation max_len={max_len} exceeds the position table (model.max_len="
                   f"{model['max_len']} of {pre})")
    split = str(c.split) or DEFAULT_SPLIT[step.task]
    if not c.split and step.task == "nli" and str(finetuned[parent].config.train_source).startswith("xnli_dev"):
        split = "test"  # as finetuning.evaluation.resolve_split: dev was trained on
    for lang, transform in parse_targets(str(c.targets)):
        problem = _data_problem(step.task, lang, split, str(c.source), transform)
        if problem:
            out.append(f"{step.name}: target {lang}:{transform}: {problem}")
    return out


def _batch_problems(name: str, batch: int, mesh_config: Any, accum: int) -> list[str]:
    import jax

    from xlt_jax.training import partitioning

    try:
        mesh = partitioning.make_mesh(mesh_config)
    except ConfigError as e:
        return [f"{name}: {e}"]
    shards = partitioning.num_batch_shards(mesh)
    if batch % (shards * accum) or batch % jax.process_count():
        return [f"{name}: data.global_batch_size={batch} must be a multiple of the {shards} batch shards x "
                f"train.grad_accum_steps={accum} (and of the {jax.process_count()} hosts)"]
    return []


@functools.cache
def _data_problem(task: str, lang: str, split: str, source: str, transform: str) -> str | None:
    """None when (task, lang, split, source) can be read, else the loader's message (read once per key)."""
    from xlt_jax.data.tasks import sources

    try:
        sources.load(task, lang, split, source=source or None, limit=1, transform=transform or "none")
    except XltError as e:
        return str(e)
    except FileNotFoundError as e:
        return f"missing file {e.filename}"
    return None
