"""Token-per-line tagging files: XTREME UD-POS tsv and WikiANN / PAN-X NER.

Both are `token<TAB>tag` lines with sentences separated by blank lines. Files differ in whether a blank
line also follows the last sentence (WikiANN originals) or not (XTREME output); both are accepted, and
runs of blank lines never produce empty sentences. Files without a tag column (XTREME strips test tags,
e.g. `wikiann/fr/test.tsv`) give `tags=None`; whether a file is tagged is decided by its first token line
and must then hold for every line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from xlt_jax.data.io import open_lines
from xlt_jax.errors import DataFormatError

UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip
NER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

# PAN-X language codes: `en`, `ace`, `simple`, `zh-min-nan`, `be-x-old`, ...
_LANG_PREFIX = re.compile(r"[a-z]+(?:-[a-z]+)*:")


@dataclass
class TaggedSentence:
    tokens: list[str]
    tags: list[str] | None


def read_udpos_tsv(path: str | os.PathLike) -> Iterator[TaggedSentence]:
    """Sentences of an XTREME `udpos/<split>-<lang>.tsv` file (tags must be one of the 17 UPOS tags)."""
    return _read_token_tag_lines(path, frozenset(UPOS_TAGS), strip_lang_prefix=False)


def read_wikiann(path: str | os.PathLike) -> Iterator[TaggedSentence]:
    """Sentences of a WikiANN / PAN-X file, original (`en:token`) or XTREME-processed (`token`).

    Quirk: the original files prefix every token with its language and tokens may themselves be `:` or
    contain `:` (`en::`, `en:3:15`), so the prefix is cut at the FIRST colon only. A file counts as
    prefixed when its first token line starts with `<lang>:`; every later line must then carry the same
    prefix (so an unprefixed file never loses part of a `3:15` token silently).
    """
    return _read_token_tag_lines(path, frozenset(NER_TAGS), strip_lang_prefix=True)


def _read_token_tag_lines(
    path: str | os.PathLike, valid_tags: frozenset[str], *, strip_lang_prefix: bool
) -> Iterator[TaggedSentence]:
    num_columns = 0  # decided by the first token line: 2 = tagged, 1 = tokens only
    prefix = ""
    tokens: list[str] = []
    tags: list[str] = []
    for lineno, line in open_lines(path):
        if not line:
            if tokens:
                yield TaggedSentence(tokens, tags if num_columns == 2 else None)
                tokens, tags = [], []
            continue
        columns = line.split("\t")
        if not num_columns:
            num_columns = len(columns)
            if num_columns not in (1, 2):
                raise DataFormatError(
                    path, lineno, f"expected 'token<TAB>tag' or 'token', got {num_columns} columns"
                )
            if strip_lang_prefix:
                match = _LANG_PREFIX.match(columns[0])
                prefix = match.group(0) if match else ""
        elif len(columns) != num_columns:
            raise DataFormatError(
                path,
                lineno,
                f"expected {num_columns} tab-separated column(s) like the first token line, "
                f"got {len(columns)}",
            )
        token = columns[0]
        if prefix:
            if not token.startswith(prefix):
                raise DataFormatError(path, lineno, f"token {token!r} lacks the language prefix {prefix!r}")
            token = token[len(prefix) :]
        if not token.strip():
            raise DataFormatError(path, lineno, "empty token")
        tokens.append(token)
        if num_columns == 2:
            tag = columns[1]
            if tag not in valid_tags:
                raise DataFormatError(
                    path, lineno, f"unknown tag {tag!r}; expected one of {sorted(valid_tags)}"
                )
            tags.append(tag)
    if tokens:
        yield TaggedSentence(tokens, tags if num_columns == 2 else None)
