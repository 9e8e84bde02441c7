"""The BZ / BS / MZ protocol runner: the plan (pure), markers and resumption (fake steps), and one real
end-to-end run on a tiny model and real data slices.

The end-to-end run uses `inv` rather than `translit+inv` so that the bilingual and monolingual models have
the same vocabulary and (with the monolingual metric slots raised to 2) identical shapes: the protocol's
persistent compile cache then compiles each kind of step once, which keeps the run within budget on two
shared cores. The `translit+inv` plan, including the MZ resize note, is checked without compute.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import runpy
import signal
import subprocess
import sys
import types

import ml_collections
import numpy as np
import pytest

from xlt_jax import results, tables
from xlt_jax.data import tasks
from xlt_jax.data.vocab import SPECIALS
from xlt_jax.errors import ConfigError, Preempted, XltError
from xlt_jax.experiments import markers, protocol, validate
from xlt_jax.finetuning import evaluation, trainer
from xlt_jax.finetuning.task_model import resolve_kind

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "experiments" / "deshpande.py"


def get_config(arg: str) -> ml_collections.ConfigDict:
    return runpy.run_path(str(CONFIG))["get_config"](arg)


def by_name(plan: list[protocol.Step]) -> dict[str, protocol.Step]:
    return {step.name: step for step in plan}


# -- the plan (pure) ---------------------------------------------------------------------------------------


def test_plan_for_translit_inv_on_pos_and_tatoeba_has_exactly_the_protocol_steps(data_dir, tmp_path):
    config = get_config("lang=en,transform=translit+inv,tasks=pos+tatoeba,smoke,corpus=parallel")
    plan = protocol.build_plan(config, tmp_path)
    tatoeba_langs = protocol.offered_langs("tatoeba", "test")
    assert len(tatoeba_langs) == 37 and "en" in tatoeba_langs  # XTREME's 36 Tatoeba languages + the derived en
    expected = [
        # name, kind, after, row settings, targets
        ("pretrain/bilingual", "pretrain", (), (), None),
        ("pretrain/monolingual", "pretrain", ("pretrain/bilingual",), (), None),
        ("finetune/pos/bilingual-original-s42", "finetune", ("pretrain/bilingual",), (), None),
        ("evaluate/pos/BZ-s42", "evaluate", ("finetune/pos/bilingual-original-s42",), ("", "BZ"),
         "en:none+en:translit+inv"),
        ("finetune/pos/bilingual-derived-s42", "finetune", ("pretrain/bilingual",), (), None),
        ("evaluate/pos/BS-s42", "evaluate", ("finetune/pos/bilingual-derived-s42",), ("BS",), "en:translit+inv"),
        ("finetune/pos/monolingual-original-s42", "finetune", ("pretrain/monolingual",), (), None),
        ("evaluate/pos/MZ-s42", "evaluate", ("finetune/pos/monolingual-original-s42",), ("", "MZ"),
         "en:none+en:translit+inv"),
        ("evaluate/pos/crosslingual-bilingual-s42", "evaluate", ("finetune/pos/bilingual-original-s42",), ("",),
         "ar+fr+hi"),
        ("evaluate/pos/crosslingual-monolingual-s42", "evaluate", ("finetune/pos/monolingual-original-s42",),
         ("",), "ar+fr+hi"),
        ("evaluate/tatoeba/BZ", "evaluate", ("pretrain/bilingual",), ("BZ",), "en:translit+inv"),
        ("evaluate/tatoeba/MZ", "evaluate", ("pretrain/monolingual",), ("MZ",), "en:translit+inv"),
        ("evaluate/tatoeba/BS", "skip", (), (), None),
        ("evaluate/tatoeba/crosslingual-bilingual", "evaluate", ("pretrain/bilingual",), ("",),
         "+".join(lang for lang in tatoeba_langs if lang != "en")),
        ("evaluate/tatoeba/crosslingual-monolingual", "evaluate", ("pretrain/monolingual",), ("",),
         "+".join(lang for lang in tatoeba_langs if lang != "en")),
    ]
    assert [(s.name, s.kind, s.after, s.settings) for s in plan] == [e[:4] for e in expected]
    for step, (*_, targets) in zip(plan, expected, strict=True):
        if targets is not None:
            assert step.config.targets == targets, step.name
        if step.kind in protocol.RUNNABLE:
            assert step.workdir == tmp_path.resolve() / step.name and step.marker.name == "DONE.json"

    steps = by_name(plan)
    bi, mono = steps["pretrain/bilingual"], steps["pretrain/monolingual"]
    assert (bi.config.data.mode, bi.config.data.langs, bi.config.data.transform) == ("bilingual", "en", "translit+inv")
    assert (mono.config.data.mode, mono.config.data.langs, mono.config.data.transform) == ("monolingual", "en", "none")
    assert mono.config.tokenizer.path == str(bi.workdir / "tokenizer")  # one tokenizer for both models
    for name, pre, transform in [("bilingual-original", bi, "none"), ("bilingual-derived", bi, "translit+inv"),
                                 ("monolingual-original", mono, "none")]:
        ft = steps[f"finetune/pos/{name}-s42"].config
        assert (ft.task, ft.pretrained, ft.lang, ft.train_transform, ft.seed) == ("pos", str(pre.workdir), "en",
                                                                                 transform, 42)
    bilingual = "bilingual-en-translit+inv"
    for setting, finetuned, model, twin in [("BZ", "bilingual-original", bilingual, ""),
                                            ("BS", "bilingual-derived", bilingual, ""),
                                            ("MZ", "monolingual-original", "monolingual-en", bilingual)]:
        ev = steps[f"evaluate/pos/{setting}-s42"].config
        assert (ev.finetuned, ev.setting, ev.model_name) == (str(steps[f"finetune/pos/{finetuned}-s42"].workdir),
                                                             setting, model)
        assert (ev.twin, ev.corpus) == (twin, "parallel")  # the MZ rows name the bilingual model they belong to
    assert "resized" in steps["evaluate/pos/MZ-s42"].note and "resized" in steps["evaluate/tatoeba/MZ"].note
    for setting, pre, twin in [("BZ", bi, ""), ("MZ", mono, bilingual)]:
        ev = steps[f"evaluate/tatoeba/{setting}"].config
        assert (ev.task, ev.pretrained, ev.finetuned, ev.setting) == ("tatoeba", str(pre.workdir), "", setting)
        assert (ev.twin, ev.corpus) == (twin, "parallel")
    assert "no fine-tuning" in steps["evaluate/tatoeba/BS"].note


def test_declared_row_settings_are_those_the_evaluator_assigns(data_dir, tmp_path):
    """The plan's `settings` per evaluation agree with `evaluation.row_setting` on every target."""
    config = get_config("transform=translit+inv,tasks=pos+ner+nli+qa+tatoeba,seeds=1+2,smoke")
    plan = protocol.build_plan(config, tmp_path)
    finetuned = {s.workdir: s.config for s in plan if s.kind == "finetune"}
    assert len(finetuned) == 4 * 3 * 2  # tasks x (bilingual-original, bilingual-derived, monolingual-original) x seeds
    for step in (s for s in plan if s.kind == "evaluate"):
        ev = step.config
        if ev.task == "tatoeba":
            train_lang, train_transform = "", "none"
        else:
            ft = finetuned[pathlib.Path(ev.finetuned)]
            train_lang, train_transform = ft.lang, ft.train_transform
        assigned = [
            evaluation.row_setting(ev.setting, train_lang=train_lang, train_transform=train_transform, lang=lang,
                                   eval_transform=transform)
            for lang, transform in evaluation.parse_targets(ev.targets)
        ]
        assert tuple(dict.fromkeys(assigned)) == step.settings, step.name


