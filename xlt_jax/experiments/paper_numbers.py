"""The numbers Deshpande, Talukdar & Narasimhan (NAACL 2022) report, for the report to put beside ours.

Transcribed from docs/PAPER_RESULTS.md (table and row names as there); nothing here is computed. Keys use
xlt_jax's names: tasks `nli` (XNLI accuracy), `ner` (WikiANN F1), `pos` (UD POS seqeval F1), `qa` (XQuAD
F1); transformation families `inv`, `perm`, `syntax`, `translit` and the compositions `translit+inv`,
`translit+perm`, `translit+syntax` (the spec order `Transform.name` gives); corpus variants `parallel`,
`nonparallel_same`, `nonparallel_diff`. All numbers are dev-set points, one pretraining run per cell; None =
not reported (XQuAD is not reported for permutation and syntax, which can scatter an answer span).
"""

from __future__ import annotations

from typing import NamedTuple

TASKS = ("nli", "ner", "pos", "qa")
TASK_NAMES = {"nli": "XNLI", "ner": "NER", "pos": "POS", "qa": "XQuAD"}
METRICS = {"nli": "accuracy", "ner": "f1", "pos": "f1", "qa": "f1"}  # the paper's metric of each task
LANGS = ("en", "fr", "hi", "ar")
FAMILIES = ("inv", "perm", "syntax", "translit")  # Table 3's columns, in its order
COMPOSITIONS = ("translit+inv", "translit+perm", "translit+syntax")
VARIANTS = ("parallel", "nonparallel_same", "nonparallel_diff")
# Table 5's note: English gets French syntax; French, Hindi and Arabic get English syntax.
SYNTAX_TARGET = {"en": "fr", "fr": "en", "hi": "en", "ar": "en"}
ALIGNMENT_METRIC = "align_nn_identity"  # REFERENCE_SPEC §6.7: the correlation plot's values fit no mapping


class Scores(NamedTuple):
    """One protocol cell: BZ and the two Δs (None where the table does not give it)."""

    bz: float | None
    delta_bz_bs: float | None
    delta_mz_bs: float | None = None


def _t3(delta_bz_bs: float, delta_mz_bs: float, bz: float) -> Scores:
    """Table 3 prints Δ(BZ−BS) / Δ(MZ−BS) / BZ."""
    return Scores(bz, delta_bz_bs, delta_mz_bs)


# Table 3 — averages over en, fr, hi, ar.
TABLE3: dict[str, dict[str, Scores]] = {
    "nli": {"inv": _t3(-10.2, -13.0, 58.4), "perm": _t3(-3.6, -8.6, 62.6), "syntax": _t3(-0.9, -1.1, 67.8),
            "translit": _t3(-1.0, -36.7, 69.3)},
    "ner": {"inv": _t3(-49.1, -46.7, 37.9), "perm": _t3(-26.3, -35.4, 47.3), "syntax": _t3(-14.6, -16.6, 62.9),
            "translit": _t3(-1.9, -82.6, 83.7)},
    "pos": {"inv": _t3(-30.2, -36.2, 64.2), "perm": _t3(-11.2, -25.2, 73.6), "syntax": _t3(-4.4, -7.6, 89.4),
            "translit": _t3(-0.4, -95.0, 95.4)},
    "qa": {"inv": _t3(-32.8, -31.0, 22.8), "translit": _t3(1.3, -55.9, 61.2)},
}

# Table 5 — English rows: BZ / Δ(BZ−BS) / Δ(MZ−BS) (syntax: English with French order).
TABLE5: dict[str, dict[str, dict[str, Scores]]] = {"en": {
    "nli": {"inv": Scores(73.2, -3.4, -14.9), "perm": Scores(68.6, -5.0, -7.7), "syntax": Scores(74.1, -1.8, -1.5),
            "translit": Scores(74.1, -1.7, -42.5)},
    "ner": {"inv": Scores(39.8, -44.5, -35.9), "perm": Scores(40.2, -28.5, -33.2),
            "syntax": Scores(61.1, -7.8, -10.3), "translit": Scores(78.0, -2.1, -70.2)},
    "pos": {"inv": Scores(94.4, -0.7, -24.3), "perm": Scores(78.3, -11.9, -17.6), "syntax": Scores(92.9, -0.9, -2.2),
            "translit": Scores(94.6, -0.5, -95.1)},
    "qa": {"inv": Scores(30.4, -43.2, -35.5), "translit": Scores(72.4, -4.0, -73.0)},
}}

