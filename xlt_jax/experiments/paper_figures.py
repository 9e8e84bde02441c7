"""The paper's figures from our rows, with the paper's numbers drawn on them (black ✕ on bars, hollow circles in
scatters): Figure 2 (compositions against their constituents), Figure 3 (corpus variants of transliteration)
and Figures 4–5 (token-embedding alignment against Δ(BZ−BS), with Spearman's ρ). Each function returns None
when there is nothing of ours to draw.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.stats
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xlt_jax import results
from xlt_jax.analysis import correlation
from xlt_jax.errors import ConfigError
from xlt_jax.experiments import paper_numbers as paper
from xlt_jax.experiments.paper_tables import FAMILY_NAMES, View, paper_family, variant_of

CONSTITUENTS = (("inv", "translit+inv"), ("perm", "translit+perm"), ("syntax", "translit+syntax"))
ALIGN_TASKS = ("nli", "ner", "pos")


def _figure(width: float, height: float, columns: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, columns, i + 1) for i in range(columns)]


def _bars(ax, groups: Sequence[str], series: Sequence[tuple[str, list[float | None], list[float | None]]]) -> None:
    """Grouped bars (ours) with the paper's value of each bar as a black ✕; missing values are left out."""
    palette = colormaps["tab10"]
    width = 0.8 / len(series)
    for j, (label, ours, theirs) in enumerate(series):
        xs = [g + (j - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar([x for x, v in zip(xs, ours, strict=True) if v is not None], [v for v in ours if v is not None],
               width, label=label, color=palette(j % palette.N))
        ax.scatter([x for x, v in zip(xs, theirs, strict=True) if v is not None],
                   [v for v in theirs if v is not None], marker="x", color="black", zorder=3)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)), groups)
    ax.yaxis.grid(True, alpha=0.3)
    ax.set_axisbelow(True)


