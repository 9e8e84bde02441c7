"""The paper grid: which cells it plans, what it leaves out and why, resumption (fake steps) and the dry run's
cost estimate (a fake throughput measurement). No pretraining."""

from __future__ import annotations

import json
import pathlib
import runpy

import ml_collections
import pytest

from xlt_jax.errors import ConfigError
from xlt_jax.experiments import cost, grid, markers, protocol, validate

REPO = pathlib.Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "experiments" / "paper.py"


def paper_config(arg: str = "") -> ml_collections.ConfigDict:
    return runpy.run_path(str(PAPER))["get_config"](arg)


class FakeSteps:
    """Stands in for the runner's `execute`: records the steps it is given."""

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, step, results_dir):
        self.calls.append(step.name)
        return {"fake": True}


def test_default_grid_is_languages_x_transforms_x_variants_with_the_papers_syntax_directions(data_dir):
    cells = grid.grid_cells(paper_config())
    order_and_script = {"inv", "perm", "translit", "translit+inv", "translit+perm"}
    expected = set()
    for lang, target in (("en", "fr"), ("fr", "en"), ("hi", "en"), ("ar", "en")):
        specs = order_and_script | {f"syntax:{target}", f"translit+syntax:{target}"}
        expected |= {(lang, spec, "parallel") for spec in specs}
        expected |= {(lang, "translit", v) for v in ("nonparallel_same", "nonparallel_diff")}  # Table 8
    got = [(c.lang, c.transform, c.variant) for c in cells]
    assert len(got) == len(set(got)) == 36 and set(got) == expected
    assert [c.name for c in cells][:3] == ["en_inv_parallel", "en_perm_parallel", "en_syntax-fr_parallel"]
    only = grid.grid_cells(paper_config("langs=fr,transforms=inv/translit+syntax"))  # variants only for translit
    assert [c.name for c in only] == ["fr_inv_parallel", "fr_translit+syntax-en_parallel"]


