"""SQuAD v1.1-format question answering files (SQuAD dev, XQuAD), plain or gzipped JSON."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from xlt_jax.data.io import read_text
from xlt_jax.errors import DataFormatError


@dataclass
class QAExample:
    id: str
    title: str
    context: str
    question: str
    answers: list[tuple[str, int]]  # (answer text, character offset into context)


def read_squad(path: str | os.PathLike) -> list[QAExample]:
    """One example per question, in file order; dev questions may carry several reference answers.

    Checks what later stages rely on: every field is present with the right type and every
    `answer_start` points at its answer text in the context. Invalid JSON names file, line and column;
    a missing or wrong field names the file, the JSON path (`data[3].paragraphs[0].qas[2]`) and the
    question id when known. (JSON gives no line numbers after parsing, hence the path.)
    """
    text = read_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"invalid JSON at column {e.colno}: {e.msg}") from e
    except (ValueError, RecursionError) as e:  # a number over Python's digit limit; nesting deeper than the stack
        raise DataFormatError(path, None, f"invalid JSON: {e}") from e
    examples = []
    for i, article in enumerate(_field(document, "data", list, path, "")):
        where_article = f"data[{i}]"
        title = _field(article, "title", str, path, where_article)
        for j, paragraph in enumerate(_field(article, "paragraphs", list, path, where_article)):
            where_paragraph = f"{where_article}.paragraphs[{j}]"
            context = _field(paragraph, "context", str, path, where_paragraph)
            for k, qa in enumerate(_field(paragraph, "qas", list, path, where_paragraph)):
                where_qa = f"{where_paragraph}.qas[{k}]"
                qid = _field(qa, "id", str, path, where_qa)
                where_qa += f" (question id {qid!r})"
                question = _field(qa, "question", str, path, where_qa)
                answers = [
                    _answer(answer, context, path, f"{where_qa}.answers[{m}]")
                    for m, answer in enumerate(_field(qa, "answers", list, path, where_qa))
                ]
                examples.append(QAExample(qid, title, context, question, answers))
    return examples


def _answer(answer: Any, context: str, path: str | os.PathLike, where: str) -> tuple[str, int]:
    text = _field(answer, "text", str, path, where)
    start = _field(answer, "answer_start", int, path, where)
    if not text:  # it would "match" at any offset, even past the end of the context
        raise DataFormatError(path, None, f"{where}.text: empty answer")
    if context[start : start + len(text)] != text or start < 0:
        found = context[max(start, 0) : max(start, 0) + len(text)]
        raise DataFormatError(
            path, None, f"{where}: answer_start {start} points at {found!r}, not at the answer text {text!r}"
        )
    return text, start


def _field(obj: Any, key: str, kind: type, path: str | os.PathLike, where: str) -> Any:
    """`obj[key]`, or an error naming the JSON path when it is missing or of the wrong type."""
    location = f"{where}.{key}" if where else key
    if not isinstance(obj, dict):
        got = type(obj).__name__
        raise DataFormatError(path, None, f"{where or 'top level'}: expected a JSON object, got {got}")
    if key not in obj:
        raise DataFormatError(path, None, f"missing field {location!r}")
    value = obj[key]
    # bool is an int subclass in Python, but `true` is no character offset.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        got = type(value).__name__
        raise DataFormatError(path, None, f"field {location!r} should be {kind.__name__}, got {got}")
    return value
