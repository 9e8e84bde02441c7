r"""One command for the paper's grid: languages × transformations × corpus variants × tasks × seeds.

  python -m xlt_jax.experiments.grid --config configs/experiments/paper.py[:ARGS] --workdir DIR [--dry_run]
  python -m xlt_jax.experiments.report DIR

Each cell (language, transformation, corpus variant) is one BZ / BS / MZ protocol plan (`plan.build_plan`)
in `DIR/cells/<lang>_<transform>_<variant>/`, the same layout and markers a protocol run in that directory
would have; the cells' steps form one plan (names prefixed by the cell), run in order by the protocol's
runner, so a rerun skips every finished step and so every finished cell, and several runners may share
DIR. All rows go to one `DIR/results.jsonl`, which the report renders (with the paper's numbers beside ours).

What the data here cannot give is listed with the reason, never silently dropped: a cell whose pretraining
cannot be planned (e.g. syntax on a language without UD train trees) is left out whole, a task whose
fine-tuning or evaluation data is missing (per the data MANIFEST: MultiNLI, French/Hindi POS train, non-
English QA) is left out of that cell; the plan validation (`validate.py`) then passes for everything that
runs. `--dry_run` prints the plan per cell and a cost estimate from the steps and this machine's measured
throughput (`cost.py`).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import os
import pathlib
import runpy
import time
from collections.abc import Callable, Iterable

import ml_collections
from etils import epath

from xlt_jax import provenance, storage
from xlt_jax.data import corpora
from xlt_jax.data.corpus_variants import PARALLEL, VARIANTS
from xlt_jax.errors import ConfigError, Preempted
from xlt_jax.experiments import cost, markers, sharing, validate
from xlt_jax.experiments.plan import Step, build_plan, parse_transform, split_list
from xlt_jax.experiments.runner import ProtocolResult, execute, failure, render_report, run_steps

DESHPANDE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "experiments" / "deshpande.py"
CELL_KEYS = ("lang", "transform", "corpus", "tasks", "seeds")  # set per cell by the grid, not by `protocol`
CELLS_DIR = "cells"


@dataclasses.dataclass(frozen=True)
class Cell:
    lang: str
    transform: str  # resolved spec (syntax with its target)
    variant: str

    @property
    def name(self) -> str:
        """Directory name: `en_translit+syntax-fr_parallel` (':' would trouble some file tools)."""
        return f"{self.lang}_{self.transform.replace(':', '-')}_{self.variant}"


@dataclasses.dataclass
class Grid:
    cells: list[Cell]
    plans: dict[str, list[Step]]  # cell name -> its steps (names prefixed with the cell)
    left_out: dict[str, list[str]]  # cell name -> tasks left out of it, with the reason
    unavailable: dict[str, str]  # cell name -> why it cannot run at all
    shared: dict[str, str] = dataclasses.field(default_factory=dict)  # dropped step -> the identical step run

    @property
    def plan(self) -> list[Step]:
        return [step for steps in self.plans.values() for step in steps]


# ------------------------------------------------------------------------------------------------------
# Cells


def _slash_list(text: str) -> list[str]:
    return list(dict.fromkeys(p.strip() for p in str(text).split("/") if p.strip()))


def resolve_transform(spec: str, lang: str, targets: ml_collections.ConfigDict) -> str:
    """A grid transform for `lang`: a bare `syntax` part takes `syntax_target[lang]` (the paper's direction)."""
    parts = []
    for part in spec.split("+"):
        if part.strip() == "syntax":
            if not targets.get(lang):
                raise ConfigError(f"syntax_target: no entry for language {lang!r} (entries: "
                                  f"{', '.join(sorted(targets.keys()))}); give --config.syntax_target.{lang}=LANG")
            part = f"syntax:{targets[lang]}"
        parts.append(part.strip())
    return "+".join(parts)


def grid_cells(config: ml_collections.ConfigDict) -> list[Cell]:
    """Languages × transforms × variants (the non-parallel variants only for `variant_transforms`)."""
    langs = split_list(config.langs)
    known = corpora.available_languages(exclude_eval=False)
    unknown = [lang for lang in langs if lang not in known]
    if unknown or not langs:
        raise ConfigError(f"langs: {config.langs!r}; {unknown or 'none'} has no text in the data directory "
                          f"(languages with text: {', '.join(known)})")
    specs = _slash_list(config.transforms)
    if not specs:
        raise ConfigError(f"transforms: {config.transforms!r}; give '/'-separated specs, e.g. inv/translit+inv")
    resolved = {(lang, spec): _resolved(spec, lang, config.syntax_target, "transforms") for lang in langs
                for spec in specs}
    variants = split_list(config.variants)
    if not variants or any(v not in VARIANTS for v in variants):
        raise ConfigError(f"variants: {config.variants!r}; expected a '+'-joined subset of {'+'.join(VARIANTS)}")
    with_variants = _slash_list(config.variant_transforms)  # those not in `transforms` have no cells
    for spec in with_variants:
        _resolved(spec, langs[0], config.syntax_target, "variant_transforms")
    return [Cell(lang, resolved[lang, spec], v) for lang in langs for spec in specs for v in variants
            if v == PARALLEL or spec in with_variants]


def _resolved(spec: str, lang: str, targets: ml_collections.ConfigDict, key: str) -> str:
    """`resolve_transform`, checked: ConfigError naming `key` for a spec that derives no language."""
    resolved = resolve_transform(spec, lang, targets)
    try:
        parse_transform(resolved)
    except ConfigError as e:
        raise ConfigError(f"{key}: {spec!r} for {lang}: {e}") from e
    return resolved


def _leaf_paths(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _leaf_paths(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def template_overrides(config: ml_collections.ConfigDict) -> dict[str, object]:
    """Leaves of `config.protocol` that differ from the template deshpande.py builds: every cell gets them."""
    pristine = _leaf_paths(runpy.run_path(str(DESHPANDE))["get_config"](config.protocol_args).to_dict())
    given = _leaf_paths(config.protocol.to_dict())
    changed = {path: value for path, value in given.items() if pristine.get(path, object()) != value}
    fixed = [path for path in changed if path in CELL_KEYS]
    if fixed:
        raise ConfigError(f"protocol.{fixed[0]}: set by the grid for each cell; use the grid's own key")
    return changed


def _set_path(config: ml_collections.ConfigDict, path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[leaf] = copy.deepcopy(value)


def cell_config(config: ml_collections.ConfigDict, cell: Cell,
                overrides: dict[str, object]) -> ml_collections.ConfigDict:
    """The protocol config of one cell: deshpande.py for it, then the template's overrides."""
    args = (f"lang={cell.lang},transform={cell.transform},corpus={cell.variant},tasks={config.tasks},"
            f"seeds={config.seeds}")
    cfg = runpy.run_path(str(DESHPANDE))["get_config"](",".join(filter(None, [args, config.protocol_args])))
    for path, value in overrides.items():
        _set_path(cfg, path, value)
    if not cfg.pretrain.monolingual_name:  # one monolingual twin per cell: a name per pretraining run
        cfg.pretrain.monolingual_name = f"monolingual-{cell.lang}-for-{cell.transform}"
    return cfg


# ------------------------------------------------------------------------------------------------------
# The grid's plan


def _prefixed(steps: Iterable[Step], cell: str) -> list[Step]:
    return [dataclasses.replace(s, name=f"{cell}/{s.name}", after=tuple(f"{cell}/{a}" for a in s.after)) for s in steps]


def _problem_tasks(plan: list[Step]) -> tuple[dict[str, str], list[str]]:
    """(task -> its first problem, problems of the pretraining steps) of a cell's plan."""
    problems = validate.step_problems(plan)
    by_task: dict[str, str] = {}
    pretraining: list[str] = []
    for step in plan:
        for problem in problems.get(step.name, []):
            if step.task:
                by_task.setdefault(step.task, problem)
            else:
                pretraining.append(problem)
    return by_task, pretraining


def plan_cell(config: ml_collections.ConfigDict, cell: Cell, workdir: epath.Path, overrides: dict[str, object],
              **plan_kwargs) -> tuple[list[Step] | None, list[str], str]:
    """(the cell's steps or None, tasks left out with reasons, why the cell cannot run at all)."""
    cfg = cell_config(config, cell, overrides)
    cell_dir = workdir / CELLS_DIR / cell.name
    try:
        plan = build_plan(cfg, cell_dir, **plan_kwargs)
        by_task, pretraining = _problem_tasks(plan)
        if pretraining:
            return None, [], "; ".join(pretraining)
        kept = [t for t in split_list(cfg.tasks) if t not in by_task]
        left_out = [f"{task}: {reason}" for task, reason in by_task.items()]
        if not kept:
            return None, left_out, "no task has the data it needs"
        if by_task:
            cfg.tasks = "+".join(kept)
            plan = build_plan(cfg, cell_dir, **plan_kwargs)
    except ConfigError as e:
        return None, [], str(e)
    return _prefixed(plan, cell.name), left_out, ""


def build_grid(config: ml_collections.ConfigDict, workdir: str | os.PathLike, **plan_kwargs) -> Grid:
    """Every cell's plan (see the module docstring); `plan_kwargs` go to `build_plan` (tests fake the data)."""
    workdir = storage.workdir_path(workdir)
    cells = grid_cells(config)
    overrides = template_overrides(config)
    grid = Grid(cells, {}, {}, {})
    for cell in cells:
        steps, left_out, reason = plan_cell(config, cell, workdir, overrides, **plan_kwargs)
        if left_out:
            grid.left_out[cell.name] = left_out
        if steps is None:
            grid.unavailable[cell.name] = reason
        else:
            grid.plans[cell.name] = steps
    if config.get("share_identical_runs", False):
        grid.plans, grid.shared = sharing.share_identical_steps(grid.plans)
    return grid


# ------------------------------------------------------------------------------------------------------
# Printing and running


def _grouped(reasons: Iterable[tuple[str, str]]) -> list[str]:
    """`reason: cell, cell` lines, one per distinct reason, in first-seen order."""
    cells: dict[str, list[str]] = collections.defaultdict(list)
    for cell, reason in reasons:
        cells[reason].append(cell)
    return [f"  {reason}\n      cells: {', '.join(names)}" for reason, names in cells.items()]


def _strip_step(problem: str) -> str:
    """`task: finetune/nli/...: training data: MSG` -> `task: MSG` (the step name is the same in every cell)."""
    task, _, rest = problem.partition(": ")
    rest = rest.split(": ", 1)[1] if rest.startswith(("finetune/", "evaluate/")) else rest
    return f"{task}: {rest.removeprefix('training data: ')}"


def format_grid(grid: Grid, status: dict[str, str], costs: dict[str, dict] | None = None) -> str:
    """One line per cell (step counts by status, tasks, what was left out, dry run: its cost), then why cells
    cannot run and why tasks were left out or skipped, each reason once with its cells."""
    lines = [f"{len(grid.cells)} cells: {len(grid.plans)} planned, {len(grid.unavailable)} cannot run here; "
             f"{len(grid.plan)} steps" + (f" ({len(grid.shared)} identical runs shared)" if grid.shared else "")]
    for cell in grid.cells:
        name = cell.name
        left_out = [reason.split(":", 1)[0] for reason in grid.left_out.get(name, [])]
        if name in grid.unavailable:
            lines.append(f"  {name}: CANNOT RUN (below)")
            continue
        counts = collections.Counter(status[s.name] for s in grid.plans[name])
        state = "done" if set(counts) <= {"done", "skip", "reuse"} else ", ".join(f"{n} {k}" for k, n in counts.items())
        tasks = sorted({s.task for s in grid.plans[name] if s.task and s.kind != "skip"})
        line = f"  {name}: {state}; tasks {'+'.join(tasks) or '-'}"
        line += f" (left out: {', '.join(left_out)})" if left_out else ""
        if costs is not None:
            line += "; cost " + ", ".join(f"{kind} {cost.duration(t)}" for kind, t in costs[name].items())
        lines.append(line)
    if grid.unavailable:
        lines += ["Cells that cannot run with the data here:"]
        lines += _grouped((name, reason) for name, reason in grid.unavailable.items())
    left = [(name, _strip_step(r)) for name, reasons in grid.left_out.items() for r in reasons]
    if left:
        lines += ["Tasks left out for missing data:"] + _grouped(left)
    skipped = [(name, s.note) for name, steps in grid.plans.items() for s in steps if s.kind == "skip"]
    if skipped:
        lines += ["Steps skipped by design (the transformation does not apply):"] + _grouped(skipped)
    return "\n".join(lines)


def estimate(grid: Grid, status: dict[str, str], config: ml_collections.ConfigDict,
             throughputs: cost.Throughputs) -> tuple[dict[str, dict], list[str]]:
    """(cell -> seconds by kind, how each model's throughput was obtained)."""
    costs = {name: cost.plan_seconds(steps, status, throughputs, config.cost.row_len, context=grid.plan)
             for name, steps in grid.plans.items()}
    return costs, sorted({t.source for t in throughputs.memo.values()})


def _total(costs: dict[str, dict]) -> str:
    parts = [s for spent in costs.values() for s in spent.values()]
    return cost.duration(None if any(s is None for s in parts) else sum(parts))


RECORD_FILE = "grid.json"


def steps_done(plan: list[Step]) -> int:
    return sum(v in ("done", "skip", "reuse") for v in markers.plan_status(plan).values())


def step_seconds(plan: list[Step]) -> dict[str, dict]:
    """Per kind of step (pretrain, finetune, ...): the plan's finished steps and the seconds their markers
    recorded, i.e. where a grid's time went."""
    status, kinds = markers.plan_status(plan), {}
    for step in plan:
        seconds = (markers.read_marker(step) or {}).get("seconds") if status[step.name] == "done" else None
        if isinstance(seconds, int | float):
            kind = kinds.setdefault(step.kind, {"steps": 0, "seconds": 0.0})
            kind["steps"], kind["seconds"] = kind["steps"] + 1, round(kind["seconds"] + seconds, 1)
    return kinds


def write_record(workdir: epath.Path, started: float, executed: list[str] | None, plan: list[Step],
                 done_before: int) -> None:
    """WORKDIR/grid.json: provenance of the last invocation that ran steps, the wall time summed over all
    invocations (a resumed grid counts every part) and how many there were, and the step time per kind, for
    the README's generated section. `executed` is None when the invocation was preempted: its steps are then
    those finished since it started. An invocation that ran nothing changes only the figures read from the
    steps' markers."""
    path = workdir / RECORD_FILE
    previous = json.loads(path.read_text()) if path.is_file() else {}
    # a record written before invocations were counted: one if its total is its last invocation's time
    if "invocations" in previous or not previous:
        counted = previous.get("invocations", 0)
    else:
        counted = 1 if previous.get("wall_s_total") == previous.get("wall_s") else None
    if previous and executed == []:  # nothing ran: the record keeps the provenance of the runs that did
        record = dict(previous, invocations=counted)
    else:
        record = provenance.record(started, time.time())
        record["wall_s_total"] = round(float(previous.get("wall_s_total", 0.0)) + float(record["wall_s"]), 1)
        record["invocations"] = counted + 1 if counted is not None else None
        record["steps_run_last"] = len(executed) if executed is not None else steps_done(plan) - done_before
    record["step_seconds"] = step_seconds(plan)
    record["steps"] = len(plan)
    record["steps_done"] = steps_done(plan)
    storage.atomic_write(path, (json.dumps(record, indent=1) + "\n").encode())


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, dry_run: bool = False,
        out: Callable[[str], None] = print, throughputs: cost.Throughputs | None = None,
        print_steps: bool = False) -> ProtocolResult:
    """Plan every cell, print the plan (dry run: with costs), run the unfinished steps, render the report."""
    workdir = storage.workdir_path(workdir)
    grid = build_grid(config, workdir)
    plan = grid.plan
    seen = {step.name: markers.read_marker(step) for step in plan if step.marker is not None}
    status = markers.plan_status(plan)
    out(f"Grid -> {workdir}" + (" (dry run)" if dry_run else ""))
    if print_steps and plan:
        out(markers.format_plan(plan, status))
    markers.check_runnable(plan, status)
    validate.check_plan_whole(plan)
    if not dry_run:
        out(format_grid(grid, status))
        started, done_before = time.time(), steps_done(plan)
        try:
            executed, failed = run_steps(plan, status, seen, workdir, execute_step=execute,
                                         cache=str(config.protocol.compilation_cache), out=out)
        except Preempted:  # stopped between steps: the partial invocation's time and rows still count
            write_record(workdir, started, None, plan, done_before)
            render_report(workdir)
            raise
        write_record(workdir, started, executed, plan, done_before)
        markdown = render_report(workdir)
        out(markdown or "No result rows yet.")
        if failed:
            raise failure(failed)
        return ProtocolResult(plan, status, executed, failed, markdown)
    throughputs = throughputs or cost.Throughputs(cost.cache_path(config.cost.cache), int(config.cost.probe_batch),
                                                  allow_measure=bool(config.cost.measure))
    costs, sources = estimate(grid, status, config, throughputs)
    out(format_grid(grid, status, costs))
    out(f"Total estimate of the unfinished steps: {_total(costs)} on this machine. Throughput per model "
        "(one jitted train step; fine-tuning and evaluation use their pretrained model's):")
    out("\n".join(f"  {s}" for s in sources))
    return ProtocolResult(plan, status, [], {}, "")


def run_main(argv: Iterable[str] | None = None) -> None:
    from absl import flags

    from xlt_jax import cli

    cli.define_flags(
        "Grid config file (configs/experiments/paper.py[:ARGS]).",
        "Directory of the grid: cells/<cell>/ per protocol, one results.jsonl, report/.",
    )
    flags.adopt_module_key_flags(cli)  # listed by --help
    flags.DEFINE_bool("dry_run", False, "Print the plan per cell with a cost estimate, and exit.")
    flags.DEFINE_bool("print_steps", False, "Also print every step of every cell.")
    cli.run(
        lambda config, workdir: run(config, workdir, dry_run=flags.FLAGS.dry_run,
                                    print_steps=flags.FLAGS.print_steps),
        argv=list(argv) if argv is not None else None,
    )


if __name__ == "__main__":
    run_main()
