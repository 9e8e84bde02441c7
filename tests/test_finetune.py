"""Fine-tuning and evaluation end to end on a tiny model and real data slices (8 fake CPU devices).

One tiny RoBERTa is pretrained per module with the pretraining loop's smoke config; every task is then
fine-tuned from it briefly and evaluated into a results file. Compiles dominate the cost, so the module
shares JAX's persistent compilation cache and each fine-tune uses one bucket length.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pathlib
import runpy
import subprocess
import sys
import types
from collections import Counter

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from xlt_jax import results
from xlt_jax.data import tasks
from xlt_jax.data.readers.nli import NLI_LABELS
from xlt_jax.data.tasks import tagging
from xlt_jax.data.tokenizer import Tokenizer
from xlt_jax.data.vocab import SPECIALS, VocabLayout
from xlt_jax.errors import ConfigError
from xlt_jax.finetuning import artifacts, evaluation, loading, pretrained, text_to_text, trainer, vocab_resize
from xlt_jax.finetuning.task_model import HeadSpec, task_model_fn
from xlt_jax.models import build_model
from xlt_jax.training import checkpointing, loop, partitioning
from xlt_jax.training import state as state_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
POS_STEPS = 60
POS_TRAIN_EXAMPLES = 640
DEV_EXAMPLES = 300
POS_ARGS = f"lr=1e-3,epochs=10,steps={POS_STEPS},examples={POS_TRAIN_EXAMPLES}"
BOS, EOS = SPECIALS.bos, SPECIALS.eos


def get_config(path: pathlib.Path, arg: str) -> ml_collections.ConfigDict:
    return runpy.run_path(str(path))["get_config"](arg)


def finetune(
    task: str, pretrained_dir: pathlib.Path, workdir: pathlib.Path, arg: str = "", *, checkpoint_every: int = 0,
    stop_after: int | None = None,
) -> trainer.FinetuneResult:
    args = f"smoke,pretrained={pretrained_dir}" + (f",{arg}" if arg else "")
    config = get_config(CONFIGS / "finetune" / f"{task}.py", args)
    config.bucket = 64  # = max_len: one batch shape, one compile
    config.train.checkpoint_every = checkpoint_every
    return trainer.run(config, workdir, stop_after=stop_after)


def evaluate(workdir: pathlib.Path, arg: str) -> list[results.ResultRow]:
    return evaluation.run(get_config(CONFIGS / "evaluate.py", arg), workdir)


@pytest.fixture(scope="module")
def pretrained_dir(data_dir, compile_cache, pretrain_smoke) -> pathlib.Path:
    """A tiny monolingual English RoBERTa: the pretraining smoke config, 8 steps on UD EWT sentences."""
    return pretrain_smoke("monolingual.py", "smoke", steps=8, corpus_source="conllu:ud/en_ewt/train.conllu.gz")


@pytest.fixture(scope="module")
def pos_dir(pretrained_dir, tmp_path_factory) -> pathlib.Path:
    """POS fine-tuned in two invocations: "preempted" after half the steps, then resumed by the same command."""
    workdir = tmp_path_factory.mktemp("pos")
    half = POS_STEPS // 2
    first = finetune("pos", pretrained_dir, workdir, POS_ARGS, checkpoint_every=half, stop_after=half)
    assert (first.start_step, first.final_step) == (0, half)
    second = finetune("pos", pretrained_dir, workdir, POS_ARGS, checkpoint_every=half)
    assert (second.start_step, second.final_step) == (half, POS_STEPS)
    return workdir


# -- fine-tuning -------------------------------------------------------------------------------------------


def test_pos_token_accuracy_is_clearly_above_the_majority_tag_baseline(pos_dir, data_dir, tmp_path):
    rows = evaluate(tmp_path, f"finetuned={pos_dir},targets=en:none,examples={DEV_EXAMPLES}")
    values = {r.metric: r.value for r in rows}
    assert set(values) == {"f1", "token_accuracy"}
    # Majority baseline: the most frequent training tag, predicted for every dev word.
    train = tasks.load("pos", "en", "train", limit=POS_TRAIN_EXAMPLES).examples
    dev = tasks.load("pos", "en", "dev", limit=DEV_EXAMPLES).examples
    majority = Counter(t for s in train for t in s.tags).most_common(1)[0][0]
    dev_tags = [t for s in dev for t in s.tags]
    baseline = 100.0 * dev_tags.count(majority) / len(dev_tags)
    print(f"POS dev token accuracy {values['token_accuracy']:.1f} vs majority-tag ({majority}) {baseline:.1f}")
    assert values["token_accuracy"] > baseline + 15.0


def test_finetuned_workdir_holds_checkpoint_config_tokenizer_and_rerun_is_a_no_op(pos_dir, pretrained_dir):
    info = json.loads((pos_dir / artifacts.INFO_FILE).read_text())
    assert info["task"] == "pos" and info["head"]["kind"] == "tagging" and info["head"]["num_labels"] == 17
    assert info["pretrained"] == str(pretrained_dir.resolve()) and info["train_transform"] == "none"
    assert info["layout"] == {"base_size": 1000, "copies": 1, "num_sentinels": 0}
    config = json.loads((pos_dir / artifacts.CONFIG_FILE).read_text())
    assert config["optimizer"]["learning_rate"] == 1e-3 and config["task"] == "pos"
    assert Tokenizer.load(pos_dir / artifacts.TOKENIZER_DIR).base_size == 1000
    assert pretrained.checkpoint_steps(pos_dir / artifacts.CHECKPOINT_DIR) == [POS_STEPS]
    # Only the backbone an encoder head uses was fine-tuned: no MLM head in the task model.
    restored, data_state = checkpointing.Checkpointer(pos_dir / artifacts.CHECKPOINT_DIR, max_to_keep=1).restore(
        POS_STEPS
    )
    assert set(restored["params"]) == {"backbone", "head"} and "lm_head" not in restored["params"]["backbone"]
    assert data_state["step"] == POS_STEPS
    again = finetune("pos", pretrained_dir, pos_dir, POS_ARGS)
    assert (again.start_step, again.final_step, again.history) == (POS_STEPS, POS_STEPS, [])
    with pytest.raises(ConfigError, match="other training data"):
        finetune("pos", pretrained_dir, pos_dir, POS_ARGS + ",seed=7")
    assert json.loads((pos_dir / artifacts.CONFIG_FILE).read_text())["seed"] == 42  # the run's files are kept


def test_training_batches_after_a_resume_are_those_of_an_uninterrupted_run(tiny_tokenizer):
    data = tasks.prepare("pos", tiny_tokenizer, lang="en", split="dev", max_len=64, limit=100)
    kw = dict(batch_size=8, seed=3, bucket=32, per_epoch=len(data.features) // 8)
    uninterrupted = list(itertools.islice(trainer.training_batches(data.features, **kw), 40))
    resumed = list(itertools.islice(trainer.training_batches(data.features, start_step=17, **kw), 23))
    assert kw["per_epoch"] < 17 < 40 < 3 * kw["per_epoch"]  # the resume point and the range cross epochs
    for a, b in zip(uninterrupted[17:], resumed, strict=True):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(uninterrupted[0]["input_ids"], uninterrupted[kw["per_epoch"]]["input_ids"])


@pytest.mark.parametrize(
    "task, targets, metrics",
    [
        ("ner", "en:none+en:inv", {"f1"}),
        ("nli", "en:none+fr:none", {"accuracy"}),
        ("qa", "en:none+en:inv", {"exact_match", "f1"}),
    ],
)
def test_task_runs_end_to_end_and_writes_rows(task, targets, metrics, pretrained_dir, tmp_path):
    finetuned = tmp_path / task
    result = finetune(task, pretrained_dir, finetuned, "steps=2")
    assert result.final_step == 2 and all(np.isfinite(h["loss"]) for h in result.history)
    rows = evaluate(tmp_path / "results", f"finetuned={finetuned},targets={targets},setting=BZ,examples=24")
    assert [(r.lang, r.eval_transform) for r in rows] == [
        (lang, transform) for lang, transform in evaluation.parse_targets(targets) for _ in metrics
    ]
    for row in rows:
        assert row.task == task and row.metric in metrics and 0.0 <= row.value <= 100.0
        assert row.model == pretrained_dir.name and row.train_lang == "en" and row.train_transform == "none"
        assert row.split == "dev" and row.n_examples == 24 and row.checkpoint.endswith("/checkpoints/2")
        # BZ only where the evaluated transformation differs from the fine-tuning data's.
        assert row.setting == ("BZ" if row.eval_transform != "none" else "")
        if task == "ner":  # tagging rows say how predictions were scored (configs/evaluate.py default)
            assert row.extra["prediction_bio"] == "as_emitted"
    assert results.read_rows(tmp_path / "results") == rows


# -- evaluation ----------------------------------------------------------------------------------------------


def test_evaluate_appends_rows_and_never_rewrites_earlier_ones(pos_dir, tmp_path):
    first = evaluate(tmp_path, f"finetuned={pos_dir},targets=en:none,examples=20")
    before = (tmp_path / results.RESULTS_FILE).read_bytes()
    second = evaluate(tmp_path, f"finetuned={pos_dir},targets=en:inv,setting=MZ,examples=20,model_name=mono,"
                                "twin=bi-en-inv,corpus=parallel")
    after = (tmp_path / results.RESULTS_FILE).read_bytes()
    assert after.startswith(before) and len(after) > len(before)
    stored = results.read_rows(tmp_path)
    assert stored == first + second
    assert [(r.model, r.eval_transform, r.setting) for r in second] == [("mono", "inv", "MZ")] * 2
    assert {(r.twin, r.corpus) for r in second} == {("bi-en-inv", "parallel")}  # MZ names its bilingual model
    assert {(r.twin, r.corpus) for r in first} == {("", "")}
    record = json.loads(after.splitlines()[-1])
    for field in ("model", "task", "lang", "train_transform", "eval_transform", "setting", "metric", "value",
                  "n_examples", "commit"):
        assert field in record


def record_outputs(monkeypatch: pytest.MonkeyPatch, replace=None) -> list[tuple[tasks.Features, dict]]:
    """Keeps (features, outputs) of every `_Evaluator.outputs` call of the evaluation: the model inputs and
    the raw outputs scoring starts from. `replace(features, outputs) -> outputs` substitutes chosen outputs
    (after the real forward pass), so a row's value can be worked out from known predictions."""
    calls: list[tuple[tasks.Features, dict]] = []
    real = evaluation._Evaluator.outputs

    def spy(self, loaded, step, features, postprocess=None):
        out = real(self, loaded, step, features, postprocess)
        if replace is not None:
            out = replace(features, out)
        calls.append((features, out))
        return out

    monkeypatch.setattr(evaluation._Evaluator, "outputs", spy)
    return calls


