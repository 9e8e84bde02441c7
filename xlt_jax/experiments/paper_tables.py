"""The paper's Tables 3, 5, 6, 7 and 8 from our result rows, each cell with the paper's number beside ours.

Our cells come from the protocol table (`xlt_jax.tables`, Δs paired by seed) on each task's paper metric
(XNLI accuracy, NER F1, POS seqeval F1, XQuAD F1). An entry belongs to a paper cell by language, corpus
variant (`corpus`; "" reads as parallel) and transformation family: `inv`, `perm`, `translit`, `syntax:X`
with the paper's direction (en→fr order, fr/hi/ar→en order), and the compositions with transliteration;
other specs (word-level reordering, other syntax targets, partial transliteration) stay in the main table
only. A language contributes its dev-split entries when it has any (non-English XNLI, fine-tuned on XNLI
dev, is evaluated on test: marked *); several bilingual models of one cell are averaged (marked ‡).
Averages over languages (Tables 3, 8) list the languages they cover when that is not all four.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics
from collections.abc import Iterable, Sequence

from xlt_jax import results, tables
from xlt_jax.data import transforms
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import TransformError
from xlt_jax.experiments import paper_numbers as paper

MISSING = "–"
TEST_MARK, POOLED_MARK = "*", "‡"
FAMILY_NAMES = {"inv": "Inversion", "perm": "Permutation", "syntax": "Syntax", "translit": "Transliteration",
                "translit+inv": "Transliteration ∘ Inversion", "translit+perm": "Transliteration ∘ Permutation",
                "translit+syntax": "Transliteration ∘ Syntax"}
Key = tuple[str, str, str, str]  # (lang, family, variant, task)


def variant_of(corpus: str) -> str:
    """A row's `corpus` as a paper variant name ("" = parallel; `nonparallel-same` = `nonparallel_same`)."""
    return (corpus or "parallel").replace("-", "_")


def paper_family(lang: str, spec: str) -> str | None:
    """The paper's transformation family of `spec` on `lang`, or None when the paper has no such model."""
    try:
        t = transforms.parse(spec, VocabLayout(base_size=1000))  # V only sizes ids
    except TransformError:
        return None
    parts = []
    if t.translit is not None:
        parts.append(t.translit.name)
    if t.syntax is not None:
        parts.append("syntax" if t.syntax.name == f"syntax:{paper.SYNTAX_TARGET.get(lang)}" else t.syntax.name)
    if t.reorder is not None:
        parts.append(t.reorder.name)
    family = "+".join(parts)
    return family if family in paper.FAMILIES + paper.COMPOSITIONS else None


@dataclasses.dataclass(frozen=True)
class Ours:
    """Our number for one paper cell: the mean over the languages it covers (each language: the mean over its
    bilingual models), the languages, and whether test splits or several models went into it."""

    value: float | None
    langs: tuple[str, ...] = ()
    test_split: bool = False
    pooled: bool = False

    def text(self, signed: bool = False, all_langs: bool = False) -> str:
        if self.value is None:
            return MISSING
        out = f"{self.value:+.1f}" if signed else f"{self.value:.1f}"
        out += TEST_MARK if self.test_split else ""
        out += POOLED_MARK if self.pooled else ""
        if all_langs and set(self.langs) != set(paper.LANGS):
            out += f" ({', '.join(self.langs)})"
        return out


