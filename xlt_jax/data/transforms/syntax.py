"""Syntax transformation: reorder a sentence's gold UD tree into orders the target language shows.

This is the "simpler faithful alternative" of REFERENCE_SPEC §1.6 to Galactic Dependencies' log-linear
orderings over Stanza parses: the units of every noun head (NOUN/PROPN/PRON) and verb head (VERB,
optionally AUX) -- the head itself and each dependent with its whole subtree -- are put in an order drawn
from the target language's pairwise order statistics (`syntax_stats.OrderStats`, estimated from its UD
treebanks). The output is a projective linearisation of the same tree, and every word keeps its tags
exactly (callers carry per-word arrays through the returned permutation; no string matching).

A head's dependents are placed in two steps. Sides: each dependent goes before the head with the
target's p(before) for its relation (`choose_sides`). Within a side: the dependents are ordered one
position at a time, left to right (`sequential_order`); a dependent that some remaining one must precede
cannot be placed, and among the others dependent u has weight prod_v P(u before v | same side) over the
remaining v -- its chance to come first if the pairs were independent. Sampling the sides first keeps
each relation's side distribution exact, which a product of pairwise probabilities with the head as a unit
would squash toward the majority side. An order the target (almost) never shows has probability 0 in the
statistics and is never produced: not within a side, and not across the head either, since a side that
would put a dependent on the wrong side of a sibling is switched when the other side is free of conflicts.

The sampled variant (the default; the reference samples one Galactic ordering too) draws sides and
positions from uniforms keyed by (seed, example id, word); the deterministic variant
(`syntax:LANG[deterministic]`) takes the likelier side and the heaviest dependent, ties in source order.
Dependents with the same relation (e.g. two conjuncts) keep their source order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Literal

import numpy as np

from xlt_jax.data import hashing
from xlt_jax.data.readers.conllu import Sentence
from xlt_jax.data.transforms.syntax_stats import LEFT, RIGHT, OrderStats, head_class, language_stats
from xlt_jax.data.transforms.syntax_trees import (
    is_projective,
    linearise,
    original_units,
    parents_of,
    projectivize,
)
from xlt_jax.errors import ConfigError, TransformError

Variant = Literal["sampled", "deterministic"]
NonProjective = Literal["skip", "projectivize"]
VARIANTS = ("sampled", "deterministic")
NONPROJECTIVE = ("skip", "projectivize")
_RNG_SALT = 0x5E7A  # separates the syntax draws from other users of (seed, example_id) keys
_IMPOSSIBLE = -math.inf  # log-probability of an order the target never shows


class TreeReorderer:
    """Word permutations that give a sentence the word order of `order`'s language.

    `stats` counts, over all calls: sentences, reordered (order changed), nonprojective (found),
    skipped_nonprojective (returned unchanged) and projectivised.
    """

    def __init__(self, order: OrderStats, *, variant: Variant = "sampled", nonprojective: NonProjective = "skip"):
        if variant not in VARIANTS:
            raise ConfigError(f"syntax variant: {variant!r} is not one of {VARIANTS}")
        if nonprojective not in NONPROJECTIVE:
            raise ConfigError(f"syntax nonprojective: {nonprojective!r} is not one of {NONPROJECTIVE}")
        self.order = order
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
        if self.variant != "sampled":
            return [self._permutation(s, None) for s in sentences]
        lengths = [len(s) for s in sentences]
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
        klass = [head_class(u, include_aux=self.order.include_aux) for u in sentence.upos]
        draws = None if uniforms is None else uniforms.tolist()

        def order_units(head: int, children: list[int]) -> tuple[list[int], list[int]]:
            if klass[head] is None:
                return original_units(head, children)
            return order_dependents(self.order, klass[head], children, sentence.deprels, draws)

        perm = np.asarray(linearise(parents_array.tolist(), order_units), dtype=np.int64)
        if not np.array_equal(perm, identity):
            self.stats["reordered"] += 1
        return perm


def order_dependents(
    order: OrderStats, klass: str, children: list[int], deprels: Sequence[str], draws: list[list[float]] | None
) -> tuple[list[int], list[int]]:
    """(dependents before the head, dependents after it), each left to right; `draws`: [side, order] rows
    of per-word uniforms (None: deterministic)."""
    labels = [deprels[c] for c in children]
    goes_left = choose_sides(order, klass, labels, None if draws is None else [draws[0][c] for c in children])
    sides = []
    for context, left in ((LEFT, True), (RIGHT, False)):
        members = [c for c, go in zip(children, goes_left, strict=True) if go == left]
        member_draws = None if draws is None else [draws[1][c] for c in members]
        ranked = sequential_order(order, klass, [deprels[c] for c in members], member_draws, context)
        sides.append([members[i] for i in ranked])
    return sides[0], sides[1]


def choose_sides(order: OrderStats, klass: str, labels: Sequence[str], draws: Sequence[float] | None) -> list[bool]:
    """Whether each dependent (`labels` in source order) goes before its head.

    Each side is drawn from the target's p(before) (deterministic: the likelier side), the most certain
    dependents first; a dependent whose side would put it across the head from a sibling in an order the
    target never shows (including a same-label sibling out of source order) takes the other side if that
    one is free of such conflicts.
    """
    p = [order.p_before(klass, label) for label in labels]
    wanted = [q > 0.5 for q in p] if draws is None else [u < q for u, q in zip(draws, p, strict=True)]
    placed: dict[int, bool] = {}
    for i in sorted(range(len(labels)), key=lambda i: (-abs(p[i] - 0.5), i)):
        left = wanted[i]
        conflict = _crosses_badly(order, klass, labels, i, left, placed)
        if conflict and p[i] not in (0.0, 1.0) and not _crosses_badly(order, klass, labels, i, not left, placed):
            left = not left
        placed[i] = left
    return [placed[i] for i in range(len(labels))]


def _crosses_badly(
    order: OrderStats, klass: str, labels: Sequence[str], i: int, left: bool, placed: dict[int, bool]
) -> bool:
    """Would dependent i on this side come before or after a placed sibling in an impossible order?"""
    for j, j_left in placed.items():
        if left == j_left:
            continue
        first, second = (i, j) if left else (j, i)  # the left one precedes the right one
        if labels[first] == labels[second] and first > second:
            return True
        if labels[first] != labels[second] and order.p_precedes(klass, labels[first], labels[second]) == 0.0:
            return True
    return False


def log_preferences(order: OrderStats, klass: str, labels: Sequence[str], context: str) -> list[list[float]]:
    """[m][m] log P(unit i before unit j) for units in source order (`_IMPOSSIBLE` for probability 0).

    Units with the same label keep their source order (the earlier one surely first).
    """
    m = len(labels)
    logp = [[0.0] * m for _ in range(m)]
    for i in range(m):
        for j in range(i + 1, m):
            p = 1.0 if labels[i] == labels[j] else order.p_precedes(klass, labels[i], labels[j], context)
            logp[i][j] = math.log(p) if p > 0.0 else _IMPOSSIBLE
            logp[j][i] = math.log(1.0 - p) if p < 1.0 else _IMPOSSIBLE
    return logp


def sequential_order(
    order: OrderStats, klass: str, labels: Sequence[str], draws: Sequence[float] | None, context: str
) -> list[int]:
    """Output order of the dependents on one side of a head (indices into `labels`), left to right.

    Each step places a unit that no remaining unit must precede (if a cycle of impossible orders leaves
    none, one with the fewest such conflicts), chosen with weight prod_v P(u before v | same side) over
    the remaining v: the heaviest (deterministic, `draws` None) or drawn with `draws[step]`.
    """
    logp = log_preferences(order, klass, labels, context)
    blocked = [sum(v == _IMPOSSIBLE for v in row) for row in logp]
    score = [sum(v for v in row if v != _IMPOSSIBLE) for row in logp]
    remaining = list(range(len(labels)))
    out: list[int] = []
    for step in range(len(labels) - 1):
        fewest = min(blocked[i] for i in remaining)
        candidates = [i for i in remaining if blocked[i] == fewest]
        pick = _pick(candidates, score, None if draws is None else draws[step])
        out.append(pick)
        remaining.remove(pick)
        for i in remaining:  # `pick` no longer competes: drop its term from the others' weights
            if logp[i][pick] == _IMPOSSIBLE:
                blocked[i] -= 1
            else:
                score[i] -= logp[i][pick]
    return out + remaining


def _pick(candidates: list[int], score: list[float], draw: float | None) -> int:
    """The heaviest candidate (ties: the earliest in source order), or one drawn in proportion to weight."""
    if draw is None:
        return max(candidates, key=lambda i: (round(score[i], 9), -i))
    top = max(score[i] for i in candidates)
    weights = [math.exp(score[i] - top) for i in candidates]
    threshold, total = draw * sum(weights), 0.0
    for i, weight in zip(candidates, weights, strict=True):
        total += weight
        if threshold < total:
            return i
    return candidates[-1]


def _word_uniforms(seed: int, example_ids: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
    """float64 [2, total words]: each word's side and order draws, keyed by (seed, example id, word)."""
    ids = np.repeat(np.asarray(example_ids, dtype=np.int64), lengths)
    word = np.arange(len(ids)) - np.repeat(np.cumsum([0, *lengths])[:-1], lengths)
    return hashing.uniform(seed, _RNG_SALT, ids[None, :], np.arange(2)[:, None], word[None, :])


