"""The protocol's plan: the list of `Step`s of one BZ / BS / MZ experiment, computed from its config alone.

  pretrain/bilingual                    LANG + LANG:T                     (or `reuse` of a given run)
  pretrain/monolingual                  LANG only: the bilingual run's original sentences and tokenizer
  (each pretraining step's note gives its corpus: source, sentences and words)
  align/bilingual                       alignment rows of a transliteration model (`align.enabled`)
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

Tasks a transformation cannot apply to become `skip` steps with the reason (syntax with `syntax.trees=gold`
needs gold UD trees, which only POS has; with a parser, `udpipe` or `stanza`, NER, NLI and Tatoeba are parsed
and reordered too, POS keeping its gold trees; QA refuses perm and syntax). A parser that cannot parse the
language here (no model, no treebank to train one) is an error before anything runs. Building a plan reads no
checkpoint; it reads the pretraining text once (each pretraining step's note describes it, which also checks it).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
from collections.abc import Callable, Sequence

import ml_collections
from etils import epath

from xlt_jax import results, storage
from xlt_jax.data import tasks, transforms
from xlt_jax.data.corpus_variants import VARIANTS
from xlt_jax.data.tasks import sources
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError, TransformError

ALL_TASKS = ("pos", "ner", "nli", "qa", "tatoeba")
DONE_FILE = "DONE.json"
MODELS = ("bilingual", "monolingual")
RUNNABLE = ("pretrain", "align", "finetune", "evaluate")
# Data sources with gold UD trees, used by a syntax transformation (the only such task: POS from CoNLL-U).
TREE_SOURCES = {"pos": "ud"}
# Candidate languages probed for "every language the data offers" (XTREME's XNLI, XQuAD and Tatoeba lists).
CANDIDATE_LANGS = tuple(sorted(set(sources.XNLI_LANGS) | set(sources.XQUAD_LANGS) | set(sources.TATOEBA_CODES)))


@dataclasses.dataclass(frozen=True)
class Step:
    """One unit of the protocol. `name` is unique and is also its directory under the protocol WORKDIR
    (pretrain and finetune runs write there; an evaluation keeps only its DONE.json there, its rows go
    to WORKDIR/results.jsonl)."""

    name: str
    kind: str  # pretrain | align | finetune | evaluate | reuse (a given pretraining run) | skip (with the reason)
    task: str = ""
    workdir: epath.Path | None = None  # storage.workdir_path: local or gs://
    config: ml_collections.ConfigDict | None = None
    after: tuple[str, ...] = ()  # steps whose outputs this one reads
    settings: tuple[str, ...] = ()  # settings of the rows an evaluation writes ("" = orig→orig / cross-lingual)
    note: str = ""  # what the step does, or why it is skipped

    @property
    def marker(self) -> epath.Path | None:
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


def skip_reason(task: str, transform: transforms.Transform, trees: str = "gold") -> str | None:
    """Why `task` cannot be run under `transform` with the trees `syntax.trees` names, or None."""
    if transform.syntax is not None and task not in TREE_SOURCES and trees == "gold":
        return (f"{task}: {transform.name} reorders words along gold UD trees; only POS data (UD CoNLL-U) has "
                f"trees, so {task} cannot be given a syntax-derived version without a parser (trees=udpipe or "
                "stanza; skipped)")
    try:
        transform.for_task(task)
    except TransformError as e:
        return f"{task}: {e} (skipped)"
    return None


def syntax_trees(config: ml_collections.ConfigDict, transform: transforms.Transform) -> str:
    """`syntax.trees`, checked: a parser must be able to parse the protocol language's text here."""
    from xlt_jax.data import parse

    trees = parse.check_trees(str(config.syntax.trees))
    if transform.syntax is not None and trees != "gold":
        problem = parse.parser_problem(trees, config.lang, str(config.syntax.model))
        if problem:
            raise ConfigError(f"{transform.name} on {config.lang} text: {problem}")
    return trees


def _set_syntax(run_config: ml_collections.ConfigDict, config: ml_collections.ConfigDict) -> None:
    run_config.syntax.trees, run_config.syntax.model = config.syntax.trees, config.syntax.model