def test_tatoeba_rows_retrieve_derived_candidates_for_original_queries(pretrained_dir, tmp_path, monkeypatch):
    """REFERENCE_SPEC §4.6: queries are the original sentences, candidates the same sentences transformed, and
    accuracy is the share of queries whose most cosine-similar candidate is their own line. Checked on what the
    model was given (ids worked out from the tokenizer: reversed pieces for inv, pieces + V for translit) and
    on each row's value, recomputed from the pooled embeddings the model returned."""
    calls = record_outputs(monkeypatch)
    targets = "en:none+en:inv+en:translit"
    rows = evaluate(tmp_path, f"task=tatoeba,pretrained={pretrained_dir},targets={targets},setting=MZ,examples=50")
    assert [(r.eval_transform, r.setting, r.metric) for r in rows] == [
        ("none", "", "accuracy"), ("inv", "MZ", "accuracy"), ("translit", "MZ", "accuracy")]
    assert all(r.train_lang == "" and r.split == "test" and r.n_examples == 50 for r in rows)
    assert rows[1].extra["pool_layer"] == 1  # tiny preset: 2 layers, index 0 = embeddings (REFERENCE_SPEC §0.8)
    assert [r.extra["resized_vocab"] for r in rows] == [False, False, True]  # translit: MZ with 2V rows

    tokenizer = Tokenizer.load(pretrained_dir / loop.TOKENIZER_DIR)
    v = tokenizer.base_size
    sentences = tasks.load("tatoeba", "en", "test", limit=50).examples
    pieces = [list(tokenizer.encode(s))[:62] for s in sentences]  # max_len 64 (the tiny model's) minus <s> </s>
    derived = {"none": pieces, "inv": [p[::-1] for p in pieces], "translit": [[i + v for i in p] for p in pieces]}
    assert len(calls) == 2 * len(rows)  # per target: queries, then candidates
    for row, (queries, q_out), (candidates, c_out) in zip(rows, calls[::2], calls[1::2], strict=True):
        for features, expected in ((queries, pieces), (candidates, derived[row.eval_transform])):
            got = [r[m.astype(bool)].tolist() for r, m in zip(features["input_ids"], features["attention_mask"],
                                                                 strict=True)]
            assert got == [[BOS, *p, EOS] for p in expected], row.eval_transform
        q, c = (x["embedding"] / np.linalg.norm(x["embedding"], axis=1, keepdims=True) for x in (q_out, c_out))
        nearest = np.argmax(q @ c.T, axis=1)  # for each original query, over all derived candidates
        assert row.value == pytest.approx(100.0 * np.mean(nearest == np.arange(50))), row.eval_transform
    assert rows[0].value == 100.0  # untransformed candidates are the queries themselves


