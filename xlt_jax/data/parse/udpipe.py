"""UDPipe 1 (`ufal.udpipe`): a tagger + parser trained here, offline, on the UD treebanks of the data directory.

No tokenizer is trained or run: every input is already a list of words (task tokens, whitespace-split text),
and each list is parsed as one sentence, so a tree has exactly the words it was given. The tagger predicts
UPOS (which heads the reorderer moves) and the features the parser embeds; lemmas are not needed. The parser
is Parsito with the arc-standard *projective* transition system, so every tree it produces is projective and
the reorderer never has to skip or lift one (REFERENCE_SPEC §1.6).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import pathlib
import time
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from xlt_jax.data import corpora, paths
from xlt_jax.data.readers.conllu import Sentence, read_conllu
from xlt_jax.data.tasks import sources
from xlt_jax.errors import ConfigError

METHOD = "morphodita_parsito"
# UDPipe's defaults, minus lemmas (unused here), written out so a model records what trained it.
TAGGER_OPTIONS: dict[str, object] = dict(
    models=1, templates="tagger", iterations=20, guesser_suffix_rules=8, guesser_enrich_dictionary=6,
    use_lemma=0, provide_lemma=0, use_xpostag=1, provide_xpostag=1, use_feats=1, provide_feats=1,
)
# UDPipe's defaults but `structured_interval=0`: the search-based oracle trains 2-3x slower for ~0.5 LAS.
PARSER_OPTIONS: dict[str, object] = dict(
    transition_system="projective", transition_oracle="dynamic", structured_interval=0, single_root=1,
    iterations=10, hidden_layer=200, batch_size=10, learning_rate=0.02, learning_rate_final=0.001, l2=0.5,
    embedding_upostag=20, embedding_feats=20, embedding_xpostag=0, embedding_form=50, embedding_lemma=0,
    embedding_deprel=20,
)


def _udpipe():
    try:
        import ufal.udpipe
    except ImportError as e:
        raise ConfigError(
            "syntax.trees='udpipe' needs the ufal.udpipe package: pip install -e .[parse] (or pip install ufal.udpipe)"
        ) from e
    return ufal.udpipe


def options_string(defaults: Mapping[str, object], overrides: str = "") -> str:
    """UDPipe's `k=v;k=v` option string: `defaults` with `overrides` (same syntax) applied on top."""
    options = {k: str(v) for k, v in defaults.items()}
    for item in filter(None, (p.strip() for p in overrides.split(";"))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"udpipe option {item!r} in {overrides!r}: expected key=value")
        options[key.strip()] = value.strip()
    return ";".join(f"{k}={v}" for k, v in options.items())


