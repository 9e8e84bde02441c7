"""Syntax transformation on real UD trees: order statistics, word/tag transport, tree consistency, target orders
(sides and sibling orders), sampled vs deterministic variants, counters and errors."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest

from xlt_jax.data.readers.conllu import Sentence, read_conllu, write_conllu
from xlt_jax.data.transforms import syntax_report
from xlt_jax.data.transforms import syntax_trees as syntax
from xlt_jax.data.transforms.syntax import SyntaxTransform, reorder_treebank
from xlt_jax.data.transforms.syntax_report import share_before_head
from xlt_jax.data.transforms.syntax_stats import HEAD, NOUN_UPOS, OrderStats, head_class
from xlt_jax.errors import ConfigError, TransformError

VERB_ONLY = frozenset({"VERB"})
# The statistics treebanks of the targets checked here (train splits where they exist, else PUD).
TARGET_TREEBANKS = {"fr": ("ud/fr_sequoia/train.conllu.gz", "ud/fr_partut/train.conllu.gz"),
                    "hi": ("ud/hi_pud/test.conllu.gz",)}


@pytest.fixture(scope="module")
def en_pud(data_dir) -> list[Sentence]:
    return list(read_conllu(data_dir / "ud/en_pud/test.conllu.gz"))


@pytest.fixture(scope="module")
def hi_pud(data_dir) -> list[Sentence]:
    return list(read_conllu(data_dir / "ud/hi_pud/test.conllu.gz"))


@pytest.fixture(scope="module")
def hi_stats(hi_pud) -> OrderStats:
    return OrderStats.from_sentences(hi_pud)


@pytest.fixture(scope="module")
def ewt_dev(data_dir) -> list[Sentence]:
    return list(read_conllu(data_dir / "ud/en_ewt/dev.conllu.gz"))


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
# Order statistics


def _base_pair_orders(sentences: list[Sentence], perms: list[np.ndarray] | None = None) -> Counter:
    """(class, first, second): how often, among the units of a noun or verb head (the head as `HEAD`, each
    dependent as its base relation), the first came before the second. Written apart from the module."""
    counts: Counter = Counter()
    for index, s in enumerate(sentences):
        position = _positions(perms[index]) if perms is not None else np.arange(len(s))
        for head in range(len(s)):
            klass = head_class(s.upos[head])
            children = np.flatnonzero(s.heads == head + 1)
            if klass is None or not len(children):
                continue
            units = sorted([(position[head], HEAD)] + [(position[c], s.deprels[c].split(":")[0]) for c in children])
            for (_, first), (_, second) in itertools.combinations(units, 2):
                if first != second:
                    counts[klass, first, second] += 1
    return counts


def _never_shown(target: Counter, min_count: int = 20, noise: float = 0.002) -> set[tuple[str, str, str]]:
    """Orders (class, first, second) the target (almost) never shows, in at most `noise` of the cases (an
    annotation slip), although it shows the other order at least `min_count` times."""
    return {(k, b, a) for (k, a, b), n in list(target.items())
            if n >= min_count and target[k, b, a] <= noise * (n + target[k, b, a])}


def test_stats_from_treebanks_match_from_sentences(data_dir, hi_pud, hi_stats):
    from_files = OrderStats.from_treebanks([data_dir / "ud/hi_pud/test.conllu.gz"])
    assert from_files.precedes == hi_stats.precedes and from_files.base_precedes == hi_stats.base_precedes
    assert sum(hi_stats.precedes.values()) > 10_000


def test_stats_count_the_orders_the_treebank_shows(hi_pud, hi_stats):
    expected = _base_pair_orders(hi_pud)
    assert len(expected) > 200
    for (klass, a, b), n in expected.items():
        assert hi_stats.count(klass, a, b, base=True) == (n, n + expected[klass, b, a])


def test_stats_capture_hindi_head_finality_with_backoff(hi_pud, hi_stats):
    assert hi_stats.p_before("VERB", "obj") > 0.9
    assert hi_stats.p_before("VERB", "nsubj") > 0.9
    assert hi_stats.p_before("NOUN", "case") < 0.1  # postpositions
    # A subtype never seen backs off to its base relation, an unknown relation to the class prior.
    assert hi_stats.p_before("VERB", "obj:unseen") == pytest.approx(hi_stats.p_before("VERB", "obj"), abs=0.01)
    counts = _base_pair_orders(hi_pud)
    before = sum(n for (k, a, b), n in counts.items() if k == "VERB" and b == HEAD)
    after = sum(n for (k, a, b), n in counts.items() if k == "VERB" and a == HEAD)
    assert hi_stats.p_before("VERB", "no-such-rel") == pytest.approx(before / (before + after), abs=0.01)


def test_orders_the_target_hardly_shows_are_impossible_the_others_possible(hi_stats):
    """With enough evidence, an order seen in under `min_share` of the cases gets probability exactly 0."""
    decided = undecided = 0
    for (klass, relation), (p, n) in hi_stats.table().items():
        first, total = hi_stats.count(klass, relation, HEAD)
        assert total == n
        share = first / total
        if total >= hi_stats.min_evidence and min(share, 1 - share) < hi_stats.min_share:
            assert p == (1.0 if share > 0.5 else 0.0), (klass, relation)
            decided += 1
        elif 0 < first < total:
            assert 0.0 < p < 1.0, (klass, relation)
            undecided += 1
    assert decided > 10 and undecided > 10


def test_french_puts_case_before_the_determiner_of_its_noun(data_dir):
    fr = OrderStats.from_treebanks([data_dir / path for path in TARGET_TREEBANKS["fr"]])
    first, total = fr.count("NOUN", "case", "det")
    assert total > 1000 and total - first < fr.min_share * total  # one annotation slip in 6,489
    assert fr.p_precedes("NOUN", "case", "det") == 1.0 and fr.p_precedes("NOUN", "det", "case") == 0.0
    assert fr.p_precedes("NOUN", "det", "case", "left") == 0.0  # once both precede the noun, too
    # English possessives (`nmod:poss`, unseen in French) back off to `nmod`, which mostly follows `det`.
    assert fr.count("NOUN", "nmod:poss", "det")[1] == 0
    assert fr.p_precedes("NOUN", "nmod:poss", "det") == pytest.approx(fr.p_precedes("NOUN", "nmod", "det"), abs=0.01)
    assert fr.p_precedes("NOUN", "nmod", "det") < 0.05


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
    with_aux = OrderStats.from_sentences(hi_pud, include_aux=True)
    total = lambda stats, klass: sum(n for key, n in stats.precedes.items() if key[0] == klass)
    assert total(with_aux, "VERB") > total(hi_stats, "VERB")
    assert total(with_aux, "NOUN") == total(hi_stats, "NOUN")


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


def test_lone_dependents_take_the_targets_side(data_dir, ewt_dev):
    """A head with one dependent: the deterministic variant takes the likelier side, the sampled one draws it
    with the target's p(before), so over many heads the share before the head matches."""
    stats = _transform(data_dir).reorderer.order
    variants = {v: _transform(data_dir, variant=v) for v in ("deterministic", "sampled")}
    left = {v: [] for v in variants}
    expected = []
    for i, s in enumerate(ewt_dev):
        if _has_crossing_arcs(s.heads):
            continue
        positions = {v: _positions(t.permutation(s, seed=0, example_id=i)) for v, t in variants.items()}
        for head in range(len(s)):
            children = np.flatnonzero(s.heads == head + 1)
            klass = head_class(s.upos[head])
            if klass is None or len(children) != 1:
                continue
            p = stats.p_before(klass, s.deprels[children[0]])
            expected.append(p)
            for v, position in positions.items():
                left[v].append(bool(position[children[0]] < position[head]))
    assert len(expected) > 1000
    assert left["deterministic"] == [p > 0.5 for p in expected]
    assert abs(np.mean(left["sampled"]) - np.mean(expected)) < 0.02
    assert left["sampled"] != left["deterministic"]


