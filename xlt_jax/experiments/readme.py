r"""Regenerate the README's measured sections from the files runs wrote; no figure is typed by hand.

    python -m xlt_jax.experiments.readme [--readme README.md] [--runs runs]

Each section sits between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->` and is rebuilt from:
  fidelity      runs/fidelity/*/compare.json + curves.jsonl (`python -m xlt_jax.interop.compare`)
  performance   runs/bench/*.json, the JSON line each `python -m xlt_jax.bench ...` ends with
  replicate     runs/replicate/ (`make replicate`): its report and the run record
  control       runs/replicate_treebank/ (the corpus control, `configs/experiments/replicate.py:corpus=treebank`)
                beside runs/replicate_lang/ (the last complete grid, on the previous recipe's `lang:en` text)
  parser        runs/parse/*.json (`python -m xlt_jax.data.parse train --lang L --record runs/parse/L.json`)
A section whose inputs are missing is left as it is (and said so), so a partial rerun never blanks the
README. Every section names the command, machine, date, wall time and commit that produced it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

BEGIN = "<!-- generated:{name} -->"
END = "<!-- /generated:{name} -->"


def provenance_line(record: Mapping[str, Any]) -> str:
    wall = f", {record['wall_s'] / 60:.0f} min" if record.get("wall_s") else ""
    commit = str(record.get("commit", "unknown"))[:12]
    allocator = ALLOCATORS.get(str(record.get("host_allocator")), "")  # absent in records from before it
    return f"{record.get('machine', '?')}, {record.get('date', '?')}{wall}, commit `{commit}`{allocator}"


ALLOCATORS = {"retain": ", host memory retained (`xlt_jax.host_allocator`)",
              "system": ", glibc's default allocator (`XLT_HOST_ALLOCATOR=system`)"}  # fmt: skip


# -- fidelity ------------------------------------------------------------------------------------------


def _eval_points(curves: pathlib.Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in curves.read_text().splitlines() if line.strip()]
    return [r for r in rows if any(k.endswith("/eval_loss") for k in r)]


def fidelity_section(runs: pathlib.Path) -> str | None:
    found = sorted(runs.glob("fidelity/*/compare.json"))
    if not found:
        return None
    parts = []
    for path in found:
        summary = json.loads(path.read_text())
        evals = _eval_points(path.parent / "curves.jsonl")
        tokens = summary.get("tokens_per_step", 0)
        lines = [
            f"**{path.parent.name}** — `{summary.get('command', '')}`",
            "",
            f"{provenance_line(summary)}; held-out MLM loss (nats) of each model on the same held-out batches:",
            "",
            "| step | tokens | xlt_jax | Hugging Face | Δ |",
            "|---|---|---|---|---|",
        ]
        stride = max(1, len(evals) // 10)
        for r in evals[::stride] + ([evals[-1]] if (len(evals) - 1) % stride else []):
            ours, theirs = r.get("xlt_jax/eval_loss"), r.get("hf/eval_loss")
            delta = f"{ours - theirs:+.3f}" if ours is not None and theirs is not None else "–"
            lines.append(
                f"| {r['step']} | {r['step'] * tokens / 1e6:.1f} M | {_fmt(ours, 3)} | {_fmt(theirs, 3)} | {delta} |"
            )
        trained = [name for name in ("xlt_jax", "hf") if f"{name}_final_eval_loss" in summary]
        exits = [f"{name} " + (f"at step {step}" if (step := summary.get(f"{name}_plateau_exit_step")) else "never")
                 for name in trained]
        gap = summary.get("max_eval_loss_gap")
        lines += [
            "",
            f"Left the plateau (held-out loss 0.3 nats below its level a quarter into the run): {', '.join(exits)}."
            + (f" Largest held-out gap: {gap:.3f} nats." if gap is not None else " (xlt_jax alone.)"),
        ]
        figure = publish_figure(path.parent / "curves.png", f"fidelity_{path.parent.name}.png")
        if figure:
            lines += ["", f"![{path.parent.name}: training and held-out loss, xlt_jax and Hugging Face]({figure})"]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


FIGURES = pathlib.Path("docs") / "figures"


def publish_figure(source: pathlib.Path, name: str) -> str | None:
    """Copy a run's plot into docs/figures/ (committed, unlike runs/) and return its README path."""
    if not source.is_file():
        return None
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / name).write_bytes(source.read_bytes())
    return (FIGURES / name).as_posix()


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# -- performance ---------------------------------------------------------------------------------------