def inversion_order(ids: np.ndarray) -> np.ndarray:
    """REFERENCE_SPEC §1.1/§1.2 written out: positions of one row with every run between <s>/</s> reversed
    (the specials stay in place; trailing padding is a run of its own)."""
    order: list[int] = []
    run: list[int] = []
    for i, token in enumerate(ids.tolist()):
        if token in (SPECIALS.bos, SPECIALS.eos):
            order += [*run[::-1], i]
            run = []
        else:
            run.append(i)
    return np.array(order + run[::-1], np.int64)


def translit(ids: np.ndarray, base_size: int) -> np.ndarray:
    """REFERENCE_SPEC §1.4: every id but <s>, </s>, <pad> shifted by V."""
    return np.where(np.isin(ids, (SPECIALS.bos, SPECIALS.eos, SPECIALS.pad)), ids, ids + base_size)


def test_each_setting_fine_tunes_on_the_data_it_names(data_dir, tiny_tokenizer, tmp_path):
    """BS trains on derived data, BZ and MZ on the original (REFERENCE_SPEC §4.1), checked on the token ids
    the trainer's data preparation hands to the model for each planned fine-tune of every task: a BS
    fine-tune on original data, or a BZ/MZ one on derived data, fails here."""
    config = get_config("transform=translit+inv,tasks=pos+ner+nli+qa,crosslingual=false,smoke")
    plan = protocol.build_plan(config, tmp_path)
    steps = by_name(plan)
    v = tiny_tokenizer.base_size
    pre = types.SimpleNamespace(tokenizer=tiny_tokenizer)  # all `prepare_training_data` reads of the run
    checked = []
    for ev in (s for s in plan if s.kind == "evaluate"):
        setting = ev.name.split("/")[2].split("-")[0]
        ft = copy.deepcopy(steps[ev.after[0]].config)
        model = "bilingual" if setting in ("BZ", "BS") else "monolingual"
        assert ft.pretrained == str(steps[f"pretrain/{model}"].workdir), ev.name
        ft.max_train_examples = 8
        _, features, _ = trainer.prepare_training_data(ft, pre, resolve_kind(ft.task, "roberta", ft.head))
        original = tasks.prepare(ft.task, tiny_tokenizer, lang=ft.lang, split=ft.train_split, transform="none",
                                 seed=int(ft.transform_seed), max_len=int(ft.max_len), limit=8,
                                 bucket=int(ft.bucket), **trainer.task_options(ft)).features["input_ids"]
        got = features["input_ids"]
        assert len(got) == len(original) >= 8, ev.name
        if setting == "BS":  # translit+inv: every piece shifted to [V, 2V), each segment reversed
            content = got[~np.isin(got, (SPECIALS.bos, SPECIALS.eos, SPECIALS.pad))]
            assert np.all(content >= v), f"{ev.name}: trains on original pieces (ids < V)"
            for row, orig in zip(got, original, strict=True):
                np.testing.assert_array_equal(row, translit(orig[inversion_order(orig)], v), err_msg=ev.name)
        else:
            assert got.max() < v, ev.name
            np.testing.assert_array_equal(got, original, err_msg=ev.name)
        checked.append((ft.task, setting))
    assert sorted(checked) == sorted((t, s) for t in ("pos", "ner", "nli", "qa") for s in ("BZ", "BS", "MZ"))