# -- MZ for transliteration ------------------------------------------------------------------------------------


def test_mz_transliteration_resizes_the_vocabulary_with_untrained_rows(pos_dir, tmp_path):
    rows = evaluate(tmp_path, f"finetuned={pos_dir},targets=en:translit,setting=MZ,examples=30")
    assert {(r.setting, r.extra["resized_vocab"]) for r in rows} == {("MZ", True)}
    # The resized parameters: trained rows kept, new rows freshly initialised (N(0, 0.02)), all else equal.
    run = artifacts.load_finetuned(pos_dir)
    config = get_config(CONFIGS / "evaluate.py", "")
    mesh, rules = partitioning.make_mesh(config.mesh), partitioning.logical_rules(config.mesh.rules)
    info = run.info

    def fn_for(v):
        return task_model_fn(info.model_config, v, info.head_spec)

    common = dict(state_dir=run.state_dir, model_fn_for=fn_for, saved_layout=info.vocab_layout, mesh=mesh, rules=rules)
    plain = loading.load_task_params(target_layout=info.vocab_layout, **common)
    resized = loading.load_task_params(target_layout=info.vocab_layout.with_copies(2), **common)
    assert resized.resized and not plain.resized
    old = np.asarray(plain.params["backbone"]["embeddings"]["word_embeddings"]["embedding"])
    new = np.asarray(resized.params["backbone"]["embeddings"]["word_embeddings"]["embedding"])
    assert old.shape == (1000, 64) and new.shape == (2000, 64)
    np.testing.assert_array_equal(new[:1000], old)
    assert abs(new[1000:].std() - 0.02) < 0.002 and abs(new[1000:].mean()) < 0.002
    assert not np.allclose(new[1000:], old)
    flat_plain = jax.tree_util.tree_leaves_with_path(plain.params)
    flat_resized = dict(jax.tree_util.tree_leaves_with_path(resized.params))
    for path, value in flat_plain:
        if "word_embeddings" not in jax.tree_util.keystr(path):
            np.testing.assert_array_equal(np.asarray(flat_resized[path]), np.asarray(value))


