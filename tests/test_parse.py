"""The parse step (`xlt_jax.data.parse`) and Syntax on text without gold trees: a tiny UDPipe model trained
here on 300 EWT train sentences, the parse cache, NER / XNLI / Tatoeba and pretraining text reordered along
parsed trees, and the protocol plan that no longer skips those tasks when a parser is configured."""

from __future__ import annotations

import json
import pathlib
import runpy
import subprocess
import sys

import numpy as np
import pytest
from conftest import require_extra

from xlt_jax.data import parse, tasks
from xlt_jax.data.parse.udpipe import gold_sentences
from xlt_jax.data.readers.conllu import read_conllu
from xlt_jax.data.tasks import encoding, tagging
from xlt_jax.data.transforms import bio
from xlt_jax.data.vocab import SPECIALS
from xlt_jax.errors import ConfigError
from xlt_jax.experiments import protocol

require_extra("ufal.udpipe", "parse")

REPO = pathlib.Path(__file__).resolve().parents[1]
# A few seconds of training: enough for trees far better than attaching words to a neighbour.
TINY = ["--max_sentences", "300", "--tagger", "iterations=2", "--parser", "iterations=2;hidden_layer=50"]


@pytest.fixture(scope="module")
def tiny_model(data_dir, tmp_path_factory) -> dict:
    """`python -m xlt_jax.data.parse train` on 300 EWT train sentences: its final JSON line (path in "model")."""
    out = tmp_path_factory.mktemp("udpipe") / "en.udpipe"
    record = out.parent / "runs" / "parse" / "en.json"
    command = [sys.executable, "-m", "xlt_jax.data.parse", "train", "--lang", "en", "--out", str(out), *TINY,
               "--record", str(record)]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_training_record_carries_its_scores_and_provenance_into_the_readme(tiny_model):
    from xlt_jax.experiments import readme

    runs = pathlib.Path(tiny_model["model"]).parent / "runs"
    saved = json.loads((runs / "parse" / "en.json").read_text())
    assert saved["uas"] == tiny_model["uas"] and saved["las"] == tiny_model["las"]
    assert {"machine", "date", "commit", "command"} <= saved.keys() and "--record" in saved["command"]
    section = readme.parser_section(runs)
    assert "| en | 300 | " in section and f"| {tiny_model['uas']:.1f} | {tiny_model['las']:.1f} |" in section


