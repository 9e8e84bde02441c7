"""The results store: append-only JSONL under a lock, crash tolerance, validation, commit, selection.

Metric values in these rows are made up: they exercise bookkeeping and Δ arithmetic, not a corpus.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import pathlib
import subprocess
import warnings

import pytest

from xlt_jax import results
from xlt_jax.errors import DataFormatError
from xlt_jax.results import ResultRow, TruncatedRowWarning, append_rows, read_rows

COMMIT = "0" * 40


def make_row(**overrides) -> ResultRow:
    fields = dict(model="roberta8-en+inv", task="pos", lang="en", train_transform="none", eval_transform="inv",
                  setting="BZ", metric="f1", value=50.0, n_examples=100, train_lang="en", commit=COMMIT,
                  time="2024-01-01T00:00:00+00:00")
    fields.update(overrides)
    return ResultRow(**fields)


def numbered_rows(n: int, **overrides) -> list[ResultRow]:
    return [make_row(extra={"i": i}, **overrides) for i in range(n)]


# ------------------------------------------------------------------------------------------------------
# Appending and reading


def test_rows_round_trip_with_all_fields(tmp_path):
    rows = [make_row(extra={"note": "ünïcode", "nested": {"a": [1, 2]}}, seed=3, checkpoint="ckpt/7", split="test"),
            make_row(setting="", eval_transform="none", lang="fr", metric="token_accuracy", value=100)]
    path = append_rows(tmp_path, rows)
    assert path == tmp_path / "results.jsonl"
    assert read_rows(path) == rows
    assert read_rows(tmp_path) == rows  # a workdir is accepted as well
    first = json.loads(path.read_text("utf-8").splitlines()[0])
    assert list(first)[:9] == ["model", "task", "lang", "train_transform", "eval_transform", "setting", "metric",
                               "value", "n_examples"]


def test_append_never_rewrites_existing_bytes(tmp_path):
    path = append_rows(tmp_path, numbered_rows(3))
    before = path.read_bytes()
    append_rows(tmp_path, numbered_rows(2, task="ner"))
    after = path.read_bytes()
    assert after.startswith(before)
    added = after[len(before):].decode("utf-8").splitlines()
    assert [json.loads(line)["task"] for line in added] == ["ner", "ner"]
    assert [r.extra["i"] for r in read_rows(path)] == [0, 1, 2, 0, 1]


def test_empty_batch_writes_nothing(tmp_path):
    append_rows(tmp_path, [])
    assert not (tmp_path / "results.jsonl").exists()


PROCESSES, BATCHES, BATCH = 4, 25, 2  # 4 processes x 50 rows


def _append_worker(workdir: str, proc: int) -> None:
    padding = "x" * 8192  # rows larger than a pipe buffer or a page, so a torn write would show
    for b in range(BATCHES):
        rows = [make_row(extra={"proc": proc, "batch": b, "k": k, "pad": padding}) for k in range(BATCH)]
        append_rows(workdir, rows)


def test_concurrent_appends_from_processes_keep_every_row_whole(tmp_path):
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_append_worker, args=(str(tmp_path), p)) for p in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    lines = (tmp_path / "results.jsonl").read_bytes().split(b"\n")
    assert lines.pop() == b""
    rows = read_rows(tmp_path / "results.jsonl")
    assert len(rows) == len(lines) == PROCESSES * BATCHES * BATCH
    keys = [(r.extra["proc"], r.extra["batch"], r.extra["k"]) for r in rows]
    assert sorted(keys) == [(p, b, k) for p in range(PROCESSES) for b in range(BATCHES) for k in range(BATCH)]
    for p in range(PROCESSES):  # each writer's rows in its own order
        assert [key[1:] for key in keys if key[0] == p] == [(b, k) for b in range(BATCHES) for k in range(BATCH)]
    for i in range(0, len(keys), BATCH):  # a batch is contiguous: no other writer in between
        assert {key[:2] for key in keys[i:i + BATCH]} == {keys[i][:2]}
        assert [key[2] for key in keys[i:i + BATCH]] == list(range(BATCH))


def _truncate_mid_last_line(path: pathlib.Path) -> bytes:
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: start + 25])
    return data[:start]


def test_truncated_last_line_is_skipped_with_warning_and_removed_by_next_append(tmp_path):
    path = append_rows(tmp_path, numbered_rows(3))
    complete = _truncate_mid_last_line(path)
    with pytest.warns(TruncatedRowWarning, match=rf"{path}:3: "):
        rows = read_rows(path)
    assert [r.extra["i"] for r in rows] == [0, 1]

    with pytest.warns(TruncatedRowWarning, match=rf"{path}:3: removing an incomplete row"):
        append_rows(tmp_path, [make_row(extra={"i": 9})])
    assert path.read_bytes().startswith(complete)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.extra["i"] for r in read_rows(path)] == [0, 1, 9]


def test_complete_row_missing_only_its_newline_is_kept(tmp_path):
    path = append_rows(tmp_path, numbered_rows(2))
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_rows(path)) == 2
        append_rows(tmp_path, numbered_rows(1))
        assert [r.extra["i"] for r in read_rows(path)] == [0, 1, 0]


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (b'{"model": "m", "task": ', "invalid JSON"),
        (b"\xff\xfe garbage", "undecodable bytes"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_corrupt_middle_line_names_file_and_line(tmp_path, replace, message):
    path = append_rows(tmp_path, numbered_rows(4))
    lines = path.read_bytes().split(b"\n")
    lines[2] = replace
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataFormatError, match=message) as info:
        read_rows(path)
    assert info.value.line == 3 and info.value.path == str(path)
    assert f"{path}:3:" in str(info.value)


def test_complete_but_invalid_last_line_is_an_error_not_a_truncation(tmp_path):
    path = append_rows(tmp_path, numbered_rows(2))
    record = json.loads(path.read_text().splitlines()[-1])
    record["value"] = 140.0
    path.write_text(path.read_text() + json.dumps(record) + "\n")
    with pytest.raises(DataFormatError, match=r":3: invalid row: value: must be a percentage"):
        read_rows(path)


def test_missing_or_unknown_fields_in_file_are_named(tmp_path):
    path = append_rows(tmp_path, numbered_rows(1))
    record = json.loads(path.read_text())
    del record["commit"]
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(DataFormatError, match=r":1: invalid row: commit: missing field"):
        read_rows(path)
    record["commit"], record["colour"] = COMMIT, "red"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(DataFormatError, match=r":1: invalid row: colour: unknown field"):
        read_rows(path)


def test_missing_results_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataFormatError, match="results.jsonl: results file does not exist"):
        read_rows(tmp_path)


# ------------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"value": 100.5}, "value"),
        ({"value": -1}, "value"),
        ({"value": float("nan")}, "value"),
        ({"value": "50"}, "value"),
        ({"value": True}, "value"),
        ({"setting": "ZS"}, "setting"),
        ({"model": ""}, "model"),
        ({"task": "  "}, "task"),
        ({"lang": None}, "lang"),
        ({"metric": ""}, "metric"),
        ({"train_transform": ""}, "train_transform"),
        ({"eval_transform": ""}, "eval_transform"),
        ({"split": ""}, "split"),
        ({"commit": ""}, "commit"),
        ({"time": "yesterday"}, "time"),
        ({"n_examples": 0}, "n_examples"),
        ({"n_examples": 3.0}, "n_examples"),
        ({"seed": "1"}, "seed"),
        ({"extra": {"x": object()}}, "extra"),
        ({"extra": {"x": float("inf")}}, "extra"),
        ({"setting": "BS", "train_transform": "none", "eval_transform": "inv"}, "train_transform"),
        ({"setting": "MZ", "train_transform": "inv", "eval_transform": "inv"}, "setting"),
        ({"corpus": None}, "corpus"),
        ({"twin": 3}, "twin"),
        ({"setting": "BZ", "twin": "bi-en-inv"}, "twin"),  # a bilingual row is its own model
    ],
)
def test_validation_names_the_field_and_writes_nothing(tmp_path, overrides, field):
    bad = make_row(**overrides)
    with pytest.raises(ValueError, match=rf"row 1: {field}: "):
        append_rows(tmp_path, [make_row(), bad])
    assert not (tmp_path / "results.jsonl").exists()


def test_rows_written_before_corpus_and_twin_existed_still_load(tmp_path):
    old = make_row(setting="MZ", model="mono-en")
    record = {k: v for k, v in dataclasses.asdict(old).items() if k not in ("corpus", "twin")}
    (tmp_path / "results.jsonl").write_text(json.dumps(record) + "\n", "utf-8")
    (row,) = read_rows(tmp_path)
    assert row == old and (row.corpus, row.twin) == ("", "")


def test_valid_settings_pass():
    make_row(setting="MZ", model="mono-en", twin="bi-en-inv", corpus="parallel").validate()
    make_row(setting="BS", train_transform="inv", eval_transform="inv").validate()
    make_row(setting="BZ", train_lang="en", lang="fr", eval_transform="none").validate()  # natural-language pair
    make_row(setting="MZ", task="tatoeba", train_lang="", metric="accuracy").validate()  # no fine-tuning
    make_row(setting="", eval_transform="none").validate()


def test_defaults_fill_time_and_commit():
    row = ResultRow("m", "nli", "en", "none", "none", "", "accuracy", 33.3, 10)
    row.validate()
    assert row.commit == results.code_commit() and row.split == "dev" and row.extra == {}


# ------------------------------------------------------------------------------------------------------
# Commit detection


def _git(repo: pathlib.Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main", *args]
    return subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _fresh_commit(directory: pathlib.Path) -> str:
    results._git_commit.cache_clear()
    return results.code_commit(directory)


def test_commit_detection_clean_dirty_and_unknown(tmp_path, monkeypatch):
    monkeypatch.delenv(results.COMMIT_ENV, raising=False)
    repo, pkg = tmp_path / "repo", tmp_path / "repo" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "mod.py").write_text("x = 1\n")
    (repo / "README").write_text("r\n")
    assert _fresh_commit(pkg) == "unknown"  # not a git checkout
    _git(repo, "init", "-q")
    assert _fresh_commit(pkg) == "unknown"  # no commit yet
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "c")
    sha = _git(repo, "rev-parse", "HEAD")
    assert _fresh_commit(pkg) == sha

    (repo / "README").write_text("changed\n")  # tracked change outside the package
    assert _fresh_commit(pkg) == f"{sha}-dirty"
    _git(repo, "checkout", "-q", "--", "README")
    (repo / "notes.txt").write_text("untracked outside the package does not count\n")
    assert _fresh_commit(pkg) == sha
    (pkg / "new_module.py").write_text("y = 2\n")  # untracked code inside the package does
    assert _fresh_commit(pkg) == f"{sha}-dirty"

    untracked_copy = repo / "copy"
    untracked_copy.mkdir()
    (untracked_copy / "mod.py").write_text("x = 1\n")
    _git(repo, "add", "pkg")
    _git(repo, "commit", "-q", "-m", "d")
    assert _fresh_commit(untracked_copy) == "unknown"  # a copy inside another repository is not its HEAD
    assert _fresh_commit(tmp_path / "does-not-exist") == "unknown"

    monkeypatch.setenv(results.COMMIT_ENV, "abc123")
    assert results.code_commit(pkg) == "abc123"


def test_package_commit_matches_its_checkout(monkeypatch):
    monkeypatch.delenv(results.COMMIT_ENV, raising=False)
    package = pathlib.Path(results.__file__).parent
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True)
    commit = _fresh_commit(package)
    tracked = subprocess.run(["git", "ls-files", "--", "."], cwd=package, capture_output=True, text=True).stdout
    if done.returncode == 0 and tracked.strip():
        assert commit in (done.stdout.strip(), done.stdout.strip() + "-dirty")
    else:
        assert commit == "unknown"


# ------------------------------------------------------------------------------------------------------
# Selecting (the tables built from rows: tests/test_tables.py)


def test_select_rows_by_field_and_extra():
    rows = [make_row(extra={"run": 1}), make_row(extra={"run": 2}, model="other")]
    assert results.select_rows(rows, extra__run=2) == [rows[1]]
    assert results.select_rows(rows, model="roberta8-en+inv") == [rows[0]]
    assert dataclasses.replace(rows[0], value=1.0) != rows[0]
