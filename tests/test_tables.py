"""Tables from result rows: one protocol entry per bilingual model, MZ from its twin, Δs paired by seed, spread
over seeds; the cross-lingual table.

Rows go through the store's own writer and reader (`append_rows` / `read_rows`). Values are in the range of
the paper's English XNLI rows (Deshpande et al. 2022, Tables 5 and 7) with a plausible seed-to-seed spread;
they exercise the bookkeeping and arithmetic, not a corpus. Expected numbers are computed here from the
per-seed inputs, never copied from the code's output.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.stats

from xlt_jax import results
from xlt_jax.errors import ConfigError
from xlt_jax.results import ResultRow, append_rows, read_rows
from xlt_jax.tables import SeedStats, crosslingual_table, paired_difference, protocol_table

COMMIT = "0" * 40


def make_row(**overrides) -> ResultRow:
    fields = dict(model="roberta8-en+inv", task="pos", lang="en", train_transform="none", eval_transform="inv",
                  setting="BZ", metric="f1", value=50.0, n_examples=100, train_lang="en", commit=COMMIT,
                  time="2024-01-01T00:00:00+00:00")
    fields.update(overrides)
    return ResultRow(**fields)


def xnli(setting: str, value: float, seed: int, *, model: str, transform: str = "translit", twin: str = "",
         corpus: str = "", pretrained: str = "") -> ResultRow:
    """An XNLI row as `xlt_jax.evaluate` writes it for one fine-tuning seed (2490 = XNLI dev per language)."""
    extra = {"pretrained": pretrained} if pretrained else {}
    return ResultRow(model=model, task="nli", lang="en", train_transform=transform if setting == "BS" else "none",
                     eval_transform=transform, setting=setting, metric="accuracy", value=value, n_examples=2490,
                     train_lang="en", seed=seed, corpus=corpus, twin=twin, commit=COMMIT,
                     time="2024-05-01T12:00:00+00:00", extra=extra)


def stored(tmp_path, rows: list[ResultRow]) -> list[ResultRow]:
    """The rows as a report reads them: appended to results.jsonl by the store, read back."""
    append_rows(tmp_path, rows)
    return read_rows(tmp_path)


def experiment(model: str, mono: str, bz: dict, bs: dict, mz: dict, **kw) -> list[ResultRow]:
    """One protocol run's rows: BZ/BS of the bilingual model, MZ of its monolingual twin, per seed."""
    rows = [xnli("BZ", v, s, model=model, **kw) for s, v in bz.items()]
    rows += [xnli("BS", v, s, model=model, **kw) for s, v in bs.items()]
    rows += [xnli("MZ", v, s, model=mono, twin=model, **kw) for s, v in mz.items()]
    return rows


# ------------------------------------------------------------------------------------------------------
# Statistics over seeds


@pytest.mark.parametrize("values", [[74.1, 73.4, 75.0], [74.1, 73.4, 75.0, 72.8, 74.6], [-1.7, -2.9, -0.8]])
def test_seed_stats_match_scipy_t_interval(values):
    stats = SeedStats({seed: v for seed, v in enumerate(values, start=1)})
    n, mean, sd = len(values), sum(values) / len(values), float(np.std(values, ddof=1))
    half = scipy.stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert stats.n == n and stats.mean == pytest.approx(mean)
    assert stats.sd == pytest.approx(sd)  # sample sd (n − 1)
    assert stats.ci95 == pytest.approx((mean - half, mean + half))  # Student's t with n − 1 degrees of freedom


def test_seed_stats_with_one_or_two_seeds_or_no_spread():
    assert (SeedStats({42: 74.1}).sd, SeedStats({42: 74.1}).ci95) == (None, None)
    two = SeedStats({1: 74.1, 2: 73.4})
    assert two.sd == pytest.approx(0.7 / math.sqrt(2)) and two.ci95 is None  # an interval needs 3 seeds
    assert SeedStats({1: 70.0, 2: 70.0, 3: 70.0}).ci95 == (70.0, 70.0)


def test_paired_difference_uses_only_shared_seeds():
    bz, bs = {1: 74.1, 2: 73.4, 3: 75.0}, {1: 75.8, 2: 76.3}
    delta = paired_difference(bz, bs)
    assert delta.seeds == (1, 2) and delta.by_seed == pytest.approx({1: 74.1 - 75.8, 2: 73.4 - 76.3})
    assert paired_difference({1: 74.1}, {2: 75.8}) is None and paired_difference(bz, None) is None


# ------------------------------------------------------------------------------------------------------
# Protocol table: one entry per bilingual model


