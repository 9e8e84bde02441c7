"""CoNLL-U reader on the real UD files: counts from MANIFEST.md, skipped lines, and malformed copies."""

from __future__ import annotations

import gzip
import pathlib

import numpy as np
import pytest

from xlt_jax.data.readers.conllu import Sentence, read_conllu, write_conllu
from xlt_jax.errors import DataFormatError

# (file, sentences, words) as listed in shared/data/MANIFEST.md
MANIFEST_COUNTS = [
    ("ud/en_ewt/dev.conllu.gz", 2001, 25147),
    ("ud/en_ewt/test.conllu.gz", 2077, 25094),
    ("ud/en_ewt/train.conllu.gz", 12544, 204577),
    ("ud/en_pud/test.conllu.gz", 1000, 21180),
    ("ud/fr_pud/test.conllu.gz", 1000, 24726),
    ("ud/hi_pud/test.conllu.gz", 1000, 23829),
    ("ud/ar_pud/test.conllu.gz", 1000, 20747),
    ("ud/fr_gsd/dev.conllu.gz", 1476, 35721),
    ("ud/fr_partut/train.conllu.gz", 803, 24107),
]


@pytest.fixture(scope="module")
def ewt_dev(data_dir) -> list[Sentence]:
    return list(read_conllu(data_dir / "ud/en_ewt/dev.conllu.gz"))


@pytest.mark.parametrize(("rel", "n_sentences", "n_words"), MANIFEST_COUNTS)
def test_counts_match_manifest(data_dir, rel, n_sentences, n_words):
    sentences = list(read_conllu(data_dir / rel))
    assert len(sentences) == n_sentences
    assert sum(len(s) for s in sentences) == n_words
    for s in sentences[:50]:
        assert s.heads.dtype == np.int32
        assert len(s.forms) == len(s.upos) == len(s.deprels) == len(s.heads)
        assert s.sent_id and s.text


def test_fields_of_first_sentence(ewt_dev):
    first = ewt_dev[0]
    assert first.sent_id == "weblog-blogspot.com_nominations_20041117172713_ENG_20041117_172713-0001"
    assert first.text == "From the AP comes this story :"
    assert first.forms == ["From", "the", "AP", "comes", "this", "story", ":"]
    assert first.upos == ["ADP", "DET", "PROPN", "VERB", "DET", "NOUN", "PUNCT"]
    assert first.heads.tolist() == [3, 3, 4, 0, 6, 4, 4]
    assert first.deprels == ["case", "det", "obl", "root", "det", "nsubj", "punct"]


def test_multiword_token_lines_are_skipped(ewt_dev):
    todays = next(s for s in ewt_dev if s.text.startswith("Today's incident proves"))
    assert todays.forms[:3] == ["Today", "'s", "incident"]  # the range line `1-2 Today's` is not a word
    assert todays.heads[:3].tolist() == [3, 1, 4]
    didnt = next(s for s in ewt_dev if "didn't" in s.text and "israelians" in s.text)
    assert "didn't" not in didnt.forms
    assert didnt.forms[-3:] == ["did", "n't", "."]


def test_empty_nodes_are_skipped(ewt_dev):
    # `8.1 write` is an enhanced-graph copy of word 5 with HEAD `_`; the basic tree must not see it.
    s = next(s for s in ewt_dev if s.text.startswith('"They can freely write anything they like'))
    assert s.forms[7:9] == ["like", "about"]
    assert s.forms.count("write") == 1
    assert s.heads.max() <= len(s)


def test_plain_and_gzip_read_identically(data_dir, tmp_path):
    src = data_dir / "ud/hi_pud/test.conllu.gz"
    plain = tmp_path / "test.conllu"
    plain.write_bytes(gzip.decompress(src.read_bytes()))
    _assert_same_sentences(list(read_conllu(src)), list(read_conllu(plain)))


def test_write_then_read_round_trips(ewt_dev, tmp_path):
    out = tmp_path / "copy.conllu.gz"
    assert write_conllu(ewt_dev, out) == len(ewt_dev)
    again = list(read_conllu(out))
    _assert_same_sentences(ewt_dev, again)


def _assert_same_sentences(expected: list[Sentence], actual: list[Sentence]) -> None:
    assert len(actual) == len(expected)
    for a, b in zip(expected, actual, strict=True):
        assert (a.sent_id, a.text, a.forms, a.upos, a.deprels) == (
            b.sent_id,
            b.text,
            b.forms,
            b.upos,
            b.deprels,
        )
        np.testing.assert_array_equal(a.heads, b.heads)


# ------------------------------------------------------------------------------------------------
# Malformed copies of a real file


