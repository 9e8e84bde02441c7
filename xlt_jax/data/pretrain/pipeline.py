"""Pretraining iterators: sources -> sampled blocks -> (derived language) -> MLM / span-corruption batches.

Why a plain NumPy index iterator rather than grain: every batch is a pure function of
(seed, stream position, per-language counters), so the iterator state is a few integers of
JSON, restoring it gives exactly the same next batches, and a host reads its rows of any global batch
without coordination. Whole-batch vectorised masking runs at several M tokens/s on one core (grain's
per-record `MapDataset` managed 0.9 M, and batch-first masking is what made it fast: ENV_NOTES §6), and no
worker processes are needed (2 s start-up, `__main__` guards, shared-memory warnings at exit). A grain
`MapDataset` could wrap `PretrainData.global_rows` later if prefetching processes become necessary.

Sampling (REFERENCE_SPEC §2):
- monolingual: one source; each epoch visits every training block once, shuffled per (seed, epoch). With
  a transform it is the derived language alone (PM's `replace` mode), still with lang_id 0.
- bilingual: the original blocks plus their derived copies (derived block i = transform(original block i),
  example id i, the same in every epoch as in the reference §0.5), or a second natural language; the union
  is shuffled per epoch, so with a derived language each epoch is exactly 50/50. A word-level transform
  (syntax, `inv@word`) derives a separate line stream first, and both sides are cut to the same count.
- multilingual: the language of global sequence k is drawn from q_l ∝ p_l^α keyed by (seed, k); each
  language is an infinite stream of per-epoch shuffles of its blocks, consumed in order, so the state
  carries one counter per language.
Masks and spans are keyed by (seed, source, block, draw), the draw being the block's epoch: dynamic per
epoch, identical whatever the batch size, host count or restart point.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from xlt_jax.config_utils import check_keys
from xlt_jax.data import hashing, transforms
from xlt_jax.data.pretrain import mlm, packing, span_corruption
from xlt_jax.data.pretrain.shards import ShardedCorpus, ensure_file_shards, ensure_shards, read_corpus_lines
from xlt_jax.data.sampling import sample_languages, temperature_probs
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError, TransformError

MODES = ("monolingual", "bilingual", "multilingual")
OBJECTIVES = ("mlm", "span")
STATE_VERSION = 1
_SALT_EPOCH = 0x45504F43  # per-epoch shuffles
_SOURCE_STRIDE = 1 << 40  # example id = source * stride + block: unique keys across sources
_EVAL_DRAW = -1  # masks of held-out batches never coincide with a training epoch's


def default_config() -> ml_collections.ConfigDict:
    """The `config.data` block with its defaults (the reference recipe, REFERENCE_SPEC §2-3)."""
    return ml_collections.ConfigDict(
        dict(
            mode="bilingual",  # monolingual | bilingual | multilingual
            langs="en",  # '+'-separated; bilingual with one language = original + derived
            transform="inv",  # transforms.parse spec of the derived language (bilingual / monolingual)
            transform_seed=0,  # keys the derived language itself (perm, keep sets), independent of `seed`
            alpha=0.3,  # multilingual temperature: q_l ∝ p_l^alpha
            seq_len=512,  # MLM block length; span: encoder input length (raw block from random_spans_helper)
            global_batch_size=128,
            eval_batch_size=0,  # 0 = global_batch_size
            objective="mlm",  # mlm | span
            mlm_probability=0.15,
            mask_rate=0.8,
            random_rate=0.1,
            random_replacement="original_vocab",  # original_vocab (reference) | same_language
            max_predictions_per_seq=-1,  # MLM rows projected onto the vocabulary: -1 auto, 0 all positions
            # >1: that many sequences share one budget of projected rows (mlm.py); 0 = each its own; -1 = as many as
            # the batch layout allows, one group per batch shard and microbatch (resolved by the trainer from its mesh)
            mlm_group_size=0,
            noise_density=0.15,
            mean_noise_span_length=3.0,
            num_sentinels=100,  # span objective: sentinel ids above the (copied) vocabulary
            group_lines=0,  # pack per group of N lines as HF's run_mlm (1000); 0 = whole stream
            eval_fraction=0.01,  # last share of each source's blocks held out for evaluation
            seed=42,
            cache_dir="",  # id shards; "" = $XLT_CACHE_DIR/shards or ~/.cache/xlt_jax/shards
        )
    )


# -- sources ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
    """One language stream: blocks of a tokenized corpus, optionally passed through a transform."""

    name: str
    lang_id: int
    corpus: ShardedCorpus
    starts: np.ndarray  # block start positions; training blocks [0, num_train), held out after
    num_train: int
    transform: transforms.Transform | None = None

    @property
    def vocab_copy(self) -> int:
        """Vocabulary copy the language is written in (1 for transliterated text)."""
        return 1 if self.transform is not None and self.transform.translit is not None else 0

    @property
    def eval_blocks(self) -> np.ndarray:
        return np.arange(self.num_train, len(self.starts), dtype=np.int64)


CorpusInput = ShardedCorpus | str | os.PathLike | Sequence[str] | Sequence[os.PathLike]


def _is_paths(value: Any) -> bool:
    return isinstance(value, str | os.PathLike) or (
        isinstance(value, Sequence) and len(value) > 0 and all(isinstance(v, os.PathLike) for v in value)
    )


def _text_lines(value: CorpusInput) -> Iterable[str]:
    if _is_paths(value):
        return read_corpus_lines([value] if isinstance(value, str | os.PathLike) else value)
    return (line for line in value if line.strip())


def open_corpus(value: CorpusInput, tokenizer: Any, cache_dir: str | None, name: str) -> ShardedCorpus:
    """Shards for a corpus given as lines, a text file (or list of `Path`s), or already built shards."""
    if isinstance(value, ShardedCorpus):
        return value
    if _is_paths(value):
        return ensure_file_shards(value, tokenizer, cache_dir, name=name)
    return ensure_shards(list(value), tokenizer, cache_dir, name=name)


def _derived_corpus(
    original: CorpusInput,
    base: ShardedCorpus,
    transform: transforms.Transform,
    seed: int,
    tokenizer: Any,
    cache_dir: str | None,
) -> ShardedCorpus:
    """Apply the word stage to every line of the original text (line number = example id), then shard it."""
    if transform.syntax is not None:
        raise ConfigError(
            f"data.transform={transform.name!r} has a syntax stage, which needs UD trees: produce the "
            "derived text offline (transforms.syntax) and pass it as derived_corpus="
        )
    lines = (
        transform.apply_text(line, seed=seed, example_id=i) for i, line in enumerate(_text_lines(original))
    )
    key = hashlib.sha256(f"derived:{base.index['content_hash']}:{transform.name}:{seed}".encode()).hexdigest()
    return ensure_shards(
        lines, tokenizer, cache_dir, content_hash=key, name=f"{base.index.get('name')}~{transform.name}"
    )


def _blocks(corpus: ShardedCorpus, block_len: int, group_lines: int, limit: int | None = None) -> np.ndarray:
    starts = packing.block_starts(corpus.line_offsets, block_len, group_lines)
    return starts if limit is None else starts[:limit]


def _split(num_blocks: int, eval_fraction: float, name: str) -> int:
    train, _ = packing.split_train_eval(num_blocks, eval_fraction)
    if len(train) == 0:
        raise ConfigError(f"corpus {name!r} yields no training block of data.seq_len tokens")
    return len(train)


# -- samplers -----------------------------------------------------------------------------------------


class _Permutations:
    """Per-(stream, epoch) shuffles of `range(n)`, keyed by (seed, stream, epoch); the last few are cached."""

    def __init__(self, seed: int):
        self.seed = seed
        self._cache: dict[tuple[int, int, int], np.ndarray] = {}

    def get(self, stream: int, epoch: int, n: int) -> np.ndarray:
        key = (stream, epoch, n)
        if key not in self._cache:
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = hashing.rng(self.seed, _SALT_EPOCH, stream, epoch).permutation(n)
        return self._cache[key]

    def take(self, stream: int, ordinals: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(element, epoch) at positions `ordinals` of the infinite stream of shuffles of `range(n)`."""
        epochs, within = np.divmod(ordinals, n)
        out = np.empty_like(ordinals)
        for epoch in np.unique(epochs):
            sel = epochs == epoch
            out[sel] = self.get(stream, int(epoch), n)[within[sel]]
        return out, epochs


