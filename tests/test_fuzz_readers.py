"""Every dataset reader fuzzed with damaged copies of real data slices (see `fuzz_helpers`).

`make test` runs a deterministic sample (profile `xlt-sample`); `make fuzz` runs the same tests with the
`fuzz` profile (`--hypothesis-profile=fuzz`, thousands of cases per reader).
"""

from __future__ import annotations

import functools
import gzip
import json
import pathlib
import re

import pytest
from fuzz_helpers import apply, check_file_case, gzip_damage, json_mutation, mutations, profile, run_reader
from hypothesis import given
from hypothesis import strategies as st

from xlt_jax.data import paths
from xlt_jax.data.readers.conllu import read_conllu
from xlt_jax.data.readers.muse import read_muse
from xlt_jax.data.readers.nli import read_sick, read_xnli
from xlt_jax.data.readers.squad import read_squad
from xlt_jax.data.readers.tagging import read_udpos_tsv, read_wikiann
from xlt_jax.data.readers.tatoeba import read_tatoeba
from xlt_jax.data.readers.text import read_lines

pytestmark = pytest.mark.fuzz
FUZZ = profile()


def _real(rel: str) -> bytes:
    path = paths.data_dir() / rel
    return gzip.decompress(path.read_bytes()) if rel.endswith(".gz") else path.read_bytes()


@functools.cache
def blocks(rel: str, count: int, *, final_blank: bool, extra: str = "") -> bytes:
    """The first `count` blank-line-separated blocks of a real file (plus the first block matching `extra`)."""
    text = _real(rel).decode("utf-8")
    all_blocks = text.strip("\n").split("\n\n")
    chosen = all_blocks[:count]
    if extra:
        chosen.append(next(b for b in all_blocks if re.search(extra, b, re.M)))
    return ("\n\n".join(chosen) + ("\n\n" if final_blank else "")).encode("utf-8")


@functools.cache
def head(rel: str, lines: int) -> bytes:
    """The first `lines` lines of a real file, line ends as stored."""
    return b"".join(_real(rel).splitlines(keepends=True)[:lines])


@functools.cache
def squad_slice(rel: str, paragraphs: int, indent: int | None) -> bytes:
    """The first article of a real SQuAD-format file, cut to its first `paragraphs` paragraphs."""
    document = json.loads(_real(rel))
    article = document["data"][0]
    document["data"] = [{**article, "paragraphs": article["paragraphs"][:paragraphs]}]
    return json.dumps(document, indent=indent, ensure_ascii=indent is None).encode("utf-8")


CONLLU = [("ud/en_ewt/dev.conllu.gz", 20, r"^\d+\.\d+\t"), ("ud/fr_sequoia/dev.conllu.gz", 6, r"^\d+-\d+\t")]
UDPOS = ["ud/xtreme_udpos/dev-en.tsv.gz", "ud/xtreme_udpos/test-ar.tsv.gz"]
WIKIANN = [("wikiann/en/dev.tsv.gz", True), ("wikiann/fr/train.tsv.gz", False), ("wikiann/fr/test.tsv.gz", False)]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> pathlib.Path:
    """A directory for the intact files a case reads besides the damaged one (module-scoped: hypothesis)."""
    return tmp_path_factory.mktemp("fuzz")


def _write(directory: pathlib.Path, data: bytes, name: str = "slice") -> pathlib.Path:
    path = directory / name
    path.write_bytes(data)
    return path


def test_every_slice_is_a_valid_file(data_dir, scratch):
    """The fuzz starts from valid files: each intact slice parses completely."""
    for rel, count, extra in CONLLU:
        assert len(list(read_conllu(_write(scratch, blocks(rel, count, final_blank=True, extra=extra))))) == count + 1
    assert all(len(list(read_udpos_tsv(_write(scratch, blocks(r, 25, final_blank=False))))) == 25 for r in UDPOS)
    for rel, final in WIKIANN:
        assert len(list(read_wikiann(_write(scratch, blocks(rel, 25, final_blank=final))))) == 25
    assert len(read_xnli(_write(scratch, head("xnli/dev-en.tsv.gz", 30)))) == 30
    assert len(read_sick(_write(scratch, head("xnli/english_nli/SICK.txt.gz", 100)), "TEST")) == 53
    assert len(read_squad(_write(scratch, squad_slice("xquad/xquad.en.json.gz", 2, 2)))) > 2
    assert len(read_muse(_write(scratch, head("dictionaries/muse_full/en-fr.dict.gz", 80)))) == 80
    assert len(list(read_lines(_write(scratch, head("raw/lingua_leipzig_sample/fr.sentences.txt.gz", 40))))) == 40




# ------------------------------------------------------------------------------------------- line formats


def conllu_agrees(content: bytes, sentences: list[dict]) -> None:
    """A parsed treebank reproduces the FORM, UPOS, HEAD and DEPREL text of every word line of the file."""
    lines = [line.rstrip("\r").split("\t") for line in content.decode("utf-8").split("\n")]
    words = [(c[1], c[3], c[6], c[7]) for c in lines if len(c) == 10 and c[0].isdecimal()]
    parsed = [w for s in sentences for w in zip(s["forms"], s["upos"], map(str, s["heads"]), s["deprels"], strict=True)]
    assert parsed == words