class View:
    """Our protocol entries and alignment values, indexed by the paper's cells."""

    def __init__(self, rows: Iterable[results.ResultRow]):
        rows = list(rows)
        self.entries: dict[Key, list[tables.ProtocolEntry]] = collections.defaultdict(list)
        for e in tables.protocol_table(rows):
            family = paper_family(e.lang, e.transform)
            if family and e.task in paper.TASKS and e.metric == paper.METRICS[e.task] and e.model:
                self.entries[(e.lang, family, variant_of(e.corpus), e.task)].append(e)
        self.alignment: dict[tuple[str, str, str], dict[str, float]] = collections.defaultdict(dict)
        for r in rows:  # the last row per model wins
            family = paper_family(r.lang, r.eval_transform)
            if r.task == "align" and r.metric == paper.ALIGNMENT_METRIC and family:
                self.alignment[(r.lang, family, variant_of(r.corpus))][r.model] = r.value

    def langs(self) -> list[str]:
        found = {key[0] for key in self.entries}
        return [lang for lang in paper.LANGS if lang in found] + sorted(found - set(paper.LANGS))

    def one(self, lang: str, family: str, variant: str, task: str, field: str) -> Ours:
        """One language's value of `field` (bz, delta_bz_bs, delta_mz_bs): dev entries when it has any."""
        chosen = self.entries.get((lang, family, variant, task), [])
        if any(e.split == "dev" for e in chosen):
            chosen = [e for e in chosen if e.split == "dev"]
        values = [getattr(e, field) for e in chosen if getattr(e, field) is not None]
        if not values:
            return Ours(None)
        return Ours(statistics.fmean(values), (lang,), any(e.split != "dev" for e in chosen), len(values) > 1)

    def mean(self, langs: Sequence[str], family: str, variant: str, task: str, field: str) -> Ours:
        """The mean over `langs` of each language's value (languages without one are left out)."""
        parts = [o for o in (self.one(lang, family, variant, task, field) for lang in langs) if o.value is not None]
        if not parts:
            return Ours(None)
        return Ours(statistics.fmean(o.value for o in parts), tuple(lang for o in parts for lang in o.langs),
                    any(o.test_split for o in parts), any(o.pooled for o in parts))

    def align(self, lang: str, family: str, variant: str) -> Ours:
        values = self.alignment.get((lang, family, variant), {})
        return Ours(statistics.fmean(values.values()), (lang,), False, len(values) > 1) if values else Ours(None)


# ------------------------------------------------------------------------------------------------------
# Formatting


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return MISSING
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def _triple(parts: Sequence[Ours | float | None], signs: Sequence[bool]) -> str:
    """`a / b / c`; "–" when all are missing."""
    texts = [p.text(s) if isinstance(p, Ours) else _num(p, s) for p, s in zip(parts, signs, strict=True)]
    return MISSING if all(t == MISSING for t in texts) else " / ".join(texts)


def _langs_suffix(ours: Sequence[Ours]) -> str:
    """` (en, fr)` when a cell of averages covers fewer than the paper's four languages."""
    langs = next((o.langs for o in ours if o.value is not None), paper.LANGS)
    return "" if set(langs) == set(paper.LANGS) else f" ({', '.join(langs)})"


def _langs_note(ours: Sequence[Ours]) -> str:
    covered = {lang for o in ours for lang in o.langs}
    return ", ".join(lang for lang in paper.LANGS if lang in covered) or MISSING


# ------------------------------------------------------------------------------------------------------
# Tables


def table3(view: View) -> list[str]:
    """Averages over languages: Δ(BZ−BS) / Δ(MZ−BS) / BZ per task and transformation (parallel corpora)."""
    header = ["Task"] + [f"{FAMILY_NAMES[f]} ({who})" for f in paper.FAMILIES for who in ("ours", "paper")]
    body, used = [], []
    for task in paper.TASKS:
        cells = [paper.TASK_NAMES[task]]
        for family in paper.FAMILIES:
            ours = [view.mean(paper.LANGS, family, "parallel", task, f) for f in ("delta_bz_bs", "delta_mz_bs", "bz")]
            used += ours
            theirs = paper.TABLE3[task].get(family)
            cells.append(_triple(ours, (True, True, False)) + _langs_suffix(ours))
            if theirs is None:
                cells.append(MISSING)
            else:
                cells.append(_triple((theirs.delta_bz_bs, theirs.delta_mz_bs, theirs.bz), (True, True, False)))
        body.append(cells)
    return [f"Ours over: {_langs_note(used)} (the paper: en, fr, hi, ar).", ""] + _table(header, body)


def table5(view: View) -> list[str]:
    """Per language: BZ / Δ(BZ−BS) / Δ(MZ−BS); the paper's numbers exist for English only."""
    lines: list[str] = []
    for lang in view.langs():
        theirs = paper.TABLE5.get(lang)
        whos = ("ours", "paper") if theirs else ("ours",)
        header = ["Task"] + [f"{FAMILY_NAMES[f]} ({who})" for f in paper.FAMILIES for who in whos]
        body = []
        for task in paper.TASKS:
            cells = [paper.TASK_NAMES[task]]
            for family in paper.FAMILIES:
                ours = [view.one(lang, family, "parallel", task, f) for f in ("bz", "delta_bz_bs", "delta_mz_bs")]
                cells.append(_triple(ours, (False, True, True)))
                if theirs:
                    p = theirs[task].get(family)
                    cells.append(_triple(p, (False, True, True)) if p else MISSING)
            body.append(cells)
        note = "" if theirs else " (the paper reports English only)"
        lines += [f"#### {lang}{note}", ""] + _table(header, body) + [""]
    return lines[:-1] or ["No rows of the paper's transformations yet."]