def test_two_bilingual_models_of_one_language_and_transform_are_two_entries(tmp_path):
    # Table 7 of the paper: a parallel and a non-parallel transliteration model (same lang, same transform),
    # plus a second pretraining run of the parallel recipe under its own name.
    parallel = experiment("bi-en-translit", "mono-en", {1: 74.1}, {1: 76.2}, {1: 33.6}, corpus="parallel")
    nonparallel = experiment("bi-en-translit", "mono-en", {1: 72.4}, {1: 76.2}, {1: 33.1}, corpus="nonparallel-same")
    rerun = experiment("bi-en-translit-run2", "mono-en-run2", {1: 73.5}, {1: 75.9}, {1: 34.0}, corpus="parallel")
    entries = protocol_table(stored(tmp_path, parallel + nonparallel + rerun))
    got = {(e.model, e.corpus): (e.mz_model, e.bz, e.bs, e.mz, e.delta_bz_bs, e.delta_mz_bs) for e in entries}
    assert got == {
        ("bi-en-translit", "parallel"): ("mono-en", 74.1, 76.2, 33.6, pytest.approx(-2.1), pytest.approx(-42.6)),
        ("bi-en-translit", "nonparallel-same"): ("mono-en", 72.4, 76.2, 33.1, pytest.approx(-3.8),
                                                 pytest.approx(-43.1)),
        ("bi-en-translit-run2", "parallel"): ("mono-en-run2", 73.5, 75.9, 34.0, pytest.approx(-2.4),
                                              pytest.approx(-41.9)),
    }
    assert all((e.task, e.lang, e.transform, e.seeds) == ("nli", "en", "translit", (1, 1, 1)) for e in entries)


def test_mz_comes_from_the_twin_of_each_bilingual_model(tmp_path):
    first = experiment("bi-en-translit", "mono-en-a", {1: 74.1}, {1: 76.2}, {1: 33.6})
    second = experiment("bi-en-translit-b", "mono-en-b", {1: 73.5}, {1: 75.9}, {1: 52.0})
    entries = {e.model: e for e in protocol_table(stored(tmp_path, first + second))}
    assert (entries["bi-en-translit"].mz_model, entries["bi-en-translit"].mz) == ("mono-en-a", 33.6)
    assert (entries["bi-en-translit-b"].mz_model, entries["bi-en-translit-b"].mz) == ("mono-en-b", 52.0)
    clash = first + [xnli("MZ", 40.0, 1, model="mono-en-c", twin="bi-en-translit")]
    with pytest.raises(ConfigError, match=r"two monolingual models \(mono-en-a, mono-en-c\)"):
        protocol_table(clash)


def test_rows_without_twin_pair_only_when_unambiguous(tmp_path):
    """Rows written before `twin` existed: one bilingual and one monolingual model per language (a
    one-experiment workdir) still pair; with two bilingual models the MZ stands alone instead of guessing."""
    old = [dataclasses.replace(r, twin="") for r in experiment("bi-en-translit", "mono-en", {1: 74.1}, {1: 76.2},
                                                                 {1: 33.6})]
    (entry,) = protocol_table(stored(tmp_path / "one", old))
    assert (entry.model, entry.mz_model, entry.delta_mz_bs) == ("bi-en-translit", "mono-en", pytest.approx(-42.6))

    other = [xnli(s, v, 1, model="bi-en-translit-b") for s, v in (("BZ", 73.5), ("BS", 75.9))]
    entries = protocol_table(stored(tmp_path / "two", old + other))
    assert [(e.model, e.mz_model, e.mz, e.delta_mz_bs) for e in entries] == [
        ("", "mono-en", 33.6, None), ("bi-en-translit", "", None, None), ("bi-en-translit-b", "", None, None)]


def test_one_model_name_for_two_pretraining_runs_is_refused(tmp_path):
    rows = [xnli("BZ", 74.1, 1, model="bi-en-translit", pretrained="/runs/a/pretrain/bilingual"),
            xnli("BS", 76.2, 1, model="bi-en-translit", pretrained="/runs/b/pretrain/bilingual")]
    with pytest.raises(ConfigError, match="come from two pretraining runs"):
        protocol_table(stored(tmp_path, rows))


# ------------------------------------------------------------------------------------------------------
# Protocol table: seeds


def test_delta_is_paired_over_the_seeds_both_settings_have(tmp_path):
    bz, bs, mz = {1: 74.1, 2: 73.4, 3: 75.0}, {1: 75.8, 2: 76.3}, {1: 33.6, 2: 31.9, 3: 35.2}
    (entry,) = protocol_table(stored(tmp_path, experiment("bi-en-translit", "mono-en", bz, bs, mz)))
    shared = [1, 2]
    assert entry.seeds == (3, 2, 3)
    assert entry.bz == pytest.approx(np.mean(list(bz.values())))  # a setting's own column: all its seeds
    assert entry.delta_bz_bs == pytest.approx(np.mean([bz[s] - bs[s] for s in shared]))
    assert entry.delta_mz_bs == pytest.approx(np.mean([mz[s] - bs[s] for s in shared]))
    assert entry.delta_bz_bs != pytest.approx(entry.bz - entry.bs)  # what an all-seed difference would give
    assert entry.deltas["delta_bz_bs"].sd == pytest.approx(np.std([bz[s] - bs[s] for s in shared], ddof=1))
    assert entry.seed_mismatch("delta_bz_bs") and entry.seed_mismatch("delta_mz_bs")

    matched = experiment("bi-en-inv", "mono-en", bz, {**bs, 3: 76.0}, mz, transform="inv")
    (full,) = protocol_table(stored(tmp_path / "matched", matched))
    assert not full.seed_mismatch("delta_bz_bs") and full.deltas["delta_bz_bs"].n == 3


