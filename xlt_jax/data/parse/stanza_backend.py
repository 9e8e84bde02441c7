"""Stanza, the paper's parser (REFERENCE_SPEC §1.6), for machines where its models are installed.

Stanza's models are downloaded from the internet (`stanza.download(lang)`), which a TPU VM can do and this
workplace cannot; here the backend only says so. Input is pre-tokenized (`tokenize_pretokenized`), without
multi-word-token expansion, so each tree has exactly the words it was given, as with UDPipe.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from xlt_jax.data.readers.conllu import Sentence
from xlt_jax.errors import ConfigError

PROCESSORS = "tokenize,pos,lemma,depparse"


def _unavailable(lang: str, why: str) -> ConfigError:
    return ConfigError(
        f"syntax.trees='stanza' cannot parse {lang!r} here: {why}. Stanza needs `pip install stanza` and its "
        f"{lang!r} models from `python -c \"import stanza; stanza.download('{lang}')\"`, which downloads them (run it "
        "where the internet is reachable, e.g. on a TPU VM, and point syntax.model at the model directory); "
        "offline, use syntax.trees='udpipe' with a model trained by `python -m xlt_jax.data.parse train --lang LANG`"
    )


class StanzaParser:
    """Stanza's tagger + parser for `lang` from `model_dir` ("" = Stanza's default directory)."""

    def __init__(self, lang: str, model_dir: str | os.PathLike = ""):
        try:
            import stanza
        except ImportError:
            raise _unavailable(lang, "the stanza package is not installed") from None
        directory = os.fspath(model_dir) if model_dir else None
        try:
            self._pipeline = stanza.Pipeline(lang, dir=directory, processors=PROCESSORS, tokenize_pretokenized=True,
                                             download_method=None, logging_level="WARN")
        except Exception as e:  # Stanza raises several types for missing resources; all mean "no model here"
            raise _unavailable(lang, f"its models are not installed ({type(e).__name__}: {e})") from e
        self.model_hash = f"stanza-{stanza.__version__}-{lang}-{_resources_hash(directory, lang)}"
        self.name = f"stanza:{lang}"

    def parse(self, words_list: Sequence[Sequence[str]]) -> list[Sentence]:
        doc = self._pipeline([list(words) for words in words_list])
        return [
            Sentence(sent_id=None, text=None, forms=[w.text for w in s.words], upos=[w.upos for w in s.words],
                     heads=np.array([w.head for w in s.words], dtype=np.int32), deprels=[w.deprel for w in s.words])
            for s in doc.sentences
        ]


def _resources_hash(directory: str | None, lang: str) -> str:
    """Hash of the installed models' files list (sizes and names), so a model update is a new cache key."""
    import stanza

    root = pathlib.Path(directory or stanza.resources.common.DEFAULT_MODEL_DIR) / lang
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.pt")):
        digest.update(f"{path.relative_to(root)}:{path.stat().st_size}".encode())
    return digest.hexdigest()[:12]
