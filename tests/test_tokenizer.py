"""SentencePiece tokenizer: fixed special ids, byte fallback, persistence, determinism, mixing."""

from __future__ import annotations

import io
import itertools
import pickle
import unicodedata

import numpy as np
import pytest
import sentencepiece as spm

from xlt_jax.data.corpora import conllu_sentences
from xlt_jax.data.readers.text import read_lines
from xlt_jax.data.tokenizer import Tokenizer, mix_sentences, train_tokenizer
from xlt_jax.data.vocab import SPECIALS, VocabLayout
from xlt_jax.errors import DataFormatError


def _conllu(data_dir, rel, n):
    return list(itertools.islice(conllu_sentences(data_dir / rel), n))


def _raw(data_dir, lang):
    return list(read_lines(data_dir / "raw" / "lingua_leipzig_sample" / f"{lang}.sentences.txt.gz"))


def _normalised(text: str) -> str:
    """What SentencePiece's nmt_nfkc normaliser keeps of a text: NFKC with whitespace runs collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def test_special_pieces_have_the_fixed_ids(tiny_tokenizer):
    names = {SPECIALS.bos: "<s>", SPECIALS.pad: "<pad>", SPECIALS.eos: "</s>", SPECIALS.unk: "<unk>",
             SPECIALS.mask: "<mask>"}  # fmt: skip
    assert {i: tiny_tokenizer.piece(i) for i in SPECIALS.all} == names
    assert tiny_tokenizer.piece(5) == "<0x00>"  # byte-fallback pieces follow the specials
    assert tiny_tokenizer.base_size == 1000
    assert tiny_tokenizer.layout() == VocabLayout(1000, 1, 0)
    assert tiny_tokenizer.layout(copies=2).size == 2000
    with pytest.raises(ValueError, match="base piece"):
        tiny_tokenizer.piece(1000)


def test_encode_adds_no_specials_and_mask_is_one_piece(tiny_tokenizer):
    ids = tiny_tokenizer.encode("The mosque is near the border.")
    assert ids and not set(ids) & {SPECIALS.bos, SPECIALS.eos, SPECIALS.pad}
    assert SPECIALS.mask in tiny_tokenizer.encode("the <mask> of Qaim")


@pytest.mark.parametrize(
    "rel", ["ud/en_ewt/dev.conllu.gz", "ud/fr_pud/test.conllu.gz", "ud/hi_pud/test.conllu.gz",
            "ud/ar_pud/test.conllu.gz"],
)  # fmt: skip
def test_round_trip_on_real_sentences_with_byte_fallback(tiny_tokenizer, data_dir, rel):
    sentences = _conllu(data_dir, rel, 150)
    encoded = [tiny_tokenizer.encode(s) for s in sentences]
    assert [tiny_tokenizer.decode(ids) for ids in encoded] == [_normalised(s) for s in sentences]
    # An English-only vocabulary still never emits <unk>: unseen characters become byte pieces.
    assert not any(SPECIALS.unk in ids for ids in encoded)
    if "hi_pud" in rel or "ar_pud" in rel:
        pieces = [tiny_tokenizer.piece(i) for ids in encoded for i in ids]
        assert sum(p.startswith("<0x") for p in pieces) > len(pieces) / 2
        assert not any(ord(ch) >= 0x600 for p in pieces for ch in p if ch != "▁")


def test_encode_batch_matches_encode(tiny_tokenizer, data_dir):
    sentences = _conllu(data_dir, "ud/en_ewt/test.conllu.gz", 200) + _raw(data_dir, "hi")[:50]
    batch = tiny_tokenizer.encode_batch(sentences)
    assert all(a.dtype == np.int32 and a.flags.writeable for a in batch)
    assert [a.tolist() for a in batch] == [tiny_tokenizer.encode(s) for s in sentences]
    assert tiny_tokenizer.encode_batch([]) == []


def test_decode_copies_specials_and_sentinels(tiny_tokenizer, data_dir):
    tok = tiny_tokenizer
    text = _conllu(data_dir, "ud/en_ewt/dev.conllu.gz", 1)[0]
    ids = tok.encode(text)
    V = tok.base_size
    copy = [i + V for i in ids]
    # A transliterated copy decodes as the original; bos/eos/pad are dropped by default.
    assert tok.decode([SPECIALS.bos, *copy, SPECIALS.eos, SPECIALS.pad]) == _normalised(text)
    assert tok.decode(np.array(copy, dtype=np.int32)) == _normalised(text)
    shown = tok.decode([SPECIALS.bos, *ids, SPECIALS.eos, *copy, SPECIALS.eos], skip_specials=False,
                       mark_copies=True)  # fmt: skip
    assert shown == f"<s>{_normalised(text)}</s>⟦{_normalised(text)}⟧</s>"
    # Mixed runs keep the word boundary outside the marker.
    words = tok.encode("the town")
    assert tok.decode([words[0], *(i + V for i in words[1:])], mark_copies=True) == "the ⟦town⟧"
    # Sentinels sit at the top of the layout, counting down.
    layout = VocabLayout(V, copies=1, num_sentinels=10)
    shown = tok.decode([layout.sentinel(0), *ids[:2], layout.sentinel(1)], layout=layout, skip_specials=False)
    assert shown.startswith("<extra_id_0>") and shown.endswith("<extra_id_1>")
    assert tok.decode([layout.sentinel(0), *ids], layout=layout) == tok.decode(ids)
    with pytest.raises(ValueError, match="outside"):
        tok.decode([2 * V])


def test_save_load_round_trip(tiny_tokenizer, data_dir, tmp_path):
    saved = tiny_tokenizer.save(tmp_path / "tok")
    assert sorted(p.name for p in saved.iterdir()) == ["spm.model", "tokenizer.json"]
    loaded = Tokenizer.load(saved)
    sentences = _conllu(data_dir, "ud/en_ewt/dev.conllu.gz", 100) + _raw(data_dir, "ar")[:20]
    assert [loaded.encode(s) for s in sentences] == [tiny_tokenizer.encode(s) for s in sentences]
    assert loaded.metadata == tiny_tokenizer.metadata
    assert loaded.metadata["sentences_used"] == {"en": 4000}
    assert loaded.model_proto == tiny_tokenizer.model_proto
    # The tokenizer pickles (for data-loader workers).
    clone = pickle.loads(pickle.dumps(tiny_tokenizer))
    assert clone.encode(sentences[0]) == tiny_tokenizer.encode(sentences[0])


def test_training_is_deterministic_and_seed_controls_subsampling(data_dir, tmp_path):
    texts = {"en": _conllu(data_dir, "ud/en_ewt/train.conllu.gz", 1500)}
    first = train_tokenizer(texts, 600, tmp_path / "a", seed=1, sentences_per_lang=1000)
    second = train_tokenizer(texts, 600, tmp_path / "b", seed=1, sentences_per_lang=1000)
    assert first.model_proto == second.model_proto
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()
    # `{out_prefix}.model` + `{out_prefix}.json` load back as the same tokenizer.
    reloaded = Tokenizer.load(tmp_path / "a.model")
    assert reloaded.metadata == first.metadata and reloaded.model_proto == first.model_proto
    assert first.metadata["sentences_used"] == {"en": 1000}
    third = train_tokenizer(texts, 600, None, seed=2, sentences_per_lang=1000)
    assert third.model_proto != first.model_proto  # another seed draws another 1000 of the 1500 sentences


def test_multilingual_training_covers_both_scripts(data_dir):
    en = _conllu(data_dir, "ud/en_ewt/train.conllu.gz", 2000)
    hi = _raw(data_dir, "hi")
    tok = train_tokenizer({"en": en, "hi": hi}, 1500, None, alpha=0.3, seed=0)
    pieces = [tok.piece(i) for i in range(tok.base_size)]
    devanagari = sum(any("\u0900" <= ch <= "\u097f" for ch in p) for p in pieces)
    latin = sum(any("a" <= ch.lower() <= "z" for ch in p) for p in pieces)
    assert devanagari > 150 and latin > 150, (devanagari, latin)
    # α = 0.3 up-weights Hindi relative to its natural 1/3 share of the sentences.
    used = tok.metadata["sentences_used"]
    assert used["hi"] / (used["hi"] + used["en"]) > 0.4
    assert tok.languages == ["en", "hi"]
    sentence = hi[3]
    ids = tok.encode(sentence)
    assert tok.decode(ids) == _normalised(sentence)
    assert not any(tok.piece(i).startswith("<0x") for i in ids)  # Hindi now has real pieces


def test_mixing_follows_temperature_budget(data_dir):
    en = _conllu(data_dir, "ud/en_ewt/train.conllu.gz", 900)
    hi = _raw(data_dir, "hi")[:100]
    mixed, available, used = mix_sentences({"en": en, "hi": hi}, alpha=0.5, seed=0)
    assert available == {"en": 900, "hi": 100}
    assert used == {"en": 750, "hi": 250}  # q ∝ sqrt(0.9), sqrt(0.1) = 0.75, 0.25 of 1000
    assert len(mixed) == 1000
    assert sum(s in set(hi) for s in mixed) == 250  # every Hindi sentence 2×, then 50 more once
    assert mix_sentences({"en": en, "hi": hi}, alpha=0.5, seed=0)[0] == mixed
    with pytest.raises(ValueError, match="'hi'"):
        mix_sentences({"en": en, "hi": ["  ", ""]}, alpha=0.5, seed=0)


def test_hard_vocab_limit_only_when_asked(data_dir):
    texts = {"en": _conllu(data_dir, "ud/en_ewt/train.conllu.gz", 100)}
    with pytest.raises(RuntimeError, match="[Vv]ocabulary size"):
        train_tokenizer(texts, 20_000, None)
    tok = train_tokenizer(texts, 20_000, None, hard_vocab_limit=False, num_sentinels=100)
    assert 261 < tok.base_size < 20_000
    assert tok.layout(copies=2).size == 2 * tok.base_size + 100


def test_foreign_or_corrupt_models_are_rejected(tiny_tokenizer, data_dir, tmp_path):
    writer = io.BytesIO()  # a model with SentencePiece's default ids (unk=0, bos=1, eos=2), like mT5's
    texts = _conllu(data_dir, "ud/en_ewt/dev.conllu.gz", 300)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=writer, vocab_size=300, minloglevel=2
    )
    with pytest.raises(DataFormatError, match="special pieces"):
        Tokenizer(writer.getvalue())
    saved = tiny_tokenizer.save(tmp_path / "tok")
    (saved / "tokenizer.json").write_text('{"base_size": 1000,\n "languages": [')
    with pytest.raises(DataFormatError, match=r"tokenizer\.json:2"):
        Tokenizer.load(saved)
    (saved / "tokenizer.json").unlink()
    (saved / "spm.model").write_bytes(tiny_tokenizer.model_proto[:500])
    with pytest.raises(DataFormatError, match="spm.model"):
        Tokenizer.load(saved)
    with pytest.raises(FileNotFoundError):
        Tokenizer.load(tmp_path / "missing")
