r"""The BZ / BS / MZ protocol runner (Deshpande et al. 2022, REFERENCE_SPEC §4.1) and its cross-lingual table.

  python -m xlt_jax.experiments.protocol \
      --config configs/experiments/deshpande.py:lang=en,transform=translit+inv,tasks=pos+ner+nli+qa+tatoeba \
      --workdir DIR [--dry_run]

The experiment is a *plan*: a list of `Step`s computed from the config alone (no compute), printed first.

  pretrain/bilingual                    LANG + LANG:T                     (or `reuse` of a given run)
  pretrain/monolingual                  LANG only: the bilingual run's original sentences and tokenizer
  (each pretraining step's note gives its corpus: source, sentences and words)
  finetune/TASK/bilingual-original-sS   bilingual model on the original training data
  finetune/TASK/bilingual-derived-sS    bilingual model on the derived (T) training data
  finetune/TASK/monolingual-original-sS monolingual model on the original training data
  evaluate/TASK/BZ-sS                   bilingual-original on LANG:none ("" = orig→orig) and LANG:T (BZ)
  evaluate/TASK/BS-sS                   bilingual-derived on LANG:T (BS)
  evaluate/TASK/MZ-sS                   monolingual-original on LANG:none ("") and LANG:T (MZ; with
                                        transliteration the vocabulary is resized, new rows untrained)
  evaluate/TASK/crosslingual-M-sS       M-original on every other language the data offers (""), the
                                        XTREME-style "train on LANG, test on all" table
  evaluate/tatoeba/{BZ,MZ}              the pretrained models themselves (no fine-tuning; BS undefined)

Tasks a transformation cannot apply to become `skip` steps with the reason (syntax needs gold UD trees,
which only POS has; QA refuses perm and syntax). Every pretrain/finetune/evaluate step ends by writing
`WORKDIR/<step>/DONE.json` atomically (config fingerprint, timing, summary); a rerun skips finished
steps and resumes the others (the pretraining and fine-tuning loops resume from their checkpoints), so a
crashed protocol continues where it stopped. A finished *training* step whose config changed is an error
(its dependents would silently mix models); a changed evaluation simply runs again (the results store
keeps the last row per cell). Evaluation rows go to WORKDIR/results.jsonl, and the report printed at the
end (`xlt_jax.experiments.report`) is computed from that file only.

Interruptions: a killed evaluation whose rows reached results.jsonl before its DONE.json did is not run
again; its rows (tagged with the step and its fingerprint) are adopted, so no row is written twice. SIGTERM
stops the runner at the next step boundary (a training step saves its checkpoint first) with exit status 0.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import logging
import os
import pathlib
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ml_collections

from xlt_jax import results
from xlt_jax.data import tasks, transforms
from xlt_jax.data.tasks import sources
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError, Preempted, TransformError, XltError

ALL_TASKS = ("pos", "ner", "nli", "qa", "tatoeba")
DONE_FILE = "DONE.json"
MODELS = ("bilingual", "monolingual")
RUNNABLE = ("pretrain", "finetune", "evaluate")
# Data sources with gold UD trees, needed by a syntax transformation (the only such task: POS from CoNLL-U).
TREE_SOURCES = {"pos": "ud"}
# Leaf config keys that do not change what a run computes: editing them never makes a finished step stale.
NON_SEMANTIC_KEYS = frozenset({
    "log_every", "checkpoint_every", "max_to_keep", "async_checkpointing", "eval_every", "eval_max_batches",
    "cache_dir", "mesh", "distributed", "batch_size", "prefetch_batches", "compilation_cache",
    # NaN handling: a run that finished under the default "stop" met no NaN, so "skip" would compute the same
    # (and workdirs finished before these keys existed stay resumable).
    "nonfinite_policy", "max_consecutive_skips",
})
# Candidate languages probed for "every language the data offers" (XTREME's XNLI, XQuAD and Tatoeba lists).
CANDIDATE_LANGS = tuple(sorted(set(sources.XNLI_LANGS) | set(sources.XQUAD_LANGS) | set(sources.TATOEBA_CODES)))


# ------------------------------------------------------------------------------------------------------
# The plan


@dataclasses.dataclass(frozen=True)
class Step:
    """One unit of the protocol. `name` is unique and is also its directory under the protocol WORKDIR
    (pretrain and finetune runs write there; an evaluation keeps only its DONE.json there, its rows go
    to WORKDIR/results.jsonl)."""

    name: str
    kind: str  # pretrain | finetune | evaluate | reuse (a given pretraining run) | skip (with the reason)
    task: str = ""
    workdir: pathlib.Path | None = None
    config: ml_collections.ConfigDict | None = None
    after: tuple[str, ...] = ()  # steps whose outputs this one reads
    settings: tuple[str, ...] = ()  # settings of the rows an evaluation writes ("" = orig→orig / cross-lingual)
    note: str = ""  # what the step does, or why it is skipped

    @property
    def marker(self) -> pathlib.Path | None:
        return self.workdir / DONE_FILE if self.kind in RUNNABLE and self.workdir is not None else None


def split_list(text: str) -> list[str]:
    """'+'-joined list -> items, stripped, duplicates dropped (order kept)."""
    return list(dict.fromkeys(p.strip() for p in str(text).split("+") if p.strip()))


def experiment_tasks(config: ml_collections.ConfigDict) -> list[str]:
    names = split_list(config.tasks)
    unknown = [t for t in names if t not in ALL_TASKS]
    if unknown or not names:
        raise ConfigError(f"tasks: {config.tasks!r}; expected a '+'-joined subset of {'+'.join(ALL_TASKS)}")
    return names


def experiment_seeds(config: ml_collections.ConfigDict) -> list[int]:
    try:
        seeds = [int(s) for s in split_list(config.seeds)]
    except ValueError:
        raise ConfigError(f"seeds: {config.seeds!r}; expected '+'-joined integers (e.g. 42 or 1+2+3)") from None
    if not seeds:
        raise ConfigError("seeds: give at least one fine-tuning seed (e.g. seeds=42)")
    return seeds


def parse_transform(spec: str) -> transforms.Transform:
    """The derived language's transform (the layout only sizes the id space; V is irrelevant here)."""
    try:
        parsed = transforms.parse(spec, VocabLayout(base_size=1000))
    except TransformError as e:
        raise ConfigError(f"transform: {e}") from e
    if not parsed.name or parsed.name == results.IDENTITY:
        raise ConfigError(f"transform: {spec!r} derives no language; give e.g. inv, perm, translit, translit+inv")
    return parsed


