"""Pretraining corpora: sources per language, evaluation text excluded, deterministic, source strings."""

from __future__ import annotations

import sys
import types

import pytest

from xlt_jax.data import corpora
from xlt_jax.data.readers.squad import read_squad
from xlt_jax.data.readers.tagging import read_udpos_tsv, read_wikiann
from xlt_jax.data.readers.text import read_lines
from xlt_jax.errors import ConfigError


def _texts(path):
    return list(corpora.conllu_sentences(path))


def test_english_excludes_evaluation_sentences(data_dir):
    sentences = corpora.pretraining_sentences("en", data_dir)
    assert len(sentences) > 40_000
    assert len({corpora.sentence_key(s) for s in sentences}) == len(sentences)  # deduplicated
    keys = {corpora.sentence_key(s) for s in sentences}
    ewt_eval = _texts(data_dir / "ud/en_ewt/dev.conllu.gz") + _texts(data_dir / "ud/en_ewt/test.conllu.gz")
    wikiann_dev = [" ".join(s.tokens) for s in read_wikiann(data_dir / "wikiann/en/dev.tsv.gz")]
    xquad = {ex.context for ex in read_squad(data_dir / "xquad/xquad.en.json.gz")}
    for evaluation in (ewt_eval, wikiann_dev, xquad):
        assert not set(evaluation) & set(sentences)
        assert not {corpora.sentence_key(s) for s in evaluation} & keys
    # The train sources are really in there (the filter is not simply dropping everything).
    assert set(read_lines(data_dir / "raw/lingua_leipzig_sample/en.sentences.txt.gz")) <= set(sentences)


def test_stats_account_for_every_sentence(data_dir):
    stats = corpora.corpus_stats("en", data_dir)
    assert [s["source"] for s in stats] == ["ud", "udpos", "wikiann", "squad", "sick", "raw"]
    assert sum(s["kept"] for s in stats) == len(corpora.pretraining_sentences("en", data_dir))
    by_source = {s["source"]: s for s in stats}
    assert by_source["ud"]["kept"] > 11_000  # of EWT train's 12,544 sentences
    # XTREME's tokenized English UD train repeats EWT train: the whitespace-free key catches it.
    assert by_source["udpos"]["duplicate"] > 10_000
    # The 240 SQuAD dev paragraphs that XQuAD translated are dropped whole.
    assert by_source["squad"]["evaluation"] >= 240
    assert all(s["read"] == s["kept"] + s["evaluation"] + s["duplicate"] for s in stats)


def test_tokenized_and_raw_copies_share_a_key(data_dir):
    raw = next(iter(corpora.conllu_sentences(data_dir / "ud/en_ewt/train.conllu.gz")))
    tokens = next(iter(read_udpos_tsv(data_dir / "ud/xtreme_udpos/train-en.tsv.gz"))).tokens
    assert raw != " ".join(tokens)
    assert corpora.sentence_key(raw) == corpora.sentence_key(" ".join(tokens))


def test_hindi_is_deterministic_and_eval_free(data_dir):
    sentences = corpora.pretraining_sentences("hi", data_dir)
    again = corpora.collect_sentences(
        corpora.pretraining_sources("hi", data_dir), corpora.evaluation_keys("hi", data_dir)
    )
    assert sentences == again and len(sentences) > 4_000
    evaluation = [" ".join(s.tokens) for split in ("dev", "test")
                  for s in read_wikiann(data_dir / f"wikiann/hi/{split}.tsv.gz")]  # fmt: skip
    evaluation += _texts(data_dir / "ud/hi_pud/test.conllu.gz")
    assert not set(evaluation) & set(sentences)
    everything = corpora.pretraining_sentences("hi", data_dir, exclude_eval=False)
    assert set(sentences) < set(everything)
    everything_keys = {corpora.sentence_key(s) for s in everything}
    assert {corpora.sentence_key(s) for s in evaluation} <= everything_keys


