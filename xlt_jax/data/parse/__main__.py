r"""Train a UDPipe model here, score it, and parse text into (cached) CoNLL-U.

  python -m xlt_jax.data.parse train --lang en [--out PATH] [--tagger 'iterations=10'] [--parser '...']
                                      [--record runs/parse/en.json]
      trains a tagger + parser on the UD train treebank(s) of LANG, scores it on the dev treebank and ends
      with one JSON line: {"lang", "uas", "las", "upos", ...} (saved beside the model as PATH.json, and with
      machine, date, commit and command at --record, which the README's parser section is generated from)
  python -m xlt_jax.data.parse score --lang en [--model PATH] [--split dev]
  python -m xlt_jax.data.parse text --lang en --in FILE --out FILE.conllu [--trees udpipe|stanza] [--model PATH]
      one sentence per line, words split on whitespace; the parse is cached ($XLT_CACHE_DIR/parses/)

The default model path is $XLT_CACHE_DIR/parsers/udpipe/LANG.udpipe (`syntax.model` = "" finds it there).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence

from xlt_jax import provenance, storage
from xlt_jax.data import parse
from xlt_jax.data.readers.conllu import write_conllu
from xlt_jax.data.readers.text import read_lines
from xlt_jax.errors import XltError


def train(
    lang: str, out: str = "", tagger: str = "", parser: str = "", max_sentences: int = 0, record_path: str = ""
) -> dict:
    """Train, then score on dev; the record (with uas/las) is returned and saved beside the model and at
    `record_path` (with provenance: machine, date, commit, command, wall time)."""
    from xlt_jax.data.parse import udpipe

    path = parse.model_path(lang, out)
    t0 = time.perf_counter()
    record = udpipe.train_model(lang, path, tagger=tagger, parser=parser, max_sentences=max_sentences)
    record.update(score(lang, str(path)))
    record["wall_seconds"] = round(time.perf_counter() - t0, 1)
    record.update(provenance.record(t0, time.perf_counter()))
    text = json.dumps(record, indent=1) + "\n"
    path.with_name(path.name + ".json").write_text(text)
    if record_path:
        storage.workdir_path(record_path).parent.mkdir(parents=True, exist_ok=True)
        storage.atomic_write(record_path, text.encode())
    return record


def score(lang: str, model: str = "", split: str = "dev", trees: str = "udpipe") -> dict:
    """Attachment scores of the model on `lang`'s gold `split` trees, parsed from their gold words (no cache)."""
    from xlt_jax.data.parse import udpipe

    gold = udpipe.gold_sentences(lang, split)
    parser = parse.get_parser(trees, lang, model)
    t0 = time.perf_counter()
    predicted = parser.parse([s.forms for s in gold])
    scores = parse.attachment_scores(predicted, gold)
    return {**scores, "split": split, "sentences": len(gold), "parse_seconds": round(time.perf_counter() - t0, 1),
            "dev_files": [str(p) for p in udpipe.treebank_files(lang, split)]}


def parse_text(lang: str, source: str, out: str, trees: str = "udpipe", model: str = "") -> dict:
    lines = [line.split() for line in read_lines(source)]
    sentences = parse.parse_sentences(lines, lang, trees=trees, model=model)
    written = write_conllu((s for s in sentences if len(s)), out)
    return {"lang": lang, "in": source, "out": out, "sentences": written, "empty_lines": len(lines) - written}


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(prog="python -m xlt_jax.data.parse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a UDPipe tagger + parser on LANG's UD train treebank(s), then score it")
    t.add_argument("--lang", required=True)
    t.add_argument("--out", default="", help="model path ('' = $XLT_CACHE_DIR/parsers/udpipe/LANG.udpipe)")
    t.add_argument("--tagger", default="", help="UDPipe tagger options over the defaults, e.g. 'iterations=10'")
    t.add_argument("--parser", default="", help="UDPipe parser options over the defaults, e.g. 'iterations=5'")
    t.add_argument("--max_sentences", type=int, default=0, help="train on the first N sentences (0 = all)")
    t.add_argument("--record", default="", help="also write the scored record here (e.g. runs/parse/en.json)")
    s = sub.add_parser("score", help="UAS/LAS of a model on LANG's gold dev (or test) trees")
    s.add_argument("--lang", required=True)
    s.add_argument("--model", default="")
    s.add_argument("--split", default="dev")
    s.add_argument("--trees", default="udpipe", choices=parse.BACKENDS)
    x = sub.add_parser("text", help="parse FILE (one sentence per line, words split on whitespace) to CoNLL-U")
    x.add_argument("--lang", required=True)
    x.add_argument("--in", dest="source", required=True)
    x.add_argument("--out", required=True)
    x.add_argument("--trees", default="udpipe", choices=parse.BACKENDS)
    x.add_argument("--model", default="")
    args = p.parse_args(argv)
    try:
        if args.command == "train":
            result = train(args.lang, args.out, args.tagger, args.parser, args.max_sentences, args.record)
        elif args.command == "score":
            result = {"lang": args.lang, **score(args.lang, args.model, args.split, args.trees)}
        else:
            result = parse_text(args.lang, args.source, args.out, args.trees, args.model)
    except XltError as e:
        sys.exit(f"error: {e}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