def performance_section(runs: pathlib.Path) -> str | None:
    benches = {p.stem: json.loads(p.read_text()) for p in sorted(runs.glob("bench/*.json"))}
    return performance_section_of(benches) if benches else None


def performance_section_of(benches: Mapping[str, Mapping[str, Any]]) -> str:
    """The tables of the benchmarks present, by name (peer, train, input, profile, tpu)."""
    parts = []
    for name in sorted(b for b in benches if b == "peer" or b.startswith("peer_")):  # e.g. peer_system
        parts.append(_peer_table(benches[name]))
    for name in sorted(b for b in benches if b == "train" or b.startswith("train_")):  # e.g. train_512
        parts.append(_train_table(benches[name]))
    if "input" in benches:
        parts.append(_input_table(benches["input"]))
    if "profile" in benches:
        parts.append(_profile_table(benches["profile"]))
    if "tpu" in benches:
        parts.append(_tpu_table(benches["tpu"]))
    return "\n\n".join(parts)


def _configs(figures: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {k: v for k, v in figures.items() if isinstance(v, dict) and k not in ("mesh",)}


def _peer_table(f: Mapping[str, Any]) -> str:
    rows = [
        f"**xlt_jax vs Hugging Face PyTorch** (`{f.get('command', 'python -m xlt_jax.bench peer')}`): "
        f"{provenance_line(f)}; fp32, dropout 0.1, AdamW + clipping, torch {f.get('torch')} with "
        f"{f.get('torch_threads')} threads, alternating rounds{_peer_peaks(f)}.",
        "",
        "| config | model | V | batch | xlt_jax layers, predictions | xlt_jax tok/s | HF tok/s | ×HF "
        "| HF masked-only tok/s | ×masked |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in _configs(f).items():
        group = int(r.get("mlm_group_size", 1))
        predictions = f"groups of {group}" if group > 1 else "per sequence"
        if r.get("last_layer_predicted_only"):
            predictions += "; last layer on them only"
        if r.get("prediction_tiers", 1) > 1 and "gathered_rows" in r:  # the tier the head projected
            predictions += f"; head on {r['projected_rows']} of {r['gathered_rows']} rows"
        rows.append(
            f"| {name} | {r['model']} | {r['vocab']:,} | {r['batch']}×{r['seq_len']} | "
            f"{r.get('layers', 'scan')}, {predictions} | {r['tokens_per_s']:,.0f} | "
            f"{r['hf_tokens_per_s']:,.0f} | {r['ratio_vs_hf']:.2f} | {r['hf_masked_tokens_per_s']:,.0f} | "
            f"{r['ratio_vs_hf_masked']:.2f} |"
        )
    return "\n".join(rows)


def _peer_peaks(f: Mapping[str, Any]) -> str:
    """Each framework's fp32 matmul peak in the run: the ratios follow them from machine to machine."""
    if "jax_matmul_peak_flops" not in f or "torch_matmul_peak_flops" not in f:
        return ""
    return (f"; fp32 2048³ matmul peak: jax {f['jax_matmul_peak_flops'] / 1e9:.0f}, torch "
            f"{f['torch_matmul_peak_flops'] / 1e9:.0f} GFLOP/s")


def _train_table(f: Mapping[str, Any]) -> str:
    rows = [
        f"**Train step against the matmul peak** (`{f.get('command', 'python -m xlt_jax.bench train')}`): "
        f"{provenance_line(f)}; batch {f.get('batch')} × {f.get('seq_len')}, V = {f.get('vocab'):,}, fp32"
        f"{_balance(f)}.",
        "",
        "| model | layers | step s | tok/s | % of fp32 matmul peak (median / best step) | compile s "
        "| its matmuls alone s (GFLOP/s) | optimizer update alone s | ceiling, % of peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in _configs(f).items():
        floor = (
            f"{r['matmul_s']:.3f} ({r['matmul_flops_per_s_alone'] / 1e9:.0f}) | {r['update_s']:.3f} | "
            f"{100 * r['ceiling_fraction_of_peak']:.1f}"
            if "matmul_s" in r
            else "– | – | –"
        )
        rows.append(
            f"| {name.split('/')[0]} | {_layers_label(r)} | {r['step_s']:.3f} | {r['tokens_per_s']:,.0f} | "
            f"{100 * r['fraction_of_peak']:.1f} / {100 * r['fraction_of_peak_best']:.1f} | {r['compile_s']:.1f}"
            f"{' (cache hit)' if r.get('compile_cache_hit') else ''} | {floor} |"
        )
    return "\n".join(rows)


def _balance(f: Mapping[str, Any]) -> str:
    """"; memory 21.0 GB/s, peak / memory 10.2 FLOP/byte" when the record measured it (bench.train.stream_bandwidth)."""
    if "stream_bytes_per_s" not in f or "peak_flops_per_byte" not in f:
        return ""
    return f"; memory {f['stream_bytes_per_s'] / 1e9:.1f} GB/s, peak / memory {f['peak_flops_per_byte']:.1f} FLOP/byte"


def _layers_label(r: Mapping[str, Any]) -> str:
    """The layers column: "scan, N per iteration" when the record says how a scanned loop was unrolled, and
    whether the last layer ran on the predicted rows only (the FLOPs counted follow it)."""
    unroll = r.get("scan_unroll")
    label = f"{r['layers']}, {unroll} per iteration" if unroll else r["layers"]
    label += "; last layer on predicted rows" if r.get("last_layer_predicted_only") else ""
    if r.get("prediction_tiers", 1) > 1 and r.get("projected_rows_per_seq"):
        label += f"; head on {r['projected_rows_per_seq']:g} of {r['max_predictions_per_seq']} rows per sequence"
    return label


def _input_table(f: Mapping[str, Any]) -> str:
    rows = [
        f"**Does the host starve the device?** (`{f.get('command', 'python -m xlt_jax.bench input')}`): "
        f"{provenance_line(f)}; the real training loop, median over logged intervals after the first.",
        "",
        "| model | batch | s/step | tok/s | waited for its batch | host page faults per step |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in _configs(f).items():
        faults = r.get("host_page_faults_per_step")  # absent in records from before the loop logged it
        rows.append(
            f"| {name} | {r['batch']} | {r['step_s']:.3f} | {r['tokens_per_s']:,.0f} | "
            f"{1000 * r['input_wait_s']:.2f} ms ({100 * r['wait_fraction']:.2f}%) | "
            f"{'–' if faults is None else f'{faults:,.0f}'} |"
        )
    return "\n".join(rows)


def _profile_table(f: Mapping[str, Any], top: int = 8) -> str:
    groups = ", ".join(f"{g} {100 * share:.0f}%" for g, share in f["groups"].items())
    rows = [
        f"**Where the step's time goes** (`{f.get('command', 'python -m xlt_jax.bench profile')}`): "
        f"{provenance_line(f)}; `{f['config']}`, {f['layers']} layers, dropout {f['dropout']:g}"
        f"{_grouping(f)}; untraced step "
        f"{1000 * f['step_s']:.0f} ms. Share of the traced operation time: {groups}. Largest operations:",
        "",
        "| share | ms/step (traced) | group | output shape | source (`op_name`) |",
        "|---|---|---|---|---|",
    ]
    for t in f["top"][:top]:
        rows.append(f"| {100 * t['share']:.1f}% | {t['ms_per_step']:.1f} | {t['group']} | `{t['shape']}` | "
                    f"`{t['op_name'].removeprefix('jit(step_fn)/') or t['op'] + ' (made by XLA)'}` |")
    return "\n".join(rows)


def _grouping(f: Mapping[str, Any]) -> str:
    group = int(f.get("mlm_group_size", 1))
    return f", predictions gathered per {group} sequences ({f['projected_rows']:,} rows)" if group > 1 else ""


def _tpu_table(f: Mapping[str, Any]) -> str:
    rows = [
        f"**Cloud TPU plan, compiled here ahead of time** (`{f.get('command', 'python -m xlt_jax.bench tpu')}`): "
        f"{provenance_line(f)}; config `{f.get('config')}`.",
        "",
        "| topology | devices (hosts) | per-device GiB (args / temp / total of HBM) | fits | FLOPs/step | "
        "largest global batch | projected run at MFU |",
        "|---|---|---|---|---|---|---|",
    ]
    gib = 2**30
    for name, r in _configs(f).items():
        m = r.get("memory_per_device") or {}
        memory = (
            f"{m.get('argument', 0) / gib:.2f} / {m.get('temp', 0) / gib:.2f} / "
            f"{r.get('total_bytes_per_device', 0) / gib:.2f} of {r['hbm_bytes_per_device'] / gib:.0f}"
            if m else r.get("error", "")[:60]
        )
        rows.append(
            f"| {name} | {r['devices']} ({r['hosts']}) | {memory} | {'yes' if r.get('fits') else 'no'} | "
            f"{r['flops_per_step']:.2e} | {r.get('largest_global_batch', '–')} | "
            f"{r['projected_run_hours']:.0f} h at {100 * r['mfu']:.0f}% |"
        )
    return "\n".join(rows)


# -- replicate -----------------------------------------------------------------------------------------


def grid_record(root: pathlib.Path) -> dict[str, Any]:
    """A grid's grid.json, its wall time summed over every invocation (a resumed grid counts each part)."""
    meta = json.loads((root / "grid.json").read_text())
    meta["wall_s"] = meta.get("wall_s_total", meta.get("wall_s"))
    return meta


def replicate_section(runs: pathlib.Path) -> str | None:
    """The last `make replicate`'s report (tables, findings, the paper's numbers beside ours) and figures."""
    root = runs / "replicate"
    record, report = root / "grid.json", root / "report" / "report.md"
    if not record.is_file() or not report.is_file():
        return None
    meta = grid_record(root)
    head = f"`make replicate` (`{meta.get('command', '')}`) — {provenance_line(meta)}."
    head += _invocations(meta) + _time_split(meta.get("step_seconds") or {})
    done, steps = meta.get("steps_done"), meta.get("steps")
    if done is not None and steps and done < steps:
        head += (f" **Partial: {done} of {steps} steps finished** (rerun `make replicate` to continue); the tables "
                 "and findings below cover only the cells that finished.")
    body = report.read_text().strip()
    for png in sorted((root / "report").glob("*.png")):
        published = publish_figure(png, f"replicate_{png.name}")
        body = body.replace(f"]({png.name})", f"]({published})")
    body = re.sub(r"^# ", "### ", body, flags=re.M)  # the report's headings sit under the README's section
    body = re.sub(r"^## ", "#### ", body, flags=re.M)
    return head + "\n\n" + body


def _invocations(meta: Mapping[str, Any]) -> str:
    count = meta.get("invocations")
    return "" if not count else " One invocation." if count == 1 else f" {count} invocations (resumed)."


KIND_NAMES = {"pretrain": "pretraining", "finetune": "fine-tuning", "evaluate": "evaluation", "align": "alignment"}


def _time_split(kinds: Mapping[str, Mapping[str, float]]) -> str:
    """The sentence " Step time: pretraining 58.2 min (8 runs), ..." from grid.json's `step_seconds`."""
    if not kinds:
        return ""
    parts = [f"{KIND_NAMES.get(kind, kind)} {v['seconds'] / 60:.1f} min ({v['steps']} runs)"
             for kind, v in sorted(kinds.items(), key=lambda kv: -kv[1]["seconds"])]
    return " Step time: " + ", ".join(parts) + "."


# (cell label, pretraining corpus, grid directory, paper family, cell directory)
CONTROL_MODELS = (
    ("translit", "`lang:en` (previous recipe)", "replicate_lang", "translit", "en_translit_parallel"),
    ("translit", "`treebank:en` (the recipe now)", "replicate_treebank", "translit", "en_translit_parallel"),
    ("translit ∘ syntax (fr)", "`treebank:en` (gold trees)", "replicate_lang", "translit+syntax",
     "en_translit+syntax-fr_parallel"),
)


def control_section(runs: pathlib.Path) -> str | None:
    """Transliteration pretrained on its default corpus and on the syntax cells' treebank text, beside
    translit∘syntax (which can only use the treebank): separates the corpus from the transformation."""
    from xlt_jax import results
    from xlt_jax.experiments import paper_tables

    grids = sorted({m[2] for m in CONTROL_MODELS})
    if not all((runs / d / results.RESULTS_FILE).is_file() for d in grids):
        return None
    views = {d: paper_tables.View(results.read_rows(runs / d / results.RESULTS_FILE)) for d in grids}
    lines = ["| model | pretraining corpus | held-out MLM loss | POS BZ | BS | MZ | Δ(BZ−BS) | Δ(MZ−BS) "
             "| token alignment (identity NN %, as the paper's Table 7) |", "|---|---|---|---|---|---|---|---|---|"]
    for label, corpus, grid_dir, family, cell in CONTROL_MODELS:
        view = views[grid_dir]
        fields = [view.one("en", family, "parallel", "pos", f).value
                  for f in ("bz", "bs", "mz", "delta_bz_bs", "delta_mz_bs")]  # fmt: skip
        marker = runs / grid_dir / "cells" / cell / "pretrain" / "bilingual" / "DONE.json"
        loss = json.loads(marker.read_text())["summary"].get("eval", {}).get("eval/loss") if marker.is_file() else None
        lines.append(f"| {label} | {corpus} | {_fmt(loss, 3)} | " + " | ".join(_fmt(v) for v in fields)
                     + f" | {_fmt(view.align('en', family, 'parallel').value, 2)} |")
    meta = grid_record(runs / "replicate_treebank")
    return (f"`{meta.get('command', '')}` — {provenance_line(meta)}; the other two rows from the previous "
            "recipe's complete grid (runs/replicate_lang). POS F1 on the dev set, means over fine-tuning seeds 1 "
            "and 2.\n\n" + "\n".join(lines))


def demo_section(runs: pathlib.Path) -> str | None:
    """The last `make demo`'s summary: BZ / BS / MZ beside the majority tag, alignment beside chance."""
    path = runs / "demo" / "demo.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    lines = [f"Last `make demo` (`{d.get('command', '')}`): {provenance_line(d)}. POS token accuracy on the "
             "transliterated English dev set:", "",
             "| BZ (zero-shot) | BS (supervised) | MZ (monolingual, zero-shot) | majority tag "
             "| BZ − max(MZ, majority) |",
             "|---|---|---|---|---|"]
    bz, bs, mz, majority = (d.get(k, float("nan")) for k in ("BZ", "BS", "MZ", "majority"))
    lines.append(f"| {bz:.1f} | {bs:.1f} | {mz:.1f} | {majority:.1f} | {bz - max(mz, majority):+.1f} |")
    aligned = [f"{k.removeprefix('align_nn_')} {v:.2f}%" for k, v in d.items() if k.startswith("align_nn_")]
    if aligned:
        chance = f" (chance {d['align_chance']:.2f}%)" if "align_chance" in d else ""
        lines += ["", f"Token-embedding alignment of the two vocabulary copies: {', '.join(aligned)}{chance}."]
    if "bilingual_eval_loss" in d:
        lines += ["", f"The bilingual model's held-out MLM loss at the end: {d['bilingual_eval_loss']:.2f} nats."]
    return "\n".join(lines)


def _option(options: str, name: str) -> str:
    """One value of a UDPipe option string `a=1;b=2`."""
    return dict(kv.split("=", 1) for kv in options.split(";") if "=" in kv).get(name, "?")


def parser_section(runs: pathlib.Path) -> str | None:
    """UDPipe models trained here, scored on their dev treebank from gold words (UAS/LAS as CoNLL 2018)."""
    records = [json.loads(p.read_text()) for p in sorted((runs / "parse").glob("*.json"))]
    if not records:
        return None
    lines = ["| lang | train sentences | tagger / parser iterations | dev words | UAS | LAS "
             "| UPOS | machine, date, wall, commit |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        options = f"{_option(r['tagger'], 'iterations')} / {_option(r['parser'], 'iterations')}"
        lines.append(f"| {r['lang']} | {r['train_sentences']:,} | {options} | {r['words']:,} | {r['uas']:.1f} "
                     f"| {r['las']:.1f} | {r['upos']:.1f} | {provenance_line(r)} |")
    commands = sorted({r["command"] for r in records if r.get("command")})
    return "\n".join(lines + ["", "Produced by: " + "; ".join(f"`{c}`" for c in commands)])


SECTIONS: dict[str, Callable[[pathlib.Path], str | None]] = {
    "demo": demo_section,
    "control": control_section,
    "parser": parser_section,
    "fidelity": fidelity_section,
    "performance": performance_section,
    "replicate": replicate_section,
}


def regenerate(text: str, runs: pathlib.Path, names: Sequence[str] = tuple(SECTIONS)) -> tuple[str, list[str]]:
    """README text with every named section rebuilt; also the names rebuilt (others kept as they were)."""
    rebuilt = []
    for name in names:
        pattern = re.compile(re.escape(BEGIN.format(name=name)) + r".*?" + re.escape(END.format(name=name)), re.S)
        if not pattern.search(text):
            continue
        body = SECTIONS[name](runs)
        if body is None:
            continue
        block = f"{BEGIN.format(name=name)}\n{body}\n{END.format(name=name)}"
        text = pattern.sub(lambda _m, block=block: block, text)
        rebuilt.append(name)
    return text, rebuilt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.experiments.readme", description=__doc__)
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    args = parser.parse_args(argv)
    readme = pathlib.Path(args.readme)
    text, rebuilt = regenerate(readme.read_text(), pathlib.Path(args.runs), args.sections.split(","))
    readme.write_text(text)
    skipped = [n for n in args.sections.split(",") if n not in rebuilt]
    print(f"rebuilt: {', '.join(rebuilt) or 'nothing'}; kept: {', '.join(skipped) or 'nothing'}")


if __name__ == "__main__":
    main()
