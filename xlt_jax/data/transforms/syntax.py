"""Syntax transformation: reorder a sentence's gold UD tree to another language's head directions.

This is the "simpler faithful alternative" of REFERENCE_SPEC §1.6: instead of Galactic Dependencies'
log-linear orderings over Stanza parses, dependents of noun heads (NOUN/PROPN/PRON) and verb heads
(VERB, optionally AUX) are ordered by how often the target language puts each dependency relation before
its head, estimated from the target language's UD treebanks. Each dependent moves together with its whole
subtree, so the output is a projective linearisation of the same tree and every word keeps its tags
exactly (callers carry per-word arrays through the returned permutation; no string matching).

Ordering of one head's units `[head] + children`: dependents with p(before) > 0.5 go to the left in
decreasing p(before) (the most strongly head-final relations outermost), the others to the right in
increasing p(before) (the most strongly head-initial relations next to the head); ties keep the original
order. The sampled variant draws each dependent's side from Bernoulli(p(before)) and orders each side by
a Plackett-Luce draw whose mode is the deterministic order (weights = the odds of the side's direction),
which is closer to Galactic's sampling of one ordering. All draws are keyed by (seed, example id).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from xlt_jax.data import hashing
from xlt_jax.data.paths import data_dir as default_data_dir
from xlt_jax.data.readers.conllu import Sentence, read_conllu
from xlt_jax.errors import ConfigError, TransformError

NOUN = "NOUN"
VERB = "VERB"
NOUN_UPOS = frozenset({"NOUN", "PROPN", "PRON"})
VERB_UPOS = frozenset({"VERB"})
VERB_UPOS_WITH_AUX = frozenset({"VERB", "AUX"})

# Treebanks (relative to the data directory) whose trees give each target language's head directions.
# Hindi and Arabic have only PUD as CoNLL-U here (HDTB/PADT are missing, see shared/data/MANIFEST.md).
TREEBANKS: dict[str, tuple[str, ...]] = {
    "en": ("ud/en_ewt/train.conllu.gz", "ud/en_pud/test.conllu.gz"),
    "fr": ("ud/fr_sequoia/train.conllu.gz", "ud/fr_partut/train.conllu.gz", "ud/fr_pud/test.conllu.gz"),
    "hi": ("ud/hi_pud/test.conllu.gz",),
    "ar": ("ud/ar_pud/test.conllu.gz",),
}

Variant = Literal["deterministic", "sampled"]
NonProjective = Literal["skip", "projectivize"]
_VARIANTS = ("deterministic", "sampled")
_NONPROJECTIVE = ("skip", "projectivize")
_RNG_SALT = 0x5E7A  # separates the syntax draws from other users of (seed, example_id) keys


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
class HeadDirectionStats:
    """Per (head class, deprel) counts of dependents before their head, with hierarchical smoothing.

    p(before | class, deprel) is shrunk towards p(before | class, base deprel), which is shrunk towards
    the class's global share of dependents before the head; `smoothing` is the pseudo-count of each
    step. So rare subtypes borrow from their base relation and unseen relations get the class prior.
    """

    before: dict[tuple[str, str], int] = field(default_factory=dict)
    total: dict[tuple[str, str], int] = field(default_factory=dict)
    include_aux: bool = False
    smoothing: float = 2.0
    _cache: dict[tuple[str, str], float] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_sentences(
        cls, sentences: Iterable[Sentence], *, include_aux: bool = False, smoothing: float = 2.0
    ) -> HeadDirectionStats:
        stats = cls(include_aux=include_aux, smoothing=smoothing)
        for sentence in sentences:
            stats.add(sentence)
        return stats

    @classmethod
    def from_treebanks(
        cls, paths: Iterable[str | os.PathLike], *, include_aux: bool = False, smoothing: float = 2.0
    ) -> HeadDirectionStats:
        stats = cls(include_aux=include_aux, smoothing=smoothing)
        for path in paths:
            for sentence in read_conllu(path):
                stats.add(sentence)
        return stats

    def add(self, sentence: Sentence) -> None:
        """Count every dependent of a noun or verb head in one sentence."""
        self._cache.clear()
        for dep, head in enumerate(sentence.heads.tolist()):
            if head == 0:
                continue
            klass = head_class(sentence.upos[head - 1], include_aux=self.include_aux)
            if klass is None:
                continue
            key = (klass, sentence.deprels[dep])
            self.total[key] = self.total.get(key, 0) + 1
            self.before[key] = self.before.get(key, 0) + int(dep < head - 1)

    def p_before(self, klass: str, deprel: str) -> float:
        """Smoothed probability that a `deprel` dependent of a `klass` head precedes it."""
        key = (klass, deprel)
        if key not in self._cache:
            self._cache[key] = self._estimate(klass, deprel)
        return self._cache[key]

    def _estimate(self, klass: str, deprel: str) -> float:
        k = self.smoothing
        keys = [key for key in self.total if key[0] == klass]
        prior = (sum(self.before[key] for key in keys) + 1.0) / (sum(self.total[key] for key in keys) + 2.0)
        base = base_deprel(deprel)
        base_keys = [key for key in keys if base_deprel(key[1]) == base]
        base_before = sum(self.before[key] for key in base_keys)
        p_base = (base_before + k * prior) / (sum(self.total[key] for key in base_keys) + k)
        key = (klass, deprel)
        return (self.before.get(key, 0) + k * p_base) / (self.total.get(key, 0) + k)

    def table(self) -> dict[tuple[str, str], tuple[float, int]]:
        """(class, deprel) -> (smoothed p(before), count), for reports."""
        return {key: (self.p_before(*key), n) for key, n in sorted(self.total.items())}


@functools.cache
def _cached_language_stats(lang: str, root: str, include_aux: bool) -> HeadDirectionStats:
    return HeadDirectionStats.from_treebanks(
        [os.path.join(root, rel) for rel in TREEBANKS[lang]], include_aux=include_aux
    )


def language_stats(
    lang: str, *, data_dir: str | os.PathLike | None = None, include_aux: bool = False
) -> HeadDirectionStats:
    """Head-direction statistics of `lang` from its treebanks in `TREEBANKS` (cached per process)."""
    if lang not in TREEBANKS:
        raise TransformError(
            f"syntax:{lang}: no UD treebank for {lang!r}; known: {', '.join(sorted(TREEBANKS))}"
        )
    root = os.fspath(data_dir) if data_dir is not None else os.fspath(default_data_dir())
    return _cached_language_stats(lang, root, include_aux)


# ----------------------------------------------------------------------------------------------------
# Tree utilities (0-based `parents`, -1 for the root)


def parents_of(sentence: Sentence) -> np.ndarray:
    """0-based head index of every word, -1 for a root."""
    return sentence.heads.astype(np.int64) - 1


def _children(parents: Sequence[int]) -> tuple[list[list[int]], list[int]]:
    """Children of every word and the roots, each in surface order."""
    children: list[list[int]] = [[] for _ in parents]
    roots: list[int] = []
    for dep, head in enumerate(parents):
        (roots if head < 0 else children[head]).append(dep)
    return children, roots


def _linearise(parents: Sequence[int], order_units) -> list[int]:
    """Top-down linearisation: `order_units(head, children) -> (left, right)` places each head's units.

    Every child is emitted with its whole subtree in one block, so the result is projective. An explicit
    stack instead of recursion keeps deep chains safe. Roots keep their original relative order.
    """
    children, roots = _children(parents)
    out: list[int] = []
    stack = list(reversed(roots))  # v >= 0: expand subtree of v; ~v < 0: emit the word v itself
    while stack:
        item = stack.pop()
        if item < 0:
            out.append(~item)
        elif not children[item]:
            out.append(item)
        else:
            left, right = order_units(item, children[item])
            stack.extend(reversed(right))
            stack.append(~item)
            stack.extend(reversed(left))
    return out


def _original_units(head: int, children: list[int]) -> tuple[list[int], list[int]]:
    return [c for c in children if c < head], [c for c in children if c > head]


def is_projective(parents: Sequence[int] | np.ndarray) -> bool:
    """True when no two arcs cross (the artificial root sits before the first word).

    Equivalent to every subtree covering a contiguous span. One vectorised pass over all arc pairs:
    sentences are short, and this is several times faster than walking the tree in Python.
    """
    heads = np.asarray(parents, dtype=np.int64) + 1  # 1-based, 0 = artificial root
    deps = np.arange(1, len(heads) + 1)
    lo, hi = np.minimum(heads, deps), np.maximum(heads, deps)
    lo_a, hi_a, lo_b, hi_b = lo[:, None], hi[:, None], lo[None, :], hi[None, :]
    return not np.any((lo_a < lo_b) & (lo_b < hi_a) & (hi_a < hi_b))


def projectivize(parents: np.ndarray) -> np.ndarray:
    """Lift non-projective arcs (shortest first) to the head's head until the tree is projective.

    This attaches each offending dependent to its lowest ancestor that yields a projective arc
    (Nivre & Nilsson 2005 lifting); labels are unchanged.
    """
    parents = np.array(parents, dtype=np.int64)
    n = len(parents)
    positions = np.arange(n)
    while True:
        dominates = _dominance(parents)  # dominates[a, k]: a is k or an ancestor of k
        lo = np.minimum(parents, positions)[:, None]
        hi = np.maximum(parents, positions)[:, None]
        between = (positions[None, :] > lo) & (positions[None, :] < hi)
        ruled = dominates[np.maximum(parents, 0)]  # words the head dominates (row 0 unused for roots)
        crossing = (parents >= 0) & np.any(between & ~ruled, axis=1)
        if not crossing.any():
            return parents
        lengths = np.where(crossing, np.abs(parents - positions), n + 1)
        dep = int(np.argmin(lengths))
        parents[dep] = parents[parents[dep]]


def _dominance(parents: np.ndarray) -> np.ndarray:
    """Boolean [n, n] matrix: row a marks a and all its descendants."""
    n = len(parents)
    dominates = np.eye(n, dtype=bool)
    ancestor = parents.copy()
    cols = np.arange(n)
    while (ancestor >= 0).any():
        alive = ancestor >= 0
        dominates[ancestor[alive], cols[alive]] = True
        ancestor = np.where(alive, parents[np.where(alive, ancestor, 0)], -1)
    return dominates


def permute_sentence(sentence: Sentence, perm: np.ndarray) -> Sentence:
    """The sentence with words in `perm` order (new position i holds old word perm[i]), heads renumbered.

    Lets a derived treebank be written back as CoNLL-U (`write_conllu`). `text` is dropped: it no longer
    matches the words.
    """
    perm = np.asarray(perm)
    new_position = np.empty_like(perm)
    new_position[perm] = np.arange(len(perm))
    old_heads = sentence.heads[perm].astype(np.int64)
    heads = np.where(old_heads > 0, new_position[np.maximum(old_heads - 1, 0)] + 1, 0).astype(np.int32)
    return Sentence(
        sent_id=sentence.sent_id,
        text=None,
        forms=[sentence.forms[i] for i in perm],
        upos=[sentence.upos[i] for i in perm],
        heads=heads,
        deprels=[sentence.deprels[i] for i in perm],
    )


# ----------------------------------------------------------------------------------------------------
# The reorderer


class TreeReorderer:
    """Word permutations that give a sentence the head directions of `direction`'s language.

    `stats` counts, over all calls: sentences, reordered (order changed), nonprojective (found),
    skipped_nonprojective (returned unchanged) and projectivised.
    """

    def __init__(
        self,
        direction: HeadDirectionStats,
        *,
        variant: Variant = "deterministic",
        nonprojective: NonProjective = "skip",
    ):
        if variant not in _VARIANTS:
            raise ConfigError(f"syntax variant: {variant!r} is not one of {_VARIANTS}")
        if nonprojective not in _NONPROJECTIVE:
            raise ConfigError(f"syntax nonprojective: {nonprojective!r} is not one of {_NONPROJECTIVE}")
        self.direction = direction
        self.variant = variant
        self.nonprojective = nonprojective
        self.stats: dict[str, int] = dict.fromkeys(
            ("sentences", "reordered", "nonprojective", "skipped_nonprojective", "projectivised"), 0
        )

    def permutation(self, sentence: Sentence, *, seed: int = 0, example_id: int = 0) -> np.ndarray:
        """int64 [n]: position i of the output holds original word perm[i]."""
        uniforms = _word_uniforms(seed, [example_id], [len(sentence)]) if self.variant == "sampled" else None
        return self._permutation(sentence, uniforms)

    def permutations(
        self, sentences: Sequence[Sentence], *, seed: int, example_ids: Sequence[int]
    ) -> list[np.ndarray]:
        """`permutation` of many sentences, drawing all random numbers in one vectorised call.

        Gives exactly the per-sentence results (the draws are keyed per word, not per call).
        """
        if len(sentences) != len(example_ids):
            raise TransformError(f"{len(sentences)} sentences but {len(example_ids)} example ids")
        lengths = [len(s) for s in sentences]
        if self.variant != "sampled":
            return [self._permutation(s, None) for s in sentences]
        uniforms = _word_uniforms(seed, example_ids, lengths)
        starts = np.cumsum([0, *lengths])
        return [self._permutation(s, uniforms[:, starts[i] : starts[i + 1]]) for i, s in enumerate(sentences)]

    def _permutation(self, sentence: Sentence, uniforms: np.ndarray | None) -> np.ndarray:
        n = len(sentence)
        self.stats["sentences"] += 1
        identity = np.arange(n, dtype=np.int64)
        parents_array = parents_of(sentence)
        if not is_projective(parents_array):
            self.stats["nonprojective"] += 1
            if self.nonprojective == "skip":
                self.stats["skipped_nonprojective"] += 1
                return identity
            parents_array = projectivize(parents_array)
            self.stats["projectivised"] += 1
        parents = parents_array.tolist()
        klass = [head_class(u, include_aux=self.direction.include_aux) for u in sentence.upos]
        goes_left, weight = self._placement(sentence, parents, klass, uniforms)

        def order_units(head: int, children: list[int]) -> tuple[list[int], list[int]]:
            if klass[head] is None:
                return _original_units(head, children)
            left = sorted((c for c in children if goes_left[c]), key=lambda c: (-weight[c], c))
            right = sorted((c for c in children if not goes_left[c]), key=lambda c: (-weight[c], c))
            return left, right

        perm = np.asarray(_linearise(parents, order_units), dtype=np.int64)
        if not np.array_equal(perm, identity):
            self.stats["reordered"] += 1
        return perm

    def _placement(
        self, sentence: Sentence, parents: list[int], klass: list[str | None], uniforms: np.ndarray | None
    ) -> tuple[list[bool], list[float]]:
        """Per word: does it go left of its head, and its Plackett-Luce log-weight within that side.

        Left units are drawn outermost-first, so their weight is the odds of preceding the head; right
        units are drawn innermost-first, so their weight is the odds of following it. `uniforms` [2, n]
        selects the sampled variant (side draw, Gumbel noise for the order); None is deterministic.
        Words whose head is not reordered get placeholders. Plain Python: n is small, and NumPy calls
        per sentence would cost more than the arithmetic.
        """
        p_before = self.direction.p_before
        p = [
            p_before(klass[head], sentence.deprels[dep]) if head >= 0 and klass[head] is not None else 0.5
            for dep, head in enumerate(parents)
        ]
        log_odds = [math.log(q / (1.0 - q)) for q in p]
        if uniforms is None:
            goes_left = [q > 0.5 for q in p]
            return goes_left, [lo if left else -lo for lo, left in zip(log_odds, goes_left, strict=True)]
        u_side, u_order = uniforms.tolist()
        goes_left = [u < q for u, q in zip(u_side, p, strict=True)]
        gumbel = [-math.log(-math.log(min(max(u, 1e-12), 1.0 - 1e-12))) for u in u_order]  # Gumbel-max = PL
        weight = [(lo if left else -lo) + g for lo, left, g in zip(log_odds, goes_left, gumbel, strict=True)]
        return goes_left, weight


def _word_uniforms(seed: int, example_ids: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
    """float64 [2, total words]: the side and order draws of every word, keyed by (seed, id, word)."""
    ids = np.repeat(np.asarray(example_ids, dtype=np.int64), lengths)
    word = np.arange(len(ids)) - np.repeat(np.cumsum([0, *lengths])[:-1], lengths)
    return hashing.uniform(seed, _RNG_SALT, ids[None, :], np.arange(2)[:, None], word[None, :])


# ----------------------------------------------------------------------------------------------------
# The transform object used by the spec parser (`syntax:LANG`)


class SyntaxTransform:
    """`syntax:LANG`: word-level reordering of gold UD trees toward LANG's head directions.

    Needs the sentence's tree: `apply_words` and `permutation` raise `TransformError` without one (e.g.
    on XQuAD, where the reference does not apply Syntax either).
    """

    copies = 1

    def __init__(
        self,
        target_lang: str,
        *,
        variant: Variant = "deterministic",
        nonprojective: NonProjective = "skip",
        data_dir: str | os.PathLike | None = None,
        include_aux: bool = False,
        direction: HeadDirectionStats | None = None,
    ):
        self.target_lang = target_lang
        self.name = f"syntax:{target_lang}"
        if direction is None:
            direction = language_stats(target_lang, data_dir=data_dir, include_aux=include_aux)
        self.reorderer = TreeReorderer(direction, variant=variant, nonprojective=nonprojective)

    @property
    def stats(self) -> dict[str, int]:
        return self.reorderer.stats

    def permutation(self, sentence: Sentence | None, *, seed: int, example_id: int) -> np.ndarray:
        if sentence is None:
            raise TransformError(f"{self.name} needs a gold UD tree (a CoNLL-U Sentence); none was given")
        return self.reorderer.permutation(sentence, seed=seed, example_id=example_id)

    def apply_words(
        self,
        words: Sequence[str],
        tags: Sequence | np.ndarray | None = None,
        *,
        seed: int,
        example_id: int,
        sentence: Sentence | None = None,
    ) -> tuple[list[str], list | np.ndarray | None]:
        """Reorder `words` (and `tags` with them) as the tree of `sentence` dictates."""
        perm = self.permutation(sentence, seed=seed, example_id=example_id)
        if len(words) != len(perm):
            raise TransformError(
                f"{self.name}: {len(words)} words, but sentence {sentence.sent_id!r} has {len(perm)}"
            )
        if tags is not None and len(tags) != len(perm):
            raise TransformError(f"{self.name}: {len(tags)} tags for {len(perm)} words")
        new_words = [words[i] for i in perm]
        if tags is None:
            return new_words, None
        if isinstance(tags, np.ndarray):
            return new_words, tags[perm]
        return new_words, [tags[i] for i in perm]


# The name the spec parser (`transforms/spec.py`) builds `syntax:LANG` with: SyntaxReorderer(lang, **opts).
SyntaxReorderer = SyntaxTransform


def reorder_treebank(sentences: Sequence[Sentence], transform: SyntaxTransform, seed: int) -> list[list[str]]:
    """Derived corpus: the words of every sentence in transformed order (example id = index)."""
    perms = transform.reorderer.permutations(sentences, seed=seed, example_ids=range(len(sentences)))
    return [[s.forms[i] for i in perm] for s, perm in zip(sentences, perms, strict=True)]


def share_before_head(
    sentences: Sequence[Sentence],
    perms: Sequence[np.ndarray] | None,
    *,
    deprel: str,
    head_upos: Container[str],
) -> float:
    """Share of `deprel` dependents (base relation) placed before a head with UPOS in `head_upos`.

    The word-order measurement used to check that Syntax moves a language toward its target (e.g. the
    share of objects before their verb: English ~0.02, Hindi ~0.99).
    """
    before = total = 0
    for index, sentence in enumerate(sentences):
        position = np.empty(len(sentence), dtype=np.int64)
        position[perms[index] if perms is not None else np.arange(len(sentence))] = np.arange(len(sentence))
        for dep, head in enumerate(sentence.heads.tolist()):
            if (
                head > 0
                and base_deprel(sentence.deprels[dep]) == deprel
                and sentence.upos[head - 1] in head_upos
            ):
                total += 1
                before += int(position[dep] < position[head - 1])
    return before / total if total else float("nan")