@pytest.fixture(scope="module")
def ewt_lines(data_dir) -> list[str]:
    """The first ~60 sentences of EWT dev as lines (a real file slice, ends with its blank line)."""
    lines = gzip.decompress((data_dir / "ud/en_ewt/dev.conllu.gz").read_bytes()).decode().split("\n")
    blanks = [i for i, line in enumerate(lines) if line == ""]
    return lines[: blanks[59] + 1]


def _write(tmp_path: pathlib.Path, lines: list[str], name: str = "bad.conllu") -> pathlib.Path:
    path = tmp_path / name
    text = "\n".join(lines) + "\n"
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _token_line(lines: list[str], word_id: str, after: int = 1000) -> int:
    """0-based index of the first line at or after `after` whose ID column is `word_id`."""
    return next(i for i in range(after, len(lines)) if lines[i].split("\t", 1)[0] == word_id)


def _read_error(path: pathlib.Path) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        list(read_conllu(path))
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    return info.value


def test_slice_itself_is_valid(ewt_lines, tmp_path):
    assert len(list(read_conllu(_write(tmp_path, ewt_lines)))) == 60


def test_truncated_gzip_names_file_and_line(data_dir, tmp_path):
    data = (data_dir / "ud/en_ewt/dev.conllu.gz").read_bytes()
    path = tmp_path / "dev.conllu.gz"
    path.write_bytes(data[: len(data) // 2])
    err = _read_error(path)
    assert err.line is not None and err.line > 1000
    assert "truncated" in str(err)


@pytest.mark.parametrize("name", ["bad.conllu", "bad.conllu.gz"])
def test_wrong_column_count(ewt_lines, tmp_path, name):
    lines = list(ewt_lines)
    i = _token_line(lines, "3")
    lines[i] = "\t".join(lines[i].split("\t")[:9])
    err = _read_error(_write(tmp_path, lines, name))
    assert err.line == i + 1
    assert "10 tab-separated columns, got 9" in str(err)


@pytest.mark.parametrize(
    ("head", "message"),
    [("99", "HEAD 99 outside"), ("x", "HEAD 'x' is not an integer")]
    # Found by tests/test_fuzz_readers.py: '²' escaped as RuntimeError (StopIteration in the generator); int()
    # read '٠' (Arabic-Indic zero) as 0, and ' 2', '+2', '1_0' as numbers too.
    + [(h, f"HEAD {h!r} is not an integer") for h in ("²", "٠", " 2", "+2", "1_0", "-1")],
)
def test_bad_head(ewt_lines, tmp_path, head, message):
    lines = list(ewt_lines)
    i = _token_line(lines, "2")
    cols = lines[i].split("\t")
    cols[6] = head
    lines[i] = "\t".join(cols)
    err = _read_error(_write(tmp_path, lines))
    assert err.line == i + 1
    assert message in str(err)


def test_underscore_head_only_allowed_on_empty_nodes(ewt_lines, tmp_path):
    lines = list(ewt_lines)
    i = _token_line(lines, "4")
    cols = lines[i].split("\t")
    cols[6] = "_"
    lines[i] = "\t".join(cols)
    err = _read_error(_write(tmp_path, lines))
    assert err.line == i + 1


def test_head_cycle_is_rejected(ewt_lines, tmp_path):
    lines = list(ewt_lines)
    i = _token_line(lines, "1", after=0)  # first sentence: word 1 `From` <- 3 `AP` <- 4 `comes` (root)
    root = i + 3
    cols = lines[root].split("\t")
    assert cols[6] == "0"
    cols[6] = "3"
    lines[root] = "\t".join(cols)
    err = _read_error(_write(tmp_path, lines))
    assert err.line in {i + 3, i + 4}  # a word on the cycle 3 <-> 4
    assert "cycle" in str(err)


def test_id_out_of_sequence(ewt_lines, tmp_path):
    lines = list(ewt_lines)
    i = _token_line(lines, "5")
    del lines[i - 1]  # drop word 4: word 5 now follows word 3
    err = _read_error(_write(tmp_path, lines))
    assert err.line == i  # the line that held word 5 moved up by one
    assert "out of sequence" in str(err)


def test_empty_form(ewt_lines, tmp_path):
    lines = list(ewt_lines)
    i = _token_line(lines, "2")
    cols = lines[i].split("\t")
    cols[1] = ""
    lines[i] = "\t".join(cols)
    err = _read_error(_write(tmp_path, lines))
    assert err.line == i + 1 and "empty FORM" in str(err)


def test_missing_final_blank_line(ewt_lines, tmp_path):
    lines = ewt_lines[:-1]  # the file now ends right after the last word line
    err = _read_error(_write(tmp_path, lines))
    assert err.line == len(lines)
    assert "ends inside the sentence" in str(err)


def test_comments_without_words(ewt_lines, tmp_path):
    lines = ["# sent_id = orphan", "", *ewt_lines]
    err = _read_error(_write(tmp_path, lines))
    assert err.line == 2