def test_unknown_or_eval_only_languages_raise_clearly(data_dir):
    with pytest.raises(ConfigError, match="'xx'.*languages with text: ar, en, fr, hi"):
        corpora.pretraining_sentences("xx", data_dir)
    with pytest.raises(ConfigError, match="ISO 639-1"):
        corpora.pretraining_sentences("EN!", data_dir)
    with pytest.raises(ConfigError, match="only text for 'de' is evaluation data"):
        corpora.pretraining_sentences("de", data_dir)
    assert corpora.available_languages(data_dir) == ["ar", "en", "fr", "hi"]
    assert {"de", "ro", "zh"} <= set(corpora.available_languages(data_dir, exclude_eval=False))


def test_ud_treebanks(data_dir):
    assert corpora.ud_train_treebanks("en", data_dir) == [data_dir / "ud/en_ewt/train.conllu.gz"]
    assert [p.parent.name for p in corpora.ud_train_treebanks("fr", data_dir)] == ["fr_partut", "fr_sequoia"]
    assert corpora.ud_train_treebanks("hi", data_dir) == []
    assert corpora.ud_treebanks("hi", ("test",), data_dir) == [data_dir / "ud/hi_pud/test.conllu.gz"]


def test_split_sentences_on_a_squad_paragraph(data_dir):
    context = read_squad(data_dir / "squad/dev-v1.1.json.gz")[0].context
    parts = corpora.split_sentences(context)
    assert len(parts) > 3 and all(p[-1] in '.!?"' for p in parts[:-1])
    assert corpora.sentence_key(" ".join(parts)) == corpora.sentence_key(context)


def test_read_source_strings(data_dir, monkeypatch):
    raw = corpora.read_source("text:raw/lingua_leipzig_sample/fr.sentences.txt.gz", data_dir=data_dir)
    assert len(raw) == 1000
    dev = corpora.read_source("conllu:ud/en_ewt/dev.conllu.gz", data_dir=data_dir, limit=5)
    assert dev == _texts(data_dir / "ud/en_ewt/dev.conllu.gz")[:5]
    absolute = corpora.read_source(f"conllu:{data_dir / 'ud/hi_pud/test.conllu.gz'}")
    assert len(absolute) == 1000
    assert corpora.read_source("lang:hi", data_dir=data_dir) == corpora.pretraining_sentences("hi", data_dir)
    for bad in ("hdfs:/x", "text", "tfds:wiki40b"):
        with pytest.raises(ConfigError, match="source"):
            corpora.read_source(bad, data_dir=data_dir)


def test_tfds_without_the_extra_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(ConfigError, match=r"`tfds` extra"):
        corpora.read_source("tfds:wiki40b/en:train")


def test_tfds_source_reads_text_records(data_dir, monkeypatch):
    lines = list(read_lines(data_dir / "raw/lingua_leipzig_sample/en.sentences.txt.gz"))[:10]
    calls = []

    def data_source(name, **kwargs):
        calls.append((name, kwargs))
        return [{"text": line.encode("utf-8"), "id": i} for i, line in enumerate(lines)]

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", types.SimpleNamespace(data_source=data_source))
    monkeypatch.setenv("TFDS_DATA_DIR", "/tfds")
    assert corpora.read_source("tfds:wiki40b/en:1.3.0:validation", limit=4) == lines[:4]
    # A real dataset: tests/test_tfds_source.py.
    assert calls == [("wiki40b/en:1.3.0", {"split": "validation", "data_dir": "/tfds", "download": False})]


# -- the gold-tree corpus and every pretraining path's text (training.inputs) --------------------------------


