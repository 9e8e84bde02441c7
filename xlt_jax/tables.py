"""Tables computed from result rows: the BZ / BS / MZ protocol table and the cross-lingual table.

Protocol table (REFERENCE_SPEC §4.1): one entry per (task, headline metric, split, language, derived
transformation, bilingual model, corpus variant). Two bilingual models of the same language and
transformation (two pretraining runs, or a parallel and a non-parallel corpus) are two entries, never merged.
BZ and BS come from the bilingual model's rows; MZ from the rows of the monolingual model whose `twin` names
that bilingual model (rows written before `twin` existed: see `protocol_table`).

Seeds: per (entry, setting, fine-tuning seed) the row written last wins (re-running an evaluation replaces
its number; file order, not the `time` field, decides, since clocks of different hosts disagree). A setting
shows the mean over its seeds with their spread (`SeedStats`). Δ(BZ−BS) and Δ(MZ−BS) are paired: the mean
of the per-seed differences over the seeds BOTH settings have, so a seed that only one setting has never
shifts a Δ; an entry whose two settings have different seed sets says so (`seed_mismatch`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import scipy.stats

from xlt_jax.errors import ConfigError
from xlt_jax.results import HEADLINE_METRICS, IDENTITY, ResultRow

PROTOCOL_SETTINGS = ("BZ", "BS", "MZ")
DELTA_SETTINGS = {"delta_bz_bs": ("BZ", "BS"), "delta_mz_bs": ("MZ", "BS")}  # Δ name -> (minuend, subtrahend)
CONFIDENCE = 0.95
MIN_SEEDS_FOR_INTERVAL = 3  # with 2 seeds the t-interval (t = 12.7) says little beyond the sd


# ------------------------------------------------------------------------------------------------------
# Statistics over fine-tuning seeds


@dataclasses.dataclass(frozen=True)
class SeedStats:
    """One number over fine-tuning seeds: its mean, sample standard deviation (n ≥ 2) and the 95% t-interval
    of the mean (n ≥ 3), so a table shows how much of a difference is seed noise."""

    by_seed: Mapping[int, float]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(self.by_seed))

    @property
    def n(self) -> int:
        return len(self.by_seed)

    def _values(self) -> np.ndarray:
        return np.array([self.by_seed[s] for s in self.seeds], dtype=np.float64)

    @property
    def mean(self) -> float:
        return float(np.mean(self._values()))

    @property
    def sd(self) -> float | None:
        return float(np.std(self._values(), ddof=1)) if self.n >= 2 else None

    @property
    def ci95(self) -> tuple[float, float] | None:
        if self.n < MIN_SEEDS_FOR_INTERVAL:
            return None
        sem = float(scipy.stats.sem(self._values()))
        if sem == 0.0:  # identical values: scipy returns NaN for a zero scale
            return self.mean, self.mean
        low, high = scipy.stats.t.interval(CONFIDENCE, self.n - 1, loc=self.mean, scale=sem)
        return float(low), float(high)


def paired_difference(a: Mapping[int, float] | None, b: Mapping[int, float] | None) -> SeedStats | None:
    """a − b seed by seed over the seeds both have; None when either is missing or they share no seed."""
    if not a or not b:
        return None
    shared = set(a) & set(b)
    return SeedStats({s: a[s] - b[s] for s in sorted(shared)}) if shared else None


# ------------------------------------------------------------------------------------------------------
# Protocol table


@dataclasses.dataclass(frozen=True)
class ProtocolEntry:
    """One table row: a bilingual model (and corpus variant) on one derived language for one task metric.

    `model` is the bilingual model ("" when only an MZ without a bilingual partner is known), `mz_model` the
    monolingual model of the MZ column. `scores` holds BZ / BS / MZ (those with rows), `deltas` the paired
    `delta_bz_bs` / `delta_mz_bs` (absent when a setting is missing or the two share no seed).
    """

    task: str
    metric: str
    split: str
    lang: str
    transform: str
    model: str
    corpus: str
    mz_model: str
    scores: Mapping[str, SeedStats]
    deltas: Mapping[str, SeedStats]

    def _mean(self, stats: SeedStats | None) -> float | None:
        return None if stats is None else stats.mean

    @property
    def bz(self) -> float | None:
        return self._mean(self.scores.get("BZ"))

    @property
    def bs(self) -> float | None:
        return self._mean(self.scores.get("BS"))

    @property
    def mz(self) -> float | None:
        return self._mean(self.scores.get("MZ"))

    @property
    def delta_bz_bs(self) -> float | None:
        return self._mean(self.deltas.get("delta_bz_bs"))

    @property
    def delta_mz_bs(self) -> float | None:
        return self._mean(self.deltas.get("delta_mz_bs"))

    @property
    def seeds(self) -> tuple[int, int, int]:
        """Number of seeds of BZ, BS and MZ."""
        return tuple(self.scores[s].n if s in self.scores else 0 for s in PROTOCOL_SETTINGS)

    def seed_mismatch(self, delta: str) -> bool:
        """Both settings of `delta` have rows, but not for the same seeds (the Δ uses only the shared ones)."""
        first, second = (self.scores.get(s) for s in DELTA_SETTINGS[delta])
        return first is not None and second is not None and first.seeds != second.seeds


@dataclasses.dataclass
class _Cell:
    """Rows of one protocol entry while the table is built: per setting, value by seed (the last row wins)."""

    where: str
    values: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)
    sources: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    pretrained: dict[str, str] = dataclasses.field(default_factory=dict)
    mz_model: str = ""

    def has_bilingual(self) -> bool:
        return "BZ" in self.values or "BS" in self.values

    def add(self, row: ResultRow) -> None:
        """Record `row`; refuse rows that would mix fine-tuning sources, monolingual models or pretraining runs."""
        source = (row.train_lang, row.train_transform)
        if self.sources.setdefault(row.setting, source) != source:  # ambiguous: refuse to guess
            raise ConfigError(f"{self.where}: several {row.setting} rows that differ in train_lang/train_transform; "
                              "select the rows of one experiment first")
        if row.setting == "MZ":
            if self.mz_model and self.mz_model != row.model:
                raise ConfigError(f"{self.where}: MZ rows of two monolingual models ({self.mz_model}, {row.model}) "
                                  "for one bilingual model; give each experiment its own twin")
            self.mz_model = row.model
        self._check_pretrained(row)
        self.values.setdefault(row.setting, {})[row.seed] = float(row.value)

    def _check_pretrained(self, row: ResultRow) -> None:
        """One model name must not stand for two pretraining runs (`extra.pretrained`, when recorded)."""
        role = "monolingual" if row.setting == "MZ" else "bilingual"
        path = row.extra.get("pretrained")
        if not path:
            return
        known = self.pretrained.setdefault(role, path)
        if known != path:
            raise ConfigError(f"{self.where}: {role} rows of model {row.model!r} come from two pretraining runs "
                              f"({known}, {path}); give the runs distinct model names, or select one "
                              "(--select extra.pretrained=PATH)")

    def entry(self, group: tuple[str, ...], model: str, corpus: str) -> ProtocolEntry:
        scores = {s: SeedStats(v) for s, v in self.values.items()}
        deltas = {}
        for name, (first, second) in DELTA_SETTINGS.items():
            difference = paired_difference(self.values.get(first), self.values.get(second))
            if difference is not None:
                deltas[name] = difference
        return ProtocolEntry(*group, model, corpus, self.mz_model, scores, deltas)


def _headline_only(rows: list[ResultRow], headline: Mapping[str, str | Sequence[str]]) -> list[ResultRow]:
    """Rows of each task's headline metric(s); a task without an entry keeps every metric it has."""
    wanted: dict[str, tuple[str, ...]] = {}
    for task in {r.task for r in rows}:
        chosen = headline.get(task, tuple(sorted({r.metric for r in rows if r.task == task})))
        wanted[task] = (chosen,) if isinstance(chosen, str) else tuple(chosen)
    return [r for r in rows if r.metric in wanted[r.task]]


