"""The report renders tables and plots from results.jsonl only.

The metric values below are made up to check the table cells and Δ arithmetic; they stand for no corpus.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from xlt_jax.errors import ConfigError
from xlt_jax.experiments import report
from xlt_jax.results import ResultRow, append_rows, read_rows
from xlt_jax.tables import protocol_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def row(task, metric, setting, value, transform="inv", lang="en", model=None, train_lang="en") -> ResultRow:
    if setting == "":
        train, evaluated = "none", "none"
    else:
        train, evaluated = (transform if setting == "BS" else "none"), transform
    model = model or ("mono-en" if setting == "MZ" else f"bi-en+{transform}")
    return ResultRow(model=model, task=task, lang=lang, train_transform=train, eval_transform=evaluated,
                     setting=setting, metric=metric, value=value, n_examples=200, train_lang=train_lang,
                     commit="f" * 40, time="2024-05-01T12:00:00+00:00")


def experiment_rows() -> list[ResultRow]:
    rows = []
    for transform, bz, bs, mz in (("inv", 60.0, 80.0, 45.0), ("perm", 70.0, 75.0, None),
                                  ("translit+inv", 40.0, 79.0, 33.0)):
        rows += [row("nli", "accuracy", s, v, transform) for s, v in (("BZ", bz), ("BS", bs), ("MZ", mz)) if v]
    rows += [row("pos", "f1", s, v) for s, v in (("BZ", 50.0), ("BS", 90.0), ("MZ", 20.0))]
    rows += [row("pos", "token_accuracy", s, v) for s, v in (("BZ", 85.0), ("BS", 96.0), ("MZ", 40.0))]
    rows += [row("pos", "f1", s, v, "syntax:hi") for s, v in (("BZ", 88.0), ("BS", 89.0), ("MZ", 87.0))]
    rows += [row("ner", "f1", s, v) for s, v in (("BZ", 30.0), ("BS", 70.0), ("MZ", 10.0))]
    rows += [row("tatoeba", "accuracy", s, v, train_lang="") for s, v in (("BZ", 90.0), ("MZ", 5.0))]
    rows += [row("nli", "accuracy", "", v, lang=lang, model="xlm") for lang, v in
             (("fr", 70.0), ("en", 80.0), ("hi", 60.0))]
    rows += [row("pos", "token_accuracy", "", v, lang=lang, model="xlm") for lang, v in (("en", 95.0), ("fr", 85.0))]
    rows += [row("pos", "f1", "", 90.0, model="xlm")]
    return rows


def table_after(markdown: str, first_header: str, heading: str = "") -> list[dict[str, str]]:
    """Rows (header -> cell) of the first markdown table whose header starts with `first_header` (after the
    line `heading`, when given)."""
    lines = markdown.splitlines()
    offset = lines.index(heading) if heading else 0
    start = next(i for i, line in enumerate(lines) if i > offset and line.startswith(f"| {first_header} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    body = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        body.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)))
    return body


def protocol_table_of(markdown: str, task: str, split: str = "dev") -> list[dict[str, str]]:
    return table_after(markdown, "Transformation", f"### {task} (split `{split}`)")


def means(row: dict[str, str], *columns: str) -> list[str]:
    """The mean of each cell ("60.0" of "60.0 ±1.2 n=3 [...]"), "–" where missing."""
    return [row[c].split()[0] for c in columns]


SETTINGS = ("BZ", "BS", "MZ", "Δ(BZ−BS)", "Δ(MZ−BS)")


@pytest.fixture()
def workdir(tmp_path):
    append_rows(tmp_path / "wd", experiment_rows())
    return tmp_path / "wd"


def test_protocol_table_cells(workdir):
    markdown = report.run(workdir)
    headings = [line for line in markdown.splitlines() if line.startswith("### ") and "split" in line]
    assert headings[:5] == [f"### {t} (split `dev`)" for t in ("XNLI acc", "NER F1", "POS F1", "POS token acc",
                                                                "Tatoeba acc")]
    nli = protocol_table_of(markdown, "XNLI acc")
    assert list(nli[0]) == ["Transformation", "Lang", "Model", "MZ model", *SETTINGS]
    assert [r["Transformation"] for r in nli] == ["Inversion", "Permutation", "Transliteration ∘ Inversion"]
    inv, perm, translit_inv = nli
    assert (inv["Lang"], inv["Model"], inv["MZ model"]) == ("en", "bi-en+inv", "mono-en")
    assert means(inv, *SETTINGS) == ["60.0", "80.0", "45.0", "-20.0", "-35.0"]
    assert inv["BZ"] == "60.0 n=1"  # one seed: no spread to show
    assert means(perm, "BZ", "MZ", "Δ(BZ−BS)", "Δ(MZ−BS)") == ["70.0", "–", "-5.0", "–"]
    assert means(translit_inv, "Δ(BZ−BS)") == ["-39.0"]
    assert [r["Transformation"] for r in protocol_table_of(markdown, "POS F1")] == ["Inversion", "Syntax (hi)"]
    assert means(protocol_table_of(markdown, "POS F1")[1], "Δ(BZ−BS)", "Δ(MZ−BS)") == ["-1.0", "-2.0"]
    assert [r["Transformation"] for r in protocol_table_of(markdown, "POS token acc")] == ["Inversion"]
    assert means(protocol_table_of(markdown, "POS token acc")[0], "Δ(BZ−BS)", "Δ(MZ−BS)") == ["-11.0", "-56.0"]
    assert means(protocol_table_of(markdown, "NER F1")[0], "Δ(BZ−BS)", "Δ(MZ−BS)") == ["-40.0", "-60.0"]
    assert means(protocol_table_of(markdown, "Tatoeba acc")[0], *SETTINGS[:4]) == ["90.0", "–", "5.0", "–"]
    assert "Corpus" not in nli[0]  # no row has a corpus label
    assert not any(line.startswith("† ") for line in markdown.splitlines())  # no seed mismatch to mark


def seeded_rows(model: str, per_setting: dict[str, dict[int, float]], corpus: str = "") -> list[ResultRow]:
    """XNLI rows of one bilingual model (and its twin) over fine-tuning seeds."""
    rows = []
    for setting, by_seed in per_setting.items():
        for seed, value in by_seed.items():
            r = row("nli", "accuracy", setting, value, "translit", model=model if setting != "MZ" else "mono-en")
            rows.append(dataclasses.replace(r, seed=seed, corpus=corpus, twin=model if setting == "MZ" else ""))
    return rows


def test_cells_show_seeds_spread_and_t_interval_and_mark_different_seed_sets(tmp_path):
    bz, bs, mz = {1: 74.1, 2: 73.4, 3: 75.0}, {1: 75.8, 2: 76.3}, {1: 33.6, 2: 31.9}
    append_rows(tmp_path, seeded_rows("bi-en-translit", {"BZ": bz, "BS": bs, "MZ": mz}))
    markdown = report.run(tmp_path)
    (cells,) = protocol_table_of(markdown, "XNLI acc")
    values = list(bz.values())
    mean, sd = np.mean(values), np.std(values, ddof=1)
    half = scipy.stats.t.ppf(0.975, 2) * sd / np.sqrt(3)
    assert cells["BZ"] == f"{mean:.1f} ±{sd:.1f} n=3 [{mean - half:.1f}, {mean + half:.1f}]"
    assert cells["BS"] == f"{np.mean(list(bs.values())):.1f} ±{np.std(list(bs.values()), ddof=1):.1f} n=2"
    paired = [bz[s] - bs[s] for s in (1, 2)]  # seed 3 has no BS: left out of the Δ
    assert cells["Δ(BZ−BS)"] == f"{np.mean(paired):+.1f} ±{np.std(paired, ddof=1):.1f} n=2 †"
    assert not cells["Δ(MZ−BS)"].endswith("†")  # MZ and BS share their seeds
    note = next(line for line in markdown.splitlines() if line.startswith("† "))
    assert note == ("† Transliteration / en / `bi-en-translit`, Δ(BZ−BS): BZ has seeds {1, 2, 3}, BS has {1, 2}; "
                    "the Δ is over the shared seeds {1, 2}.")


def test_two_models_of_one_language_and_transform_are_two_rows_and_two_bars(tmp_path):
    parallel = seeded_rows("bi-en-translit", {"BZ": {1: 74.1}, "BS": {1: 76.2}, "MZ": {1: 33.6}}, "parallel")
    nonparallel = seeded_rows("bi-en-translit", {"BZ": {1: 72.4}, "BS": {1: 76.2}, "MZ": {1: 33.1}},
                              "nonparallel-same")
    append_rows(tmp_path, parallel + nonparallel)
    table = protocol_table_of(report.run(tmp_path), "XNLI acc")
    assert [(r["Model"], r["Corpus"], *means(r, "BZ", "Δ(BZ−BS)")) for r in table] == [
        ("bi-en-translit", "nonparallel-same", "72.4", "-3.8"), ("bi-en-translit", "parallel", "74.1", "-2.1")]
    bars = report.delta_figure(protocol_table(read_rows(tmp_path)), "delta_bz_bs").axes[0].containers
    assert sorted(c.patches[0].get_height() for c in bars) == pytest.approx([-3.8, -2.1])
    assert len({c.get_label() for c in bars}) == 2


def test_crosslingual_table_cells(workdir):
    table = table_after(report.run(workdir), "Task")
    assert list(table[0]) == ["Task", "en", "fr", "hi", "avg"]  # source language first
    by_task = {r["Task"]: r for r in table}
    assert list(by_task) == ["XNLI acc", "POS F1", "POS token acc"]
    assert list(by_task["XNLI acc"].values())[1:] == ["80.0", "70.0", "60.0", "70.0"]
    assert list(by_task["POS token acc"].values())[1:] == ["95.0", "85.0", "–", "90.0"]
    assert list(by_task["POS F1"].values())[1:] == ["90.0", "–", "–", "90.0"]


def test_delta_figures_have_one_bar_per_delta(workdir):
    entries = protocol_table(read_rows(workdir / "results.jsonl"))
    for field in report.DELTAS:
        expected = sorted(getattr(e, field) for e in entries if getattr(e, field) is not None)
        ax = report.delta_figure(entries, field).axes[0]
        bars = ax.patches
        assert len(bars) == len(expected) == {"delta_bz_bs": 7, "delta_mz_bs": 6}[field]
        assert sorted(b.get_height() for b in bars) == pytest.approx(expected)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["XNLI acc", "NER F1", "POS F1", "POS token acc"]
    assert report.delta_figure([], "delta_bz_bs") is None
    colours = [{c.get_label(): c.patches[0].get_facecolor() for c in report.delta_figure(entries, f).axes[0].containers}
               for f in report.DELTAS]
    assert len(set(colours[0].values())) == len(colours[0])  # one colour per transformation
    assert all(colours[0][name] == colour for name, colour in colours[1].items())  # the same in both plots


def test_outputs_written_atomically_and_stale_plots_removed(workdir, tmp_path):
    out = tmp_path / "out"
    markdown = report.run(workdir, out)
    # No temporary files left; Figure 2 of the paper section has the translit+inv rows to draw.
    assert sorted(os.listdir(out)) == ["delta_bz_bs.png", "delta_mz_bs.png", "fig2_compositions.png", "report.md"]
    assert (out / "report.md").read_text("utf-8") == markdown
    assert "![Δ(BZ−BS)](delta_bz_bs.png)" in markdown
    for name in ("delta_bz_bs.png", "delta_mz_bs.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width >= 600 and height >= 300

    only_crosslingual = report.run(workdir, out, select=["model=xlm"])
    assert sorted(os.listdir(out)) == ["report.md"]
    assert "No BZ / BS / MZ rows yet." in only_crosslingual and "No Δ(BZ−BS) values to plot." in only_crosslingual
    assert table_after(only_crosslingual, "Task")[0]["en"] == "80.0"


def test_selection_and_its_errors(workdir):
    markdown = report.run(workdir, select=["eval_transform=perm"])
    assert [r["Transformation"] for r in table_after(markdown, "Transformation")] == ["Permutation"]
    assert "No cross-lingual rows yet" in markdown
    assert "No BZ / BS / MZ rows yet." in report.run(workdir, select=["extra.run=1"])
    with pytest.raises(ConfigError, match="--select 'colour=red'"):
        report.run(workdir, select=["colour=red"])


def test_transform_labels():
    assert report.transform_label("translit+inv") == "Transliteration ∘ Inversion"
    assert report.transform_label("syntax:fr") == "Syntax (fr)"
    assert report.transform_label("perm@word") == "Permutation (word-level)"
    assert report.transform_label("none") == "Original"
    assert report.transform_label("mystery") == "mystery"


def test_cli_end_to_end(workdir, tmp_path):
    path = workdir / "results.jsonl"
    data = path.read_bytes()
    path.write_bytes(data + data[: data.index(b"\n") // 2])  # a crashed writer's partial last row
    out = tmp_path / "cli_out"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-m", "xlt_jax.experiments.report", str(workdir), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (out / "report.md").read_text("utf-8")
    partial_line = data.count(b"\n") + 1
    assert f"{path}:{partial_line}:" in done.stderr  # the truncated row is named, then skipped
    assert protocol_table_of(done.stdout, "XNLI acc")[0]["Δ(BZ−BS)"] == "-20.0 n=1"
    assert (out / "delta_mz_bs.png").read_bytes().startswith(PNG_SIGNATURE)

    missing = subprocess.run([sys.executable, "-m", "xlt_jax.experiments.report", str(tmp_path / "nowhere")],
                             capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 1
    assert "nowhere/results.jsonl: results file does not exist" in missing.stderr
