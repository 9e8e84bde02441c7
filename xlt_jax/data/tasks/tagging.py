"""Token classification (UD POS, WikiANN NER): words in, one label per word out (REFERENCE_SPEC §4.4).

Features. Each word is encoded on its own (`encoding.encode_words`); the row is `<s> pieces </s>`. The
first piece of a word carries the word's label id, the other pieces -100. A parallel `word_index` array
holds the word's position in the ORIGINAL sentence on that first piece (-1 elsewhere).

Long sentences are split, as XTREME's `*_tokenize_preprocess` does: words are packed greedily into rows of
at most `max_len - 2` pieces, each row becomes its own feature (same `example_id`), and predictions are
stitched back through `word_index`. No word is lost; a single word longer than `max_len - 2` pieces keeps
its first pieces only (counted in `stats["truncated_words"]`).

Transformations. The word stage (syntax, `inv@word`, `perm@word`) runs on the words before tokenisation,
with the original word indices carried as its "tags". The id stage (sub-word `inv`/`perm`, `translit`)
runs on the padded rows with `(label, word_index)` stacked as the labels that travel with their tokens, so
after any reordering the labelled piece still carries its word's label and index. For NER the labels are
then re-canonicalised to BIO in the new order (REFERENCE_SPEC §1.2: the first tag of a run becomes `B-`).

Predictions. `word_predictions` maps per-position predictions back to words in original order through
`word_index`; `tag_sequences` lists gold and predicted tags in the order the model read the words (the
order the reference scores in). Under a reordering the gold NER tags are canonical BIO in that order, and
the predictions are scored as the model emitted them (`prediction_bio="as_emitted"`), as the paper's
`run_ner_synthetic_corrected_labels.py` does: a model that calls the wrong end of a reversed entity `B-`
loses that entity. `prediction_bio="repaired"` re-canonicalises the predictions too, which scores entity
types and extents only (a tagger emitting each word's original-order tag then scores 100 under `inv`;
as emitted it keeps only the single-word entities, since `I-X B-X` reads as two chunks).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from xlt_jax.data.readers.tagging import NER_TAGS, UPOS_TAGS
from xlt_jax.data.tasks import encoding
from xlt_jax.data.tasks.base import DEFAULT_BUCKET, IGNORE_INDEX, Features, TaskData, bucket_length, part_keys
from xlt_jax.data.tasks.sources import LoadedSplit
from xlt_jax.data.transforms import canonicalize_bio_ids
from xlt_jax.data.vocab import SPECIALS
from xlt_jax.errors import ConfigError

LABELS = {"pos": UPOS_TAGS, "ner": NER_TAGS}
# How predicted BIO tags are scored after a reordering (see the module docstring); the first is the default.
PREDICTION_BIO = ("as_emitted", "repaired")


def featurize(
    loaded: LoadedSplit,
    tokenizer: Any,
    *,
    transform: Any,
    seed: int,
    max_len: int,
    canonicalize_bio: bool = True,
    bucket: int = DEFAULT_BUCKET,
) -> TaskData:
    """Features of a POS or NER split; `transform` is a parsed `Transform` (see module docstring)."""
    if max_len < 3:
        raise ConfigError(f"max_len: {max_len} leaves no room for a word between <s> and </s>")
    task = loaded.task
    names = LABELS[task]
    label_id = {name: i for i, name in enumerate(names)}
    sentences = loaded.examples

    words, order = _word_stage(loaded, transform, seed)
    flat_words = [w for sentence_words in words for w in sentence_words]
    n_words = np.array([len(w) for w in words], dtype=np.int64)
    sentence_of_word = np.repeat(np.arange(len(words), dtype=np.int64), n_words)
    original_index = np.concatenate(order) if order else np.zeros(0, np.int64)
    tag_ids = np.array(
        [_tag_id(s.tags, i, label_id) for s, o in zip(sentences, order, strict=True) for i in o.tolist()],
        dtype=np.int64,
    )

    piece_ids, piece_counts = encoding.encode_words(tokenizer, flat_words)
    cap = max_len - 2
    kept_counts = np.minimum(piece_counts, cap)
    chunk = _chunk_words(kept_counts, sentence_of_word, n_words, cap)

    # One feature per (sentence, chunk), in sentence order.
    starts_feature = (np.diff(sentence_of_word, prepend=-1) != 0) | (np.diff(chunk, prepend=-1) != 0)
    feature_of_word = np.cumsum(starts_feature) - 1
    first_word = np.flatnonzero(starts_feature)
    num_features = len(first_word)
    feature_sentence = sentence_of_word[first_word]
    feature_chunk = chunk[first_word]

    # Position of each word's first piece: 1 + pieces of the earlier words of its feature.
    ends = np.cumsum(kept_counts)
    starts = ends - kept_counts
    feature_first_piece = starts[first_word]
    word_pos = 1 + starts - feature_first_piece[feature_of_word]
    feature_len = np.bincount(feature_of_word, weights=kept_counts, minlength=num_features).astype(np.int64) + 2
    width = bucket_length(int(feature_len.max(initial=2)), bucket=bucket, max_len=max(max_len, 2))

    # Token arrays: the kept pieces of every word, placed at word_pos + k.
    keep = _kept_piece_mask(piece_counts, kept_counts)
    word_of_piece = np.repeat(np.arange(len(flat_words)), kept_counts)
    within = np.arange(int(kept_counts.sum())) - np.repeat(starts, kept_counts)
    rows, cols = feature_of_word[word_of_piece], word_pos[word_of_piece] + within

    input_ids = np.full((num_features, width), SPECIALS.pad, np.int32)
    input_ids[:, 0] = SPECIALS.bos
    input_ids[rows, cols] = piece_ids[keep]
    input_ids[np.arange(num_features), feature_len - 1] = SPECIALS.eos
    carried = np.full((num_features, width, 2), IGNORE_INDEX, np.int64)
    carried[feature_of_word, word_pos, 0] = tag_ids
    carried[..., 1] = -1
    carried[feature_of_word, word_pos, 1] = original_index

    keys = part_keys(feature_sentence, feature_chunk)
    if transform.id_stage:
        input_ids, carried = transform.apply_ids(input_ids, seed=seed, example_ids=keys, labels=carried)
    labels, word_index = carried[..., 0], carried[..., 1]
    if task == "ner" and canonicalize_bio and transform.reorders:
        labels = canonicalize_bio_ids(labels, names)

    features = Features(
        arrays={
            "input_ids": np.asarray(input_ids, np.int32),
            "attention_mask": (np.asarray(input_ids) != SPECIALS.pad).astype(np.int32),
            "labels": labels.astype(np.int32),
            "word_index": word_index.astype(np.int32),
            "example_id": feature_sentence.astype(np.int64),
            "chunk": feature_chunk.astype(np.int32),
        },
        model_keys=("input_ids", "attention_mask", "labels"),
        sequence_keys=("input_ids", "attention_mask", "labels", "word_index"),
    )
    stats = {
        "sentences": len(sentences),
        "words": int(n_words.sum()),
        "features": num_features,
        "split_sentences": int(np.count_nonzero(np.bincount(feature_sentence, minlength=len(sentences)) > 1)),
        "truncated_words": int(np.count_nonzero(piece_counts > cap)),
        "pieces": int(kept_counts.sum()),
    }
    return TaskData(
        task=task,
        lang=loaded.lang,
        split=loaded.split,
        transform=transform.name,
        source=loaded.description,
        features=features,
        examples=sentences,
        label_names=tuple(names),
        stats=stats,
        extra={"reorders": bool(transform.reorders), "canonicalize_bio": canonicalize_bio},
    )


def _tag_id(tags: list[str] | None, index: int, label_id: dict[str, int]) -> int:
    return IGNORE_INDEX if tags is None else label_id[tags[index]]


def _word_stage(loaded: LoadedSplit, transform: Any, seed: int) -> tuple[list[list[str]], list[np.ndarray]]:
    """Words of every sentence after the word stage, and the original index of each (new order)."""
    words, order = [], []
    trees = loaded.trees
    for i, sentence in enumerate(loaded.examples):
        if transform.word_stage:
            new_words, carried = transform.apply_words(
                sentence.tokens,
                list(range(len(sentence.tokens))),
                seed=seed,
                example_id=i,
                sentence=None if trees is None else trees[i],
            )
            words.append(new_words)
            order.append(np.asarray(carried, dtype=np.int64))
        else:
            words.append(list(sentence.tokens))
            order.append(np.arange(len(sentence.tokens), dtype=np.int64))
    return words, order


def _chunk_words(counts: np.ndarray, sentence_of_word: np.ndarray, n_words: np.ndarray, cap: int) -> np.ndarray:
    """Chunk number of every word: words are packed greedily into chunks of at most `cap` pieces.

    Only sentences longer than `cap` pieces need the Python loop; the others are chunk 0 throughout.
    """
    chunk = np.zeros(len(counts), np.int64)
    totals = np.bincount(sentence_of_word, weights=counts, minlength=len(n_words))
    word_start = np.cumsum(n_words) - n_words
    for s in np.flatnonzero(totals > cap).tolist():
        begin = int(word_start[s])
        used = current = 0
        for k, n in enumerate(counts[begin : begin + int(n_words[s])].tolist()):
            if used + n > cap:
                current, used = current + 1, 0
            chunk[begin + k] = current
            used += n
    return chunk


def _kept_piece_mask(piece_counts: np.ndarray, kept_counts: np.ndarray) -> np.ndarray:
    """Mask over the flat piece array: the first `kept` pieces of every word."""
    within = np.arange(int(piece_counts.sum())) - np.repeat(np.cumsum(piece_counts) - piece_counts, piece_counts)
    return within < np.repeat(kept_counts, piece_counts)


# ------------------------------------------------------------------------------------------------------
# Predictions back to words


def _as_label_ids(predictions: np.ndarray, width: int) -> np.ndarray:
    """[F, L'] label ids (argmax over a trailing class axis if given), padded to the feature width."""
    predictions = np.asarray(predictions)
    if predictions.ndim == 3:
        predictions = predictions.argmax(axis=-1)
    if predictions.shape[1] < width:
        pad = np.full((predictions.shape[0], width - predictions.shape[1]), IGNORE_INDEX, predictions.dtype)
        predictions = np.concatenate([predictions, pad], axis=1)
    return predictions[:, :width]


def word_predictions(data: TaskData, predictions: np.ndarray) -> list[np.ndarray]:
    """Per sentence, the predicted label id of every word in ORIGINAL word order (-1 if never predicted).

    `predictions` is `[num_features, L']` label ids or `[num_features, L', num_labels]` logits, rows in
    feature order (drop the padding rows of the last batch first); `L'` may be shorter than the stored
    width when batches were cropped to a bucket, as long as no labelled piece was cut.
    """
    features = data.features
    if len(predictions) != len(features):
        raise ValueError(f"{len(predictions)} prediction rows for {len(features)} features")
    word_index = features["word_index"]
    preds = _as_label_ids(predictions, word_index.shape[1])
    n_words = np.array([len(s.tokens) for s in data.examples], dtype=np.int64)
    offset = np.cumsum(n_words) - n_words
    rows, cols = np.nonzero(word_index >= 0)
    flat = np.full(int(n_words.sum()), -1, np.int64)
    flat[offset[features["example_id"][rows]] + word_index[rows, cols]] = preds[rows, cols]
    return np.split(flat, np.cumsum(n_words)[:-1])


def reading_order(data: TaskData) -> list[np.ndarray]:
    """Per sentence, original word indices in the order the model read them (all features, in order)."""
    features = data.features
    word_index = features["word_index"]
    rows, cols = np.nonzero(word_index >= 0)  # row-major: features in order, positions left to right
    sentence = features["example_id"][rows]
    order = np.argsort(sentence, kind="stable")
    n_words = np.bincount(sentence, minlength=len(data.examples))
    return np.split(word_index[rows, cols][order].astype(np.int64), np.cumsum(n_words)[:-1])


def check_prediction_bio(prediction_bio: str) -> str:
    """`prediction_bio` itself, or a `ConfigError` naming the key and its valid values."""
    if prediction_bio not in PREDICTION_BIO:
        raise ConfigError(f"prediction_bio: {prediction_bio!r} is not one of {PREDICTION_BIO}")
    return prediction_bio


def tag_sequences(
    data: TaskData, word_preds: Sequence[np.ndarray], *, prediction_bio: str = PREDICTION_BIO[0]
) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tag sequences in reading order, ready for seqeval / token accuracy.

    For NER under a reordering the gold tags are re-canonicalised to BIO in reading order (unless the data
    was built with `canonicalize_bio=False`); the predictions stay as emitted, or are re-canonicalised as
    well with `prediction_bio="repaired"`. Words without a prediction count as `O`/`X`.
    """
    repair = check_prediction_bio(prediction_bio) == "repaired"
    names = data.label_names
    reorder_bio = data.task == "ner" and data.extra.get("reorders", False)
    fallback = "O" if data.task == "ner" else "X"
    golds, preds = [], []
    for sentence, order, pred in zip(data.examples, reading_order(data), word_preds, strict=True):
        gold = [sentence.tags[i] for i in order.tolist()]
        guess = [names[p] if p >= 0 else fallback for p in np.asarray(pred)[order].tolist()]
        if reorder_bio and data.extra.get("canonicalize_bio", True):
            gold = _canonical(gold, names)
            if repair:
                guess = _canonical(guess, names)
        golds.append(gold)
        preds.append(guess)
    return golds, preds


def _canonical(tags: list[str], names: Sequence[str]) -> list[str]:
    index = {n: i for i, n in enumerate(names)}
    ids = canonicalize_bio_ids(np.array([index[t] for t in tags], np.int64), names)
    return [names[i] for i in ids.tolist()]


def score(data: TaskData, predictions: np.ndarray, *, prediction_bio: str = PREDICTION_BIO[0]) -> dict[str, float]:
    """Headline metrics from per-position predictions: POS token accuracy + seqeval F1; NER seqeval F1.

    `prediction_bio`: "as_emitted" (the reference) or "repaired" (see `tag_sequences`).
    """
    from xlt_jax.metrics import tagging as tagging_metrics  # seqeval is only needed when scoring

    gold, pred = tag_sequences(data, word_predictions(data, predictions), prediction_bio=prediction_bio)
    with warnings.catch_warnings():
        # seqeval warns that bare UPOS tags are not NE tags; the chunk semantics are the point (§0.10).
        warnings.filterwarnings("ignore", message=".*seems not to be NE tag", category=UserWarning)
        result = {f"seqeval_{k}": v for k, v in tagging_metrics.seqeval_f1(gold, pred).items()}
    if data.task == "pos":
        result["token_accuracy"] = tagging_metrics.token_accuracy(gold, pred)["accuracy"]
    return result
