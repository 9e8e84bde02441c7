"""What a pretraining run reads: the text of each language, the tokenizer and the input pipeline.

Text comes from `config.corpus.source` (a `xlt_jax.data.corpora.read_source` string with `{lang}`; by default
every pretraining text of the data directory), always without the language's evaluation sentences. A derived
language with a syntax stage (`syntax:hi`, `translit+syntax:hi[deterministic]`) reorders trees, and the derived
line i is the reordered tree of original line i, as the reference makes it offline. Where the trees come from is
`syntax.trees`: `gold` (unless `corpus.derived_source` gives the derived text, the source must then be
`treebank:{lang}`, the UD train trees minus evaluation sentences) or a parser (`udpipe`, `stanza`:
any source's sentences are split on whitespace, parsed, cached and reordered; `xlt_jax.data.parse`). Either way a
monolingual twin reading the same `corpus.source` pretrains on exactly that original side.

`corpus.variant` (`xlt_jax.data.corpus_variants`): `parallel` (the default) derives the derived side from the
original sentences; `nonparallel_same` / `nonparallel_diff` take both sides from the domain tables
`corpus.same_domain` / `corpus.other_domain` instead of `corpus.source`, split by `corpus.split_seed`. A
monolingual twin with the same `corpus.*` keys pretrains on the same original half.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping

import jax
import ml_collections
from etils import epath
from jax.experimental import multihost_utils

from xlt_jax.data import corpora, corpus_variants, parse, transforms
from xlt_jax.data.pretrain import pipeline
from xlt_jax.data.tokenizer import Tokenizer, train_tokenizer
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError

TOKENIZER_DIR = "tokenizer"
TREEBANK_SOURCE = "treebank:{lang}"  # corpus.source of a syntax-derived language's original side
_SYNTAX_PART = re.compile(r"(?:^|\+)syntax:([A-Za-z][A-Za-z0-9_-]*)")


def languages(config: ml_collections.ConfigDict) -> list[str]:
    return [lang for lang in str(config.data.langs).split("+") if lang]


def _limit(config: ml_collections.ConfigDict) -> int | None:
    return int(config.corpus.max_sentences) or None


def syntax_target(transform: str) -> str | None:
    """LANG of a `syntax:LANG` part of a transform spec, if any."""
    match = _SYNTAX_PART.search(transform or "")
    return match.group(1) if match else None


def syntax_trees(config: ml_collections.ConfigDict) -> str:
    """`syntax.trees` (runs saved before it existed used gold trees)."""
    return parse.tree_options(config)["trees"]


def _derives_syntax(config: ml_collections.ConfigDict) -> bool:
    return syntax_target(config.data.transform) is not None and not config.corpus.derived_source


def _treebank_source(config: ml_collections.ConfigDict) -> bool:
    langs = languages(config)
    return len(langs) == 1 and config.corpus.source.format(lang=langs[0]) == TREEBANK_SOURCE.format(lang=langs[0])


def derives_from_trees(config: ml_collections.ConfigDict) -> bool:
    """Whether the derived language is made here from gold trees (a syntax stage, no `corpus.derived_source`;
    `syntax.trees=gold`, or a parser but the treebank's own sentences: gold trees win over parses)."""
    return _derives_syntax(config) and (syntax_trees(config) == "gold" or _treebank_source(config))


def derives_from_parses(config: ml_collections.ConfigDict) -> bool:
    """Whether the derived language is made here from parses of the original text (`syntax.trees` a parser)."""
    return _derives_syntax(config) and not derives_from_trees(config)


def corpus_variant(config: ml_collections.ConfigDict) -> str:
    """`corpus.variant` (runs saved before it existed are parallel)."""
    return corpus_variants.check_variant(str(config.corpus.get("variant", corpus_variants.PARALLEL)))


def check_corpus(config: ml_collections.ConfigDict) -> None:
    """Refuse, before reading anything, a syntax-derived language whose original side is not its trees' text,
    and a non-parallel variant that cannot be made."""
    variant = corpus_variant(config)
    if variant != corpus_variants.PARALLEL:
        _check_nonparallel(config, variant)
        return
    if not _derives_syntax(config):
        return
    langs = languages(config)
    if len(langs) != 1:
        raise ConfigError(f"data.transform={config.data.transform!r} needs exactly one language, got {langs}")
    if syntax_trees(config) != "gold":
        return  # any source: its sentences are parsed
    if config.corpus.source.format(lang=langs[0]) != TREEBANK_SOURCE.format(lang=langs[0]):
        raise ConfigError(
            f"data.transform={config.data.transform!r} reorders gold UD trees, so corpus.source must be "
            f"{TREEBANK_SOURCE!r} (the original side is the trees' sentences), got {config.corpus.source!r}; "
            "or give the derived text in corpus.derived_source, or parse the source (syntax.trees='udpipe')"
        )


def _check_nonparallel(config: ml_collections.ConfigDict, variant: str) -> None:
    langs = languages(config)
    if len(langs) != 1:
        raise ConfigError(f"corpus.variant={variant!r} splits one language's text, but data.langs={langs}")
    if syntax_target(config.data.transform) is not None and syntax_trees(config) == "gold":
        raise ConfigError(
            f"corpus.variant={variant!r}: data.transform={config.data.transform!r} reorders gold UD trees, which "
            "only the treebank has (corpus.source='treebank:{lang}'); use corpus.variant='parallel', or parse "
            "the text (syntax.trees='udpipe' or 'stanza')"
        )
    if config.corpus.derived_source:
        raise ConfigError(f"corpus.variant={variant!r} and corpus.derived_source={config.corpus.derived_source!r} "
                          "both give the derived side's text; set one of them")


def variant_sides(config: ml_collections.ConfigDict) -> corpus_variants.Sides:
    """The original and derived-source sentences of a non-parallel variant (evaluation sentences removed)."""
    lang = languages(config)[0]
    seed, limit = int(config.corpus.split_seed), _limit(config)
    same = corpora.read_source(corpus_variants.domain_source(config.corpus.same_domain, "corpus.same_domain", lang))
    if corpus_variant(config) == "nonparallel_same":
        return corpus_variants.nonparallel_same(same, seed, limit)
    other_spec = corpus_variants.domain_source(config.corpus.other_domain, "corpus.other_domain", lang)
    return corpus_variants.nonparallel_diff(same, corpora.read_source(other_spec), seed, limit)


def _variant_label(config: ml_collections.ConfigDict, lang: str) -> str:
    """`corpus.variant` and where its sides come from, for logs and plans."""
    variant = corpus_variant(config)
    same = corpus_variants.domain_source(config.corpus.same_domain, "corpus.same_domain", lang)
    if variant == "nonparallel_same":
        return f"{variant}: halves of {same} (split_seed {config.corpus.split_seed})"
    other = corpus_variants.domain_source(config.corpus.other_domain, "corpus.other_domain", lang)
    return f"{variant}: half of {same} + {other} (split_seed {config.corpus.split_seed})"


def original_texts(config: ml_collections.ConfigDict) -> dict[str, list[str]]:
    """Each natural language's sentences from `corpus.source` (a non-parallel variant: its original side),
    without its evaluation sentences."""
    check_corpus(config)
    if corpus_variant(config) != corpus_variants.PARALLEL:
        return {languages(config)[0]: variant_sides(config).original}
    texts = {}
    for lang in languages(config):
        spec = config.corpus.source.format(lang=lang)
        texts[lang] = corpora.read_source(spec, limit=_limit(config), lang=lang)
        if not texts[lang]:
            raise ConfigError(f"corpus.source={spec!r}: no sentence of {lang!r} that is not evaluation data")
    return texts


def treebank_texts(lang: str, transform: str, seed: int, limit: int | None) -> tuple[list[str], list[str]]:
    """Original and syntax-reordered sentences of `treebank_sentences(lang)` (gold trees), line-aligned.

    `transform`'s syntax stage (with its variant) reorders; other stages (translit) run later on ids.
    """
    from xlt_jax.data.transforms.syntax import reorder_treebank

    stage = transforms.parse(transform, VocabLayout(base_size=1000)).syntax  # V only sizes ids: irrelevant here
    if stage is None:
        raise ConfigError(f"data.transform={transform!r} has no syntax stage to make a treebank corpus with")
    sentences = corpora.treebank_sentences(lang)[:limit]
    derived = reorder_treebank(sentences, stage.impl, seed)
    return [corpora.treebank_text(s) for s in sentences], [" ".join(words) for words in derived]


def parsed_texts(lang: str, lines: list[str], config: ml_collections.ConfigDict) -> list[str]:
    """`lines` (whitespace-split words) parsed by `syntax.trees` (cached) and reordered by the transform's
    syntax stage: derived line i is line i reordered (example id i)."""
    from xlt_jax.data.transforms.syntax import reorder_treebank

    stage = transforms.parse(str(config.data.transform), VocabLayout(base_size=1000)).syntax  # V only sizes ids
    options = parse.tree_options(config)
    t0 = time.perf_counter()
    trees = parse.parse_sentences([line.split() for line in lines], lang, trees=options["trees"],
                                  model=options["parser_model"])
    logging.info("corpus %s: %d sentences parsed by %s (or read from the parse cache) in %.1f s", lang, len(trees),
                 options["trees"], time.perf_counter() - t0)
    return [" ".join(words) for words in reorder_treebank(trees, stage.impl, int(config.data.transform_seed))]


def load_texts(config: ml_collections.ConfigDict) -> tuple[dict[str, list[str]], list[str] | None]:
    """(sentences of each natural language, derived-language sentences made outside the pipeline or None)."""
    texts = original_texts(config)
    parallel = corpus_variant(config) == corpus_variants.PARALLEL
    for lang, sentences in texts.items():
        where = config.corpus.source.format(lang=lang) if parallel else _variant_label(config, lang)
        logging.info("corpus %s: %d sentences from %s", lang, len(sentences), where)
    langs = languages(config)
    if derives_from_trees(config):
        original, derived = treebank_texts(
            langs[0], config.data.transform, int(config.data.transform_seed), _limit(config)
        )
        if original != texts[langs[0]]:  # check_corpus makes them one list; a mismatch would misalign the sides
            raise ConfigError(f"corpus.source={config.corpus.source!r} does not give the trees' sentences")
        logging.info("corpus %s: those sentences reordered by %s", langs[0], config.data.transform)
        return texts, derived
    if parallel and derives_from_parses(config):
        derived = parsed_texts(langs[0], texts[langs[0]], config)
        logging.info("corpus %s: those sentences parsed and reordered by %s", langs[0], config.data.transform)
        return texts, derived
    derived = None
    if config.corpus.derived_source:
        derived = corpora.read_source(config.corpus.derived_source.format(lang=langs[0]), limit=_limit(config))
    elif not parallel and str(config.data.transform) not in ("", "none"):
        derived = _word_stage(config, variant_sides(config).derived)
        logging.info("corpus %s: derived side from %s, %d sentences", langs[0], _variant_label(config, langs[0]),
                     len(derived))
    return texts, derived


def _word_stage(config: ml_collections.ConfigDict, lines: list[str]) -> list[str]:
    """A derived side given as text gets the transform's word stage here (`inv@word`, ...); id stages run later."""
    transform = transforms.parse(str(config.data.transform), VocabLayout(base_size=1000))  # V only sizes ids
    if not transform.word_stage:
        return lines
    if transform.syntax is not None:  # _check_nonparallel allows it only with a parser
        return parsed_texts(languages(config)[0], lines, config)
    seed = int(config.data.transform_seed)
    return [transform.apply_text(line, seed=seed, example_id=i) for i, line in enumerate(lines)]


def describe_corpus(config: ml_collections.ConfigDict) -> str:
    """`SOURCE: N sentences, W words` of each language and what the derived side is, for plans and logs.

    Words are whitespace-separated (tokens are known only once a tokenizer exists).
    """
    if corpus_variant(config) != corpus_variants.PARALLEL:
        check_corpus(config)
        lang = languages(config)[0]
        sides = variant_sides(config)
        if config.data.mode == "monolingual" and str(config.data.transform) in ("", "none"):
            words = sum(len(t.split()) for t in sides.original)
            return (f"{_variant_label(config, lang)}, original side: {len(sides.original):,} sentences, "
                    f"{words:,} words")
        return f"{_variant_label(config, lang)}: {sides.describe()}; {lang}:{config.data.transform} from the second"
    texts = original_texts(config)
    parts = [
        f"{config.corpus.source.format(lang=lang)}: {len(s):,} sentences, {sum(len(t.split()) for t in s):,} words"
        for lang, s in texts.items()
    ]
    transform = str(config.data.transform)
    if transform not in ("", "none") and len(texts) == 1:
        lang = next(iter(texts))
        if config.corpus.derived_source:
            parts.append(f"{lang}:{transform} from {config.corpus.derived_source.format(lang=lang)}")
        elif config.data.mode == "monolingual":
            parts.append(f"(as {lang}:{transform} alone)")
        else:
            parts.append(f"+ the same sentences as {lang}:{transform}")
        if derives_from_parses(config):
            parts.append(f"(trees: {syntax_trees(config)} parses)")
    return " ".join(parts)


def load_or_train_tokenizer(
    config: ml_collections.ConfigDict, texts: Mapping[str, list[str]], workdir: epath.Path
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


def build_data(config: ml_collections.ConfigDict, workdir: epath.Path) -> tuple[Tokenizer, pipeline.PretrainData]:
    """Texts → tokenizer → the pipeline of `config.data` (id shards are cached, see `data.cache_dir`)."""
    texts, derived = load_texts(config)
    tokenizer = load_or_train_tokenizer(config, texts, workdir)
    data = pipeline.build_pretrain_data(config.data, tokenizer, texts, derived_corpus=derived)
    return tokenizer, data
