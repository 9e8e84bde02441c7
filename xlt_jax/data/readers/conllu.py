"""CoNLL-U reader and writer: the gold UD trees behind POS tagging and the Syntax transformation.

Only the basic tree is kept (FORM, UPOS, HEAD, DEPREL); multiword-token range lines (`1-2`) and empty
nodes of the enhanced graph (`8.1`) are skipped. Hand-written rather than using the `conllu` package
because it is not in the environment, it parses every column into dicts (several times slower on
EWT train), and we want errors that name the file and line.
"""

from __future__ import annotations

import functools
import gzip
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from xlt_jax.data.io import open_lines
from xlt_jax.errors import DataFormatError

NUM_COLUMNS = 10
_SENT_ID_PREFIX = "# sent_id ="
_TEXT_PREFIX = "# text ="


@dataclass
class Sentence:
    """One syntactic sentence: words in surface order, HEAD as 1-based word ids with 0 for the root."""

    sent_id: str | None
    text: str | None
    forms: list[str]
    upos: list[str]
    heads: np.ndarray  # int32 [n]
    deprels: list[str]

    def __len__(self) -> int:
        return len(self.forms)


class _SentenceBuilder:
    """Collects the raw word rows of one sentence and validates them together when it ends.

    Validating per sentence with list comprehensions is about twice as fast as per word, and the row
    line numbers are kept so errors still name the offending line.
    """

    __slots__ = ("start_line", "sent_id", "text", "rows", "row_lines")

    def __init__(self, start_line: int):
        self.start_line = start_line
        self.sent_id: str | None = None
        self.text: str | None = None
        self.rows: list[list[str]] = []
        self.row_lines: list[int] = []

    def add_comment(self, line: str) -> None:
        if line.startswith(_SENT_ID_PREFIX):
            self.sent_id = line[len(_SENT_ID_PREFIX) :].strip()
        elif line.startswith(_TEXT_PREFIX):
            self.text = line[len(_TEXT_PREFIX) :].strip()

    def build(self, path: str) -> Sentence:
        rows, n = self.rows, len(self.rows)
        ids = [r[0] for r in rows]
        if ids != _id_strings(n):
            i = next(i for i, word_id in enumerate(ids) if word_id != str(i + 1))
            raise self._error(path, i, f"word ID {ids[i]!r} out of sequence (expected {i + 1})")
        forms = [r[1] for r in rows]
        if "" in forms:
            raise self._error(path, forms.index(""), "empty FORM")
        head_strings = [r[6] for r in rows]
        # ASCII digits only: int() would also take '٣', ' 3', '+3' or '1_0', and str.isdigit() takes '²'.
        bad = next((i for i, h in enumerate(head_strings) if not (h.isascii() and h.isdigit())), None)
        if bad is not None:
            raise self._error(path, bad, f"HEAD {head_strings[bad]!r} is not an integer in ASCII digits")
        heads = [int(h) for h in head_strings]
        if max(heads) > n:
            i = next(i for i, h in enumerate(heads) if not 0 <= h <= n)
            raise self._error(path, i, f"HEAD {heads[i]} outside [0, {n}] (sentence has {n} words)")
        i = _word_on_cycle(heads)
        if i is not None:
            what = "word is its own HEAD" if heads[i] == i + 1 else "HEAD links form a cycle (not a tree)"
            raise self._error(path, i, what)
        return Sentence(
            sent_id=self.sent_id,
            text=self.text,
            forms=forms,
            upos=[r[3] for r in rows],
            heads=np.array(heads, dtype=np.int32),
            deprels=[r[7] for r in rows],
        )

    def _error(self, path: str, word_index: int, message: str) -> DataFormatError:
        return DataFormatError(path, self.row_lines[word_index], message)


@functools.cache
def _id_strings(n: int) -> list[str]:
    return [str(i) for i in range(1, n + 1)]


