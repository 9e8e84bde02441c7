"""Corpus-source variants of a bilingual corpus (the paper's §4.3, Table 8): where the derived side's text
comes from.

| variant | original side | derived side |
|---|---|---|
| `parallel` | the corpus (`corpus.source`) | T(the same sentences): today's default |
| `nonparallel_same` | one half of the same-domain text | T(the other, disjoint half) |
| `nonparallel_diff` | that half (cut to the other side's size) | T(text of another domain) |

The paper takes both non-parallel sides from Wikipedia (same domain) or the derived side from web text
(different domain). Here the domains are named `pretraining_sources` per language (`corpus.same_domain`,
`corpus.other_domain`): Wikipedia = WikiANN train (all four languages) and the SQuAD contexts (en);
news/web = UD English-EWT (weblogs, newsgroups, e-mail, reviews, answers), the Arabic PADT newswire of
XTREME's `train-ar`, and the Leipzig news/web samples. The halves come from one permutation keyed by
`corpus.split_seed`; sentences are deduplicated first (whitespace-insensitive `sentence_key`), so the halves
share no sentence, and the other domain's text loses every sentence the same domain also has. Both sides
are cut to the same number of words (whitespace words, to within one sentence; the pipeline then trains on
as many blocks of each), by seeded random subsets, so the derived side is never a biased prefix.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from xlt_jax.data import corpora, paths
from xlt_jax.errors import ConfigError

PARALLEL = "parallel"
VARIANTS = (PARALLEL, "nonparallel_same", "nonparallel_diff")


@dataclasses.dataclass(frozen=True)
class Sides:
    """The two sides of a non-parallel corpus: the original text and the text the derived side is made of."""

    original: list[str]
    derived: list[str]
    available: tuple[int, int]  # sentences each side could have had before they were cut to one amount of text

    def describe(self) -> str:
        words = [sum(len(s.split()) for s in side) for side in (self.original, self.derived)]
        return (f"{len(self.original):,} / {len(self.derived):,} sentences, {words[0]:,} / {words[1]:,} words "
                f"(original / derived source; {self.available[0]:,} / {self.available[1]:,} available)")


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ConfigError(f"corpus.variant: {variant!r} is not a corpus variant; expected one of {', '.join(VARIANTS)}")
    return variant


def domain_sentences(lang: str, names: Iterable[str], data_dir: str | os.PathLike | None = None) -> list[str]:
    """Pretraining sentences of `lang` from the named `corpora.pretraining_sources` only (one domain, e.g.
    `wikiann+squad`), deduplicated, minus evaluation sentences: the `sources:NAMES:LANG` source string."""
    root = pathlib.Path(data_dir).resolve() if data_dir is not None else paths.data_dir()
    return list(_domain_corpus(lang, tuple(dict.fromkeys(names)), root))


@functools.lru_cache(maxsize=32)
def _domain_corpus(lang: str, names: tuple[str, ...], root: pathlib.Path) -> tuple[str, ...]:
    unknown = [n for n in names if n not in corpora.SOURCE_NAMES]
    if unknown or not names:
        raise ConfigError(f"sources:{'+'.join(names)}:{lang}: unknown source name(s) {unknown}; "
                          f"expected '+'-joined names from {', '.join(corpora.SOURCE_NAMES)}")
    available = corpora.pretraining_sources(lang, root)
    chosen = [s for s in available if s.name in names]
    if not chosen:
        have = ", ".join(dict.fromkeys(s.name for s in available)) or "none"
        raise ConfigError(f"sources:{'+'.join(names)}:{lang}: none of these sources has text of {lang!r} in {root} "
                          f"(it has: {have})")
    return tuple(corpora.collect_sentences(chosen, corpora.evaluation_keys(lang, root)))


def domain_source(domains: Mapping[str, str], key: str, lang: str) -> str:
    """The `sources:NAMES:LANG` string of `lang`'s entry in a domain table (`corpus.same_domain`, ...)."""
    names = domains.get(lang, "")
    if not names:
        listed = ", ".join(sorted(domains.keys())) or "none"
        raise ConfigError(f"{key}: no entry for language {lang!r} (entries: {listed}); give its source names, e.g. "
                          f"--config.{key}.{lang}=wikiann")
    return f"sources:{names}:{lang}"


def _order(n: int, seed: int, stream: int) -> np.ndarray:
    """A permutation of range(n) keyed by (seed, stream): the same on every host and in every run."""
    return np.random.default_rng([seed, stream]).permutation(n)


def _pick(sentences: Sequence[str], indices: np.ndarray) -> list[str]:
    """Sentences at `indices`, in corpus order (the permutation chooses them, it does not reorder them)."""
    return [sentences[i] for i in np.sort(indices)]


def halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint index sets of size n // 2, in permutation order (a prefix of each is a random subset)."""
    order = _order(n, seed, 0)
    half = n // 2
    return order[:half], order[half:2 * half]


def _words(sentences: Sequence[str], order: np.ndarray) -> np.ndarray:
    """Cumulative whitespace words of `sentences` taken in `order`."""
    return np.cumsum([len(sentences[i].split()) for i in order], dtype=np.int64)


def equal_words(first: Sequence[str], first_order: np.ndarray, second: Sequence[str], second_order: np.ndarray,
                limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The longest prefixes of both orders (at most `limit` sentences each) whose word counts both stay within
    the smaller side's: the two sides get the same amount of text, to within one sentence."""
    if limit is not None:
        first_order, second_order = first_order[:limit], second_order[:limit]
    a, b = _words(first, first_order), _words(second, second_order)
    budget = min(a[-1] if len(a) else 0, b[-1] if len(b) else 0)
    return (first_order[:np.searchsorted(a, budget, side="right")],
            second_order[:np.searchsorted(b, budget, side="right")])


def nonparallel_same(same: Sequence[str], seed: int, limit: int | None = None) -> Sides:
    """Original = one half of `same`, derived source = the other half, cut to the same number of words (and at
    most `limit` sentences each)."""
    first, second = halves(len(same), seed)
    kept = equal_words(same, first, same, second, limit)
    return Sides(_pick(same, kept[0]), _pick(same, kept[1]), (len(first), len(second)))


def nonparallel_diff(same: Sequence[str], other: Sequence[str], seed: int, limit: int | None = None) -> Sides:
    """Original = a subset of the `nonparallel_same` original half of `same`; derived source = `other` minus every
    sentence `same` has; both cut to the same number of words by seeded random subsets (at most `limit`
    sentences each)."""
    first, _ = halves(len(same), seed)
    keys = {corpora.sentence_key(s) for s in same}
    other = [s for s in other if corpora.sentence_key(s) not in keys]
    kept = equal_words(same, first, other, _order(len(other), seed, 1), limit)
    return Sides(_pick(same, kept[0]), _pick(other, kept[1]), (len(first), len(other)))