# ----------------------------------------------------------------------------------------------------
# The transform object used by the spec parser (`syntax:LANG`)


class SyntaxTransform:
    """`syntax:LANG`: word-level reordering of gold UD trees into LANG's word orders.

    Needs the sentence's tree: `apply_words` and `permutation` raise `TransformError` without one (e.g.
    on XQuAD, where the reference does not apply Syntax either).
    """

    copies = 1

    def __init__(
        self,
        target_lang: str,
        *,
        variant: Variant = "sampled",
        nonprojective: NonProjective = "skip",
        data_dir: str | os.PathLike | None = None,
        include_aux: bool = False,
        order_stats: OrderStats | None = None,
    ):
        self.target_lang = target_lang
        self.name = f"syntax:{target_lang}" + ("[deterministic]" if variant == "deterministic" else "")
        if order_stats is None:
            order_stats = language_stats(target_lang, data_dir=data_dir, include_aux=include_aux)
        self.reorderer = TreeReorderer(order_stats, variant=variant, nonprojective=nonprojective)

    @property
    def stats(self) -> dict[str, int]:
        return self.reorderer.stats

    def permutation(self, sentence: Sentence | None, *, seed: int, example_id: int) -> np.ndarray:
        if sentence is None:
            raise TransformError(f"{self.name} needs a gold UD tree or a parsed one (a CoNLL-U Sentence); none was "
                                 "given (data without gold trees needs a parser: syntax.trees=udpipe or stanza)")
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