def test_syntax_keeps_pos_on_ud_trees_and_skips_tasks_without_trees(data_dir, tmp_path):
    config = get_config("transform=syntax:hi,tasks=pos+ner+nli+qa+tatoeba,crosslingual=false,smoke")
    plan = protocol.build_plan(config, tmp_path)
    skipped = {s.name: s.note for s in plan if s.kind == "skip"}
    assert set(skipped) == {"task/ner", "task/nli", "task/qa", "task/tatoeba"}
    assert all("trees" in note for note in skipped.values())
    steps = by_name(plan)
    for name in ("bilingual-original", "bilingual-derived", "monolingual-original"):
        assert steps[f"finetune/pos/{name}-s42"].config.train_source == "ud"
    for setting in ("BZ", "BS", "MZ"):
        assert steps[f"evaluate/pos/{setting}-s42"].config.source == "ud"  # dev with gold trees
    assert not any("crosslingual" in s.name for s in plan)

    perm = protocol.build_plan(get_config("transform=perm,tasks=qa+pos,xl_langs=fr,smoke"), tmp_path)
    assert [s.name for s in perm if s.kind == "skip"] == ["task/qa"]
    assert "perm" in by_name(perm)["task/qa"].note
    assert by_name(perm)["evaluate/pos/crosslingual-bilingual-s42"].config.targets == "fr"