@pytest.fixture
def parse_cache(tmp_path, monkeypatch) -> pathlib.Path:
    monkeypatch.setenv("XLT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "parses"


class CountingParser:
    """A parser that counts its calls (and may claim another model's hash)."""

    def __init__(self, inner, model_hash: str | None = None):
        self.inner, self.calls, self.name = inner, 0, "counting"
        self.model_hash = model_hash or inner.model_hash

    def parse(self, words_list):
        self.calls += 1
        return self.inner.parse(words_list)


def adjacent_baseline(gold) -> float:
    """UAS of attaching every word to its left or to its right neighbour, whichever scores better."""
    n = sum(len(s) for s in gold)
    left = sum(int((s.heads == np.arange(len(s))).sum()) for s in gold)
    right = sum(int((s.heads == np.arange(2, len(s) + 2)).sum()) for s in gold)
    return 100 * max(left, right) / n


def test_tiny_udpipe_model_parses_dev_into_valid_trees_well_above_a_trivial_baseline(tiny_model, parse_cache):
    gold = gold_sentences("en", "dev")
    assert tiny_model["train_sentences"] == 300 and tiny_model["sentences"] == len(gold)
    baseline = adjacent_baseline(gold)  # attach to the next word: 29.1 on EWT dev
    assert tiny_model["uas"] > baseline + 20 and tiny_model["las"] > baseline  # the tiny model: about 62 / 52
    assert pathlib.Path(tiny_model["model"] + ".json").is_file()

    sample = gold[:200]
    trees = parse.parse_sentences([s.forms for s in sample], "en", model=tiny_model["model"])
    for tree, g in zip(trees, sample, strict=True):
        assert tree.forms == g.forms
        assert np.count_nonzero(tree.heads == 0) == 1 and tree.deprels[int(np.argmax(tree.heads == 0))] == "root"
        assert tree.heads.min() >= 0 and tree.heads.max() <= len(tree)
    (cached,) = list(parse_cache.glob("udpipe-*/*.conllu.gz"))
    assert [t.heads.tolist() for t in read_conllu(cached)] == [t.heads.tolist() for t in trees]  # acyclic, valid
    assert parse.attachment_scores(trees, sample)["uas"] > adjacent_baseline(sample) + 20


def test_the_cache_returns_the_same_trees_without_parsing_again(tiny_model, parse_cache):
    inner = parse.get_parser("udpipe", "en", tiny_model["model"])
    counting = CountingParser(inner)
    words = [s.forms for s in gold_sentences("en", "dev")[:50]] + [[]]  # an empty sentence gets an empty tree
    first = parse.parse_sentences(words, "en", parser=counting)
    again = parse.parse_sentences(words, "en", parser=counting)
    assert counting.calls == 1
    for a, b in zip(first, again, strict=True):
        assert (a.forms, a.upos, a.heads.tolist(), a.deprels) == (b.forms, b.upos, b.heads.tolist(), b.deprels)
    assert len(again[-1]) == 0

    other_model = CountingParser(inner, model_hash="udpipe-another-model")
    parse.parse_sentences(words, "en", parser=other_model)
    assert other_model.calls == 1  # the key holds the model: another model's trees are never served
    changed = [list(w) for w in words]
    changed[3][0] = "Changed"
    parse.parse_sentences(changed, "en", parser=counting)
    assert counting.calls == 2  # and the input: one word changed is another parse

    path = parse.ParseCache().path(counting.model_hash, words)
    path.write_bytes(b"not gzip")  # a damaged cache file counts as missing and is rewritten
    assert [t.heads.tolist() for t in parse.parse_sentences(words, "en", parser=counting)] == \
        [t.heads.tolist() for t in first]
    assert counting.calls == 3 and read_conllu(path) is not None


def _tagging_rows_check(data, tokenizer):
    """Each sentence is one row whose words are a permutation of the originals, each word's pieces at the
    position its `word_index` says, its label its own tag (BIO canonical in reading order)."""
    names = data.label_names
    order = tagging.reading_order(data)
    reordered = 0
    for row, (sentence, perm) in enumerate(zip(data.examples, order, strict=True)):
        assert data.features["example_id"][row] == row  # one feature per sentence (short sentences)
        assert sorted(perm.tolist()) == list(range(len(sentence.tokens)))
        words = [sentence.tokens[i] for i in perm.tolist()]
        pieces, counts = encoding.encode_words(tokenizer, words)
        ids = data.features["input_ids"][row]
        assert ids[1 : 1 + len(pieces)].tolist() == pieces.tolist()  # the words, in reading order
        firsts = 1 + np.cumsum(counts) - counts
        assert data.features["word_index"][row][firsts].tolist() == perm.tolist()
        labels = [names[i] for i in data.features["labels"][row][firsts].tolist()]
        tags = [sentence.tags[i] for i in perm.tolist()]
        assert labels == bio.canonicalize_bio(tags)  # each word's own tag, re-canonicalised
        assert [t.partition("-")[2] for t in labels] == [t.partition("-")[2] for t in tags]  # types travel
        reordered += perm.tolist() != sorted(perm.tolist())
    return reordered


def test_ner_and_xnli_under_syntax_fr_reorder_parsed_trees_and_tags_travel(tiny_model, tiny_tokenizer,
                                                                           parse_cache):
    common = dict(transform="syntax:fr", trees="udpipe", parser_model=tiny_model["model"], max_len=128)
    ner = tasks.prepare("ner", tiny_tokenizer, lang="en", split="dev", limit=60, **common)
    assert ner.extra["syntax_trees"] == "udpipe"
    assert _tagging_rows_check(ner, tiny_tokenizer) > 15
    assert any(t.startswith("I-") for s in ner.examples for t in s.tags)  # multi-word entities were there

    nli = tasks.prepare("nli", tiny_tokenizer, lang="en", split="dev", limit=30, **common)
    plain = tasks.prepare("nli", tiny_tokenizer, lang="en", split="dev", limit=30, max_len=128)
    assert nli.extra["syntax_trees"] == "udpipe"
    changed = 0
    for row, example in enumerate(nli.examples):
        ids = [i for i in nli.features["input_ids"][row].tolist() if i != SPECIALS.pad]
        a, b = _pair(ids)
        for got, text in ((a, example.premise), (b, example.hypothesis)):  # each sentence on its own
            assert sorted(got) == sorted(tiny_tokenizer.encode_batch([text])[0].tolist())
        changed += ids != [i for i in plain.features["input_ids"][row].tolist() if i != SPECIALS.pad]
    assert changed > 10

    tatoeba = tasks.prepare("tatoeba", tiny_tokenizer, lang="en", split="test", limit=30, **common)
    assert tatoeba.extra["syntax_trees"] == "udpipe"
    targets = tatoeba.extra["targets"]["input_ids"]
    reordered = 0
    for row, sentence in enumerate(tatoeba.examples):
        ids = targets[row].tolist()
        got = ids[1 : ids.index(SPECIALS.eos)]
        original = tiny_tokenizer.encode_batch([sentence])[0].tolist()
        assert sorted(got) == sorted(original)
        reordered += got != original
    assert reordered > 5

    pos = tasks.prepare("pos", tiny_tokenizer, lang="en", split="dev", source="ud", limit=5, **common)
    assert pos.extra["syntax_trees"] == "gold"  # POS from CoNLL-U keeps its gold trees

    with pytest.raises(ConfigError, match="syntax.trees"):
        tasks.prepare("ner", tiny_tokenizer, lang="en", split="dev", limit=2, transform="syntax:fr", trees="bogus")


def _pair(ids: list[int]) -> tuple[list[int], list[int]]:
    """Premise and hypothesis ids of `<s> A </s></s> B </s>`."""
    eos = [i for i, t in enumerate(ids) if t == SPECIALS.eos]
    return ids[1 : eos[0]], ids[eos[1] + 1 : eos[2]]


def test_pretraining_text_from_any_source_is_parsed_and_reordered(tiny_model, parse_cache, data_dir, tmp_path):
    from xlt_jax.training import inputs

    lines = (data_dir / "raw" / "lingua_leipzig_sample").glob("en.sentences.txt.gz")
    config = runpy.run_path(str(REPO / "configs" / "pretrain" / "bilingual.py"))["get_config"](
        "lang=en,transform=syntax:fr,trees=udpipe,smoke")
    assert config.corpus.source == "lang:{lang}"  # a parser is configured: not the treebank
    config.corpus.source = f"text:{next(lines)}"
    config.corpus.max_sentences = 150
    config.syntax.model = tiny_model["model"]
    texts, derived = inputs.load_texts(config)
    original = texts["en"]
    assert len(derived) == len(original) == 150
    assert [sorted(d.split()) for d in derived] == [sorted(o.split()) for o in original]  # line i reordered
    assert sum(d != o for d, o in zip(derived, original, strict=True)) > 50
    assert "(trees: udpipe parses)" in inputs.describe_corpus(config)
    config.corpus.source = "treebank:{lang}"  # the treebank's own sentences: their gold trees win over parses
    assert inputs.derives_from_trees(config) and not inputs.derives_from_parses(config)


def _protocol_config(arg: str):
    return runpy.run_path(str(REPO / "configs" / "experiments" / "deshpande.py"))["get_config"](arg)


def test_protocol_with_a_parser_runs_syntax_on_ner_nli_and_tatoeba(tiny_model, tmp_path):
    arg = "transform=syntax:fr,tasks=pos+ner+nli+qa+tatoeba,crosslingual=false,smoke,trees=udpipe"
    config = _protocol_config(arg)
    config.syntax.model = tiny_model["model"]
    plan = protocol.build_plan(config, tmp_path, corpus=lambda c: c.corpus.source)
    steps = {s.name: s for s in plan}
    assert [s.name for s in plan if s.kind == "skip"] == ["task/qa", "evaluate/tatoeba/BS"]  # QA refuses syntax
    for task in ("ner", "nli"):
        for setting in ("BZ", "BS", "MZ"):
            assert steps[f"evaluate/{task}/{setting}-s42"].config.syntax.trees == "udpipe"
        assert steps[f"finetune/{task}/bilingual-derived-s42"].config.syntax.model == tiny_model["model"]
    assert steps["evaluate/tatoeba/BZ"].config.syntax.trees == "udpipe"
    assert steps["finetune/pos/bilingual-derived-s42"].config.train_source == "ud"  # POS keeps gold trees
    for model in ("bilingual", "monolingual"):  # both pretrain on the language's corpus, parsed for the derived side
        assert steps[f"pretrain/{model}"].config.corpus.source == "lang:{lang}"
    assert steps["pretrain/bilingual"].config.syntax.trees == "udpipe"

    gold = protocol.build_plan(_protocol_config(arg.replace("udpipe", "gold")), tmp_path, corpus=lambda c: "")
    assert {s.name for s in gold if s.kind == "skip"} >= {"task/ner", "task/nli", "task/tatoeba"}

    with pytest.raises(ConfigError, match="no UD train treebank for 'hi'"):
        protocol.build_plan(_protocol_config(arg.replace("syntax:fr", "syntax:en") + ",lang=hi"), tmp_path)
    english_for_hindi = _protocol_config(arg.replace("syntax:fr", "syntax:en") + ",lang=hi")
    english_for_hindi.syntax.model = tiny_model["model"]
    with pytest.raises(ConfigError, match="trained on 'en' trees, not 'hi' ones"):
        protocol.build_plan(english_for_hindi, tmp_path)
    missing = _protocol_config(arg)
    missing.syntax.model = str(tmp_path / "none-{lang}.udpipe")
    with pytest.raises(ConfigError, match="train it with `python -m xlt_jax.data.parse train --lang en`"):
        protocol.build_plan(missing, tmp_path)


def test_paper_grid_with_a_parser_runs_english_syntax_on_ner_and_says_why_hindi_cannot(tiny_model, tmp_path):
    from xlt_jax.experiments import grid

    paper = runpy.run_path(str(REPO / "configs" / "experiments" / "paper.py"))["get_config"]
    config = paper("langs=hi+en,transforms=syntax,variants=parallel,tasks=ner,smoke,align=false,trees=udpipe")
    config.protocol.syntax.model = tiny_model["model"].replace("en.udpipe", "{lang}.udpipe")  # one per language
    built = grid.build_grid(config, tmp_path, corpus=lambda c: c.corpus.source)
    assert list(built.plans) == ["en_syntax-fr_parallel"]
    assert "no UD train treebank for 'hi'" in built.unavailable["hi_syntax-en_parallel"]
    steps = {s.name.split("/", 1)[1] for s in built.plan}
    assert {"finetune/ner/bilingual-derived-s42", "evaluate/ner/BZ-s42"} <= steps


def test_stanza_without_its_package_or_models_is_a_clear_error(parse_cache):
    with pytest.raises(ConfigError, match=r"stanza.*stanza\.download\('fr'\)"):
        parse.parse_sentences([["Le", "chat"]], "fr", trees="stanza")
    assert "stanza" in parse.parser_problem("stanza", "fr")
    with pytest.raises(ConfigError, match="syntax.trees: 'spacy'"):
        parse.parser_problem("spacy", "en")
    with pytest.raises(ConfigError, match="tab or newline"):
        parse.parse_sentences([["a\tb"]], "en", parser=object())