def skip_reason(task: str, transform: transforms.Transform) -> str | None:
    """Why `task` cannot be run under `transform`, or None."""
    if transform.syntax is not None and task not in TREE_SOURCES:
        return (f"{task}: {transform.name} reorders words along gold UD trees; only POS data (UD CoNLL-U) has "
                f"trees, so {task} cannot be given a syntax-derived version (skipped)")
    try:
        transform.for_task(task)
    except TransformError as e:
        return f"{task}: {e} (skipped)"
    return None


def model_names(config: ml_collections.ConfigDict) -> dict[str, str]:
    """The rows' `model` field of each pretrained model."""
    return {
        "bilingual": config.pretrain.bilingual_name or f"bilingual-{config.lang}-{config.transform}",
        "monolingual": config.pretrain.monolingual_name or f"monolingual-{config.lang}",
    }


def evaluation_split(config: ml_collections.ConfigDict, task: str) -> str:
    """The split evaluation will use (mirrors `finetuning.evaluation.resolve_split`)."""
    split = config.evaluate[task].split
    if split:
        return split
    if task == "nli" and str(config.finetune.nli.train_source).startswith("xnli_dev"):
        return "test"
    from xlt_jax.finetuning.evaluation import DEFAULT_SPLIT

    return DEFAULT_SPLIT[task]


@functools.cache
def _offered(task: str, split: str, root: str) -> tuple[str, ...]:
    offered = []
    for lang in CANDIDATE_LANGS:
        try:
            tasks.load(task, lang, split, data_dir=root, limit=1)
        except ConfigError:  # MissingDataError and "no such language/source": not offered
            continue
        offered.append(lang)
    return tuple(offered)