def table6(view: View) -> list[str]:
    """Compositions vs their constituents, per language: BZ / Δ(BZ−BS) (parallel corpora)."""
    order = ("translit", "inv", "translit+inv", "perm", "translit+perm", "syntax", "translit+syntax")
    tasks = ("nli", "ner", "pos")
    lines: list[str] = []
    for lang in view.langs():
        theirs = paper.TABLE6.get(lang)
        whos = ("ours", "paper") if theirs else ("ours",)
        header = ["Transformation"] + [f"{paper.TASK_NAMES[t]} ({who})" for t in tasks for who in whos]
        body = []
        for family in order:
            cells = [FAMILY_NAMES[family]]
            for task in tasks:
                ours = [view.one(lang, family, "parallel", task, f) for f in ("bz", "delta_bz_bs")]
                cells.append(_triple(ours, (False, True)))
                if theirs:
                    cells.append(_triple(theirs[family][task][:2], (False, True)))
            body.append(cells)
        note = "" if theirs else " (the paper reports English only)"
        lines += [f"#### {lang}{note}", ""] + _table(header, body) + [""]
    return lines[:-1] or ["No rows of the paper's transformations yet."]


def table7(view: View, spearman: dict[str, tuple[float, float, int] | None]) -> list[str]:
    """Alignment per transliteration variant and composition, per language, and ρ(alignment, Δ(BZ−BS))."""
    if not view.alignment:
        return [f"No `align` rows ({paper.ALIGNMENT_METRIC}) yet: run the grid with alignment, or "
                "`python -m xlt_jax.align` on each transliteration model."]
    tasks = ("nli", "ner", "pos")
    lines: list[str] = []
    for lang in sorted({k[0] for k in view.alignment}, key=lambda x: (x not in paper.LANGS, x)):
        theirs = paper.TABLE7.get(lang, {})
        whos = ("ours", "paper") if theirs else ("ours",)
        header = ["Model"] + [f"{paper.TASK_NAMES[t]} Δ(BZ−BS) ({who})" for t in tasks for who in whos]
        header += [f"alignment ({who})" for who in whos]
        body = []
        for family, variant in paper.TABLE7["en"]:
            row = theirs.get((family, variant))
            cells = [paper.TABLE7_ROWS[family, variant]]
            for task in tasks:
                cells.append(view.one(lang, family, variant, task, "delta_bz_bs").text(signed=True))
                cells += [_num(row.deltas[task], True)] if theirs else []
            found = view.align(lang, family, variant)
            small = found.value is not None and found.value < 1  # the paper prints 0.16 and 0.01
            cells.append(f"{found.value:.2f}" + POOLED_MARK * found.pooled if small else found.text())
            cells += [f"{row.alignment:g}"] if theirs else []
            body.append(cells)
        lines += [f"#### {lang}", ""] + _table(header, body) + [""]
    header = ["Task", "Spearman ρ (ours)", "Spearman ρ (paper, English)"]
    body = []
    for task in tasks:
        found = spearman.get(task)
        ours = MISSING if found is None else f"{found[0]:.2f} (one-sided p = {found[1]:.3g}, {found[2]} models)"
        rho, p = paper.TABLE7_SPEARMAN[task]
        body.append([paper.TASK_NAMES[task], ours, f"{rho:.2f} ({p})"])
    return lines + _table(header, body)


def table8(view: View) -> list[str]:
    """Transliteration with different corpus sources: Δ(BZ−BS) averaged over languages."""
    header = ["Corpora"] + [f"{paper.TASK_NAMES[t]} ({who})" for t in paper.TASKS for who in ("ours", "paper")]
    body, used = [], []
    for variant in paper.VARIANTS:
        cells = [paper.VARIANT_NAMES[variant]]
        for task in paper.TASKS:
            ours = view.mean(paper.LANGS, "translit", variant, task, "delta_bz_bs")
            used.append(ours)
            cells += [ours.text(signed=True, all_langs=True), _num(paper.TABLE8[variant][task], True)]
        body.append(cells)
    return [f"Ours over: {_langs_note(used)} (the paper: en, fr, hi, ar)."] + [""] + _table(header, body)


FOOTNOTES = [
    f"{TEST_MARK} includes a test-split entry (non-English XNLI is fine-tuned on XNLI dev, so scored on test); "
    f"{POOLED_MARK} mean over several bilingual models of one language and transformation.",
]
