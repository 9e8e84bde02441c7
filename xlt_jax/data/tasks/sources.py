"""Which files hold each task's train/dev/test data for each language, and loading them.

The data directory has the layout of `shared/data` (see its MANIFEST.md). Some standard files are not in
it (SQuAD train, MultiNLI, XTREME udpos train for fr/hi, WikiANN fr test tags, ...); asking for them gives
a `MissingDataError` that says what is missing and what to use instead. Where a substitute exists it is a
named *source* that must be chosen explicitly, except for two documented defaults:

- POS: `train` is UD English-EWT (CoNLL-U, so trees are available for Syntax) for en and XTREME's udpos
  file for ar; `dev`/`test` are XTREME's udpos files (all UD treebanks of the language, as in XTREME).
- QA: `train` for en is SQuAD v1.1 train when `squad/train-v1.1.json[.gz]` exists, otherwise SQuAD v1.1
  dev minus every paragraph XQuAD uses (REFERENCE_SPEC §4.2); the source actually used is recorded.
- NLI: `train` for en is SICK TRAIN (MultiNLI is missing); `test` is XNLI test with the German-derived
  label column (`xnli/test_labels_from_xglue_de.txt`, valid for every language: one row order); `dev` is
  XNLI dev. Training on XNLI dev (`source="xnli_dev"`) must be evaluated on `test`.
- Tatoeba: only `test`. Source `derived` gives one side of the LASER files (the English side of
  `tatoeba.<pivot>-eng` for en, pivot `fra` by default) for the derived-language protocol; `pairs` gives
  the natural (language, English) pairs for cross-lingual retrieval. Default: `derived` for en or when
  a transformation is evaluated, `pairs` otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

from xlt_jax.data import paths
from xlt_jax.data.readers import nli, squad, tagging, tatoeba
from xlt_jax.data.readers.conllu import read_conllu
from xlt_jax.errors import ConfigError, DataFormatError

SPLITS = ("train", "dev", "test")
XQUAD_LANGS = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
XNLI_TEST_LABELS = "xnli/test_labels_from_xglue_de.txt"
SICK = "xnli/english_nli/SICK.txt.gz"
SICK_SPLIT = {"train": "TRAIN", "dev": "TRIAL", "test": "TEST"}
SQUAD_DEV = "squad/dev-v1.1.json.gz"
SQUAD_TRAIN = ("squad/train-v1.1.json.gz", "squad/train-v1.1.json")
TATOEBA_PIVOT = "fra"
# ISO 639-1 -> LASER/Tatoeba code for XTREME's 36 Tatoeba languages (utils_preprocess.py) plus en;
# a three-letter code is accepted as is.
TATOEBA_CODES = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "en": "eng", "es": "spa",
    "et": "est", "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun",
    "id": "ind", "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "ml": "mal",
    "mr": "mar", "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "ta": "tam", "te": "tel", "th": "tha",
    "tl": "tgl", "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn",
}  # fmt: skip

_UD = {
    ("en", "train"): ("ud/en_ewt/train.conllu.gz",),
    ("en", "dev"): ("ud/en_ewt/dev.conllu.gz",),
    ("en", "test"): ("ud/en_ewt/test.conllu.gz",),
    # French-GSD train is missing; Sequoia + ParTUT are the French UD training data we have.
    ("fr", "train"): ("ud/fr_sequoia/train.conllu.gz", "ud/fr_partut/train.conllu.gz"),
    ("fr", "dev"): ("ud/fr_gsd/dev.conllu.gz",),
    ("fr", "test"): ("ud/fr_gsd/test.conllu.gz",),
}
_XTREME_UDPOS = {("en", "train"), ("ar", "train")} | {
    (lang, split) for lang in ("en", "fr", "hi", "ar") for split in ("dev", "test")
}
_WIKIANN = {(lang, split) for lang in ("en", "hi", "ar") for split in SPLITS} | {
    ("fr", "train"),
    ("fr", "dev"),
}

# Known gaps of the data snapshot: (task, lang, split) -> what is missing and what to use instead.
_MISSING = {
    ("pos", "fr", "train"): (
        "French POS training data in XTREME's format is missing: udpos train-fr.tsv and UD French-GSD "
        "train are not in the data snapshot (files over 4 MiB, see MANIFEST.md). Use source='ud' (UD "
        "French-Sequoia + ParTUT train, CoNLL-U), or train on 'en'/'ar' and evaluate French zero-shot"
    ),
    ("pos", "hi", "train"): (
        "Hindi POS training data is missing: udpos train-hi.tsv and UD Hindi-HDTB are not in the data "
        "snapshot (MANIFEST.md). Train on 'en' or 'ar' and evaluate Hindi zero-shot on 'dev'/'test'"
    ),
    ("ner", "fr", "test"): (
        "WikiANN French test tags are missing: wikiann/fr/test.tsv.gz has tokens only (XTREME strips test "
        "tags, and the original fr.tar.gz is not in the snapshot). Evaluate French NER on split='dev'"
    ),
    ("nli", "*", "mnli"): (
        "MultiNLI (and XNLI-MT translate-train) is missing: only a Git LFS pointer was found (MANIFEST.md). "
        "Train on source='sick' (SICK TRAIN, English) or source='xnli_dev' (XNLI dev of the language; then "
        "evaluate on split='test')"
    ),
    ("qa", "*", "translate_train"): (
        "QA training data for languages other than English (XTREME translate-train) is missing. Train on "
        "'en' (SQuAD) and evaluate the other languages zero-shot on XQuAD"
    ),
    ("qa", "en", "squad_train"): (
        "SQuAD v1.1 train (squad/train-v1.1.json[.gz]) is missing from the data directory (MANIFEST.md: "
        "over 4 MiB in every snapshot). Use source='squad_dev_minus_xquad' (SQuAD v1.1 dev minus every "
        "XQuAD paragraph), or place the official file (md5 981b29407e0affa3b1b156f72073b945) there"
    ),
}


def ud_files(lang: str, split: str) -> tuple[str, ...]:
    """The UD CoNLL-U files (relative to the data directory) POS reads for (lang, split); () if none."""
    return _UD.get((lang, split), ())


class MissingDataError(ConfigError):
    """A task split that the data directory does not (or cannot) provide; the message says what to use."""


@dataclasses.dataclass
class LoadedSplit:
    """Examples of one task split as read from disk, with the files and source they came from.

    `trees` (POS from CoNLL-U only) are the gold UD trees that the Syntax transformation needs.
    """

    task: str
    lang: str
    split: str
    source: str
    files: tuple[pathlib.Path, ...]
    examples: list[Any]
    trees: list[Any] | None = None
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)
    root: pathlib.Path | None = None  # the data directory the files were found in

    @property
    def description(self) -> str:
        """`source:file+file`, file names relative to the data directory."""
        root = self.root or paths.data_dir()
        names = [os.fspath(f.relative_to(root)) if f.is_relative_to(root) else os.fspath(f) for f in self.files]
        return f"{self.source}:{'+'.join(names)}"


def _root(data_dir: str | os.PathLike | None) -> pathlib.Path:
    return pathlib.Path(data_dir).resolve() if data_dir is not None else paths.data_dir()


def _existing(root: pathlib.Path, relative: Iterable[str]) -> tuple[pathlib.Path, ...]:
    """Absolute paths of files that must exist; a missing one names the file and the download command."""
    out = []
    for rel in relative:
        path = root / rel
        if not path.is_file():
            raise MissingDataError(
                f"data file {path} not found (data directory {root}); fill it with `make data` "
                "(python -m xlt_jax.data.download) or set XLT_DATA_DIR"
            )
        out.append(path)
    return tuple(out)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split: {split!r} is not one of {SPLITS}")


def _unavailable(task: str, lang: str, split: str, source: str, available: Iterable[str]) -> MissingDataError:
    return MissingDataError(
        f"{task}: no {split!r} data for language {lang!r} from source {source!r}; "
        f"available here: {', '.join(sorted(available)) or 'none'}"
    )


def default_source(task: str, lang: str, split: str, *, transform: str = "none", data_dir=None) -> str:
    """The source used when none is given (documented in the module docstring)."""
    root = _root(data_dir)
    if task == "pos":
        return "ud" if (lang, split) == ("en", "train") else "xtreme"
    if task == "ner":
        return "wikiann"
    if task == "nli":
        if split == "train":
            return "sick" if lang == "en" else "mnli"
        return "xnli"
    if task == "qa":
        if split == "train":
            if lang != "en":
                return "translate_train"
            return "squad" if any((root / rel).is_file() for rel in SQUAD_TRAIN) else "squad_dev_minus_xquad"
        return "xquad"
    if task == "tatoeba":
        return "derived" if lang == "en" or (transform or "none") != "none" else "pairs"
    raise ConfigError(f"task: unknown task {task!r}")


def load(
    task: str,
    lang: str,
    split: str,
    *,
    source: str | None = None,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    transform: str = "none",
) -> LoadedSplit:
    """Read the examples of (task, lang, split) from `source` (default: `default_source`).

    `limit` keeps the first N examples (after SQuAD-minus-XQuAD filtering, Tatoeba de-duplication).
    """
    _check_split(split)
    source = source or default_source(task, lang, split, transform=transform, data_dir=data_dir)
    loaders: dict[str, Callable[..., LoadedSplit]] = {
        "pos": _load_pos, "ner": _load_ner, "nli": _load_nli, "qa": _load_qa, "tatoeba": _load_tatoeba,
    }  # fmt: skip
    if task not in loaders:
        raise ConfigError(f"task: unknown task {task!r}; known tasks: {sorted(loaders)}")
    root = _root(data_dir)
    loaded = loaders[task](lang, split, source, root, limit)
    loaded.root = root
    return loaded


# ------------------------------------------------------------------------------------------------------
# Tagging


def _load_pos(lang: str, split: str, source: str, root: pathlib.Path, limit: int | None) -> LoadedSplit:
    if ("pos", lang, split) in _MISSING and source == "xtreme":
        raise MissingDataError(f"pos/{lang}/{split}: {_MISSING[('pos', lang, split)]}")
    available = _pos_available()
    conllu = {
        "ud": _UD,
        "pud": {(lg, "test"): (f"ud/{lg}_pud/test.conllu.gz",) for lg in ("en", "fr", "hi", "ar")},
    }
    if (lang, split) in conllu.get(source, {}):
        rel = conllu[source][(lang, split)]
        files = _existing(root, rel)
        trees = list(islice((s for f in files for s in read_conllu(f)), limit))
        examples = [tagging.TaggedSentence(list(t.forms), list(t.upos)) for t in trees]
        return LoadedSplit("pos", lang, split, source, files, examples, trees=trees)
    if source == "xtreme" and (lang, split) in _XTREME_UDPOS:
        files = _existing(root, [f"ud/xtreme_udpos/{split}-{lang}.tsv.gz"])
        examples = list(islice(tagging.read_udpos_tsv(files[0]), limit))
        return LoadedSplit("pos", lang, split, source, files, examples)
    if ("pos", lang, split) in _MISSING:
        raise MissingDataError(f"pos/{lang}/{split}: {_MISSING[('pos', lang, split)]}")
    raise _unavailable("pos", lang, split, source, available)


def _pos_available() -> list[str]:
    out = [f"ud:{lang}/{split}" for lang, split in _UD]
    out += [f"pud:{lang}/test" for lang in ("en", "fr", "hi", "ar")]
    out += [f"xtreme:{lang}/{split}" for lang, split in sorted(_XTREME_UDPOS)]
    return out


def _load_ner(lang: str, split: str, source: str, root: pathlib.Path, limit: int | None) -> LoadedSplit:
    if ("ner", lang, split) in _MISSING:
        raise MissingDataError(f"ner/{lang}/{split}: {_MISSING[('ner', lang, split)]}")
    if source != "wikiann" or (lang, split) not in _WIKIANN:
        raise _unavailable("ner", lang, split, source, [f"wikiann:{lg}/{sp}" for lg, sp in sorted(_WIKIANN)])
    files = _existing(root, [f"wikiann/{lang}/{split}.tsv.gz"])
    examples = list(islice(tagging.read_wikiann(files[0]), limit))
    if examples and examples[0].tags is None:
        raise MissingDataError(f"ner/{lang}/{split}: {files[0]} has no tag column, so it cannot be used")
    return LoadedSplit("ner", lang, split, source, files, examples)


# ------------------------------------------------------------------------------------------------------
# NLI


def _load_nli(lang: str, split: str, source: str, root: pathlib.Path, limit: int | None) -> LoadedSplit:
    if source == "mnli":
        raise MissingDataError(f"nli/{lang}/{split}: {_MISSING[('nli', '*', 'mnli')]}")
    if source == "sick":
        if lang != "en":
            raise _unavailable("nli", lang, split, source, ["sick:en/train|dev|test"])
        files = _existing(root, [SICK])
        examples = nli.read_sick(files[0], SICK_SPLIT[split])[:limit]
        return LoadedSplit("nli", lang, split, source, files, examples, notes={"sick_split": SICK_SPLIT[split]})
    xnli_sources = {"xnli": ("dev", "test"), "xnli_dev": ("train",)}
    if source not in xnli_sources or split not in xnli_sources[source] or lang not in XNLI_LANGS:
        raise _unavailable(
            "nli", lang, split, source,
            ["sick:en/train|dev|test", "xnli:<lang>/dev|test", "xnli_dev:<lang>/train",
             f"(XNLI languages: {', '.join(XNLI_LANGS)})"],
        )  # fmt: skip
    if split == "test":
        files = _existing(root, [f"xnli/test-{lang}.tsv.gz", XNLI_TEST_LABELS])
        examples = nli.read_xnli(files[0], labels_path=files[1])
    else:
        files = _existing(root, [f"xnli/dev-{lang}.tsv.gz"])
        examples = nli.read_xnli(files[0])
    return LoadedSplit("nli", lang, split, source, files, examples[:limit])


# ------------------------------------------------------------------------------------------------------
# QA


def _load_qa(lang: str, split: str, source: str, root: pathlib.Path, limit: int | None) -> LoadedSplit:
    if source == "translate_train" or (split == "train" and lang != "en"):
        raise MissingDataError(f"qa/{lang}/{split}: {_MISSING[('qa', '*', 'translate_train')]}")
    if split == "train" and source == "squad":
        found = [root / rel for rel in SQUAD_TRAIN if (root / rel).is_file()]
        if not found:
            raise MissingDataError(f"qa/en/train: {_MISSING[('qa', 'en', 'squad_train')]}")
        return LoadedSplit("qa", lang, split, source, (found[0],), squad.read_squad(found[0])[:limit])
    if split == "train" and source == "squad_dev_minus_xquad":
        files = _existing(root, [SQUAD_DEV, "xquad/xquad.en.json.gz"])
        kept, notes = squad_minus_xquad(squad.read_squad(files[0]), squad.read_squad(files[1]))
        return LoadedSplit("qa", lang, split, source, files, kept[:limit], notes=notes)
    if split != "train" and source == "xquad" and lang in XQUAD_LANGS:
        files = _existing(root, [f"xquad/xquad.{lang}.json.gz"])
        return LoadedSplit("qa", lang, split, source, files, squad.read_squad(files[0])[:limit])
    if split != "train" and source == "squad" and lang == "en":
        files = _existing(root, [SQUAD_DEV])
        return LoadedSplit("qa", lang, split, source, files, squad.read_squad(files[0])[:limit])
    raise _unavailable(
        "qa", lang, split, source,
        ["squad:en/train (if present)", "squad_dev_minus_xquad:en/train", "squad:en/dev|test",
         f"xquad:<lang>/dev|test ({', '.join(XQUAD_LANGS)})"],
    )  # fmt: skip


def _normalised(text: str) -> str:
    return " ".join(text.split())


def squad_minus_xquad(
    squad_examples: list[squad.QAExample], xquad_examples: list[squad.QAExample]
) -> tuple[list[squad.QAExample], dict[str, int]]:
    """SQuAD examples whose paragraph is not used by XQuAD (REFERENCE_SPEC §4.2's training set).

    XQuAD's English contexts are SQuAD v1.1 dev paragraphs; a paragraph is removed when its context
    equals an XQuAD context (compared with whitespace collapsed, to survive re-serialisation), and a
    question is removed as well when its id is an XQuAD question id. Returns the kept examples and counts.
    """
    xquad_contexts = {_normalised(e.context) for e in xquad_examples}
    xquad_ids = {e.id for e in xquad_examples}
    kept = [e for e in squad_examples if _normalised(e.context) not in xquad_contexts and e.id not in xquad_ids]
    all_paragraphs = {_normalised(e.context) for e in squad_examples}
    kept_paragraphs = {_normalised(e.context) for e in kept}
    matched = xquad_contexts & all_paragraphs
    notes = {
        "squad_paragraphs": len(all_paragraphs),
        "squad_questions": len(squad_examples),
        "xquad_paragraphs": len(xquad_contexts),
        "xquad_paragraphs_matched": len(matched),
        "kept_paragraphs": len(kept_paragraphs),
        "kept_questions": len(kept),
    }
    if len(matched) != len(xquad_contexts):
        # Unmatched XQuAD paragraphs would mean their SQuAD originals differ and might stay in training.
        raise DataFormatError(
            "xquad/xquad.en.json.gz",
            None,
            f"only {len(matched)} of {len(xquad_contexts)} XQuAD paragraphs found in SQuAD dev; "
            "the files do not belong together",
        )
    return kept, notes


# ------------------------------------------------------------------------------------------------------
# Tatoeba


def tatoeba_code(lang: str) -> str:
    """LASER three-letter code of `lang` (ISO 639-1 or already three letters)."""
    if lang in TATOEBA_CODES:
        return TATOEBA_CODES[lang]
    if len(lang) == 3 and lang.isalpha():
        return lang
    raise ConfigError(f"lang: no Tatoeba code known for {lang!r}; use a LASER code (e.g. 'fra')")


def _load_tatoeba(lang: str, split: str, source: str, root: pathlib.Path, limit: int | None) -> LoadedSplit:
    if split != "test":
        raise _unavailable("tatoeba", lang, split, source, ["derived:<lang>/test", "pairs:<lang>/test"])
    code = tatoeba_code(lang)
    if source == "pairs":
        if code == "eng":
            raise ConfigError("lang: Tatoeba pairs are <lang>-eng; 'en' has no pair (use source='derived')")
        files = _existing(root, [f"tatoeba/tatoeba.{code}-eng.{code}.gz", f"tatoeba/tatoeba.{code}-eng.eng.gz"])
        pairs = tatoeba.read_tatoeba(*files)[:limit]
        return LoadedSplit("tatoeba", lang, split, source, files, pairs, notes={"code": code})
    if source == "derived" or source.startswith("derived:"):
        pivot = source.partition(":")[2] or TATOEBA_PIVOT
        pair = pivot if code == "eng" else code
        side = "eng" if code == "eng" else code
        files = _existing(root, [f"tatoeba/tatoeba.{pair}-eng.{side}.gz", f"tatoeba/tatoeba.{pair}-eng.eng.gz"])
        lines = [p[0] if side != "eng" else p[1] for p in tatoeba.read_tatoeba(*files)]
        # Identical sentences would make retrieval ambiguous (their derived versions tie), so keep the first.
        unique = list(dict.fromkeys(line for line in lines if line.strip()))
        notes = {"code": code, "pair": f"{pair}-eng", "lines": len(lines), "unique_sentences": len(unique)}
        return LoadedSplit("tatoeba", lang, split, source, files[:1] if side != "eng" else files[1:],
                           unique[:limit], notes=notes)  # fmt: skip
    raise _unavailable("tatoeba", lang, split, source, ["derived[:<pivot>]:<lang>/test", "pairs:<lang>/test"])
