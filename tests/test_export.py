"""`python -m xlt_jax.export`, Hugging Face import (`pretrained=hf:DIR`) and the tokenizer export, end to end
(extra `hf`): a tiny real pretraining run, a tiny HF model saved with `save_pretrained` and fine-tuned on a POS
slice, each exported and loaded back (xlt_jax from the Orbax export, HF from the HF export) with the same
outputs; the exported tokenizer gives SentencePiece's ids on real text in four languages.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import runpy

import jax
import numpy as np
import pytest
from conftest import require_extra  # noqa: E402
from flax import nnx

torch = require_extra("torch", "hf")
transformers = require_extra("transformers", "hf")

from xlt_jax import export, results  # noqa: E402
from xlt_jax.data import tasks  # noqa: E402
from xlt_jax.data.corpora import conllu_sentences  # noqa: E402
from xlt_jax.data.readers.text import read_lines  # noqa: E402
from xlt_jax.data.vocab import SPECIALS, VocabLayout  # noqa: E402
from xlt_jax.errors import ConfigError  # noqa: E402
from xlt_jax.finetuning import artifacts, pretrained, trainer  # noqa: E402
from xlt_jax.finetuning.task_model import HeadSpec, task_model_fn  # noqa: E402
from xlt_jax.interop import hf_export, hf_import, hf_roberta, hf_t5, hf_tokenizer  # noqa: E402
from xlt_jax.models import build_model, default_model_config, resolve_model_config  # noqa: E402

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
torch.set_num_threads(1)


def _sentences(data_dir: pathlib.Path, n: int) -> list[str]:
    return list(itertools.islice(conllu_sentences(data_dir / "ud" / "en_ewt" / "dev.conllu.gz"), n))


def _restored(model_fn, state_dir: pathlib.Path, call):
    """`(jitted (params, *args) -> call(model, *args), params)` for the model a checkpoint holds: structure
    by `eval_shape`, parameters from the checkpoint alone."""
    graphdef, _, rest = nnx.split(nnx.eval_shape(lambda: model_fn(nnx.Rngs(0))), nnx.Param, ...)
    return jax.jit(lambda p, *args: call(nnx.merge(graphdef, p, rest), *args)), pretrained.restore_all_params(state_dir)


@pytest.fixture(scope="module")
def mlm_run(data_dir, pretrain_smoke) -> pathlib.Path:
    return pretrain_smoke("monolingual.py", "smoke", steps=2, corpus_source="conllu:ud/en_ewt/train.conllu.gz")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XLT_CACHE_DIR", str(tmp_path / "cache"))


# -- tokenizer --------------------------------------------------------------------------------------------


def test_exported_tokenizer_gives_sentencepiece_ids_on_real_text(tiny_tokenizer, data_dir, tmp_path):
    layout = VocabLayout(tiny_tokenizer.base_size, copies=2, num_sentinels=4)
    hf_tokenizer.save_hf_tokenizer(tiny_tokenizer, tmp_path, layout=layout, max_len=64)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    raw = data_dir / "raw" / "lingua_leipzig_sample"
    leipzig = [itertools.islice(read_lines(raw / f"{lang}.sentences.txt.gz"), 200) for lang in ("en", "fr", "hi", "ar")]
    odd = ["  two  leading spaces,\ttabs and\nnewlines  ", "ﬁ ½ ＡＢＣ Ünïcödé", ""]
    texts = _sentences(data_dir, 1000) + list(itertools.chain(*leipzig)) + odd
    ours = [tiny_tokenizer.encode(t) for t in texts]
    theirs = hf(texts, add_special_tokens=False)["input_ids"]
    wrong = [(t, a, b) for t, a, b in zip(texts, ours, theirs, strict=True) if a != b]
    assert not wrong, f"{len(wrong)} of {len(texts)} texts differ, e.g. {wrong[0]}"
    assert sum(4 < i < 261 for ids in ours[1400:1800] for i in ids) > 1000, "hi/ar must exercise byte fallback"
    assert [hf.decode(ids) for ids in ours[:50]] == [tiny_tokenizer.decode(ids) for ids in ours[:50]]
    # Special ids, xlt_jax's framing of single and paired inputs, sentinels at the top, a <mask> probe.
    ids = {name: getattr(hf, f"{name}_token_id") for name in ("bos", "pad", "eos", "unk", "mask", "cls", "sep")}
    assert ids == dict(bos=0, pad=1, eos=2, unk=3, mask=4, cls=0, sep=2)
    a, b = tiny_tokenizer.encode("A premise."), tiny_tokenizer.encode("A hypothesis.")
    assert hf("A premise.", "A hypothesis.")["input_ids"] == [0, *a, 2, 2, *b, 2]
    assert hf.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_3>"]) == [layout.sentinel(0), layout.sentinel(3)]
    assert hf("the <mask> is")["input_ids"] == [0, *tiny_tokenizer.encode("the"), 4, *tiny_tokenizer.encode("is"), 2]
    assert (tmp_path / hf_tokenizer.XLT_TOKENIZER_DIR / "spm.model").is_file()


# -- a pretraining run ---------------------------------------------------------------------------------------


def test_pretraining_run_exports_and_loads_back_with_the_same_mlm_logits(mlm_run, data_dir, tmp_path):
    out = export.export(mlm_run, tmp_path / "exp", formats="orbax,hf")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "checkpoints", "config.json", "export.json", "hf", "tokenizer"]
    assert sorted(p.name for p in (out / "hf").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "xlt_jax.json",
        "xlt_jax_tokenizer",
    ]  # fmt: skip
    card = (out / "README.md").read_text()
    assert "| steps | 2 |" in card and "| transform | none |" in card and "RobertaForMaskedLM" in card
    # xlt_jax from the Orbax export alone: same parameters as the run, a valid `pretrained=` directory.
    pre = pretrained.load_pretrained(out)
    original = pretrained.restore_all_params(pretrained.load_pretrained(mlm_run).state_dir)
    spec = resolve_model_config(pre.model_config, pre.layout.size)
    apply, params = _restored(lambda r: build_model(pre.model_config, spec.vocab_size, rngs=r), pre.state_dir,
                              lambda model, ids, mask: model(ids, mask))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(params), jax.device_get(original))
    # HF model and tokenizer from the HF export; the batch is encoded by the exported HF tokenizer.
    hf_tok = transformers.AutoTokenizer.from_pretrained(out / "hf")
    hf = transformers.RobertaForMaskedLM.from_pretrained(out / "hf", attn_implementation="eager").eval()
    sentences = _sentences(data_dir, 8)
    batch = hf_tok(sentences, padding=True, truncation=True, max_length=spec.max_len, return_tensors="np")
    ids, mask = batch["input_ids"].astype(np.int32), batch["attention_mask"].astype(np.int32)
    assert [row[m > 0].tolist() for row, m in zip(ids, mask, strict=True)] == [
        [SPECIALS.bos, *pre.tokenizer.encode(s)[: spec.max_len - 2], SPECIALS.eos] for s in sentences
    ]
    assert mask.sum(1).min() < ids.shape[1], "the batch must contain padding"
    ours = np.asarray(apply(params, ids, mask))
    with torch.no_grad():
        theirs = hf(input_ids=torch.from_numpy(ids.astype(np.int64)), attention_mask=torch.from_numpy(mask)).logits
    delta = float(np.abs(ours[mask > 0] - theirs.numpy()[mask > 0]).max())
    print(f"RoBERTa export: max |Δ MLM logits| Orbax→xlt_jax vs HF export {delta:.2e}")
    assert delta < 1e-4

    with pytest.raises(ConfigError, match="not empty; pass --overwrite"):
        export.export(mlm_run, out)
    assert export.main(["--workdir", str(mlm_run), "--out", str(out), "--format", "orbax,tf"]) == 2
    export.export(mlm_run, out, overwrite=True)
    assert not (out / "hf").exists() and (out / "checkpoints" / "2" / "state").is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["exp"], "no temporary directory is left"


def test_heads_without_a_matching_hugging_face_class_are_refused_clearly():
    assert hf_export.architecture("t5", "tagging") == "T5ForTokenClassification"
    with pytest.raises(hf_export.UnsupportedExport, match="t5 model with a 'classification' head.*--format orbax"):
        hf_export.architecture("t5", "classification")


@pytest.mark.parametrize("model_name, head", [("roberta", "classification"), ("roberta", "qa"), ("t5", "tagging")])
def test_task_heads_export_to_their_hugging_face_classes(model_name, head, tiny_tokenizer, data_dir, tmp_path):
    """Random task-model weights (heads included) exported as HF's class for them give the same outputs."""
    config = default_model_config(model_name, "tiny")
    config.update(dtype="float32", max_len=64)
    spec = resolve_model_config(config, tiny_tokenizer.base_size)
    head_spec = HeadSpec(head, num_labels=3 if head != "qa" else 0)
    model_fn = task_model_fn(config, spec.vocab_size, head_spec)
    graphdef, params, rest = nnx.split(nnx.eval_shape(lambda: model_fn(nnx.Rngs(0))), nnx.Param, ...)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32), nnx.to_pure_dict(params))
    hf_export.write(tmp_path, params=params, spec=spec, head=head, tokenizer=tiny_tokenizer,
                    layout=tiny_tokenizer.layout(), model_config=config.to_dict(), label_names=["a", "b", "c"])
    hf = getattr(transformers, hf_export.architecture(model_name, head)).from_pretrained(tmp_path).eval()
    batch = transformers.AutoTokenizer.from_pretrained(tmp_path)(_sentences(data_dir, 4), padding=True,
                                                                 truncation=True, return_tensors="np")  # fmt: skip
    batch = {k: batch[k].astype(np.int32) for k in ("input_ids", "attention_mask")}
    logits = jax.jit(lambda p, b: nnx.merge(graphdef, p, rest).logits(b, deterministic=True))
    ours = jax.tree.map(np.asarray, logits(params, batch))
    with torch.no_grad():
        out = hf(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()})
    theirs = (out.start_logits, out.end_logits) if head == "qa" else out.logits
    real = batch["attention_mask"] > 0 if head != "classification" else np.ones(len(batch["input_ids"]), bool)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(jax.tree.map(lambda t: t.numpy(), theirs)), strict=True):
        assert np.abs(a[real] - b[real]).max() < 1e-4


