"""Floors every tagging score should be read against: predict the training set's most frequent tag everywhere.

For POS this is the "majority-tag" baseline (English EWT: NOUN, about 17% of dev tokens); a zero-shot score
near it means no transfer. Word-level reorderings (inv, perm, syntax) and transliteration keep the multiset of
tags, so the same floor holds for every derived version of the dev set.
"""

from __future__ import annotations

import collections

from xlt_jax.metrics.tagging import seqeval_f1, token_accuracy


def majority_tag(task: str, lang: str, *, train_source: str = "", eval_split: str = "dev",
                 eval_source: str = "") -> dict[str, float | str]:
    """The most frequent training tag of (task, lang) and the token accuracy / seqeval F1 of predicting it for
    every word of the evaluation split (the task's default sources unless given)."""
    from xlt_jax.data.tasks import sources

    train = sources.load(task, lang, "train", source=train_source or None)
    counts = collections.Counter(tag for ex in train.examples for tag in ex.tags or ())
    if not counts:
        raise ValueError(f"{task}/{lang}/train has no tags to count")
    tag = counts.most_common(1)[0][0]
    dev = sources.load(task, lang, eval_split, source=eval_source or None)
    gold = [list(ex.tags) for ex in dev.examples if ex.tags]
    predicted = [[tag] * len(g) for g in gold]
    return {
        "tag": tag,
        "token_accuracy": token_accuracy(gold, predicted)["accuracy"],
        "f1": seqeval_f1(gold, predicted)["f1"],
        "n_tokens": float(sum(len(g) for g in gold)),
    }
