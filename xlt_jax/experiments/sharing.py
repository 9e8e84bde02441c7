"""Run identical steps of a grid once: pretraining and fine-tuning runs whose configs are the same after the
paths of already-shared runs are mapped to the run that is kept.

In a grid over transformations of one language, every cell's monolingual twin pretrains on the same text
with the same config, and its MZ fine-tunes (on original data) are the same too; only the evaluations on
each cell's derived language differ. Sharing them is what makes a CPU-scale grid affordable. Evaluations are
never shared: their rows name the cell's models. A shared step keeps the first cell's directory; later cells
read it from there (their `after` and config paths are rewritten), and the report sees one model per
identical pretraining run.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from xlt_jax.experiments import markers
from xlt_jax.experiments.plan import Step

SHARED_KINDS = ("pretrain", "finetune")


def _rewrite_paths(tree: Any, aliases: Mapping[str, str]) -> Any:
    """Strings naming a dropped run's directory (or a path inside it) point to the kept run's instead."""
    if isinstance(tree, ml_collections.ConfigDict):
        for key in list(tree.keys()):
            tree[key] = _rewrite_paths(tree[key], aliases)
        return tree
    if isinstance(tree, str) and tree:
        for dropped, kept in aliases.items():
            if tree == dropped or tree.startswith(dropped + os.sep):
                return kept + tree[len(dropped):]
    return tree


def share_identical_steps(plans: Mapping[str, list[Step]]) -> tuple[dict[str, list[Step]], dict[str, str]]:
    """(plans with repeated pretraining/fine-tuning steps dropped and their dependents rewired,
    dropped step name -> the kept step's name)."""
    kept_by_key: dict[tuple[str, str], Step] = {}
    path_alias: dict[str, str] = {}
    name_alias: dict[str, str] = {}
    out: dict[str, list[Step]] = {}
    for cell, steps in plans.items():
        out[cell] = []
        for step in steps:
            config = _rewrite_paths(copy.deepcopy(step.config), path_alias) if step.config is not None else None
            step = dataclasses.replace(step, config=config, after=tuple(name_alias.get(a, a) for a in step.after))
            if step.kind in SHARED_KINDS and step.config is not None:
                key = (step.kind, markers.fingerprint(step))
                first = kept_by_key.get(key)
                if first is not None:
                    name_alias[step.name] = first.name
                    path_alias[os.fspath(step.workdir)] = os.fspath(first.workdir)
                    continue
                kept_by_key[key] = step
            out[cell].append(step)
    return out, name_alias