def _word_on_cycle(heads: list[int]) -> int | None:
    """0-based index of a word whose HEAD chain never reaches the root, or None for a tree.

    Plain Python on purpose: each word is visited once, which beats per-sentence NumPy calls on the
    short arrays of a treebank (their call overhead dominated reading time).
    """
    walk = [0] * (len(heads) + 1)  # 0: unvisited; s: met on the walk from word s; -1: reaches the root
    walk[0] = -1
    for start in range(1, len(heads) + 1):
        node = start
        while walk[node] == 0:
            walk[node] = start
            node = heads[node - 1]
        if walk[node] == start:
            return node - 1
        node = start
        while walk[node] == start:
            walk[node] = -1
            node = heads[node - 1]
    return None


def read_conllu(path: str | os.PathLike) -> Iterator[Sentence]:
    """Sentences of a CoNLL-U file (plain or `.gz`), validating the basic tree.

    Raises `DataFormatError(path, line, ...)` for: a line without 10 tab-separated columns, word IDs not
    running 1..n, HEAD not an integer in [0, n] (`_` is only allowed on empty nodes), an empty FORM,
    HEAD links that form a cycle, comment lines without words, and a file that ends inside a sentence
    (missing final blank line or truncation). A corrupt gzip stream is reported by `open_lines`.
    """
    path = os.fspath(path)
    current: _SentenceBuilder | None = None
    last_line = 0
    for lineno, line in open_lines(path):
        last_line = lineno
        if not line:
            if current is not None:
                if not current.rows:
                    raise DataFormatError(path, lineno, "sentence has comment lines but no words")
                yield current.build(path)
                current = None
            continue
        if current is None:
            current = _SentenceBuilder(lineno)
        if line[0] == "#":
            current.add_comment(line)
            continue
        cols = line.split("\t")
        if len(cols) != NUM_COLUMNS:
            raise DataFormatError(
                path, lineno, f"expected {NUM_COLUMNS} tab-separated columns, got {len(cols)}"
            )
        word_id = cols[0]
        if "-" in word_id or "." in word_id:
            _check_skipped_line(path, lineno, word_id)
            continue
        current.rows.append(cols)
        current.row_lines.append(lineno)
    if current is not None:
        raise DataFormatError(
            path,
            last_line,
            f"file ends inside the sentence starting at line {current.start_line} "
            "(missing final blank line, or truncated file)",
        )


def _check_skipped_line(path: str, lineno: int, word_id: str) -> None:
    """Multiword-token ranges (`3-4`) and empty nodes (`8.1`) are skipped, but their ID must parse."""
    parts = word_id.split("-") if "-" in word_id else word_id.split(".")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise DataFormatError(path, lineno, f"malformed word ID {word_id!r}")


def format_conllu(sentence: Sentence) -> str:
    """One sentence as CoNLL-U text (columns we do not keep are `_`), ending with the blank line."""
    lines = []
    if sentence.sent_id is not None:
        lines.append(f"{_SENT_ID_PREFIX} {sentence.sent_id}")
    if sentence.text is not None:
        lines.append(f"{_TEXT_PREFIX} {sentence.text}")
    for i, (form, upos, head, deprel) in enumerate(
        zip(sentence.forms, sentence.upos, sentence.heads.tolist(), sentence.deprels, strict=True), start=1
    ):
        lines.append(f"{i}\t{form}\t_\t{upos}\t_\t_\t{head}\t{deprel}\t_\t_")
    return "\n".join(lines) + "\n\n"


def write_conllu(sentences: Iterable[Sentence], path: str | os.PathLike) -> int:
    """Write sentences as CoNLL-U (gzip if the name ends in `.gz`); returns the number written.

    Used to save derived treebanks (e.g. the Syntax transformation's reordered trees) in a format every
    UD tool reads back.
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    count = 0
    with opener(path, "wt", encoding="utf-8", newline="\n") as f:
        for sentence in sentences:
            f.write(format_conllu(sentence))
            count += 1
    return count
