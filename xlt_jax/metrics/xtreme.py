"""Score prediction files in XTREME's formats, with the semantics of XTREME's `evaluate.py`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from xlt_jax.data.io import open_lines, read_text
from xlt_jax.errors import DataFormatError
from xlt_jax.metrics.classification import accuracy
from xlt_jax.metrics.qa import golds_from_squad_json, mlqa_em_f1, squad_em_f1
from xlt_jax.metrics.retrieval import bucc_f1
from xlt_jax.metrics.tagging import seqeval_f1

TASKS = ("udpos", "panx", "xnli", "pawsx", "xquad", "mlqa", "tydiqa", "tatoeba", "bucc2018")


def read_tag_file(path: str | os.PathLike) -> list[list[str]]:
    """Tag sequences, one tag per line and a blank line between sentences (XTREME `read_tag`).

    Lines with tabs (`token<TAB>tag`, the data files themselves) contribute their last column; on
    tag-only files this is exactly XTREME's reader.
    """
    sentences: list[list[str]] = []
    current: list[str] = []
    for _, line in open_lines(path):
        line = line.strip()
        if line:
            current.append(line.rsplit("\t", 1)[-1])
        else:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def read_label_file(path: str | os.PathLike) -> list[str]:
    """One label per line, stripped (XTREME `read_label`)."""
    return [line.strip() for _, line in open_lines(path)]


def _read_json(path: str | os.PathLike):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from e


def _score_tagging(pred: str, gold: str, lang: str | None) -> dict[str, float]:
    predictions, labels = read_tag_file(pred), read_tag_file(gold)
    if len(predictions) != len(labels):
        raise DataFormatError(pred, None, f"{len(predictions)} sentences, but {gold} has {len(labels)}")
    return seqeval_f1(labels, predictions)


def _score_labels(pred: str, gold: str, lang: str | None) -> dict[str, float]:
    predictions, labels = read_label_file(pred), read_label_file(gold)
    if len(predictions) != len(labels):
        raise DataFormatError(pred, None, f"{len(predictions)} lines, but {gold} has {len(labels)}")
    return accuracy(labels, predictions)


def _score_bucc(pred: str, gold: str, lang: str | None) -> dict[str, float]:
    return bucc_f1(read_label_file(gold), read_label_file(pred))


def _squad_golds(gold: str) -> dict[str, list[str]]:
    dataset = _read_json(gold)
    articles = dataset["data"] if isinstance(dataset, dict) and "data" in dataset else dataset
    return golds_from_squad_json(articles)


def _score_squad(pred: str, gold: str, lang: str | None) -> dict[str, float]:
    return squad_em_f1(_squad_golds(gold), _read_json(pred))


def _score_mlqa(pred: str, gold: str, lang: str | None) -> dict[str, float]:
    if lang is None:
        raise ValueError("mlqa scoring needs the language (--lang)")
    return mlqa_em_f1(_squad_golds(gold), _read_json(pred), lang)


_SCORERS: dict[str, Callable[[str, str, str | None], dict[str, float]]] = {
    "udpos": _score_tagging,
    "panx": _score_tagging,
    "xnli": _score_labels,
    "pawsx": _score_labels,
    "tatoeba": _score_labels,
    "bucc2018": _score_bucc,
    "xquad": _score_squad,
    "tydiqa": _score_squad,
    "mlqa": _score_mlqa,
}


def score_files(
    task: str, predictions: str | os.PathLike, labels: str | os.PathLike, lang: str | None = None
) -> dict[str, float]:
    """Metrics (x100) of one prediction file against its label file, for one XTREME task."""
    if task not in _SCORERS:
        raise ValueError(f"unknown XTREME task {task!r}; known: {', '.join(TASKS)}")
    result = _SCORERS[task](os.fspath(predictions), os.fspath(labels), lang)
    if task in ("xquad", "mlqa", "tydiqa"):
        result["metric"] = (result["exact_match"] + result["f1"]) / 2
    else:
        result["metric"] = result.get("f1", result.get("accuracy"))
    return result