class EpochSampler:
    """Exact proportions: every epoch is one shuffle of the union of all sources' training blocks."""

    def __init__(self, sizes: Sequence[int], seed: int):
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.perms = _Permutations(seed)

    def locate(self, positions: np.ndarray, counts: list[int]) -> tuple[np.ndarray, ...]:
        """(source, block, draw) of global stream positions; `counts` is unused (stateless sampler)."""
        union, epochs = self.perms.take(0, positions, int(self.bounds[-1]))
        source = np.searchsorted(self.bounds, union, side="right") - 1
        return source, union - self.bounds[source], epochs, counts


class TemperatureSampler:
    """Language per position from q (keyed by position), then the next block of that language's stream."""

    def __init__(self, sizes: Sequence[int], probs: np.ndarray, seed: int):
        self.sizes, self.probs, self.seed = list(sizes), probs, seed
        self.perms = _Permutations(seed)

    def locate(self, positions: np.ndarray, counts: list[int]) -> tuple[np.ndarray, ...]:
        """(source, block, draw, new counts): rows of language l take its next ordinals in position order."""
        source = sample_languages(self.probs, self.seed, positions).astype(np.int64)
        block, draw = np.zeros_like(positions), np.zeros_like(positions)
        new_counts = list(counts)
        for s, n in enumerate(self.sizes):
            sel = source == s
            k = int(sel.sum())
            if not k:
                continue
            ordinals = counts[s] + np.arange(k, dtype=np.int64)
            block[sel], draw[sel] = self.perms.take(s + 1, ordinals, n)
            new_counts[s] = counts[s] + k
        return source, block, draw, new_counts


