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


@pytest.mark.parametrize("group_by_length", [0, 4])
def test_training_batches_after_a_resume_are_those_of_an_uninterrupted_run(tiny_tokenizer, group_by_length):
    data = tasks.prepare("pos", tiny_tokenizer, lang="en", split="dev", max_len=64, limit=100)
    kw = dict(batch_size=8, seed=3, bucket=8, per_epoch=len(data.features) // 8, group_by_length=group_by_length)
    uninterrupted = list(itertools.islice(trainer.training_batches(data.features, **kw), 40))
    resumed = list(itertools.islice(trainer.training_batches(data.features, start_step=17, **kw), 23))
    assert kw["per_epoch"] < 17 < 40 < 3 * kw["per_epoch"]  # the resume point and the range cross epochs
    for a, b in zip(uninterrupted[17:], resumed, strict=True):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(uninterrupted[0]["input_ids"], uninterrupted[kw["per_epoch"]]["input_ids"])
    if group_by_length:  # the setting reaches the batches: rows of similar lengths, narrower batches
        random = itertools.islice(trainer.training_batches(data.features, **dict(kw, group_by_length=0)), 40)
        width = [np.mean([b["input_ids"].shape[1] for b in bs]) for bs in (uninterrupted, random)]
        assert width[0] < 0.8 * width[1], width


def test_length_grouping_is_part_of_the_training_data_fingerprint():
    config = get_config(CONFIGS / "finetune" / "pos.py", "pretrained=x")
    random = trainer.data_fingerprint(config, 100)
    config.group_by_length = 50
    assert trainer.data_fingerprint(config, 100) != random  # a run cannot resume with other batches
    config.group_by_length = 0
    assert trainer.data_fingerprint(config, 100) == random


def canonical_bio(tags: list[str]) -> list[str]:
    """REFERENCE_SPEC §1.2 written out: the first tag of a run of one entity type is B-, the others I-."""
    out, previous = [], None
    for tag in tags:
        kind = None if tag == "O" else tag[2:]
        out.append("O" if kind is None else ("I-" if kind == previous else "B-") + kind)
        previous = kind
    return out


def ner_oracle(features, outputs, examples, tokenizer, transform):
    """Gold tags on the first piece of every word of even sentences, O for odd ones, a junk tag everywhere
    else; word positions from the tokenizer (pieces of each word), mirrored under inversion, where the model
    reads the words backwards and scoring re-canonicalises BIO in that order."""
    import seqeval.metrics

    from xlt_jax.data.readers.tagging import NER_TAGS

    np.testing.assert_array_equal(features["example_id"], np.arange(len(examples)))  # one row per sentence
    predictions = np.full(outputs["predictions"].shape, NER_TAGS.index("B-ORG"), np.int32)
    golds, guesses = [], []
    for i, example in enumerate(examples):
        pieces = [max(len(tokenizer.encode(w)), 1) for w in example.tokens]
        first = 1 + np.cumsum([0, *pieces[:-1]])  # position of each word's first piece after <s>
        gold = list(example.tags)
        if transform == "inv":
            first = (sum(pieces) + 1 - first)[::-1]  # the first piece moves to the mirrored position
            gold = canonical_bio(gold[::-1])  # in reading order
        guess = gold if i % 2 == 0 else ["O"] * len(gold)
        predictions[i, first] = [NER_TAGS.index(t) for t in guess]
        golds.append(gold)
        guesses.append(guess)
    return {"predictions": predictions}, {"f1": 100.0 * seqeval.metrics.f1_score(golds, guesses)}


def nli_oracle(features, outputs, examples, tokenizer, transform):
    """One-hot logits on the gold label of even pairs and on the next label for odd ones: 50% accuracy."""
    np.testing.assert_array_equal(features["example_id"], np.arange(len(examples)))
    gold = np.array([NLI_LABELS.index(e.label) for e in examples])
    guess = np.where(np.arange(len(gold)) % 2 == 0, gold, (gold + 1) % 3)
    return {"logits": np.eye(3, dtype=np.float32)[guess]}, {"accuracy": 100.0 * np.mean(guess == gold)}


def qa_oracle(features, outputs, examples, tokenizer, transform):
    """Logits that allow only the gold span of even questions (-inf elsewhere, so odd questions get no
    answer). The expected answer is cut from the context by REFERENCE_SPEC §1.2/§4.5: offsets of the start and
    end pieces (swapped under inversion), from the window where the span's first original piece has max context."""
    from xlt_jax.metrics.qa import squad_em_f1

    inverted = transform == "inv"
    start, end = (np.full(outputs[k].shape, -np.inf, np.float32) for k in ("start_logits", "end_logits"))
    offsets, answers = features["offset_mapping"], {e.id: "" for e in examples}
    for row in range(len(features)):
        e, s, t = (int(features[k][row]) for k in ("example_id", "start_positions", "end_positions"))
        if e % 2 or s == 0:  # odd question, or a window without the answer (labelled <s>)
            continue
        start[row, s] = end[row, t] = 10.0
        if features["max_context"][row, t if inverted else s]:
            a, b = (offsets[row, t, 0], offsets[row, s, 1]) if inverted else (offsets[row, s, 0], offsets[row, t, 1])
            answers[examples[e].id] = examples[e].context[a:b]
    assert sum(bool(a) for a in answers.values()) >= len(examples) // 2 - 2  # most even questions answered
    metrics = squad_em_f1({e.id: [text for text, _ in e.answers] for e in examples}, answers)
    return {"start_logits": start, "end_logits": end}, {k: metrics[k] for k in ("exact_match", "f1")}


ORACLES = {"ner": ner_oracle, "nli": nli_oracle, "qa": qa_oracle}


@pytest.mark.parametrize("task, targets", [("ner", "en:none+en:inv"), ("nli", "en:none+fr:none"),
                                           ("qa", "en:none+en:inv")])
def test_task_rows_are_the_metric_of_the_predictions_behind_them(task, targets, pretrained_dir, tmp_path,
                                                                 monkeypatch):
    """Fine-tune briefly, evaluate, and replace the model's outputs (after its real forward pass) by known
    predictions: right on even-numbered examples, wrong on odd ones, built from the raw examples and the
    tokenizer. Each row must be the metric of those predictions against the raw gold, worked out here without
    the evaluator: a row scored against the wrong gold, rows, positions or transform fails."""
    finetuned = tmp_path / task
    result = finetune(task, pretrained_dir, finetuned, "steps=2")
    assert result.final_step == 2 and all(np.isfinite(h["loss"]) for h in result.history)
    tokenizer = Tokenizer.load(pretrained_dir / loop.TOKENIZER_DIR)
    parsed = evaluation.parse_targets(targets)
    expected: list[dict[str, float]] = []  # per target, in evaluation order

    def replace(features, outputs):
        lang, transform = parsed[len(expected)]
        examples = tasks.load(task, lang, "dev", limit=24).examples
        out, metrics = ORACLES[task](features, outputs, examples, tokenizer, transform)
        expected.append(metrics)
        return out

    record_outputs(monkeypatch, replace)
    rows = evaluate(tmp_path / "results", f"finetuned={finetuned},targets={targets},setting=BZ,examples=24")
    assert [(r.lang, r.eval_transform) for r in rows] == [t for t in parsed for _ in expected[0]]
    for target, want in zip(parsed, expected, strict=True):
        got = {r.metric: r.value for r in rows if (r.lang, r.eval_transform) == target}
        assert got == pytest.approx(want), target
    for row in rows:
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


def test_t5_text_to_text_qa_rows_score_the_best_windows_answer(pretrained_dir, tmp_path, monkeypatch):
    """T5 QA text to text: one window per question trains on its answer pieces; evaluation generates per
    window. The generations are then replaced by known ones: for even questions the gold answer's pieces
    (reversed under inversion, as the model writes the derived language) in the question's last window, the
    most probable, and an empty answer everywhere else. Rows must be SQuAD EM/F1 of exactly those answers
    against the raw gold: 50, for the original and the inverted target alike."""
    from xlt_jax.metrics.qa import squad_em_f1

    tokenizer = Tokenizer.load(pretrained_dir / loop.TOKENIZER_DIR)
    t5_dir = write_untrained_t5_run(tmp_path / "t5", tokenizer)
    finetuned = tmp_path / "qa"
    result = finetune("qa", t5_dir, finetuned, "head=text,lr=3e-3,steps=4,batch=16")  # 64 questions: one epoch
    assert result.final_step == 4 and all(np.isfinite(h["loss"]) for h in result.history)
    info = artifacts.load_finetuned(finetuned).info
    assert info.head["kind"] == "text" and info.head["target_len"] == text_to_text.QA_TARGET_LEN
    examples = tasks.load("qa", "en", "dev", limit=8).examples
    golds = {e.id: [text for text, _ in e.answers] for e in examples}
    transforms_seen: list[str] = []

    def replace(features, outputs):
        transform = ("none", "inv")[len(transforms_seen)]
        transforms_seen.append(transform)
        shape = (len(features), text_to_text.QA_TARGET_LEN)
        assert outputs["generated"].shape == outputs["generated_logprob"].shape == shape  # real greedy decoding
        generated = np.full(shape, SPECIALS.pad, np.int32)
        generated[:, 0] = EOS  # an empty answer ...
        logprob = np.full(shape, -1.0, np.float32)  # ... of mean log-probability -1
        for e, example in enumerate(examples[::2]):
            last = np.flatnonzero(features["example_id"] == 2 * e)[-1]
            pieces = list(tokenizer.encode(example.answers[0][0]))[: shape[1] - 1]
            generated[last, : len(pieces) + 1] = [*(pieces[::-1] if transform == "inv" else pieces), EOS]
            logprob[last] = -0.1
        return {"generated": generated, "generated_logprob": logprob}

    record_outputs(monkeypatch, replace)
    rows = evaluate(tmp_path / "results", f"finetuned={finetuned},targets=en:none+en:inv,examples=8")
    assert [(r.eval_transform, r.metric) for r in rows] == [
        ("none", "exact_match"), ("none", "f1"), ("inv", "exact_match"), ("inv", "f1")]
    answers = {e.id: tokenizer.decode(tokenizer.encode(e.answers[0][0])) if i % 2 == 0 else ""
               for i, e in enumerate(examples)}
    want = squad_em_f1(golds, answers)
    assert want["exact_match"] == 50.0
    for row in rows:
        assert row.task == "qa" and row.n_examples == 8
        assert row.value == pytest.approx(want[row.metric]), (row.eval_transform, row.metric)
        assert row.extra["empty_answers"] == 4


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