def offered_langs(task: str, split: str) -> list[str]:
    """Languages whose `split` of `task` the data directory holds (each probed by loading one example)."""
    from xlt_jax.data import paths

    return list(_offered(task, split, os.fspath(paths.data_dir())))


def crosslingual_langs(config: ml_collections.ConfigDict, task: str, offered: Callable[[str, str], list[str]]
                       ) -> list[str]:
    """Target languages of the cross-lingual evaluations of `task` (the source language excluded: its
    original-data rows come from the protocol evaluations)."""
    if not config.crosslingual.enabled:
        return []
    wanted = split_list(config.crosslingual.langs) or offered(task, evaluation_split(config, task))
    return [lang for lang in wanted if lang != config.lang]


def describe_corpus(run_config: ml_collections.ConfigDict) -> str:
    """A pretraining run's corpus: source, sentences and words of its original side, and its derived side."""
    from xlt_jax.training import inputs

    return inputs.describe_corpus(run_config)


def _pretrain_steps(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                    corpus: Callable[[ml_collections.ConfigDict], str]) -> dict[str, Step]:
    lang, spec = config.lang, config.transform
    bi = copy.deepcopy(config.pretrain.bilingual)
    bi.data.langs, bi.data.transform = lang, spec
    mono = copy.deepcopy(config.pretrain.monolingual)
    mono.data.langs, mono.data.transform = lang, results.IDENTITY
    # The monolingual twin pretrains on exactly the bilingual model's original side (for syntax: the trees'
    # sentences, `treebank:LANG`, not the whole corpus of the language).
    mono.corpus.source, mono.corpus.max_sentences = bi.corpus.source, bi.corpus.max_sentences
    out = {}
    given = {"bilingual": config.pretrain.bilingual_dir, "monolingual": config.pretrain.monolingual_dir}
    for model, run_config in (("bilingual", bi), ("monolingual", mono)):
        name = f"pretrain/{model}"
        if given[model]:
            out[model] = Step(name, "reuse", workdir=pathlib.Path(given[model]).resolve(),
                              note=f"reuse the finished pretraining run {pathlib.Path(given[model]).resolve()}")
            continue
        after: tuple[str, ...] = ()
        if model == "monolingual" and config.pretrain.share_tokenizer and not run_config.tokenizer.path:
            run_config.tokenizer.path = os.fspath(out["bilingual"].workdir / "tokenizer")
            after = (out["bilingual"].name,)
        langs = f"{lang} + {lang}:{spec}" if model == "bilingual" else lang
        note = (f"{run_config.model.name} {run_config.model.preset} on {langs}: {run_config.train.steps} steps x "
                f"{run_config.data.global_batch_size} x {run_config.data.seq_len}")
        if after:
            note += " (tokenizer of pretrain/bilingual)"
        note += f"; corpus {corpus(run_config)}"
        out[model] = Step(name, "pretrain", workdir=workdir / name, config=run_config, after=after, note=note)
    return out


def _evaluate(config: ml_collections.ConfigDict, task: str, name: str, workdir: pathlib.Path, *, model: Step,
              targets: str, setting: str, settings: tuple[str, ...], role: str, source: str = "",
              note: str = "") -> Step:
    """Evaluate `model` (a step of the bilingual or monolingual `role`); its rows name the model, the corpus
    variant and, for the monolingual model, its bilingual twin."""
    ev = copy.deepcopy(config.evaluate[task])
    if task == "tatoeba":
        ev.pretrained = os.fspath(model.workdir)
    else:
        ev.finetuned = os.fspath(model.workdir)
    names = model_names(config)
    ev.targets, ev.setting, ev.model_name, ev.corpus = targets, setting, names[role], config.corpus
    ev.twin = names["bilingual"] if role == "monolingual" else ""  # the MZ baseline of this bilingual model
    if source and not ev.source:
        ev.source = source
    what = f"{task} {targets} <- {model.name}" + (f" [{setting}]" if setting else "")
    what += (f"; source {ev.source}" if ev.source else "") + (f"; {note}" if note else "")
    return Step(name, "evaluate", task, workdir / name, ev, after=(model.name,), settings=settings, note=what)


