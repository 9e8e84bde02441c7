"""The report section that puts our numbers beside the paper's: Tables 3, 5, 6, 7, 8 and Figures 2–5."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from xlt_jax import results
from xlt_jax.experiments import paper_figures, paper_tables
from xlt_jax.experiments.paper_numbers import TASK_NAMES

INTRO = (
    "Our numbers next to those of Deshpande, Talukdar & Narasimhan (2022) (`xlt_jax/experiments/paper_numbers.py`, "
    "from PAPER_RESULTS.md). Theirs: RoBERTa-8, 500k steps on ~100M Wikipedia tokens per language, one run per "
    "cell, dev sets; ours: whatever the rows hold (see the provenance line and the protocol table above for "
    "models, steps and seeds). Metrics: XNLI accuracy, NER F1, POS seqeval F1, XQuAD F1; –: no number."
)


def section(rows: Sequence[results.ResultRow]) -> tuple[list[str], dict[str, Figure | None]]:
    """Markdown lines and figures (file stem -> figure or None) of the paper comparison."""
    view = paper_tables.View(rows)
    points = {task: paper_figures.alignment_points(rows, task) for task in paper_figures.ALIGN_TASKS}
    spearman = {task: paper_figures.spearman(found) for task, found in points.items()}
    figures: dict[str, Figure | None] = {
        "fig2_compositions": paper_figures.figure2(view),
        "fig3_corpus_variants": paper_figures.figure3(view),
    }
    for task, found in points.items():
        figures[f"fig4_5_alignment_{task}"] = paper_figures.alignment_figure(found, task)

    def image(stem: str, caption: str) -> list[str]:
        return ["", f"![{caption}]({stem}.png)" if figures[stem] is not None else f"No data for {caption} yet."]

    lines = ["## The paper's tables and figures, ours beside theirs", "", INTRO, "", *paper_tables.FOOTNOTES, ""]
    lines += ["### Table 3: averages over languages, Δ(BZ−BS) / Δ(MZ−BS) / BZ", ""] + paper_tables.table3(view)
    lines += ["", "### Table 5: per language, BZ / Δ(BZ−BS) / Δ(MZ−BS)", ""] + paper_tables.table5(view)
    lines += ["", "### Table 6: compositions and their constituents, BZ / Δ(BZ−BS)", ""] + paper_tables.table6(view)
    lines += image("fig2_compositions", "Figure 2: compositions vs constituents")
    lines += ["", "### Table 7: alignment and transfer of transliteration variants", ""]
    lines += paper_tables.table7(view, spearman)
    for task in paper_figures.ALIGN_TASKS:
        lines += image(f"fig4_5_alignment_{task}", f"Figures 4–5: alignment vs Δ(BZ−BS), {TASK_NAMES[task]}")
    lines += ["", "### Table 8: transliteration with different corpus sources, Δ(BZ−BS)", ""]
    lines += paper_tables.table8(view)
    lines += image("fig3_corpus_variants", "Figure 3: corpus variants")
    return lines, figures
