"""Word-order statistics of a target language: which of two units of a head comes first.

For every head of a reordered class (nouns: NOUN/PROPN/PRON; verbs: VERB, optionally AUX) the units are
the head itself (`HEAD`) and its dependents, labelled by dependency relation. `OrderStats` counts, over
the target language's UD treebanks, how often unit a precedes unit b among the units of one head. A pair
with the head is a side statistic (does `case` precede its noun?); a pair of dependents is their relative
order (does `case` precede `det` of the same noun?), counted over all of a head's dependents and, apart,
over those on the same side of it. Pairwise statistics, in the spirit of the log-linear pairwise
orderings of Galactic Dependencies (Wang & Eisner 2016), are what fixes the relative order of siblings on
one side of their head, which a single p(before) per relation cannot.

Estimates back off from full relations (`nmod:poss`) to base relations (`nmod`) and then to a prior
(for sides, the class's share of dependents before the head; for two dependents, the order their sides
imply, 1/2 when they share a side). An order shown in fewer than `min_share` of at least `min_evidence`
cases is impossible (probability exactly 0): the reorderer never produces what the target does not show.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from xlt_jax.data.paths import data_dir as default_data_dir
from xlt_jax.data.readers.conllu import Sentence, read_conllu
from xlt_jax.errors import TransformError

NOUN = "NOUN"
VERB = "VERB"
NOUN_UPOS = frozenset({"NOUN", "PROPN", "PRON"})
VERB_UPOS = frozenset({"VERB"})
VERB_UPOS_WITH_AUX = frozenset({"VERB", "AUX"})
HEAD = "<head>"  # the unit of the head itself (not a relation name)

# Treebanks (relative to the data directory) whose trees give each target language's order statistics:
# train splits only where they exist (dev/test are evaluation data), so en and fr are estimated apart from
# the PUD sentences `syntax_report` compares on. Hindi and Arabic have only PUD as CoNLL-U here (HDTB and
# PADT are missing, see shared/data/MANIFEST.md), French-GSD only dev/test.
TREEBANKS: dict[str, tuple[str, ...]] = {
    "en": ("ud/en_ewt/train.conllu.gz",),
    "fr": ("ud/fr_sequoia/train.conllu.gz", "ud/fr_partut/train.conllu.gz"),
    "hi": ("ud/hi_pud/test.conllu.gz",),
    "ar": ("ud/ar_pud/test.conllu.gz",),
}

ALL, LEFT, RIGHT = "all", "left", "right"  # contexts of a pair: anywhere, both before / both after the head
Key = tuple[str, str, str, str]  # (head class, context, unit a, unit b): a precedes b


def head_class(upos: str, *, include_aux: bool = False) -> str | None:
    """NOUN or VERB for heads whose dependents get reordered, None for every other head."""
    if upos in NOUN_UPOS:
        return NOUN
    if upos in (VERB_UPOS_WITH_AUX if include_aux else VERB_UPOS):
        return VERB
    return None


def base_deprel(deprel: str) -> str:
    """Universal relation without its language-specific subtype: `nmod:poss` -> `nmod`."""
    return deprel.split(":", 1)[0]


@dataclass
class OrderStats:
    """Counts of "unit a precedes unit b among one head's units", per head class, and their estimates.

    Keys are (class, context, a, b): context `ALL` counts every pair of one head's units, `LEFT` / `RIGHT`
    only pairs of dependents on that side of the head (the relative order of two siblings once their
    sides are fixed). `precedes` has full relations (and `HEAD`), `base_precedes` base relations. Pairs
    with the same label are not counted: the reorderer keeps such siblings (e.g. conjuncts) in their
    source order. `smoothing` is the pseudo-count of each back-off step.
    """

    precedes: dict[Key, int] = field(default_factory=dict)
    base_precedes: dict[Key, int] = field(default_factory=dict)
    include_aux: bool = False
    smoothing: float = 2.0
    min_share: float = 0.01
    min_evidence: int = 10
    _cache: dict[Key, float] = field(default_factory=dict, init=False, repr=False, compare=False)
    _priors: dict[str, float] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sentence], **options) -> OrderStats:
        stats = cls(**options)
        for sentence in sentences:
            stats.add(sentence)
        return stats

    @classmethod
    def from_treebanks(cls, paths: Iterable[str | os.PathLike], **options) -> OrderStats:
        return cls.from_sentences((s for path in paths for s in read_conllu(path)), **options)

    def add(self, sentence: Sentence) -> None:
        """Count every ordered pair of units of every noun or verb head in one sentence."""
        self._cache.clear()
        self._priors.clear()
        units: dict[int, list[tuple[int, str]]] = {}
        for dep, head in enumerate(sentence.heads.tolist()):
            if head > 0 and head_class(sentence.upos[head - 1], include_aux=self.include_aux) is not None:
                units.setdefault(head - 1, [(head - 1, HEAD)]).append((dep, sentence.deprels[dep]))
        for head, members in units.items():
            klass = head_class(sentence.upos[head], include_aux=self.include_aux)
            members.sort()
            for i, (first, a) in enumerate(members):
                for second, b in members[i + 1 :]:
                    if a == b:
                        continue
                    same_side = LEFT if second < head else RIGHT if first > head else None
                    for context in (ALL, same_side) if same_side else (ALL,):
                        _increment(self.precedes, (klass, context, a, b))
                        if base_deprel(a) != base_deprel(b):
                            _increment(self.base_precedes, (klass, context, base_deprel(a), base_deprel(b)))

    def count(self, klass: str, a: str, b: str, context: str = ALL, *, base: bool = False) -> tuple[int, int]:
        """(times a preceded b, times both were units of one head) in `context`."""
        table = self.base_precedes if base else self.precedes
        first = table.get((klass, context, a, b), 0)
        return first, first + table.get((klass, context, b, a), 0)

    def p_precedes(self, klass: str, a: str, b: str, context: str = ALL) -> float:
        """Estimated probability that unit a comes before unit b (labels differ; either may be `HEAD`).

        `context` LEFT / RIGHT: given that both are dependents on that side of the head.
        """
        key = (klass, context, a, b)
        if key not in self._cache:
            if a == b:
                raise ValueError(f"p_precedes: both units are {a!r}; same-label units keep their source order")
            if b == HEAD:
                self._cache[key] = self._side(klass, a)
            elif a == HEAD:
                self._cache[key] = 1.0 - self._side(klass, b)
            elif context == ALL:
                self._cache[key] = self._siblings(klass, a, b)
            else:
                self._cache[key] = self._same_side(klass, a, b, context)
        return self._cache[key]

    def p_before(self, klass: str, deprel: str) -> float:
        """Estimated probability that a `deprel` dependent of a `klass` head precedes it."""
        return self.p_precedes(klass, deprel, HEAD)

    def _side(self, klass: str, deprel: str) -> float:
        p_base = self._blend(*self.count(klass, base_deprel(deprel), HEAD, base=True), self._class_prior(klass))
        return self._blend(*self.count(klass, deprel, HEAD), p_base)

    def _class_prior(self, klass: str) -> float:
        """Share of the class's dependents that precede their head (add-one smoothed)."""
        if klass not in self._priors:
            table = self.base_precedes
            before = sum(n for (k, c, _, b), n in table.items() if k == klass and c == ALL and b == HEAD)
            after = sum(n for (k, c, a, _), n in table.items() if k == klass and c == ALL and a == HEAD)
            self._priors[klass] = (before + 1.0) / (before + after + 2.0)
        return self._priors[klass]

    def _siblings(self, klass: str, a: str, b: str) -> float:
        """Two dependents, wherever they are: backs off to the order their sides imply."""
        pa, pb = self.p_before(klass, a), self.p_before(klass, b)
        by_sides = pa * (1.0 - pb) + 0.5 * (pa * pb + (1.0 - pa) * (1.0 - pb))
        return self._backed_off(klass, a, b, ALL, by_sides)

    def _same_side(self, klass: str, a: str, b: str, side: str) -> float:
        """Two dependents on one side: backs off to their order anywhere, whose impossible orders stay so."""
        anywhere = self.p_precedes(klass, a, b)
        if anywhere in (0.0, 1.0):
            return anywhere
        return self._backed_off(klass, a, b, side, anywhere)

    def _backed_off(self, klass: str, a: str, b: str, context: str, prior: float) -> float:
        base_a, base_b = base_deprel(a), base_deprel(b)
        if base_a == base_b:
            return self._blend(*self.count(klass, a, b, context), prior)
        p_base = self._blend(*self.count(klass, base_a, base_b, context, base=True), prior)
        return self._blend(*self.count(klass, a, b, context), p_base)

    def _blend(self, first: int, total: int, fallback: float) -> float:
        """Smoothed share of `first` in `total`; exactly 0 or 1 when one order is (almost) never shown."""
        if total >= self.min_evidence:
            share = first / total
            if share < self.min_share:
                return 0.0
            if share > 1.0 - self.min_share:
                return 1.0
        return (first + self.smoothing * fallback) / (total + self.smoothing)

    def table(self) -> dict[tuple[str, str], tuple[float, int]]:
        """(class, relation) -> (estimated p(before head), count), for reports."""
        relations = {(k, a if b == HEAD else b) for k, c, a, b in self.precedes if HEAD in (a, b)}
        return {(k, r): (self.p_before(k, r), self.count(k, r, HEAD)[1]) for k, r in sorted(relations)}


def _increment(table: dict[Key, int], key: Key) -> None:
    table[key] = table.get(key, 0) + 1


def treebank_paths(lang: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """Absolute paths of `lang`'s statistics treebanks; a clear error for an unknown language or a missing file."""
    if lang not in TREEBANKS:
        raise TransformError(f"syntax:{lang}: no UD treebank for {lang!r}; known: {', '.join(sorted(TREEBANKS))}")
    root = os.fspath(data_dir) if data_dir is not None else os.fspath(default_data_dir())
    paths = [os.path.join(root, rel) for rel in TREEBANKS[lang]]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise TransformError(f"syntax:{lang}: order statistics need {', '.join(missing)}, which is missing")
    return paths


@functools.cache
def _cached_language_stats(paths: tuple[str, ...], options: tuple[tuple[str, object], ...]) -> OrderStats:
    return OrderStats.from_treebanks(paths, **dict(options))


def language_stats(lang: str, *, data_dir: str | os.PathLike | None = None, **options) -> OrderStats:
    """Order statistics of `lang` from its treebanks in `TREEBANKS` (cached per process and options)."""
    return _cached_language_stats(tuple(treebank_paths(lang, data_dir)), tuple(sorted(options.items())))