# -- the data object ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Settings:
    """The validated `config.data` values the pipeline uses."""

    mode: str
    langs: tuple[str, ...]
    transform: str
    transform_seed: int
    alpha: float
    seq_len: int
    global_batch_size: int
    eval_batch_size: int
    objective: str
    mlm: mlm.MLMConfig
    max_predictions: int  # rows per group of `mlm_group_size` sequences; 0 = dense targets (all projected)
    mlm_group_size: int
    noise_density: float
    mean_noise_span_length: float
    num_sentinels: int
    group_lines: int
    eval_fraction: float
    seed: int
    cache_dir: str

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> _Settings:
        check_keys(config, default_config(), prefix="data.")
        c = default_config()
        c.update(config)
        if c.mode not in MODES:
            raise ConfigError(f"data.mode={c.mode!r}; expected one of {MODES}")
        if c.objective not in OBJECTIVES:
            raise ConfigError(f"data.objective={c.objective!r}; expected one of {OBJECTIVES}")
        langs = tuple(x for x in str(c.langs).split("+") if x)
        if not langs or len(set(langs)) != len(langs):
            raise ConfigError(f"data.langs={c.langs!r}: give distinct languages joined by '+'")
        for key in ("seq_len", "global_batch_size"):
            if int(c[key]) <= 0:
                raise ConfigError(f"data.{key}={c[key]} must be positive")
        group = _group_size(c)
        return cls(
            mode=c.mode,
            langs=langs,
            transform=str(c.transform or "none"),
            transform_seed=int(c.transform_seed),
            alpha=float(c.alpha),
            seq_len=int(c.seq_len),
            global_batch_size=int(c.global_batch_size),
            eval_batch_size=int(c.eval_batch_size) or int(c.global_batch_size),
            objective=c.objective,
            mlm=mlm.MLMConfig(
                float(c.mlm_probability), float(c.mask_rate), float(c.random_rate), str(c.random_replacement)
            ),
            max_predictions=_max_predictions(
                int(c.max_predictions_per_seq), int(c.seq_len), float(c.mlm_probability), group
            ),
            mlm_group_size=group,
            noise_density=float(c.noise_density),
            mean_noise_span_length=float(c.mean_noise_span_length),
            num_sentinels=int(c.num_sentinels),
            group_lines=int(c.group_lines),
            eval_fraction=float(c.eval_fraction),
            seed=int(c.seed),
            cache_dir=str(c.cache_dir),
        )


def _group_size(c: ml_collections.ConfigDict) -> int:
    if int(c.mlm_group_size) == -1:
        raise ConfigError("data.mlm_group_size=-1 (one group per batch shard) needs the mesh: the trainer resolves it "
                          "(training.loop.resolve_mlm_group_size); give a number of sequences here")
    if int(c.mlm_group_size) < 0:
        raise ConfigError(f"data.mlm_group_size={c.mlm_group_size}: use 0 (per sequence), -1 (one group per batch "
                          "shard) or a number of sequences")
    return max(1, int(c.mlm_group_size))


