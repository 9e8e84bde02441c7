"""Transformation specs (`"translit+inv"`, `"syntax:hi"`, ...) and the `Transform` that applies them.

A `Transform` has two stages (REFERENCE_SPEC §0.1, §1.5):
- a *word stage*, applied to words before tokenisation: syntax reordering, or inversion/permutation at
  word level (`inv@word`, `perm@word`);
- an *id stage*, applied to padded batches of token ids: inversion/permutation at sub-word level (the
  reference's default) and transliteration.

Reordering runs before transliteration. The two commute on ids as the reference notes, except with
`shift_special`, where the reference would transliterate the segment boundaries away first and then reverse
across sentences; reordering first keeps the segments of §1.1 in every mode.

Every random choice is keyed by (seed, example id) through `xlt_jax.data.hashing`, so a row's output does
not depend on the batch size, the other rows, the host or the iteration order.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xlt_jax.data import hashing
from xlt_jax.data.transforms import bio, order, qa, segments
from xlt_jax.data.transforms.translit import Transliteration
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import TransformError

VALID_PARTS = ("none", "inv", "perm", "translit", "syntax:LANG", "syntax:LANG[deterministic]", "inv@word", "perm@word")
EXAMPLES = ("translit+inv", "translit+perm", "translit+syntax:hi", "perm@word")
OPTIONS = ("level", "shift_special", "keep_fraction", "keep_seed", "syntax_opts")

# Task name -> input kind. QA accepts only inversion and transliteration (§1.2).
TASKS = {
    **dict.fromkeys(("pretrain", "mlm", "span_corruption", "sequence"), "sequence"),
    **dict.fromkeys(("nli", "xnli", "sick", "pawsx", "classification", "pair"), "pair"),
    **dict.fromkeys(("ner", "panx", "wikiann", "pos", "udpos", "tagging"), "tagging"),
    **dict.fromkeys(("qa", "xquad", "mlqa", "tydiqa", "squad"), "qa"),
    **dict.fromkeys(("tatoeba", "bucc", "retrieval"), "retrieval"),
}

_REORDER = re.compile(r"^(inv|perm)(?:@(word|subword))?$")
_TRANSLIT = re.compile(r"^translit(?:\[([^\]]*)\])?$")
_SYNTAX = re.compile(r"^syntax:([A-Za-z][A-Za-z0-9_-]*)(?:\[([^\]]*)\])?$")
SYNTAX_VARIANTS = ("sampled", "deterministic")  # in the spec: syntax:LANG[deterministic]; sampled is the default


def sub_example_id(example_id: int, part: int) -> int:
    """Key for part `part` (e.g. premise 0, hypothesis 1) of one example, so the parts draw independently."""
    return int(hashing.hash64(0, int(example_id), int(part)).view(np.int64))


class _LazySyntax:
    """Syntax reordering stage, built on first use so that parsing a spec does not load treebanks."""

    def __init__(self, lang: str, options: Mapping[str, Any]):
        self.lang = lang
        self.options = dict(options)
        self._impl = None

    @property
    def name(self) -> str:
        deterministic = self.options.get("variant") == "deterministic"
        return f"syntax:{self.lang}" + ("[deterministic]" if deterministic else "")

    @property
    def impl(self) -> Any:
        if self._impl is None:
            from xlt_jax.data.transforms import syntax  # imported lazily: heavy, and optional for id work

            self._impl = syntax.SyntaxReorderer(self.lang, **self.options)
        return self._impl

    def apply_words(self, words, tags=None, *, seed: int, example_id: int, sentence=None):
        return self.impl.apply_words(words, tags, seed=seed, example_id=example_id, sentence=sentence)


class _WordReorder:
    """Word-level inversion/permutation as a word stage (the `sentence` tree is not needed)."""

    def __init__(self, reorder: order.Reorder):
        self.reorder = reorder
        self.name = reorder.name

    def apply_words(self, words, tags=None, *, seed: int, example_id: int, sentence=None):
        return self.reorder.apply_words(words, tags, seed=seed, example_id=example_id)


@dataclasses.dataclass(frozen=True, eq=False)
class Transform:
    """A parsed spec. Build with `parse`; apply with `apply_ids` / `apply_words` or a task adapter."""

    layout: VocabLayout
    translit: Transliteration | None = None
    reorder: order.Reorder | None = None
    syntax: _LazySyntax | None = None

    # --- description -------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Canonical spec: `parse(t.name, layout)` builds the same transform."""
        parts = [p.name for p in (self.translit, self.syntax, self.reorder) if p is not None]
        return "+".join(parts) or "none"

    @property
    def copies(self) -> int:
        """Vocabulary copies the model needs: 2 with transliteration (rows [V, 2V)), else 1."""
        return 2 if self.translit is not None else 1

    @property
    def vocab_layout(self) -> VocabLayout:
        """The layout to build the model with (sentinels, if any, move above the derived copy)."""
        return self.layout.with_copies(max(self.layout.copies, self.copies))

    @property
    def word_stage(self) -> tuple[Any, ...]:
        """Word-level parts, applied before tokenisation (syntax, `inv@word`, `perm@word`)."""
        stages: list[Any] = [self.syntax] if self.syntax is not None else []
        if self.reorder is not None and self.reorder.level == "word":
            stages.append(_WordReorder(self.reorder))
        return tuple(stages)

    @property
    def id_stage(self) -> tuple[Any, ...]:
        """Id-level parts, applied to token-id batches in this order."""
        stages: list[Any] = []
        if self.reorder is not None and self.reorder.level == "subword":
            stages.append(self.reorder)
        if self.translit is not None:
            stages.append(self.translit)
        return tuple(stages)

    @property
    def reorders(self) -> bool:
        """Whether any stage changes token order (then BIO tags need re-canonicalising)."""
        return self.reorder is not None or self.syntax is not None

    def __repr__(self) -> str:
        return f"Transform({self.name!r}, V={self.layout.base_size})"

    # --- id stage ------------------------------------------------------------------------------------------
    def index_map(self, ids: np.ndarray, *, seed: int, example_ids: np.ndarray) -> np.ndarray:
        """Source index map `[B, L]` of the id stage (identity when it does not reorder)."""
        ids, example_ids = _check_batch(ids, example_ids)
        if self.reorder is None or self.reorder.level != "subword":
            return np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape).copy()
        return self.reorder.index_map(ids, seed=seed, example_ids=example_ids)

    def apply_ids(
        self,
        ids: np.ndarray,
        *,
        seed: int,
        example_ids: np.ndarray,
        labels: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Transform a padded batch `ids [B, L]`; `labels [B, L]` (if any) travel with their tokens."""
        ids, example_ids = _check_batch(ids, example_ids)
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape[:2] != ids.shape:
                raise ValueError(f"labels shape {labels.shape} does not match ids shape {ids.shape}")
        if self.reorder is not None and self.reorder.level == "subword":
            src = self.reorder.index_map(ids, seed=seed, example_ids=example_ids)
            ids = order.gather(ids, src)
            labels = None if labels is None else order.gather(labels, src)
        if self.translit is not None:
            ids = self.translit.apply_ids(ids)
        return ids, labels

    # --- word stage ----------------------------------------------------------------------------------------
    def apply_words(
        self,
        words: Sequence[str],
        tags: Sequence[Any] | None = None,
        *,
        seed: int,
        example_id: int,
        sentence: Any = None,
    ) -> tuple[list[str], list[Any] | None]:
        """Run the word stage on one sentence; `sentence` is its UD tree, needed by syntax only."""
        words, tags = list(words), (None if tags is None else list(tags))
        if tags is not None and len(tags) != len(words):
            raise ValueError(f"{len(words)} words but {len(tags)} tags")
        for stage in self.word_stage:
            words, tags = stage.apply_words(words, tags, seed=seed, example_id=example_id, sentence=sentence)
        return list(words), (None if tags is None else list(tags))

    # --- task adapters -------------------------------------------------------------------------------------
    def for_task(self, task: str) -> Transform:
        """Check that this transform applies to `task`; returns self so calls chain."""
        kind = TASKS.get(task.lower())
        if kind is None:
            raise TransformError(f"unknown task {task!r}; valid: {sorted(TASKS)}")
        if kind == "qa":
            if self.syntax is not None:
                raise qa.refuse(self.syntax.name)
            if self.reorder is not None and (self.reorder.kind != "inv" or self.reorder.level != "subword"):
                raise qa.refuse(self.reorder.name)
        return self

    def apply_pair_words(
        self,
        words_a: Sequence[str],
        words_b: Sequence[str],
        *,
        seed: int,
        example_id: int,
        sentences: tuple[Any, Any] = (None, None),
    ) -> tuple[list[str], list[str]]:
        """Word stage on a sentence pair: each sentence on its own, order of the two kept.

        (At id level a pair is one row `<s> A </s></s> B </s>`; `apply_ids` already keeps A and B apart.)
        """
        out_a, _ = self.apply_words(
            words_a, seed=seed, example_id=sub_example_id(example_id, 0), sentence=sentences[0]
        )
        out_b, _ = self.apply_words(
            words_b, seed=seed, example_id=sub_example_id(example_id, 1), sentence=sentences[1]
        )
        return out_a, out_b

    def apply_tagged_words(
        self,
        words: Sequence[str],
        tags: Sequence[str],
        *,
        seed: int,
        example_id: int,
        sentence: Any = None,
        bio_tags: bool = False,
    ) -> tuple[list[str], list[str]]:
        """Word stage on a tagged sentence; with `bio_tags`, BIO is re-canonicalised after a reordering."""
        out_words, out_tags = self.apply_words(
            words, tags, seed=seed, example_id=example_id, sentence=sentence
        )
        if bio_tags and self.word_stage:
            out_tags = bio.canonicalize_bio(out_tags)
        return out_words, out_tags

    def apply_tagging(
        self,
        ids: np.ndarray,
        labels: np.ndarray,
        *,
        seed: int,
        example_ids: np.ndarray,
        bio_names: Sequence[str] | None = None,
        ignore_index: int = bio.IGNORE_INDEX,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Id stage on token-label rows; with `bio_names` (label id -> tag), BIO is re-canonicalised."""
        ids, labels = self.apply_ids(ids, seed=seed, example_ids=example_ids, labels=labels)
        if bio_names is not None and self.reorder is not None and self.reorder.level == "subword":
            labels = bio.canonicalize_bio_ids(labels, bio_names, ignore_index=ignore_index)
        return ids, labels

    def apply_qa(
        self,
        input_ids: np.ndarray,
        *,
        seed: int,
        example_ids: np.ndarray,
        start_positions: np.ndarray | None = None,
        end_positions: np.ndarray | None = None,
        offsets: np.ndarray | None = None,
    ) -> qa.QAFeatures:
        """Transform QA features (`inv`/`translit` only); see `qa.char_span` to map predictions back."""
        self.for_task("qa")
        input_ids, example_ids = _check_batch(input_ids, example_ids)
        spans = dict(start_positions=start_positions, end_positions=end_positions, offsets=offsets)
        if self.reorder is not None:
            feats = qa.invert_features(input_ids, fixed=self.reorder.fixed, **spans)
        else:
            feats = qa.identity_features(input_ids, **spans)
        if self.translit is not None:
            feats = dataclasses.replace(feats, input_ids=self.translit.apply_ids(feats.input_ids))
        return feats

    def apply_sentences(
        self, sentences: Sequence[np.ndarray], *, seed: int, example_ids: np.ndarray
    ) -> list[np.ndarray]:
        """Id stage on ragged single sequences (Tatoeba: `<s> x </s>` each); padded internally."""
        lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        pad = self.layout.specials.pad
        batch = np.full((len(sentences), int(lengths.max(initial=0))), pad, dtype=np.int32)
        mask = np.arange(batch.shape[1])[None, :] < lengths[:, None]
        if len(sentences):
            batch[mask] = np.concatenate([np.asarray(s, dtype=np.int32) for s in sentences])
        out, _ = self.apply_ids(batch, seed=seed, example_ids=example_ids)
        return [row[:n] for row, n in zip(out, lengths.tolist(), strict=True)]

    def apply_text(self, text: str, *, seed: int, example_id: int, sentence: Any = None) -> str:
        """Word stage on whitespace-tokenised raw text (`sentence`: its tree, for syntax)."""
        if not self.word_stage:
            return text
        words, _ = self.apply_words(text.split(), seed=seed, example_id=example_id, sentence=sentence)
        return " ".join(words)


def _check_batch(ids: np.ndarray, example_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids)
    example_ids = np.asarray(example_ids, dtype=np.int64)
    if ids.ndim != 2:
        raise ValueError(f"ids must be a [batch, length] array, got shape {ids.shape}")
    if example_ids.shape != (ids.shape[0],):
        raise ValueError(f"example_ids must have shape ({ids.shape[0]},), got {example_ids.shape}")
    return ids, example_ids


def _translit_options(text: str | None, defaults: dict[str, Any], spec: str) -> dict[str, Any]:
    """Options written in the spec, `translit[keep=0.25;seed=3;shift_special]`, over keyword defaults."""
    options = dict(defaults)
    for item in filter(None, (text or "").split(";")):
        key, _, value = item.strip().partition("=")
        try:
            if key == "keep":
                options["keep_fraction"] = float(value)
            elif key == "seed":
                options["keep_seed"] = int(value)
            elif key == "shift_special" and not value:
                options["shift_special"] = True
            else:
                raise ValueError(key)
        except ValueError as e:
            raise TransformError(
                f"bad transliteration option {item!r} in spec {spec!r}; valid: keep=F, seed=N, shift_special"
            ) from e
    return options


def _syntax_options(text: str | None, defaults: Mapping[str, Any], spec: str) -> dict[str, Any]:
    """`syntax:fr[deterministic]` over the `syntax_opts` keyword defaults."""
    options = dict(defaults)
    if text is not None:
        variant = text.strip().lower()
        if variant not in SYNTAX_VARIANTS:
            raise TransformError(f"bad syntax option {text!r} in spec {spec!r}; valid: {', '.join(SYNTAX_VARIANTS)}")
        options["variant"] = variant
    return options


def _unknown(part: str, spec: str) -> TransformError:
    return TransformError(
        f"unknown transformation {part!r} in spec {spec!r}; valid parts: {', '.join(VALID_PARTS)} "
        f"(compose with '+', e.g. {', '.join(EXAMPLES)})"
    )


def parse(spec: str, layout: VocabLayout, **opts: Any) -> Transform:
    """Build a `Transform` from a spec string such as `"translit+inv"` (see `VALID_PARTS`).

    Options: `level` ("subword" default, or "word") for inv/perm written without `@level`;
    `shift_special`, `keep_fraction` (exact share of shiftable ids left unshifted), `keep_seed` for
    transliteration; `syntax_opts` (dict) passed to the syntax reorderer (`syntax:LANG[deterministic]` in the
    spec overrides its `variant`; the default is the sampled one).
    """
    unknown_opts = sorted(set(opts) - set(OPTIONS))
    if unknown_opts:
        raise TransformError(f"unknown transform options {unknown_opts}; valid: {list(OPTIONS)}")
    level = opts.get("level", "subword")
    if level not in order.LEVELS:
        raise TransformError(f"transform option level={level!r}; valid: {list(order.LEVELS)}")
    translit_defaults = {k: opts[k] for k in ("shift_special", "keep_fraction", "keep_seed") if k in opts}

    text = (spec or "").strip()
    parts = [] if text.lower() in ("", "none") else [p.strip() for p in text.split("+")]
    translit = reorder = syntax = None
    for part in parts:
        lowered = part.lower()
        if m := _REORDER.match(lowered):
            if reorder is not None:
                raise TransformError(f"spec {spec!r} has two reorderings ({reorder.name}, {part})")
            reorder = order.Reorder(m.group(1), m.group(2) or level, segments.fixed_ids(layout.specials))
        elif m := _TRANSLIT.match(lowered):
            if translit is not None:
                raise TransformError(f"spec {spec!r} has transliteration twice")
            options = _translit_options(m.group(1), translit_defaults, spec)
            try:
                translit = Transliteration(layout.base_size, specials=layout.specials, **options)
            except ValueError as e:
                raise TransformError(f"spec {spec!r}: {e}") from e
        elif m := _SYNTAX.match(part):
            if syntax is not None:
                raise TransformError(f"spec {spec!r} has two syntax targets")
            syntax = _LazySyntax(m.group(1).lower(), _syntax_options(m.group(2), opts.get("syntax_opts", {}), spec))
        else:
            raise _unknown(part, spec)
    if syntax is not None and reorder is not None and reorder.level == "word":
        raise TransformError(
            f"spec {spec!r}: syntax and {reorder.name} are both word-level reorderings; compose syntax "
            "with the sub-word inv/perm instead"
        )
    return Transform(layout=layout, translit=translit, reorder=reorder, syntax=syntax)