# -- Hugging Face checkpoints in --------------------------------------------------------------------------------


def test_t5_hf_checkpoint_imports_exports_and_loads_back(tiny_tokenizer, data_dir, tmp_path):
    """A random HF T5 (save_pretrained) → xlt_jax run (hf_import) → export orbax,hf → the same logits."""
    layout = VocabLayout(tiny_tokenizer.base_size, num_sentinels=8)
    config = default_model_config("t5", "tiny")
    config.update(dtype="float32", dropout=0.0)
    spec = resolve_model_config(config, layout.size)
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(hf_t5.hf_config(spec))
    hf.lm_head.weight = torch.nn.Parameter(torch.randn_like(hf.lm_head.weight) * spec.hidden**-0.5)
    hf.save_pretrained(tmp_path / "hf_t5")
    hf_tokenizer.save_hf_tokenizer(tiny_tokenizer, tmp_path / "hf_t5", layout=layout)
    run = hf_import.materialize(tmp_path / "hf_t5", tmp_path / "run")
    out = export.export(run, tmp_path / "exp", formats="orbax,hf")
    assert json.loads((out / "export.json").read_text())["hf_architecture"] == "T5ForConditionalGeneration"
    pre = pretrained.load_pretrained(out)
    assert pre.layout == layout
    apply, params = _restored(lambda r: build_model(pre.model_config, layout.size, rngs=r), pre.state_dir,
                              lambda model, ids, mask, dec: model(ids, mask, dec))
    again = transformers.T5ForConditionalGeneration.from_pretrained(out / "hf").eval()
    enc = transformers.AutoTokenizer.from_pretrained(out / "hf")(_sentences(data_dir, 4), padding=True,
                                                                 return_tensors="np")  # fmt: skip
    targets = np.where(enc["input_ids"][:, 1:9] == SPECIALS.pad, 7, enc["input_ids"][:, 1:9])  # no decoder padding
    dec = np.concatenate([np.full((4, 1), SPECIALS.bos), targets], axis=1)
    ours = np.asarray(apply(params, enc["input_ids"], enc["attention_mask"], dec))
    for model in (hf.eval(), again):
        with torch.no_grad():
            theirs = model(input_ids=torch.from_numpy(enc["input_ids"]), attention_mask=torch.from_numpy(
                enc["attention_mask"]), decoder_input_ids=torch.from_numpy(dec)).logits.numpy()  # fmt: skip
        assert np.abs(ours - theirs).max() < 1e-4