@pytest.fixture(scope="module")
def target_orders(data_dir) -> dict[str, Counter]:
    return {lang: _base_pair_orders([s for path in paths for s in read_conllu(data_dir / path)])
            for lang, paths in TARGET_TREEBANKS.items()}


@pytest.mark.parametrize("tgt, variant, seed", [
    ("fr", "deterministic", 0), ("fr", "sampled", 0), ("fr", "sampled", 1), ("fr", "sampled", 2),
    ("hi", "deterministic", 0), ("hi", "sampled", 0), ("hi", "sampled", 1),
])
def test_reordering_produces_only_orders_the_target_shows(data_dir, ewt_dev, target_orders, tgt, variant, seed):
    """On EWT dev: no head side and no sibling order the target treebank (almost) never shows, though it
    shows the other order at least 20 times; e.g. French `case` after `det` of the same noun (1 in 6,489)."""
    projective = [s for s in ewt_dev if not _has_crossing_arcs(s.heads)]  # the others are left as they are
    perms = _perms(_transform(data_dir, tgt, variant=variant), projective, seed)
    never = _never_shown(target_orders[tgt])
    source, derived = _base_pair_orders(projective), _base_pair_orders(projective, perms)
    assert sum(source[k] for k in never) > 300  # English shows many of them: the check has something to catch
    assert {k: derived[k] for k in never if derived[k]} == {}
    if tgt == "fr":
        assert ("NOUN", "det", "case") in never and source["NOUN", "det", "case"] > 0  # "the company 's"
        assert derived["NOUN", "case", "det"] > 500