def _group(row: ResultRow) -> tuple[str, str, str, str, str]:
    return row.task, row.metric, row.split, row.lang, row.eval_transform


def _where(group: tuple[str, ...], model: str) -> str:
    return "/".join(group) + (f" ({model})" if model else "")


def _place_untwinned(cells: dict[tuple, _Cell], key: tuple, mz_rows: list[ResultRow]) -> list[tuple]:
    """Cell keys for MZ rows without `twin` (written before it existed) of one (group, corpus).

    They join the group's bilingual model only when that is unambiguous (one bilingual model without an MZ
    yet, one monolingual model), as a one-experiment workdir used to be; otherwise every monolingual model
    gets an entry of its own, with no BZ / BS and no Δ(MZ−BS), rather than a guessed partner.
    """
    group, corpus = key
    bilingual = [k for k, cell in cells.items() if k[:2] == (group, corpus) and cell.has_bilingual()]
    monolingual = sorted({r.model for r in mz_rows})
    if len(bilingual) == 1 and len(monolingual) == 1 and "MZ" not in cells[bilingual[0]].values:
        return [bilingual[0]] * len(mz_rows)
    return [(group, corpus, "", r.model) for r in mz_rows]


def protocol_table(
    rows: Iterable[ResultRow],
    headline_metrics: Mapping[str, str | Sequence[str]] = HEADLINE_METRICS,
) -> list[ProtocolEntry]:
    """BZ, BS, MZ and the paired Δs per (task, headline metric, split, lang, eval transform, bilingual model,
    corpus variant); see the module docstring for seeds.

    Only rows with setting BZ/BS/MZ count. A BZ/BS row belongs to its own `model`; an MZ row to the model its
    `twin` names (an MZ row without `twin`: `_place_untwinned`). ConfigError when one entry would mix rows
    of one setting with different train_lang/train_transform, two monolingual models, or two pretraining
    runs (`extra.pretrained`) under one model name. `headline_metrics` maps task -> metric name or names; a
    task not in it keeps all of its metrics. Sorted by task, metric, split, lang, transform, model, corpus.
    """
    chosen = _headline_only([r for r in rows if r.setting in PROTOCOL_SETTINGS], headline_metrics)
    cells: dict[tuple, _Cell] = {}  # (group, corpus, bilingual model, unpaired monolingual model) -> cell
    untwinned: dict[tuple, list[ResultRow]] = {}
    for row in chosen:
        if row.setting == "MZ" and not row.twin:
            untwinned.setdefault((_group(row), row.corpus), []).append(row)
            continue
        model = row.twin if row.setting == "MZ" else row.model
        key = (_group(row), row.corpus, model, "")
        cells.setdefault(key, _Cell(_where(key[0], model))).add(row)
    for key, mz_rows in untwinned.items():
        for row, cell_key in zip(mz_rows, _place_untwinned(cells, key, mz_rows), strict=True):
            cells.setdefault(cell_key, _Cell(_where(cell_key[0], cell_key[2] or row.model))).add(row)
    entries = [cell.entry(group, model, corpus) for (group, corpus, model, _), cell in cells.items()]
    return sorted(entries, key=lambda e: (e.task, e.metric, e.split, e.lang, e.transform, e.model, e.corpus,
                                          e.mz_model))


