"""Extractive QA (SQuAD v1.1, XQuAD): stride windows, span labels and answer post-processing.

Features (REFERENCE_SPEC §4.5, HF `run_qa` semantics). A row is `<s> question </s></s> window </s>`:
the question (leading whitespace stripped, at most `max_query_len` pieces) comes first, then a window of
the context. Windows hold `max_len - len(question) - 4` context pieces and overlap by `doc_stride` pieces
(HF's tokenizer `stride`), until one reaches the end of the context. `offset_mapping [F, L, 2]` gives every
context position its character span `[begin, end)` in the ORIGINAL context (-1 elsewhere); `max_context`
marks the positions whose window is their max-context window (BERT's `_check_is_max_context`: the window
where the token has the most context on its shorter side, plus 0.01 x window length; first on ties).
Span labels (`start_positions`, `end_positions`) use the first gold answer; a window that does not hold
the whole answer is labelled with the `<s>` index 0.

Transformations go through `Transform.apply_qa`: only inversion and transliteration are allowed (perm and
syntax raise `TransformError`). Under inversion question and window are reversed separately, span labels
swap (`start' = map[end]`), and offsets, context and max-context flags are permuted with the tokens, so
each position still points at its characters in the original context.

Post-processing (`postprocess`): per feature the `n_best` highest start and end logits; candidates with a
position outside the context, end < start (in the feature's own index space), more than `max_answer_len`
pieces, or whose first ORIGINAL token is not at its max-context window are dropped; the score is
start + end logit; the best candidate over all features of an example wins (first on ties). The answer is
`context[offsets[start][0]:offsets[end][1]]`, or under inversion `context[offsets[end][0]:offsets[start][1]]`
(REFERENCE_SPEC §1.2), always a substring of the original context in original order. Checking max context
on the span's first original token (the end index in reversed space) makes identical predictions give
identical answers with and without inversion.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from xlt_jax.data.tasks import encoding
from xlt_jax.data.tasks.base import DEFAULT_BUCKET, Features, TaskData, bucket_length, part_keys
from xlt_jax.data.tasks.sources import LoadedSplit
from xlt_jax.data.transforms.qa import char_span
from xlt_jax.data.vocab import SPECIALS
from xlt_jax.errors import ConfigError

QUESTION_OFFSET = 1  # <s>
NUM_SPECIALS = 4  # <s> question </s></s> window </s>


def window_starts(num_tokens: int, capacity: int, doc_stride: int) -> list[int]:
    """First context piece of every window: windows of `capacity` pieces overlapping by `doc_stride`."""
    step = capacity - doc_stride
    starts = [0]
    while starts[-1] + capacity < num_tokens:
        starts.append(starts[-1] + step)
    return starts


@functools.lru_cache(maxsize=4096)
def max_context_window(num_tokens: int, starts: tuple[int, ...], capacity: int) -> np.ndarray:
    """For every context piece, the index of the window in which it has the most context (BERT's rule).

    Cached: questions on one paragraph share it whenever their lengths give the same windows.
    """
    pos = np.arange(num_tokens)[None, :]
    begin = np.asarray(starts)[:, None]
    length = np.minimum(begin + capacity, num_tokens) - begin
    inside = (pos >= begin) & (pos < begin + length)
    score = np.minimum(pos - begin, begin + length - 1 - pos) + 0.01 * length
    best = np.argmax(np.where(inside, score, -np.inf), axis=0)
    best.setflags(write=False)  # shared through the cache
    return best


def answer_token_span(offsets: np.ndarray, start_char: int, end_char: int) -> tuple[int, int]:
    """First and last context piece covering characters `[start_char, end_char)`, (-1, -1) if none.

    As HF's `run_qa`: the start is the last piece beginning at or before `start_char`, the end the first
    piece ending at or after `end_char`.
    """
    if not len(offsets):
        return -1, -1
    start = int(np.searchsorted(offsets[:, 0], start_char, side="right")) - 1
    end = int(np.searchsorted(offsets[:, 1], end_char, side="left"))
    if start < 0 or end >= len(offsets) or end < start:
        return -1, -1
    return start, end


def featurize(
    loaded: LoadedSplit,
    tokenizer: Any,
    *,
    transform: Any,
    seed: int,
    max_len: int,
    doc_stride: int = 128,
    max_query_len: int = 64,
    bucket: int = DEFAULT_BUCKET,
) -> TaskData:
    """Windowed QA features; see the module docstring for the fields."""
    if max_len - max_query_len - NUM_SPECIALS <= doc_stride:
        raise ConfigError(
            f"doc_stride: {doc_stride} must be smaller than the window (max_len {max_len} - max_query_len "
            f"{max_query_len} - {NUM_SPECIALS} specials)"
        )
    examples = loaded.examples
    questions = [q[:max_query_len] for q in tokenizer.encode_batch([e.question.lstrip() for e in examples])]
    context_index: dict[str, int] = {}
    for e in examples:
        context_index.setdefault(e.context, len(context_index))
    contexts = encoding.encode_with_offsets(tokenizer, list(context_index))

    rows: list[np.ndarray] = []
    offset_rows: list[np.ndarray] = []
    max_ctx_rows: list[np.ndarray] = []
    example_of_row: list[int] = []
    window_of_row: list[int] = []
    spans: list[tuple[int, int]] = []
    unanswerable = 0
    for i, example in enumerate(examples):
        question = questions[i]
        ctx_ids, ctx_offsets = contexts[context_index[example.context]]
        capacity = max_len - len(question) - NUM_SPECIALS
        starts = window_starts(len(ctx_ids), capacity, doc_stride)
        best_window = max_context_window(len(ctx_ids), tuple(starts), capacity)
        answer = (-1, -1)
        if example.answers:
            text, start_char = example.answers[0]
            answer = answer_token_span(ctx_offsets, start_char, start_char + len(text))
            unanswerable += answer[0] < 0
        context_begin = QUESTION_OFFSET + len(question) + 2
        for k, s in enumerate(starts):
            e = min(s + capacity, len(ctx_ids))
            rows.append(np.concatenate([[SPECIALS.bos], question, [SPECIALS.eos, SPECIALS.eos], ctx_ids[s:e],
                                        [SPECIALS.eos]]).astype(np.int32))  # fmt: skip
            offsets = np.full((len(rows[-1]), 2), -1, np.int64)
            offsets[context_begin : context_begin + e - s] = ctx_offsets[s:e]
            offset_rows.append(offsets)
            flags = np.zeros(len(rows[-1]), np.int8)
            flags[context_begin : context_begin + e - s] = best_window[s:e] == k
            max_ctx_rows.append(flags)
            example_of_row.append(i)
            window_of_row.append(k)
            inside = answer[0] >= s and 0 <= answer[1] < e
            spans.append((context_begin + answer[0] - s, context_begin + answer[1] - s) if inside else (0, 0))

    width = bucket_length(max((len(r) for r in rows), default=NUM_SPECIALS), bucket=bucket, max_len=max_len)
    input_ids = _stack(rows, width, SPECIALS.pad)
    offsets = _stack(offset_rows, width, -1)
    max_context = _stack(max_ctx_rows, width, 0)
    example_ids = np.asarray(example_of_row, np.int64)
    keys = part_keys(example_ids, np.asarray(window_of_row))
    span_array = np.asarray(spans, np.int64).reshape(-1, 2)

    feats = transform.apply_qa(
        input_ids,
        seed=seed,
        example_ids=keys,
        start_positions=span_array[:, 0],
        end_positions=span_array[:, 1],
        offsets=offsets,
    )
    max_context = np.take_along_axis(max_context, feats.index_map, axis=1)
    features = Features(
        arrays={
            "input_ids": np.asarray(feats.input_ids, np.int32),
            "attention_mask": (np.asarray(feats.input_ids) != SPECIALS.pad).astype(np.int32),
            "start_positions": np.asarray(feats.start_positions, np.int32),
            "end_positions": np.asarray(feats.end_positions, np.int32),
            "example_id": example_ids,
            "window": np.asarray(window_of_row, np.int32),
            "offset_mapping": np.asarray(feats.offsets, np.int32),
            "max_context": max_context,
        },
        model_keys=("input_ids", "attention_mask", "start_positions", "end_positions"),
        sequence_keys=("input_ids", "attention_mask", "offset_mapping", "max_context"),
    )
    stats = {
        "questions": len(examples),
        "paragraphs": len(context_index),
        "features": len(rows),
        "split_questions": int(np.count_nonzero(np.bincount(example_ids, minlength=len(examples)) > 1)),
        "answer_not_found": int(unanswerable),
        "features_without_answer": int(np.count_nonzero(span_array[:, 0] == 0)),
        **loaded.notes,
    }
    return TaskData(
        task=loaded.task,
        lang=loaded.lang,
        split=loaded.split,
        transform=transform.name,
        source=loaded.description,
        features=features,
        examples=examples,
        stats=stats,
        extra={"inverted": bool(feats.inverted), "doc_stride": doc_stride, "max_query_len": max_query_len},
    )


def _stack(rows: list[np.ndarray], width: int, fill: int) -> np.ndarray:
    first = rows[0] if rows else np.zeros(0, np.int32)
    out = np.full((len(rows), width, *first.shape[1:]), fill, first.dtype)
    for r, row in enumerate(rows):
        out[r, : len(row)] = row
    return out


def _fit(logits: np.ndarray, width: int) -> np.ndarray:
    """Logits `[F, L']` padded with -inf (or cropped) to the stored feature width."""
    logits = np.asarray(logits, np.float64)
    if logits.shape[1] < width:
        logits = np.concatenate([logits, np.full((len(logits), width - logits.shape[1]), -np.inf)], axis=1)
    return logits[:, :width]


def best_spans(
    data: TaskData,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best: int = 20,
    max_answer_len: int = 30,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per feature the best valid `(start, end)` positions and their score (-inf when none is valid)."""
    features = data.features
    if len(start_logits) != len(features) or len(end_logits) != len(features):
        raise ValueError(f"{len(start_logits)}/{len(end_logits)} logit rows for {len(features)} features")
    width = features.max_len
    start_logits, end_logits = _fit(start_logits, width), _fit(end_logits, width)
    n = min(n_best, width)
    top_start = np.argsort(-start_logits, axis=1, kind="stable")[:, :n]
    top_end = np.argsort(-end_logits, axis=1, kind="stable")[:, :n]
    s, e = top_start[:, :, None], top_end[:, None, :]
    rows = np.arange(len(features))[:, None, None]
    in_context = features["offset_mapping"][..., 0] >= 0
    first_original = e if data.extra.get("inverted", False) else s
    valid = (
        in_context[rows, s]
        & in_context[rows, e]
        & (e >= s)
        & (e - s + 1 <= max_answer_len)
        & (features["max_context"][rows, first_original] > 0)
    )
    score = np.where(valid, start_logits[rows, s] + end_logits[rows, e], -np.inf).reshape(len(features), -1)
    best = np.argmax(score, axis=1)  # first maximum: start-major, as HF's nested loops
    return (
        top_start[np.arange(len(features)), best // n],
        top_end[np.arange(len(features)), best % n],
        (score[np.arange(len(features)), best]),
    )


def postprocess(
    data: TaskData,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best: int = 20,
    max_answer_len: int = 30,
) -> dict[str, str]:
    """`{question id: predicted answer text}` from per-feature logits (rows in feature order, no padding).

    Logit rows may be shorter than the stored width (batches cropped to a bucket); missing positions are
    treated as -inf. A question without any valid candidate gets the empty string.
    """
    starts, ends, scores = best_spans(data, start_logits, end_logits, n_best=n_best, max_answer_len=max_answer_len)
    features = data.features
    example_ids = features["example_id"]
    inverted = data.extra.get("inverted", False)
    # Best feature per example: highest score, first feature on ties (order: score desc, then feature index).
    order = np.lexsort((np.arange(len(features)), -scores, example_ids))
    first = order[np.r_[True, example_ids[order][1:] != example_ids[order][:-1]]] if len(order) else order
    answers = {e.id: "" for e in data.examples}
    for f in first.tolist():
        if scores[f] == -np.inf:
            continue
        example = data.examples[int(example_ids[f])]
        a, b = char_span(features["offset_mapping"][f], int(starts[f]), int(ends[f]), inverted=inverted)
        answers[example.id] = example.context[a:b]
    return answers


def gold_answers(data: TaskData) -> dict[str, list[str]]:
    return {e.id: [text for text, _ in e.answers] for e in data.examples}


def score(data: TaskData, start_logits: np.ndarray, end_logits: np.ndarray, **kwargs: Any) -> dict[str, float]:
    """SQuAD v1.1 exact match and F1 (x100) of the post-processed predictions."""
    from xlt_jax.metrics.qa import squad_em_f1

    return squad_em_f1(gold_answers(data), postprocess(data, start_logits, end_logits, **kwargs))
