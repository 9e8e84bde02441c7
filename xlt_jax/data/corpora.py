"""Where pretraining text for a language comes from: every text of the data directory, minus evaluation.

Pretraining sources of a language (those present in the data directory, in this order):

| source | files | unit |
|---|---|---|
| UD treebanks, train | `ud/<lang>_*/train.conllu.gz` | `# text` (forms joined by spaces if absent) |
| XTREME UD-POS, train | `ud/xtreme_udpos/train-<lang>.tsv.gz` | tokens joined by spaces |
| WikiANN, train | `wikiann/<lang>/train.tsv.gz` | tokens joined by spaces |
| SQuAD v1.1 (en) | `squad/{train,dev}-v1.1.json.gz` | context sentences (rough split, see below) |
| SICK TRAIN (en) | `xnli/english_nli/SICK.txt.gz` | sentence_A, sentence_B |
| raw text | `raw/*/<lang>.sentences.txt.gz` | lines (Leipzig sample) |

Evaluation text (excluded by default) is every split a task binary scores on: UD dev/test (incl. PUD),
XTREME UD-POS dev/test, WikiANN dev/test, XNLI dev/test, XQuAD contexts and questions, both Tatoeba
sides (for English every `*-eng.eng` side, since the derived-language protocol may use any of them) and
SICK TRIAL/TEST. Languages whose only text is evaluation data (the other XNLI/XQuAD languages) have no
pretraining text unless `exclude_eval=False`, which returns every text of the language, evaluation
splits included, unfiltered (for smoke runs and analyses only).

Matching ignores whitespace and zero-width characters (after NFC), so a tokenized copy of an
evaluation sentence (`do n't` in UD-POS, `don't` in UD text) is excluded too. The same key
deduplicates: the first occurrence wins, so raw-text forms beat tokenized ones. SQuAD paragraphs are
split into sentences with a punctuation regex because every other source is sentence level and
SentencePiece skips over-long lines; paragraphs XQuAD uses are dropped whole before splitting.

A syntax-derived language needs gold trees: `treebank_sentences(lang)` are the UD train trees minus
evaluation sentences and duplicates (source string `treebank:LANG`, their words joined by spaces), the
original side that both models of a syntax protocol pretrain on.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator

from xlt_jax.data import paths
from xlt_jax.data.readers.conllu import Sentence, read_conllu
from xlt_jax.data.readers.nli import read_sick, read_xnli
from xlt_jax.data.readers.squad import read_squad
from xlt_jax.data.readers.tagging import read_udpos_tsv, read_wikiann
from xlt_jax.data.readers.text import read_lines
from xlt_jax.data.readers.tfds import tfds_sentences
from xlt_jax.errors import ConfigError

# ISO 639-1 -> the ISO 639-3 code of the LASER Tatoeba files.
TATOEBA_CODES = {
    "ar": "ara", "bg": "bul", "de": "deu", "el": "ell", "en": "eng", "es": "spa", "fr": "fra", "hi": "hin",
    "ro": "ron", "ru": "rus", "sw": "swh", "th": "tha", "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn",
}  # fmt: skip
SOURCE_KINDS = ("text", "conllu", "tfds", "lang", "treebank", "sources")  # source strings, see `read_source`
# Names of `pretraining_sources` (the `sources:NAME+NAME:LANG` kind picks some of them, e.g. one domain).
SOURCE_NAMES = ("ud", "udpos", "wikiann", "squad", "sick", "raw")
_LANG_CODE = re.compile(r"[a-z]{2,3}")
# Zero-width characters XTREME strips from tokens; they must not make two copies of a sentence differ.
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
# Rough sentence end: terminal punctuation (Latin, Devanagari danda, Arabic question mark, CJK full stop),
# whitespace, then anything but a lower-case Latin letter (so "e.g. the" stays together).
_SENTENCE_END = re.compile(r"(?<=[.!?।؟。])\s+(?=[^\sa-z])")


def sentence_key(text: str) -> str:
    """Whitespace- and zero-width-insensitive identity of a sentence, for deduplication and exclusion."""
    if not text.isascii():  # the normalisations only matter (and cost) outside ASCII
        text = _ZERO_WIDTH.sub("", unicodedata.normalize("NFC", text))
    return "".join(text.split())


def split_sentences(paragraph: str) -> list[str]:
    """Rough punctuation-based sentence split (abbreviations followed by a capital do get split)."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(paragraph)) if s]


