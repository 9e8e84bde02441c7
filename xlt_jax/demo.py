"""`make demo`: the whole xlt_jax pipeline, small, on real data, in a few minutes on a laptop CPU.

1. Data: a SentencePiece tokenizer on real English text, the derived language `translit+inv` (English
   transliterated into a second vocabulary and inverted), MLM batches decoded.
2. The Deshpande et al. protocol, smoke-sized: pretrain a tiny bilingual (en + derived) and a monolingual
   RoBERTa, fine-tune POS on original and derived data, evaluate BZ / BS / MZ, Tatoeba retrieval and the
   cross-lingual POS table, and print the report rendered from results.jsonl.
3. Alignment of the bilingual model: token embeddings of its two vocabulary copies (identity and Procrustes
   nearest-neighbour accuracy; transliterating transforms) and, per layer, retrieval and CKA between held-out
   sentences and their derived versions, appended to the same results.jsonl.

  python -m xlt_jax.demo --workdir runs/demo [--transform translit+inv] [--lang en] [--tasks pos+tatoeba]
"""

from __future__ import annotations

import argparse
import pathlib
import runpy
import textwrap

import numpy as np

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


def data_steps(config, workdir: pathlib.Path):
    from xlt_jax.training import inputs

    banner("1. data: tokenizer, derived language, batches")
    tokenizer, data = inputs.build_data(config, workdir)
    print(data.describe() if hasattr(data, "describe") else data)
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
        lang = data.lang_names[int(batch["lang_id"][row])] if hasattr(data, "lang_names") else batch["lang_id"][row]
        print(f"MLM batch row {row} [{lang}]:")
        print(textwrap.indent(show_tokens(tokenizer, batch["input_ids"][row], layout, width=20), "    "))
    return tokenizer


def protocol(lang: str, transform: str, tasks: str, workdir: pathlib.Path):
    from xlt_jax.experiments import protocol as protocol_lib

    banner("2. protocol: pretrain, fine-tune, evaluate BZ / BS / MZ, report")
    deshpande = runpy.run_path(str(CONFIGS / "experiments" / "deshpande.py"))
    config = deshpande["get_config"](f"lang={lang},transform={transform},tasks={tasks},smoke")
    return protocol_lib.run(config, workdir)


def alignment(lang: str, transform: str, workdir: pathlib.Path) -> None:
    from xlt_jax.analysis import runner

    banner("3. alignment of the bilingual model: token embeddings, and sentences layer by layer")
    arg = f"pretrained={workdir / 'pretrain' / 'bilingual'},model_name=bilingual-{lang}-{transform}"
    config = runpy.run_path(str(CONFIGS / "align.py"))["get_config"](arg)
    for row in runner.run(config, workdir):
        unit = "token pairs" if row.metric.startswith("align_nn") else "sentences"
        print(f"{row.metric:26s} {row.value:6.2f}  ({row.n_examples} held-out {unit})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--transform", default="translit+inv")
    parser.add_argument("--tasks", default="pos+tatoeba")
    args = parser.parse_args(argv)
    workdir = pathlib.Path(args.workdir).resolve()
    bilingual = runpy.run_path(str(CONFIGS / "pretrain" / "bilingual.py"))
    config = bilingual["get_config"](f"lang={args.lang},transform={args.transform},smoke")
    data_steps(config, workdir / "data_preview")
    protocol(args.lang, args.transform, args.tasks, workdir / "protocol")
    alignment(args.lang, args.transform, workdir / "protocol")
    print(f"\noutputs in {workdir} (TensorBoard: tensorboard --logdir {workdir}; "
          f"report: {workdir / 'protocol' / 'report' / 'report.md'})")


if __name__ == "__main__":
    main()
