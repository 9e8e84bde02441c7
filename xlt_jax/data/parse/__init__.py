"""Dependency trees for any text: the parse step that lets `syntax:LANG` reorder text without gold UD trees.

The paper parsed its pretraining text, XNLI, NER and Tatoeba with Stanza before reordering them (REFERENCE_SPEC
§1.6). Here `syntax.trees` (pretraining, fine-tuning and evaluation configs) names where trees come from:

  gold     only gold UD trees (POS from CoNLL-U); tasks without them cannot take syntax (the default)
  udpipe   UDPipe 1 (`ufal.udpipe`), a model trained here, offline, on the data directory's UD train
           treebanks: `python -m xlt_jax.data.parse train --lang en` (en: EWT; fr: Sequoia + ParTUT)
  stanza   the paper's parser, where its models are installed (they are downloaded: a TPU VM, not here)

Gold trees always win: POS from CoNLL-U keeps them whatever `syntax.trees` says. Input is a list of words per
sentence (task tokens, whitespace-split text); each is parsed as one sentence with exactly those words, so
tags travel with their words. Every parse is cached as CoNLL-U under `$XLT_CACHE_DIR/parses/` (`cache.py`),
keyed by (model hash, input hash). No model can be trained for hi or ar here (no HDTB / PADT train treebank),
so Hindi and Arabic text cannot be parsed here; their *target* order statistics exist (from PUD).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from xlt_jax.data.parse.cache import ParseCache, empty_tree
from xlt_jax.data.readers.conllu import Sentence
from xlt_jax.errors import ConfigError

TREE_SOURCES = ("gold", "udpipe", "stanza")  # values of syntax.trees; the first is the default
BACKENDS = TREE_SOURCES[1:]
MODEL_SUFFIX = ".udpipe"
_LANG = re.compile(r"[a-z]{2,3}")


class Parser(Protocol):
    """What the parse step needs of a backend."""

    name: str
    model_hash: str  # identifies the model: half of every cache key

    def parse(self, words_list: Sequence[Sequence[str]]) -> list[Sentence]: ...


def check_trees(trees: str) -> str:
    """`trees` itself, or a ConfigError naming `syntax.trees` and its values."""
    if trees not in TREE_SOURCES:
        raise ConfigError(f"syntax.trees: {trees!r} is not one of {', '.join(TREE_SOURCES)}")
    return trees


def tree_options(config: Mapping[str, Any]) -> dict[str, str]:
    """`tasks.prepare`'s `trees` / `parser_model` from a run config's `syntax` block (gold if it has none:
    configs saved before the block existed)."""
    block = config.get("syntax") or {}
    return {"trees": check_trees(str(block.get("trees", "gold"))), "parser_model": str(block.get("model", ""))}


def models_root() -> pathlib.Path:
    """`$XLT_CACHE_DIR/parsers`, default `~/.cache/xlt_jax/parsers`: where `train` saves models."""
    root = os.environ.get("XLT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "xlt_jax")
    return pathlib.Path(root) / "parsers"


def model_path(lang: str, model: str = "") -> pathlib.Path:
    """The UDPipe model of `lang`: `model` ({lang} allowed), default `models_root()/udpipe/LANG.udpipe`."""
    if not _LANG.fullmatch(lang or ""):
        raise ConfigError(f"parse: expected a language code such as 'en', got {lang!r}")
    if model:
        return pathlib.Path(model.format(lang=lang)).expanduser()
    return models_root() / "udpipe" / f"{lang}{MODEL_SUFFIX}"


def parser_problem(trees: str, lang: str, model: str = "") -> str | None:
    """Why `syntax.trees=trees` cannot parse `lang` text here (None: it can), without loading a model."""
    if check_trees(trees) == "gold":
        return None
    if trees == "stanza":
        try:
            import stanza  # noqa: F401
        except ImportError:
            return f"syntax.trees='stanza': the stanza package is not installed (its {lang!r} models neither)"
        return None
    path = model_path(lang, model)
    if path.is_file():
        trained_for = _record(path).get("lang", lang)
        if trained_for != lang:
            return (f"syntax.model: {path} was trained on {trained_for!r} trees, not {lang!r} ones (use a path with "
                    "{lang}, one model per language)")
        return None
    from xlt_jax.data.parse import udpipe

    udpipe.treebank_files(lang, "train")  # no treebank: that ConfigError says why lang cannot be parsed here
    return (f"syntax.trees='udpipe': no UDPipe model of {lang!r} at {path}; train it with "
            f"`python -m xlt_jax.data.parse train --lang {lang}`" + (f" --out {path}" if model else ""))


@functools.lru_cache(maxsize=8)
def get_parser(trees: str, lang: str, model: str = "") -> Parser:
    """The parser `syntax.trees` names for `lang` (loaded once per process)."""
    if check_trees(trees) == "gold":
        raise ConfigError("syntax.trees='gold' parses nothing: only gold UD trees are used")
    if trees == "stanza":
        from xlt_jax.data.parse.stanza_backend import StanzaParser

        return StanzaParser(lang, model)
    from xlt_jax.data.parse.udpipe import UDPipeParser

    problem = parser_problem(trees, lang, model)
    if problem:
        raise ConfigError(problem)
    return UDPipeParser(model_path(lang, model))


def _record(path: pathlib.Path) -> dict:
    """The training record `train` saves beside a model (`PATH.json`), or {} for a model without one."""
    record = path.with_name(path.name + ".json")
    try:
        return json.loads(record.read_text()) if record.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def parse_sentences(words_list: Sequence[Sequence[str]], lang: str, *, trees: str = "udpipe", model: str = "",
                    parser: Parser | None = None, cache_dir: str | os.PathLike | None = None) -> list[Sentence]:
    """One tree per word list (same words, same order), from the cache or parsed and cached.

    `parser` overrides the one `trees`/`lang`/`model` name; an empty word list gets an empty tree.
    """
    words_list = [list(words) for words in words_list]
    _check_words(words_list)
    parser = parser or get_parser(trees, lang, model)
    cache = ParseCache(cache_dir)
    cached = cache.load(parser.model_hash, words_list)
    if cached is not None:
        return cached
    todo = [i for i, words in enumerate(words_list) if words]
    parsed = parser.parse([words_list[i] for i in todo])
    if len(parsed) != len(todo):
        raise ConfigError(f"parse: {parser.name} returned {len(parsed)} trees for {len(todo)} sentences")
    trees_out = [empty_tree() for _ in words_list]
    for i, tree in zip(todo, parsed, strict=True):
        if tree.forms != words_list[i]:
            raise ConfigError(f"parse: {parser.name} changed the words of sentence {i}: {words_list[i]} -> "
                              f"{tree.forms}")
        trees_out[i] = tree
    cache.save(parser.model_hash, words_list, trees_out)
    return trees_out


def _check_words(words_list: list[list[str]]) -> None:
    for i, words in enumerate(words_list):
        bad = next((w for w in words if not w or any(c in w for c in "\t\n\r")), None)
        if bad is not None:
            raise ConfigError(f"parse: sentence {i} has an empty word or one with a tab or newline: {bad!r}")


def attachment_scores(predicted: Sequence[Sentence], gold: Sequence[Sentence]) -> dict[str, float]:
    """UAS, LAS (universal relation, subtypes stripped, as CoNLL 2018) and UPOS accuracy, x100, over every word."""
    pairs = list(zip(predicted, gold, strict=True))

    def base(deprel: str) -> str:
        return deprel.split(":", 1)[0]

    heads = np.concatenate([p.heads == g.heads for p, g in pairs])
    labels = np.array([base(a) == base(b) for p, g in pairs for a, b in zip(p.deprels, g.deprels, strict=True)])
    upos = np.array([a == b for p, g in pairs for a, b in zip(p.upos, g.upos, strict=True)])
    return {"uas": round(100 * float(heads.mean()), 2), "las": round(100 * float((heads & labels).mean()), 2),
            "upos": round(100 * float(upos.mean()), 2), "words": int(heads.size)}