def test_hf_roberta_fine_tunes_from_hf_prefix_and_its_export_predicts_the_same(tiny_tokenizer, tmp_path):
    """`pretrained=hf:DIR` of a `save_pretrained` directory fine-tunes on POS; the fine-tuned run's Orbax and
    HF exports give the same tag logits and predictions."""
    config = default_model_config("roberta", "tiny")
    config.update(max_len=64)
    spec = resolve_model_config(config, tiny_tokenizer.base_size)
    torch.manual_seed(0)
    transformers.RobertaForMaskedLM(hf_roberta.hf_config(spec)).save_pretrained(tmp_path / "hf")
    hf_tokenizer.save_hf_tokenizer(tiny_tokenizer, tmp_path / "hf")
    ft = runpy.run_path(str(CONFIGS / "finetune" / "pos.py"))["get_config"](
        f"smoke,pretrained=hf:{tmp_path / 'hf'},examples=64,epochs=2,lr=1e-3"
    )
    ft.bucket = 64
    result = trainer.run(ft, tmp_path / "pos")
    assert result.final_step == result.info.total_steps == 4 and np.isfinite(result.history[-1]["loss"])
    imported = pathlib.Path(result.info.pretrained)
    assert imported.parent == tmp_path / "cache" / hf_import.CACHE_SUBDIR and imported.name.startswith("hf-")

    # The card takes rows naming this run from an enclosing (protocol) workdir, and the step's commit.
    ours_row = results.ResultRow(model="hf-pos", task="pos", lang="en", train_transform="none", eval_transform="inv",
                                 setting="BZ", metric="f1", value=12.34, n_examples=8, train_lang="en",
                                 extra={"finetuned": str((tmp_path / "pos").resolve())})  # fmt: skip
    results.append_rows(tmp_path, [ours_row, dataclasses.replace(ours_row, value=56.78, extra={"finetuned": "x"})])
    (tmp_path / "pos" / "DONE.json").write_text(json.dumps({"commit": "c0ffee"}))
    out = export.export(tmp_path / "pos", tmp_path / "exp", formats="orbax,hf")
    card = (out / "README.md").read_text()
    assert "| pos | en | none | inv | BZ | f1 | 12.34 | 8 | dev |" in card and "56.78" not in card
    assert "| commit | c0ffee |" in card and "| task | pos |" in card and "RobertaForTokenClassification" in card
    assert results.read_rows(out) == [ours_row]
    run = artifacts.load_finetuned(out)  # the Orbax export is a valid `finetuned=` directory
    model_fn = task_model_fn(run.info.model_config, run.info.vocab_layout.size, run.info.head_spec)
    apply, params = _restored(model_fn, run.state_dir, lambda model, batch: model.logits(batch, deterministic=True))
    data = tasks.prepare("pos", run.tokenizer, lang="en", split="dev", max_len=64, limit=16, bucket=64)
    batch = {k: data.features[k][:16] for k in ("input_ids", "attention_mask")}
    ours = np.asarray(apply(params, batch))
    hf = transformers.AutoModelForTokenClassification.from_pretrained(out / "hf").eval()
    assert type(hf).__name__ == "RobertaForTokenClassification" and hf.config.id2label[0] == run.info.label_names[0]
    with torch.no_grad():
        theirs = hf(input_ids=torch.from_numpy(batch["input_ids"].astype(np.int64)),
                    attention_mask=torch.from_numpy(batch["attention_mask"].astype(np.int64))).logits.numpy()
    real = batch["attention_mask"] > 0
    print(f"POS export: max |Δ tag logits| {np.abs(ours[real] - theirs[real]).max():.2e}")
    assert np.abs(ours[real] - theirs[real]).max() < 1e-4
    np.testing.assert_array_equal(ours.argmax(-1)[real], theirs.argmax(-1)[real])