def _finetune(config: ml_collections.ConfigDict, task: str, seed: int, model: str, derived: bool,
              pre: Step, workdir: pathlib.Path, tree_source: str) -> Step:
    ft = copy.deepcopy(config.finetune[task])
    ft.pretrained, ft.lang, ft.seed = os.fspath(pre.workdir), config.lang, seed
    ft.train_transform = config.transform if derived else results.IDENTITY
    if tree_source and not ft.train_source:
        ft.train_source = tree_source
    data = "derived" if derived else "original"
    name = f"finetune/{task}/{model}-{data}-s{seed}"
    steps = f", at most {ft.train.max_steps} steps" if ft.train.max_steps else ""
    note = f"{task} on {config.lang}:{ft.train_transform} from {pre.name}, seed {seed}, {ft.train.epochs} epochs{steps}"
    return Step(name, "finetune", task, workdir / name, ft, after=(pre.name,), note=note)


def build_plan(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
               offered: Callable[[str, str], list[str]] = offered_langs,
               corpus: Callable[[ml_collections.ConfigDict], str] = describe_corpus) -> list[Step]:
    """The protocol's steps in execution order (pure: reads no checkpoint; `offered` lists the languages the
    data holds for a (task, split), used only for the cross-lingual targets left to "every language";
    `corpus` describes a pretraining run's text for its note, reading it, which also checks it)."""
    workdir = pathlib.Path(workdir).resolve()
    names = experiment_tasks(config)
    seeds = experiment_seeds(config)
    transform = parse_transform(config.transform)
    lang, spec = config.lang, transform.name
    xl_models = split_list(config.crosslingual.models)
    if any(m not in MODELS for m in xl_models):
        raise ConfigError(
            f"crosslingual.models: {config.crosslingual.models!r}; expected a subset of bilingual+monolingual"
        )
    resized = "vocabulary resized to 2V rows, the new rows untrained" if transform.copies > 1 else ""

    pre = _pretrain_steps(config, workdir, corpus)
    plan = [pre["bilingual"], pre["monolingual"]]
    for task in names:
        reason = skip_reason(task, transform)
        if reason:
            plan.append(Step(f"task/{task}", "skip", task, note=reason))
            continue
        tree_source = TREE_SOURCES[task] if transform.syntax is not None else ""
        xl_targets = "+".join(crosslingual_langs(config, task, offered))
        protocol_targets = f"{lang}:{spec}"
        if task == "tatoeba":
            for setting, model in (("BZ", "bilingual"), ("MZ", "monolingual")):
                plan.append(_evaluate(config, task, f"evaluate/tatoeba/{setting}", workdir, model=pre[model],
                                      targets=protocol_targets, setting=setting, settings=(setting,),
                                      role=model, note=resized if setting == "MZ" else ""))
            plan.append(Step("evaluate/tatoeba/BS", "skip", task,
                             note="tatoeba: no fine-tuning, so BS is undefined (REFERENCE_SPEC §4.6)"))
            for model in xl_models if xl_targets else ():
                plan.append(_evaluate(config, task, f"evaluate/tatoeba/crosslingual-{model}", workdir,
                                      model=pre[model], targets=xl_targets, setting="", settings=("",),
                                      role=model))
            continue
        for seed in seeds:
            ft = {
                (model, derived): _finetune(config, task, seed, model, derived, pre[model], workdir, tree_source)
                for model, derived in (("bilingual", False), ("bilingual", True), ("monolingual", False))
            }
            both = f"{lang}:{results.IDENTITY}+{protocol_targets}"
            evals = [  # (setting, fine-tuned model, derived training data?, targets, row settings, note)
                ("BZ", "bilingual", False, both, ("", "BZ"), ""),
                ("BS", "bilingual", True, protocol_targets, ("BS",), ""),
                ("MZ", "monolingual", False, both, ("", "MZ"), resized),
            ]
            for setting, model, derived, targets, settings, note in evals:
                plan.append(ft[model, derived])
                plan.append(_evaluate(config, task, f"evaluate/{task}/{setting}-s{seed}", workdir,
                                      model=ft[model, derived], targets=targets, setting=setting, settings=settings,
                                      role=model, source=tree_source, note=note))
            for model in xl_models if xl_targets else ():
                plan.append(_evaluate(config, task, f"evaluate/{task}/crosslingual-{model}-s{seed}", workdir,
                                      model=ft[model, False], targets=xl_targets, setting="", settings=("",),
                                      role=model))
    check_plan(plan)
    return plan


