"""Parsed trees for task data without gold ones, so `syntax:LANG` reorders NER, XNLI and Tatoeba too.

`LoadedSplit.trees` holds what the featurizers pass to the word stage, per task:
  pos, ner   one tree per sentence of tokens (tags travel with their words through the permutation)
  nli        a (premise tree, hypothesis tree) pair per example: each sentence is reordered on its own
  tatoeba    one tree per candidate (the sentences a transformation applies to: the derived side, or the
             non-English side of the pairs)
Text is split on whitespace, as the featurizers split it, so every tree has exactly the words they reorder.
Gold trees (POS from CoNLL-U) are kept: parsing only fills in what the data lacks.
"""

from __future__ import annotations

from xlt_jax.data import parse
from xlt_jax.data.tasks.sources import LoadedSplit
from xlt_jax.errors import TransformError

_PER_EXAMPLE = {"pos": 1, "ner": 1, "nli": 2, "tatoeba": 1}  # sentences reordered per example


def reordered_word_lists(loaded: LoadedSplit) -> list[list[str]]:
    """The words of every sentence a word-level transform reorders, example by example."""
    if loaded.task in ("pos", "ner"):
        return [list(e.tokens) for e in loaded.examples]
    if loaded.task == "nli":
        return [words for e in loaded.examples for words in (e.premise.split(), e.hypothesis.split())]
    if loaded.task == "tatoeba":
        candidates = [src for src, _ in loaded.examples] if loaded.source == "pairs" else loaded.examples
        return [c.split() for c in candidates]
    raise TransformError(f"{loaded.task}: syntax reordering does not apply to this task")


def attach_parses(loaded: LoadedSplit, trees: str, model: str = "") -> str:
    """Fill `loaded.trees` from the parser `trees` names unless the split has gold trees; returns the
    trees' source ("gold" or the backend). `trees="gold"` leaves a split without trees as it is."""
    if loaded.trees is not None or parse.check_trees(trees) == "gold":
        return "gold"
    parsed = parse.parse_sentences(reordered_word_lists(loaded), loaded.lang, trees=trees, model=model)
    width = _PER_EXAMPLE[loaded.task]
    loaded.trees = parsed if width == 1 else [tuple(parsed[i : i + width]) for i in range(0, len(parsed), width)]
    return trees