@pytest.mark.parametrize("arg, key", [
    ("langs=en+xx", "langs"),
    ("transforms=inv/bogus", "transforms"),
    ("variants=parallel+nonparallel", "variants"),
    ("variant_transforms=translit+bogus", "variant_transforms"),
    ("langs=de,transforms=syntax", "syntax_target"),
])
def test_bad_grid_input_names_the_key(data_dir, arg, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        grid.grid_cells(paper_config(arg))


def test_cells_and_tasks_the_data_cannot_give_are_listed_with_the_reason(data_dir, tmp_path):
    """Hindi has no UD train trees (syntax cannot be made) and no POS training data; both are reported, and
    what remains passes the whole-plan validation."""
    config = paper_config("langs=hi,transforms=syntax/inv,variants=parallel,tasks=pos+ner,smoke,align=false")
    built = grid.build_grid(config, tmp_path)
    assert [c.name for c in built.cells] == ["hi_syntax-en_parallel", "hi_inv_parallel"]
    assert "treebank:hi: no UD train treebank" in built.unavailable["hi_syntax-en_parallel"]
    assert list(built.plans) == ["hi_inv_parallel"]
    (left_out,) = built.left_out["hi_inv_parallel"]
    assert left_out.startswith("pos: ") and "Hindi POS training data is missing" in left_out
    assert {s.task for s in built.plan if s.task} == {"ner"}
    assert validate.plan_problems(built.plan) == []
    printed = grid.format_grid(built, protocol.plan_status(built.plan))
    assert "hi_syntax-en_parallel: CANNOT RUN" in printed and "Tasks left out for missing data:" in printed
    assert "hi_inv_parallel: 8 todo; tasks ner (left out: pos)" in printed


def small_grid(arg: str = "") -> ml_collections.ConfigDict:
    config = paper_config("langs=en,transforms=inv/translit,variants=parallel+nonparallel_same,tasks=pos,smoke"
                          + (f",{arg}" if arg else ""))
    config.protocol.compilation_cache = ""  # an override of the template: every cell gets it
    return config


def test_a_second_invocation_skips_the_finished_cells(data_dir, tmp_path, monkeypatch):
    config = small_grid()
    first = FakeSteps()
    monkeypatch.setattr(grid, "execute", first)
    result = grid.run(config, tmp_path, out=lambda _: None)
    cells = ["en_inv_parallel", "en_translit_parallel", "en_translit_nonparallel_same"]
    assert sorted({name.split("/")[0] for name in first.calls}) == sorted(cells)
    assert result.executed == first.calls and len(first.calls) == 8 + 2 * 9  # translit cells also align
    for cell in cells:
        assert (tmp_path / "cells" / cell / "pretrain" / "bilingual" / "DONE.json").is_file()

    second = FakeSteps()
    monkeypatch.setattr(grid, "execute", second)
    printed: list[str] = []
    assert grid.run(config, tmp_path, out=printed.append).executed == [] and second.calls == []
    assert all(f"{cell}: done; tasks pos" in "\n".join(printed) for cell in cells)

    # A cell is a protocol run in its directory: the protocol sees the grid's markers as its own.
    overrides = grid.template_overrides(config)
    cell_config = grid.cell_config(config, grid.Cell("en", "translit", "nonparallel_same"), overrides)
    status = protocol.plan_status(protocol.build_plan(cell_config, tmp_path / "cells" / cells[2]))
    assert set(status.values()) <= {"done", "skip"}

    # A template override reaches every cell: changed fine-tuning steps make those steps stale.
    changed = small_grid()
    changed.protocol.finetune.pos.optimizer.learning_rate = 5e-4
    with pytest.raises(ConfigError, match="finished in .* under another config"):
        grid.run(changed, tmp_path, out=lambda _: None)


def test_dry_run_estimates_each_cell_from_a_measured_and_then_cached_throughput(data_dir, tmp_path):
    measured: list[int] = []

    def fake_measure(run_config, probe_batch):
        measured.append(cost.vocab_rows(run_config))
        return {"step_s": 0.5, "compile_s": 1.0, "flops_per_s": 1e9}

    config = small_grid()
    cache = tmp_path / "step_times.json"
    printed: list[str] = []
    throughputs = cost.Throughputs(cache, 1, measure_fn=fake_measure)
    grid.run(config, tmp_path / "grid", dry_run=True, out=printed.append, throughputs=throughputs)
    text = "\n".join(printed)
    assert not (tmp_path / "grid").exists()
    assert sorted(measured) == [1000, 2000]  # one step per distinct model: V rows (inv, monolingual) and 2V (translit)
    for cell in ("en_inv_parallel", "en_translit_parallel", "en_translit_nonparallel_same"):
        line = next(line for line in text.splitlines() if line.startswith(f"  {cell}:"))
        assert "; cost pretrain " in line and "finetune" in line and "evaluate" in line and "?" not in line
    assert text.count("measured now (0.5 s per step of 1 sequence(s), 1.0 GFLOP/s)") == 2
    assert len(json.loads(cache.read_text())) == 2

    # Smoke pretraining: 10 steps x 16 sequences of 64 tokens at 1 GFLOP/s.
    bilingual = grid.build_grid(config, tmp_path / "grid").plans["en_inv_parallel"][0]
    flops = 10 * 16 * cost.sequence_flops(bilingual.config, 1000, 64, head=True)
    seconds = cost.plan_seconds([bilingual], {bilingual.name: "todo"}, throughputs, config.cost.row_len)
    assert seconds["pretrain"] == pytest.approx(flops / 1e9)

    again: list[str] = []
    grid.run(config, tmp_path / "grid", dry_run=True, out=again.append,
             throughputs=cost.Throughputs(cache, 1, measure_fn=fake_measure))
    assert len(measured) == 2 and "\n".join(again).count(": cached ") == 2


def test_grouped_predictions_are_costed_per_group_and_their_model_is_measured(data_dir, tmp_path):
    from xlt_jax.data.pretrain import mlm
    from xlt_jax.models import flops_per_example

    bilingual = grid.build_grid(small_grid(), tmp_path).plans["en_inv_parallel"][0]
    run_config = bilingual.config
    run_config.data.max_predictions_per_seq = -1
    per_sequence = cost.sequence_flops(run_config, 1000, 64, head=True)
    run_config.data.mlm_group_size = 16
    grouped = cost.sequence_flops(run_config, 1000, 64, head=True)
    assert (mlm.auto_max_predictions(64, 0.15), mlm.auto_max_predictions(16 * 64, 0.15)) == (24, 208)
    assert per_sequence == pytest.approx(flops_per_example(run_config, 1000, 64, predicted=24))
    assert grouped == pytest.approx(flops_per_example(run_config, 1000, 64, predicted=208 / 16))
    # the one-sequence probe of a grouped model compiles and times (a group of 16 cannot be cut from 1 row)
    measured = cost.measure(run_config, 1)
    assert measured["flops_per_s"] > 0 and measured["step_s"] > 0


def test_identical_runs_are_shared_across_cells_and_evaluations_are_not(data_dir, tmp_path):
    """The replication grid's monolingual twin and its MZ fine-tunes are one run for every cell that pretrains on
    the same text; on the previous recipe's `lang:en` text, syntax cells (UD trees' sentences) get their own;
    every cell keeps its evaluations."""
    replicate = runpy.run_path(str(REPO / "configs" / "experiments" / "replicate.py"))["get_config"]
    config = replicate("transforms=translit/inv/syntax,tasks=pos,seeds=1,corpus=lang")
    built = grid.build_grid(config, tmp_path)
    names = [s.name for s in built.plan]
    assert len(names) == len(set(names))
    monos = [s for s in built.plan if s.name.endswith("pretrain/monolingual")]
    assert [s.name.split("/")[0] for s in monos] == ["en_translit_parallel", "en_syntax-fr_parallel"]
    assert built.shared["en_inv_parallel/pretrain/monolingual"] == "en_translit_parallel/pretrain/monolingual"
    inv = {s.name: s for s in built.plans["en_inv_parallel"]}
    assert "en_inv_parallel/finetune/pos/monolingual-original-s1" not in inv
    mz = inv["en_inv_parallel/evaluate/pos/MZ-s1"]
    first_mz = "en_translit_parallel/finetune/pos/monolingual-original-s1"
    assert mz.after == (first_mz,)
    assert mz.config.finetuned == str(tmp_path / "cells" / "en_translit_parallel" / "finetune" / "pos"
                                      / "monolingual-original-s1")
    assert mz.config.twin == "bilingual-en-inv" and mz.config.targets.endswith("en:inv")
    # The bilingual models and their fine-tunes are never shared (different derived languages).
    assert sum(s.name.endswith("pretrain/bilingual") for s in built.plan) == 3
    validate.check_plan_whole(built.plan)
    same_text = grid.build_grid(replicate("transforms=translit/inv/syntax,tasks=pos,seeds=1"), tmp_path / "treebank")
    assert [s.name for s in same_text.plan if s.name.endswith("pretrain/monolingual")] == [
        "en_translit_parallel/pretrain/monolingual"]  # the recipe now: every cell on the treebank text
    without = grid.build_grid(paper_config("langs=en,transforms=translit/inv,tasks=pos,variants=parallel"), tmp_path)
    assert not without.shared and sum(s.name.endswith("pretrain/monolingual") for s in without.plan) == 2


def test_a_preempted_grid_records_its_partial_time_and_the_readme_says_it_is_partial(data_dir, tmp_path,
                                                                                     monkeypatch):
    from xlt_jax.errors import Preempted
    from xlt_jax.experiments import readme

    class StopsOnFourth(FakeSteps):
        def __call__(self, step, results_dir):
            if len(self.calls) == 3:
                raise Preempted("SIGTERM")
            return super().__call__(step, results_dir)

    workdir = tmp_path / "replicate"
    monkeypatch.setattr(grid, "execute", StopsOnFourth())
    with pytest.raises(Preempted):
        grid.run(small_grid(), workdir, out=lambda _: None)
    record = json.loads((workdir / grid.RECORD_FILE).read_text())
    assert record["steps_done"] == 3 and record["steps"] > 3 and record["wall_s_total"] >= 0
    assert record["steps_run_last"] == 3  # counted from the markers: a preempted run has no list of its own
    (workdir / "report").mkdir(exist_ok=True)
    (workdir / "report" / "report.md").write_text("# Report\n\nrows\n")
    section = readme.replicate_section(tmp_path)
    assert f"Partial: 3 of {record['steps']} steps finished" in section

    monkeypatch.setattr(grid, "execute", FakeSteps())  # the rerun finishes: no longer partial
    grid.run(small_grid(), workdir, out=lambda _: None)
    rerun = json.loads((workdir / grid.RECORD_FILE).read_text())
    assert rerun["steps_done"] == record["steps"] and rerun["steps_run_last"] == record["steps"] - 3
    assert rerun["wall_s_total"] >= record["wall_s_total"]
    assert "Partial" not in readme.replicate_section(tmp_path)
    # where the time went, from the markers of every finished step, and in how many invocations
    assert (record["invocations"], rerun["invocations"]) == (1, 2)
    plan = grid.build_grid(small_grid(), workdir).plan
    kinds, done = rerun["step_seconds"], list(markers.plan_status(plan).values()).count("done")
    assert sum(k["steps"] for k in kinds.values()) == done and sum(k["steps"] for k in
                                                                    record["step_seconds"].values()) == 3
    assert kinds["pretrain"]["steps"] == sum(s.kind == "pretrain" for s in plan) and kinds["pretrain"]["seconds"] >= 0
    assert " 2 invocations (resumed). Step time: " in readme.replicate_section(tmp_path)
    grid.run(small_grid(), workdir, out=lambda _: None)  # nothing left to run: the record stays the runs'
    again = json.loads((workdir / grid.RECORD_FILE).read_text())
    assert again == rerun
    legacy = {k: v for k, v in rerun.items() if k not in ("invocations", "step_seconds")}
    (workdir / grid.RECORD_FILE).write_text(json.dumps(dict(legacy, wall_s_total=legacy["wall_s"])))
    grid.run(small_grid(), workdir, out=lambda _: None)  # a record from before counting: one invocation
    assert json.loads((workdir / grid.RECORD_FILE).read_text()) == dict(rerun, invocations=1,
                                                                       wall_s_total=rerun["wall_s"])
