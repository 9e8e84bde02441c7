"""Readers on the real data (counts from shared/data/MANIFEST.md) and on corrupted copies of real files."""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import zlib

import pytest

from xlt_jax.data.readers.conllu import read_conllu
from xlt_jax.data.readers.muse import read_muse
from xlt_jax.data.readers.nli import NLI_LABELS, read_sick, read_xnli
from xlt_jax.data.readers.squad import read_squad
from xlt_jax.data.readers.tagging import NER_TAGS, UPOS_TAGS, read_udpos_tsv, read_wikiann
from xlt_jax.data.readers.tatoeba import read_tatoeba
from xlt_jax.data.readers.text import read_lines
from xlt_jax.errors import ConfigError, DataFormatError

SICK = "xnli/english_nli/SICK.txt.gz"
XGLUE_LABELS = "xnli/test_labels_from_xglue_de.txt"


def _raw_lines(path: pathlib.Path) -> list[str]:
    """Lines of a real file as stored (gzip-decoded, line ends kept), read without the code under test."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return f.readlines()


def _write_gz(path: pathlib.Path, lines: list[str]) -> pathlib.Path:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        f.writelines(lines)
    return path


def _tab_replaced(lines: list[str], lineno: int, new_line: str) -> list[str]:
    """Copy of `lines` with 1-based line `lineno` replaced."""
    lines = list(lines)
    lines[lineno - 1] = new_line
    return lines


def _raises_at(path: pathlib.Path, line: int | None, call) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        call()
    assert info.value.path == str(path)
    assert info.value.line == line
    assert str(path) in str(info.value)
    return info.value


# ---------------------------------------------------------------- token/tag files


def test_udpos_dev_en_counts_tags_and_last_sentence_without_final_blank(data_dir):
    path = data_dir / "ud/xtreme_udpos/dev-en.tsv.gz"
    sentences = list(read_udpos_tsv(path))
    assert len(sentences) == 3974
    assert sum(len(s.tokens) for s in sentences) == 62632
    assert all(s.tags is not None and len(s.tags) == len(s.tokens) for s in sentences)
    assert {t for s in sentences for t in s.tags} <= set(UPOS_TAGS)
    raw = _raw_lines(path)
    assert raw[-1].strip()  # this convention has no blank line after the last sentence ...
    last_block = "".join(raw).rstrip("\n").split("\n\n")[-1].split("\n")
    # ... and the last sentence must still come out, complete.
    assert sentences[-1].tokens == [line.split("\t")[0] for line in last_block]
    assert sentences[-1].tags == [line.split("\t")[1] for line in last_block]


def test_wikiann_en_dev_blank_after_every_sentence_and_prefix_cut_at_first_colon(data_dir):
    path = data_dir / "wikiann/en/dev.tsv.gz"
    sentences = list(read_wikiann(path))
    assert len(sentences) == 10000  # a final blank line must not add an empty sentence
    assert all(s.tokens for s in sentences)
    tokens = [t for s in sentences for t in s.tokens]
    assert len(tokens) == 80536
    assert {t for s in sentences for t in s.tags} == set(NER_TAGS)
    raw = _raw_lines(path)
    assert raw[-1] == "\n" and raw[-2].strip()
    # Real tokens that are or contain a colon: `en::`, `en:2:38`, `en::See` (lines 309, 3372, 3972).
    token_lines = [line.rstrip("\n") for line in raw if line.strip()]
    for raw_line, expected in (("en::\tO", ":"), ("en:2:38\tO", "2:38"), ("en::See\tO", ":See")):
        assert tokens[token_lines.index(raw_line)] == expected
    assert not any(t.startswith("en:") for t in tokens if t != ":")


def test_wikiann_fr_unprefixed_keeps_colon_tokens_and_untagged_test_gives_none(data_dir):
    dev = list(read_wikiann(data_dir / "wikiann/fr/dev.tsv.gz"))
    assert len(dev) == 10000 and sum(len(s.tokens) for s in dev) == 68220
    dev_tokens = {t for s in dev for t in s.tokens}
    assert {"1:10", "3:43", "03:41"} <= dev_tokens  # no `lang:` prefix here, so nothing may be cut
    test = list(read_wikiann(data_dir / "wikiann/fr/test.tsv.gz"))
    assert len(test) == 10000 and sum(len(s.tokens) for s in test) == 68754
    assert all(s.tags is None for s in test)
    assert "7:24" in {t for s in test for t in s.tokens}


def test_tagging_wrong_column_count_is_an_error_at_that_line(data_dir, tmp_path):
    raw = _raw_lines(data_dir / "ud/xtreme_udpos/dev-ar.tsv.gz")
    lineno = next(i for i, line in enumerate(raw, 1) if i > 500 and line.strip())
    three = _write_gz(tmp_path / "dev-ar.tsv.gz", _tab_replaced(raw, lineno, raw[lineno - 1][:-1] + "\tX\n"))
    err = _raises_at(three, lineno, lambda: list(read_udpos_tsv(three)))
    assert "got 3" in str(err)

    raw = _raw_lines(data_dir / "wikiann/hi/dev.tsv.gz")
    lineno = next(i for i, line in enumerate(raw, 1) if i > 300 and line.strip())
    one = _write_gz(
        tmp_path / "dev.tsv.gz", _tab_replaced(raw, lineno, raw[lineno - 1].split("\t")[0] + "\n")
    )
    err = _raises_at(one, lineno, lambda: list(read_wikiann(one)))
    assert "got 1" in str(err)


def test_tagging_empty_token_unknown_tag_and_missing_prefix(data_dir, tmp_path):
    raw = _raw_lines(data_dir / "wikiann/hi/dev.tsv.gz")
    lineno = next(i for i, line in enumerate(raw, 1) if i > 100 and line.strip())
    tag = raw[lineno - 1].split("\t")[1]
    cases = {
        "empty token": "hi:\t" + tag,
        "unknown tag": "hi:x\tB-MISC\n",
        "lacks the language prefix": "x\t" + tag,
    }
    for i, (message, bad_line) in enumerate(cases.items()):
        path = _write_gz(tmp_path / f"case{i}.tsv.gz", _tab_replaced(raw, lineno, bad_line))
        assert message in str(_raises_at(path, lineno, lambda path=path: list(read_wikiann(path))))


def test_truncated_gzip_names_file_and_first_unreadable_line(data_dir, tmp_path):
    data = (data_dir / "wikiann/hi/dev.tsv.gz").read_bytes()[:9000]
    complete_lines = zlib.decompressobj(wbits=31).decompress(data).count(b"\n")
    path = tmp_path / "dev.tsv.gz"
    path.write_bytes(data)
    err = _raises_at(path, complete_lines + 1, lambda: list(read_wikiann(path)))
    assert "truncated" in str(err)


def test_undecodable_bytes_name_file_and_line(data_dir, tmp_path):
    raw = _raw_lines(data_dir / "ud/xtreme_udpos/dev-hi.tsv.gz")
    lineno = 777
    path = tmp_path / "dev-hi.tsv.gz"
    with gzip.open(path, "wb") as f:
        for i, line in enumerate(raw, 1):
            encoded = line.encode("utf-8")
            f.write(encoded[:1] + b"\xff" + encoded[1:] if i == lineno else encoded)
    err = _raises_at(path, lineno, lambda: list(read_udpos_tsv(path)))
    assert "UTF-8" in str(err)


# ---------------------------------------------------------------- NLI


def test_xnli_dev_en_crlf_stripped_and_balanced(data_dir):
    path = data_dir / "xnli/dev-en.tsv.gz"
    assert _raw_lines(path)[0].endswith("\r\n")
    examples = read_xnli(path)
    assert len(examples) == 2490
    assert collections.Counter(e.label for e in examples) == dict.fromkeys(NLI_LABELS, 830)
    assert not any("\r" in e.premise + e.hypothesis + e.label for e in examples)


def test_xnli_test_without_labels_and_with_xglue_labels(data_dir):
    assert {e.label for e in read_xnli(data_dir / "xnli/test-fr.tsv.gz")} == {None}
    labelled = read_xnli(data_dir / "xnli/test-de.tsv.gz", data_dir / XGLUE_LABELS)
    assert len(labelled) == 5010
    assert collections.Counter(e.label for e in labelled) == dict.fromkeys(NLI_LABELS, 1670)
    # XGLUE's own labelled copy of the German test set must give the very same examples.
    xglue = read_xnli(data_dir / "xnli/xglue_de_test_labeled.tsv.gz")
    assert xglue == labelled


def test_xnli_label_errors(data_dir, tmp_path):
    raw_labels = (data_dir / XGLUE_LABELS).read_text(encoding="utf-8").splitlines(keepends=True)
    short = tmp_path / "labels.txt"
    short.write_text("".join(raw_labels[:-10]), encoding="utf-8")
    test_path = data_dir / "xnli/test-en.tsv.gz"
    err = _raises_at(test_path, 5001, lambda: read_xnli(test_path, short))  # the first row without a label
    assert str(short) in str(err) and "5000" in str(err) and "5010" in str(err)
    long = tmp_path / "long_labels.txt"
    long.write_text("".join(raw_labels + raw_labels[:1]), encoding="utf-8")
    _raises_at(long, 5011, lambda: read_xnli(test_path, long))

    # Labels that contradict the rows' own labels (dev-en is not in XGLUE's order) name both files.
    dev = data_dir / "xnli/dev-en.tsv.gz"
    dev_labels = tmp_path / "dev_labels.txt"
    dev_labels.write_text("".join(raw_labels[:2490]), encoding="utf-8")
    first_clash = next(
        i
        for i, (e, lab) in enumerate(zip(read_xnli(dev), raw_labels, strict=False), 1)
        if e.label != lab.strip()
    )
    err = _raises_at(dev_labels, first_clash, lambda: read_xnli(dev, dev_labels))
    assert f"{dev}:{first_clash}" in str(err)

    raw = _raw_lines(dev)
    bad = _write_gz(
        tmp_path / "dev-en.tsv.gz", _tab_replaced(raw, 42, raw[41].rsplit("\t", 1)[0] + "\tmaybe\r\n")
    )
    assert "unknown label 'maybe'" in str(_raises_at(bad, 42, lambda: read_xnli(bad)))
    bad = _write_gz(tmp_path / "dev-en2.tsv.gz", _tab_replaced(raw, 7, raw[6].split("\t")[0] + "\r\n"))
    assert "got 1" in str(_raises_at(bad, 7, lambda: read_xnli(bad)))


def test_sick_splits_and_lowercased_labels(data_dir):
    train = read_sick(data_dir / SICK)
    assert len(train) == 4439
    assert collections.Counter(e.label for e in train) == {
        "neutral": 2524,
        "entailment": 1274,
        "contradiction": 641,
    }
    assert train[0].premise.startswith("A group of kids is playing in a yard")
    assert len(read_sick(data_dir / SICK, split="TRIAL")) == 495
    assert len(read_sick(data_dir / SICK, split="test")) == 4906
    with pytest.raises(ConfigError, match="split"):
        read_sick(data_dir / SICK, split="dev")


def test_sick_bad_label_and_column_count(data_dir, tmp_path):
    raw = _raw_lines(data_dir / SICK)
    lineno = next(i for i, line in enumerate(raw, 1) if i > 50 and line.rstrip("\r\n").endswith("\tTRAIN"))
    cols = raw[lineno - 1].split("\t")
    cols[3] = "UNKNOWN"
    path = _write_gz(tmp_path / "SICK.txt.gz", _tab_replaced(raw, lineno, "\t".join(cols)))
    assert "unknown label 'unknown'" in str(_raises_at(path, lineno, lambda: read_sick(path)))
    path = _write_gz(tmp_path / "SICK2.txt.gz", _tab_replaced(raw, lineno, "\t".join(cols[:5]) + "\r\n"))
    assert "got 5" in str(_raises_at(path, lineno, lambda: read_sick(path)))


# ---------------------------------------------------------------- SQuAD / XQuAD


def test_xquad_and_squad_dev_counts_and_answer_offsets(data_dir):
    xquad = read_squad(data_dir / "xquad/xquad.en.json.gz")
    assert len(xquad) == 1190 and len({e.id for e in xquad}) == 1190
    assert len({e.title for e in xquad}) == 48 and len({e.context for e in xquad}) == 240
    squad = read_squad(data_dir / "squad/dev-v1.1.json.gz")
    assert len(squad) == 10570
    assert max(len(e.answers) for e in squad) > 1  # dev questions carry several references
    for e in squad[::97]:
        assert all(e.context[start : start + len(text)] == text for text, start in e.answers)


def _xquad_document(data_dir) -> dict:
    with gzip.open(data_dir / "xquad/xquad.en.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


def test_squad_missing_field_and_wrong_offset_name_json_path_and_question_id(data_dir, tmp_path):
    document = _xquad_document(data_dir)
    qa = document["data"][5]["paragraphs"][2]["qas"][1]
    del qa["answers"]
    path = tmp_path / "missing.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    err = str(_raises_at(path, None, lambda: read_squad(path)))
    assert "missing field" in err and "data[5].paragraphs[2].qas[1]" in err and qa["id"] in err

    document = _xquad_document(data_dir)
    qa = document["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["answer_start"] += 1
    path = tmp_path / "offset.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    err = str(_raises_at(path, None, lambda: read_squad(path)))
    assert "answer_start" in err and qa["id"] in err and "data[0].paragraphs[0].qas[0]" in err


def test_invalid_json_names_file_and_line(data_dir, tmp_path):
    raw = _raw_lines(data_dir / "xquad/xquad.en.json.gz")  # pretty-printed: 13,345 lines
    path = _write_gz(tmp_path / "cut.json.gz", raw[:5000] + [raw[5000][:12]])
    err = _raises_at(path, 5001, lambda: read_squad(path))
    assert "invalid JSON" in str(err)


# ---------------------------------------------------------------- Tatoeba, MUSE, text


def test_tatoeba_fra_pairs_and_misalignment(data_dir, tmp_path):
    fra, eng = data_dir / "tatoeba/tatoeba.fra-eng.fra.gz", data_dir / "tatoeba/tatoeba.fra-eng.eng.gz"
    pairs = read_tatoeba(fra, eng)
    assert len(pairs) == 1000
    assert pairs[0] == (
        "Au commencement, Dieu créa le ciel et la terre.",
        "In the beginning God created the heaven and the earth.",
    )
    short_eng = _write_gz(tmp_path / "eng.gz", _raw_lines(eng)[:-3])
    err = _raises_at(fra, 998, lambda: read_tatoeba(fra, short_eng))
    assert str(short_eng) in str(err)


def test_muse_hunalign_order_is_swapped_back_and_bad_line_is_named(data_dir, tmp_path):
    path = data_dir / "dictionaries/muse_full/en-hi.dict.gz"
    pairs = read_muse(path)
    assert len(pairs) == 38221
    assert ("and", "और") in pairs and ("और", "and") not in pairs
    raw = _raw_lines(path)
    bad = _write_gz(tmp_path / "en-hi.dict.gz", _tab_replaced(raw, 123, raw[122].replace(" @ ", " ")))
    assert "separator" in str(_raises_at(bad, 123, lambda: read_muse(bad)))


def test_read_lines_skips_blank_lines(data_dir, tmp_path):
    path = data_dir / "raw/lingua_leipzig_sample/en.sentences.txt.gz"
    lines = list(read_lines(path))
    assert len(lines) == 1000 and all(line.strip() for line in lines)
    raw = _raw_lines(path)
    with_blanks = _write_gz(tmp_path / "en.txt.gz", raw[:3] + ["\n", "  \r\n"] + raw[3:10])
    assert list(read_lines(with_blanks)) == lines[:10]


# ---------------------------------------------------------------- hostile input found by fuzzing (test_fuzz_readers)


READERS = {
    "conllu": lambda p: list(read_conllu(p)),
    "udpos": lambda p: list(read_udpos_tsv(p)),
    "wikiann": lambda p: list(read_wikiann(p)),
    "xnli": read_xnli,
    "sick": read_sick,
    "squad": read_squad,
    "muse": read_muse,
    "text": lambda p: list(read_lines(p)),
    "tatoeba": lambda p: read_tatoeba(p, p),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("content", [b"", b"\n\n", b" \r\n\t\n"])
def test_empty_file_is_an_error_not_an_empty_dataset(tmp_path, reader, content):
    """Fuzz case `truncate@0`: readers returned no examples from an empty file, without error.

    (Readers that check the first line, e.g. for its columns, may report that instead of the emptiness.)
    """
    for path in (tmp_path / "data.txt", tmp_path / "data.txt.gz"):
        path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
        _raises_at(path, 1, lambda path=path: READERS[reader](path))


def test_nul_bytes_and_utf16_are_errors(data_dir, tmp_path):
    """Fuzz case `nul@0x1` on SICK: a NUL byte passed into the data (in a token, a sentence, a header)."""
    raw = _raw_lines(data_dir / SICK)[:20]
    path = tmp_path / "sick.txt"
    path.write_bytes(("".join(raw[:7]) + "\0" + "".join(raw[7:])).encode("utf-8"))
    assert "NUL" in str(_raises_at(path, 8, lambda: read_sick(path)))
    utf16 = tmp_path / "fr.txt"  # UTF-16 without BOM: ASCII letters with NULs between them
    utf16.write_bytes("".join(_raw_lines(data_dir / "raw/lingua_leipzig_sample/en.sentences.txt.gz")[:5])
                      .encode("utf-16-le"))
    assert "UTF-16" in str(_raises_at(utf16, 1, lambda: list(read_lines(utf16))))


def test_carriage_return_line_ends_are_an_error(data_dir, tmp_path):
    """CR-only line ends made a whole text file one 'sentence'."""
    raw = _raw_lines(data_dir / "raw/lingua_leipzig_sample/en.sentences.txt.gz")[:5]
    path = tmp_path / "cr.txt"
    path.write_bytes("".join(raw).replace("\n", "\r").encode("utf-8"))
    assert "carriage return" in str(_raises_at(path, 1, lambda: list(read_lines(path))))


@pytest.mark.parametrize("damage", ["deep", "digits"])
def test_json_too_deep_or_with_huge_numbers_is_a_data_error(data_dir, tmp_path, damage):
    """Fuzz case `huge_run` (`[` x 10,000 at byte 0): RecursionError escaped; 5,000 digits: ValueError."""
    text = json.dumps(_xquad_document(data_dir))
    if damage == "deep":
        text = "[" * 10_000 + text
    else:
        text = text.replace('"answer_start": ', '"answer_start": ' + "9" * 5000, 1)
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    assert "invalid JSON" in str(_raises_at(path, None, lambda: read_squad(path)))


def test_utf8_byte_order_mark_is_not_part_of_the_text(data_dir, tmp_path):
    """Fuzz case `encoding=utf-8-sig`: the BOM became part of the first token / word / premise."""
    raw = _raw_lines(data_dir / "ud/xtreme_udpos/dev-en.tsv.gz")[:40]
    plain, marked = tmp_path / "plain.tsv", tmp_path / "marked.tsv.gz"
    plain.write_text("".join(raw), encoding="utf-8")
    marked.write_bytes(gzip.compress("".join(raw).encode("utf-8-sig")))
    assert list(read_udpos_tsv(marked)) == list(read_udpos_tsv(plain))
    assert next(read_udpos_tsv(marked)).tokens[0] == raw[0].split("\t")[0]


def test_empty_answer_text_is_an_error(data_dir, tmp_path):
    """Fuzz case (test_squad_structure) `set (..., 'qas', 23, 'answers', 2, 'text')=''` was accepted: an empty
    text matches at any answer_start, even past the end of the context."""
    document = _xquad_document(data_dir)
    document["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(text="", answer_start=10**6)
    path = tmp_path / "empty_answer.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    assert "empty answer" in str(_raises_at(path, None, lambda: read_squad(path)))