# -- readers of one file into sentences ------------------------------------------------------------


def conllu_sentences(path: str | os.PathLike) -> Iterator[str]:
    for sentence in read_conllu(path):
        yield sentence.text if sentence.text else " ".join(sentence.forms)


def _udpos_sentences(path: str | os.PathLike) -> Iterator[str]:
    return (" ".join(s.tokens) for s in read_udpos_tsv(path))


def _wikiann_sentences(path: str | os.PathLike) -> Iterator[str]:
    return (" ".join(s.tokens) for s in read_wikiann(path))


def _xnli_sentences(path: str | os.PathLike) -> Iterator[str]:
    for example in read_xnli(path):
        yield example.premise
        yield example.hypothesis


def _sick_sentences(path: str | os.PathLike, splits: tuple[str, ...]) -> Iterator[str]:
    for split in splits:
        for example in read_sick(path, split):
            yield example.premise
            yield example.hypothesis


def _squad_paragraphs(path: str | os.PathLike) -> Iterator[str]:
    """Distinct contexts in file order (the reader gives one example per question)."""
    seen: set[str] = set()
    for example in read_squad(path):
        if example.context not in seen:
            seen.add(example.context)
            yield example.context


def _xquad_text(path: str | os.PathLike) -> Iterator[str]:
    """Everything an XQuAD evaluation shows the model: contexts (whole and split) and questions."""
    contexts: dict[str, None] = {}
    for example in read_squad(path):
        contexts.setdefault(example.context)
        yield example.question
    for context in contexts:
        yield context
        yield from split_sentences(context)


# -- which files a language has -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Source:
    """One file of text for a language, and how to turn it into sentences."""

    name: str
    path: pathlib.Path
    read: Callable[[pathlib.Path], Iterable[str]]
    paragraphs: bool = False  # units are paragraphs: filtered whole, then split into sentences

    def sentences(self) -> Iterator[str]:
        return iter(self.read(self.path))


def _root(data_dir: str | os.PathLike | None) -> pathlib.Path:
    return pathlib.Path(data_dir).resolve() if data_dir is not None else paths.data_dir()


def _glob(root: pathlib.Path, pattern: str) -> list[pathlib.Path]:
    return sorted(root.glob(pattern))


def ud_treebanks(
    lang: str, splits: Iterable[str] = ("train", "dev", "test"), data_dir: str | os.PathLike | None = None
) -> list[pathlib.Path]:
    """CoNLL-U files with gold trees of `lang` (`ud/<lang>_<treebank>/<split>.conllu.gz`), treebanks sorted.

    PUD treebanks only have `test`; e.g. `ud_treebanks("hi", ("test",))` gives Hindi PUD, the tree
    source for Hindi head-direction statistics.
    """
    _check_code(lang)
    root = _root(data_dir)
    return [p for split in splits for p in _glob(root, f"ud/{lang}_*/{split}.conllu*")]


