"""Time left in a plan of runs, from the durations of the steps already done.

A pretraining step costs about its train steps × the mean seconds per train step so far, a fine-tuning or
evaluation step about the mean of its kind; a kind not yet seen has no estimate (said so, not guessed). A
resumed plan starts from the durations its earlier invocations recorded in the steps' markers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


def _work(step: Any) -> float:
    """Relative size of a step within its kind (train steps for pretraining, 1 otherwise)."""
    if step.kind == "pretrain" and step.config is not None:
        return float(step.config.train.steps)
    return 1.0


@dataclasses.dataclass
class PlanClock:
    """Feed it each finished step; `remaining` estimates the rest of `todo`."""

    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # per kind: summed wall seconds
    work: dict[str, float] = dataclasses.field(default_factory=dict)  # per kind: summed `_work`

    @property
    def seconds_per_unit(self) -> dict[str, float]:
        return {kind: self.seconds[kind] / max(self.work[kind], 1.0) for kind in self.seconds}

    def finished(self, step: Any, seconds: float) -> None:
        self.seconds[step.kind] = self.seconds.get(step.kind, 0.0) + float(seconds)
        self.work[step.kind] = self.work.get(step.kind, 0.0) + _work(step)

    def remaining(self, todo: Sequence[Any]) -> tuple[float, list[str]]:
        """(estimated seconds for the steps in `todo`, kinds that have no estimate yet)."""
        total, unknown = 0.0, []
        for step in todo:
            rate = self.seconds_per_unit.get(step.kind)
            if rate is None:
                unknown.append(step.kind)
            else:
                total += rate * _work(step)
        return total, sorted(set(unknown))

    def describe(self, todo: Sequence[Any]) -> str:
        seconds, unknown = self.remaining(todo)
        if not todo:
            return "nothing left"
        text = f"ETA {_clock(seconds)} for {len(todo)} step(s)"
        return text + (f" (+ the {', '.join(unknown)} steps, not yet timed)" if unknown else "")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"