def _evaluation_file_keys(data_dir, lang: str) -> set[str]:
    """Keys of the UD and XTREME UD-POS dev/test sentences of `lang`, read here from the files themselves."""
    files = [path for split in ("dev", "test") for path in data_dir.glob(f"ud/{lang}_*/{split}.conllu.gz")]
    keys = {corpora.sentence_key(t) for path in files for t in _texts(path)}
    keys |= {corpora.sentence_key(" ".join(s.tokens)) for split in ("dev", "test")
             for s in read_udpos_tsv(data_dir / f"ud/xtreme_udpos/{split}-{lang}.tsv.gz")}
    return keys


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_treebank_corpus_holds_train_trees_minus_evaluation_sentences_and_duplicates(data_dir, lang):
    from xlt_jax.data.readers.conllu import read_conllu

    trees = [s for path in corpora.ud_train_treebanks(lang, data_dir) for s in read_conllu(path)]
    kept = corpora.treebank_sentences(lang, data_dir)
    keys = lambda s: {corpora.sentence_key(s.text or ""), corpora.sentence_key(" ".join(s.forms))} - {""}
    from_files = _evaluation_file_keys(data_dir, lang)
    assert sum(bool(keys(s) & from_files) for s in trees) > 0  # train trees do repeat evaluation sentences
    assert not any(keys(s) & from_files for s in kept)
    # The train trees in file order, minus evaluation sentences (of any task; by text or by words) and repeats.
    evaluation, seen, expected = corpora.evaluation_keys(lang, data_dir), set(), []
    for s in trees:
        key = corpora.sentence_key(" ".join(s.forms))
        if not keys(s) & evaluation and key not in seen:
            seen.add(key)
            expected.append(s.forms)
    assert [s.forms for s in kept] == expected
    stats = corpora.treebank_stats(lang, data_dir)
    assert stats["read"] == len(trees) == stats["kept"] + stats["evaluation"] + stats["duplicate"]
    assert stats["kept"] == len(kept) and stats["evaluation"] > 0
    assert corpora.read_source(f"treebank:{lang}", data_dir=data_dir) == [corpora.treebank_text(s) for s in kept]


def test_treebank_corpus_needs_train_trees(data_dir):
    with pytest.raises(ConfigError, match=r"treebank:hi: no UD train treebank \(ud/hi_\*/train"):
        corpora.treebank_sentences("hi", data_dir)


def test_read_source_removes_the_evaluation_sentences_of_a_language(data_dir):
    ewt_train = corpora.read_source("conllu:ud/en_ewt/train.conllu.gz", data_dir=data_dir)
    filtered = corpora.read_source("conllu:ud/en_ewt/train.conllu.gz", data_dir=data_dir, lang="en")
    evaluation = _evaluation_file_keys(data_dir, "en")
    assert sum(corpora.sentence_key(t) in evaluation for t in ewt_train) > 100
    assert not any(corpora.sentence_key(t) in evaluation for t in filtered)
    assert filtered == [t for t in ewt_train if corpora.sentence_key(t) not in corpora.evaluation_keys("en", data_dir)]
    limit = 1 + next(i for i, t in enumerate(ewt_train) if corpora.sentence_key(t) in evaluation)
    first = corpora.read_source("conllu:ud/en_ewt/train.conllu.gz", data_dir=data_dir, lang="en", limit=limit)
    assert first == filtered[:limit] != ewt_train[:limit]  # the limit counts the sentences kept


@pytest.mark.parametrize("config_file, arg, source", [
    ("bilingual.py", "transform=inv", "lang:{lang}"),
    ("bilingual.py", "transform=translit+syntax:fr", "treebank:{lang}"),
    ("monolingual.py", "", "treebank:{lang}"),
    ("monolingual.py", "", "conllu:ud/en_ewt/train.conllu.gz"),
])
def test_no_pretraining_path_reads_an_evaluation_sentence(data_dir, config_file, arg, source):
    import pathlib
    import runpy

    from xlt_jax.training import inputs

    configs = pathlib.Path(__file__).resolve().parents[1] / "configs" / "pretrain"
    config = runpy.run_path(str(configs / config_file))["get_config"](arg)
    config.corpus.source = source
    texts, derived = inputs.load_texts(config)
    evaluation = _evaluation_file_keys(data_dir, "en") | corpora.evaluation_keys("en", data_dir)
    assert len(texts["en"]) > 10_000
    assert not any(corpora.sentence_key(t) in evaluation for t in texts["en"])
    if derived is not None:  # syntax: line i is line i reordered, so it comes from no evaluation sentence either
        assert [sorted(t.split()) for t in derived] == [sorted(t.split()) for t in texts["en"]]
