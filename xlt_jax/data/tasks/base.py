"""What every fine-tuning task shares: the task registry, padded feature arrays and their batching.

A task turns examples into `Features`: NumPy arrays with one row per model input (a sentence, a sentence
pair, a QA window), padded to the task's maximum length once, when they are built. Batches are cut from
those rows and cropped to a *bucket* length (the longest row of the batch rounded up to a multiple of
`bucket`), so a jitted step sees a handful of shapes instead of one per batch. Everything is NumPy on the
host; nothing here imports JAX.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from xlt_jax.data import hashing
from xlt_jax.data.tasks import sources
from xlt_jax.data.transforms import bio
from xlt_jax.data.vocab import SPECIALS
from xlt_jax.errors import ConfigError

IGNORE_INDEX = bio.IGNORE_INDEX  # label of positions the loss and the metrics skip (HF/PyTorch convention)
DEFAULT_BUCKET = 32
_SHUFFLE_SALT = 0x7A5C  # separates the batch-order stream from every other use of the seed
_GROUP_SALT = 0x7A5D  # the order of the length-grouped batches (`epoch_batches`)
_PART_SALT = 0x9A27


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Static facts about a task: where its code lives, its input kind and its headline metric."""

    name: str
    module: str  # submodule of xlt_jax.data.tasks holding `featurize`
    kind: str  # input kind, as in `xlt_jax.data.transforms.TASKS`
    metric: str
    max_len: int  # default maximum sequence length (REFERENCE_SPEC §4.2)

    def load_module(self) -> Any:
        return importlib.import_module(f"xlt_jax.data.tasks.{self.module}")


TASKS: dict[str, TaskSpec] = {
    "pos": TaskSpec("pos", "tagging", "tagging", "token_accuracy", 128),
    "ner": TaskSpec("ner", "tagging", "tagging", "seqeval_f1", 128),
    "nli": TaskSpec("nli", "classification", "pair", "accuracy", 128),
    "qa": TaskSpec("qa", "qa", "qa", "f1", 384),
    "tatoeba": TaskSpec("tatoeba", "retrieval", "retrieval", "accuracy", 128),
}


def task_spec(task: str) -> TaskSpec:
    """The registry entry of `task`, or a ConfigError listing the known tasks."""
    try:
        return TASKS[task]
    except KeyError:
        raise ConfigError(f"task: unknown task {task!r}; known tasks: {sorted(TASKS)}") from None


# ------------------------------------------------------------------------------------------------------
# Features


