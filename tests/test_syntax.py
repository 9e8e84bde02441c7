"""Syntax transformation on real UD trees: word/tag transport, tree consistency, direction shift, counters."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from xlt_jax.data.readers.conllu import Sentence, read_conllu, write_conllu
from xlt_jax.data.transforms import syntax
from xlt_jax.data.transforms.syntax import (
    NOUN_UPOS,
    HeadDirectionStats,
    SyntaxTransform,
    head_class,
    permute_sentence,
    reorder_treebank,
    share_before_head,
)
from xlt_jax.errors import ConfigError, TransformError

VERB_ONLY = frozenset({"VERB"})


@pytest.fixture(scope="module")
def en_pud(data_dir) -> list[Sentence]:
    return list(read_conllu(data_dir / "ud/en_pud/test.conllu.gz"))


@pytest.fixture(scope="module")
def hi_pud(data_dir) -> list[Sentence]:
    return list(read_conllu(data_dir / "ud/hi_pud/test.conllu.gz"))


@pytest.fixture(scope="module")
def hi_stats(hi_pud) -> HeadDirectionStats:
    return HeadDirectionStats.from_sentences(hi_pud)


def _transform(data_dir, lang: str = "hi", **kwargs) -> SyntaxTransform:
    return SyntaxTransform(lang, data_dir=data_dir, **kwargs)


def _perms(transform: SyntaxTransform, sentences: list[Sentence], seed: int = 0) -> list[np.ndarray]:
    return [transform.permutation(s, seed=seed, example_id=i) for i, s in enumerate(sentences)]


def _positions(perm: np.ndarray) -> np.ndarray:
    position = np.empty_like(perm)
    position[perm] = np.arange(len(perm))
    return position


def _subtrees(parents: list[int]) -> list[list[int]]:
    """Words of every node's subtree, by walking each word's ancestor chain (independent of the module)."""
    members: list[list[int]] = [[i] for i in range(len(parents))]
    for word in range(len(parents)):
        ancestor = parents[word]
        while ancestor >= 0:
            members[ancestor].append(word)
            ancestor = parents[ancestor]
    return members


def _subtrees_are_contiguous(parents: list[int], order: np.ndarray | None = None) -> bool:
    """Every subtree covers one contiguous block of positions (`order`: output order, default surface)."""
    position = _positions(order) if order is not None else np.arange(len(parents))
    return all(np.ptp(position[members]) + 1 == len(members) for members in _subtrees(parents))


def _has_crossing_arcs(heads: np.ndarray) -> bool:
    """Non-projectivity by crossing arcs, with the artificial root at position 0 (1-based heads)."""
    dep = np.arange(1, len(heads) + 1)
    lo, hi = np.minimum(heads, dep), np.maximum(heads, dep)
    l1, r1, l2, r2 = lo[:, None], hi[:, None], lo[None, :], hi[None, :]
    return bool(np.any((l1 < l2) & (l2 < r1) & (r1 < r2)))


# ------------------------------------------------------------------------------------------------
# Head-direction statistics


def test_stats_from_treebanks_match_from_sentences(data_dir, hi_pud, hi_stats):
    from_files = HeadDirectionStats.from_treebanks([data_dir / "ud/hi_pud/test.conllu.gz"])
    assert from_files.total == hi_stats.total and from_files.before == hi_stats.before
    assert sum(hi_stats.total.values()) > 10_000


def test_stats_capture_hindi_head_finality_with_backoff(hi_stats):
    assert hi_stats.p_before("VERB", "obj") > 0.9
    assert hi_stats.p_before("VERB", "nsubj") > 0.9
    assert hi_stats.p_before("NOUN", "case") < 0.1  # postpositions
    # A subtype never seen backs off to its base relation, an unknown relation to the class prior.
    assert hi_stats.p_before("VERB", "obj:unseen") == pytest.approx(
        hi_stats.p_before("VERB", "obj"), abs=0.01
    )
    verb_keys = [k for k in hi_stats.total if k[0] == "VERB"]
    prior = sum(hi_stats.before[k] for k in verb_keys) / sum(hi_stats.total[k] for k in verb_keys)
    assert hi_stats.p_before("VERB", "no-such-rel") == pytest.approx(prior, abs=0.01)
    # Smoothing keeps every probability strictly inside (0, 1), so log-odds are finite.
    p = np.array([v for v, _ in hi_stats.table().values()])
    assert np.all((p > 0) & (p < 1))


def test_head_classes():
    assert [head_class(u) for u in ("NOUN", "PROPN", "PRON", "VERB", "AUX", "ADJ")] == [
        "NOUN",
        "NOUN",
        "NOUN",
        "VERB",
        None,
        None,
    ]
    assert head_class("AUX", include_aux=True) == "VERB"


def test_include_aux_counts_auxiliary_heads(hi_pud, hi_stats):
    with_aux = HeadDirectionStats.from_sentences(hi_pud, include_aux=True)
    verb_total = lambda stats: sum(n for (klass, _), n in stats.total.items() if klass == "VERB")
    assert verb_total(with_aux) > verb_total(hi_stats)
    assert sum(n for (k, _), n in with_aux.total.items() if k == "NOUN") == sum(
        n for (k, _), n in hi_stats.total.items() if k == "NOUN"
    )


# ------------------------------------------------------------------------------------------------
# Word and tag transport, consistency with the tree


@pytest.mark.parametrize("variant", ["deterministic", "sampled"])
def test_every_word_keeps_its_tags(data_dir, en_pud, variant):
    transform = _transform(data_dir, variant=variant, nonprojective="projectivize")
    for i, s in enumerate(en_pud[:400]):
        words, tags = transform.apply_words(s.forms, s.upos, seed=3, example_id=i, sentence=s)
        assert Counter(zip(words, tags, strict=True)) == Counter(zip(s.forms, s.upos, strict=True))
        perm = transform.permutation(s, seed=3, example_id=i)
        assert sorted(perm.tolist()) == list(range(len(s)))
        assert words == [s.forms[j] for j in perm]
        # arbitrary per-word arrays (e.g. NER ids) travel through the same permutation
        _, ids = transform.apply_words(s.forms, np.arange(len(s)), seed=3, example_id=i, sentence=s)
        np.testing.assert_array_equal(ids, perm)


@pytest.mark.parametrize("nonprojective", ["skip", "projectivize"])
def test_output_order_is_consistent_with_the_tree(data_dir, en_pud, nonprojective):
    transform = _transform(data_dir, variant="sampled", nonprojective=nonprojective)
    checked_heads = 0
    for i, s in enumerate(en_pud):
        perm = transform.permutation(s, seed=0, example_id=i)
        parents = syntax.parents_of(s)
        if not syntax.is_projective(parents):
            if nonprojective == "skip":
                np.testing.assert_array_equal(perm, np.arange(len(s)))
                continue
            parents = syntax.projectivize(parents)
        position = _positions(perm)
        # every subtree of the (projectivised) tree occupies one contiguous block of the output
        assert _subtrees_are_contiguous(parents.tolist(), perm)
        # heads that are not nouns or verbs keep their dependents' (and their own) relative order
        for head in range(len(s)):
            children = np.flatnonzero(parents == head)
            if head_class(s.upos[head]) is None and len(children):
                units = np.sort(np.append(children, head))
                assert np.all(np.diff(position[units]) > 0)
                checked_heads += 1
    assert checked_heads > 500


def test_deterministic_order_follows_head_direction(data_dir, en_pud):
    transform = _transform(data_dir, nonprojective="projectivize")
    stats = transform.reorderer.direction
    for i, s in enumerate(en_pud[:300]):
        position = _positions(transform.permutation(s, seed=0, example_id=i))
        parents = syntax.projectivize(syntax.parents_of(s))
        for head in range(len(s)):
            klass = head_class(s.upos[head])
            children = np.flatnonzero(parents == head)
            if klass is None or not len(children):
                continue
            ordered = children[np.argsort(position[children])]
            p = np.array([stats.p_before(klass, s.deprels[c]) for c in ordered])
            left = position[ordered] < position[head]
            assert np.all(p[left] > 0.5) and np.all(p[~left] <= 0.5)
            assert np.all(np.diff(p[left]) <= 0) and np.all(np.diff(p[~left]) >= 0)


def test_derived_treebank_round_trips_through_conllu(data_dir, en_pud, tmp_path):
    transform = _transform(data_dir, variant="sampled", nonprojective="skip")
    sentences = en_pud[:200]
    corpus = reorder_treebank(sentences, transform, seed=0)
    perms = _perms(transform, sentences)  # one call per sentence; reorder_treebank draws in one batch
    assert corpus == [[s.forms[j] for j in p] for s, p in zip(sentences, perms, strict=True)]
    derived = [permute_sentence(s, p) for s, p in zip(sentences, perms, strict=True)]
    write_conllu(derived, tmp_path / "en~hi.conllu")
    again = list(read_conllu(tmp_path / "en~hi.conllu"))
    assert [s.forms for s in again] == corpus
    for original, new in zip(sentences, again, strict=True):
        # same arcs (as word pairs), now over the new positions: a projective input stays projective
        assert _has_crossing_arcs(new.heads) == _has_crossing_arcs(original.heads)


# ------------------------------------------------------------------------------------------------
# Determinism


def test_deterministic_variant_ignores_seed_and_id(data_dir, en_pud):
    transform = _transform(data_dir)
    for i, s in enumerate(en_pud[:100]):
        a = transform.permutation(s, seed=0, example_id=i)
        b = transform.permutation(s, seed=7, example_id=i + 1000)
        np.testing.assert_array_equal(a, b)


def test_sampled_variant_is_keyed_by_seed_and_example_id(data_dir, en_pud):
    transform = _transform(data_dir, variant="sampled", nonprojective="projectivize")
    long_sentence = max(en_pud, key=len)
    first = [transform.permutation(long_sentence, seed=1, example_id=i) for i in range(20)]
    again = [transform.permutation(long_sentence, seed=1, example_id=i) for i in reversed(range(20))][::-1]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len({tuple(p.tolist()) for p in first}) > 10
    other_seed = transform.permutation(long_sentence, seed=2, example_id=0)
    assert not np.array_equal(other_seed, first[0])


# ------------------------------------------------------------------------------------------------
# Direction shift measured on PUD (printed; run with -s)


def test_english_moves_toward_hindi_head_final_order(data_dir, en_pud, hi_pud):
    en_obj = share_before_head(en_pud, None, deprel="obj", head_upos=VERB_ONLY)
    hi_obj = share_before_head(hi_pud, None, deprel="obj", head_upos=VERB_ONLY)
    en_case = share_before_head(en_pud, None, deprel="case", head_upos=NOUN_UPOS)
    hi_case = share_before_head(hi_pud, None, deprel="case", head_upos=NOUN_UPOS)
    print(f"\nobj before VERB: en {en_obj:.3f}  hi {hi_obj:.3f}")
    print(f"case before NOUN/PROPN/PRON: en {en_case:.3f}  hi {hi_case:.3f}")
    assert en_obj < 0.1 and hi_obj > 0.9
    for variant in ("deterministic", "sampled"):
        for nonprojective in ("skip", "projectivize"):
            transform = _transform(data_dir, variant=variant, nonprojective=nonprojective)
            perms = _perms(transform, en_pud)
            obj = share_before_head(en_pud, perms, deprel="obj", head_upos=VERB_ONLY)
            case = share_before_head(en_pud, perms, deprel="case", head_upos=NOUN_UPOS)
            setting = f"en->hi {variant:13s} {nonprojective:12s}"
            print(f"{setting}: obj before VERB {obj:.3f}, case before noun {case:.3f}")
            assert en_obj < obj and obj > 0.8 and abs(obj - hi_obj) < 0.1
            assert case < 0.2 < en_case  # prepositions became postpositions


def test_english_moves_toward_french_adjective_order(data_dir, en_pud):
    fr_pud = list(read_conllu(data_dir / "ud/fr_pud/test.conllu.gz"))
    shares = {
        "en": share_before_head(en_pud, None, deprel="amod", head_upos=NOUN_UPOS),
        "fr": share_before_head(fr_pud, None, deprel="amod", head_upos=NOUN_UPOS),
    }
    obj = {
        "en": share_before_head(en_pud, None, deprel="obj", head_upos=VERB_ONLY),
        "fr": share_before_head(fr_pud, None, deprel="obj", head_upos=VERB_ONLY),
    }
    for variant in ("deterministic", "sampled"):
        perms = _perms(_transform(data_dir, "fr", variant=variant, nonprojective="projectivize"), en_pud)
        shares[f"en->fr {variant}"] = share_before_head(en_pud, perms, deprel="amod", head_upos=NOUN_UPOS)
        obj[f"en->fr {variant}"] = share_before_head(en_pud, perms, deprel="obj", head_upos=VERB_ONLY)
    print("\namod before noun:", {k: round(v, 3) for k, v in shares.items()})
    print("obj before VERB:", {k: round(v, 3) for k, v in obj.items()})
    assert shares["en"] > 0.9 and shares["fr"] < 0.5
    assert shares["en->fr deterministic"] < 0.1  # p(amod before | fr) < 0.5: all adjectives follow
    assert abs(shares["en->fr sampled"] - shares["fr"]) < 0.15


# ------------------------------------------------------------------------------------------------
# Non-projective trees


def test_nonprojective_trees_are_counted_skipped_or_projectivised(data_dir):
    ewt = list(read_conllu(data_dir / "ud/en_ewt/dev.conllu.gz"))
    crossing = [i for i, s in enumerate(ewt) if not _subtrees_are_contiguous(syntax.parents_of(s).tolist())]
    print(f"\nEWT dev: {len(crossing)} of {len(ewt)} trees are non-projective")
    assert len(crossing) > 10
    assert [i for i, s in enumerate(ewt) if not syntax.is_projective(syntax.parents_of(s))] == crossing
    assert [i for i, s in enumerate(ewt) if _has_crossing_arcs(s.heads)] == crossing

    skip = _transform(data_dir, nonprojective="skip")
    perms = _perms(skip, ewt)
    assert skip.stats["sentences"] == len(ewt)
    assert skip.stats["nonprojective"] == skip.stats["skipped_nonprojective"] == len(crossing)
    assert skip.stats["projectivised"] == 0
    assert all(np.array_equal(perms[i], np.arange(len(ewt[i]))) for i in crossing)
    assert 0 < skip.stats["reordered"] <= len(ewt) - len(crossing)

    lift = _transform(data_dir, nonprojective="projectivize")
    _perms(lift, [ewt[i] for i in crossing])
    assert lift.stats["projectivised"] == lift.stats["nonprojective"] == len(crossing)
    assert lift.stats["skipped_nonprojective"] == 0
    for i in crossing:
        parents = syntax.parents_of(ewt[i])
        lifted = syntax.projectivize(parents)
        assert not _has_crossing_arcs((lifted + 1).astype(np.int32))
        for word in np.flatnonzero(lifted != parents):
            ancestors, node = set(), parents[word]
            while node >= 0:
                ancestors.add(int(node))
                node = parents[node]
            assert lifted[word] == -1 or lifted[word] in ancestors  # lifted to an ancestor of its head


# ------------------------------------------------------------------------------------------------
# Errors


def test_errors(data_dir, en_pud, hi_stats):
    transform = SyntaxTransform("hi", direction=hi_stats)
    s = en_pud[0]
    with pytest.raises(TransformError, match="needs a gold UD tree"):
        transform.apply_words(["What", "is", "it"], seed=0, example_id=0, sentence=None)
    with pytest.raises(TransformError, match="words"):
        transform.apply_words(s.forms[:-1], seed=0, example_id=0, sentence=s)
    with pytest.raises(TransformError, match="tags"):
        transform.apply_words(s.forms, s.upos[:-1], seed=0, example_id=0, sentence=s)
    with pytest.raises(TransformError, match="no UD treebank for 'xx'"):
        SyntaxTransform("xx", data_dir=data_dir)
    with pytest.raises(ConfigError, match="variant"):
        SyntaxTransform("hi", direction=hi_stats, variant="greedy")
    with pytest.raises(ConfigError, match="nonprojective"):
        SyntaxTransform("hi", direction=hi_stats, nonprojective="drop")