def test_syntax_protocol_pretrains_both_models_on_the_same_original_sentences(data_dir, tmp_path):
    """The monolingual twin reads the bilingual model's original side (the trees' sentences, not the whole
    corpus), no evaluation sentence, and the plan names each model's corpus."""
    from xlt_jax.data import corpora
    from xlt_jax.training import inputs

    steps = by_name(protocol.build_plan(get_config("transform=syntax:fr,tasks=pos,crosslingual=false,smoke"),
                                        tmp_path))
    bi, mono = steps["pretrain/bilingual"], steps["pretrain/monolingual"]
    (bi_texts, derived), (mono_texts, mono_derived) = inputs.load_texts(bi.config), inputs.load_texts(mono.config)
    original = bi_texts["en"]
    assert mono_texts == bi_texts and mono_derived is None
    assert len(original) == bi.config.corpus.max_sentences == 3000
    assert [sorted(t.split()) for t in derived] == [sorted(t.split()) for t in original]  # line i reordered
    assert sum(d != o for d, o in zip(derived, original, strict=True)) > len(original) // 2
    evaluation = corpora.evaluation_keys("en")
    assert not any(corpora.sentence_key(t) in evaluation for t in original)
    words = sum(len(t.split()) for t in original)
    for step in (bi, mono):
        assert f"corpus treebank:en: {len(original):,} sentences, {words:,} words" in step.note
    assert "+ the same sentences as en:syntax:fr" in bi.note

    config = get_config("transform=syntax:fr,tasks=pos,crosslingual=false,smoke")
    config.pretrain.bilingual.corpus.source = "lang:{lang}"  # the whole corpus has no trees to reorder
    with pytest.raises(ConfigError, match="corpus.source must be 'treebank:{lang}'"):
        protocol.build_plan(config, tmp_path)


