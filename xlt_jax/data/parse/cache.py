"""Parses cached as CoNLL-U: `$XLT_CACHE_DIR/parses/<model hash>/<input hash>.conllu.gz`.

A cached file is the parse of one list of sentences by one model, so the key is (model hash, input hash):
another model, or one word changed anywhere, is another file. Parsing a pretraining corpus takes minutes
and a task split seconds; both are read back in a fraction of that. Files are written atomically, and a
file whose words do not match its input (edited, truncated, corrupt) counts as missing and is rewritten.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import tempfile
from collections.abc import Sequence

import numpy as np

from xlt_jax.data.readers.conllu import Sentence, read_conllu, write_conllu
from xlt_jax.errors import DataFormatError

SUBDIR = "parses"


def default_root() -> pathlib.Path:
    """`$XLT_CACHE_DIR/parses`, default `~/.cache/xlt_jax/parses`."""
    root = os.environ.get("XLT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "xlt_jax")
    return pathlib.Path(root) / SUBDIR


def input_hash(words_list: Sequence[Sequence[str]]) -> str:
    """Identity of the input: every word, sentence boundaries included (words never hold tabs or newlines)."""
    digest = hashlib.sha256()
    for words in words_list:
        digest.update("\t".join(words).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:32]


class ParseCache:
    """Cached parses under `root` (default `default_root()`), keyed by (model hash, input hash)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = pathlib.Path(root) if root is not None else default_root()

    def path(self, model_hash: str, words_list: Sequence[Sequence[str]]) -> pathlib.Path:
        return self.root / model_hash / f"{input_hash(words_list)}.conllu.gz"

    def load(self, model_hash: str, words_list: Sequence[Sequence[str]]) -> list[Sentence] | None:
        """The cached trees of `words_list` (an empty sentence gets an empty tree), or None."""
        path = self.path(model_hash, words_list)
        if not path.is_file():
            return None
        try:
            stored = {s.sent_id: s for s in read_conllu(path)}
        except (DataFormatError, OSError, EOFError) as e:
            logging.warning("parse cache %s is unreadable (%s); parsing again", path, e)
            return None
        trees = [stored.get(str(i)) if words else empty_tree() for i, words in enumerate(words_list)]
        if any(t is None or t.forms != list(w) for t, w in zip(trees, words_list, strict=True)):
            logging.warning("parse cache %s does not hold the parse of its input; parsing again", path)
            return None
        return trees

    def save(self, model_hash: str, words_list: Sequence[Sequence[str]], trees: Sequence[Sentence]) -> pathlib.Path:
        """Write the trees (`sent_id` = index in `words_list`; empty sentences are implied, not written)."""
        path = self.path(model_hash, words_list)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".conllu.gz", dir=path.parent)
        os.close(fd)
        try:
            write_conllu((_with_id(t, i) for i, t in enumerate(trees) if len(t)), tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path


def empty_tree() -> Sentence:
    """The tree of a sentence without words."""
    return Sentence(sent_id=None, text=None, forms=[], upos=[], heads=np.zeros(0, np.int32), deprels=[])


def _with_id(tree: Sentence, i: int) -> Sentence:
    return Sentence(sent_id=str(i), text=None, forms=tree.forms, upos=tree.upos, heads=tree.heads,
                    deprels=tree.deprels)