def part_keys(example_ids: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """Transform keys of the parts (windows, chunks) of examples: the example id itself for part 0, so an
    unsplit example is keyed as everywhere else, and an independent 64-bit hash for later parts."""
    example_ids = np.asarray(example_ids, np.int64)
    parts = np.asarray(parts, np.int64)
    hashed = hashing.hash64(_PART_SALT, example_ids, parts).view(np.int64)
    return np.where(parts == 0, example_ids, hashed)


def pad_value(key: str) -> int:
    """Fill value of field `key` in padded positions and padding rows."""
    if key == "input_ids":
        return SPECIALS.pad
    if key in ("labels", "label"):
        return IGNORE_INDEX
    if key in ("example_id", "word_index", "offset_mapping"):
        return -1
    return 0


@dataclasses.dataclass
class Features:
    """Rows of model inputs: `arrays[key]` has shape `[N, ...]`; `[N, L, ...]` fields are sequence fields.

    `model_keys` are the fields a batch carries to the device; the others (offsets, word indices, ...)
    stay on the host for post-processing. `example_id` [N] names the example each row came from.
    """

    arrays: dict[str, np.ndarray]
    model_keys: tuple[str, ...]
    sequence_keys: tuple[str, ...] = ("input_ids", "attention_mask")

    def __post_init__(self) -> None:
        sizes = {k: len(v) for k, v in self.arrays.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"feature arrays differ in row count: {sizes}")
        missing = [k for k in (*self.model_keys, *self.sequence_keys) if k not in self.arrays]
        if missing:
            raise ValueError(f"features lack fields {missing}; have {sorted(self.arrays)}")

    def __len__(self) -> int:
        return len(self.arrays["input_ids"])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    @property
    def max_len(self) -> int:
        return int(self.arrays["input_ids"].shape[1])

    def lengths(self) -> np.ndarray:
        """Per row: one past the last attended position (pads may sit inside a row after a reordering)."""
        mask = self.arrays["attention_mask"].astype(bool)
        last = mask.shape[1] - np.argmax(mask[:, ::-1], axis=1)
        return np.where(mask.any(axis=1), last, 0).astype(np.int64)

    def select(self, rows: np.ndarray | Sequence[int]) -> Features:
        rows = np.asarray(rows, dtype=np.int64)
        return dataclasses.replace(self, arrays={k: v[rows] for k, v in self.arrays.items()})

    def batch(self, rows: np.ndarray, *, length: int, size: int | None = None, keys=None) -> dict[str, np.ndarray]:
        """Rows `rows`, sequence fields cropped (or padded) to `length`, plus padding rows up to `size`."""
        keys = tuple(keys) if keys is not None else (*self.model_keys, "example_id")
        out = {}
        for key in keys:
            values = self.arrays[key][rows]
            if key in self.sequence_keys:
                values = _fit_length(values, length, pad_value(key))
            if size is not None and len(values) < size:
                filler = np.full((size - len(values), *values.shape[1:]), pad_value(key), values.dtype)
                values = np.concatenate([values, filler])
            out[key] = values
        return out


def _fit_length(values: np.ndarray, length: int, fill: int) -> np.ndarray:
    if values.shape[1] >= length:
        return values[:, :length]
    pad = np.full((values.shape[0], length - values.shape[1], *values.shape[2:]), fill, values.dtype)
    return np.concatenate([values, pad], axis=1)


def bucket_length(length: int, *, bucket: int = DEFAULT_BUCKET, max_len: int | None = None) -> int:
    """`length` rounded up to a multiple of `bucket` (at least one bucket), capped at `max_len`."""
    rounded = max(bucket, -(-int(length) // bucket) * bucket)
    return min(rounded, max_len) if max_len is not None else rounded


def batch_order(num_rows: int, *, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Row order of one epoch: a permutation keyed by (seed, epoch), or the identity."""
    if not shuffle:
        return np.arange(num_rows, dtype=np.int64)
    return hashing.rng(seed, _SHUFFLE_SALT, epoch).permutation(num_rows)


def epoch_batches(
    lengths: np.ndarray, batch_size: int, *, seed: int, epoch: int, shuffle: bool, group_by_length: int = 0
) -> list[np.ndarray]:
    """The rows of each batch of one epoch, in order: `batch_order` cut into batches of `batch_size`.

    With `group_by_length` = K > 0 (training only: `shuffle`), Hugging Face's `group_by_length`: the epoch's
    permutation is cut into groups of K batches, each group is sorted by length (longest first) and cut into
    batches, and the full batches are put in an order keyed by (seed, epoch). Every row is still seen once
    per epoch and the number of full batches is unchanged, but a batch holds rows of similar lengths and is
    cropped to far fewer positions (random batches of UD sentences almost always hold one as long as
    `max_len`; README: fine-tuning speed).
    """
    order = batch_order(len(lengths), seed=seed, epoch=epoch, shuffle=shuffle)
    if group_by_length <= 0 or not shuffle:
        return [order[begin : begin + batch_size] for begin in range(0, len(order), batch_size)]
    span = group_by_length * batch_size
    groups = np.split(order, np.arange(span, len(order), span))
    order = np.concatenate([g[np.argsort(-lengths[g], kind="stable")] for g in groups])
    batches = [order[begin : begin + batch_size] for begin in range(0, len(order), batch_size)]
    full = len(order) // batch_size  # a partial batch stays last, where drop_remainder finds it
    return [batches[i] for i in hashing.rng(seed, _GROUP_SALT, epoch).permutation(full)] + batches[full:]


def iterate_batches(
    features: Features,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = False,
    drop_remainder: bool = False,
    bucket: int = DEFAULT_BUCKET,
    group_by_length: int = 0,
    pad_batch: bool = True,
    keys: Sequence[str] | None = None,
    host_index: int = 0,
    host_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of `features` as dicts of arrays (the `model_keys` and `example_id` unless `keys` is given).

    Sequence fields are cropped to `bucket_length(longest row of the batch)`, so there are at most
    `max_len / bucket` distinct shapes. Training shuffles with a permutation keyed by (seed, epoch)
    (`epoch_batches`: optionally grouped by length) and usually drops the remainder; evaluation keeps order
    and pads the last batch with rows whose `example_id` is -1, attention mask 0 and labels -100
    (`pad_batch`), so every batch has `batch_size` rows. With several hosts, each global batch is split into
    `host_count` contiguous slices and host `host_index` gets its slice (`batch_size` is the global size and
    must divide evenly).
    """
    if batch_size <= 0 or batch_size % host_count:
        raise ConfigError(f"batch_size: {batch_size} must be positive and divisible by {host_count} hosts")
    lengths = features.lengths()
    per_host = batch_size // host_count
    for rows in epoch_batches(
        lengths, batch_size, seed=seed, epoch=epoch, shuffle=shuffle, group_by_length=group_by_length
    ):
        if len(rows) < batch_size and drop_remainder:
            return
        length = bucket_length(int(lengths[rows].max(initial=1)), bucket=bucket, max_len=features.max_len)
        mine = rows[host_index * per_host : (host_index + 1) * per_host]
        yield features.batch(mine, length=length, size=per_host if pad_batch else None, keys=keys)


def num_batches(num_rows: int, batch_size: int, *, drop_remainder: bool = False) -> int:
    return num_rows // batch_size if drop_remainder else -(-num_rows // batch_size)


def concat_outputs(
    outputs: Sequence[np.ndarray], example_ids: Sequence[np.ndarray], *, fill: float = IGNORE_INDEX
) -> np.ndarray:
    """Join per-batch model outputs into one array aligned with the feature rows.

    Sequence outputs `[B, L_b, ...]` of bucketed batches differ in `L_b`; they are padded along axis 1
    with `fill` (e.g. -100 for label ids, -inf for QA logits) to the widest. Rows whose batch
    `example_id` is -1 (the padding rows of the last evaluation batch) are dropped. Outputs whose second
    axis is the same in every batch (`[B]`, `[B, num_classes]`, `[B, D]`) are just concatenated.
    """
    kept = [np.asarray(o)[np.asarray(ids) >= 0] for o, ids in zip(outputs, example_ids, strict=True)]
    if not kept:
        return np.zeros(0)
    if kept[0].ndim < 2 or len({k.shape[1] for k in kept}) == 1:
        return np.concatenate(kept)
    width = max(k.shape[1] for k in kept)
    return np.concatenate([_fit_length(k, width, fill) for k in kept])


# ------------------------------------------------------------------------------------------------------
# The result of preparing a task split


@dataclasses.dataclass
class TaskData:
    """Features of one (task, language, split, transform), with what post-processing and metrics need.

    `examples` are the raw examples in file order (`example_id` indexes them); `label_names` maps label
    ids to strings for classification and tagging; `source` names the files read; `stats` counts what
    was built, split, truncated or dropped; `extra` holds task-specific host data (whether QA features
    are inverted, whether tagging reorders, the retrieval candidates `extra["targets"]`).
    """

    task: str
    lang: str
    split: str
    transform: str
    source: str
    features: Features
    examples: list[Any]
    label_names: tuple[str, ...] | None = None
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def num_labels(self) -> int | None:
        return None if self.label_names is None else len(self.label_names)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for logs and result rows."""
        return {
            "task": self.task,
            "lang": self.lang,
            "split": self.split,
            "transform": self.transform,
            "source": self.source,
            "num_examples": len(self.examples),
            "num_features": len(self.features),
            **{k: v for k, v in self.stats.items() if isinstance(v, int | float | str)},
        }


def prepare(
    task: str,
    tokenizer: Any,
    *,
    lang: str,
    split: str,
    transform: Any = "none",
    seed: int = 0,
    max_len: int | None = None,
    source: str | None = None,
    limit: int | None = None,
    data_dir: Any = None,
    trees: str = "gold",
    parser_model: str = "",
    **options: Any,
) -> TaskData:
    """Load a task split from the data directory and build its features: the fine-tune/evaluate entry point.

    `transform` is a spec string (`"translit+inv"`) or a parsed `Transform`; `source` picks among the
    data sources of `sources.load` (default: `sources.default_source`, the documented choice for the
    task/language/split); `limit` keeps the first N examples (smoke runs and tests); `trees` / `parser_model`
    (`syntax.trees` / `syntax.model`) say where a syntax transform gets trees the data lacks (`tasks/trees.py`;
    recorded in `extra["syntax_trees"]`); `options` go to the task's `featurize` (`doc_stride`,
    `max_query_len` for QA; `canonicalize_bio` for NER; `bucket`).
    """
    spec = task_spec(task)
    module = spec.load_module()
    accepted = set(inspect.signature(module.featurize).parameters) - {
        "loaded",
        "tokenizer",
        "transform",
        "seed",
    }
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"{task}: unknown option(s) {unknown}; valid: {sorted(accepted - {'max_len'})}")
    transform = resolve_transform(transform, tokenizer, spec.kind)
    loaded = sources.load(task, lang, split, source=source, data_dir=data_dir, limit=limit, transform=transform.name)
    tree_source = None
    if transform.syntax is not None:
        from xlt_jax.data.tasks.trees import attach_parses

        tree_source = attach_parses(loaded, trees, parser_model)
    data = module.featurize(
        loaded,
        tokenizer,
        transform=transform,
        seed=seed,
        max_len=max_len or spec.max_len,
        **options,
    )
    if tree_source is not None:
        data.extra["syntax_trees"] = tree_source
    return data


def resolve_transform(transform: Any, tokenizer: Any, kind: str) -> Any:
    """A `Transform` for an input `kind` (`TaskSpec.kind`): parse a spec string against the tokenizer's
    layout, and check that it applies (QA refuses `perm` and `syntax`)."""
    from xlt_jax.data import transforms

    if isinstance(transform, str) or transform is None:
        transform = transforms.parse(transform or "none", tokenizer.layout())
    return transform.for_task(kind)
