r"""How close does syntax reordering get to the target language's word order? Measured on parallel PUD.

  python -m xlt_jax.data.transforms.syntax_report --src en --tgt fr [--variant sampled|deterministic]

The PUD treebanks of all four languages hold the same 1,000 sentences, so the source treebank, its
reordering toward the target, and the target treebank can be compared pair by pair. For every head the
reorderer handles (noun or verb class), every two of its units (the head itself, `<head>`, and each
dependent, by base relation) form a pair; the table gives, for the frequent pairs, the share in which the
first-named unit comes first in the source, the derived text and the target (the other order has the
rest). The order-agreement score is the target-count-weighted mean of 1 − |p_x − p_target| over pairs
frequent in both treebanks: 1 means the same pair orders as the target, for x = source and x = derived.
Ends with one JSON line. Note the target statistics' treebanks: Hindi and Arabic have only PUD trees
here, so for them the statistics come from the very sentences compared (`in_sample` in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Container, Sequence

import numpy as np

from xlt_jax.data.paths import data_dir as default_data_dir
from xlt_jax.data.readers.conllu import Sentence, read_conllu
from xlt_jax.data.transforms import syntax_stats
from xlt_jax.data.transforms.syntax import SyntaxTransform
from xlt_jax.data.transforms.syntax_stats import HEAD, base_deprel, head_class
from xlt_jax.errors import XltError

PairCounts = dict[tuple[str, str, str], list[int]]  # (class, a, b) with a < b -> [a first, total]
PUD = "ud/{lang}_pud/test.conllu.gz"


def sibling_pair_orders(
    sentences: Sequence[Sentence], perms: Sequence[np.ndarray] | None = None, *, include_aux: bool = False
) -> PairCounts:
    """Per (head class, unit a, unit b): how often a comes first among a reordered head's units.

    Units are the head (`HEAD`) and its dependents labelled by base relation; pairs with the same label
    are not counted (the statistics say nothing about them). `perms[i]` is sentence i's output order
    (None: surface order).
    """
    counts: PairCounts = {}
    for index, sentence in enumerate(sentences):
        n = len(sentence)
        position = np.empty(n, dtype=np.int64)
        position[perms[index] if perms is not None else np.arange(n)] = np.arange(n)
        heads = sentence.heads.tolist()
        children: list[list[int]] = [[] for _ in range(n)]
        for dep, head in enumerate(heads):
            if head > 0:
                children[head - 1].append(dep)
        where = position.tolist()
        for head in range(n):
            klass = head_class(sentence.upos[head], include_aux=include_aux)
            if klass is None or not children[head]:
                continue
            units = [(HEAD, head)] + [(base_deprel(sentence.deprels[c]), c) for c in children[head]]
            for i, (label_i, word_i) in enumerate(units):
                for label_j, word_j in units[i + 1 :]:
                    if label_i == label_j:
                        continue
                    (a, wa), (b, wb) = sorted(((label_i, word_i), (label_j, word_j)))
                    cell = counts.setdefault((klass, a, b), [0, 0])
                    cell[0] += int(where[wa] < where[wb])
                    cell[1] += 1
    return counts


def share_before_head(
    sentences: Sequence[Sentence], perms: Sequence[np.ndarray] | None, *, deprel: str, head_upos: Container[str]
) -> float:
    """Share of `deprel` dependents (base relation) placed before a head with UPOS in `head_upos`.

    E.g. the share of objects before their verb: English ~0.02, Hindi ~0.99.
    """
    before = total = 0
    for index, sentence in enumerate(sentences):
        position = np.empty(len(sentence), dtype=np.int64)
        position[perms[index] if perms is not None else np.arange(len(sentence))] = np.arange(len(sentence))
        for dep, head in enumerate(sentence.heads.tolist()):
            if head > 0 and base_deprel(sentence.deprels[dep]) == deprel and sentence.upos[head - 1] in head_upos:
                total += 1
                before += int(position[dep] < position[head - 1])
    return before / total if total else float("nan")


def _share(counts: PairCounts, key: tuple[str, str, str]) -> float:
    first, total = counts.get(key, (0, 0))
    return first / total if total else float("nan")


def frequent_pairs(reference: PairCounts, target: PairCounts, min_count: int) -> list[tuple[str, str, str]]:
    """Pairs seen at least `min_count` times in both, most frequent (in the rarer of the two) first."""
    keys = [k for k in reference if reference[k][1] >= min_count and target.get(k, (0, 0))[1] >= min_count]
    return sorted(keys, key=lambda k: (k[0], -min(reference[k][1], target[k][1]), k))


def order_agreement(x: PairCounts, target: PairCounts, pairs: Sequence[tuple[str, str, str]]) -> float:
    """Target-count-weighted mean of 1 − |p_x(a first) − p_target(a first)| over `pairs`."""
    if not pairs:
        return float("nan")
    weights = np.array([target[k][1] for k in pairs], dtype=np.float64)
    gaps = np.abs(np.array([_share(x, k) - _share(target, k) for k in pairs]))
    return float(1.0 - np.sum(weights * gaps) / np.sum(weights))


def _pud(lang: str, root: str) -> list[Sentence]:
    path = os.path.join(root, PUD.format(lang=lang))
    if not os.path.exists(path):
        raise XltError(f"syntax report: no PUD treebank for {lang!r} ({path} is missing)")
    return list(read_conllu(path))


def report(
    src: str, tgt: str, *, variant: str = "sampled", seed: int = 0, nonprojective: str = "skip",
    min_count: int = 20, top: int = 12, data_dir: str | os.PathLike | None = None,
) -> tuple[str, dict]:
    """(printable table, summary dict) for `src` PUD reordered toward `tgt`, compared with `tgt` PUD."""
    root = os.fspath(data_dir) if data_dir is not None else os.fspath(default_data_dir())
    source, target = _pud(src, root), _pud(tgt, root)
    transform = SyntaxTransform(tgt, variant=variant, nonprojective=nonprojective, data_dir=root)
    perms = transform.reorderer.permutations(source, seed=seed, example_ids=range(len(source)))
    counts = {"source": sibling_pair_orders(source), "derived": sibling_pair_orders(source, perms)}
    counts["target"] = sibling_pair_orders(target)
    pairs = frequent_pairs(counts["source"], counts["target"], min_count)
    agreement = {name: order_agreement(counts[name], counts["target"], pairs) for name in ("source", "derived")}
    treebanks = list(syntax_stats.TREEBANKS[tgt])
    summary = {
        "src": src, "tgt": tgt, "variant": variant, "seed": seed, "nonprojective": nonprojective,
        "sentences": len(source), "reordered": transform.stats["reordered"],
        "skipped_nonprojective": transform.stats["skipped_nonprojective"], "min_count": min_count,
        "pairs": len(pairs), "target_statistics": treebanks, "in_sample": PUD.format(lang=tgt) in treebanks,
        "agreement": {name: round(value, 4) for name, value in agreement.items()},
    }  # fmt: skip
    return _table(summary, counts, pairs, top), summary


def _table(summary: dict, counts: dict[str, PairCounts], pairs: list[tuple[str, str, str]], top: int) -> str:
    src, tgt = summary["src"], summary["tgt"]
    lines = [
        f"{src} PUD -> syntax:{tgt} ({summary['variant']}, seed {summary['seed']}) vs {tgt} PUD: "
        f"{summary['reordered']} of {summary['sentences']} sentences reordered, "
        f"{summary['skipped_nonprojective']} non-projective left as they are",
        f"target statistics from {', '.join(summary['target_statistics'])}"
        + (" (in sample: the compared sentences)" if summary["in_sample"] else ""),
        f"share of pairs (a, b) of sibling units with a first, in %; pairs seen >= {summary['min_count']} "
        f"times in both (top {top} per head class); <head> = the head itself",
        f"{'class':<5} {'a':<10} {'b':<10} {'n src':>6} {src:>6} {'derived':>8} {tgt:>6} {'n tgt':>6}",
    ]
    for klass in sorted({k[0] for k in pairs}):
        for key in [k for k in pairs if k[0] == klass][:top]:
            shares = [100 * _share(counts[name], key) for name in ("source", "derived", "target")]
            lines.append(
                f"{klass:<5} {key[1]:<10} {key[2]:<10} {counts['source'][key][1]:>6} {shares[0]:>6.1f} "
                f"{shares[1]:>8.1f} {shares[2]:>6.1f} {counts['target'][key][1]:>6}"
            )
    agreement = summary["agreement"]
    lines.append(
        f"order agreement with {tgt} over {summary['pairs']} pairs: source {agreement['source']:.3f}, "
        f"derived {agreement['derived']:.3f}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.data.transforms.syntax_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="source language (its PUD treebank is reordered)")
    parser.add_argument("--tgt", required=True, help="target language (statistics and the PUD compared with)")
    parser.add_argument("--variant", default="sampled", help="sampled (default) or deterministic")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled variant")
    parser.add_argument("--nonprojective", default="skip", help="skip (default) or projectivize")
    parser.add_argument("--min_count", type=int, default=20, help="pairs seen this often in both treebanks")
    parser.add_argument("--top", type=int, default=12, help="table rows per head class")
    args = parser.parse_args(argv)
    try:
        table, summary = report(args.src, args.tgt, variant=args.variant, seed=args.seed,
                                nonprojective=args.nonprojective, min_count=args.min_count, top=args.top)
    except XltError as e:
        sys.exit(f"error: {e}")
    print(table)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