@pytest.mark.parametrize("arg, message", [
    ("transform=bogus", "transform"),
    ("transform=none", "derives no language"),
    ("tasks=pos+xnli", "tasks"),
    ("seeds=a", "seeds"),
])
def test_bad_experiment_configs_fail_before_any_compute(arg, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        protocol.build_plan(get_config(arg + ",crosslingual=false"), tmp_path)


def test_dry_run_prints_the_plan_and_creates_nothing(data_dir, tmp_path):
    workdir = tmp_path / "protocol"
    done = subprocess.run(
        [sys.executable, "-m", "xlt_jax.experiments.protocol",
         f"--config={CONFIG}:transform=translit+inv,tasks=pos+tatoeba,smoke", f"--workdir={workdir}", "--dry_run",
         "--config.finetune.pos.train.epochs=2"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "15 steps: 14 todo, 1 skip" in done.stdout
    assert "evaluate/pos/MZ-s42" in done.stdout and "2 epochs" in done.stdout
    assert done.stdout.count("; corpus lang:en: 3,000 sentences,") == 2  # each pretraining run's corpus
    assert not workdir.exists()


# -- markers, status and resumption (fake steps, no compute) ---------------------------------------------------


class FakeSteps:
    """Stands in for `protocol.execute`: records calls, fails the named steps with an XltError."""

    def __init__(self, fail: tuple[str, ...] = ()):
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, step: protocol.Step, workdir: pathlib.Path) -> dict:
        self.calls.append(step.name)
        if step.name in self.fail:
            raise ConfigError(f"{step.name}: simulated failure")
        return {"fake": True}


def fake_config(arg: str = "") -> ml_collections.ConfigDict:
    config = get_config("transform=inv,tasks=pos+tatoeba,xl_langs=fr,smoke" + (f",{arg}" if arg else ""))
    config.compilation_cache = ""
    return config


def test_failed_steps_block_their_dependents_and_a_rerun_resumes_exactly_there(data_dir, tmp_path, monkeypatch):
    config = fake_config()
    runnable = [s.name for s in protocol.build_plan(config, tmp_path) if s.kind in protocol.RUNNABLE]

    first = FakeSteps(fail=("finetune/pos/bilingual-derived-s42",))
    monkeypatch.setattr(protocol, "execute", first)
    with pytest.raises(protocol.ProtocolFailed, match="bilingual-derived-s42: ConfigError: .*simulated failure"):
        protocol.run(config, tmp_path, out=lambda _: None)
    assert "evaluate/pos/BS-s42" not in first.calls  # blocked by its failed fine-tune
    assert first.calls == [n for n in runnable if n != "evaluate/pos/BS-s42"]

    second = FakeSteps()
    monkeypatch.setattr(protocol, "execute", second)
    lines: list[str] = []
    result = protocol.run(config, tmp_path, out=lines.append)
    assert second.calls == result.executed == ["finetune/pos/bilingual-derived-s42", "evaluate/pos/BS-s42"]
    # Before its first step, the resumed run estimates what is left from the durations the first run recorded.
    first_run = next(i for i, line in enumerate(lines) if line.startswith("["))
    assert lines[first_run - 1].startswith("2 step(s) to run; ETA "), lines
    assert lines[first_run - 1].endswith("(from the steps done before)"), lines

    third = FakeSteps()
    monkeypatch.setattr(protocol, "execute", third)
    assert protocol.run(config, tmp_path, out=lambda _: None).executed == [] and third.calls == []


def test_sigterm_during_a_step_finishes_it_then_stops_the_runner_before_the_next(data_dir, tmp_path, monkeypatch):
    """An evaluation has no checkpoint: SIGTERM lets it finish (and write DONE.json); the runner then stops."""
    config = fake_config()
    steps = FakeSteps()

    def preempted_during_the_first(step: protocol.Step, workdir: pathlib.Path) -> dict:
        if not steps.calls:
            os.kill(os.getpid(), signal.SIGTERM)  # a preemption notice, caught by the runner's handler
        return steps(step, workdir)

    monkeypatch.setattr(protocol, "execute", preempted_during_the_first)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted, match="stopped before pretrain/monolingual; rerun the same command"):
        protocol.run(config, tmp_path, out=lambda _: None)
    assert steps.calls == ["pretrain/bilingual"] and (tmp_path / "pretrain/bilingual/DONE.json").is_file()
    assert signal.getsignal(signal.SIGTERM) == before  # the runner's handler is gone again


def test_changed_configs_make_training_steps_an_error_and_evaluations_rerun(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(protocol, "execute", FakeSteps())
    protocol.run(fake_config(), tmp_path, out=lambda _: None)
    marker = json.loads((tmp_path / "finetune/pos/bilingual-original-s42/DONE.json").read_text())
    assert marker["step"] == "finetune/pos/bilingual-original-s42" and marker["summary"] == {"fake": True}

    # Bookkeeping keys do not make a finished step stale.
    quiet = fake_config()
    quiet.finetune.pos.train.log_every = 1
    quiet.evaluate.pos.batch_size = 64
    assert set(protocol.plan_status(protocol.build_plan(quiet, tmp_path)).values()) == {"done", "skip"}

    # A run finished before `model.scan_unroll` and `model.attention_impl` existed (its marker's config lacks
    # the keys) stays resumable.
    step = next(s for s in protocol.build_plan(fake_config(), tmp_path) if s.name == "pretrain/bilingual")
    older = json.loads(step.marker.read_text())
    with step.config.unlocked():
        for key in ("scan_unroll", "attention_impl"):
            del older["config"]["model"][key]
            del step.config.model[key]
    older["fingerprint"] = markers.fingerprint(step)  # what the code of then computed
    step.marker.write_text(json.dumps(older))
    assert set(protocol.plan_status(protocol.build_plan(fake_config(), tmp_path)).values()) == {"done", "skip"}

    changed = fake_config()
    changed.finetune.pos.optimizer.learning_rate = 5e-4
    status = protocol.plan_status(protocol.build_plan(changed, tmp_path))
    assert status["finetune/pos/bilingual-original-s42"] == "stale"
    assert status["evaluate/pos/BZ-s42"] == "todo"  # its model will change
    assert status["pretrain/bilingual"] == "done"
    with pytest.raises(ConfigError, match=r"finetune/pos/bilingual-original-s42: .*changed: optimizer.learning_rate"):
        protocol.run(changed, tmp_path, out=lambda _: None)

    more = fake_config()
    more.evaluate.pos.max_examples = 32
    calls = FakeSteps()
    monkeypatch.setattr(protocol, "execute", calls)
    protocol.run(more, tmp_path, out=lambda _: None)
    assert calls.calls == ["evaluate/pos/BZ-s42", "evaluate/pos/BS-s42", "evaluate/pos/MZ-s42",
                           "evaluate/pos/crosslingual-bilingual-s42", "evaluate/pos/crosslingual-monolingual-s42"]


def test_a_plan_is_checked_whole_before_any_step_runs(data_dir, tmp_path, monkeypatch):
    """The 26-minute mistake of the first CPU replication (fine-tuning max_len 512 against a 64-position model)
    and a missing data file are both reported at once, before anything runs."""
    config = fake_config("ft_max_len=512")
    config.evaluate.pos.source = "no_such_source"
    config.pretrain.bilingual.data.global_batch_size = 6  # 8 fake devices cannot split it
    fake = FakeSteps()
    monkeypatch.setattr(protocol, "execute", fake)
    with pytest.raises(ConfigError) as error:
        protocol.run(config, tmp_path / "protocol", out=lambda _: None)
    message = str(error.value)
    assert "finetune/pos/bilingual-original-s42: max_len=512 exceeds the pretrained position table" in message
    assert "finetune/pos/monolingual-original-s42: max_len=512" in message
    assert "evaluate/pos/BZ-s42: target en:none" in message and "no_such_source" in message
    assert "pretrain/bilingual: data.global_batch_size=6" in message
    assert fake.calls == [] and not (tmp_path / "protocol").exists()
    # A consistent plan passes the same check.
    assert validate.plan_problems(protocol.build_plan(fake_config(), tmp_path / "ok")) == []


def test_reused_pretraining_runs_are_not_run_and_must_have_a_checkpoint(data_dir, tmp_path, monkeypatch):
    given = tmp_path / "given_bilingual"
    (given / "checkpoints" / "7" / "state").mkdir(parents=True)
    config = fake_config(f"bilingual={given},monolingual={tmp_path / 'nothing'}")
    plan = protocol.build_plan(config, tmp_path / "protocol")
    steps = by_name(plan)
    assert steps["pretrain/bilingual"].kind == steps["pretrain/monolingual"].kind == "reuse"
    assert steps["finetune/pos/bilingual-original-s42"].config.pretrained == str(given.resolve())
    status = protocol.plan_status(plan)
    assert (status["pretrain/bilingual"], status["pretrain/monolingual"]) == ("reuse", "missing")
    monkeypatch.setattr(protocol, "execute", FakeSteps())
    with pytest.raises(XltError, match="pretrain/monolingual: .*no finished checkpoint"):
        protocol.run(config, tmp_path / "protocol", out=lambda _: None)


# -- end to end ---------------------------------------------------------------------------------------------


TRAINED_ON: dict[str, list[dict[str, np.ndarray]]] = {}  # fine-tune workdir -> the batches its train step got


def recording_batches(batches, record: dict):
    """Wraps `_Finetuner.batches`: every batch the fine-tuning loop feeds its train step is also kept."""

    def wrapped(self, step):
        for batch in batches(self, step):
            record.setdefault(str(self.workdir), []).append({k: np.array(v) for k, v in batch.items()})
            yield batch

    return wrapped


@pytest.fixture(scope="module")
def e2e(data_dir, tmp_path_factory):
    """The whole protocol for POS with tiny everything; returns (config, workdir, first run's result, printed
    lines). The batches every fine-tune trains on are kept in TRAINED_ON."""
    config = get_config("lang=en,transform=inv,tasks=pos,xl_langs=fr,smoke,steps=4,ft_steps=6,ft_examples=192,"
                        "eval_examples=48")
    shards = str(tmp_path_factory.mktemp("shards"))
    for pre in (config.pretrain.bilingual, config.pretrain.monolingual):
        pre.data.cache_dir = shards
        pre.corpus.source = "conllu:ud/en_ewt/train.conllu.gz"  # one file: faster than every text minus eval
    config.pretrain.monolingual.model.num_langs = 2  # same shapes as the bilingual model: compiled once
    workdir = tmp_path_factory.mktemp("protocol")
    printed: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer._Finetuner, "batches", recording_batches(trainer._Finetuner.batches, TRAINED_ON))
        result = protocol.run(config, workdir, out=printed.append)
    return config, workdir, result, printed


def test_e2e_protocol_writes_bz_bs_mz_rows_and_the_report(e2e):
    config, workdir, result, printed = e2e
    runnable = [s.name for s in result.plan if s.kind in protocol.RUNNABLE]
    assert result.executed == runnable and len(runnable) == 10
    assert printed[0].startswith("Protocol en:inv tasks=pos") and "10 steps: 10 todo" in printed[0]

    rows = results.read_rows(workdir)
    got = {(r.setting, r.model, r.lang, r.train_transform, r.eval_transform) for r in rows if r.metric == "f1"}
    assert got == {
        ("", "bilingual-en-inv", "en", "none", "none"),
        ("BZ", "bilingual-en-inv", "en", "none", "inv"),
        ("BS", "bilingual-en-inv", "en", "inv", "inv"),
        ("", "monolingual-en", "en", "none", "none"),
        ("MZ", "monolingual-en", "en", "none", "inv"),
        ("", "bilingual-en-inv", "fr", "none", "none"),
        ("", "monolingual-en", "fr", "none", "none"),
    }
    assert {r.metric for r in rows} == {"f1", "token_accuracy"} and all(r.task == "pos" for r in rows)
    assert all(r.n_examples == 48 and r.seed == 42 for r in rows)
    assert {r.twin for r in rows if r.model == "monolingual-en"} == {"bilingual-en-inv"}  # MZ's bilingual model

    entries = {e.metric: e for e in tables.protocol_table(rows)}
    value = {(r.setting, r.metric): r.value for r in rows if r.setting}
    for metric in ("f1", "token_accuracy"):
        e = entries[metric]
        assert (e.task, e.lang, e.transform) == ("pos", "en", "inv")
        assert (e.bz, e.bs, e.mz) == (value["BZ", metric], value["BS", metric], value["MZ", metric])
        assert e.delta_bz_bs == pytest.approx(e.bz - e.bs) and e.delta_mz_bs == pytest.approx(e.mz - e.bs)
    assert result.report == (workdir / "report" / "report.md").read_text() and result.report == printed[-1]
    assert "| Inversion | en |" in result.report and "### `monolingual-en`" in result.report

    for name in runnable:
        marker = json.loads((workdir / name / "DONE.json").read_text())
        assert marker["step"] == name and marker["fingerprint"]
    bz = json.loads((workdir / "evaluate/pos/BZ-s42/DONE.json").read_text())["summary"]["rows"]
    assert {(r["setting"], r["eval_transform"]) for r in bz} == {("", "none"), ("BZ", "inv")}
    ft = json.loads((workdir / "finetune/pos/bilingual-derived-s42/DONE.json").read_text())["summary"]
    assert ft == {"start_step": 0, "final_step": 6}


def test_e2e_bs_fine_tune_trains_on_derived_batches_and_bz_mz_on_original(e2e):
    """The batches each protocol fine-tune actually fed its train step: BS's are the inverted training
    sentences (pieces and POS labels reversed together), BZ's and MZ's the original ones (REFERENCE_SPEC §4.1)."""
    from xlt_jax.data.tokenizer import Tokenizer

    _, workdir, result, _ = e2e
    steps = by_name(result.plan)
    ft = steps["finetune/pos/bilingual-derived-s42"].config
    tokenizer = Tokenizer.load(workdir / "pretrain" / "bilingual" / "tokenizer")
    original = tasks.prepare("pos", tokenizer, lang="en", split="train", max_len=int(ft.max_len),
                             limit=int(ft.max_train_examples), bucket=int(ft.bucket)).features

    def key(ids: np.ndarray, labels: np.ndarray) -> tuple:
        n = int(np.count_nonzero(ids != SPECIALS.pad))
        return tuple(ids[:n].tolist()), tuple(labels[:n].tolist())

    plain = {key(i, lab) for i, lab in zip(original["input_ids"], original["labels"], strict=True)}
    inverted = set()
    for ids, labels in zip(original["input_ids"], original["labels"], strict=True):
        order = inversion_order(ids)
        inverted.add(key(ids[order], labels[order]))
    assert len(plain & inverted) < 0.05 * len(plain)  # few palindromes: the two sets tell the data apart
    for name, expected in [("bilingual-derived", inverted), ("bilingual-original", plain),
                           ("monolingual-original", plain)]:
        batches = TRAINED_ON[str(steps[f"finetune/pos/{name}-s42"].workdir)]
        assert len(batches) == int(ft.train.max_steps), name
        rows = [key(i, lab) for b in batches for i, lab in zip(b["input_ids"], b["labels"], strict=True)]
        wrong = sum(row not in expected for row in rows)
        assert wrong == 0, f"{name}: {wrong} of {len(rows)} training rows are not its setting's data"


def test_e2e_rerun_skips_finished_steps_and_resumes_a_lost_one(e2e):
    config, workdir, first, _ = e2e
    markers = {p: p.read_bytes() for p in workdir.rglob("DONE.json")}
    rows_before = results.read_rows(workdir)

    again = protocol.run(config, workdir, out=lambda _: None)
    assert again.executed == [] and set(again.status.values()) == {"done"}
    assert {p: p.read_bytes() for p in workdir.rglob("DONE.json")} == markers
    assert len(results.read_rows(workdir)) == len(rows_before)

    marker = workdir / "evaluate/pos/BS-s42/DONE.json"
    summary = json.loads(marker.read_text())["summary"]
    marker.unlink()  # as if the run had been killed after appending its rows, before writing the marker
    resumed = protocol.run(config, workdir, out=lambda _: None)
    assert resumed.executed == ["evaluate/pos/BS-s42"]
    # Its rows (tagged with the step, its fingerprint and the code) were already written: adopted, not doubled.
    assert len(results.read_rows(workdir)) == len(rows_before)
    assert json.loads(marker.read_text())["summary"] == summary

    # Rows written by other code are not adopted: the step evaluates again and appends its own.
    marker.unlink()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(results, "code_commit", lambda *a: "other-commit")
        again = protocol.run(config, workdir, out=lambda _: None)
    assert again.executed == ["evaluate/pos/BS-s42"]
    rows = results.read_rows(workdir)
    new = rows[len(rows_before):]
    assert {(r.setting, r.metric) for r in new} == {("BS", "f1"), ("BS", "token_accuracy")}
    old = {r.metric: r.value for r in rows_before if r.setting == "BS"}
    assert {r.metric: r.value for r in new} == old  # same fine-tuned model, same data: the same numbers


def test_a_pretraining_marker_keeps_the_final_held_out_loss(monkeypatch, tmp_path):
    """DONE.json of a pretraining step says whether the model left the MLM plateau (its last evaluation)."""
    from types import SimpleNamespace

    from xlt_jax.experiments import runner
    from xlt_jax.training import loop

    evals = [{"step": 500, "eval/loss": 6.02}, {"step": 2400, "eval/loss": 4.51, "eval/loss/en": 4.4}]
    monkeypatch.setattr(loop, "run", lambda config, workdir: SimpleNamespace(start_step=0, final_step=2400,
                                                                             evals=evals))
    step = protocol.Step("pretrain/bilingual", "pretrain", workdir=tmp_path, config=None)
    summary = runner.execute(step, tmp_path)
    assert summary == {"start_step": 0, "final_step": 2400,
                       "eval": {"step": 2400, "eval/loss": 4.51, "eval/loss/en": 4.4}}