def test_resizing_moves_t5_sentinels_to_the_new_top():
    old, new = VocabLayout(10, 1, 3), VocabLayout(10, 2, 3)
    np.testing.assert_array_equal(vocab_resize.row_map(old, new), [*range(10), 20, 21, 22])
    with pytest.raises(ConfigError, match="only adding copies"):
        vocab_resize.row_map(new, old)
    fresh = {"emb": jnp.zeros((23, 2)), "logits": jnp.zeros((2, 23)), "other": jnp.zeros(3)}
    loaded = {"emb": jnp.arange(26.0).reshape(13, 2), "logits": jnp.arange(26.0).reshape(2, 13), "other": jnp.ones(3)}
    merged = vocab_resize.merge_params(
        fresh, loaded, axes={("emb",): 0, ("logits",): 1}, rows=vocab_resize.row_map(old, new), shardings=None
    )
    np.testing.assert_array_equal(merged["emb"][20:], loaded["emb"][10:])
    np.testing.assert_array_equal(merged["emb"][10:20], 0)
    np.testing.assert_array_equal(merged["logits"][:, 20:], loaded["logits"][:, 10:])
    np.testing.assert_array_equal(merged["other"], 1)
    with pytest.raises(ConfigError, match="does not fit"):
        vocab_resize.merge_params({"other": jnp.zeros(4)}, loaded, axes={}, rows=None, shardings=None)


# -- T5 ------------------------------------------------------------------------------------------------------


def write_untrained_t5_run(workdir: pathlib.Path, tokenizer: Tokenizer) -> pathlib.Path:
    """A pretraining WORKDIR holding a randomly initialised tiny T5 (step 0): the loop's files, no training."""
    config = get_config(CONFIGS / "pretrain" / "monolingual.py", "smoke,objective=span")
    layout = dataclasses.replace(tokenizer.layout(), num_sentinels=config.data.num_sentinels)
    mesh, rules = partitioning.make_mesh(config.mesh), partitioning.logical_rules(config.mesh.rules)
    created = state_lib.create_train_state(  # no optimizer slots: fine-tuning reads only the parameters
        lambda rngs: build_model(config.model, layout.size, rngs=rngs), optax.identity(), mesh, rules, 0
    )
    ckpt = checkpointing.Checkpointer(workdir / loop.CHECKPOINT_DIR, max_to_keep=1, async_save=False)
    ckpt.save(0, created.state, {})
    ckpt.close()
    tokenizer.save(workdir / loop.TOKENIZER_DIR)
    (workdir / loop.CONFIG_FILE).write_text(config.to_json_best_effort())
    return workdir


def test_t5_text_to_text_nli_generates_label_words(pretrained_dir, tmp_path):
    """T5 from a checkpoint: teacher-forced training on label words, then greedy decoding must write them."""
    t5_dir = write_untrained_t5_run(tmp_path / "t5", Tokenizer.load(pretrained_dir / loop.TOKENIZER_DIR))
    finetuned = tmp_path / "nli"
    result = finetune("nli", t5_dir, finetuned, "lr=3e-3,steps=20,epochs=10")
    info = artifacts.load_finetuned(finetuned).info
    assert info.head["kind"] == "text" and len(info.label_targets) == 3
    assert result.history[-1]["accuracy"] > 0.8  # teacher-forced label-word tokens
    (row,) = evaluate(tmp_path / "results", f"finetuned={finetuned},targets=en:inv,setting=MZ,examples=40")
    assert (row.task, row.metric, row.eval_transform, row.setting) == ("nli", "accuracy", "inv", "MZ")
    assert row.extra["unparsed_generations"] == 0  # greedy decoding writes label words


def test_label_words_round_trip_through_generated_ids(tiny_tokenizer):
    targets = text_to_text.label_targets(tiny_tokenizer, NLI_LABELS)
    garbage = np.full((3, 4), 7, np.int32)
    generated = np.concatenate([targets, garbage], axis=1)  # anything after </s> is ignored
    np.testing.assert_array_equal(text_to_text.generated_labels(generated, targets), [0, 1, 2])
    wrong = generated.copy()
    wrong[0, 0] += 1
    assert text_to_text.generated_labels(wrong, targets)[0] == -1
    features = tasks.Features(
        arrays={"input_ids": np.zeros((2, 4), np.int32), "attention_mask": np.ones((2, 4), np.int32),
                "label": np.array([2, tasks.IGNORE_INDEX], np.int32), "example_id": np.arange(2)},
        model_keys=("input_ids", "attention_mask", "label"),
    )
    with_targets = text_to_text.add_decoder_fields(features, targets)
    np.testing.assert_array_equal(with_targets["decoder_targets"][0], targets[2])
    assert with_targets["decoder_input_ids"][0, 0] == 0  # decoder start = <s>, as in pretraining
    assert with_targets["decoder_loss_mask"][1].sum() == 0  # unlabelled rows get no loss


