"""Running a plan: the unfinished steps in order, each under its lock, each ending with its DONE.json.

Shared by the protocol (one experiment) and the grid (many experiments in one plan). A step that fails with
an `XltError` (bad data or config, a diverged run) blocks only the steps that need it; the others run, and a
rerun resumes from the failed ones. Several runners may share a workdir: each holds a lock on the step it
runs (`steplock.py`), so a step runs once and the others wait for it. Evaluation and alignment rows go to
`results_dir/results.jsonl`.

Interruptions: a killed evaluation whose rows reached results.jsonl before its DONE.json did is not run
again; its rows (tagged with the step and its fingerprint) are adopted, so no row is written twice. SIGTERM
stops the runner at the next step boundary (a training step saves its checkpoint first) with exit status 0.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

from etils import epath

from xlt_jax import results, storage
from xlt_jax.errors import ConfigError, Preempted, XltError
from xlt_jax.experiments import eta, markers, steplock
from xlt_jax.experiments.plan import Step

Execute = Callable[[Step, epath.Path], dict]


@dataclasses.dataclass
class ProtocolResult:
    plan: list[Step]
    status: dict[str, str]  # before this invocation ran anything
    executed: list[str]  # steps this invocation ran, in order (not those another runner finished meanwhile)
    failed: dict[str, str]  # step -> error (the steps after a failed one are not run)
    report: str  # the markdown report from results.jsonl ("" when there are no rows)


class ProtocolFailed(XltError, RuntimeError):
    """Some steps failed; the others ran, and a rerun resumes from the failed ones."""


def execute(step: Step, results_dir: epath.Path) -> dict:
    """Run one step; returns the summary stored in its marker."""
    if step.kind == "pretrain":
        from xlt_jax.training import loop

        result = loop.run(step.config, step.workdir)
        summary = {"start_step": result.start_step, "final_step": result.final_step}
        if result.evals:  # the held-out MLM loss at the end: did the model leave the plateau (README: fidelity)?
            summary["eval"] = {k: round(float(v), 4) for k, v in result.evals[-1].items()}
        return summary
    if step.kind == "finetune":
        from xlt_jax.finetuning import trainer

        result = trainer.run(step.config, step.workdir)
        return {"start_step": result.start_step, "final_step": result.final_step}
    if step.kind == "evaluate":
        from xlt_jax.finetuning import evaluation

        tags = evaluation_tags(step)
        rows = appended_rows(results_dir, tags)
        if rows:
            logging.warning("%s: its %d rows are already in %s (the run stopped before DONE.json); not evaluating "
                            "again", step.name, len(rows), results.results_path(results_dir))
        else:
            rows = evaluation.run(step.config, results_dir, row_tags=tags)
        return {"rows": _row_summary(rows)}
    if step.kind == "align":
        from xlt_jax.analysis import runner as align_runner

        return {"rows": _row_summary(align_runner.run(step.config, results_dir))}
    raise ConfigError(f"{step.name}: kind {step.kind!r} is not runnable")


def evaluation_tags(step: Step) -> dict[str, str]:
    """What an evaluation step writes into its rows' `extra`: which step, config and code wrote them."""
    return {"protocol_step": step.name, "protocol_fingerprint": markers.fingerprint(step),
            "protocol_commit": results.code_commit()}


def appended_rows(results_dir: epath.Path, tags: dict[str, str]) -> list[results.ResultRow]:
    """The rows an earlier, interrupted attempt of the same step appended, if all of them are there.

    One attempt appends its rows with one locked write, and each row says how many it wrote with it
    (`extra.rows_in_batch`), so a complete batch is recognisable.
    """
    if not results.has_rows(results_dir):
        return []
    mine = [r for r in results.read_rows(results_dir) if all(r.extra.get(k) == v for k, v in tags.items())]
    if mine and len(mine) == mine[-1].extra.get("rows_in_batch"):
        return mine
    return []


