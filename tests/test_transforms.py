"""Property tests of the language transformations on real sentences (REFERENCE_SPEC §1).

Id sequences come from real text (Leipzig sample, XNLI, Tatoeba, SQuAD) encoded by a small SentencePiece
model; token/tag sequences from WikiANN en and XTREME UD-POS en.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities

from xlt_jax.data import io
from xlt_jax.data.transforms import bio, canonicalize_bio, parse, qa, segments, translit
from xlt_jax.data.vocab import SPECIALS, VocabLayout
from xlt_jax.errors import TransformError

BOS, PAD, EOS, UNK, MASK = SPECIALS.bos, SPECIALS.pad, SPECIALS.eos, SPECIALS.unk, SPECIALS.mask
FAST = settings(max_examples=20, deadline=None)
REORDERING = ["inv", "perm", "translit+inv", "translit+perm"]
ALL_ID_SPECS = ["none", "translit", *REORDERING]


# --- real data ----------------------------------------------------------------------------------------------
def read_lines(path, limit):
    out = []
    for _, line in io.open_lines(path):
        if line.strip():
            out.append(line.strip())
        if len(out) == limit:
            break
    return out


def read_token_tags(path, limit, strip_lang=False):
    """Blank-line separated `token<TAB>tag` files (WikiANN with `lang:` prefix, XTREME udpos)."""
    sents, words, tags = [], [], []
    for _, line in io.open_lines(path):
        if not line.strip():
            if words:
                sents.append((words, tags))
                words, tags = [], []
                if len(sents) == limit:
                    break
            continue
        token, tag = line.rsplit("\t", 1)
        words.append(token.split(":", 1)[1] if strip_lang else token)
        tags.append(tag)
    return sents


class _Spm:
    """Minimal stand-in for `xlt_jax.data.tokenizer.Tokenizer` (encode without specials, base_size)."""

    def __init__(self, model_file):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.base_size = self.sp.get_piece_size()

    def encode(self, text):
        return self.sp.encode(text)


@pytest.fixture(scope="module")
def tok(request, data_dir, tmp_path_factory):
    """The shared `tiny_tokenizer` if conftest provides it, else a SentencePiece model trained here."""
    try:
        return request.getfixturevalue("tiny_tokenizer")
    except pytest.FixtureLookupError:
        pass
    import sentencepiece as spm

    text = []
    for lang in ("en", "fr"):
        text += read_lines(data_dir / f"raw/lingua_leipzig_sample/{lang}.sentences.txt.gz", 1000)
    prefix = tmp_path_factory.mktemp("spm") / "tiny"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text),
        model_prefix=str(prefix),
        vocab_size=800,
        model_type="bpe",
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
        user_defined_symbols=["<mask>"],
        byte_fallback=True,
        num_threads=1,
        minloglevel=2,
    )
    return _Spm(f"{prefix}.model")


@pytest.fixture(scope="module")
def layout(tok):
    return VocabLayout(tok.base_size)


def pad_rows(rows, length=None):
    length = length or max(len(r) for r in rows)
    out = np.full((len(rows), length), PAD, dtype=np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


@pytest.fixture(scope="module")
def sentences(tok, data_dir):
    """`<s> sentence </s>` id rows of real English and French sentences."""
    lines = read_lines(data_dir / "raw/lingua_leipzig_sample/en.sentences.txt.gz", 120)
    lines += read_lines(data_dir / "tatoeba/tatoeba.fra-eng.fra.gz", 40)
    return [np.array([BOS, *tok.encode(s), EOS], dtype=np.int32) for s in lines]


@pytest.fixture(scope="module")
def packed(sentences):
    """Pretraining-style blocks: lines concatenated and cut every 64 tokens (cuts fall mid-sentence, as in
    the reference's group_texts), the last block padded."""
    stream = np.concatenate(sentences)
    blocks = [stream[i : i + 64] for i in range(0, stream.size, 64)]
    return pad_rows(blocks, 64)


@pytest.fixture(scope="module")
def pairs(tok, data_dir):
    """XNLI dev pairs as `<s> A </s></s> B </s>` rows plus the lengths of A and B."""
    rows, lens = [], []
    for line in read_lines(data_dir / "xnli/dev-en.tsv.gz", 60):
        premise, hypothesis, _ = line.split("\t")
        a, b = tok.encode(premise), tok.encode(hypothesis)
        rows.append([BOS, *a, EOS, EOS, *b, EOS])
        lens.append((len(a), len(b)))
    return pad_rows(rows), lens


@pytest.fixture(scope="module")
def wikiann(data_dir):
    return read_token_tags(data_dir / "wikiann/en/train.tsv.gz", 200, strip_lang=True)


def encode_tagged(tok, sents, names):
    """A word's first sub-word carries its tag id; the others and the specials get -100."""
    index = {n: i for i, n in enumerate(names)}
    rows, labels = [], []
    for words, tags in sents:
        ids, labs = [BOS], [bio.IGNORE_INDEX]
        for w, t in zip(words, tags, strict=True):
            pieces = tok.encode(w)
            ids += pieces
            labs += [index[t]] + [bio.IGNORE_INDEX] * (len(pieces) - 1) if pieces else []
        rows.append(ids + [EOS])
        labels.append(labs + [bio.IGNORE_INDEX])
    ids = pad_rows(rows)
    lab = np.full(ids.shape, bio.IGNORE_INDEX, dtype=np.int32)
    for i, r in enumerate(labels):
        lab[i, : len(r)] = r
    return ids, lab, np.array([len(r) for r in rows])


def reference_inversion(row):
    """Direct port of the reference's per-example loop (`reverse_substr` in synthetic_utils.py)."""
    row, out, start = list(row), list(row), 0
    for i in range(len(row)):
        if row[i] in (BOS, EOS) or i == len(row) - 1:
            if i > start:
                stop = i + 1 if (i == len(row) - 1 and row[i] not in (BOS, EOS)) else i
                out[start:stop] = row[start:stop][::-1]
            start = i + 1
    return out


def eids(n, offset=0):
    return np.arange(offset, offset + n, dtype=np.int64)


# --- segments and inversion ---------------------------------------------------------------------------------
def test_segments_are_the_runs_between_fixed_tokens(packed):
    for row in packed:
        runs = segments.segments(row)
        covered = np.zeros(row.size, bool)
        for s in runs:
            assert s.stop > s.start and not segments.fixed_mask(row[s]).any()
            covered[s] = True
        np.testing.assert_array_equal(covered, ~segments.fixed_mask(row))
    bounds = segments.segment_bounds(packed)
    for r, row in enumerate(packed):
        for s in segments.segments(row):
            assert (bounds.start[r, s] == s.start).all() and (bounds.end[r, s] == s.stop - 1).all()


def test_inversion_matches_the_reference_loop(layout, packed, pairs):
    inv = parse("inv", layout)
    for batch in (packed, pairs[0]):
        out, _ = inv.apply_ids(batch, seed=0, example_ids=eids(len(batch)))
        for row, got in zip(batch, out, strict=True):
            assert got.tolist() == reference_inversion(row)
            # unpadded the same (pads only end the last segment early, where the reference's last-position
            # rule would)
            n = int((row != PAD).sum())
            assert got[:n].tolist() == reference_inversion(row[:n])


@FAST
@given(seed=st.integers(0, 2**32 - 1), offset=st.integers(0, 2**40))
def test_inversion_is_an_involution(layout, packed, seed, offset):
    for spec in ("inv", "inv@word"):
        t = parse(spec, layout)
        once, _ = t.apply_ids(packed, seed=seed, example_ids=eids(len(packed), offset))
        twice, _ = t.apply_ids(once, seed=seed, example_ids=eids(len(packed), offset))
        np.testing.assert_array_equal(twice, packed)
    src = parse("inv", layout).index_map(packed, seed=seed, example_ids=eids(len(packed)))
    np.testing.assert_array_equal(np.take_along_axis(src, src, 1), np.broadcast_to(np.arange(64), src.shape))


# --- permutation --------------------------------------------------------------------------------------------
@FAST
@given(seed=st.integers(0, 2**32 - 1), offset=st.integers(0, 2**40))
def test_permutation_keeps_each_segment_multiset_and_is_reproducible(layout, packed, seed, offset):
    perm = parse("perm", layout)
    ids = eids(len(packed), offset)
    out, _ = perm.apply_ids(packed, seed=seed, example_ids=ids)
    again, _ = perm.apply_ids(packed.copy(), seed=seed, example_ids=ids.copy())
    np.testing.assert_array_equal(out, again)
    for row, got in zip(packed, out, strict=True):
        for s in segments.segments(row):
            assert sorted(got[s].tolist()) == sorted(row[s].tolist())
    other_id, _ = perm.apply_ids(packed, seed=seed, example_ids=ids + 1)
    other_seed, _ = perm.apply_ids(packed, seed=seed + 1, example_ids=ids)
    # a full 64-token block has a segment long enough that two draws coinciding is ~impossible
    long_rows = [
        r for r in range(len(packed)) if max(s.stop - s.start for s in segments.segments(packed[r])) > 12
    ]
    assert long_rows
    for r in long_rows:
        assert not np.array_equal(out[r], other_id[r])
        assert not np.array_equal(out[r], other_seed[r])


def test_permutation_is_uniform_within_a_segment(layout, sentences):
    """Over many example ids, each token of a 5-token segment lands at each place ~1/5 of the time."""
    row = next(s for s in sentences if len(s) >= 7)[:7].copy()
    row[-1] = EOS
    batch = np.tile(row, (4000, 1))
    src = parse("perm", layout).index_map(batch, seed=7, example_ids=eids(4000))
    freq = np.stack([(src[:, 1:6] == k).mean(0) for k in range(1, 6)])
    assert np.abs(freq - 0.2).max() < 0.035, freq


# --- transliteration ----------------------------------------------------------------------------------------
def test_translit_shifts_by_v_keeps_bos_eos_pad_and_round_trips(layout, packed):
    V = layout.base_size
    t = parse("translit", layout)
    assert t.copies == 2 and t.vocab_layout.size == 2 * V
    out, _ = t.apply_ids(packed, seed=0, example_ids=eids(len(packed)))
    fixed = np.isin(packed, [BOS, EOS, PAD])
    np.testing.assert_array_equal(out[fixed], packed[fixed])
    np.testing.assert_array_equal(out[~fixed], packed[~fixed] + V)
    np.testing.assert_array_equal(translit.invert(out, V), packed)
    np.testing.assert_array_equal(t.translit.invert(out), packed)


def test_translit_shifts_unk_and_mask_but_not_sentinels(layout):
    V = layout.base_size
    sentinel_layout = VocabLayout(V, copies=2, num_sentinels=10)
    ids = np.array([[BOS, UNK, MASK, 7, EOS, sentinel_layout.sentinel(0), sentinel_layout.sentinel(9), PAD]])
    out = parse("translit", sentinel_layout).apply_ids(ids, seed=0, example_ids=eids(1))[0]
    assert out[0].tolist() == [BOS, UNK + V, MASK + V, 7 + V, EOS, *ids[0, 5:7].tolist(), PAD]
    shifted = parse("translit", layout, shift_special=True).apply_ids(
        ids[:, :5], seed=0, example_ids=eids(1)
    )[0]
    assert shifted[0].tolist() == [BOS + V, UNK + V, MASK + V, 7 + V, EOS + V]
    assert parse("translit", layout, shift_special=True).name == "translit[shift_special]"


@FAST
@given(fraction=st.floats(0.0, 1.0), keep_seed=st.integers(0, 1000))
def test_partial_translit_keeps_an_exact_fraction(layout, packed, fraction, keep_seed):
    V = layout.base_size
    t = parse("translit", layout, keep_fraction=fraction, keep_seed=keep_seed)
    shiftable = V - 3
    assert t.translit.keep_size == round(fraction * shiftable)
    kept = t.translit.partial_keep_ids
    assert np.unique(kept).size == kept.size and not np.isin(kept, [BOS, EOS, PAD]).any()
    assert t.translit.kept.sum() == kept.size + 3
    out, _ = t.apply_ids(packed, seed=0, example_ids=eids(len(packed)))
    stay = np.isin(packed, np.concatenate([kept, [BOS, EOS, PAD]]))
    np.testing.assert_array_equal(out[stay], packed[stay])
    np.testing.assert_array_equal(out[~stay], packed[~stay] + V)
    np.testing.assert_array_equal(translit.invert(out, V), packed)
    same = parse(t.name, layout)  # the name carries the options
    np.testing.assert_array_equal(same.translit.partial_keep_ids, kept)


# --- composition, specials, batch independence --------------------------------------------------------------
@pytest.mark.parametrize("spec", ALL_ID_SPECS)
def test_special_tokens_never_move(layout, packed, pairs, spec):
    t = parse(spec, layout)
    for batch in (packed, pairs[0]):
        out, _ = t.apply_ids(batch, seed=3, example_ids=eids(len(batch)))
        fixed = np.isin(batch, [BOS, EOS, PAD])
        np.testing.assert_array_equal(out[fixed], batch[fixed])
        assert not np.isin(out[~fixed], [BOS, EOS, PAD]).any()


def test_translit_composes_with_reordering(layout, packed):
    V = layout.base_size
    for order_spec in ("inv", "perm"):
        composed, _ = parse(f"translit+{order_spec}", layout).apply_ids(
            packed, seed=5, example_ids=eids(len(packed))
        )
        alone, _ = parse(order_spec, layout).apply_ids(packed, seed=5, example_ids=eids(len(packed)))
        np.testing.assert_array_equal(translit.invert(composed, V), alone)
    assert parse("inv+translit", layout).name == "translit+inv"


@FAST
@given(data=st.data(), seed=st.integers(0, 2**31), spec=st.sampled_from(REORDERING))
def test_rows_do_not_depend_on_batch_size_order_or_padding(layout, packed, data, seed, spec):
    t = parse(spec, layout)
    ids = eids(len(packed), 1000)
    full, _ = t.apply_ids(packed, seed=seed, example_ids=ids)
    order = data.draw(st.permutations(range(len(packed))))
    size = data.draw(st.integers(1, len(packed)))
    rows = np.array(order[:size])
    sub, _ = t.apply_ids(packed[rows], seed=seed, example_ids=ids[rows])
    np.testing.assert_array_equal(sub, full[rows])
    r = int(rows[0])
    single, _ = t.apply_ids(packed[r : r + 1], seed=seed, example_ids=ids[r : r + 1])
    np.testing.assert_array_equal(single[0], full[r])
    wider = np.pad(packed[rows], ((0, 0), (0, 17)), constant_values=PAD)
    wide, _ = t.apply_ids(wider, seed=seed, example_ids=ids[rows])
    np.testing.assert_array_equal(wide[:, :64], full[rows])


# --- sentence pairs and Tatoeba -----------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["inv", "perm"])
def test_pairs_keep_sentence_order_and_separators(layout, pairs, spec):
    batch, lens = pairs
    out, _ = parse(spec, layout).for_task("xnli").apply_ids(batch, seed=1, example_ids=eids(len(batch)))
    for row, got, (na, nb) in zip(batch, out, lens, strict=True):
        a, b = slice(1, 1 + na), slice(3 + na, 3 + na + nb)
        assert got[0] == BOS and got[1 + na] == EOS and got[2 + na] == EOS and got[3 + na + nb] == EOS
        if spec == "inv":
            assert got[a].tolist() == row[a][::-1].tolist() and got[b].tolist() == row[b][::-1].tolist()
        assert Counter(got[a].tolist()) == Counter(row[a].tolist())
        assert Counter(got[b].tolist()) == Counter(row[b].tolist())


def test_word_level_pairs_reorder_each_sentence_on_its_own(layout, data_dir):
    t = parse("perm", layout, level="word").for_task("xnli")
    assert t.name == "perm@word" and t.word_stage and not t.id_stage
    for i, line in enumerate(read_lines(data_dir / "xnli/dev-en.tsv.gz", 30)):
        premise, hypothesis, _ = line.split("\t")
        a, b = premise.split(), hypothesis.split()
        out_a, out_b = t.apply_pair_words(a, b, seed=0, example_id=i)
        assert sorted(out_a) == sorted(a) and sorted(out_b) == sorted(b)
        assert (out_a, out_b) == t.apply_pair_words(a, b, seed=0, example_id=i)
    # the two sentences draw independently: the same sentence twice is shuffled two different ways
    premises = [line.split("\t")[0].split() for line in read_lines(data_dir / "xnli/dev-en.tsv.gz", 30)]
    long = max(premises, key=len)
    same_a, same_b = t.apply_pair_words(long, long, seed=0, example_id=0)
    assert same_a != same_b
    inv = parse("inv@word", layout)
    assert inv.apply_pair_words(a, b, seed=0, example_id=0) == (a[::-1], b[::-1])


def test_tatoeba_sentences_transform_like_single_rows(layout, sentences):
    t = parse("translit+inv", layout).for_task("tatoeba")
    out = t.apply_sentences(sentences, seed=0, example_ids=eids(len(sentences)))
    for s, o in zip(sentences, out, strict=True):
        assert o.tolist() == [BOS, *(s[1:-1][::-1] + layout.base_size).tolist(), EOS]
    perm = parse("perm", layout)
    ragged = perm.apply_sentences(sentences, seed=4, example_ids=eids(len(sentences), 50))
    for i, s in enumerate(sentences):
        alone, _ = perm.apply_ids(s[None], seed=4, example_ids=eids(1, 50 + i))
        np.testing.assert_array_equal(ragged[i], alone[0])
    text = "The cat sat on the mat ."
    assert parse("inv@word", layout).apply_text(text, seed=0, example_id=0) == ". mat the on sat cat The"
    assert parse("inv", layout).apply_text(text, seed=0, example_id=0) == text  # sub-word: ids only


# --- token labels and BIO -----------------------------------------------------------------------------------
NER_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def labelled_tags(labels_row):
    return [NER_NAMES[x] for x in labels_row.tolist() if x != bio.IGNORE_INDEX]


def is_canonical_bio(tags):
    prev = "O"
    for t in tags:
        if t.startswith("I-") and prev[2:] != t[2:]:
            return False
        if t.startswith("B-") and prev[2:] == t[2:]:
            return False
        prev = t if t != "O" else "O"
    return True


@pytest.mark.parametrize("spec", REORDERING)
def test_labels_travel_with_their_tokens(tok, layout, wikiann, spec):
    ids, labels, lengths = encode_tagged(tok, wikiann, NER_NAMES)
    t = parse(spec, layout).for_task("ner")
    out, out_labels = t.apply_ids(ids, seed=2, example_ids=eids(len(ids)), labels=labels)
    src = t.index_map(ids, seed=2, example_ids=eids(len(ids)))
    np.testing.assert_array_equal(translit.invert(out, layout.base_size), np.take_along_axis(ids, src, 1))
    np.testing.assert_array_equal(out_labels, np.take_along_axis(labels, src, 1))
    assert (out_labels == bio.IGNORE_INDEX).sum() == (labels == bio.IGNORE_INDEX).sum()
    if "inv" in spec:  # the reference reverses labels[1:-1] of the unpadded sentence
        for lab, got, n in zip(labels, out_labels, lengths, strict=True):
            assert got[1 : n - 1].tolist() == lab[1 : n - 1][::-1].tolist()


@pytest.mark.parametrize("spec", REORDERING)
def test_bio_is_canonical_after_reordering(tok, layout, wikiann, spec):
    ids, labels, _ = encode_tagged(tok, wikiann, NER_NAMES)
    t = parse(spec, layout)
    _, raw = t.apply_ids(ids, seed=9, example_ids=eids(len(ids)), labels=labels)
    _, fixed = t.apply_tagging(ids, labels, seed=9, example_ids=eids(len(ids)), bio_names=NER_NAMES)
    assert any(not is_canonical_bio(labelled_tags(r)) for r in raw)  # the fix-up is needed on real data
    for before, after in zip(raw, fixed, strict=True):
        tags = labelled_tags(after)
        assert is_canonical_bio(tags)
        # only prefixes change; every token keeps its entity type
        assert [x[2:] for x in tags] == [x[2:] for x in labelled_tags(before)]
        # seqeval sees one chunk per run of a type
        runs = [(k, i) for i, k in enumerate(x[2:] for x in tags) if k and (i == 0 or tags[i - 1][2:] != k)]
        assert [(k, s) for k, s, _ in get_entities(tags)] == runs


def test_bio_on_strings_with_ignored_positions(wikiann):
    assert canonicalize_bio(
        ["I-PER", None, "B-PER", "O", "I-LOC", "-100", "I-LOC", "B-ORG"], ignore="-100"
    ) == ["B-PER", None, "I-PER", "O", "B-LOC", "-100", "I-LOC", "B-ORG"]
    for _, tags in wikiann:  # gold WikiANN is canonical except where two same-type entities touch
        touching = any(t.startswith("B-") and p[2:] == t[2:] for p, t in zip(tags, tags[1:], strict=False))
        if not touching:
            assert canonicalize_bio(tags) == tags


@FAST
@given(seed=st.integers(0, 2**31), spec=st.sampled_from(["perm@word", "inv@word", "translit+perm@word"]))
def test_word_level_reordering_of_tagged_sentences(layout, wikiann, data_dir, seed, spec):
    t = parse(spec, layout).for_task("ner")
    for i, (words, tags) in enumerate(wikiann[:40]):
        out_w, out_t = t.apply_tagged_words(words, tags, seed=seed, example_id=i, bio_tags=True)
        assert is_canonical_bio(out_t)
        assert Counter(zip(out_w, [x[2:] for x in out_t], strict=True)) == Counter(
            zip(words, [x[2:] for x in tags], strict=True)
        )
    udpos = read_token_tags(data_dir / "ud/xtreme_udpos/dev-en.tsv.gz", 20)
    pos_t = parse(spec, layout).for_task("pos")
    for i, (words, tags) in enumerate(udpos):
        out_w, out_t = pos_t.apply_tagged_words(words, tags, seed=seed, example_id=i)
        assert Counter(zip(out_w, out_t, strict=True)) == Counter(zip(words, tags, strict=True))


def test_syntax_variant_is_chosen_in_the_spec(layout, data_dir):
    """`syntax:LANG` samples an ordering (the default); `syntax:LANG[deterministic]` takes the likeliest."""
    from xlt_jax.data.readers.conllu import read_conllu

    sentence = max(read_conllu(data_dir / "ud/en_pud/test.conllu.gz"), key=len)
    outputs = {}
    for spec in ("syntax:fr", "syntax:fr[deterministic]"):
        t = parse(spec, layout).for_task("pos")
        outputs[spec] = {tuple(t.apply_words(sentence.forms, seed=seed, example_id=0, sentence=sentence)[0])
                         for seed in range(5)}
    assert parse("syntax:fr", layout).syntax.impl.reorderer.variant == "sampled"
    assert len(outputs["syntax:fr"]) > 1 and len(outputs["syntax:fr[deterministic]"]) == 1


def test_syntax_word_stage_composes_with_translit(layout, tok, data_dir):
    """`translit+syntax:hi`: the tree reorders the words (tags travel), then translit shifts their ids."""
    import itertools

    from xlt_jax.data.readers.conllu import read_conllu

    t = parse("translit+syntax:hi", layout).for_task("pos")
    moved = 0
    sents = itertools.islice(read_conllu(data_dir / "ud/en_pud/test.conllu.gz"), 20)
    for i, sent in enumerate(sents):
        words, tags = t.apply_tagged_words(sent.forms, sent.upos, seed=0, example_id=i, sentence=sent)
        assert Counter(zip(words, tags, strict=True)) == Counter(zip(sent.forms, sent.upos, strict=True))
        assert (words, tags) == t.apply_words(sent.forms, sent.upos, seed=0, example_id=i, sentence=sent)
        moved += words != sent.forms
        row = np.array([[BOS, *tok.encode(" ".join(words)), EOS]])
        out, _ = t.apply_ids(row, seed=0, example_ids=eids(1))
        np.testing.assert_array_equal(translit.invert(out, layout.base_size), row)
    assert moved > 10
    with pytest.raises(TransformError, match="tree"):
        t.apply_words(["no", "tree"], seed=0, example_id=0)


# --- QA -----------------------------------------------------------------------------------------------------
def qa_features(tok, data_dir, max_len=96, stride=32, limit=60):
    """SQuAD dev features `<s> q </s></s> context-window </s>` with per-token character offsets."""
    data = json.loads(io.read_text(data_dir / "squad/dev-v1.1.json.gz"))
    rows, offs, spans, contexts = [], [], [], []
    examples = [(p["context"], q) for a in data["data"][:3] for p in a["paragraphs"] for q in p["qas"]]
    for context, q in examples[:limit]:
        ctx_ids, ctx_offs = [], []
        for m in re.finditer(r"\S+", context):
            pieces = tok.encode(m.group())
            n, k = len(m.group()), len(pieces)
            ctx_ids += pieces
            ctx_offs += [(m.start() + j * n // k, m.start() + (j + 1) * n // k) for j in range(k)]
        prefix = [BOS, *tok.encode(q["question"])[:20], EOS, EOS]
        room = max_len - len(prefix) - 1
        a0 = q["answers"][0]["answer_start"]
        a1 = a0 + len(q["answers"][0]["text"])
        first = next(i for i, (_, e) in enumerate(ctx_offs) if e > a0)
        last = max(i for i, (s, _) in enumerate(ctx_offs) if s < a1)
        for w in range(0, max(1, len(ctx_ids) - stride), room - stride):
            window = ctx_ids[w : w + room]
            rows.append(prefix + window + [EOS])
            off = [(-1, -1)] * len(prefix) + ctx_offs[w : w + room] + [(-1, -1)]
            offs.append(off + [(-1, -1)] * (max_len - len(off)))
            inside = w <= first and last < w + len(window)
            spans.append((first - w + len(prefix), last - w + len(prefix)) if inside else (0, 0))
            contexts.append(context)
    return pad_rows(rows, max_len), np.array(offs), np.array(spans), contexts


@pytest.mark.parametrize("spec", ["inv", "translit+inv", "translit", "none"])
def test_qa_spans_map_back_to_the_original_context(tok, layout, data_dir, spec):
    ids, offsets, spans, contexts = qa_features(tok, data_dir)
    t = parse(spec, layout)
    feats = t.apply_qa(
        ids,
        seed=0,
        example_ids=eids(len(ids)),
        start_positions=spans[:, 0],
        end_positions=spans[:, 1],
        offsets=offsets,
    )
    assert feats.inverted == ("inv" in spec)
    base = translit.invert(feats.input_ids, layout.base_size)
    rng = np.random.default_rng(0)
    answered = 0
    for r in range(len(ids)):
        s, e = spans[r]
        s2, e2 = int(feats.start_positions[r]), int(feats.end_positions[r])
        if (s, e) == (0, 0):
            assert (s2, e2) == (0, 0)  # no answer in this window: still the <s> index
            continue
        answered += 1
        assert s2 <= e2
        gold = (int(offsets[r, s, 0]), int(offsets[r, e, 1]))
        assert qa.char_span(feats.offsets[r], s2, e2, inverted=feats.inverted) == gold
        # any prediction inside the reversed context is a contiguous span of the original, in original order
        ctx = np.flatnonzero(offsets[r, :, 0] >= 0)
        for _ in range(5):
            p, q = sorted(rng.choice(ctx, 2))
            a, b = qa.original_token_span(feats.index_map[r], p, q)
            assert qa.char_span(feats.offsets[r], p, q, inverted=feats.inverted) == (
                int(offsets[r, a, 0]),
                int(offsets[r, b, 1]),
            )
            span_ids = base[r, p : q + 1][::-1] if feats.inverted else base[r, p : q + 1]
            assert span_ids.tolist() == ids[r, a : b + 1].tolist()
            assert contexts[r][offsets[r, a, 0] : offsets[r, b, 1]]  # a real, non-empty piece of context
    assert answered > 20


def test_qa_reverses_question_and_context_separately(tok, layout, data_dir):
    ids, offsets, _, _ = qa_features(tok, data_dir, limit=10)
    feats = parse("inv", layout).apply_qa(ids, seed=0, example_ids=eids(len(ids)))
    for row, got, m in zip(ids, feats.input_ids, feats.index_map, strict=True):
        assert got.tolist() == reference_inversion(row)
        np.testing.assert_array_equal(m[m], np.arange(len(m)))


@pytest.mark.parametrize("spec", ["perm", "translit+perm", "syntax:hi", "translit+syntax:hi", "inv@word"])
def test_qa_refuses_reorderings_without_span_mapping(layout, spec):
    t = parse(spec, layout)
    with pytest.raises(TransformError, match="cannot be applied to QA"):
        t.for_task("qa")
    with pytest.raises(TransformError, match="QA"):
        t.apply_qa(np.array([[BOS, 10, EOS, EOS, 11, 12, EOS]]), seed=0, example_ids=eids(1))


# --- spec parsing -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, name, copies, words, ids",
    [
        ("none", "none", 1, [], []),
        ("", "none", 1, [], []),
        ("inv", "inv", 1, [], ["inv"]),
        ("perm", "perm", 1, [], ["perm"]),
        ("translit", "translit", 2, [], ["translit"]),
        ("translit+inv", "translit+inv", 2, [], ["inv", "translit"]),
        ("perm+translit", "translit+perm", 2, [], ["perm", "translit"]),
        ("syntax:hi", "syntax:hi", 1, ["syntax:hi"], []),
        ("translit+syntax:hi", "translit+syntax:hi", 2, ["syntax:hi"], ["translit"]),
        ("syntax:fr+inv", "syntax:fr+inv", 1, ["syntax:fr"], ["inv"]),
        ("syntax:fr[deterministic]", "syntax:fr[deterministic]", 1, ["syntax:fr[deterministic]"], []),
        ("syntax:fr[sampled]", "syntax:fr", 1, ["syntax:fr"], []),
        ("inv@word", "inv@word", 1, ["inv@word"], []),
        ("translit+perm@word", "translit+perm@word", 2, ["perm@word"], ["translit"]),
        (" Translit + INV ", "translit+inv", 2, [], ["inv", "translit"]),
    ],
)
def test_parse_specs(layout, spec, name, copies, words, ids):
    t = parse(spec, layout)
    assert (t.name, t.copies) == (name, copies)
    assert [s.name for s in t.word_stage] == words and [s.name for s in t.id_stage] == ids
    assert parse(t.name, layout).name == t.name


@pytest.mark.parametrize(
    "spec, opts, match",
    [
        ("invert", {}, "valid parts: none, inv, perm, translit, syntax:LANG"),
        ("translit+rot13", {}, "unknown transformation 'rot13'"),
        ("inv+perm", {}, "two reorderings"),
        ("translit+translit", {}, "transliteration twice"),
        ("syntax:hi+perm@word", {}, "both word-level"),
        ("syntax:", {}, "unknown transformation"),
        ("syntax:fr[greedy]", {}, "bad syntax option 'greedy'"),
        ("translit[keep=2]", {}, "keep fraction"),
        ("translit[nope]", {}, "bad transliteration option"),
        ("inv", {"level": "char"}, "level"),
        ("inv", {"invert": True}, "unknown transform options"),
    ],
)
def test_parse_errors_name_the_problem(layout, spec, opts, match):
    with pytest.raises(TransformError, match=re.escape(match)):
        parse(spec, layout, **opts)


def test_unknown_task_is_an_error(layout):
    with pytest.raises(TransformError, match="unknown task 'summarization'"):
        parse("inv", layout).for_task("summarization")


def test_bad_batch_shapes_are_rejected(layout):
    t = parse("inv", layout)
    with pytest.raises(ValueError, match="batch, length"):
        t.apply_ids(np.array([BOS, 5, EOS]), seed=0, example_ids=eids(1))
    with pytest.raises(ValueError, match="example_ids"):
        t.apply_ids(np.array([[BOS, 5, EOS]]), seed=0, example_ids=eids(2))
    with pytest.raises(ValueError, match="labels shape"):
        t.apply_ids(np.array([[BOS, 5, EOS]]), seed=0, example_ids=eids(1), labels=np.zeros((1, 2)))