def treebank_files(lang: str, split: str, data_dir: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """The UD CoNLL-U files a model of `lang` trains (`train`) or is scored (`dev`) on.

    The documented POS files where there are some (`sources.ud_files`: French trains on Sequoia + ParTUT,
    is scored on GSD dev), else every `ud/<lang>_*/<split>.conllu.gz`.
    """
    root = pathlib.Path(data_dir).resolve() if data_dir is not None else paths.data_dir()
    relative = sources.ud_files(lang, split)
    found = [root / r for r in relative] if relative else corpora.ud_treebanks(lang, (split,), root)
    found = [p for p in found if p.is_file()]
    if not found:
        raise ConfigError(
            f"udpipe: no UD {split} treebank for {lang!r} in {root} (ud/{lang}_*/{split}.conllu.gz), so no UDPipe "
            f"model of {lang!r} can be trained here and {lang!r} text cannot be parsed (see shared/data/MANIFEST.md; "
            "syntax.trees='stanza' parses it where Stanza's models are installed)"
        )
    return found


def _conllu_text(files: Sequence[pathlib.Path]) -> str:
    parts = []
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            parts.append(f.read().rstrip("\n") + "\n\n")
    return "".join(parts)


def udpipe_sentences(files: Sequence[pathlib.Path], limit: int | None = None):
    """The sentences of CoNLL-U files as a `ufal.udpipe.Sentences` (the trainer's input), first `limit`."""
    u = _udpipe()
    reader = u.InputFormat.newConlluInputFormat()
    reader.setText(_conllu_text(files))
    error, out, sentence = u.ProcessingError(), u.Sentences(), u.Sentence()
    while (limit is None or len(out) < limit) and reader.nextSentence(sentence, error):
        out.append(sentence)
        sentence = u.Sentence()
    if error.occurred():
        raise ConfigError(f"udpipe: cannot read {[os.fspath(f) for f in files]}: {error.message}")
    return out


def train_model(lang: str, out: str | os.PathLike, *, tagger: str = "", parser: str = "", max_sentences: int = 0,
                data_dir: str | os.PathLike | None = None) -> dict:
    """Train a tagger + parser on `lang`'s UD train treebank(s) and save it to `out` (with `out`.json).

    `tagger` / `parser` override `TAGGER_OPTIONS` / `PARSER_OPTIONS` (`iterations=2;hidden_layer=50`);
    `max_sentences` keeps the first N training sentences (tests). Returns the record saved beside the model.
    """
    files = treebank_files(lang, "train", data_dir)
    train = udpipe_sentences(files, max_sentences or None)
    u = _udpipe()
    tagger_opts, parser_opts = options_string(TAGGER_OPTIONS, tagger), options_string(PARSER_OPTIONS, parser)
    t0 = time.perf_counter()
    error = u.ProcessingError()
    model = u.Trainer.train(METHOD, train, u.Sentences(), "none", tagger_opts, parser_opts, error)
    if error.occurred():
        raise ConfigError(f"udpipe training of {lang!r} failed: {error.message}")
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    tmp.write_bytes(model)
    os.replace(tmp, out)
    record = {"lang": lang, "backend": "udpipe", "model": os.fspath(out), "model_hash": file_hash(out),
              "train_files": [os.fspath(f) for f in files], "train_sentences": len(train),
              "tagger": tagger_opts, "parser": parser_opts, "train_seconds": round(time.perf_counter() - t0, 1)}
    out.with_name(out.name + ".json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def file_hash(path: str | os.PathLike) -> str:
    """Content hash of a model file: the model's half of a parse-cache key."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class UDPipeParser:
    """A saved UDPipe model that tags and parses word lists (one list = one sentence)."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise ConfigError(f"udpipe: no model at {self.path}")
        self._u = _udpipe()
        self._model = self._u.Model.load(os.fspath(self.path))
        if self._model is None:
            raise ConfigError(f"udpipe: {self.path} is not a UDPipe model")
        self.model_hash = f"udpipe-{file_hash(self.path)}"
        self.name = f"udpipe:{self.path}"

    def parse(self, words_list: Sequence[Sequence[str]]) -> list[Sentence]:
        return list(self._parse_each(words_list))

    def _parse_each(self, words_list: Sequence[Sequence[str]]) -> Iterator[Sentence]:
        u, model, error = self._u, self._model, self._u.ProcessingError()
        started = time.perf_counter()
        for done, words in enumerate(words_list, start=1):
            sentence = u.Sentence()
            for word in words:
                sentence.addWord(word)
            if not (model.tag(sentence, u.Model.DEFAULT, error) and model.parse(sentence, u.Model.DEFAULT, error)):
                raise ConfigError(f"udpipe ({self.path}) failed on {' '.join(words)!r}: {error.message}")
            yield _from_udpipe(sentence)
            if done % 20000 == 0:
                logging.info("udpipe: %d / %d sentences parsed (%.0f / s)", done, len(words_list),
                             done / (time.perf_counter() - started))


def _from_udpipe(sentence) -> Sentence:
    words = list(sentence.words)[1:]  # word 0 is UDPipe's technical root
    return Sentence(sent_id=None, text=None, forms=[w.form for w in words], upos=[w.upostag for w in words],
                    heads=np.array([w.head for w in words], dtype=np.int32), deprels=[w.deprel for w in words])


def gold_sentences(lang: str, split: str = "dev", data_dir: str | os.PathLike | None = None) -> list[Sentence]:
    """Gold trees of `lang`'s `split` treebank(s), the reference the attachment scores are measured on."""
    return [s for path in treebank_files(lang, split, data_dir) for s in read_conllu(path)]
