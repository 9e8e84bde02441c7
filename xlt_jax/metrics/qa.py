"""SQuAD v1.1 and MLQA exact match / F1, with the normalisation of XTREME's third_party evaluators.

Re-implemented (a few lines each) rather than vendored: the official scripts are argparse programs, not
importable libraries, and MLQA's per-language rules are not packaged anywhere on PyPI.
"""

from __future__ import annotations

import collections
import functools
import re
import string
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping

_SQUAD_PUNCT = frozenset(string.punctuation)


@functools.cache
def _unicode_punct() -> frozenset[str]:
    """Every Unicode punctuation character (built on first use: scanning all code points takes seconds)."""
    return frozenset(
        chr(i) for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")
    ) | _SQUAD_PUNCT

_MLQA_ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "ar": r"\sال^|ال",
    "hi": None,
    "zh": None,
}
_WHITESPACE_LANGS = frozenset({"en", "es", "hi", "vi", "de", "ar"})
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def normalize_squad(text: str) -> str:
    """Lower-case, drop ASCII punctuation and English articles, collapse whitespace (SQuAD v1.1)."""
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _mixed_segmentation(text: str) -> list[str]:
    """MLQA's zh tokenisation: every CJK character and punctuation mark is a token."""
    out: list[str] = []
    buf = ""
    punct = _unicode_punct()
    for ch in text:
        if _CJK.search(ch) or ch in punct:
            out.extend(buf.split())
            buf = ""
            out.append(ch)
        else:
            buf += ch
    out.extend(buf.split())
    return out


def normalize_mlqa(text: str, lang: str) -> str:
    """MLQA normalisation: Unicode punctuation, per-language articles and segmentation."""
    if lang not in _MLQA_ARTICLES:
        raise ValueError(f"MLQA normalisation has no rules for language {lang!r}")
    punct = _unicode_punct()
    text = "".join(ch for ch in text.lower() if ch not in punct)
    if _MLQA_ARTICLES[lang]:
        text = re.sub(_MLQA_ARTICLES[lang], " ", text)
    tokens = text.split() if lang in _WHITESPACE_LANGS else _mixed_segmentation(text)
    return " ".join(t for t in tokens if t.strip())


def _f1(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = prediction.split(), gold.split()
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _em_f1(
    golds_by_id: Mapping[str, Iterable[str]],
    predictions: Mapping[str, str],
    normalize: Callable[[str], str],
) -> dict[str, float]:
    """Max over gold answers, mean over ALL questions (an unanswered one scores 0), x100."""
    if not golds_by_id:
        raise ValueError("no questions to score")
    em = f1 = 0.0
    for qid, golds in golds_by_id.items():
        if qid not in predictions:
            continue
        pred = normalize(predictions[qid])
        normed = [normalize(g) for g in golds]
        em += max(float(pred == g) for g in normed)
        f1 += max(_f1(pred, g) for g in normed)
    n = len(golds_by_id)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


def squad_em_f1(golds_by_id: Mapping[str, Iterable[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """SQuAD v1.1 EM and F1 (`third_party/evaluate_squad.py`)."""
    return _em_f1(golds_by_id, predictions, normalize_squad)


def mlqa_em_f1(
    golds_by_id: Mapping[str, Iterable[str]], predictions: Mapping[str, str], lang: str
) -> dict[str, float]:
    """MLQA EM and F1 with the language-aware normalisation (`third_party/evaluate_mlqa.py`)."""
    if lang not in _MLQA_ARTICLES:
        raise ValueError(f"MLQA normalisation has no rules for language {lang!r}")
    return _em_f1(golds_by_id, predictions, lambda s: normalize_mlqa(s, lang))


def golds_from_squad_json(data: list[dict]) -> dict[str, list[str]]:
    """`{question id: [gold answer texts]}` from the `data` list of a SQuAD-format file."""
    return {
        qa["id"]: [a["text"] for a in qa["answers"]]
        for article in data
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }
