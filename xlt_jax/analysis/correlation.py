"""Does alignment predict transfer? Spearman correlation of an alignment figure with Δ(BZ−BS) over a grid of
derived languages (the paper's Figure 5: token-embedding alignment against the XNLI and POS Δs).

Everything comes from result rows: `align` rows (from `xlt_jax.align`) give one alignment value per model and
derived language, and the protocol table (`xlt_jax.tables`) gives Δ(BZ−BS), paired by fine-tuning seed, per
bilingual model. A point is one bilingual model (and corpus variant) on one derived language, so two models of
the same language and transformation (e.g. a parallel and a non-parallel corpus, the paper's Table 7) are two
points. As in the protocol table, the row written last wins.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import scipy.stats
from matplotlib.figure import Figure

from xlt_jax import results, tables
from xlt_jax.errors import ConfigError

ALIGN_TASK = "align"
DISTANCE_METRICS = ("gw_distance",)  # align rows that are distances (lower = more aligned), not percentages


@dataclasses.dataclass(frozen=True)
class Point:
    """One bilingual model on one derived language: its alignment and the transfer numbers of one task.
    `delta_bz_bs` is paired by seed (over `seeds`), so it can differ from `bz − bs` when the seed sets do."""

    lang: str
    transform: str
    model: str
    corpus: str
    alignment: float
    bz: float
    bs: float
    delta_bz_bs: float
    seeds: int


@dataclasses.dataclass(frozen=True)
class Correlation:
    task: str
    metric: str
    alignment_metric: str
    points: tuple[Point, ...]
    spearman: float
    p_value: float


AlignKey = tuple[str, str, str, str]  # (lang, transform, corpus, model)


def _alignment_values(rows: Iterable[results.ResultRow], alignment_metric: str) -> dict[AlignKey, float]:
    """Alignment per (lang, transform, corpus, model); later rows overwrite earlier ones."""
    return {
        (r.lang, r.eval_transform, r.corpus, r.model): r.value
        for r in rows
        if r.task == ALIGN_TASK and r.metric == alignment_metric
    }


def _alignment_of(e: tables.ProtocolEntry, alignment: Mapping[AlignKey, float], alone: bool) -> float | None:
    """The alignment row of the entry's model. When no align row has its name and the entry is the only
    bilingual model of its (lang, transform, corpus) (`alone`), the only align row of that language, so align
    rows named after the pretraining directory still pair with the protocol's model name. Never a value
    that could be another model's."""
    exact = alignment.get((e.lang, e.transform, e.corpus, e.model))
    if exact is not None or not alone:
        return exact
    same_language = [v for (lang, t, c, _), v in alignment.items() if (lang, t, c) == (e.lang, e.transform, e.corpus)]
    return same_language[0] if len(same_language) == 1 else None


def alignment_points(
    rows: Iterable[results.ResultRow], task: str, alignment_metric: str = "align_nn_identity"
) -> tuple[str, list[Point]]:
    """(the task's headline metric, one point per bilingual model and derived language with an alignment row
    and a paired Δ(BZ−BS))."""
    rows = list(rows)
    alignment = _alignment_values(rows, alignment_metric)
    entries = [e for e in tables.protocol_table(rows) if e.task == task and e.delta_bz_bs is not None]
    metrics = sorted({e.metric for e in entries})
    if not metrics:
        raise ConfigError(f"no {task} rows with both BZ and BS in the results")
    chosen = [e for e in entries if e.metric == metrics[0]]
    models = collections.Counter((e.lang, e.transform, e.corpus) for e in chosen)
    points = []
    for e in chosen:
        value = _alignment_of(e, alignment, alone=models[(e.lang, e.transform, e.corpus)] == 1)
        if value is not None:
            points.append(Point(e.lang, e.transform, e.model, e.corpus, value, e.bz, e.bs, e.delta_bz_bs,
                                e.deltas["delta_bz_bs"].n))
    return metrics[0], sorted(points, key=lambda p: (p.lang, p.transform, p.corpus, p.model))


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
        ax.annotate(f"{p.model} ({p.lang}:{p.transform})", (p.alignment, p.delta_bz_bs), fontsize="small",
                    textcoords="offset points", xytext=(4, 4))  # fmt: skip
    unit = "distance, lower = more isomorphic" if correlation.alignment_metric in DISTANCE_METRICS else "%"
    ax.set_xlabel(f"{correlation.alignment_metric} ({unit})")
    ax.set_ylabel(f"Δ(BZ−BS), {correlation.task} {correlation.metric}")
    rho = "nan" if math.isnan(correlation.spearman) else f"{correlation.spearman:.2f}"
    ax.set_title(f"{correlation.task}: Spearman ρ = {rho} over {len(correlation.points)} languages")
    ax.grid(alpha=0.3)
    return fig


def markdown(correlation: Correlation) -> Sequence[str]:
    """The correlation line and one table row per point (model, corpus variant and seeds of its Δ)."""
    digits = 4 if correlation.alignment_metric in DISTANCE_METRICS else 2  # GW distances are ~0.01-0.1
    lines = [
        f"{correlation.task} ({correlation.metric}): Spearman ρ = {correlation.spearman:.3f} "
        f"(p = {correlation.p_value:.3g}) between {correlation.alignment_metric} and Δ(BZ−BS)",
        "",
        f"| lang | transform | model | corpus | {correlation.alignment_metric} | BZ | BS | Δ(BZ−BS) | seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {p.lang} | {p.transform} | {p.model} | {p.corpus or '–'} | {p.alignment:.{digits}f} | {p.bz:.2f} "
        f"| {p.bs:.2f} | {p.delta_bz_bs:+.2f} | {p.seeds} |"
        for p in correlation.points
    ]
    return lines
