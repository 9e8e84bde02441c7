"""The model card (`README.md`) of an exported model: what it is, what it was trained on, how it scored.

Everything comes from the run's own files: its config, `finetune.json`, the protocol step's `DONE.json`
(commit) and result rows (the run's `results.jsonl`, and those of an enclosing protocol workdir that name
this run). Nothing is typed by hand.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from etils import epath

from xlt_jax import results, storage

DONE_FILE = "DONE.json"  # = experiments.protocol.DONE_FILE (not imported: that module pulls in the task data)
PARENT_LEVELS = 3  # a protocol WORKDIR is at most three levels above a run (finetune/TASK/NAME)
ROW_COLUMNS = ("task", "lang", "train_transform", "eval_transform", "setting", "metric", "value", "n_examples", "split")


def _get(tree: Mapping[str, Any], dotted: str, default: Any = "—") -> Any:
    node: Any = tree
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def evaluation_rows(workdir: os.PathLike, *, finetuned: bool) -> list[results.ResultRow]:
    """Rows of `workdir/results.jsonl`, plus rows of enclosing workdirs whose `extra` names this run (as the
    fine-tuned model, or as the pretrained model a fine-tune or Tatoeba evaluation started from)."""
    workdir = storage.workdir_path(workdir)
    here = os.fspath(workdir)
    key = "finetuned" if finetuned else "pretrained"
    rows = results.read_rows(results.results_path(workdir)) if results.has_rows(workdir) else []
    for parent in storage.ancestors(workdir, PARENT_LEVELS):
        if results.has_rows(parent):
            rows += [r for r in results.read_rows(results.results_path(parent)) if r.extra.get(key) == here]
    unique = {r.to_json(): r for r in rows}
    return list(unique.values())


def run_commit(workdir: epath.Path, rows: Sequence[results.ResultRow]) -> str:
    """The code commit the run was made with: its protocol step's DONE.json, else its rows' commits."""
    done = workdir / DONE_FILE
    if done.is_file():
        commit = json.loads(done.read_text()).get("commit")
        if commit:
            return str(commit)
    commits = sorted({r.commit for r in rows})
    return ", ".join(commits) + " (of the evaluation rows)" if commits else "not recorded by the run"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _facts(kind: str, config: Mapping[str, Any], info: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    if kind == "finetuned" and info is not None:
        return [
            ("task", info["task"]), ("head", info["head"]["kind"]),
            ("training data", f"{info['train_lang']} {info['train_source']} ({info['train_examples']} examples)"),
            ("transform", info["train_transform"]), ("steps", info["total_steps"]),
            ("learning rate", _get(config, "optimizer.learning_rate")),
            ("pretrained from", f"{info['pretrained']} (step {info['pretrained_step']})"),
        ]
    return [
        ("objective", _get(config, "data.objective")), ("corpus mode", _get(config, "data.mode")),
        ("languages", _get(config, "data.langs")), ("transform", _get(config, "data.transform")),
        ("corpus source", _get(config, "corpus.source")), ("sentences per language",
                                                            _get(config, "corpus.max_sentences")),
        ("imported from", _get(config, "source.hf")), ("steps", _get(config, "train.steps")),
        ("batch × length", f"{_get(config, 'data.global_batch_size')} × {_get(config, 'data.seq_len')}"),
        ("learning rate", _get(config, "optimizer.learning_rate")),
    ]


def render(
    *,
    name: str,
    kind: str,
    workdir: epath.Path,
    step: int,
    config: Mapping[str, Any],
    info: Mapping[str, Any] | None,
    model: Mapping[str, Any],
    layout: Mapping[str, int],
    rows: Sequence[results.ResultRow],
    commit: str,
    formats: Sequence[str],
    hf_architecture: str | None,
) -> str:
    """The markdown card."""
    sizes = ", ".join(f"{k} {model.get(k)}" for k in ("num_layers", "hidden", "heads", "head_dim", "mlp")
                      if model.get(k) is not None)
    facts = [
        ("model", f"{model.get('name')} ({sizes})"),
        ("vocabulary", f"{layout['copies']} × {layout['base_size']} + {layout['num_sentinels']} sentinels"),
        *_facts(kind, config, info), ("checkpoint step", step), ("commit", commit),
        ("source run", os.fspath(workdir)), ("exported by", results.code_commit()),
    ]
    lines = [f"# {name} ({kind} xlt_jax model)", "", *_table(("", ""), facts), "", "## Evaluation", ""]
    if rows:
        ordered = sorted(rows, key=lambda r: tuple(str(results.field_value(r, c)) for c in ROW_COLUMNS))
        cells = [[f"{r.value:.2f}" if c == "value" else results.field_value(r, c) or "—" for c in ROW_COLUMNS]
                 for r in ordered]
        lines += _table(ROW_COLUMNS, cells)
    else:
        lines.append("No evaluation rows were found for this run.")
    lines += ["", "## Files", "", *_files(kind, step, formats, hf_architecture)]
    return "\n".join(lines) + "\n"


def _files(kind: str, step: int, formats: Sequence[str], hf_architecture: str | None) -> list[str]:
    loader = "finetuned" if kind == "finetuned" else "pretrained"
    lines = [
        "- `config.json`: the run config; `tokenizer/`: the SentencePiece tokenizer (fixed special ids 0-4)"
        + ("; `finetune.json`: task, head, labels, layout" if kind == "finetuned" else ""),
        "- `results.jsonl`: the evaluation rows above (absent when there are none); `export.json`: what was "
        "exported from where",
    ]
    if "orbax" in formats:
        lines.append(f"- `checkpoints/{step}/state`: the parameters (Orbax); this directory loads like the run "
                     f"itself: `{loader}=THIS_DIR` in a fine-tune or evaluation config")
    if hf_architecture:
        lines.append(f"- `hf/`: Hugging Face `{hf_architecture}` (config.json, model.safetensors) and a fast "
                     "tokenizer with the same ids: `AutoTokenizer.from_pretrained('THIS_DIR/hf')`; "
                     "`pretrained=hf:THIS_DIR/hf` imports it back")
    return lines