def corpus_variant(config: ml_collections.ConfigDict) -> str:
    """The bilingual corpus variant the protocol's `corpus` selects (and labels its rows with)."""
    if config.corpus not in VARIANTS:
        raise ConfigError(f"corpus: {config.corpus!r} is not a corpus variant; expected one of {', '.join(VARIANTS)}")
    return config.corpus


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


def _pretrain_steps(config: ml_collections.ConfigDict, workdir: epath.Path,
                    corpus: Callable[[ml_collections.ConfigDict], str]) -> dict[str, Step]:
    lang, spec = config.lang, config.transform
    bi = copy.deepcopy(config.pretrain.bilingual)
    bi.data.langs, bi.data.transform, bi.corpus.variant = lang, spec, corpus_variant(config)
    mono = copy.deepcopy(config.pretrain.monolingual)
    mono.data.langs, mono.data.transform = lang, results.IDENTITY
    _set_syntax(bi, config)
    # The monolingual twin pretrains on exactly the bilingual model's original side (for syntax: the trees'
    # sentences, `treebank:LANG`; for a non-parallel variant: the same half of the same domain's text).
    for key in bi.corpus:
        if key != "derived_source":
            mono.corpus[key] = copy.deepcopy(bi.corpus[key])
    out = {}
    given = {"bilingual": config.pretrain.bilingual_dir, "monolingual": config.pretrain.monolingual_dir}
    for model, run_config in (("bilingual", bi), ("monolingual", mono)):
        name = f"pretrain/{model}"
        if given[model]:
            reused = storage.workdir_path(given[model])
            out[model] = Step(name, "reuse", workdir=reused, note=f"reuse the finished pretraining run {reused}")
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


def _align_step(config: ml_collections.ConfigDict, workdir: epath.Path, bilingual: Step,
                transform: transforms.Transform) -> Step | None:
    """Alignment rows of the bilingual model (`align.enabled`; only a transliteration model has a derived
    vocabulary copy to align), named as its evaluation rows are, so `align correlate` and the report pair them."""
    if not config.align.enabled or transform.copies < 2:
        return None
    run = copy.deepcopy(config.align.analysis)
    run.pretrained, run.corpus = os.fspath(bilingual.workdir), config.corpus
    run.model_name = model_names(config)["bilingual"]
    name = "align/bilingual"
    note = f"token-embedding (and contextual) alignment of {bilingual.name}"
    return Step(name, "align", workdir=workdir / name, config=run, after=(bilingual.name,), note=note)


def _evaluate(config: ml_collections.ConfigDict, task: str, name: str, workdir: epath.Path, *, model: Step,
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
    _set_syntax(ev, config)
    ev.twin = names["bilingual"] if role == "monolingual" else ""  # the MZ baseline of this bilingual model
    if source and not ev.source:
        ev.source = source
    what = f"{task} {targets} <- {model.name}" + (f" [{setting}]" if setting else "")
    what += (f"; source {ev.source}" if ev.source else "") + (f"; {note}" if note else "")
    return Step(name, "evaluate", task, workdir / name, ev, after=(model.name,), settings=settings, note=what)


def _finetune(config: ml_collections.ConfigDict, task: str, seed: int, model: str, derived: bool,
              pre: Step, workdir: epath.Path, tree_source: str) -> Step:
    ft = copy.deepcopy(config.finetune[task])
    ft.pretrained, ft.lang, ft.seed = os.fspath(pre.workdir), config.lang, seed
    ft.train_transform = config.transform if derived else results.IDENTITY
    _set_syntax(ft, config)
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
    workdir = storage.workdir_path(workdir)
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
    trees = syntax_trees(config, transform)

    pre = _pretrain_steps(config, workdir, corpus)
    plan = [pre["bilingual"], pre["monolingual"]]
    align = _align_step(config, workdir, pre["bilingual"], transform)
    plan += [align] if align else []
    for task in names:
        reason = skip_reason(task, transform, trees)
        if reason:
            plan.append(Step(f"task/{task}", "skip", task, note=reason))
            continue
        tree_source = TREE_SOURCES.get(task, "") if transform.syntax is not None else ""  # gold trees where any
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


