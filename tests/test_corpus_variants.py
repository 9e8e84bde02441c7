"""Corpus-source variants on the real data: the non-parallel sides are disjoint, deterministic, of equal size
and from the configured domains, and a bilingual run and its monolingual twin read what the variant says."""

from __future__ import annotations

import pathlib
import runpy

import pytest

from xlt_jax.data import corpora, corpus_variants
from xlt_jax.errors import ConfigError
from xlt_jax.experiments import protocol
from xlt_jax.training import inputs

REPO = pathlib.Path(__file__).resolve().parents[1]
BILINGUAL = REPO / "configs" / "pretrain" / "bilingual.py"
DESHPANDE = REPO / "configs" / "experiments" / "deshpande.py"


def bilingual(arg: str, variant: str):
    config = runpy.run_path(str(BILINGUAL))["get_config"](arg)
    config.corpus.variant = variant
    return config


def keys(sentences) -> set[str]:
    return {corpora.sentence_key(s) for s in sentences}


def words(sentences) -> int:
    return sum(len(s.split()) for s in sentences)


@pytest.mark.parametrize("lang", ["en", "fr", "hi", "ar"])
def test_nonparallel_sides_are_disjoint_equal_and_from_their_domains(data_dir, lang):
    config = bilingual(f"lang={lang},transform=translit", "nonparallel_same")
    same = inputs.variant_sides(config)
    domain = corpora.read_source(corpus_variants.domain_source(config.corpus.same_domain, "d", lang))
    assert not keys(same.original) & keys(same.derived)  # no original sentence on the derived side
    assert keys(same.original) | keys(same.derived) <= keys(domain)
    longest = max(len(s.split()) for s in domain)
    assert abs(words(same.original) - words(same.derived)) <= longest  # equal text, to within one sentence
    assert len(same.original) > 0.45 * len(domain) and same.available == (len(domain) // 2,) * 2
    assert not keys(same.original) & corpora.evaluation_keys(lang)

    config.corpus.variant = "nonparallel_diff"
    diff = inputs.variant_sides(config)
    other = corpora.read_source(corpus_variants.domain_source(config.corpus.other_domain, "d", lang))
    assert not keys(diff.derived) & keys(domain)  # nothing of the original domain on the derived side
    assert keys(diff.derived) <= keys(other)
    small, large = sorted((keys(diff.original), keys(same.original)), key=len)  # prefixes of one seeded half
    assert small <= large
    assert abs(words(diff.original) - words(diff.derived)) <= max(longest, max(len(s.split()) for s in other))
    assert diff.original and diff.derived


def test_split_is_seeded_and_the_derived_side_reaches_the_pipeline(data_dir):
    config = bilingual("lang=en,transform=translit,smoke", "nonparallel_same")
    first = inputs.variant_sides(config)
    assert inputs.variant_sides(config) == first
    assert 2900 <= len(first.original) <= 3000 and 2900 <= len(first.derived) <= 3000  # smoke: at most 3000 a side
    config.corpus.split_seed = 1
    assert keys(inputs.variant_sides(config).original) != keys(first.original)
    config.corpus.split_seed = 0
    texts, derived = inputs.load_texts(config)
    assert texts == {"en": first.original} and derived == first.derived

    word_level = bilingual("lang=en,transform=inv@word,smoke", "nonparallel_diff")
    sides = inputs.variant_sides(word_level)
    _, derived = inputs.load_texts(word_level)  # the word stage is applied to the given derived text
    assert [d.split() for d in derived] == [s.split()[::-1] for s in sides.derived]


def test_the_protocol_selects_the_variant_for_both_models(data_dir, tmp_path):
    config = runpy.run_path(str(DESHPANDE))["get_config"](
        "transform=translit,corpus=nonparallel_diff,tasks=pos,crosslingual=false,smoke")
    steps = {s.name: s for s in protocol.build_plan(config, tmp_path)}
    bi, mono = steps["pretrain/bilingual"].config, steps["pretrain/monolingual"].config
    assert bi.corpus.variant == mono.corpus.variant == "nonparallel_diff"
    assert inputs.load_texts(mono) == (inputs.load_texts(bi)[0], None)  # the twin reads the same original half
    assert "nonparallel_diff: half of sources:wikiann+squad:en + sources:ud+raw:en" in steps["pretrain/bilingual"].note
    for name in ("evaluate/pos/BZ-s42", "evaluate/pos/MZ-s42"):
        assert steps[name].config.corpus == "nonparallel_diff"  # rows name the variant


@pytest.mark.parametrize("change, message", [
    (lambda c: setattr(c.corpus, "variant", "nonparallel"), "corpus.variant: 'nonparallel' is not a corpus variant"),
    (lambda c: setattr(c.corpus.same_domain, "en", "wikiann+wiki"), r"unknown source name\(s\) \['wiki'\]"),
    (lambda c: setattr(c.corpus, "derived_source", "lang:{lang}"), "both give the derived side"),
    (lambda c: setattr(c.data, "transform", "translit+syntax:fr"), "reorders gold UD trees"),
])
def test_bad_variant_settings_are_config_errors(data_dir, change, message):
    config = bilingual("lang=en,transform=translit,smoke", "nonparallel_same")
    change(config)
    with pytest.raises(ConfigError, match=message):
        inputs.load_texts(config)
    deshpande = runpy.run_path(str(DESHPANDE))["get_config"]
    with pytest.raises(ConfigError, match="^corpus: 'nonparallel-same' is not a corpus variant"):
        protocol.build_plan(deshpande("corpus=nonparallel-same,crosslingual=false"), "/nonexistent")
