"""What a pretraining run reads: the text of each language, the tokenizer and the input pipeline.

Text comes from `config.corpus.source` (a `xlt_jax.data.corpora.read_source` string with `{lang}`; by default
every pretraining text of the data directory minus evaluation sentences). A derived language with a syntax
stage (`syntax:hi`, `translit+syntax:hi`) needs gold trees: unless `corpus.derived_source` gives its text,
both sides are then built from the language's UD train treebanks, line-aligned (derived line i = reordered
original line i), as the reference does offline.
"""

from __future__ import annotations

import logging
import pathlib
import re
import time
from collections.abc import Mapping

import jax
import ml_collections
from jax.experimental import multihost_utils

from xlt_jax.data import corpora
from xlt_jax.data.pretrain import pipeline
from xlt_jax.data.tokenizer import Tokenizer, train_tokenizer
from xlt_jax.errors import ConfigError

TOKENIZER_DIR = "tokenizer"
_SYNTAX_PART = re.compile(r"(?:^|\+)syntax:([A-Za-z][A-Za-z0-9_-]*)")


def languages(config: ml_collections.ConfigDict) -> list[str]:
    return [lang for lang in str(config.data.langs).split("+") if lang]


def _limit(config: ml_collections.ConfigDict) -> int | None:
    return int(config.corpus.max_sentences) or None


def syntax_target(transform: str) -> str | None:
    """LANG of a `syntax:LANG` part of a transform spec, if any."""
    match = _SYNTAX_PART.search(transform or "")
    return match.group(1) if match else None


def treebank_texts(lang: str, target: str, seed: int, limit: int | None) -> tuple[list[str], list[str]]:
    """Original and syntax-reordered sentences of `lang`'s UD train treebanks (gold trees), line-aligned."""
    from xlt_jax.data.readers.conllu import read_conllu
    from xlt_jax.data.transforms.syntax import SyntaxReorderer, reorder_treebank

    sentences = [s for path in corpora.ud_train_treebanks(lang) for s in read_conllu(path)][:limit]
    if not sentences:
        raise ConfigError(
            f"data.transform syntax:{target} needs gold UD trees of {lang!r}, and the data directory has no "
            f"train treebank for it; give the derived text in corpus.derived_source"
        )
    derived = reorder_treebank(sentences, SyntaxReorderer(target), seed)
    return [" ".join(s.forms) for s in sentences], [" ".join(words) for words in derived]


def load_texts(config: ml_collections.ConfigDict) -> tuple[dict[str, list[str]], list[str] | None]:
    """(sentences of each natural language, derived-language sentences made outside the pipeline or None)."""
    langs = languages(config)
    target = syntax_target(config.data.transform)
    if target is not None and not config.corpus.derived_source:
        if len(langs) != 1:
            raise ConfigError(f"data.transform={config.data.transform!r} needs exactly one language")
        original, derived = treebank_texts(langs[0], target, int(config.data.transform_seed), _limit(config))
        logging.info("corpus %s: %d UD train sentences, reordered toward %s", langs[0], len(original), target)
        return {langs[0]: original}, derived
    texts = {}
    for lang in langs:
        spec = config.corpus.source.format(lang=lang)
        texts[lang] = corpora.read_source(spec, limit=_limit(config))
        logging.info("corpus %s: %d sentences from %s", lang, len(texts[lang]), spec)
    derived = None
    if config.corpus.derived_source:
        derived = corpora.read_source(config.corpus.derived_source.format(lang=langs[0]), limit=_limit(config))
    return texts, derived


def load_or_train_tokenizer(
    config: ml_collections.ConfigDict, texts: Mapping[str, list[str]], workdir: pathlib.Path
) -> Tokenizer:
    """`tokenizer.path`, else WORKDIR/tokenizer from an earlier attempt, else one trained on `texts`.

    Trained on the natural languages only (a derived language shares it or uses an offset copy,
    REFERENCE_SPEC §3.3). Training is deterministic, so every host may train it; process 0 saves it.
    """
    saved = workdir / TOKENIZER_DIR
    have_saved = saved.is_dir()
    if jax.process_count() > 1:  # every host decides before process 0 may start writing WORKDIR/tokenizer
        multihost_utils.sync_global_devices("xlt_jax:tokenizer")
    if config.tokenizer.path:
        tokenizer = Tokenizer.load(config.tokenizer.path)
    elif have_saved:
        tokenizer = Tokenizer.load(saved)
    else:
        t0 = time.perf_counter()
        tokenizer = train_tokenizer(
            dict(texts),
            int(config.tokenizer.vocab_size),
            None,
            alpha=float(config.tokenizer.alpha),
            seed=int(config.tokenizer.seed),
            model_type=config.tokenizer.model_type,
            sentences_per_lang=int(config.tokenizer.sentences_per_lang) or None,
            hard_vocab_limit=False,  # small corpora (hi) may not support the full vocabulary
        )
        logging.info("trained tokenizer: %d pieces in %.1f s", tokenizer.base_size, time.perf_counter() - t0)
    if jax.process_index() == 0 and not have_saved:
        tokenizer.save(saved)
    return tokenizer


def build_data(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> tuple[Tokenizer, pipeline.PretrainData]:
    """Texts → tokenizer → the pipeline of `config.data` (id shards are cached, see `data.cache_dir`)."""
    texts, derived = load_texts(config)
    tokenizer = load_or_train_tokenizer(config, texts, workdir)
    data = pipeline.build_pretrain_data(config.data, tokenizer, texts, derived_corpus=derived)
    return tokenizer, data
