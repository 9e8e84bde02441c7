"""Dependency-tree utilities behind the syntax transformation: projectivity, lifting, linearisation.

Trees are arrays of 0-based `parents` with -1 for a root. Kept apart from the ordering statistics and the
reorderer because they depend on neither: they say which orders a tree allows, not which one to pick.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from xlt_jax.data.readers.conllu import Sentence

# order_units(head, children) -> (units left of the head, units right of it), each in output order
OrderUnits = Callable[[int, list[int]], tuple[list[int], list[int]]]


def parents_of(sentence: Sentence) -> np.ndarray:
    """0-based head index of every word, -1 for a root."""
    return sentence.heads.astype(np.int64) - 1


def children_of(parents: Sequence[int]) -> tuple[list[list[int]], list[int]]:
    """Children of every word and the roots, each in surface order."""
    children: list[list[int]] = [[] for _ in parents]
    roots: list[int] = []
    for dep, head in enumerate(parents):
        (roots if head < 0 else children[head]).append(dep)
    return children, roots


def linearise(parents: Sequence[int], order_units: OrderUnits) -> list[int]:
    """Top-down linearisation: `order_units(head, children) -> (left, right)` places each head's units.

    Every child is emitted with its whole subtree in one block, so the result is projective. An explicit
    stack instead of recursion keeps deep chains safe. Roots keep their original relative order.
    """
    children, roots = children_of(parents)
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


def original_units(head: int, children: list[int]) -> tuple[list[int], list[int]]:
    """`OrderUnits` that keeps the surface order (for heads that are not reordered)."""
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

