r"""The BZ / BS / MZ protocol runner (Deshpande et al. 2022, REFERENCE_SPEC §4.1) for one language,
transformation and corpus variant.

  python -m xlt_jax.experiments.protocol \
      --config configs/experiments/deshpande.py:lang=en,transform=translit+inv,tasks=pos+ner+nli+qa+tatoeba \
      --workdir DIR [--dry_run]

The experiment is a *plan*: a list of `Step`s computed from the config alone (no compute), printed first
(`plan.py` lists the steps). Every pretrain/align/finetune/evaluate step ends by writing
`WORKDIR/<step>/DONE.json` atomically (`markers.py`); a rerun skips finished steps and resumes the others
(the pretraining and fine-tuning loops resume from their checkpoints), so a crashed protocol continues where
it stopped. Several runners may share a WORKDIR: each holds a lock on the step it runs (`steplock.py`,
`runner.py`). A finished *training* step whose config changed is an error (its dependents would silently
mix models); a changed evaluation simply runs again (the results store keeps the last row per cell).
Evaluation rows go to WORKDIR/results.jsonl, and the report printed at the end
(`xlt_jax.experiments.report`) is computed from that file only. The whole paper grid runs many such plans
at once: `xlt_jax.experiments.grid`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

import ml_collections

from xlt_jax import storage
from xlt_jax.experiments import validate
from xlt_jax.experiments.markers import (  # noqa: F401 - the protocol's public names
    DONE_FILE,
    NON_SEMANTIC_KEYS,
    check_runnable,
    config_dict,
    fingerprint,
    format_plan,
    plan_status,
    read_marker,
    write_marker,
)
from xlt_jax.experiments.plan import (  # noqa: F401
    ALL_TASKS,
    MODELS,
    RUNNABLE,
    TREE_SOURCES,
    Step,
    build_plan,
    check_plan,
    crosslingual_langs,
    describe_corpus,
    evaluation_split,
    experiment_seeds,
    experiment_tasks,
    model_names,
    offered_langs,
    parse_transform,
    skip_reason,
    split_list,
)
from xlt_jax.experiments.runner import (  # noqa: F401
    ProtocolFailed,
    ProtocolResult,
    compilation_cache,
    execute,
    failure,
    render_report,
    run_steps,
)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, dry_run: bool = False,
        out: Callable[[str], None] = print) -> ProtocolResult:
    """Print the plan, run the unfinished steps in order, then print the report (see module docstring)."""
    workdir = storage.workdir_path(workdir)
    plan = build_plan(config, workdir)
    seen = {step.name: read_marker(step) for step in plan if step.marker is not None}  # before the status
    status = plan_status(plan)
    header = (f"Protocol {config.lang}:{config.transform} tasks={config.tasks} seeds={config.seeds} "
              f"corpus={config.corpus} -> {workdir}" + (" (dry run)" if dry_run else ""))
    out(format_plan(plan, status, header=header))
    for step in plan:
        if step.kind == "skip":
            logging.warning("skipping %s: %s", step.name, step.note)
    check_runnable(plan, status)
    validate.check_plan_whole(plan)
    if dry_run:
        return ProtocolResult(plan, status, [], {}, "")
    executed, failed = run_steps(plan, status, seen, workdir, execute_step=execute, cache=config.compilation_cache,
                                 out=out)
    markdown = render_report(workdir)
    out(markdown or "No result rows yet.")
    if failed:
        raise failure(failed)
    return ProtocolResult(plan, status, executed, failed, markdown)


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