def ud_train_treebanks(lang: str, data_dir: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """Train-split CoNLL-U files of `lang` (empty for hi/ar in this data: only PUD test trees exist)."""
    return ud_treebanks(lang, ("train",), data_dir)


def pretraining_sources(lang: str, data_dir: str | os.PathLike | None = None) -> list[Source]:
    """Files whose text may be pretrained on, in the order their sentences are taken."""
    _check_code(lang)
    root = _root(data_dir)
    sources = [Source("ud", p, conllu_sentences) for p in ud_train_treebanks(lang, root)]
    sources += [
        Source("udpos", p, _udpos_sentences) for p in _glob(root, f"ud/xtreme_udpos/train-{lang}.tsv*")
    ]
    sources += [Source("wikiann", p, _wikiann_sentences) for p in _glob(root, f"wikiann/{lang}/train.tsv*")]
    if lang == "en":
        sources += [Source("squad", p, _squad_paragraphs, True) for p in _glob(root, "squad/*-v1.1.json*")]
        sick = _glob(root, "xnli/english_nli/SICK.txt*")
        sources += [Source("sick", p, functools.partial(_sick_sentences, splits=("TRAIN",))) for p in sick]
    sources += [Source("raw", p, read_lines) for p in _glob(root, f"raw/*/{lang}.sentences.txt*")]
    return sources


def evaluation_sources(lang: str, data_dir: str | os.PathLike | None = None) -> list[Source]:
    """Files holding the sentences some task binary evaluates on for `lang`."""
    _check_code(lang)
    root = _root(data_dir)
    sources = [Source("ud", p, conllu_sentences) for p in ud_treebanks(lang, ("dev", "test"), root)]
    for split in ("dev", "test"):
        sources += [
            Source("udpos", p, _udpos_sentences) for p in _glob(root, f"ud/xtreme_udpos/{split}-{lang}.tsv*")
        ]
        sources += [
            Source("wikiann", p, _wikiann_sentences) for p in _glob(root, f"wikiann/{lang}/{split}.tsv*")
        ]
        sources += [Source("xnli", p, _xnli_sentences) for p in _glob(root, f"xnli/{split}-{lang}.tsv*")]
    sources += [Source("xquad", p, _xquad_text) for p in _glob(root, f"xquad/xquad.{lang}.json*")]
    code = TATOEBA_CODES.get(lang)
    if lang == "en":
        sources += [Source("tatoeba", p, read_lines) for p in _glob(root, "tatoeba/tatoeba.*-eng.eng*")]
        sick = _glob(root, "xnli/english_nli/SICK.txt*")
        sources += [
            Source("sick", p, functools.partial(_sick_sentences, splits=("TRIAL", "TEST"))) for p in sick
        ]
    elif code is not None:
        sources += [
            Source("tatoeba", p, read_lines) for p in _glob(root, f"tatoeba/tatoeba.{code}-eng.{code}*")
        ]
    return sources


def available_languages(data_dir: str | os.PathLike | None = None, *, exclude_eval: bool = True) -> list[str]:
    """Languages with pretraining text (with `exclude_eval=False`: with any text at all)."""
    root = _root(data_dir)
    candidates = {p.name.split("_")[0] for p in _glob(root, "ud/*_*") if p.name != "xtreme_udpos"}
    candidates |= {p.name for p in _glob(root, "wikiann/*")}
    candidates |= {p.name.split(".")[0] for p in _glob(root, "raw/*/*.sentences.txt*")}
    candidates |= {p.name.split(".")[0].split("-")[1] for p in _glob(root, "ud/xtreme_udpos/*-*.tsv*")}
    candidates |= {p.name.split(".")[0].split("-")[1] for p in _glob(root, "xnli/*-*.tsv*")}
    candidates |= {p.name.split(".")[1] for p in _glob(root, "xquad/xquad.*.json*")}
    candidates |= {
        lang for lang, code in TATOEBA_CODES.items() if _glob(root, f"tatoeba/tatoeba.{code}-eng.*")
    }
    return sorted(
        lang
        for lang in candidates
        if _LANG_CODE.fullmatch(lang)
        and (pretraining_sources(lang, root) or (not exclude_eval and evaluation_sources(lang, root)))
    )


def _check_code(lang: str) -> None:
    if not isinstance(lang, str) or not _LANG_CODE.fullmatch(lang):
        raise ConfigError(f"lang: expected an ISO 639-1 code such as 'en', got {lang!r}")


# -- the corpus ------------------------------------------------------------------------------------


def evaluation_keys(lang: str, data_dir: str | os.PathLike | None = None) -> frozenset[str]:
    """`sentence_key`s of every evaluation sentence (and XQuAD paragraph) of `lang`; cached per process."""
    _check_code(lang)
    return _evaluation_keys(lang, _root(data_dir))


@functools.lru_cache(maxsize=16)
def _evaluation_keys(lang: str, root: pathlib.Path) -> frozenset[str]:
    return frozenset(sentence_key(s) for src in evaluation_sources(lang, root) for s in src.sentences())


def collect_sentences(
    sources: Iterable[Source], exclude: frozenset[str] = frozenset(), *, stats: list[dict] | None = None
) -> list[str]:
    """Stripped, deduplicated sentences of `sources` in order, without those whose key is in `exclude`.

    When `stats` is a list, one dict per source is appended: sentences `read` (= `kept` + `evaluation`
    + `duplicate`; a paragraph dropped whole counts once), `kept`, dropped as `evaluation` text, and
    dropped as `duplicate`s of earlier ones.
    """
    seen: set[str] = set()
    out: list[str] = []
    for source in sources:
        counts = {"source": source.name, "path": str(source.path), "read": 0, "kept": 0, "evaluation": 0,
                  "duplicate": 0}  # fmt: skip
        for unit in source.sentences():
            if source.paragraphs and sentence_key(unit) in exclude:
                counts["read"] += 1  # an evaluation paragraph counts once, as one unit
                counts["evaluation"] += 1
                continue
            for sentence in split_sentences(unit) if source.paragraphs else [unit.strip()]:
                key = sentence_key(sentence)
                counts["read"] += 1
                if key in exclude:
                    counts["evaluation"] += 1
                elif not key or key in seen:
                    counts["duplicate"] += 1
                else:
                    seen.add(key)
                    out.append(sentence)
                    counts["kept"] += 1
        if stats is not None:
            stats.append(counts)
    return out


@functools.lru_cache(maxsize=16)
def _build_corpus(
    lang: str, root: pathlib.Path, exclude_eval: bool
) -> tuple[tuple[str, ...], tuple[dict, ...]]:
    sources = pretraining_sources(lang, root)
    if exclude_eval:
        exclude = _evaluation_keys(lang, root)
    else:
        sources, exclude = sources + evaluation_sources(lang, root), frozenset()
    if not sources:
        known = ", ".join(available_languages(root, exclude_eval=exclude_eval)) or "none"
        only_eval = exclude_eval and evaluation_sources(lang, root)
        hint = (
            f"; the only text for {lang!r} is evaluation data (exclude_eval=False uses it)"
            if only_eval
            else ""
        )
        raise ConfigError(
            f"lang: no pretraining text for {lang!r} in {root}{hint}; languages with text: {known}"
        )
    stats: list[dict] = []
    sentences = collect_sentences(sources, exclude, stats=stats)
    return tuple(sentences), tuple(stats)


def pretraining_sentences(
    lang: str, data_dir: str | os.PathLike | None = None, *, exclude_eval: bool = True
) -> list[str]:
    """Every pretraining sentence of `lang` in the data directory, deduplicated, in a fixed order.

    Cached per process (the first call for English reads about 30 MB of text, ~10 s).
    """
    _check_code(lang)
    return list(_build_corpus(lang, _root(data_dir), exclude_eval)[0])


def corpus_stats(
    lang: str, data_dir: str | os.PathLike | None = None, *, exclude_eval: bool = True
) -> list[dict]:
    """Per-source counts behind `pretraining_sentences(lang)` (see `collect_sentences`), for logs."""
    _check_code(lang)
    return [dict(s) for s in _build_corpus(lang, _root(data_dir), exclude_eval)[1]]


# -- the gold-tree corpus of syntax-derived languages -----------------------------------------------


def treebank_text(sentence: Sentence) -> str:
    """A tree's words joined by spaces: the text both sides of a syntax-derived corpus are made of."""
    return " ".join(sentence.forms)


def treebank_sentences(lang: str, data_dir: str | os.PathLike | None = None) -> list[Sentence]:
    """`lang`'s UD train trees minus evaluation sentences and duplicates, in file order (cached per process).

    What a syntax-derived language is made of, and (as `treebank_text`, the `treebank:LANG` source) the
    original side that both models of a syntax protocol pretrain on. A tree is dropped when its `# text` or
    its words match an evaluation sentence (the words of French `du` are `de le`).
    """
    _check_code(lang)
    return list(_treebank_corpus(lang, _root(data_dir))[0])


def treebank_stats(lang: str, data_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """Trees behind `treebank_sentences(lang)`: `read` = `kept` + `evaluation` + `duplicate`."""
    _check_code(lang)
    return dict(_treebank_corpus(lang, _root(data_dir))[1])


@functools.lru_cache(maxsize=8)
def _treebank_corpus(lang: str, root: pathlib.Path) -> tuple[tuple[Sentence, ...], dict[str, int]]:
    paths = ud_train_treebanks(lang, root)
    if not paths:
        raise ConfigError(f"treebank:{lang}: no UD train treebank (ud/{lang}_*/train.conllu.gz) in {root}")
    exclude = _evaluation_keys(lang, root)
    seen: set[str] = set()
    kept: list[Sentence] = []
    counts = dict.fromkeys(("read", "kept", "evaluation", "duplicate"), 0)
    for sentence in (s for path in paths for s in read_conllu(path)):
        key = sentence_key(treebank_text(sentence))
        counts["read"] += 1
        if key in exclude or (sentence.text and sentence_key(sentence.text) in exclude):
            counts["evaluation"] += 1
        elif key in seen:
            counts["duplicate"] += 1
        else:
            seen.add(key)
            kept.append(sentence)
            counts["kept"] += 1
    return tuple(kept), counts


def drop_evaluation(sentences: Iterable[str], lang: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """`sentences` without `lang`'s evaluation sentences (by `sentence_key`)."""
    exclude = evaluation_keys(lang, data_dir)
    return [s for s in sentences if sentence_key(s) not in exclude]


# -- source strings --------------------------------------------------------------------------------


def _resolve(path: str, data_dir: str | os.PathLike | None) -> pathlib.Path:
    """A source path as given if it exists, else relative to the data directory."""
    candidate = pathlib.Path(path)
    return candidate if candidate.is_absolute() or candidate.exists() else _root(data_dir) / path


def read_source(
    spec: str, *, data_dir: str | os.PathLike | None = None, limit: int | None = None, lang: str | None = None
) -> list[str]:
    """Sentences of a source string: `text:PATH`, `conllu:PATH`, `tfds:NAME:SPLIT`, `lang:LANG`, `treebank:LANG`,
    `sources:NAME+NAME:LANG`.

    `lang:LANG` is `pretraining_sentences(LANG)`, `treebank:LANG` the words of `treebank_sentences(LANG)`,
    `sources:NAMES:LANG` `corpus_variants.domain_sentences(LANG, NAMES)` (`pretraining_sources` names, e.g.
    `sources:wikiann+squad:en`); all three hold no evaluation sentence of LANG. With `lang`, evaluation
    sentences of that language are also removed from the other kinds (before `limit`; for `tfds:` after
    reading `limit` records). Relative PATHs that do not exist from the working directory are looked up in
    the data directory (`conllu:ud/en_ewt/train.conllu.gz`). `tfds:` takes the split after the LAST colon, so versioned
    names work (`tfds:wiki40b/en:1.3.0:train`). `limit` keeps the first sentences.
    """
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ConfigError(f"source {spec!r}: expected KIND:ARG with KIND in {', '.join(SOURCE_KINDS)}")
    if kind == "text":
        sentences = [s.strip() for s in read_lines(_resolve(rest, data_dir))]
    elif kind == "conllu":
        sentences = list(conllu_sentences(_resolve(rest, data_dir)))
    elif kind == "tfds":
        name, sep, split = rest.rpartition(":")
        if not sep or not name or not split:
            raise ConfigError(f"source {spec!r}: expected tfds:NAME:SPLIT")
        sentences = tfds_sentences(name, split, limit)
    elif kind == "lang":
        sentences = pretraining_sentences(rest, data_dir)
    elif kind == "treebank":
        sentences = [treebank_text(s) for s in treebank_sentences(rest, data_dir)]
    elif kind == "sources":
        names, sep, source_lang = rest.rpartition(":")
        if not sep or not names:
            raise ConfigError(f"source {spec!r}: expected sources:NAME+NAME:LANG (names: {', '.join(SOURCE_NAMES)})")
        from xlt_jax.data.corpus_variants import domain_sentences  # the domains live with the corpus variants

        sentences = domain_sentences(source_lang, names.split("+"), data_dir)
    else:
        raise ConfigError(f"source {spec!r}: unknown kind {kind!r}; expected one of {', '.join(SOURCE_KINDS)}")
    if lang is not None and kind in ("text", "conllu", "tfds"):
        sentences = drop_evaluation(sentences, lang, data_dir)
    return sentences if limit is None else sentences[:limit]
