"""Render the paper-style report from `WORKDIR/results.jsonl` only.

  python -m xlt_jax.experiments.report WORKDIR [--out DIR] [--select FIELD=VALUE ...] [--source en]

Writes `report.md` and the Δ bar plots (`delta_bz_bs.png`, `delta_mz_bs.png`) into DIR (default
WORKDIR/report), each atomically, and prints the markdown. Contents:
  (a) the protocol table of Deshpande et al. (2022), Table 3, one per task headline metric: a row per
      transformation, language and bilingual model (with its monolingual twin and corpus variant), columns
      BZ, BS, MZ, Δ(BZ−BS), Δ(MZ−BS), each with its seed count and spread; a Δ is paired by seed and marked
      when its settings were run with different seeds;
  (b) cross-lingual tables (fine-tuned on the source language, evaluated on every language with rows):
      one per model and corpus variant, rows = tasks, columns = languages and the XTREME-style average;
  (c) grouped bar plots of Δ(BZ−BS) and Δ(MZ−BS) per task, transformation and model;
  (d) the paper's Tables 3, 5, 6, 7, 8 and Figures 2–5 with its numbers beside ours (`paper_report.py`).
Every number of ours comes from the rows; a missing cell is shown as "–".
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import io
import os
import sys
from collections.abc import Iterable, Sequence

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xlt_jax import results, storage, tables
from xlt_jax.errors import ConfigError, XltError
from xlt_jax.experiments import findings, paper_report
from xlt_jax.results import ResultRow
from xlt_jax.tables import CrossLingualEntry, ProtocolEntry, SeedStats

MISSING = "–"
SEED_MARK = "†"
CELL_LEGEND = (
    "Cells: mean over fine-tuning seeds, ±sample standard deviation (2+ seeds), n = seeds, [95% t-interval of the "
    "mean] (3+ seeds). Δ: mean of the per-seed differences over the seeds both settings have; "
    f"{SEED_MARK} marks a Δ whose settings have different seed sets (footnote below the table). Model: the "
    "bilingual model (BZ, BS); MZ model: its monolingual twin."
)
REPORT_FILE = "report.md"
DELTAS = {"delta_bz_bs": "Δ(BZ−BS)", "delta_mz_bs": "Δ(MZ−BS)"}  # ProtocolEntry field -> label; PNG <field>.png
SETTING_COLUMNS = ("BZ", "BS", "MZ", *DELTAS.values())

TASK_ORDER = ("nli", "ner", "pos", "qa", "tatoeba")  # REFERENCE_SPEC §4.1 order; other tasks follow by name
TASK_NAMES = {"nli": "XNLI", "ner": "NER", "pos": "POS", "qa": "XQuAD", "tatoeba": "Tatoeba"}
METRIC_NAMES = {"accuracy": "acc", "f1": "F1", "token_accuracy": "token acc", "exact_match": "EM"}
PART_ORDER = ("inv", "perm", "translit", "syntax")
PART_NAMES = {"inv": "Inversion", "perm": "Permutation", "translit": "Transliteration", "syntax": "Syntax"}


# ------------------------------------------------------------------------------------------------------
# Labels and ordering


def task_label(task: str, metric: str) -> str:
    return f"{TASK_NAMES.get(task, task)} {METRIC_NAMES.get(metric, metric)}"


def _task_key(task: str, metric: str) -> tuple:
    rank = TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER)
    return rank, task, metric


def _split_part(part: str) -> tuple[str, str]:
    """("inv", "@word") / ("syntax", ":hi") / ("translit", "[keep_fraction=0.5]") for one spec part."""
    for base in PART_ORDER:
        if part.startswith(base):
            return base, part[len(base):]
    return part, ""


def transform_label(spec: str) -> str:
    """Readable name of a transform spec: `translit+inv` -> "Transliteration ∘ Inversion" (the paper's ∘)."""
    if spec.strip().lower() in ("", results.IDENTITY):
        return "Original"
    names = []
    for part in spec.split("+"):
        base, rest = _split_part(part.strip())
        name = PART_NAMES.get(base, base)
        if rest.startswith(":"):
            name += f" ({rest[1:]})"
        elif rest.startswith("@"):
            name += f" ({rest[1:]}-level)"
        elif rest:
            name += f" {rest}"
        names.append(name)
    return " ∘ ".join(names)


def _transform_key(spec: str) -> tuple:
    """Single transformations in the paper's order (Inversion, Permutation, Transliteration, Syntax),
    then compositions."""
    parts = [_split_part(p.strip())[0] for p in spec.split("+")]
    ranks = tuple(PART_ORDER.index(p) if p in PART_ORDER else len(PART_ORDER) for p in parts)
    return len(parts), ranks, spec


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return MISSING
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _markdown_table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


# ------------------------------------------------------------------------------------------------------
# (a) protocol table


def stats_text(stats: SeedStats | None, signed: bool = False) -> str:
    """`mean ±sd n=N [low, high]`: sd from 2 seeds on, the 95% t-interval of the mean from 3 on."""
    if stats is None:
        return MISSING
    text = _fmt(stats.mean, signed)
    if stats.sd is not None:
        text += f" ±{stats.sd:.1f}"
    text += f" n={stats.n}"
    if stats.ci95 is not None:
        text += f" [{_fmt(stats.ci95[0], signed)}, {_fmt(stats.ci95[1], signed)}]"
    return text


def _seed_set(seeds: Iterable[int]) -> str:
    return "{" + ", ".join(str(s) for s in seeds) + "}"


def _row_label(e: ProtocolEntry) -> str:
    corpus = f", corpus `{e.corpus}`" if e.corpus else ""
    return f"{transform_label(e.transform)} / {e.lang} / `{e.model or MISSING}`{corpus}"


def seed_mismatch_note(e: ProtocolEntry, delta: str) -> str:
    """Footnote of a Δ whose two settings were run with different seeds: which seeds it uses and why."""
    first, second = tables.DELTA_SETTINGS[delta]
    used = e.deltas[delta].seeds if delta in e.deltas else ()
    over = f"over the shared seeds {_seed_set(used)}" if used else "undefined: no seed in common"
    return (f"{SEED_MARK} {_row_label(e)}, {DELTAS[delta]}: {first} has seeds {_seed_set(e.scores[first].seeds)}, "
            f"{second} has {_seed_set(e.scores[second].seeds)}; the Δ is {over}.")


def _entry_cells(e: ProtocolEntry) -> tuple[list[str], list[str]]:
    """The five setting cells of an entry and the footnotes of its marked Δs."""
    cells = [stats_text(e.scores.get(s)) for s in tables.PROTOCOL_SETTINGS]
    notes = []
    for delta in DELTAS:
        text = stats_text(e.deltas.get(delta), signed=True)
        if e.seed_mismatch(delta):
            text += f" {SEED_MARK}"
            notes.append(seed_mismatch_note(e, delta))
        cells.append(text)
    return cells, notes


def _protocol_task_table(entries: Sequence[ProtocolEntry]) -> list[str]:
    """One task metric: rows (transformation, lang, bilingual model[, corpus]), columns the five settings."""
    with_corpus = any(e.corpus for e in entries)
    header = ["Transformation", "Lang", "Model", "MZ model", *(["Corpus"] if with_corpus else []),
              *SETTING_COLUMNS]
    body, notes = [], []
    for e in sorted(entries, key=lambda e: (_transform_key(e.transform), e.lang, e.model, e.corpus, e.mz_model)):
        cells, cell_notes = _entry_cells(e)
        corpus = [e.corpus or MISSING] if with_corpus else []
        body.append([transform_label(e.transform), e.lang, e.model or MISSING, e.mz_model or MISSING, *corpus, *cells])
        notes += cell_notes
    return _markdown_table(header, body) + ([""] + notes if notes else [])


def protocol_markdown(entries: Sequence[ProtocolEntry]) -> list[str]:
    """Table 3 of the paper, one table per (split, task metric): a row per transformation, language and
    bilingual model (two models of one language and transformation are two rows), cells over seeds."""
    if not entries:
        return ["No BZ / BS / MZ rows yet."]
    lines = [CELL_LEGEND, ""]
    task_tables = sorted({(e.split, e.task, e.metric) for e in entries}, key=lambda k: (k[0], _task_key(*k[1:])))
    for split, task, metric in task_tables:
        chosen = [e for e in entries if (e.split, e.task, e.metric) == (split, task, metric)]
        lines += [f"### {task_label(task, metric)} (split `{split}`)", ""] + _protocol_task_table(chosen) + [""]
    return lines[:-1]


# ------------------------------------------------------------------------------------------------------
# (b) cross-lingual tables


def crosslingual_markdown(entries: Sequence[CrossLingualEntry], source: str) -> list[str]:
    """One table per (model, split): rows = tasks, columns = languages (source first) and the average."""
    if not entries:
        return [f"No cross-lingual rows yet (setting \"\", original data, fine-tuned on {source})."]
    lines: list[str] = []
    groups: dict[tuple[str, str, str], list[CrossLingualEntry]] = collections.defaultdict(list)
    for e in entries:
        groups[(e.model, e.corpus, e.split)].append(e)
    for (model, corpus, split), group in sorted(groups.items()):
        langs = sorted({lang for e in group for lang in e.values}, key=lambda lang: (lang != source, lang))
        header = ["Task", *langs, "avg"]
        body = [
            [task_label(e.task, e.metric), *(_fmt(e.values.get(lang)) for lang in langs), _fmt(e.average)]
            for e in sorted(group, key=lambda e: _task_key(e.task, e.metric))
        ]
        corpus_label = f", corpus `{corpus}`" if corpus else ""
        lines += [f"### `{model}`{corpus_label} (split `{split}`)", ""] + _markdown_table(header, body) + [""]
    return lines[:-1]


# ------------------------------------------------------------------------------------------------------
# (c) bar plots


def delta_figure(entries: Sequence[ProtocolEntry], field: str) -> Figure | None:
    """Grouped bars of one Δ (`delta_bz_bs` or `delta_mz_bs`): groups = task metrics, one bar per
    transformation (and language/split/model when there are several); None when no entry has that Δ.
    A transformation keeps its colour across both plots of the same entries."""
    if field not in DELTAS:
        raise ValueError(f"field: expected one of {sorted(DELTAS)}, got {field!r}")
    present = [e for e in entries if getattr(e, field) is not None]
    if not present:
        return None
    several_langs = len({e.lang for e in entries}) > 1
    several_splits = len({e.split for e in entries}) > 1
    several_models = len({(e.model, e.corpus, e.mz_model) for e in entries}) > 1

    def series_of(e: ProtocolEntry) -> str:
        label = transform_label(e.transform)
        label += f" [{e.lang}]" if several_langs else ""
        label += f" ({e.split})" if several_splits else ""
        if several_models:  # two models of one transformation are two bars, never one on top of the other
            label += f" {e.model or e.mz_model}" + (f"/{e.corpus}" if e.corpus else "")
        return label

    def order(e: ProtocolEntry) -> tuple:
        return _transform_key(e.transform), e.lang, e.split, e.model, e.corpus, e.mz_model

    colour_index = {name: i for i, name in enumerate(dict.fromkeys(series_of(e) for e in sorted(entries, key=order)))}
    palette = colormaps["tab10"]
    groups = sorted({(e.task, e.metric) for e in present}, key=lambda tm: _task_key(*tm))
    ordered = sorted(present, key=order)
    series = list(dict.fromkeys(series_of(e) for e in ordered))
    width = 0.8 / len(series)
    fig = Figure(figsize=(max(6.0, 1.0 + 0.35 * len(present)), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for j, name in enumerate(series):
        points = [(groups.index((e.task, e.metric)), getattr(e, field)) for e in ordered if series_of(e) == name]
        offset = (j - (len(series) - 1) / 2) * width
        ax.bar([g + offset for g, _ in points], [v for _, v in points], width, label=name,
               color=palette(colour_index[name] % palette.N))
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)), [task_label(*tm) for tm in groups])
    ax.set_ylabel(f"{DELTAS[field]} (points)")
    ax.set_title(f"{DELTAS[field]} per task and transformation")
    ax.yaxis.grid(True, alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: never hides a bar
    return fig


def figure_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")  # "tight" keeps the outside legend in the image
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------------
# Whole report


def _provenance(rows: Sequence[ResultRow]) -> list[str]:
    commits = collections.Counter(r.commit for r in rows)
    listed = ", ".join(f"`{c}` ({n})" for c, n in commits.most_common())
    times = sorted(r.time for r in rows)
    span = f"; written {times[0]} … {times[-1]}" if times else ""
    return [f"{len(rows)} rows from commits {listed or MISSING}{span}."]


def render(rows: Sequence[ResultRow], *, title: str, source: str = "en") -> tuple[str, dict[str, Figure | None]]:
    """The markdown of the report and its figures by file stem (None: no data for that plot)."""
    protocol = tables.protocol_table(rows)
    figures = {field: delta_figure(protocol, field) for field in DELTAS}
    lines = [f"# Results: {title}", ""] + _provenance(rows) + [
        "",
        "## Derived-language protocol (Deshpande et al. 2022), per model",
        "",
        "BZ: bilingual model fine-tuned on the original language, evaluated on the derived one; BS: bilingual "
        "model fine-tuned and evaluated on the derived language; MZ: monolingual model fine-tuned on the "
        "original, evaluated on the derived language. Δ are differences in points on each task's metric.",
        "",
    ]
    lines += protocol_markdown(protocol)
    for field, label in DELTAS.items():
        lines += ["", f"![{label}]({field}.png)" if figures[field] else f"No {label} values to plot."]
    lines += [
        "",
        f"## Cross-lingual transfer (fine-tuned on `{source}`)",
        "",
        "avg: mean over the languages evaluated for that task (XTREME-style, source language included).",
        "",
    ]
    lines += crosslingual_markdown(tables.crosslingual_table(rows, source=source), source)
    checked = findings.check(rows, lang=source)
    if checked:
        lines += ["", "## The paper's findings, checked at this scale", "", findings.__doc__.split("\n\n")[0], ""]
        lines += findings.markdown(checked)
    paper_lines, paper_figures = paper_report.section(rows)
    lines += ["", *paper_lines]
    return "\n".join(lines) + "\n", figures | paper_figures


def parse_selection(pairs: Sequence[str]) -> dict[str, str]:
    """["model=x", "extra.run=3"] -> {"model": "x", "extra.run": "3"}; ConfigError names a bad item."""
    known = {f.name for f in dataclasses.fields(ResultRow)} - {"extra"}
    selection = {}
    for item in pairs:
        name, sep, value = item.partition("=")
        if not sep or not (name in known or (name.startswith("extra.") and len(name) > len("extra."))):
            raise ConfigError(f"--select {item!r}: expected FIELD=VALUE with FIELD in {sorted(known)} or extra.KEY")
        selection[name] = value
    return selection


def run(workdir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
        select: Sequence[str] = (), source: str = "en") -> str:
    """Render the report of `workdir` into `out_dir` (default WORKDIR/report) and return the markdown.

    `select` keeps only rows whose fields (or `extra.KEY`) equal the given values, compared as text.
    """
    workdir = storage.workdir_path(workdir)
    out = storage.workdir_path(out_dir) if out_dir is not None else workdir / "report"
    selection = parse_selection(select)
    rows = [
        r for r in results.read_rows(results.results_path(workdir))
        if all(str(results.field_value(r, name)) == value for name, value in selection.items())
    ]
    title = workdir.name + (f" ({', '.join(select)})" if select else "")
    markdown, figures = render(rows, title=title, source=source)
    out.mkdir(parents=True, exist_ok=True)
    for stem, fig in figures.items():
        target = out / f"{stem}.png"
        if fig is not None:
            storage.atomic_write(target, figure_png(fig))
        elif target.exists():  # a stale plot from an earlier run must not pass for this one
            target.unlink()
    storage.atomic_write(out / REPORT_FILE, markdown.encode("utf-8"))
    return markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.experiments.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", help="directory holding results.jsonl")
    parser.add_argument("--out", default=None, help="output directory (default WORKDIR/report)")
    parser.add_argument("--select", action="append", default=[], metavar="FIELD=VALUE",
                        help="keep only matching rows (repeatable; FIELD may be extra.KEY)")
    parser.add_argument("--source", default="en", help="fine-tuning language of the cross-lingual tables")
    args = parser.parse_args(argv)
    try:
        markdown = run(args.workdir, args.out, select=args.select, source=args.source)
    except XltError as e:
        sys.exit(f"error: {e}")
    print(markdown, end="")


if __name__ == "__main__":
    main()
