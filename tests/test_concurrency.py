"""Concurrent writers and readers with real processes: results.jsonl and two protocol runners on one workdir.

`XLT_TEST_BREAK_FLOCK=1` turns `fcntl.flock` into a no-op in the worker processes, to watch these tests
fail without the locks (see README, "Reliability").
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pathlib
import random
import time
import warnings

from xlt_jax.results import ResultRow

WRITERS, ROWS = 4, 200
SPAWN = multiprocessing.get_context("spawn")


def _maybe_break_locks() -> None:
    if os.environ.get("XLT_TEST_BREAK_FLOCK") == "1":
        import fcntl

        fcntl.flock = lambda fd, op: None


def _row(proc: int, i: int, pad: int) -> ResultRow:
    return ResultRow(model="m", task="pos", lang="en", train_transform="none", eval_transform="inv", setting="BZ",
                     metric="f1", value=50.0, n_examples=1, commit="0" * 40, time="2024-01-01T00:00:00+00:00",
                     extra={"proc": proc, "i": i, "pad": "x" * pad})


def _writer(workdir: str, proc: int) -> None:
    """ROWS rows in batches of 1-3, each row 0.1-100 KB (several pages: a torn write would show), random sleeps."""
    from xlt_jax.results import append_rows

    _maybe_break_locks()
    rng, i = random.Random(proc), 0
    while i < ROWS:
        batch = [_row(proc, j, rng.choice((100, 5_000, 100_000))) for j in range(i, min(ROWS, i + rng.randint(1, 3)))]
        time.sleep(rng.uniform(0, 0.004))
        append_rows(workdir, batch)
        i += len(batch)


def _reader(workdir: str, report: str, stop) -> None:
    """Poll read_rows until `stop`: every read must parse whole rows only, and extend the previous read."""
    from xlt_jax.results import read_rows, results_path

    _maybe_break_locks()
    warnings.simplefilter("error")  # a skipped torn last row (TruncatedRowWarning) is a failure here
    polls, seen, problems = 0, [], []
    while True:
        last = stop.is_set()  # one more read after the writers are done
        if results_path(workdir).exists():
            polls += 1
            try:
                keys = [(r.extra["proc"], r.extra["i"]) for r in read_rows(workdir)]
            except Exception as e:  # noqa: BLE001 - any failure to read is what this reader reports
                problems.append(f"read {polls}: {type(e).__name__}: {e}"[:300])
                keys = seen
            if keys[: len(seen)] != seen:
                problems.append(f"read {polls} does not extend the previous one")
            seen = keys
        if last:
            break
    pathlib.Path(report).write_text(json.dumps({"polls": polls, "rows": len(seen), "problems": problems}))


def test_concurrent_writers_lose_and_duplicate_nothing_and_readers_see_whole_rows(tmp_path):
    from xlt_jax.results import read_rows

    stop = SPAWN.Event()
    reader = SPAWN.Process(target=_reader, args=(str(tmp_path), str(tmp_path / "reader.json"), stop))
    writers = [SPAWN.Process(target=_writer, args=(str(tmp_path), p)) for p in range(WRITERS)]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=150)
    stop.set()
    reader.join(timeout=60)
    assert [w.exitcode for w in writers] == [0] * WRITERS and reader.exitcode == 0

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = read_rows(tmp_path)
    keys = [(r.extra["proc"], r.extra["i"]) for r in rows]
    assert sorted(keys) == [(p, i) for p in range(WRITERS) for i in range(ROWS)]  # nothing lost or doubled
    for p in range(WRITERS):
        assert [i for q, i in keys if q == p] == list(range(ROWS))  # each writer's rows in its order
    seen = json.loads((tmp_path / "reader.json").read_text())
    assert seen["problems"] == [] and seen["polls"] > 0


# ------------------------------------------------------------------------------------------------------
# Two protocol runners on one workdir


def _fake_execute(log: pathlib.Path):
    """Stands in for `protocol.execute` (the runner's locking is the real code): logs start and end."""

    def execute(step, workdir):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} start {step.name}\n")
        time.sleep(random.uniform(0.02, 0.08))
        with open(log, "a") as f:
            f.write(f"{os.getpid()} end {step.name}\n")
        return {"pid": os.getpid()}

    return execute


def _protocol_runner(workdir: str, log: str, barrier, report: str) -> None:
    from test_protocol import fake_config

    from xlt_jax.experiments import protocol

    _maybe_break_locks()
    protocol.execute = _fake_execute(pathlib.Path(log))
    config = fake_config()
    plan = protocol.build_plan(config, workdir)  # the slow part (reads the corpus): before both start
    protocol.build_plan = lambda config, workdir: plan
    barrier.wait(timeout=120)
    result = protocol.run(config, workdir, out=lambda _: None)
    pathlib.Path(report).write_text(json.dumps(result.executed))


def test_two_protocol_runners_on_one_workdir_run_each_step_once(data_dir, tmp_path):
    from test_protocol import fake_config

    from xlt_jax.experiments import protocol

    workdir, log = tmp_path / "protocol", tmp_path / "steps.log"
    barrier = SPAWN.Barrier(2)
    runners = [SPAWN.Process(target=_protocol_runner, args=(str(workdir), str(log), barrier, str(tmp_path / f"r{k}")))
               for k in range(2)]
    for r in runners:
        r.start()
    for r in runners:
        r.join(timeout=240)
    assert [r.exitcode for r in runners] == [0, 0]

    plan = protocol.build_plan(fake_config(), workdir)
    runnable = [s.name for s in plan if s.kind in protocol.RUNNABLE]
    events = [line.split(" ", 2) for line in log.read_text().splitlines()]
    starts = [name for _, what, name in events if what == "start"]
    assert sorted(starts) == sorted(runnable)  # every step ran, none twice
    done_at = {name: i for i, (_, what, name) in enumerate(events) if what == "end"}
    start_at = {name: i for i, (_, what, name) in enumerate(events) if what == "start"}
    for step in plan:  # and only after the steps it reads had finished
        assert all(done_at[d] < start_at[step.name] for d in step.after if d in done_at)
    executed = [json.loads((tmp_path / f"r{k}").read_text()) for k in range(2)]
    assert sorted(executed[0] + executed[1]) == sorted(runnable)
    for step in plan:
        if step.marker is not None:
            marker = json.loads(step.marker.read_text())
            assert marker["fingerprint"] == protocol.fingerprint(step)
            assert marker["summary"]["pid"] == next(int(pid) for pid, what, name in events
                                                    if what == "end" and name == step.name)
    assert not list(workdir.rglob(".DONE.json.*.tmp"))
    assert protocol.plan_status(plan) == {s.name: "done" if s.marker else s.kind for s in plan}