def test_siblings_with_the_same_relation_keep_their_source_order(data_dir, ewt_dev):
    transform = _transform(data_dir, "hi")
    checked = 0
    for i, s in enumerate(ewt_dev):
        position = _positions(transform.permutation(s, seed=0, example_id=i))
        for head in range(len(s)):
            children = np.flatnonzero(s.heads == head + 1)
            if head_class(s.upos[head]) is None:
                continue
            for relation in {s.deprels[c] for c in children}:
                same = [c for c in children if s.deprels[c] == relation]
                if len(same) > 1:
                    assert np.all(np.diff(position[same]) > 0), (i, relation)
                    checked += 1
    assert checked > 300


@pytest.mark.parametrize("src, tgt", [("en", "fr"), ("en", "hi"), ("fr", "en")])
def test_sampled_reordering_is_closer_to_the_targets_orders_than_the_source(data_dir, src, tgt):
    """Parallel PUD sentences: the derived text's pair orders agree with the target's better than the source's."""
    table, summary = syntax_report.report(src, tgt, data_dir=data_dir)
    assert summary["pairs"] > 100 and summary["reordered"] > 800
    assert summary["agreement"]["derived"] > summary["agreement"]["source"], table
    assert summary["in_sample"] == (tgt == "hi")  # en and fr statistics come from train treebanks, not PUD


def test_syntax_report_cli_prints_a_table_and_ends_with_json(data_dir, capsys):
    syntax_report.main(["--src", "fr", "--tgt", "en", "--variant", "deterministic", "--top", "3"])
    lines = capsys.readouterr().out.splitlines()
    summary = json.loads(lines[-1])
    assert (summary["src"], summary["tgt"], summary["variant"]) == ("fr", "en", "deterministic")
    assert set(summary["agreement"]) == {"source", "derived"}
    assert sum(line.startswith(("NOUN ", "VERB ")) for line in lines) == 6


def test_derived_treebank_round_trips_through_conllu(data_dir, en_pud, tmp_path):
    transform = _transform(data_dir, variant="sampled", nonprojective="skip")
    sentences = en_pud[:200]
    corpus = reorder_treebank(sentences, transform, seed=0)
    perms = _perms(transform, sentences)  # one call per sentence; reorder_treebank draws in one batch
    assert corpus == [[s.forms[j] for j in p] for s, p in zip(sentences, perms, strict=True)]
    derived = [syntax.permute_sentence(s, p) for s, p in zip(sentences, perms, strict=True)]
    write_conllu(derived, tmp_path / "en~hi.conllu")
    again = list(read_conllu(tmp_path / "en~hi.conllu"))
    assert [s.forms for s in again] == corpus
    for original, new in zip(sentences, again, strict=True):
        # same arcs (as word pairs), now over the new positions: a projective input stays projective
        assert _has_crossing_arcs(new.heads) == _has_crossing_arcs(original.heads)


# ------------------------------------------------------------------------------------------------
# Determinism


def test_deterministic_variant_ignores_seed_and_id(data_dir, en_pud):
    transform = _transform(data_dir, variant="deterministic")
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


def test_sampled_is_the_default_and_varies_across_seeds(data_dir, ewt_dev):
    transform = _transform(data_dir, "fr")
    assert transform.reorderer.variant == "sampled" and transform.name == "syntax:fr"
    sentences = ewt_dev[:400]
    by_seed = [_perms(transform, sentences, seed) for seed in range(3)]
    for a, b in itertools.combinations(by_seed, 2):
        assert sum(not np.array_equal(x, y) for x, y in zip(a, b, strict=True)) > 100
    again = _perms(_transform(data_dir, "fr"), sentences, 0)
    assert all(np.array_equal(x, y) for x, y in zip(by_seed[0], again, strict=True))


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


def test_errors(data_dir, en_pud, hi_stats, tmp_path):
    transform = SyntaxTransform("hi", order_stats=hi_stats)
    s = en_pud[0]
    with pytest.raises(TransformError, match="needs a gold UD tree"):
        transform.apply_words(["What", "is", "it"], seed=0, example_id=0, sentence=None)
    with pytest.raises(TransformError, match="words"):
        transform.apply_words(s.forms[:-1], seed=0, example_id=0, sentence=s)
    with pytest.raises(TransformError, match="tags"):
        transform.apply_words(s.forms, s.upos[:-1], seed=0, example_id=0, sentence=s)
    with pytest.raises(TransformError, match="no UD treebank for 'xx'"):
        SyntaxTransform("xx", data_dir=data_dir)
    with pytest.raises(TransformError, match="fr_partut/train.conllu.gz, which is missing"):
        SyntaxTransform("fr", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="variant"):
        SyntaxTransform("hi", order_stats=hi_stats, variant="greedy")
    with pytest.raises(ConfigError, match="nonprojective"):
        SyntaxTransform("hi", order_stats=hi_stats, nonprojective="drop")
