"""The CPU replication recipe (configs/experiments/replicate.py) plans and validates whole, with its recipe
applied to every cell: the README's `make replicate` and `make demo` run exactly this."""

from __future__ import annotations

import pathlib
import runpy

from xlt_jax.experiments import grid, validate

REPLICATE = pathlib.Path(__file__).resolve().parents[1] / "configs" / "experiments" / "replicate.py"


def test_replicate_grid_validates_with_the_recipe_in_every_cell(data_dir, tmp_path):
    config = runpy.run_path(str(REPLICATE))["get_config"]()
    built = grid.build_grid(config, tmp_path, corpus=lambda c: c.corpus.source)
    validate.check_plan_whole(built.plan)
    # Constituents before their compositions (a partial run decides finding (b) for what it reached).
    assert list(built.plans) == ["en_translit_parallel", "en_inv_parallel", "en_translit+inv_parallel",
                                 "en_perm_parallel", "en_translit+perm_parallel", "en_syntax-fr_parallel",
                                 "en_translit+syntax-fr_parallel"]
    pretrain = [s for s in built.plan if s.kind == "pretrain"]
    finetune = [s for s in built.plan if s.kind == "finetune"]
    assert {s.config.model.dropout for s in pretrain} == {0.0}  # the plateau exit (README: fidelity)
    assert {s.config.optimizer.schedule for s in pretrain} == {"wsd"}
    assert {s.config.train.steps for s in pretrain if s.name.endswith("bilingual")} == {2400}
    assert {s.config.train.steps for s in pretrain if s.name.endswith("monolingual")} == {1000}
    assert {s.config.model.dropout for s in finetune} == {0.1}
    assert {s.config.seed for s in finetune} == {1, 2}
    assert {s.config.max_train_examples for s in finetune if s.task == "ner"} == {4000}
    assert {s.config.model.scan_layers for s in pretrain} == {False}  # two layers: unrolled is faster
    assert {(s.config.group_by_length, s.config.bucket) for s in finetune} == {(50, 16)}  # README: speed


def test_demo_is_the_first_cell_on_pos_with_one_seed(data_dir, tmp_path):
    config = runpy.run_path(str(REPLICATE))["get_config"]("demo")
    built = grid.build_grid(config, tmp_path, corpus=lambda c: c.corpus.source)
    validate.check_plan_whole(built.plan)
    assert list(built.plans) == ["en_translit_parallel"]
    assert {s.task for s in built.plan if s.kind == "finetune"} == {"pos"}
    assert {s.config.seed for s in built.plan if s.kind == "finetune"} == {1}
    assert [s.config.train.steps for s in built.plan if s.kind == "pretrain"] == [2400, 500]  # ~15 minutes


def test_every_model_pretrains_on_the_treebank_text_unless_told_otherwise(data_dir, tmp_path):
    config = runpy.run_path(str(REPLICATE))["get_config"]()
    built = grid.build_grid(config, tmp_path, corpus=lambda c: c.corpus.source)
    pretrain = [s for s in built.plan if s.kind == "pretrain"]
    assert {s.config.corpus.source for s in pretrain} == {"treebank:{lang}"}
    assert sum(s.name.endswith("pretrain/monolingual") for s in pretrain) == 1  # one twin serves every cell
    previous = runpy.run_path(str(REPLICATE))["get_config"]("transforms=translit,tasks=pos,corpus=lang")
    assert {s.config.corpus.source for s in grid.build_grid(previous, tmp_path / "lang").plan
            if s.kind == "pretrain"} == {"lang:{lang}"}  # fmt: skip
