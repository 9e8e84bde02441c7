"""`python -m xlt_jax.bench data`: host input-pipeline throughput on one core, in tokens/s.

Measured in one run on real text from the data directory: SentencePiece encoding (a tokenizer trained here,
in a temporary directory), the id-level transformations inv/perm/translit on packed [B, L] batches, MLM
collation, span-corruption collation, and the whole bilingual MLM iterator (gather + transform + mask).
The process is pinned to one core, so the figures are per core. Ends with one JSON line of figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

from xlt_jax import provenance
from xlt_jax.data import paths
from xlt_jax.data.pretrain import mlm, packing, pipeline, shards, span_corruption
from xlt_jax.data.readers.conllu import read_conllu
from xlt_jax.data.readers.text import read_lines
from xlt_jax.data.tokenizer import train_tokenizer
from xlt_jax.data.transforms import parse

LANGS = ("en", "fr", "hi", "ar")
TRANSFORMS = ("inv", "perm", "translit")


def pin_to_one_core() -> int | None:
    """Restrict this process to one CPU so every figure is a single-core figure; returns that CPU."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def real_text() -> dict[str, list[str]]:
    """Leipzig sentences of four languages plus the English UD-EWT training sentences."""
    texts = {
        lang: list(read_lines(paths.data_path(f"raw/lingua_leipzig_sample/{lang}.sentences.txt.gz")))
        for lang in LANGS
    }
    texts["en"] += [s.text for s in read_conllu(paths.data_path("ud/en_ewt/train.conllu.gz")) if s.text]
    return texts


def timed(fn: Callable[[], object], min_seconds: float, min_calls: int = 3) -> float:
    """Median seconds per call of `fn` over at least `min_calls` calls and `min_seconds` (after a warm-up)."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.bench data", description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum measuring time per figure")
    args = parser.parse_args(argv)
    cpu = pin_to_one_core()
    B, L = args.batch, args.seq_len
    figures: dict[str, object] = {**provenance.record(), "bench": "data", "cpu": cpu, "batch": B, "seq_len": L}

    texts = real_text()
    lines = [line for lang in LANGS for line in texts[lang]]
    with tempfile.TemporaryDirectory() as tmp:
        tok = train_tokenizer(texts, args.vocab, os.path.join(tmp, "spm"), hard_vocab_limit=False)
        figures["vocab"] = tok.base_size
        num_tokens = sum(len(a) for a in tok.encode_batch(lines, num_threads=1))
        sec = timed(lambda: tok.encode_batch(lines, num_threads=1), args.seconds)
        figures["tokenize_tok_s"] = num_tokens / sec
        print(f"tokenize      {len(lines)} lines, {num_tokens} tokens: {num_tokens / sec / 1e6:8.3f} M tok/s")

        corpus = shards.ensure_shards(lines, tok, os.path.join(tmp, "shards"))
        starts = packing.block_starts(corpus.line_offsets, L)
        rows = np.arange(B) % len(starts)
        batch = packing.gather_blocks(corpus, starts[rows], L)
        example_ids = rows.astype(np.int64)
        layout = tok.layout()
        sec = timed(lambda: packing.gather_blocks(corpus, starts[rows], L), args.seconds)
        figures["gather_tok_s"] = B * L / sec
        print(f"gather        [{B},{L}] from memory-mapped shards: {B * L / sec / 1e6:8.3f} M tok/s")

        for spec in TRANSFORMS:
            transform = parse(spec, layout)
            sec = timed(lambda t=transform: t.apply_ids(batch, seed=0, example_ids=example_ids), args.seconds)
            figures[f"transform_{spec}_tok_s"] = B * L / sec
            print(f"transform     {spec:9s} [{B},{L}]: {B * L / sec / 1e6:8.3f} M tok/s")

        draws = np.zeros(B, np.int64)
        sec = timed(
            lambda: mlm.mask_tokens(batch, layout=layout, seed=0, example_ids=example_ids, draws=draws),
            args.seconds,
        )
        figures["mlm_tok_s"] = B * L / sec
        print(f"mlm collate   [{B},{L}]: {B * L / sec / 1e6:8.3f} M tok/s")

        raw_len, targets_len = span_corruption.random_spans_helper(L)
        raw_starts = packing.block_starts(corpus.line_offsets, raw_len)
        raw = packing.gather_blocks(corpus, raw_starts[np.arange(B) % len(raw_starts)], raw_len)
        span_layout = dataclasses.replace(layout, num_sentinels=100)
        sec = timed(
            lambda: span_corruption.span_corrupt(
                raw,
                layout=span_layout,
                seed=0,
                example_ids=example_ids,
                draws=draws,
                inputs_length=L,
                targets_length=targets_len,
            ),
            args.seconds,
        )
        figures["span_tok_s"] = B * raw_len / sec
        print(
            f"span collate  [{B},{raw_len}] raw -> {L}/{targets_len}: {B * raw_len / sec / 1e6:8.3f} M tok/s"
        )

        cfg = pipeline.default_config()
        cfg.update(
            dict(seq_len=L, global_batch_size=B, cache_dir=os.path.join(tmp, "shards"), transform="inv")
        )
        iterator = pipeline.build_pretrain_iterator(cfg, tok, {"en": texts["en"]})
        sec = timed(lambda: next(iterator), args.seconds)
        figures["pipeline_bilingual_inv_mlm_tok_s"] = B * L / sec
        print(f"pipeline      bilingual inv + MLM [{B},{L}]: {B * L / sec / 1e6:8.3f} M tok/s")
    print(json.dumps({k: round(v) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
