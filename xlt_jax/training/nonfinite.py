"""What a NaN/Inf training loss or gradient norm does: `train.nonfinite_policy` = "stop" | "skip".

- stop (default): the run ends with `TrainingDiverged` naming the step and metric before that state can be
  checkpointed, so the last checkpoint on disk is a good one.
- skip: the jitted step already left parameters and optimizer slots unchanged for that batch
  (`steps.make_train_step(skip_nonfinite=True)`); here the skip is logged and counted, and
  `train.max_consecutive_skips` skips in a row (a state that no longer trains) still stop the run.

The host sees each step's metrics one step late, which changes nothing: the skip decision is made on the
devices, and a stop only has to come before the next checkpoint (the loop reads the metrics first).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

import ml_collections
import numpy as np

from xlt_jax.errors import ConfigError, TrainingDiverged

POLICIES = ("stop", "skip")


def check_config(train: ml_collections.ConfigDict) -> None:
    """Refuse an unknown policy or a negative limit before any compute."""
    if train.nonfinite_policy not in POLICIES:
        raise ConfigError(f"train.nonfinite_policy={train.nonfinite_policy!r}; expected one of {POLICIES}")
    if int(train.max_consecutive_skips) < 0:
        raise ConfigError(f"train.max_consecutive_skips={train.max_consecutive_skips} must be >= 0")


class NonfiniteGuard:
    """Applies the policy to each step's host metrics, in step order."""

    def __init__(self, train: ml_collections.ConfigDict, last_checkpoint: Callable[[], str]):
        check_config(train)
        self.skip = train.nonfinite_policy == "skip"
        self.max_skips = int(train.max_consecutive_skips)
        self.in_a_row = 0
        self._last_checkpoint = last_checkpoint  # "the last good checkpoint is ..." (waits for pending saves)

    def check(self, step: int, metrics: Mapping[str, np.ndarray]) -> bool:
        """True if the step's update was applied, False if it was skipped; raises when the run must stop."""
        values = {name: float(metrics[name]) for name in ("loss", "grad_norm")}
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if not bad:
            self.in_a_row = 0
            return True
        shown = ", ".join(f"{name}={value}" for name, value in values.items())
        if self.skip:
            self.in_a_row += 1
            if self.in_a_row <= self.max_skips:
                logging.warning("non-finite %s at step %d (%s): update skipped (%d in a row, limit %d)",
                                "/".join(bad), step, shown, self.in_a_row, self.max_skips)
                return False
            why = f"{self.in_a_row} consecutive non-finite steps exceed train.max_consecutive_skips={self.max_skips}"
        else:
            why = "train.nonfinite_policy=stop"
        raise TrainingDiverged(
            f"non-finite training loss at step {step} ({'/'.join(bad)} not finite: {shown}; {why}); stopping "
            f"without saving this state; {self._last_checkpoint()}. Lower optimizer.learning_rate or raise "
            "optimizer.warmup_steps."
        )
