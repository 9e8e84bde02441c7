"""The plan clock: remaining time from the steps timed so far (mean per kind), scaled by pretraining length."""

from __future__ import annotations

import ml_collections

from xlt_jax.experiments.eta import PlanClock
from xlt_jax.experiments.protocol import Step


def pretrain(name: str, steps: int) -> Step:
    return Step(name, "pretrain", config=ml_collections.ConfigDict({"train": {"steps": steps}}))


def test_remaining_time_scales_pretraining_by_its_steps_and_names_untimed_kinds():
    clock = PlanClock()
    clock.finished(pretrain("pretrain/bilingual", 2000), seconds=400.0)  # 0.2 s per train step
    todo = [pretrain("pretrain/monolingual", 500), Step("finetune/pos/a", "finetune"), Step("evaluate/a", "evaluate")]
    seconds, unknown = clock.remaining(todo)
    assert seconds == 100.0 and unknown == ["evaluate", "finetune"]
    clock.finished(Step("finetune/pos/b", "finetune"), seconds=30.0)
    clock.finished(Step("evaluate/b", "evaluate"), seconds=5.0)
    assert clock.remaining(todo) == (135.0, [])
    assert clock.describe(todo) == "ETA 0:02:15 for 3 step(s)"
    assert "not yet timed" in PlanClock().describe(todo)


def test_the_estimate_is_the_mean_of_each_kind_weighted_by_pretraining_length():
    clock = PlanClock()
    clock.finished(pretrain("pretrain/a", 1000), seconds=100.0)  # 0.1 s per train step
    clock.finished(pretrain("pretrain/b", 3000), seconds=500.0)  # 0.167 s: together 600 s / 4000 = 0.15
    clock.finished(Step("finetune/a", "finetune"), seconds=10.0)
    clock.finished(Step("finetune/b", "finetune"), seconds=30.0)
    todo = [pretrain("pretrain/c", 2000), Step("finetune/c", "finetune")]
    assert clock.remaining(todo) == (2000 * 0.15 + 20.0, [])
