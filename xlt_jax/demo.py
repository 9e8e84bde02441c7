"""`make demo`: does English transfer to transliterated English? The paper's main result, on this CPU.

1. Data: the tokenizer, the derived language (`translit`: every piece shifted into a second vocabulary copy,
   so the two languages share no sub-word) and decoded MLM batches.
2. The BZ / BS / MZ protocol with the CPU recipe (`configs/experiments/replicate.py`, `demo`): a small
   bilingual model (English + transliterated English) and its monolingual twin are pretrained, POS is
   fine-tuned on English (BZ, MZ) and on the derived language (BS), and all are scored on the derived dev set.
3. Token-embedding alignment of the bilingual model's two vocabulary copies (REFERENCE_SPEC §6).
4. A summary: BZ / BS / MZ next to the majority-tag baseline, alignment next to its chance level, and where
   the TensorBoard logs, checkpoints, results.jsonl, report and plots are.

Transfer shows as BZ far above MZ and the majority baseline (MZ's derived rows were never trained).

  python -m xlt_jax.demo --workdir runs/demo [--transform translit] [--config-arg steps=1500]

The report (tables with the paper's numbers beside ours) is printed by the grid runner and written to
WORKDIR/report/.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import runpy
import textwrap
import time

import numpy as np

from xlt_jax import host_allocator
from xlt_jax.data import transforms
from xlt_jax.data.vocab import SPECIALS

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"


def banner(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)), flush=True)


def show_tokens(tokenizer, ids: np.ndarray, layout, width: int = 24) -> str:
    """Pieces of a row: derived-vocabulary ids (≥ V) are shown with a `'` mark."""
    V = layout.base_size
    out = []
    for i in ids[:width].tolist():
        if i in SPECIALS.all:
            out.append(["<s>", "<pad>", "</s>", "<unk>", "<mask>"][i])
        elif i < V:
            out.append(tokenizer.piece(i))
        elif i < 2 * V:
            out.append(tokenizer.piece(i - V) + "'")
        else:
            out.append(f"<extra_id_{layout.size - 1 - i}>")
    return " ".join(out)


def data_steps(config, workdir: pathlib.Path) -> None:
    from xlt_jax.training import inputs

    banner("1. data: tokenizer, derived language, MLM batches")
    tokenizer, data = inputs.build_data(config, workdir)
    transform = transforms.parse(config.data.transform, tokenizer.layout())
    layout = transform.vocab_layout
    sentence = "The quick brown fox jumps over the lazy dog ."
    ids = np.array([[SPECIALS.bos, *tokenizer.encode(sentence), SPECIALS.eos]], np.int32)
    derived, _ = transform.apply_ids(ids, seed=0, example_ids=np.array([0]))
    print(f"tokenizer: {tokenizer.base_size} pieces; model vocabulary {layout.size} rows ({transform.name})")
    print("original :", show_tokens(tokenizer, ids[0], layout))
    print("derived  :", show_tokens(tokenizer, derived[0], layout))
    batch = next(iter(data.train_iterator(0, 1)))
    for row in range(2):
        lang = data.lang_names[int(batch["lang_id"][row])]
        print(f"MLM batch row {row} [{lang}]:")
        print(textwrap.indent(show_tokens(tokenizer, batch["input_ids"][row], layout, width=20), "    "))


def protocol(config, workdir: pathlib.Path):
    from xlt_jax.experiments import grid

    banner("2-3. protocol: pretrain, fine-tune POS, evaluate BZ / BS / MZ; align the vocabulary copies")
    return grid.run(config, workdir)


def summary(workdir: pathlib.Path, config, seconds: float) -> dict:
    """BZ / BS / MZ POS token accuracy on the derived dev set, the majority baseline and alignment vs chance."""
    from xlt_jax import results
    from xlt_jax.metrics.baselines import majority_tag

    rows = results.read_rows(workdir / results.RESULTS_FILE)
    lang, derived = str(config.langs), str(config.transforms)
    scores = {}
    for row in rows:
        if row.task == "pos" and row.metric == "token_accuracy" and row.setting in ("BZ", "BS", "MZ"):
            scores.setdefault(row.setting, []).append(row.value)
    base = majority_tag("pos", lang)
    out = {k: float(np.mean(v)) for k, v in scores.items()}
    out["majority"] = float(base["token_accuracy"])
    banner("4. summary")
    print(f"POS token accuracy on {lang}:{derived} dev (majority tag {base['tag']}: {out['majority']:.1f}):")
    for setting, what in (("BZ", "bilingual, fine-tuned on English      (zero-shot)"),
                          ("BS", "bilingual, fine-tuned on derived data  (supervised)"),
                          ("MZ", "monolingual, fine-tuned on English     (zero-shot)")):
        print(f"  {setting} {what}: {out.get(setting, float('nan')):5.1f}")
    transfer = out.get("BZ", 0.0) - max(out.get("MZ", 0.0), out["majority"])
    print(f"  transfer (BZ - max(MZ, majority)): {transfer:+.1f} points")
    for row in rows:
        if row.task == "align" and row.metric.startswith("align_nn"):
            vocab = int(row.extra.get("candidates", 0) or 0)
            chance = f" (chance {100 / vocab:.3f})" if vocab else ""
            if vocab:
                out["align_chance"] = 100 / vocab
            print(f"  {row.metric}: {row.value:.2f}%{chance}")
            out[row.metric] = row.value
    from xlt_jax.experiments import grid

    cell = grid.Cell(lang, derived, "parallel").name
    marker = workdir / "cells" / cell / "pretrain" / "bilingual" / "DONE.json"
    held_out = json.loads(marker.read_text()).get("summary", {}).get("eval", {}) if marker.is_file() else {}
    if "eval/loss" in held_out:
        out["bilingual_eval_loss"] = held_out["eval/loss"]
        step = int(held_out.get("step", 0))
        print(f"  bilingual model's held-out MLM loss at step {step}: {held_out['eval/loss']:.2f} nats (the plateau "
              "it must leave for transfer to show is ~6.0; README: fidelity)")
    out["seconds"] = round(seconds, 1)
    print(f"\n{seconds / 60:.1f} min. Outputs in {workdir}:")
    print(f"  TensorBoard  tensorboard --logdir {workdir}")
    print(f"  checkpoints  {workdir}/cells/*/pretrain/*/checkpoints, {workdir}/cells/*/finetune/pos/*/checkpoints")
    print(f"  results      {workdir / results.RESULTS_FILE}")
    print(f"  report       {workdir / 'report' / 'report.md'} (plots beside it)")
    return out


def show_progress_lines() -> None:
    """INFO logs (the training loops' progress lines with ETA) through absl's handler, minus Orbax's chatter.

    What `app.run` does for the binaries: absl's handler on the root logger, so `set_verbosity` also sets the
    root level; without it the loops' stdlib `logging.info` lines are dropped while absl's own pass.
    """
    from absl import logging as absl_logging

    from xlt_jax import cli

    absl_logging.use_absl_handler()
    absl_logging.set_verbosity(absl_logging.INFO)
    handler = absl_logging.get_absl_handler()
    if not any(isinstance(f, cli.QuietLibraries) for f in handler.filters):
        handler.addFilter(cli.QuietLibraries())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--transform", default="translit")
    parser.add_argument("--config-arg", default="", help="extra key=value,... for configs/experiments/replicate.py")
    args = parser.parse_args(argv)
    host_allocator.retain_freed_memory()  # before JAX starts its threads
    show_progress_lines()
    t0, started = time.perf_counter(), time.time()
    workdir = pathlib.Path(args.workdir).resolve()
    arg = f"transforms={args.transform},demo" + (f",{args.config_arg}" if args.config_arg else "")
    config = runpy.run_path(str(CONFIGS / "experiments" / "replicate.py"))["get_config"](arg)
    preview = copy.deepcopy(config.protocol.pretrain.bilingual)
    preview.data.transform = args.transform
    data_steps(preview, workdir / "data_preview")
    ran = protocol(config, workdir).executed
    out = summary(workdir, config, time.perf_counter() - t0)
    if ran:
        write_record(workdir, out | {"steps_run": len(ran)}, started)
    else:  # everything was finished before: keep the record (and wall time) of the run that computed it
        print(f"nothing to run; {workdir / RECORD_FILE} keeps the run that computed these figures")
    print(json.dumps(out))


RECORD_FILE = "demo.json"


def write_record(workdir: pathlib.Path, out: dict, started: float) -> None:
    """WORKDIR/demo.json: the summary with machine, date, commit and wall time (the README's demo block)."""
    from xlt_jax import provenance, storage

    record = {**provenance.record(started, time.time()), **out}
    storage.atomic_write(workdir / RECORD_FILE, (json.dumps(record, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
