"""Training metrics on the host: per-step metric sums between two log points turned into scalars (loss,
accuracy overall and per language, skipped steps, input wait), and the progress line with its ETA.

Shared by the pretraining and fine-tuning loops; the jitted steps return SUMS, so means over steps,
microbatches and hosts are exact.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np


class IntervalMeter:
    """Sums of per-step metric sums between two log points, turned into means and accuracies."""

    def __init__(self, lang_names: list[str]):
        self.lang_names = lang_names
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, np.ndarray] = {}
        self.count = 0
        self.skipped = 0  # steps whose non-finite update was skipped (not in the means)
        self.last: dict[str, float] = {}

    def add(self, metrics: Mapping[str, np.ndarray]) -> None:
        for key, value in metrics.items():
            value = np.asarray(value, np.float64)
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.last = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
        self.count += 1

    def add_skipped(self) -> None:
        self.sums["skipped"] = self.sums.get("skipped", 0.0) + 1.0
        self.skipped += 1

    def scalars(self, prefix: str) -> dict[str, float]:
        return summarize(self.sums, self.lang_names, prefix, steps=self.count, last=self.last)


def summarize(
    sums: Mapping[str, np.ndarray],
    lang_names: list[str],
    prefix: str,
    *,
    steps: int = 0,
    last: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Loss/accuracy overall and per language from metric sums (per-step means for train-only values)."""
    out: dict[str, float] = {}
    weight = float(sums.get("weight_sum", 0.0))
    if weight > 0:
        out[f"{prefix}/accuracy"] = float(sums["correct_sum"]) / weight
        out[f"{prefix}/token_loss"] = float(sums["loss_sum"]) / weight
    if steps and "loss" in sums:
        out[f"{prefix}/loss"] = float(sums["loss"]) / steps
        out[f"{prefix}/grad_norm"] = float(sums["grad_norm"]) / steps
    if "skipped" in sums:  # train.nonfinite_policy=skip: updates skipped in the interval
        out[f"{prefix}/skipped_steps"] = float(sums["skipped"])
    if "mlm_overflow" in sums:  # predictions dropped by data.max_predictions_per_seq (should stay ~0)
        out[f"{prefix}/mlm_overflow"] = float(sums["mlm_overflow"])
    if steps and "input_wait_s" in sums:  # time a step waited for its batch (the host starving the devices)
        out[f"{prefix}/input_wait_s"] = float(sums["input_wait_s"]) / steps
    elif weight > 0:
        out[f"{prefix}/loss"] = out[f"{prefix}/token_loss"]
    if last and "learning_rate" in last:
        out[f"{prefix}/learning_rate"] = last["learning_rate"]
    lang_weight = np.asarray(sums.get("lang_weight_sum", []), np.float64)
    for i, lang in enumerate(lang_names[: len(lang_weight)]):
        name = metric_tag(lang)
        if lang_weight[i] > 0:
            out[f"{prefix}/accuracy/{name}"] = float(sums["lang_correct_sum"][i] / lang_weight[i])
            out[f"{prefix}/loss/{name}"] = float(sums["lang_loss_sum"][i] / lang_weight[i])
    return out


def metric_tag(name: str) -> str:
    """A language name as TensorBoard keeps it ('en~inv' -> 'en_inv'; tensorboardX would rename it silently)."""
    return re.sub(r"[^-\w.]", "_", name)


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


def progress_line(step: int, total: int, scalars: Mapping[str, float], step_time: float, tokens_per_s: float) -> str:
    eta = format_duration((total - step) * step_time)
    return (
        f"step {step}/{total} ({100.0 * step / total:.1f}%) | loss {scalars.get('train/loss', math.nan):.4f} "
        f"acc {scalars.get('train/accuracy', math.nan):.4f} | lr {scalars.get('train/learning_rate', 0.0):.3e} | "
        f"{step_time:.3f} s/step {tokens_per_s:,.0f} tok/s | input wait "
        f"{1000 * scalars.get('train/input_wait_s', 0.0):.1f} ms/step | ETA {eta}"
    )