def test_latest_row_per_seed_wins_and_headline_metrics_are_kept():
    def r(setting, value, **kw):
        train = "inv" if setting == "BS" else "none"
        model, twin = ("mono", "bi") if setting == "MZ" else ("bi", "")
        return make_row(setting=setting, value=value, train_transform=train, model=model, twin=twin, **kw)

    rows = [
        r("BZ", 10.0),  # replaced by the later BZ row of the same seed
        r("BZ", 60.0),
        r("BS", 80.0),
        r("MZ", 50.0),
        r("BZ", 97.0, metric="token_accuracy"),
        r("BS", 98.5, metric="token_accuracy"),
        r("BZ", 40.0, metric="precision"),  # not a headline metric of pos
        r("BZ", 30.0, eval_transform="perm"),  # no BS, no MZ for perm
        r("BZ", 70.0, task="newtask", metric="m1"),  # unknown task: keeps its metrics
        r("", 99.0, eval_transform="none"),  # outside the protocol
    ]
    table = {(e.task, e.metric, e.transform): e for e in protocol_table(rows)}
    assert set(table) == {("pos", "f1", "inv"), ("pos", "token_accuracy", "inv"), ("pos", "f1", "perm"),
                          ("newtask", "m1", "inv")}
    inv = table[("pos", "f1", "inv")]
    assert (inv.bz, inv.bs, inv.mz, inv.delta_bz_bs, inv.delta_mz_bs) == (60.0, 80.0, 50.0, -20.0, -30.0)
    acc = table[("pos", "token_accuracy", "inv")]
    assert acc.delta_bz_bs == pytest.approx(-1.5) and acc.mz is None and acc.delta_mz_bs is None
    perm = table[("pos", "f1", "perm")]
    assert (perm.bz, perm.bs, perm.delta_bz_bs, perm.delta_mz_bs) == (30.0, None, None, None)
    chosen = protocol_table(rows, headline_metrics={"pos": "precision", "newtask": ["m2"]})
    assert [(e.task, e.metric, e.transform, e.bz) for e in chosen] == [("pos", "precision", "inv", 40.0)]


def test_protocol_refuses_to_mix_fine_tuning_sources():
    rows = [make_row(setting="BZ", value=60.0, model="bi"), make_row(setting="BZ", train_lang="fr", model="bi")]
    with pytest.raises(ConfigError, match=r"pos/f1/dev/en/inv \(bi\): several BZ rows"):
        protocol_table(rows)
    assert [e.bz for e in protocol_table(results.select_rows(rows, train_lang="en"))] == [60.0]


# ------------------------------------------------------------------------------------------------------
# Cross-lingual table


def test_crosslingual_table_averages_languages_and_selects_original_data():
    def xl(lang, value, **kw):
        fields = dict(setting="", eval_transform="none", task="nli", metric="accuracy", model="xl")
        return make_row(**{**fields, "lang": lang, "value": value, **kw})

    rows = [xl(lang, v) for lang, v in (("en", 80.0), ("fr", 70.0), ("hi", 60.0))]
    rows += [
        xl("hi", 66.0),  # later: replaces hi
        xl("hi", 64.0, seed=1),  # another seed: averaged with it
        xl("ar", 50.0, train_lang="fr"),  # fine-tuned on fr: not in the en table
        xl("fr", 20.0, task="tatoeba", train_lang=""),  # no fine-tuning
        xl("fr", 71.0, corpus="nonparallel-same"),  # another corpus variant: its own table
        make_row(setting="BZ", task="nli", metric="accuracy", value=1.0, model="xl"),  # protocol row
    ]
    entries = {(e.task, e.model, e.corpus): e for e in crosslingual_table(rows)}
    assert set(entries) == {("nli", "xl", ""), ("tatoeba", "xl", ""), ("nli", "xl", "nonparallel-same")}
    nli = entries[("nli", "xl", "")]
    assert nli.values == {"en": 80.0, "fr": 70.0, "hi": 65.0} and nli.seeds == {"en": 1, "fr": 1, "hi": 2}
    assert nli.average == pytest.approx((80.0 + 70.0 + 65.0) / 3)
    assert entries[("tatoeba", "xl", "")].values == {"fr": 20.0}
    assert crosslingual_table(rows, source="fr")[0].values == {"ar": 50.0}