def test_t5_text_to_text_qa_generates_answers_scored_by_squad_em_f1(pretrained_dir, tmp_path):
    """T5 QA text to text: one window per question trains on its answer pieces; greedy answers are decoded."""
    tokenizer = Tokenizer.load(pretrained_dir / loop.TOKENIZER_DIR)
    t5_dir = write_untrained_t5_run(tmp_path / "t5", tokenizer)
    finetuned = tmp_path / "qa"
    result = finetune("qa", t5_dir, finetuned, "head=text,lr=3e-3,steps=4,batch=16")  # 64 questions: one epoch
    assert result.final_step == 4 and all(np.isfinite(h["loss"]) for h in result.history)
    info = artifacts.load_finetuned(finetuned).info
    assert info.head["kind"] == "text" and info.head["target_len"] == text_to_text.QA_TARGET_LEN
    rows = evaluate(tmp_path / "results", f"finetuned={finetuned},targets=en:none+en:inv,examples=8")
    assert [(r.eval_transform, r.metric) for r in rows] == [
        ("none", "exact_match"), ("none", "f1"), ("inv", "exact_match"), ("inv", "f1")]
    assert all(r.task == "qa" and 0.0 <= r.value <= 100.0 and r.n_examples == 8 for r in rows)
    assert all(0 <= r.extra["empty_answers"] <= 8 for r in rows)
    # The answers behind those rows: one string per question, decoded from the best window's generation.
    config = get_config(CONFIGS / "evaluate.py", f"finetuned={finetuned},examples=8")
    ev = evaluation._Evaluator(config)
    data = tasks.prepare("qa", tokenizer, lang="en", split="dev", transform="none", seed=0, max_len=ev.model.max_len,
                         limit=8, bucket=ev.model.bucket, **ev.model.task_options)
    loaded, step = ev.params_for(1)
    outputs = ev.outputs(loaded, step, data.features)
    assert outputs["generated"].shape == (len(data.features), text_to_text.QA_TARGET_LEN)
    answers = text_to_text.qa_predictions(data, outputs["generated"], outputs["generated_logprob"], tokenizer,
                                          ev.model.layout)
    assert set(answers) == {e.id for e in data.examples} and all(isinstance(a, str) for a in answers.values())
    first = data.examples[0].id
    rows_of_first = np.flatnonzero(data.features["example_id"] == 0)
    scores = text_to_text.mean_logprob(outputs["generated"][rows_of_first], outputs["generated_logprob"][rows_of_first])
    best = outputs["generated"][rows_of_first[np.argmax(scores)]]
    assert answers[first] == tokenizer.decode(text_to_text.answer_ids(best, inverted=False), layout=ev.model.layout)
    metrics, _ = evaluation.score(ev.model, data, outputs, config)
    assert metrics == {r.metric: r.value for r in rows if r.eval_transform == "none"}


def test_qa_answer_targets_come_from_the_answer_window_and_map_back_through_inversion(tiny_tokenizer):
    """Training targets are the answer's own pieces; under inversion they are reversed, and `answer_ids`
    restores the original order, so the decoded text is the same with and without inversion."""
    kw = dict(lang="en", split="dev", seed=0, max_len=64, limit=12, doc_stride=16, max_query_len=16)
    plain = tasks.prepare("qa", tiny_tokenizer, transform="none", **kw)
    inverted = tasks.prepare("qa", tiny_tokenizer, transform="inv", **kw)
    assert inverted.extra["inverted"] and not plain.extra["inverted"]
    (fp, counts), (fi, _) = (text_to_text.add_answer_fields(d, tiny_tokenizer) for d in (plain, inverted))
    assert len(fp) == len(plain.examples) and counts["answer_outside_windows"] < len(fp)
    np.testing.assert_array_equal(fp["example_id"], np.arange(len(plain.examples)))
    for i in range(len(fp)):
        texts = [tiny_tokenizer.decode(text_to_text.answer_ids(f["decoder_targets"][i], inverted=inv))
                 for f, inv in ((fp, False), (fi, True))]
        assert texts[0] == texts[1]
        if fp["start_positions"][i] > 0:  # the window holds the answer: the target is its span, covering it
            answer = plain.examples[i].answers[0][0]
            assert answer.replace(" ", "") in texts[0].replace(" ", "")
    assert fp["decoder_input_ids"][0, 0] == 0 and fp["decoder_loss_mask"].sum() == np.sum(fp["decoder_targets"] != 1)


# -- configuration -------------------------------------------------------------------------------------------


