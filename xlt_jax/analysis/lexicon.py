"""Bilingual lexicon induction (BLI) P@1 for natural language pairs, with the MUSE dictionaries.

The extension REFERENCE_SPEC §6.9 suggests for pairs without an isomorphic vocabulary: the same
L2-normalise → orthogonal Procrustes → retrieval pipeline as the token alignment, on dictionary pairs.

- Words: dictionary pairs whose source word is ONE piece of the source tokenizer and whose target word is
  one piece of the target tokenizer (`▁word`: the word with its leading space). MUSE is lower-cased, so
  capitalised-only pieces never count.
- Split: MUSE's standard 0-5000 / 5000-6500 splits are not in the data directory (MANIFEST), so the source
  words are shuffled with a seed and `test_fraction` of them are held out: the test words share no source
  word with the training pairs. Procrustes is fitted on every training pair.
- P@1: a test word counts when its retrieved target piece is ANY of its dictionary translations (MUSE's
  convention). Candidates are every word-initial piece (`▁…`) of the target vocabulary, i.e. every
  single-token word. With one shared table (a bilingual model) a word spelled alike in both languages is its
  own translation, which `identity` (no map) then finds: that is sub-word overlap at work.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from xlt_jax.analysis import alignment
from xlt_jax.data import paths
from xlt_jax.data.tokenizer import Tokenizer
from xlt_jax.errors import ConfigError

DICTIONARY_DIR = "dictionaries/muse_full"
WORD_START = "▁"


def dictionary_path(src: str, tgt: str, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """`dictionaries/muse_full/<src>-<tgt>.dict[.gz]` of the data directory; missing: an error naming it."""
    root = pathlib.Path(data_dir) if data_dir is not None else paths.data_dir()
    found = sorted((root / DICTIONARY_DIR).glob(f"{src}-{tgt}.dict*"))
    if not found:
        have = sorted(p.name.split(".")[0] for p in (root / DICTIONARY_DIR).glob("*-*.dict*"))
        raise ConfigError(f"no MUSE dictionary {src}-{tgt} ({root / DICTIONARY_DIR}/{src}-{tgt}.dict.gz); "
                          f"available: {', '.join(have) or 'none'}")  # fmt: skip
    return found[0]


def single_piece_ids(words: Sequence[str], tokenizer: Tokenizer) -> dict[str, int]:
    """Words that the tokenizer encodes as exactly one non-special piece, with that piece's id."""
    unique = list(dict.fromkeys(words))
    specials = set(tokenizer.layout().specials.all)
    return {w: int(ids[0]) for w, ids in zip(unique, tokenizer.encode_batch(unique), strict=True)
            if len(ids) == 1 and int(ids[0]) not in specials}  # fmt: skip


def token_pairs(
    pairs: Sequence[tuple[str, str]], src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer
) -> list[tuple[int, int]]:
    """Distinct (source id, target id) of the dictionary pairs whose two words are single pieces."""
    src_ids = single_piece_ids([s for s, _ in pairs], src_tokenizer)
    tgt_ids = single_piece_ids([t for _, t in pairs], tgt_tokenizer)
    kept = ((src_ids[s], tgt_ids[t]) for s, t in pairs if s in src_ids and t in tgt_ids)
    return list(dict.fromkeys(kept))


@dataclasses.dataclass(frozen=True)
class LexiconSplit:
    """Training pairs (to fit the map) and held-out source ids with all their gold target ids."""

    train: np.ndarray  # [n, 2] (source id, target id)
    test_sources: np.ndarray  # [m] source ids, disjoint from train[:, 0]
    test_gold: tuple[frozenset[int], ...]  # translations of each test source id
    seed: int