def check_plan(plan: Sequence[Step]) -> None:
    seen: set[str] = set()
    for step in plan:
        if step.name in seen:
            raise ConfigError(f"plan: step {step.name!r} appears twice")
        missing = [d for d in step.after if d not in seen]
        if missing:
            raise ConfigError(f"plan: step {step.name!r} runs before {missing}")
        seen.add(step.name)


# ------------------------------------------------------------------------------------------------------
# Markers and status


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
    """DONE.json, written to a temporary name, fsynced and renamed: present means finished."""
    import jax

    if jax.process_index() != 0:
        return
    record = {
        "step": step.name, "kind": step.kind, "fingerprint": fingerprint(step), "finished": results.utc_now(),
        "seconds": round(seconds, 1), "commit": results.code_commit(), "summary": summary,
        "config": config_dict(step.config),
    }
    step.workdir.mkdir(parents=True, exist_ok=True)
    tmp = step.marker.with_name(f".{DONE_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, step.marker)


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
        if status[step.name] == "stale" and step.kind != "evaluate":
            old = read_marker(step).get("config", {})
            changed = _changed_keys(_semantic(old), _semantic(config_dict(step.config)))
            raise ConfigError(
                f"{step.name}: finished in {step.workdir} under another config (changed: "
                f"{', '.join(changed) or 'unknown'}); later steps were built on it. Use a new --workdir, restore "
                f"the config, or delete {step.workdir} (and the steps after it) to redo it"
            )


# ------------------------------------------------------------------------------------------------------
# Printing


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


# ------------------------------------------------------------------------------------------------------
# Running


@dataclasses.dataclass
class ProtocolResult:
    plan: list[Step]
    status: dict[str, str]  # before this invocation ran anything
    executed: list[str]  # steps this invocation ran, in order
    failed: dict[str, str]  # step -> error (the steps after a failed one are not run)
    report: str  # the markdown report from results.jsonl ("" when there are no rows)


class ProtocolFailed(XltError, RuntimeError):
    """Some steps failed; the others ran, and a rerun resumes from the failed ones."""


def execute(step: Step, workdir: pathlib.Path) -> dict:
    """Run one step; returns the summary stored in its marker."""
    if step.kind == "pretrain":
        from xlt_jax.training import loop

        result = loop.run(step.config, step.workdir)
        return {"start_step": result.start_step, "final_step": result.final_step}
    if step.kind == "finetune":
        from xlt_jax.finetuning import trainer

        result = trainer.run(step.config, step.workdir)
        return {"start_step": result.start_step, "final_step": result.final_step}
    if step.kind == "evaluate":
        from xlt_jax.finetuning import evaluation

        tags = evaluation_tags(step)
        rows = appended_rows(workdir, tags)
        if rows:
            logging.warning("%s: its %d rows are already in %s (the run stopped before DONE.json); not evaluating "
                            "again", step.name, len(rows), results.results_path(workdir))
        else:
            rows = evaluation.run(step.config, workdir, row_tags=tags)
        return {"rows": [dict(lang=r.lang, eval_transform=r.eval_transform, setting=r.setting, metric=r.metric,
                              value=round(r.value, 4), n_examples=r.n_examples) for r in rows]}
    raise ConfigError(f"{step.name}: kind {step.kind!r} is not runnable")


def evaluation_tags(step: Step) -> dict[str, str]:
    """What an evaluation step writes into its rows' `extra`: which step, config and code wrote them."""
    return {"protocol_step": step.name, "protocol_fingerprint": fingerprint(step),
            "protocol_commit": results.code_commit()}


def appended_rows(workdir: pathlib.Path, tags: dict[str, str]) -> list[results.ResultRow]:
    """The rows an earlier, interrupted attempt of the same step appended, if all of them are there.

    One attempt appends its rows with one locked write, and each row says how many it wrote with it
    (`extra.rows_in_batch`), so a complete batch is recognisable.
    """
    if not results.results_path(workdir).exists():
        return []
    mine = [r for r in results.read_rows(workdir) if all(r.extra.get(k) == v for k, v in tags.items())]
    if mine and len(mine) == mine[-1].extra.get("rows_in_batch"):
        return mine
    return []


def compilation_cache(setting: str, workdir: pathlib.Path):
    """The protocol's persistent compile cache: same-shaped models compile once; "auto" = WORKDIR/jax_cache."""
    from xlt_jax.training.compile_cache import persistent_cache

    return persistent_cache(setting, workdir / "jax_cache")


def render_report(workdir: pathlib.Path) -> str:
    from xlt_jax.experiments import report

    if not results.results_path(workdir).exists():
        return ""
    return report.run(workdir)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, dry_run: bool = False,
        out: Callable[[str], None] = print) -> ProtocolResult:
    """Print the plan, run the unfinished steps in order, then print the report (see module docstring)."""
    workdir = pathlib.Path(workdir).resolve()
    plan = build_plan(config, workdir)
    status = plan_status(plan)
    header = (f"Protocol {config.lang}:{config.transform} tasks={config.tasks} seeds={config.seeds} "
              f"-> {workdir}" + (" (dry run)" if dry_run else ""))
    out(format_plan(plan, status, header=header))
    for step in plan:
        if step.kind == "skip":
            logging.warning("skipping %s: %s", step.name, step.note)
    check_runnable(plan, status)
    if dry_run:
        return ProtocolResult(plan, status, [], {}, "")

    from xlt_jax.training import preemption

    workdir.mkdir(parents=True, exist_ok=True)
    executed: list[str] = []
    failed: dict[str, str] = {}
    blocked: set[str] = set()
    with preemption.watch(), compilation_cache(config.compilation_cache, workdir):
        for i, step in enumerate(plan, start=1):
            if status[step.name] not in ("todo", "stale"):
                continue
            if preemption.requested():  # SIGTERM during an evaluation (no checkpoint to save): stop here
                raise Preempted(f"preempted: stopped before {step.name}; rerun the same command to resume")
            if any(d in blocked for d in step.after):
                blocked.add(step.name)
                logging.warning("not running %s: it needs %s, which failed", step.name, ", ".join(step.after))
                continue
            out(f"[{i}/{len(plan)}] {step.name}: {step.note}")
            t0 = time.perf_counter()
            try:
                summary = execute(step, workdir)
            except XltError as e:  # bad data/config or a diverged run: other tasks go on
                logging.error("%s failed: %s: %s", step.name, type(e).__name__, e)
                failed[step.name] = f"{type(e).__name__}: {e}"
                blocked.add(step.name)
                continue
            seconds = time.perf_counter() - t0
            write_marker(step, summary, seconds)
            executed.append(step.name)
            out(f"[{i}/{len(plan)}] {step.name}: done in {seconds:.1f} s")
    markdown = render_report(workdir)
    out(markdown or "No result rows yet.")
    result = ProtocolResult(plan, status, executed, failed, markdown)
    if failed:
        raise ProtocolFailed(
            "failed steps (rerun the same command to resume): "
            + "; ".join(f"{name}: {err}" for name, err in failed.items())
        )
    return result


# ------------------------------------------------------------------------------------------------------
# Binary


def run_main(argv: Iterable[str] | None = None) -> None:
    from absl import flags

    from xlt_jax import cli

    cli.define_flags(
        "Protocol config file (configs/experiments/deshpande.py:ARGS).",
        "Directory of the whole protocol: one subdirectory per run, results.jsonl and report.md.",
    )
    flags.adopt_module_key_flags(cli)  # listed by --help
    flags.DEFINE_bool("dry_run", False, "Print the plan (with each step's status) and exit.")
    cli.run(
        lambda config, workdir: run(config, workdir, dry_run=flags.FLAGS.dry_run),
        argv=list(argv) if argv is not None else None,
    )


if __name__ == "__main__":
    run_main()