# Table 6 — compositions on English: BZ / Δ(BZ−BS), rows in the paper's order. (Its translit XNLI Δ, −2.1,
# differs from Table 5's −1.7; both are transcribed as printed.)
TABLE6: dict[str, dict[str, dict[str, Scores]]] = {"en": {
    "translit": {"nli": Scores(74.1, -2.1), "ner": Scores(78.0, -2.3), "pos": Scores(94.6, -0.5)},
    "inv": {"nli": Scores(73.2, -3.4), "ner": Scores(39.8, -44.5), "pos": Scores(94.4, -0.7)},
    "translit+inv": {"nli": Scores(55.7, -19.2), "ner": Scores(32.5, -51.5), "pos": Scores(52.2, -42.7)},
    "perm": {"nli": Scores(68.6, -5.0), "ner": Scores(40.2, -28.5), "pos": Scores(78.3, -11.9)},
    "translit+perm": {"nli": Scores(44.0, -27.7), "ner": Scores(17.1, -46.3), "pos": Scores(29.5, -59.0)},
    "syntax": {"nli": Scores(74.1, -1.8), "ner": Scores(61.1, -7.8), "pos": Scores(92.9, -0.9)},
    "translit+syntax": {"nli": Scores(69.8, -5.7), "ner": Scores(53.5, -14.2), "pos": Scores(91.5, -2.0)},
}}


class AlignmentRow(NamedTuple):
    """A Table 7 row: Δ(BZ−BS) per task and the token-embedding alignment (%)."""

    deltas: dict[str, float]
    alignment: float


# Table 7 — transliteration variants (English): (family, corpus variant) -> row, in the paper's order.
TABLE7: dict[str, dict[tuple[str, str], AlignmentRow]] = {"en": {
    ("translit", "parallel"): AlignmentRow({"nli": -2.1, "ner": -2.3, "pos": -0.5}, 90.0),
    ("translit+syntax", "parallel"): AlignmentRow({"nli": -5.7, "ner": -14.2, "pos": -2.0}, 57.3),
    ("translit", "nonparallel_same"): AlignmentRow({"nli": -3.8, "ner": -4.1, "pos": -0.7}, 43.0),
    ("translit", "nonparallel_diff"): AlignmentRow({"nli": -5.7, "ner": -14.3, "pos": -1.5}, 11.8),
    ("translit+inv", "parallel"): AlignmentRow({"nli": -19.2, "ner": -51.5, "pos": -42.7}, 0.16),
    ("translit+perm", "parallel"): AlignmentRow({"nli": -27.7, "ner": -46.3, "pos": -59.0}, 0.01),
}}
TABLE7_ROWS = {  # the paper's row names
    ("translit", "parallel"): "parallel", ("translit+syntax", "parallel"): "translit ∘ syntax",
    ("translit", "nonparallel_same"): "non-parallel (same domain)",
    ("translit", "nonparallel_diff"): "non-parallel (different domain)",
    ("translit+inv", "parallel"): "translit ∘ inv", ("translit+perm", "parallel"): "translit ∘ perm",
}
# Spearman ρ between alignment and Δ(BZ−BS) (Table 7's caption): task -> (ρ, p as printed).
TABLE7_SPEARMAN: dict[str, tuple[float, str]] = {"nli": (0.94, "p < .005"), "ner": (0.93, "p < .005"),
                                                 "pos": (0.89, "p < .01")}

# Table 8 — transliteration with different corpus sources: Δ(BZ−BS) averaged over en, fr, hi, ar.
TABLE8: dict[str, dict[str, float]] = {
    "parallel": {"nli": -1.0, "ner": -1.9, "pos": -0.4, "qa": 1.3},
    "nonparallel_same": {"nli": -1.8, "ner": -4.9, "pos": -0.7, "qa": -0.6},
    "nonparallel_diff": {"nli": -5.9, "ner": -22.0, "pos": -4.2, "qa": -2.9},
}
VARIANT_NAMES = {
    "parallel": "parallel (derived = T(original))",
    "nonparallel_same": "non-parallel, same domain",
    "nonparallel_diff": "non-parallel, different domain",
}
