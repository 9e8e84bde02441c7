"""The report's check of the paper's three findings, on rows written by the project's row writer."""

from __future__ import annotations

import pytest
from test_paper_report import align_row, protocol_rows

from xlt_jax.experiments import findings, paper_figures, report

ALL_ALIGNED = ("translit", "translit+inv", "translit+perm", "translit+syntax")


def english_rows(translit_inv_delta: float, aligned: tuple[str, ...] = ALL_ALIGNED) -> list:
    """English POS: translit transfers (Δ(BZ−BS) −1 against Δ(MZ−BS) −80), inv −2, perm −10, and the
    compositions at the given Δ (translit∘perm −40, translit∘syntax −45, without a syntax-alone model);
    alignment falls with Δ(BZ−BS) over the `aligned` transliteration models."""
    scores = {"translit": (90.0, -1.0, -80.0), "inv": (88.0, -2.0, -20.0), "perm": (80.0, -10.0, -25.0),
              "translit+inv": (60.0, translit_inv_delta, -50.0), "translit+perm": (40.0, -40.0, -50.0),
              "translit+syntax": (30.0, -45.0, -50.0)}
    rows = [r for spec, s in scores.items() for r in protocol_rows("en", spec, "pos", s, "parallel")]
    alignment = {"translit": 60.0, "translit+inv": 5.0 if translit_inv_delta < -2 else 70.0, "translit+perm": 0.1,
                 "translit+syntax": 0.05}
    return rows + [align_row("en", spec, "parallel", alignment[spec]) for spec in aligned]


def verdicts(rows) -> dict[tuple[str, str], list[bool | None]]:
    out: dict[tuple[str, str], list[bool | None]] = {}
    for f in findings.check(rows):
        out.setdefault((f.finding, f.task), []).append(f.holds)
    return out


def test_findings_hold_when_the_rows_show_the_papers_effects():
    found = verdicts(english_rows(translit_inv_delta=-30.0))
    assert found[("a", "pos")] == [True]
    assert found[("b", "pos")] == [True, True]  # translit∘inv and translit∘perm; no syntax rows here
    assert found[("c", "pos")] == [True]  # 4 models ranked alike: exact one-sided p = 1/24 < 0.05
    text = "\n".join(findings.markdown(findings.check(english_rows(-30.0))))
    assert "Δ(BZ−BS) -1.0, Δ(MZ−BS) -80.0" in text
    assert "translit∘inv -30.0 vs translit -1.0, inv -2.0" in text
    assert "Spearman ρ +1.00, one-sided exact p = 0.0417 (4 models)" in text


def test_a_perfect_ranking_of_three_models_is_not_called_significant():
    three = english_rows(-30.0, aligned=("translit", "translit+inv", "translit+perm"))
    (c,) = [f for f in findings.check(three) if f.finding == "c"]
    assert c.holds is None and c.verdict() == "positive, not significant"
    assert "Spearman ρ +1.00, one-sided exact p = 0.167 (3 models)" in c.evidence  # 1 of 3! pairings


def test_the_exact_spearman_p_value_counts_pairings_at_least_as_positive():
    assert paper_figures.spearman_greater_p([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1 / 24)
    # ρ = 0.8 (one adjacent swap) is matched or beaten by the identity and the three adjacent swaps.
    assert paper_figures.spearman_greater_p([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 24)
    assert paper_figures.spearman_greater_p([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(1.0)


def test_findings_that_do_not_hold_are_reported_as_such():
    # translit∘inv transfers as well as inversion alone (Δ −1.5 > min(−1, −2)): (b) fails for it; its alignment
    # is now the highest while its Δ is not the highest: ρ over 4 points drops to 0.8, no longer significant.
    rows = english_rows(translit_inv_delta=-1.5)
    found = verdicts(rows)
    assert found[("b", "pos")] == [False, True]
    c = next(f for f in findings.check(rows) if f.finding == "c")
    assert "Spearman ρ +0.80, one-sided exact p = 0.167" in c.evidence
    assert c.verdict() == "positive, not significant"
    # No MZ gap: (a) fails even though Δ(BZ−BS) is small.
    flat = [r for r in rows if not (r.setting == "MZ" and r.eval_transform == "translit")]
    flat += [r.__class__(**{**r.__dict__, "value": 89.0}) for r in rows
             if r.setting == "MZ" and r.eval_transform == "translit"]
    assert verdicts(flat)[("a", "pos")] == [False]


def test_the_report_shows_the_findings_section(tmp_path):
    markdown, _ = report.render(english_rows(-30.0), title="t")
    assert "## The paper's findings, checked at this scale" in markdown
    assert "| (a) transliteration alone transfers | POS | holds |" in markdown