def _row_summary(rows: Sequence[results.ResultRow]) -> list[dict]:
    return [dict(lang=r.lang, eval_transform=r.eval_transform, setting=r.setting, metric=r.metric,
                 value=round(r.value, 4), n_examples=r.n_examples) for r in rows]


def compilation_cache(setting: str, workdir: epath.Path):
    """The persistent compile cache: same-shaped models compile once; "auto" = WORKDIR/jax_cache, or the
    machine's default cache for a `gs://` workdir (a per-machine speed-up, not worth a round trip per entry)."""
    from xlt_jax.training.compile_cache import persistent_cache

    return persistent_cache(setting, None if storage.is_remote(workdir) else workdir / "jax_cache")


def run_steps(plan: Sequence[Step], status: dict[str, str], seen: dict[str, dict | None], results_dir: epath.Path,
              *, execute_step: Execute, cache: str, out: Callable[[str], None]) -> tuple[list[str], dict[str, str]]:
    """Run the `todo`/`stale` steps of `plan` in order; (executed step names, failed step -> error).

    `seen` holds each step's marker as read before `status` was computed, so a step another runner finished
    meanwhile is recognised and skipped.
    """
    import jax

    results_dir.mkdir(parents=True, exist_ok=True)
    executed: list[str] = []
    failed: dict[str, str] = {}
    blocked: set[str] = set()
    clock = eta.PlanClock()
    for step in plan:  # durations recorded by earlier invocations
        if status[step.name] == "done" and isinstance((seen.get(step.name) or {}).get("seconds"), int | float):
            clock.finished(step, seen[step.name]["seconds"])
    todo = [s for s in plan if status[s.name] in ("todo", "stale")]
    if todo and clock.seconds:
        out(f"{len(todo)} step(s) to run; {clock.describe(todo)} (from the steps done before)")
    lock = jax.process_count() == 1  # several runners on one workdir: each step runs once (steplock.py)
    from xlt_jax.training import preemption

    with preemption.watch(), compilation_cache(cache, results_dir):
        for i, step in enumerate(plan, start=1):
            if status[step.name] not in ("todo", "stale"):
                continue
            if preemption.requested():  # SIGTERM during an evaluation (no checkpoint to save): stop here
                raise Preempted(f"preempted: stopped before {step.name}; rerun the same command to resume")
            if any(d in blocked for d in step.after):
                blocked.add(step.name)
                logging.warning("not running %s: it needs %s, which failed", step.name, ", ".join(step.after))
                continue
            with steplock.step_lock(step.marker, enabled=lock):
                if steplock.finished_meanwhile(seen.get(step.name), markers.read_marker(step),
                                               markers.fingerprint(step)):
                    out(f"[{i}/{len(plan)}] {step.name}: finished by another runner")
                    continue
                out(f"[{i}/{len(plan)}] {step.name}: {step.note}")
                t0 = time.perf_counter()
                try:
                    summary = execute_step(step, results_dir)
                except XltError as e:  # bad data/config or a diverged run: other tasks go on
                    logging.error("%s failed: %s: %s", step.name, type(e).__name__, e)
                    failed[step.name] = f"{type(e).__name__}: {e}"
                    blocked.add(step.name)
                    continue
                seconds = time.perf_counter() - t0
                markers.write_marker(step, summary, seconds)
            executed.append(step.name)
            clock.finished(step, seconds)
            todo = [s for s in plan[i:] if status[s.name] in ("todo", "stale") and s.name not in blocked]
            out(f"[{i}/{len(plan)}] {step.name}: done in {seconds:.1f} s; {clock.describe(todo)}")
    return executed, failed


def failure(failed: dict[str, str]) -> ProtocolFailed:
    listed = "; ".join(f"{name}: {err}" for name, err in failed.items())
    return ProtocolFailed(f"failed steps (rerun the same command to resume): {listed}")


def render_report(workdir: epath.Path) -> str:
    from xlt_jax.experiments import report

    if not results.has_rows(workdir):
        return ""
    return report.run(workdir)
