"""The paper's three qualitative findings, checked against our rows with the numbers that decide them.

(a) Transliteration alone transfers: Δ(BZ−BS) near 0 while Δ(MZ−BS) is strongly negative — checked as
    "BZ closes at least half of the gap between MZ and BS" (Δ(BZ−BS) ≥ Δ(MZ−BS)/2) with Δ(MZ−BS) ≤ −10.
(b) Composing a word-order change with transliteration transfers worse than either constituent:
    Δ(BZ−BS)[translit∘X] < min(Δ(BZ−BS)[translit], Δ(BZ−BS)[X]).
(c) Alignment correlates positively with Δ(BZ−BS): Spearman ρ > 0 over the models with an alignment row, with
    the exact one-sided permutation p-value below 0.05. Token alignment exists only for models whose derived
    language has its own vocabulary (transliteration and its compositions), so a grid gives few points: with 3
    even a perfect ranking has p = 1/6, and the check then says "positive, not significant" rather than "holds".
Each check says "holds", "does not hold", "positive, not significant" or "no data", per task, on the paper's
metric of that task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from xlt_jax import results
from xlt_jax.experiments import paper_figures, paper_tables
from xlt_jax.experiments.paper_numbers import TASK_NAMES

GAP_SHARE = 0.5  # (a): BZ must close at least this share of the MZ→BS gap
STRONG_MZ_GAP = -10.0  # (a): Δ(MZ−BS) at most this (points): without transfer the derived task is lost
ALPHA = 0.05  # (c): significance level of the one-sided test of ρ > 0
TASKS = ("pos", "ner", "nli", "qa")
WORD_ORDER = ("inv", "perm", "syntax")


@dataclasses.dataclass(frozen=True)
class Finding:
    finding: str  # a, b or c
    task: str
    holds: bool | None  # None: not decided (no data, or not significant)
    evidence: str
    undecided: str = "no data"  # the verdict when `holds` is None

    def verdict(self) -> str:
        return {True: "holds", False: "does not hold"}.get(self.holds, self.undecided)  # type: ignore[arg-type]


def _value(view: paper_tables.View, lang: str, family: str, task: str, field: str) -> float | None:
    return view.one(lang, family, "parallel", task, field).value


def transliteration_transfers(view: paper_tables.View, lang: str, task: str) -> Finding:
    bz_bs = _value(view, lang, "translit", task, "delta_bz_bs")
    mz_bs = _value(view, lang, "translit", task, "delta_mz_bs")
    if bz_bs is None or mz_bs is None:
        return Finding("a", task, None, "no BZ/BS/MZ rows for translit")
    holds = mz_bs <= STRONG_MZ_GAP and bz_bs >= GAP_SHARE * mz_bs
    return Finding("a", task, holds, f"Δ(BZ−BS) {bz_bs:+.1f}, Δ(MZ−BS) {mz_bs:+.1f}")


def compositions_transfer_worse(view: paper_tables.View, lang: str, task: str) -> list[Finding]:
    out = []
    base = _value(view, lang, "translit", task, "delta_bz_bs")
    for order in WORD_ORDER:
        composed = _value(view, lang, f"translit+{order}", task, "delta_bz_bs")
        alone = _value(view, lang, order, task, "delta_bz_bs")
        if composed is None or alone is None or base is None:
            continue
        holds = composed < min(base, alone)
        out.append(Finding("b", task, holds, f"translit∘{order} {composed:+.1f} vs translit {base:+.1f}, "
                                             f"{order} {alone:+.1f}"))
    return out or [Finding("b", task, None, "no composition with both constituents")]


def alignment_correlates(rows: Sequence[results.ResultRow], task: str) -> Finding:
    points = paper_figures.alignment_points(rows, task)
    stats = paper_figures.spearman(points)
    if stats is None:
        return Finding("c", task, None, f"{len(points)} model(s) with alignment and Δ(BZ−BS); 3 needed")
    rho, p, n = stats  # one-sided: exact up to paper_figures.EXACT_UP_TO models
    kind = "exact" if n <= paper_figures.EXACT_UP_TO else "permutation (20,000 resamples)"
    evidence = f"Spearman ρ {rho:+.2f}, one-sided {kind} p = {p:.3g} ({n} models)"
    if rho > 0 and p >= ALPHA:
        return Finding("c", task, None, evidence, undecided="positive, not significant")
    return Finding("c", task, rho > 0, evidence)


def check(rows: Sequence[results.ResultRow], lang: str = "en") -> list[Finding]:
    view = paper_tables.View(rows)
    found: list[Finding] = []
    for task in TASKS:
        if not any(r.task == task for r in rows):
            continue
        found.append(transliteration_transfers(view, lang, task))
        found += compositions_transfer_worse(view, lang, task)
        found.append(alignment_correlates(rows, task))
    return found


def markdown(found: Sequence[Finding]) -> list[str]:
    names = {
        "a": "(a) transliteration alone transfers",
        "b": "(b) a word-order change composed with transliteration transfers worse than either part",
        "c": "(c) alignment correlates positively with Δ(BZ−BS)",
    }
    lines = ["| finding | task | verdict | the numbers that decide it |", "|---|---|---|---|"]
    for f in found:
        lines.append(f"| {names[f.finding]} | {TASK_NAMES.get(f.task, f.task)} | {f.verdict()} | {f.evidence} |")
    return lines
