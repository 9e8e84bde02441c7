"""Sub-word overlap (`python -m xlt_jax.align overlap`): the figures the construction of a derived language fixes
(translit 0%, inv/perm 100%), the formulas on hand-counted vectors, and the binary on real pretraining text."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xlt_jax import align, results
from xlt_jax.analysis import overlap
from xlt_jax.analysis.overlap import Side
from xlt_jax.data import corpora
from xlt_jax.errors import ConfigError, TransformError


@pytest.fixture(scope="module")
def english(data_dir) -> list[str]:
    return corpora.pretraining_sentences("en")[:400]


def side_counts(tokenizer, sentences, transform: str) -> np.ndarray:
    ids = overlap.side_ids(Side("en", transform), tokenizer, sentences, seed=0)
    return overlap.type_counts(ids, tokenizer.layout(copies=2))


@pytest.mark.parametrize(("transform", "want"), [
    ("none", 100.0), ("inv", 100.0), ("perm", 100.0), ("translit", 0.0), ("translit+inv", 0.0), ("translit+perm", 0.0),
])  # fmt: skip
def test_derived_languages_have_the_overlap_their_construction_fixes(tiny_tokenizer, english, transform, want):
    original = side_counts(tiny_tokenizer, english, "none")
    derived = side_counts(tiny_tokenizer, english, transform)
    figures = overlap.overlap_figures(original, derived)
    assert figures["type_overlap"] == figures["token_overlap"] == figures["weighted_jaccard"] == want
    assert figures["types_a"] == figures["types_b"] > 500  # a bijection of the ids: as many types on each side
    assert figures["tokens_a"] == figures["tokens_b"]


def test_partial_transliteration_overlaps_in_between(tiny_tokenizer, english):
    original = side_counts(tiny_tokenizer, english, "none")
    figures = overlap.overlap_figures(original, side_counts(tiny_tokenizer, english, "translit[keep=0.5]"))
    # Half of the types stay: |kept| / (|kept| + 2·|moved|) ≈ 1/3 of the union.
    assert 25.0 < figures["type_overlap"] < 42.0 and 0.0 < figures["token_overlap"] < 100.0


def test_special_ids_are_not_types(tiny_tokenizer):
    layout = tiny_tokenizer.layout(copies=2)
    ids = np.array([0, 5, 2, 1, 3, 4, 5, layout.base_size + 3, layout.base_size + 7, 7])
    counts = overlap.type_counts(ids, layout)
    assert np.flatnonzero(counts).tolist() == [5, 7, layout.base_size + 7] and counts[5] == 2


def test_overlap_formulas_on_hand_counted_vectors():
    a = np.array([0, 0, 3, 1, 0, 2])  # types {2, 3, 5}, 6 tokens
    b = np.array([0, 0, 1, 0, 4, 2])  # types {2, 4, 5}, 7 tokens
    figures = overlap.overlap_figures(a, b)
    assert figures["type_overlap"] == pytest.approx(100 * 2 / 4)  # shared {2, 5} of {2, 3, 4, 5}
    assert figures["token_overlap"] == pytest.approx(100 * (3 + 2 + 1 + 2) / 13)
    assert figures["weighted_jaccard"] == pytest.approx(100 * 3 / 11)  # Σmin(1/7, 2/7) / Σmax = (3/7) / (11/7)
    assert figures["token_coverage_a"] == pytest.approx(100 * 5 / 6)
    assert figures["token_coverage_b"] == pytest.approx(100 * 3 / 7)
    with pytest.raises(ConfigError, match="no tokens"):
        overlap.overlap_figures(a, np.zeros_like(b))


def test_binary_appends_both_rows_and_ends_with_a_json_line(tiny_tokenizer, english, tmp_path, capsys):
    tokenizer_dir = tiny_tokenizer.save(tmp_path / "tok")
    argv = ["overlap", "en", "en:translit+inv", "--workdir", str(tmp_path / "out"), "--tokenizer", str(tokenizer_dir),
            "--max-sentences", "400"]  # fmt: skip
    align.main(argv)
    printed = capsys.readouterr().out.splitlines()
    assert json.loads(printed[-1]) | {"tokenizer": ""} == {
        "a": "en", "b": "en:translit+inv", "tokenizer": "", "type_overlap": 0.0, "token_overlap": 0.0,
        "weighted_jaccard": 0.0,
    }  # fmt: skip
    assert "type overlap     0.00%" in printed[1] and "token overlap    0.00%" in printed[2]
    rows = results.read_rows(results.results_path(tmp_path / "out"))
    assert [r.metric for r in rows] == ["subword_type_overlap", "subword_token_overlap"]
    for row in rows:
        assert (row.task, row.lang, row.train_lang, row.train_transform, row.eval_transform) == (
            "overlap", "en", "en", "none", "translit+inv")
        assert row.value == 0.0 and row.extra["sentences"] == [400, 400]
        assert row.extra["tokenizer"] == str(tokenizer_dir.resolve())
    assert rows[0].n_examples == rows[0].extra["types_union"] and rows[1].n_examples == 2 * rows[1].extra["tokens_a"]


def test_natural_pair_with_a_tokenizer_trained_on_both_is_deterministic(data_dir, tmp_path, capsys):
    def run(workdir: str) -> dict:
        align.main(["overlap", "en", "fr", "--workdir", workdir, "--max-sentences", "1500", "--vocab-size", "2000"])
        return json.loads(capsys.readouterr().out.splitlines()[-1])

    first, second = run(str(tmp_path / "a")), run(str(tmp_path / "b"))
    assert first == second and first["tokenizer"] == "spm-bpe-en+fr-V2000-n1500-seed0"
    # Some pieces (punctuation, digits, names, shared words) are both English and French; frequent ones weigh
    # more in the token overlap.
    assert 5.0 < first["type_overlap"] < 60.0 < first["token_overlap"] < 95.0
    saved = tmp_path / "a" / "overlap_tokenizers" / first["tokenizer"]
    assert (saved / "spm.model").read_bytes() == (tmp_path / "b" / "overlap_tokenizers" / first["tokenizer"] /
                                                   "spm.model").read_bytes()  # fmt: skip


def test_bad_sides_are_named(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="side 'EN'"):
        Side.parse("EN")
    with pytest.raises(TransformError, match="side 'en:foo': unknown transformation 'foo'"):
        Side.parse("en:foo")
    assert Side.parse("en:syntax:fr") == Side("en", "syntax:fr")
    with pytest.raises(SystemExit, match="no pretraining text for 'xx'"):
        align.main(["overlap", "en", "xx", "--workdir", str(tmp_path), "--max-sentences", "100"])
    with pytest.raises(SystemExit, match="no tokenizer model"):
        align.main(["overlap", "en", "fr", "--workdir", str(tmp_path), "--tokenizer", str(tmp_path / "none")])
