"""NLI pairs: XTREME's XNLI tsv files (+ separate test labels) and the SICK corpus."""

from __future__ import annotations

import os
from dataclasses import dataclass

from xlt_jax.data.io import open_lines
from xlt_jax.errors import ConfigError, DataFormatError

NLI_LABELS = ("entailment", "neutral", "contradiction")
# XNLI-1.0 spells the third class `contradictory`; XTREME renamed it. Accept both, return ours.
_LABEL_ALIASES = {"contradictory": "contradiction"}
SICK_SPLITS = ("TRAIN", "TRIAL", "TEST")
_SICK_COLUMNS = ("sentence_A", "sentence_B", "entailment_label", "SemEval_set")


@dataclass
class NLIExample:
    premise: str
    hypothesis: str
    label: str | None


def read_xnli(path: str | os.PathLike, labels_path: str | os.PathLike | None = None) -> list[NLIExample]:
    """Rows `premise<TAB>hypothesis[<TAB>label]` of an XTREME `xnli/{dev,test}-<lang>.tsv` file.

    Quirks: lines end with CRLF (stripped by `open_lines`, so labels carry no `\\r`); test files have no
    label column (label None) unless `labels_path` gives one label per line in row order, e.g.
    `xnli/test_labels_from_xglue_de.txt` (valid for every language: all test files share one row order).
    A row-count mismatch with the labels file, or a label disagreeing with one already in the row,
    is an error naming both files. Sentences are whitespace-stripped (XGLUE's copy of the German test
    set indents three premises that XTREME's copy does not).
    """
    examples: list[NLIExample] = []
    num_columns = 0  # 3 = labelled, 2 = unlabelled; decided by the first row, then required of all
    for lineno, line in open_lines(path):
        columns = line.split("\t")
        if not num_columns:
            num_columns = len(columns)
            if num_columns not in (2, 3):
                raise DataFormatError(
                    path, lineno, f"expected 'premise<TAB>hypothesis[<TAB>label]', got {num_columns} columns"
                )
        elif len(columns) != num_columns:
            raise DataFormatError(
                path, lineno, f"expected {num_columns} tab-separated columns like line 1, got {len(columns)}"
            )
        premise, hypothesis = columns[0].strip(), columns[1].strip()
        if not premise or not hypothesis:
            raise DataFormatError(path, lineno, "empty premise or hypothesis")
        label = _parse_label(columns[2], path, lineno) if num_columns == 3 else None
        examples.append(NLIExample(premise, hypothesis, label))
    if labels_path is not None:
        _attach_labels(examples, path, labels_path)
    return examples


def read_sick(path: str | os.PathLike, split: str = "TRAIN") -> list[NLIExample]:
    """Pairs of one SemEval split (`TRAIN`, `TRIAL` or `TEST`) of `SICK.txt`, labels lower-cased.

    Quirks: a tab-separated header names the columns (looked up by name, not position); labels are
    upper-case `ENTAILMENT`/`NEUTRAL`/`CONTRADICTION`; the split is the `SemEval_set` column; CRLF ends.
    """
    split = split.upper()
    if split not in SICK_SPLITS:
        raise ConfigError(f"split: SICK has splits {SICK_SPLITS}, got {split!r}")
    lines = open_lines(path)
    header = next(lines, (1, ""))[1].split("\t")
    missing = [name for name in _SICK_COLUMNS if name not in header]
    if missing:
        raise DataFormatError(path, 1, f"header lacks column(s) {missing}; got {header}")
    a, b, label_col, split_col = (header.index(name) for name in _SICK_COLUMNS)
    examples = []
    for lineno, line in lines:
        columns = line.split("\t")
        if len(columns) != len(header):
            raise DataFormatError(
                path, lineno, f"expected {len(header)} columns like the header, got {len(columns)}"
            )
        if columns[split_col] not in SICK_SPLITS:
            raise DataFormatError(path, lineno, f"unknown SemEval_set {columns[split_col]!r}")
        if columns[split_col] != split:
            continue
        premise, hypothesis = columns[a].strip(), columns[b].strip()
        if not premise or not hypothesis:
            raise DataFormatError(path, lineno, "empty sentence_A or sentence_B")
        label = _parse_label(columns[label_col].lower(), path, lineno)
        examples.append(NLIExample(premise, hypothesis, label))
    return examples


def _parse_label(label: str, path: str | os.PathLike, lineno: int) -> str:
    label = _LABEL_ALIASES.get(label, label)
    if label not in NLI_LABELS:
        raise DataFormatError(path, lineno, f"unknown label {label!r}; expected one of {NLI_LABELS}")
    return label


def _attach_labels(
    examples: list[NLIExample], path: str | os.PathLike, labels_path: str | os.PathLike
) -> None:
    """Set `examples[i].label` from line i of `labels_path` (checking agreement where already labelled)."""
    labels = [(lineno, _parse_label(line, labels_path, lineno)) for lineno, line in open_lines(labels_path)]
    if len(labels) != len(examples):
        # Name the first line without a partner, in the longer file (row i of the rows file is line i).
        longer = labels_path if len(labels) > len(examples) else path
        raise DataFormatError(
            longer,
            min(len(labels), len(examples)) + 1,
            f"{os.fspath(labels_path)} has {len(labels)} labels but {os.fspath(path)} has {len(examples)} rows; "
            "the files must align row by row",
        )
    for example, (lineno, label) in zip(examples, labels, strict=True):
        if example.label is not None and example.label != label:
            raise DataFormatError(
                labels_path,
                lineno,
                f"label {label!r} disagrees with {example.label!r} at {os.fspath(path)}:{lineno}",
            )
        example.label = label