def figure2(view: View, lang: str = "en") -> Figure | None:
    """Δ(BZ−BS) of transliteration, a word-order change and their composition, per task (one language)."""
    fig, axes = _figure(13.0, 4.0, len(ALIGN_TASKS))
    theirs_table = paper.TABLE6.get(lang, {})
    drawn = False
    for ax, task in zip(axes, ALIGN_TASKS, strict=True):
        series = []
        for label, pick in (("Transliteration", lambda o, c: "translit"), ("word order", lambda o, c: o),
                            ("composition", lambda o, c: c)):
            families = [pick(order, composed) for order, composed in CONSTITUENTS]
            ours = [view.one(lang, f, "parallel", task, "delta_bz_bs").value for f in families]
            theirs = [theirs_table[f][task].delta_bz_bs if theirs_table else None for f in families]
            drawn |= any(v is not None for v in ours)
            series.append((label, ours, theirs))
        _bars(ax, [FAMILY_NAMES[c] for c, _ in CONSTITUENTS], series)
        ax.set_title(f"{paper.TASK_NAMES[task]} ({lang})")
    axes[0].set_ylabel("Δ(BZ−BS) (points)")
    if not drawn:
        return None
    axes[-1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle("Figure 2: compositions with transliteration vs their constituents (bars: ours; ✕: paper)")
    return fig


def figure3(view: View) -> Figure | None:
    """Δ(BZ−BS) of transliteration per corpus variant and task, averaged over languages (Table 8)."""
    series = []
    for variant in paper.VARIANTS:
        ours = [view.mean(paper.LANGS, "translit", variant, task, "delta_bz_bs").value for task in paper.TASKS]
        series.append((paper.VARIANT_NAMES[variant], ours, [paper.TABLE8[variant][t] for t in paper.TASKS]))
    if all(v is None for _, ours, _ in series for v in ours):
        return None
    fig, (ax,) = _figure(8.0, 4.0)
    _bars(ax, [paper.TASK_NAMES[t] for t in paper.TASKS], series)
    ax.set_ylabel("Δ(BZ−BS) (points)")
    ax.set_title("Figure 3: transliteration with different corpus sources (bars: ours; ✕: paper)")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def alignment_points(rows: Iterable[results.ResultRow], task: str) -> list[correlation.Point]:
    """One point per bilingual model and corpus variant with an alignment row and a paired Δ(BZ−BS)."""
    try:
        return correlation.alignment_points(list(rows), task, paper.ALIGNMENT_METRIC)[1]
    except ConfigError:  # no BZ / BS rows of the task
        return []


EXACT_UP_TO = 8  # enumerate all n! pairings up to this many models; beyond, 20,000 seeded resamples


def spearman_greater_p(alignment: Sequence[float], delta: Sequence[float]) -> float:
    """One-sided p-value of Spearman ρ > 0 from the permutation distribution of the pairings.

    scipy's `spearmanr` p-value uses a t approximation that is meaningless for a handful of points (it gives
    p = 0 for a perfect ranking of 3); the exact test shows what 3 or 4 models can and cannot establish.
    """
    exact = len(alignment) <= EXACT_UP_TO
    result = scipy.stats.permutation_test(
        (np.asarray(alignment, float), np.asarray(delta, float)), _spearman_rho,
        permutation_type="pairings", alternative="greater", vectorized=True,
        n_resamples=np.inf if exact else 20_000, rng=np.random.default_rng(0),
    )  # fmt: skip
    return float(result.pvalue)


def _spearman_rho(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman ρ along `axis` (Pearson of average ranks), for all of `permutation_test`'s pairings at once:
    `spearmanr` called once per pairing took minutes for 8 models (8! = 40,320 pairings)."""
    rx, ry = (scipy.stats.rankdata(v, axis=axis) for v in (x, y))
    rx, ry = (r - r.mean(axis=axis, keepdims=True) for r in (rx, ry))
    return (rx * ry).sum(axis=axis) / np.sqrt((rx**2).sum(axis=axis) * (ry**2).sum(axis=axis))


def spearman(points: Sequence[correlation.Point]) -> tuple[float, float, int] | None:
    """(ρ, one-sided p of ρ > 0, points) of alignment against Δ(BZ−BS); None below three points."""
    if len(points) < 3:
        return None
    alignment, delta = [p.alignment for p in points], [p.delta_bz_bs for p in points]
    rho = float(scipy.stats.spearmanr(alignment, delta).statistic)
    return rho, (math.nan if math.isnan(rho) else spearman_greater_p(alignment, delta)), len(points)


def alignment_figure(points: Sequence[correlation.Point], task: str) -> Figure | None:
    """Figures 4–5: alignment against Δ(BZ−BS), ours coloured by corpus variant, the paper's rows hollow."""
    if not points:
        return None
    fig, (ax,) = _figure(7.0, 4.5)
    palette = colormaps["tab10"]
    variants = sorted({variant_of(p.corpus) for p in points})
    for i, variant in enumerate(variants):
        chosen = [p for p in points if variant_of(p.corpus) == variant]
        ax.scatter([p.alignment for p in chosen], [p.delta_bz_bs for p in chosen], color=palette(i % palette.N),
                   label=f"ours, {variant}")
        for p in chosen:
            family = paper_family(p.lang, p.transform) or p.transform
            ax.annotate(f"{p.lang}:{family}", (p.alignment, p.delta_bz_bs), fontsize="x-small",
                        textcoords="offset points", xytext=(3, 3))
    theirs = paper.TABLE7["en"].values()
    ax.scatter([r.alignment for r in theirs], [r.deltas[task] for r in theirs], facecolors="none",
               edgecolors="black", label="paper (en)")
    found = spearman(points)
    rho = "–" if found is None or math.isnan(found[0]) else f"{found[0]:.2f} (one-sided p = {found[1]:.2g})"
    paper_rho, paper_p = paper.TABLE7_SPEARMAN[task]
    ax.set_title(f"{paper.TASK_NAMES[task]}: Spearman ρ ours {rho}, paper {paper_rho:.2f} ({paper_p})",
                 fontsize="medium")
    ax.set_xlabel(f"{paper.ALIGNMENT_METRIC} (%)")
    ax.set_ylabel("Δ(BZ−BS) (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig
