"""Sub-word overlap between two corpora (the paper's §4.1 notion, REFERENCE_SPEC §3.3).

A *side* is a natural language (`en`) or a language derived from one (`en:translit+inv`). Its corpus is the
language's pretraining sentences (`corpora.pretraining_sentences`, the first `max_sentences`), tokenized, each
sentence as `<s> … </s>`, and for a derived side transformed with the project's transforms on the token ids
(word-level `inv@word`/`perm@word` on the words first; `syntax:LANG` reorders the gold UD train trees, so both
sides of that language then read the trees' sentences). Types are token ids; the special ids (`<s> <pad> </s>
<unk> <mask>` and their transliterated copies) are not counted.

- **type overlap** = |E1 ∩ E2| / |E1 ∪ E2| over the types that occur at least once in each corpus: exactly 0%
  for `translit` (every id moves to id + V) and exactly 100% for `inv`/`perm` (same multiset of ids).
- **token overlap** = share of all token occurrences of the two corpora together whose type also occurs in the
  other corpus: (Σ_{t ∈ E1∩E2} c1(t) + c2(t)) / (Σ c1 + Σ c2). Frequent shared types weigh more, so two
  languages sharing only punctuation and names have a small type overlap but a larger token overlap.
  The weighted Jaccard Σ min(p1, p2) / Σ max(p1, p2) of the two relative frequency vectors is kept in `extra`
  (100% only when the two corpora use every type equally often).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
from collections.abc import Sequence

import numpy as np

from xlt_jax import results, storage
from xlt_jax.data import corpora, transforms
from xlt_jax.data.tokenizer import Tokenizer, train_tokenizer
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError, TransformError

ENCODE_CHUNK = 4096  # sentences padded and transformed at once: bounds the [chunk, longest] id batch
TYPE_METRIC = "subword_type_overlap"
TOKEN_METRIC = "subword_token_overlap"
TASK = "overlap"
_LANG_CODE = re.compile(r"[a-z]{2,3}")


@dataclasses.dataclass(frozen=True)
class Side:
    """One corpus of an overlap: a language and the transform deriving a language from it ("none")."""

    lang: str
    transform: str = "none"

    @classmethod
    def parse(cls, text: str) -> Side:
        """`LANG` or `LANG:TRANSFORM` (the transform is everything after the first colon: `en:syntax:fr`)."""
        lang, _, transform = text.strip().partition(":")
        side = cls(lang, transform or "none")
        side.check()
        return side

    def check(self) -> None:
        """Refuse an unknown language code or transform before any text is read."""
        if not _LANG_CODE.fullmatch(self.lang):
            raise ConfigError(f"side {self.name!r}: expected LANG[:TRANSFORM] with an ISO 639-1 code such as 'en'")
        try:
            self.parsed(VocabLayout(base_size=1000))
        except TransformError as e:
            raise TransformError(f"side {self.name!r}: {e}") from e

    def parsed(self, layout: VocabLayout) -> transforms.Transform:
        return transforms.parse(self.transform, layout)

    @property
    def name(self) -> str:
        return self.lang if self.transform == "none" else f"{self.lang}:{self.transform}"

    @property
    def has_syntax(self) -> bool:
        return self.parsed(VocabLayout(base_size=1000)).syntax is not None


def side_sentences(side: Side, max_sentences: int, *, seed: int = 0, from_trees: bool = False) -> list[str]:
    """The side's text before tokenization: its language's first `max_sentences` pretraining sentences, or the
    UD train trees' sentences (`from_trees`, or a syntax side: those trees reordered), word stage applied."""
    limit = max_sentences or None
    if side.has_syntax:
        from xlt_jax.training.inputs import treebank_texts

        return treebank_texts(side.lang, side.transform, seed, limit)[1]
    if from_trees:
        sentences = [corpora.treebank_text(s) for s in corpora.treebank_sentences(side.lang)[:limit]]
    else:
        sentences = corpora.pretraining_sentences(side.lang)[:limit]
    transform = side.parsed(VocabLayout(base_size=1000))  # the word stage does not look at ids
    if transform.word_stage:
        sentences = [transform.apply_text(s, seed=seed, example_id=i) for i, s in enumerate(sentences)]
    return sentences


def side_ids(side: Side, tokenizer: Tokenizer, sentences: Sequence[str], *, seed: int = 0) -> np.ndarray:
    """All token ids of the side's corpus: each sentence `<s> … </s>`, then the transform's id stage
    (example id = sentence index, so permutations are fixed per sentence)."""
    transform = side.parsed(tokenizer.layout())
    specials = tokenizer.layout().specials
    out = []
    for lo in range(0, len(sentences), ENCODE_CHUNK):
        pieces = tokenizer.encode_batch(list(sentences[lo : lo + ENCODE_CHUNK]))
        wrapped = [np.concatenate([[specials.bos], p, [specials.eos]]).astype(np.int32) for p in pieces]
        example_ids = np.arange(lo, lo + len(wrapped), dtype=np.int64)
        out += transform.apply_sentences(wrapped, seed=seed, example_ids=example_ids)
    return np.concatenate(out) if out else np.zeros(0, np.int32)


def type_counts(ids: np.ndarray, layout: VocabLayout) -> np.ndarray:
    """Occurrences of every id of `layout` (`[layout.size]`), zero for the special ids of every copy."""
    counts = np.bincount(np.asarray(ids, np.int64), minlength=layout.size)[: layout.size].astype(np.int64)
    counts[special_rows(layout)] = 0
    return counts


def special_rows(layout: VocabLayout) -> np.ndarray:
    """`<s> <pad> </s> <unk> <mask>` in every vocabulary copy: not sub-words of either language."""
    return np.array([c * layout.base_size + s for c in range(layout.copies) for s in layout.specials.all])


def overlap_figures(counts_a: np.ndarray, counts_b: np.ndarray) -> dict[str, float]:
    """Type overlap, token overlap (in %) and their ingredients for two count vectors over the same ids."""
    if counts_a.shape != counts_b.shape:
        raise ValueError(f"count vectors of different id spaces: {counts_a.shape} vs {counts_b.shape}")
    if not counts_a.any() or not counts_b.any():
        raise ConfigError("a side has no tokens (empty corpus?): overlap is undefined")
    in_a, in_b = counts_a > 0, counts_b > 0
    shared, union = in_a & in_b, in_a | in_b
    tokens_a, tokens_b = int(counts_a.sum()), int(counts_b.sum())
    p_a, p_b = counts_a / tokens_a, counts_b / tokens_b
    return {
        "type_overlap": 100.0 * int(shared.sum()) / int(union.sum()),
        "token_overlap": 100.0 * int(counts_a[shared].sum() + counts_b[shared].sum()) / (tokens_a + tokens_b),
        "weighted_jaccard": 100.0 * float(np.minimum(p_a, p_b).sum() / np.maximum(p_a, p_b).sum()),
        "token_coverage_a": 100.0 * int(counts_a[shared].sum()) / tokens_a,  # a's tokens whose type b has
        "token_coverage_b": 100.0 * int(counts_b[shared].sum()) / tokens_b,
        "types_a": int(in_a.sum()),
        "types_b": int(in_b.sum()),
        "types_shared": int(shared.sum()),
        "types_union": int(union.sum()),
        "tokens_a": tokens_a,
        "tokens_b": tokens_b,
    }


def pair_layout(tokenizer: Tokenizer, sides: Sequence[Side]) -> VocabLayout:
    """The id space both sides' ids live in (two copies when a side transliterates)."""
    layouts = [side.parsed(tokenizer.layout()).vocab_layout for side in sides]
    return max(layouts, key=lambda layout: layout.size)


def side_counts(
    sides: Sequence[Side], tokenizer: Tokenizer, max_sentences: int, *, seed: int = 0
) -> tuple[list[np.ndarray], VocabLayout, list[int]]:
    """(type counts per side over one layout, that layout, sentences per side). A language with a syntax side
    reads its UD train trees on every side, so the original and the reordered corpus are the same sentences."""
    tree_langs = {side.lang for side in sides if side.has_syntax}
    layout = pair_layout(tokenizer, sides)
    counts, sizes = [], []
    for side in sides:
        sentences = side_sentences(side, max_sentences, seed=seed, from_trees=side.lang in tree_langs)
        counts.append(type_counts(side_ids(side, tokenizer, sentences, seed=seed), layout))
        sizes.append(len(sentences))
    return counts, layout, sizes


# -- python -m xlt_jax.align overlap A B -----------------------------------------------------------------------


def trained_tokenizer(langs: Sequence[str], max_sentences: int, vocab_size: int, seed: int) -> Tokenizer:
    """A BPE SentencePiece model on the first `max_sentences` pretraining sentences of each natural language
    (temperature α = 0.3 as the pretraining recipe; deterministic for fixed arguments). A derived language
    shares its base language's tokenizer, as in the reference (REFERENCE_SPEC §3.3)."""
    limit = max_sentences or None
    texts = {lang: corpora.pretraining_sentences(lang)[:limit] for lang in dict.fromkeys(langs)}
    return train_tokenizer(texts, vocab_size, None, alpha=0.3, seed=seed, hard_vocab_limit=False)


def overlap_rows(
    a: Side, b: Side, figures: dict, *, model: str, sentences: Sequence[int], seed: int, extra: dict
) -> list[results.ResultRow]:
    """Two rows (type and token overlap, %); `train_*` name side A, `lang`/`eval_transform` side B."""
    common = dict(model=model, task=TASK, lang=b.lang, train_lang=a.lang, train_transform=a.transform,
                  eval_transform=b.transform, setting="", split="pretrain", seed=seed)  # fmt: skip
    extra = {**extra, **figures, "sides": [a.name, b.name], "sentences": list(sentences)}
    return [
        results.ResultRow(metric=TYPE_METRIC, value=figures["type_overlap"], n_examples=figures["types_union"],
                          extra=extra, **common),
        results.ResultRow(metric=TOKEN_METRIC, value=figures["token_overlap"],
                          n_examples=figures["tokens_a"] + figures["tokens_b"], extra=extra, **common),
    ]  # fmt: skip


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m xlt_jax.align overlap",
        description="Sub-word overlap of two corpora: type overlap |E1∩E2|/|E1∪E2| and token overlap, in %.",
    )
    parser.add_argument("a", help="first side: LANG or LANG:TRANSFORM (en, en:translit+inv, fr)")
    parser.add_argument("b", help="second side, same form")
    parser.add_argument("--workdir", required=True, help="directory whose results.jsonl receives the rows")
    parser.add_argument("--tokenizer", default="", help="a saved tokenizer directory (default: train one, see below)")
    parser.add_argument("--max-sentences", type=int, default=20000,
                        help="pretraining sentences per language, first ones (0 = all)")
    parser.add_argument("--vocab-size", type=int, default=40000,
                        help="pieces of the trained tokenizer (BPE on both natural languages' capped corpora)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the trained tokenizer and of permutations")
    parser.add_argument("--model-name", default="", help="rows' `model` (default: the tokenizer's name)")
    return parser.parse_args(list(argv))


def run(argv: Sequence[str]) -> dict:
    """Compute both overlaps, append their rows to WORKDIR/results.jsonl, print them; return the summary."""
    args = parse_args(argv)
    a, b = Side.parse(args.a), Side.parse(args.b)
    workdir = storage.workdir_path(args.workdir)
    if args.tokenizer:
        tokenizer = Tokenizer.load(args.tokenizer)
        name, described = pathlib.Path(args.tokenizer).resolve().name, str(pathlib.Path(args.tokenizer).resolve())
    else:
        langs = [a.lang, b.lang]
        tokenizer = trained_tokenizer(langs, args.max_sentences, args.vocab_size, args.seed)
        name = f"spm-bpe-{'+'.join(dict.fromkeys(langs))}-V{args.vocab_size}-n{args.max_sentences}-seed{args.seed}"
        described = str(tokenizer.save(workdir / "overlap_tokenizers" / name))
    (counts_a, counts_b), _, sizes = side_counts([a, b], tokenizer, args.max_sentences, seed=args.seed)
    figures = overlap_figures(counts_a, counts_b)
    extra = {"tokenizer": described, "vocab_size": tokenizer.base_size, "max_sentences": args.max_sentences}
    rows = overlap_rows(a, b, figures, model=args.model_name or name, sentences=sizes, seed=args.seed, extra=extra)
    results.append_rows(workdir, rows)
    print(f"{a.name} vs {b.name}: tokenizer {name} (V={tokenizer.base_size}), {sizes[0]} + {sizes[1]} sentences")
    print(f"  type overlap   {figures['type_overlap']:6.2f}%  |E1∩E2| / |E1∪E2| = "
          f"{figures['types_shared']} / {figures['types_union']} non-special types")
    print(f"  token overlap  {figures['token_overlap']:6.2f}%  of the {figures['tokens_a'] + figures['tokens_b']} "
          "tokens of both corpora have a type the other corpus also has")  # fmt: skip
    summary = {"a": a.name, "b": b.name, "tokenizer": name, "type_overlap": figures["type_overlap"],
               "token_overlap": figures["token_overlap"], "weighted_jaccard": figures["weighted_jaccard"]}  # fmt: skip
    print(json.dumps(summary))
    return summary