@FUZZ
@given(source=st.sampled_from(CONLLU), steps=mutations(), damage=gzip_damage())
def test_conllu(data_dir, source, steps, damage):
    rel, count, extra = source
    check_file_case(read_conllu, apply(blocks(rel, count, final_blank=True, extra=extra), steps), ".conllu",
                    damage[1], agrees=conllu_agrees)


@FUZZ
@given(rel=st.sampled_from(UDPOS), steps=mutations(), damage=gzip_damage())
def test_udpos_tsv(data_dir, rel, steps, damage):
    check_file_case(read_udpos_tsv, apply(blocks(rel, 25, final_blank=False), steps), ".tsv", damage[1])


@FUZZ
@given(source=st.sampled_from(WIKIANN), steps=mutations(), damage=gzip_damage())
def test_wikiann(data_dir, source, steps, damage):
    rel, final = source
    check_file_case(read_wikiann, apply(blocks(rel, 25, final_blank=final), steps), ".tsv", damage[1])


@FUZZ
@given(rel=st.sampled_from(["xnli/dev-en.tsv.gz", "xnli/test-fr.tsv.gz"]), steps=mutations(), damage=gzip_damage())
def test_xnli(data_dir, rel, steps, damage):
    check_file_case(read_xnli, apply(head(rel, 30), steps), ".tsv", damage[1])


@FUZZ
@given(steps=mutations(), damage=gzip_damage())
def test_xnli_test_labels(data_dir, scratch, steps, damage):
    """The labels file is damaged; the XNLI rows it labels stay intact."""
    rows = _write(scratch, head("xnli/test-de.tsv.gz", 30), "rows.tsv")
    labels = apply(head("xnli/test_labels_from_xglue_de.txt", 30), steps)
    check_file_case(lambda p, r: read_xnli(r, p), labels, ".txt", damage[1], companions=[rows])


@FUZZ
@given(split=st.sampled_from(["TRAIN", "TRIAL", "TEST"]), steps=mutations(), damage=gzip_damage())
def test_sick(data_dir, split, steps, damage):
    check_file_case(lambda p: read_sick(p, split), apply(head("xnli/english_nli/SICK.txt.gz", 100), steps), ".txt",
                    damage[1])


@FUZZ
@given(steps=mutations(), damage=gzip_damage())
def test_muse(data_dir, steps, damage):
    check_file_case(read_muse, apply(head("dictionaries/muse_full/en-fr.dict.gz", 80), steps), ".dict", damage[1])


@FUZZ
@given(steps=mutations(), damage=gzip_damage())
def test_plain_text(data_dir, steps, damage):
    check_file_case(read_lines, apply(head("raw/lingua_leipzig_sample/fr.sentences.txt.gz", 40), steps), ".txt",
                    damage[1])


@FUZZ
@given(side=st.sampled_from(["fra", "eng", "both"]), steps=mutations(), damage=gzip_damage())
def test_tatoeba(data_dir, scratch, side, steps, damage):
    """One side damaged (the other intact), or both sides damaged the same way."""
    fra, eng = (head(f"tatoeba/tatoeba.fra-eng.{s}.gz", 40) for s in ("fra", "eng"))
    other = _write(scratch, apply(eng, steps) if side == "both" else eng if side == "fra" else fra, "other.txt")
    damaged = apply(eng if side == "eng" else fra, steps)
    read = (lambda p, o: read_tatoeba(o, p)) if side == "eng" else read_tatoeba
    check_file_case(read, damaged, ".txt", damage[1], companions=[other])


# ------------------------------------------------------------------------------------------- JSON


SQUAD = [("xquad/xquad.en.json.gz", 2, 2), ("squad/dev-v1.1.json.gz", 2, None)]
SQUAD_KEYS = ("data", "field", "JSON", "answer_start")


@FUZZ
@given(source=st.sampled_from(SQUAD), steps=mutations(), damage=gzip_damage())
def test_squad_bytes(data_dir, source, steps, damage):
    check_file_case(read_squad, apply(squad_slice(*source), steps), ".json", damage[1], line_required=False,
                    key_words=SQUAD_KEYS)


@FUZZ
@given(source=st.sampled_from(SQUAD), data=st.data())
def test_squad_structure(data_dir, scratch, source, data):
    """Keys deleted and values replaced by arbitrary JSON: an error names the JSON path."""
    _, document = data.draw(json_mutation(json.loads(squad_slice(*source))))
    path = _write(scratch, json.dumps(document).encode(), "squad.json")
    outcome = run_reader(read_squad, [path], line_required=False, key_words=SQUAD_KEYS)
    for example in outcome.value or ():  # what QA training and scoring rely on
        assert all(text and example["context"][start:].startswith(text) for text, start in example["answers"])
