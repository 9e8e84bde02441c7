"""The report's check of the paper's three findings, on rows written by the project's row writer."""

from __future__ import annotations

from test_paper_report import align_row, protocol_rows

from xlt_jax.experiments import findings, report


def english_rows(translit_inv_delta: float) -> list:
    """English POS: translit transfers (Δ(BZ−BS) −1 against Δ(MZ−BS) −80), inv −2, perm −10, and the
    compositions at the given Δ (translit∘perm always −40); alignment falls with Δ(BZ−BS)."""
    scores = {"translit": (90.0, -1.0, -80.0), "inv": (88.0, -2.0, -20.0), "perm": (80.0, -10.0, -25.0),
              "translit+inv": (60.0, translit_inv_delta, -50.0), "translit+perm": (40.0, -40.0, -50.0)}
    rows = [r for spec, s in scores.items() for r in protocol_rows("en", spec, "pos", s, "parallel")]
    alignment = {"translit": 60.0, "translit+inv": 5.0 if translit_inv_delta < -2 else 70.0, "translit+perm": 0.1}
    return rows + [align_row("en", spec, "parallel", value) for spec, value in alignment.items()]


def verdicts(rows) -> dict[tuple[str, str], list[bool | None]]:
    out: dict[tuple[str, str], list[bool | None]] = {}
    for f in findings.check(rows):
        out.setdefault((f.finding, f.task), []).append(f.holds)
    return out


def test_findings_hold_when_the_rows_show_the_papers_effects():
    found = verdicts(english_rows(translit_inv_delta=-30.0))
    assert found[("a", "pos")] == [True]
    assert found[("b", "pos")] == [True, True]  # translit∘inv and translit∘perm; no syntax rows here
    assert found[("c", "pos")] == [True]
    text = "\n".join(findings.markdown(findings.check(english_rows(-30.0))))
    assert "Δ(BZ−BS) -1.0, Δ(MZ−BS) -80.0" in text
    assert "translit∘inv -30.0 vs translit -1.0, inv -2.0" in text


def test_findings_that_do_not_hold_are_reported_as_such():
    # translit∘inv transfers as well as inversion alone (Δ −1.5 > min(−1, −2)): (b) fails for it; its alignment
    # is now the highest while its Δ is not the lowest: ρ over 3 points drops.
    rows = english_rows(translit_inv_delta=-1.5)
    found = verdicts(rows)
    assert found[("b", "pos")] == [False, True]
    rho = next(f for f in findings.check(rows) if f.finding == "c").evidence
    assert "Spearman ρ +0.50" in rho
    # No MZ gap: (a) fails even though Δ(BZ−BS) is small.
    flat = [r for r in rows if not (r.setting == "MZ" and r.eval_transform == "translit")]
    flat += [r.__class__(**{**r.__dict__, "value": 89.0}) for r in rows
             if r.setting == "MZ" and r.eval_transform == "translit"]
    assert verdicts(flat)[("a", "pos")] == [False]


def test_the_report_shows_the_findings_section(tmp_path):
    markdown, _ = report.render(english_rows(-30.0), title="t")
    assert "## The paper's findings, checked at this scale" in markdown
    assert "| (a) transliteration alone transfers | POS | holds |" in markdown
