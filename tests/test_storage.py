"""Workdirs anywhere: the same code on local paths and on `gs://`, the latter through a fake Cloud Storage
(`tests/gcs_fake.py`: etils' `mock_epath` plus Orbax's TensorStore spec, served from a temporary directory).

Every test runs from an empty current directory and checks that nothing lands there: a `gs://` URL that
went through `pathlib` becomes the relative directory `gs:/bucket/...`, the classic way such code fails.
"""

from __future__ import annotations

import json
import multiprocessing
import pathlib
import runpy

import numpy as np
import pytest
from gcs_fake import fake_gcs

from xlt_jax import result_objects, results, storage
from xlt_jax.errors import ConfigError
from xlt_jax.results import ResultRow

REPO = pathlib.Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def gcs(tmp_path, monkeypatch):
    """`gs://` served from tmp_path/gcs, run from an empty directory that must stay empty."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with fake_gcs(tmp_path / "gcs") as root:
        yield root
    assert list(cwd.iterdir()) == [], "a gs:// path was written as a local relative path"


def make_row(**overrides) -> ResultRow:
    fields = dict(model="m", task="pos", lang="en", train_transform="none", eval_transform="inv", setting="BZ",
                  metric="f1", value=50.0, n_examples=10, train_lang="en", commit=COMMIT,
                  time="2024-01-01T00:00:00+00:00")
    return ResultRow(**(fields | overrides))


# -- the path type ------------------------------------------------------------------------------------------


def test_workdir_path_makes_local_paths_absolute_and_keeps_gs_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.workdir_path("runs/a") == tmp_path.resolve() / "runs" / "a"
    assert str(storage.workdir_path("gs://bucket/xlt/run/")) == "gs://bucket/xlt/run"
    assert str(storage.workdir_path("gs://bucket/xlt") / "run" / "config.json") == "gs://bucket/xlt/run/config.json"
    assert storage.is_remote(storage.workdir_path("gs://b/r")) and not storage.is_remote(storage.workdir_path("r"))
    with pytest.raises(ConfigError, match="local path or a gs:// URL"):
        storage.workdir_path("s3://bucket/run")
    assert [str(p) for p in storage.ancestors(storage.workdir_path("gs://b/x/y/z"), 5)] == ["gs://b/x/y", "gs://b/x",
                                                                                           "gs://b"]


def test_fake_gcs_serves_gs_urls_from_its_directory(gcs):
    storage.atomic_write("gs://bucket/run/a/b.json", b"{}")  # no mkdir: GCS has no directories to create...
    assert (gcs / "bucket" / "run" / "a" / "b.json").read_bytes() == b"{}"
    assert [p.name for p in storage.workdir_path("gs://bucket/run/a").iterdir()] == ["b.json"]
    # ...and no rename to make a write atomic: the object is written once, under its final name.
    assert [p.name for p in (gcs / "bucket" / "run" / "a").iterdir()] == ["b.json"]


# -- results on object storage --------------------------------------------------------------------------------

WRITERS, BATCHES, BATCH = 4, 6, 3


def _gcs_writer(root: str, workdir: str, proc: int) -> None:
    with fake_gcs(pathlib.Path(root)):
        for b in range(BATCHES):
            results.append_rows(workdir, [make_row(extra={"proc": proc, "batch": b, "k": k}) for k in range(BATCH)])


def test_concurrent_writers_on_gs_each_write_their_own_objects_and_reads_merge_them(gcs):
    """Four processes append at once with no lock: every batch is an object of its own, no row is lost."""
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=_gcs_writer, args=(str(gcs), "gs://bucket/w", p)) for p in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    objects = sorted((gcs / "bucket" / "w" / result_objects.OBJECTS_DIR).iterdir())
    assert len(objects) == WRITERS * BATCHES and not (gcs / "bucket" / "w" / results.RESULTS_FILE).exists()
    assert all(len(o.read_text().splitlines()) == BATCH for o in objects)

    rows = results.read_rows("gs://bucket/w")
    assert results.read_rows("gs://bucket/w/results.jsonl") == rows  # the store's file name stands for it
    keys = [(r.extra["proc"], r.extra["batch"], r.extra["k"]) for r in rows]
    assert sorted(keys) == [(p, b, k) for p in range(WRITERS) for b in range(BATCHES) for k in range(BATCH)]
    for p in range(WRITERS):  # each writer's rows in its own order
        assert [key[1:] for key in keys if key[0] == p] == [(b, k) for b in range(BATCHES) for k in range(BATCH)]
    assert results.has_rows("gs://bucket/w") and not results.has_rows("gs://bucket/empty")


def test_merge_orders_by_time_and_keeps_a_duplicated_batch_once(gcs, tmp_path):
    late = [make_row(value=v, time="2024-01-02T00:00:00+00:00", extra={"i": i}) for i, v in enumerate((70, 71))]
    early = make_row(value=10.0, time="2024-01-01T00:00:00+00:00")
    first = results.append_rows("gs://bucket/w", late)  # written first, but its rows are newer
    results.append_rows("gs://bucket/w", [early])
    copy = first.parent / f"zz-copy{result_objects.SUFFIX}"  # the same batch stored twice (a retried upload)
    copy.write_bytes(first.read_bytes())
    assert [r.value for r in results.read_rows("gs://bucket/w")] == [10.0, 70.0, 71.0]

    # A local workdir holding both (a local results.jsonl and the objects fetched from gs://) merges alike.
    local = tmp_path / "local"
    results.append_rows(local, [make_row(value=20.0, time="2024-01-01T12:00:00+00:00")])
    (local / result_objects.OBJECTS_DIR).mkdir()
    for path in first.parent.iterdir():
        (local / result_objects.OBJECTS_DIR / path.name).write_bytes(path.read_bytes())
    assert [r.value for r in results.read_rows(local)] == [10.0, 20.0, 70.0, 71.0]
    assert results.read_rows(local / results.RESULTS_FILE) == results.read_rows(local)


# -- the binaries on gs:// ----------------------------------------------------------------------------------------


def smoke_config(cache_dir: pathlib.Path, steps: int):
    config = runpy.run_path(str(REPO / "configs" / "pretrain" / "bilingual.py"))["get_config"]("smoke")
    config.data.cache_dir = str(cache_dir)
    config.train.steps = steps
    config.train.eval_every = 0
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    config.train.max_to_keep = 1
    return config


def test_pretraining_into_gs_resumes_there_and_leaves_every_file_in_the_bucket(data_dir, gcs, tmp_path):
    from xlt_jax import export
    from xlt_jax.finetuning import pretrained
    from xlt_jax.training import loop, writers

    config = smoke_config(tmp_path / "shards", steps=4)
    first = loop.run(config, "gs://bucket/run", stop_after=3)  # "preempted" after step 3: checkpoint 2
    assert str(first.workdir) == "gs://bucket/run" and first.final_step == 3
    run = gcs / "bucket" / "run"
    assert (run / "checkpoints" / "2" / "commit_success.txt").is_file()  # Orbax's gs:// commit, not a rename
    assert (run / "tokenizer" / "spm.model").is_file() and json.loads((run / "config.json").read_text())
    assert sorted(writers.read_scalars("gs://bucket/run")["train/loss"]) == [1, 2, 3]  # events copied up

    second = loop.run(config, "gs://bucket/run")  # the same command again
    assert (second.start_step, [h["step"] for h in second.history]) == (2, [3, 4])
    np.testing.assert_allclose(second.history[0]["loss"], first.history[2]["loss"], rtol=1e-6)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["4"]  # max_to_keep=1 deleted step 2
    assert sorted(writers.read_scalars("gs://bucket/run")["train/loss"]) == [1, 2, 3, 4]
    assert len(list(run.glob("events.out.tfevents.*"))) == 2  # one event file per invocation, none clobbered

    (run / "checkpoints" / "6" / "state").mkdir(parents=True)  # a save in progress: no commit_success.txt yet
    pre = pretrained.load_pretrained("gs://bucket/run")
    assert (pre.step, str(pre.state_dir)) == (4, "gs://bucket/run/checkpoints/4/state") and pre.name == "run"

    out = export.export("gs://bucket/run", "gs://bucket/export")
    assert str(out) == "gs://bucket/export"
    record = json.loads((gcs / "bucket" / "export" / export.EXPORT_FILE).read_text())
    assert (record["source"], record["step"]) == ("gs://bucket/run", 4)
    assert (gcs / "bucket" / "export" / "checkpoints" / "4" / "state").is_dir()
    assert pretrained.load_pretrained("gs://bucket/export").step == 4  # the export reads back like a run


def test_protocol_on_gs_writes_markers_rows_and_report_there_and_a_rerun_skips_everything(data_dir, gcs,
                                                                                          monkeypatch):
    from test_protocol import fake_config

    from xlt_jax.experiments import protocol

    ran: list[str] = []

    def execute(step, results_dir):
        ran.append(step.name)
        if step.kind == "evaluate":
            results.append_rows(results_dir, [make_row(model=step.name, setting="", eval_transform="none")])
        return {"fake": True}

    monkeypatch.setattr(protocol, "execute", execute)
    result = protocol.run(fake_config(), "gs://bucket/proto", out=lambda _: None)
    runnable = [s.name for s in result.plan if s.kind in protocol.RUNNABLE]
    assert ran == result.executed == runnable
    root = gcs / "bucket" / "proto"
    for name in runnable:
        assert json.loads((root / name / "DONE.json").read_text())["step"] == name
    assert not list(root.rglob("*.lock")) and not list(root.rglob("*.tmp"))  # no flock, no rename on gs://
    evaluations = [s.name for s in result.plan if s.kind == "evaluate"]
    assert sorted(r.model for r in results.read_rows("gs://bucket/proto")) == sorted(evaluations)
    assert len(list((root / result_objects.OBJECTS_DIR).iterdir())) == len(evaluations)
    assert result.report and (root / "report" / "report.md").read_text() == result.report

    ran.clear()
    again = protocol.run(fake_config(), "gs://bucket/proto", out=lambda _: None)
    assert again.executed == ran == []
    assert again.status == {s.name: "done" if s.marker else s.kind for s in again.plan}