def split_lexicon(pairs: Sequence[tuple[int, int]], test_fraction: float, seed: int) -> LexiconSplit:
    """Hold out a seeded `test_fraction` of the source ids (stand-in for MUSE's missing 5000-6500 split)."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    gold: dict[int, set[int]] = collections.defaultdict(set)
    for s, t in pairs:
        gold[s].add(t)
    sources = np.array(sorted(gold), dtype=np.int64)
    n_test = int(round(test_fraction * len(sources)))
    if n_test < 1 or n_test == len(sources):
        raise ConfigError(f"{len(sources)} single-token source words leave no train or test words at "
                          f"test_fraction={test_fraction}")  # fmt: skip
    order = np.random.default_rng(seed).permutation(len(sources))
    test = np.sort(sources[order[:n_test]])
    held_out = set(test.tolist())
    train = np.array([(s, t) for s, t in pairs if s not in held_out], dtype=np.int64).reshape(-1, 2)
    return LexiconSplit(train, test, tuple(frozenset(gold[s]) for s in test.tolist()), seed)


def word_candidates(tokenizer: Tokenizer) -> np.ndarray:
    """Ids of every word-initial piece (`▁…`): the single-token words a translation can be."""
    return np.array([i for i in range(tokenizer.base_size) if tokenizer.sp.id_to_piece(i).startswith(WORD_START)
                     and not tokenizer.sp.is_control(i)], dtype=np.int64)  # fmt: skip


def precision_at_1(predicted: np.ndarray, gold: Sequence[frozenset[int]]) -> float:
    """Percent of test words whose retrieved id is one of their translations."""
    return 100.0 * float(np.mean([int(p) in g for p, g in zip(predicted.tolist(), gold, strict=True)]))


def bli_figures(
    src_table: np.ndarray,
    tgt_table: np.ndarray,
    split: LexiconSplit,
    candidates: np.ndarray,
    *,
    src_rows: np.ndarray | None = None,
    csls: bool = False,
) -> dict[str, float]:
    """P@1 of the held-out words without a map (`identity`: meaningful for one shared table; chance for two
    separately trained tables) and with the Procrustes map fitted on the training pairs, by NN and with
    `csls` also by CSLS. `src_rows` are the source vocabulary CSLS measures a candidate's hubness against
    (default: every source row)."""
    if len(split.train) == 0:
        raise ConfigError("no training pairs to fit the Procrustes map on")
    src, tgt = alignment.unit_rows(src_table), alignment.unit_rows(tgt_table)
    if src.shape[1] != tgt.shape[1]:
        raise ConfigError(f"embedding widths differ ({src.shape[1]} vs {tgt.shape[1]}): no orthogonal map")
    sources = src if src_rows is None else src[src_rows]
    mapping = alignment.orthogonal_map(src[split.train[:, 0]], tgt[split.train[:, 1]])
    queries, pool = src[split.test_sources], tgt[candidates]
    figures = {}
    for name, query_rows, source_rows in (("identity", queries, sources),
                                          ("procrustes", queries @ mapping, sources @ mapping)):  # fmt: skip
        figures[f"bli_p1_nn_{name}"] = precision_at_1(candidates[alignment.nearest(query_rows, pool)], split.test_gold)
        if csls:
            best = alignment.csls_nearest(query_rows, pool, source_rows)
            figures[f"bli_p1_csls_{name}"] = precision_at_1(candidates[best], split.test_gold)
    return figures


def spelled_apart(split: LexiconSplit) -> LexiconSplit:
    """The split without the test words that are their own translation (same id): with one shared table, the
    words whose P@1 needs an actual cross-lingual match."""
    keep = [i for i, (s, gold) in enumerate(zip(split.test_sources.tolist(), split.test_gold, strict=True))
            if s not in gold]  # fmt: skip
    return dataclasses.replace(split, test_sources=split.test_sources[keep],
                               test_gold=tuple(split.test_gold[i] for i in keep))  # fmt: skip


def own_translation_share(split: LexiconSplit) -> float:
    """Percent of test words that are their own translation (same id). With one shared table, what identity
    retrieval gets for free: words spelled alike in both languages (names, numbers, cognates)."""
    return precision_at_1(split.test_sources, split.test_gold)
