"""Does alignment predict transfer? Spearman correlation of an alignment figure with Δ(BZ−BS) over a grid of
derived languages (the paper's Figure 5: token-embedding alignment against the XNLI and POS Δs).

Everything comes from result rows: `align` rows (from `xlt_jax.align`) give one alignment value per
(language, transformation) and the protocol rows give Δ(BZ−BS) for the same (language, transformation). As in
the protocol table, the row written last wins.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import scipy.stats
from matplotlib.figure import Figure

from xlt_jax import results, tables
from xlt_jax.errors import ConfigError

ALIGN_TASK = "align"


@dataclasses.dataclass(frozen=True)
class Point:
    """One derived language: its alignment and the transfer numbers of one task."""

    lang: str
    transform: str
    alignment: float
    bz: float
    bs: float

    @property
    def delta_bz_bs(self) -> float:
        return self.bz - self.bs


@dataclasses.dataclass(frozen=True)
class Correlation:
    task: str
    metric: str
    alignment_metric: str
    points: tuple[Point, ...]
    spearman: float
    p_value: float


def alignment_points(
    rows: Iterable[results.ResultRow], task: str, alignment_metric: str = "align_nn_identity"
) -> tuple[str, list[Point]]:
    """(the task's headline metric, one point per (lang, transform) with an alignment row and both BZ and BS)."""
    rows = list(rows)
    alignment = {
        (r.lang, r.eval_transform): r.value
        for r in rows
        if r.task == ALIGN_TASK and r.metric == alignment_metric  # later rows overwrite earlier ones
    }
    entries = [e for e in tables.protocol_table(rows) if e.task == task and e.bz is not None and e.bs is not None]
    metrics = sorted({e.metric for e in entries})
    if not metrics:
        raise ConfigError(f"no {task} rows with both BZ and BS in the results")
    metric = metrics[0]
    points = [
        Point(e.lang, e.transform, alignment[(e.lang, e.transform)], e.bz, e.bs)
        for e in entries
        if e.metric == metric and (e.lang, e.transform) in alignment
    ]
    return metric, sorted(points, key=lambda p: (p.lang, p.transform))


def correlate(
    rows: Iterable[results.ResultRow], task: str, alignment_metric: str = "align_nn_identity"
) -> Correlation:
    """Spearman ρ of the alignment with Δ(BZ−BS) for `task`; needs at least three derived languages."""
    metric, points = alignment_points(rows, task, alignment_metric)
    if len(points) < 3:
        raise ConfigError(
            f"{task}: {len(points)} derived language(s) have both an {alignment_metric} row and BZ/BS rows; "
            "a rank correlation needs at least 3"
        )
    rho, p_value = scipy.stats.spearmanr([p.alignment for p in points], [p.delta_bz_bs for p in points])
    return Correlation(task, metric, alignment_metric, tuple(points), float(rho), float(p_value))


def correlation_figure(correlation: Correlation) -> Figure:
    """Scatter of alignment against Δ(BZ−BS), one labelled point per derived language."""
    fig = Figure(figsize=(5.5, 4.0))
    ax = fig.add_subplot()
    xs = [p.alignment for p in correlation.points]
    ys = [p.delta_bz_bs for p in correlation.points]
    ax.scatter(xs, ys)
    for p in correlation.points:
        ax.annotate(f"{p.lang}:{p.transform}", (p.alignment, p.delta_bz_bs), fontsize="small",
                    textcoords="offset points", xytext=(4, 4))  # fmt: skip
    ax.set_xlabel(f"{correlation.alignment_metric} (%)")
    ax.set_ylabel(f"Δ(BZ−BS), {correlation.task} {correlation.metric}")
    rho = "nan" if math.isnan(correlation.spearman) else f"{correlation.spearman:.2f}"
    ax.set_title(f"{correlation.task}: Spearman ρ = {rho} over {len(correlation.points)} languages")
    ax.grid(alpha=0.3)
    return fig


def markdown(correlation: Correlation) -> Sequence[str]:
    lines = [
        f"{correlation.task} ({correlation.metric}): Spearman ρ = {correlation.spearman:.3f} "
        f"(p = {correlation.p_value:.3g}) between {correlation.alignment_metric} and Δ(BZ−BS)",
        "",
        f"| lang | transform | {correlation.alignment_metric} | BZ | BS | Δ(BZ−BS) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {p.lang} | {p.transform} | {p.alignment:.2f} | {p.bz:.2f} | {p.bs:.2f} | {p.delta_bz_bs:+.2f} |"
        for p in correlation.points
    ]
    return lines