# ------------------------------------------------------------------------------------------------------
# Cross-lingual table


@dataclasses.dataclass(frozen=True)
class CrossLingualEntry:
    """One model's scores on one (task, metric, split) across evaluated languages, fine-tuned on `source`.
    `average` is the mean over the languages present (XTREME's per-task average, source included)."""

    model: str
    corpus: str
    task: str
    metric: str
    split: str
    values: dict[str, float]
    seeds: dict[str, int]
    average: float


def crosslingual_table(
    rows: Iterable[ResultRow],
    source: str = "en",
    headline_metrics: Mapping[str, str | Sequence[str]] = HEADLINE_METRICS,
) -> list[CrossLingualEntry]:
    """Zero-shot cross-lingual scores: rows outside the derived protocol (setting ""), on original data
    (both transforms "none"), fine-tuned on `source` (or not fine-tuned at all, train_lang ""), per model
    and corpus variant.

    Per (model, corpus, task, metric, split, lang, seed) the latest row wins; a language shows the mean over
    its seeds. Sorted by model, corpus, task, metric, split.
    """
    chosen = _headline_only([
        r for r in rows
        if r.setting == "" and r.train_transform == IDENTITY and r.eval_transform == IDENTITY
        and r.train_lang in (source, "")
    ], headline_metrics)  # fmt: skip
    latest: dict[tuple, dict[int, float]] = {}
    for r in chosen:
        latest.setdefault((r.model, r.corpus, r.task, r.metric, r.split, r.lang), {})[r.seed] = float(r.value)
    grouped: dict[tuple, dict[str, SeedStats]] = {}
    for (*table, lang), by_seed in latest.items():
        grouped.setdefault(tuple(table), {})[lang] = SeedStats(by_seed)
    entries = []
    for table, by_lang in sorted(grouped.items()):
        values = {lang: stats.mean for lang, stats in by_lang.items()}
        seeds = {lang: stats.n for lang, stats in by_lang.items()}
        entries.append(CrossLingualEntry(*table, values, seeds, sum(values.values()) / len(values)))
    return entries