def test_tagging_rows_score_predictions_as_emitted_unless_the_config_repairs_them(
    tiny_tokenizer, original_order_tagger
):
    """configs/evaluate.py scores reordered NER predictions as emitted (the reference) by default, says so in
    the rows' extra, and re-canonicalises them with prediction_bio=repaired; a bad value names the key."""
    data = tasks.prepare("ner", tiny_tokenizer, lang="en", split="dev", transform="inv", seed=0, limit=500)
    outputs = {"predictions": original_order_tagger(data)}
    model = types.SimpleNamespace(task="ner", head=HeadSpec("tagging", num_labels=len(data.label_names)))
    as_emitted = tagging.score(data, outputs["predictions"], prediction_bio="as_emitted")["seqeval_f1"]
    assert as_emitted < 50.0  # the tagger puts B- at the wrong end of every reversed multi-word entity

    metrics, extra = evaluation.score(model, data, outputs, get_config(CONFIGS / "evaluate.py", "finetuned=x"))
    assert metrics == {"f1": as_emitted} and extra["prediction_bio"] == "as_emitted"
    repaired = get_config(CONFIGS / "evaluate.py", "finetuned=x,prediction_bio=repaired")
    metrics, extra = evaluation.score(model, data, outputs, repaired)
    assert metrics == {"f1": 100.0} and extra["prediction_bio"] == "repaired"
    with pytest.raises(ConfigError, match="prediction_bio"):
        evaluation.check_config(get_config(CONFIGS / "evaluate.py", "finetuned=x,prediction_bio=canonical"))


def test_targets_and_settings():
    assert evaluation.parse_targets("en:none+en:translit+inv+fr+hi:syntax:hi+translit") == [
        ("en", "none"), ("en", "translit+inv"), ("fr", "none"), ("hi", "syntax:hi+translit")]
    with pytest.raises(ConfigError, match="continues no transformation"):
        evaluation.parse_targets("inv+en")
    kw = dict(train_lang="en", lang="en")
    assert evaluation.row_setting("BZ", train_transform="none", eval_transform="inv", **kw) == "BZ"
    assert evaluation.row_setting("BZ", train_transform="none", eval_transform="none", **kw) == ""
    assert evaluation.row_setting("BS", train_transform="inv", eval_transform="inv", **kw) == "BS"
    assert evaluation.row_setting("BS", train_transform="inv", eval_transform="none", **kw) == ""
    assert evaluation.row_setting("BZ", train_transform="inv", eval_transform="none", **kw) == ""
    assert evaluation.row_setting("MZ", train_transform="none", eval_transform="inv", train_lang="en", lang="fr") == ""
    assert evaluation.row_setting("MZ", train_transform="none", eval_transform="inv", train_lang="", lang="en") == "MZ"
    with pytest.raises(ConfigError, match="setting"):
        evaluation.row_setting("XZ", train_transform="none", eval_transform="inv", **kw)


def test_bad_config_keys_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown config argument 'epoch'"):
        get_config(CONFIGS / "finetune" / "pos.py", "epoch=3")
    config = get_config(CONFIGS / "finetune" / "ner.py", "")
    with pytest.raises(AttributeError, match="locked"):
        config.train.epoch = 3
    with pytest.raises(ConfigError, match="pretrained"):
        trainer.run(config, tmp_path / "ner")
    assert "doc_stride" in get_config(CONFIGS / "finetune" / "qa.py", "") and "doc_stride" not in config
    proc = subprocess.run(
        [sys.executable, "-m", "xlt_jax.finetune", f"--config={CONFIGS / 'finetune' / 'pos.py'}:pretrained=x",
         f"--workdir={tmp_path / 'run'}", "--config.train.epoch=3"],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode != 0 and "did you mean 'train.epochs'" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "xlt_jax.evaluate", f"--config={CONFIGS / 'evaluate.py'}:targest=en",
         f"--workdir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode != 0 and "unknown config argument 'targest'" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("binary, config_help", [
    ("xlt_jax.train", "Pretraining config file"),
    ("xlt_jax.finetune", "Fine-tuning config file"),
    ("xlt_jax.evaluate", "Evaluation config file"),
    ("xlt_jax.experiments.protocol", "Protocol config file"),
    ("xlt_jax.align", "Alignment config file"),
])  # fmt: skip
def test_every_binary_lists_its_flags_in_help(binary, config_help):
    proc = subprocess.run(
        [sys.executable, "-m", binary, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert "Traceback" not in proc.stderr, proc.stderr  # absl's --help exits with status 1
    assert f"--config: {config_help}" in proc.stdout and "--workdir: " in proc.stdout