def _max_predictions(value: int, seq_len: int, probability: float, group: int = 1) -> int:
    """Rows projected per group of `group` sequences from `data.max_predictions_per_seq`: -1 = sized from the
    mask rate for the group's group·seq_len positions, 0 = off (every position), else group × the value."""
    if value == -1:
        return mlm.auto_max_predictions(group * seq_len, probability)
    if value < 0:
        raise ConfigError(f"data.max_predictions_per_seq={value}: use -1 (auto), 0 (all positions) or a count")
    return min(value * group, group * seq_len)


class PretrainData:
    """Sources, vocabulary layout and batch construction; iterators and eval batches come from here."""

    def __init__(self, settings: _Settings, sources: list[Source], layout: VocabLayout):
        self.settings, self.sources, self.layout = settings, sources, layout
        s = settings
        self.block_len = s.seq_len
        self.inputs_length = self.targets_length = 0
        if s.objective == "span":
            self.block_len, self.targets_length = span_corruption.random_spans_helper(
                s.seq_len, s.noise_density, s.mean_noise_span_length
            )
            self.inputs_length = s.seq_len
        sizes = [src.num_train for src in sources]
        if s.mode == "multilingual":
            self.probs = temperature_probs(np.asarray(sizes), s.alpha)
            self.sampler: EpochSampler | TemperatureSampler = TemperatureSampler(sizes, self.probs, s.seed)
        else:
            self.probs = np.asarray(sizes, dtype=np.float64) / sum(sizes)
            self.sampler = EpochSampler(sizes, s.seed)

    # -- descriptions used by the trainer --------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Embedding rows the model needs (copies of V plus sentinels)."""
        return self.layout.size

    @property
    def lang_names(self) -> list[str]:
        return [src.name for src in self.sources]

    @property
    def num_langs(self) -> int:
        return max(src.lang_id for src in self.sources) + 1

    def fingerprint(self) -> str:
        """Hash of everything that fixes the order of training blocks (checked when restoring a state)."""
        s = self.settings
        desc = [
            s.mode,
            s.seed,
            s.alpha,
            self.block_len,
            s.group_lines,
            s.transform,
            s.transform_seed,
            [(src.name, src.corpus.index["key"], src.num_train) for src in self.sources],
        ]
        return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """Per-source block counts and sampling probabilities, for logs."""
        return {
            "mode": self.settings.mode,
            "objective": self.settings.objective,
            "block_len": self.block_len,
            "max_predictions_per_seq": self.settings.max_predictions if self.settings.objective == "mlm" else None,
            "mlm_group_size": self.settings.mlm_group_size,  # >1: max_predictions_per_seq is per group
            "vocab_size": self.vocab_size,
            "sources": [
                {
                    "name": src.name,
                    "lang_id": src.lang_id,
                    "train_blocks": src.num_train,
                    "eval_blocks": len(src.starts) - src.num_train,
                    "tokens": src.corpus.num_tokens,
                    "prob": float(p),
                }
                for src, p in zip(self.sources, self.probs, strict=True)
            ],
        }

    # -- batch construction -----------------------------------------------------------------------------
    def raw_blocks(self, source: np.ndarray, block: np.ndarray) -> np.ndarray:
        """Blocks [R, block_len] in their source's language (derived ones transformed); -1 = pad row."""
        raw = np.full((len(source), self.block_len), self.layout.specials.pad, dtype=np.int32)
        for s in np.unique(source[source >= 0]):
            sel = source == s
            src = self.sources[s]
            rows = packing.gather_blocks(src.corpus, src.starts[block[sel]], self.block_len)
            if src.transform is not None:
                rows, _ = src.transform.apply_ids(
                    rows, seed=self.settings.transform_seed, example_ids=block[sel]
                )
            raw[sel] = rows
        return raw

    def build_rows(self, source: np.ndarray, block: np.ndarray, draw: np.ndarray) -> dict[str, np.ndarray]:
        """The model batch dict for rows given by (source, block, draw); source -1 gives an empty row."""
        source, block, draw = (np.asarray(a, dtype=np.int64) for a in (source, block, draw))
        raw = self.raw_blocks(source, block)
        valid = source >= 0
        example_ids = np.where(valid, source * _SOURCE_STRIDE + block, -1)
        s = self.settings
        if s.objective == "mlm":
            copies = np.array([src.vocab_copy for src in self.sources], dtype=np.int64)
            batch = mlm.mask_tokens(
                raw,
                layout=self.layout,
                seed=s.seed,
                example_ids=example_ids,
                draws=draw,
                config=s.mlm,
                vocab_copy=np.where(valid, copies[source], 0),
                max_predictions=s.max_predictions,
                group_size=s.mlm_group_size,
            )
        else:
            batch = span_corruption.span_corrupt(
                raw,
                layout=self.layout,
                seed=s.seed,
                example_ids=example_ids,
                draws=draw,
                noise_density=s.noise_density,
                mean_noise_span_length=s.mean_noise_span_length,
                inputs_length=self.inputs_length,
                targets_length=self.targets_length,
            )
            for key in ("encoder_attention_mask", "decoder_loss_mask"):
                batch[key] = batch[key] * valid[:, None].astype(batch[key].dtype)
        lang_ids = np.array([src.lang_id for src in self.sources], dtype=np.int32)
        batch["lang_id"] = np.where(valid, lang_ids[source], 0).astype(np.int32)
        return batch

    def global_rows(self, position: int, count: int, counts: list[int]) -> tuple[np.ndarray, ...]:
        """(source, block, draw, new counts) of global stream positions [position, position + count)."""
        positions = np.arange(position, position + count, dtype=np.int64)
        return self.sampler.locate(positions, counts)

    # -- entry points ----------------------------------------------------------------------------------
    def train_iterator(self, process_index: int = 0, process_count: int = 1) -> PretrainIterator:
        return PretrainIterator(self, process_index, process_count)

    def eval_batches(
        self, process_index: int = 0, process_count: int = 1, batch_size: int | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """One deterministic pass over every held-out block of every source, in fixed-size batches.

        Sources are interleaved in proportion to their held-out sizes, so the first k batches (a capped
        `train.eval_max_batches`) hold about the same share of every language as the whole pass. The last
        global batch is filled with empty rows (all masks 0, lang_id 0); each host yields its slice of every
        global batch.
        """
        batch_size = batch_size or self.settings.eval_batch_size
        lo, hi = _host_slice(batch_size, process_index, process_count)
        source, block = interleave_proportionally([src.eval_blocks for src in self.sources])
        total = -(-len(source) // batch_size) * batch_size
        source = np.pad(source, (0, total - len(source)), constant_values=-1)
        block = np.pad(block, (0, total - len(block)), constant_values=0)
        for start in range(0, total, batch_size):
            rows = slice(start + lo, start + hi)
            yield self.build_rows(source[rows], block[rows], np.full(hi - lo, _EVAL_DRAW, np.int64))


def interleave_proportionally(items: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(source index, item) of every item of every source, ordered so that any prefix holds each source in
    proportion to its size, to within about one item: item j of a source of n sits at quantile (j + ½) / n."""
    source = np.concatenate([np.full(len(x), i, np.int64) for i, x in enumerate(items)])
    flat = np.concatenate([np.asarray(x, np.int64) for x in items])
    quantile = np.concatenate([(np.arange(len(x)) + 0.5) / len(x) for x in items])
    order = np.argsort(quantile, kind="stable")
    return source[order], flat[order]


def _host_slice(global_batch: int, process_index: int, process_count: int) -> tuple[int, int]:
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise ConfigError(f"process_index={process_index} is not in [0, process_count={process_count})")
    if global_batch % process_count:
        raise ConfigError(
            f"data.global_batch_size={global_batch} is not divisible by the {process_count} processes"
        )
    per_host = global_batch // process_count
    return process_index * per_host, (process_index + 1) * per_host


class PretrainIterator:
    """Infinite iterator over this host's rows of the global training batches.

    State = global stream position (+ per-language counters in multilingual mode); it is the same on
    every host, JSON-serialisable, and independent of the batch size, so a run may resume with another
    batch size or host count and continue the same sequence stream.
    """

    def __init__(self, data: PretrainData, process_index: int = 0, process_count: int = 1):
        self.data = data
        self.global_batch_size = data.settings.global_batch_size
        self._lo, self._hi = _host_slice(self.global_batch_size, process_index, process_count)
        self.position = 0
        self.counts = [0] * len(data.sources)

    def __iter__(self) -> PretrainIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        source, block, draw, self.counts = self.data.global_rows(
            self.position, self.global_batch_size, self.counts
        )
        self.position += self.global_batch_size
        rows = slice(self._lo, self._hi)
        return self.data.build_rows(source[rows], block[rows], draw[rows])

    def get_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "position": int(self.position),
            "counts": [int(c) for c in self.counts],
            "fingerprint": self.data.fingerprint(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ConfigError(f"data iterator state version {state.get('version')} != {STATE_VERSION}")
        if state.get("fingerprint") != self.data.fingerprint():
            raise ConfigError(
                "data iterator state was saved for another corpus/seed/sampling setup "
                f"(fingerprint {state.get('fingerprint')} != {self.data.fingerprint()})"
            )
        counts = [int(c) for c in state["counts"]]
        if len(counts) != len(self.data.sources):
            raise ConfigError(
                f"data iterator state has {len(counts)} language counters, expected {len(self.data.sources)}"
            )
        self.position, self.counts = int(state["position"]), counts


# -- construction from a config -----------------------------------------------------------------------


def _base_layout(tokenizer: Any, settings: _Settings) -> VocabLayout:
    layout = tokenizer.layout(copies=1) if hasattr(tokenizer, "layout") else VocabLayout(tokenizer.base_size)
    if settings.objective == "span":
        layout = dataclasses.replace(layout, num_sentinels=max(layout.num_sentinels, settings.num_sentinels))
    return layout


def _parse_transform(spec: str, layout: VocabLayout) -> transforms.Transform | None:
    try:
        transform = transforms.parse(spec, layout)
    except TransformError as e:
        raise ConfigError(f"data.transform={spec!r}: {e}") from e
    return None if transform.name == "none" else transform


def _build_sources(
    settings: _Settings,
    tokenizer: Any,
    corpora: Mapping[str, CorpusInput],
    derived_corpus: CorpusInput | None,
    layout: VocabLayout,
    transform: transforms.Transform | None,
) -> list[Source]:
    s = settings
    cache = s.cache_dir or None
    block_len = (
        span_corruption.random_spans_helper(s.seq_len, s.noise_density, s.mean_noise_span_length)[0]
        if s.objective == "span"
        else s.seq_len
    )
    missing = [lang for lang in s.langs if lang not in corpora]
    if missing:
        raise ConfigError(f"data.langs={'+'.join(s.langs)!r}: no corpus given for {missing}")
    bases = {lang: open_corpus(corpora[lang], tokenizer, cache, lang) for lang in s.langs}

    def natural(lang: str, lang_id: int, t: transforms.Transform | None = None) -> Source:
        starts = _blocks(bases[lang], block_len, s.group_lines)
        return Source(lang, lang_id, bases[lang], starts, _split(len(starts), s.eval_fraction, lang), t)

    if s.mode == "multilingual" or (s.mode == "bilingual" and len(s.langs) == 2):
        if transform is not None:
            raise ConfigError(
                f"data.transform={s.transform!r} applies only to a single-language "
                f"{s.mode} setup; use transform='none' with data.langs={'+'.join(s.langs)!r}"
            )
        if s.mode == "bilingual" and len(s.langs) != 2:
            raise ConfigError(f"data.mode='bilingual' takes one or two languages, got {s.langs}")
        return [natural(lang, i) for i, lang in enumerate(s.langs)]
    if len(s.langs) != 1:
        raise ConfigError(f"data.mode={s.mode!r} takes one language (or two for bilingual), got {s.langs}")
    lang = s.langs[0]
    if s.mode == "monolingual" and transform is None:
        return [natural(lang, 0)]
    if transform is None:
        raise ConfigError("data.mode='bilingual' with one language needs data.transform (e.g. 'inv')")
    name = f"{lang}~{transform.name}"
    if transform.word_stage or derived_corpus is not None:
        derived_base = (
            open_corpus(derived_corpus, tokenizer, cache, name)
            if derived_corpus is not None
            else _derived_corpus(corpora[lang], bases[lang], transform, s.transform_seed, tokenizer, cache)
        )
        orig_starts = _blocks(bases[lang], block_len, s.group_lines)
        derived_starts = _blocks(derived_base, block_len, s.group_lines)
        n = min(len(orig_starts), len(derived_starts))  # equal counts keep the mix exactly 50/50
        num_train = _split(n, s.eval_fraction, name)
        derived = Source(name, 1, derived_base, derived_starts[:n], num_train, transform)
        original = Source(lang, 0, bases[lang], orig_starts[:n], num_train)
    else:
        original = natural(lang, 0)
        derived = Source(name, 1, original.corpus, original.starts, original.num_train, transform)
    if s.mode == "monolingual":  # "replace" mode: the derived language alone
        return [dataclasses.replace(derived, lang_id=0)]
    return [original, derived]


def build_pretrain_data(
    config: ml_collections.ConfigDict,
    tokenizer: Any,
    corpora: Mapping[str, CorpusInput],
    *,
    derived_corpus: CorpusInput | None = None,
) -> PretrainData:
    """Build the pretraining data of `config` (a `config.data` block; missing keys take `default_config()`).

    `corpora` maps each language of `config.langs` to its text: a list of lines (one paragraph each), a
    text/.gz file path, a list of `Path`s, or a `ShardedCorpus`. `derived_corpus` is the derived
    language's text when it was produced outside (syntax reordering from UD trees); word-level inv/perm
    derive it here from the original lines.
    """
    settings = _Settings.from_config(config)
    layout = _base_layout(tokenizer, settings)
    transform = _parse_transform(settings.transform, layout)
    if transform is not None:
        layout = transform.vocab_layout
    sources = _build_sources(settings, tokenizer, corpora, derived_corpus, layout, transform)
    return PretrainData(settings, sources, layout)


def vocab_layout(config: ml_collections.ConfigDict, base_size: int, num_sentinels: int = 0) -> VocabLayout:
    """The model's id layout for `config` (a `config.data` block) and a tokenizer of `base_size` pieces,
    without reading any text: copies for transliteration, sentinels for span corruption."""
    settings = _Settings.from_config(config)
    layout = _base_layout(VocabLayout(base_size, num_sentinels=num_sentinels), settings)
    transform = _parse_transform(settings.transform, layout)
    return transform.vocab_layout if transform is not None else layout


def example_batch(config: ml_collections.ConfigDict, layout: VocabLayout, batch_size: int) -> dict[str, np.ndarray]:
    """A batch with exactly the keys, shapes and dtypes the pipeline produces for `config` (a `config.data`
    block), from random ids through the real masking or span corruption: for ahead-of-time compiles and
    benchmarks, where speed and memory do not depend on the text."""
    s = _Settings.from_config(config)
    rng = np.random.default_rng(0)
    rows = np.arange(batch_size, dtype=np.int64)
    block_len = (
        span_corruption.random_spans_helper(s.seq_len, s.noise_density, s.mean_noise_span_length)[0]
        if s.objective == "span"
        else s.seq_len
    )
    raw = rng.integers(len(layout.specials.all), layout.base_size, size=(batch_size, block_len), dtype=np.int32)
    raw[:, 0], raw[:, -1] = layout.specials.bos, layout.specials.eos
    if s.objective == "mlm":
        batch = mlm.mask_tokens(
            raw, layout=layout, seed=s.seed, example_ids=rows, draws=np.zeros_like(rows), config=s.mlm,
            max_predictions=s.max_predictions, group_size=s.mlm_group_size,
        )
    else:
        inputs_length = s.seq_len
        targets_length = span_corruption.random_spans_helper(s.seq_len, s.noise_density, s.mean_noise_span_length)[1]
        batch = span_corruption.span_corrupt(
            raw, layout=layout, seed=s.seed, example_ids=rows, draws=np.zeros_like(rows),
            noise_density=s.noise_density, mean_noise_span_length=s.mean_noise_span_length,
            inputs_length=inputs_length, targets_length=targets_length,
        )
    return batch | {"lang_id": np.zeros(batch_size, np.int32)}


def build_pretrain_iterator(
    config: ml_collections.ConfigDict,
    tokenizer: Any,
    corpora: Mapping[str, CorpusInput],
    *,
    derived_corpus: CorpusInput | None = None,
    process_index: int = 0,
    process_count: int = 1,
) -> PretrainIterator:
    """Training iterator of this host (`build_pretrain_data(...).train_iterator(...)`)."""
    data = build_pretrain_data(config, tokenizer, corpora, derived_corpus=derived_corpus)
    return data.train_iterator(process_index, process_count)
