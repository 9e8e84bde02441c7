"""Zero-shot and supervised evaluation: `run(config, workdir)` appends result rows to WORKDIR/results.jsonl.

A fine-tuned run (`finetune` output) is evaluated on a list of targets, natural languages and derived
variants, `lang:transform` joined by `+` (`en:none+en:inv+en:translit+inv+fr`: a part that starts with a
transform name, like `inv` or `syntax:hi`, continues the previous target's composition). Tatoeba needs no
fine-tuning: its model is a pretraining run, sources are the original sentences and candidates the same
sentences transformed (REFERENCE_SPEC §4.6), embedded by mean-pooling one middle layer, specials included.

One row per (target, metric) with the fields of `xlt_jax.results.ResultRow`. Metric names are those of
the results store: `accuracy` (NLI, Tatoeba), `f1` (seqeval F1 for NER and POS), `token_accuracy` (POS),
`exact_match` and `f1` (QA). The protocol setting (BZ / BS / MZ, REFERENCE_SPEC §4.1) is applied to the
rows it describes: BZ/MZ to a model fine-tuned on original data evaluated on a derived variant of the same
language, BS to a model fine-tuned and evaluated on the same derived variant; every other row gets ""
(orig→orig, or another natural language: the cross-lingual tables).

Tagging rows score the predicted tags as the model emitted them, against gold BIO re-canonicalised in the
order the model read the words (the paper's corrected-labels NER script); `prediction_bio=repaired`
re-canonicalises the predictions too. Every tagging row records the choice in `extra.prediction_bio`.

A target that needs vocabulary rows the model does not have (a transliterated target for a model
pretrained without transliteration: MZ) is evaluated on a resized model whose new rows are randomly
initialised and untrained (`vocab_resize`); its rows record `extra.resized_vocab = true`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

from xlt_jax import results
from xlt_jax.data import parse, tasks, transforms
from xlt_jax.data.tasks import classification, qa, retrieval, tagging
from xlt_jax.data.tasks.base import DEFAULT_BUCKET
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError
from xlt_jax.finetuning import artifacts, inference, loading, pretrained, text_to_text
from xlt_jax.finetuning.task_model import HeadSpec, task_model_fn
from xlt_jax.metrics.qa import squad_em_f1
from xlt_jax.models import resolve_model_config
from xlt_jax.training import distributed, partitioning

TRANSFORM_HEADS = ("none", "inv", "perm", "translit", "syntax")
DEFAULT_SPLIT = {"pos": "dev", "ner": "dev", "nli": "dev", "qa": "dev", "tatoeba": "test"}
TATOEBA_MAX_LEN = 128  # REFERENCE_SPEC §4.2 (the paper's --max_seq_length for retrieval)


def parse_targets(spec: str) -> list[tuple[str, str]]:
    """`"en:none+en:translit+inv+fr"` -> [("en", "none"), ("en", "translit+inv"), ("fr", "none")]."""
    out: list[tuple[str, str]] = []
    for part in (p.strip() for p in spec.split("+")):
        if not part:
            raise ConfigError(f"targets: empty entry in {spec!r}")
        head = re.split(r"[:@\[]", part, maxsplit=1)[0]
        if head in TRANSFORM_HEADS:
            if not out or out[-1][1] == "none":
                raise ConfigError(
                    f"targets: {part!r} in {spec!r} continues no transformation; write targets as "
                    "lang:transform (e.g. en:translit+inv)"
                )
            out[-1] = (out[-1][0], f"{out[-1][1]}+{part}")
            continue
        lang, _, transform = part.partition(":")
        out.append((lang, transform or "none"))
    if not out:
        raise ConfigError("targets: no target given (e.g. targets=en:none+en:inv)")
    return out


def row_setting(requested: str, *, train_lang: str, train_transform: str, lang: str, eval_transform: str) -> str:
    """The protocol setting a row gets (see module docstring); "" where `requested` does not describe it."""
    if requested not in results.SETTINGS:
        raise ConfigError(f"setting: {requested!r} is not one of {results.SETTINGS}")
    same_lang = lang == train_lang or train_lang == ""
    if requested in ("BZ", "MZ"):
        zero_shot = train_transform == results.IDENTITY != eval_transform
        return requested if zero_shot and same_lang else ""
    if requested == "BS":
        return requested if eval_transform == train_transform != results.IDENTITY and same_lang else ""
    return ""


# -- what is evaluated --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """The model under evaluation, whichever kind of run directory it came from."""

    task: str
    head: HeadSpec
    model_config: ml_collections.ConfigDict
    tokenizer: Any
    layout: VocabLayout
    state_dir: epath.Path
    subtree: str | None  # "backbone": the checkpoint holds only the backbone (a pretraining run)
    model_name: str
    train_lang: str
    train_transform: str
    max_len: int
    bucket: int
    task_options: dict
    seed: int
    label_targets: np.ndarray | None
    extra: dict


def from_finetuned(config: ml_collections.ConfigDict) -> Evaluated:
    run = artifacts.load_finetuned(config.finetuned, int(config.checkpoint_step))
    info = run.info
    if config.task and config.task != info.task:
        raise ConfigError(f"task={config.task!r}, but {run.workdir} was fine-tuned on {info.task!r}")
    return Evaluated(
        task=info.task, head=info.head_spec, model_config=info.model_config, tokenizer=run.tokenizer,
        layout=info.vocab_layout, state_dir=run.state_dir, subtree=None,
        model_name=config.model_name or info.pretrained_name, train_lang=info.train_lang,
        train_transform=info.train_transform, max_len=int(config.max_len) or info.max_len,
        bucket=int(config.bucket) or info.bucket, task_options=dict(info.task_options), seed=info.seed,
        label_targets=np.asarray(info.label_targets, np.int32) if info.label_targets else None,
        extra={"finetuned": os.fspath(run.workdir), "finetune_step": run.step,
               "pretrained": info.pretrained, "train_source": info.train_source},
    )


def from_pretrained(config: ml_collections.ConfigDict) -> Evaluated:
    """Tatoeba: the pretrained model itself, pooled at `tatoeba_layer` (default num_layers // 2)."""
    pre = pretrained.load_pretrained(config.pretrained, int(config.pretrained_step))
    spec = resolve_model_config(pre.model_config, pre.layout.size)
    layer = int(config.tatoeba_layer) if config.tatoeba_layer >= 0 else spec.num_layers // 2
    if not 0 <= layer <= spec.num_layers:
        raise ConfigError(f"tatoeba_layer={layer}: the model has layers 0 (embeddings) .. {spec.num_layers}")
    return Evaluated(
        task="tatoeba", head=HeadSpec("retrieval", pool_layer=layer), model_config=pre.model_config,
        tokenizer=pre.tokenizer, layout=pre.layout, state_dir=pre.state_dir, subtree="backbone",
        model_name=config.model_name or pre.name, train_lang="", train_transform=results.IDENTITY,
        max_len=int(config.max_len) or min(TATOEBA_MAX_LEN, int(pre.model_config.max_len)),
        bucket=int(config.bucket) or DEFAULT_BUCKET, task_options={}, seed=0, label_targets=None,
        extra={"pretrained": os.fspath(pre.workdir), "pretrained_step": pre.step, "pool_layer": layer},
    )


def resolve_split(config: ml_collections.ConfigDict, model: Evaluated) -> str:
    split = config.split or DEFAULT_SPLIT[model.task]
    if model.task == "nli" and str(model.extra.get("train_source", "")).startswith("xnli_dev"):
        if not config.split:
            split = "test"
        elif split == "dev":
            raise ConfigError("split=dev: this model was fine-tuned on XNLI dev (source xnli_dev); evaluate on test")
    return split


# -- scoring ------------------------------------------------------------------------------------------


def score(model: Evaluated, data: tasks.TaskData, outputs: Mapping[str, np.ndarray],
          config: ml_collections.ConfigDict,
          layout: VocabLayout | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics in the results store's names, and extra numbers for the rows (`layout`: the evaluated
    model's vocabulary, to decode generated answers; default the fine-tuned model's)."""
    kind = model.head.kind
    if kind == "text" and model.task == "qa":
        answers = text_to_text.qa_predictions(
            data, outputs["generated"], outputs["generated_logprob"], model.tokenizer, layout or model.layout
        )
        raw = squad_em_f1(qa.gold_answers(data), answers)
        empty = sum(not a.strip() for a in answers.values())
        return {"exact_match": raw["exact_match"], "f1": raw["f1"]}, {"empty_answers": empty}
    if kind == "tagging":
        raw = tagging.score(data, outputs["predictions"], prediction_bio=config.prediction_bio)
        metrics = {"f1": raw["seqeval_f1"]}
        if "token_accuracy" in raw:
            metrics["token_accuracy"] = raw["token_accuracy"]
        return metrics, {"seqeval_precision": raw["seqeval_precision"], "seqeval_recall": raw["seqeval_recall"],
                         "prediction_bio": config.prediction_bio}
    if kind == "classification":
        return classification.score(data, outputs["logits"]), {}
    if kind == "text":
        labels = text_to_text.generated_labels(outputs["generated"], model.label_targets)
        return classification.score(data, labels), {"unparsed_generations": int(np.count_nonzero(labels < 0))}
    if kind == "qa":
        raw = qa.score(data, outputs["start_logits"], outputs["end_logits"], n_best=int(config.qa_n_best),
                       max_answer_len=int(config.qa_max_answer_len))
        return {"exact_match": raw["exact_match"], "f1": raw["f1"]}, {}
    raise ConfigError(f"no scoring for head kind {kind!r}")


def _pool(batch: Mapping[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"embedding": retrieval.mean_pool(out["hidden"], batch["attention_mask"])}


class _Evaluator:
    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.mesh = partitioning.make_mesh(config.mesh)
        self.rules = partitioning.logical_rules(config.mesh.rules)
        self.batch_size = int(config.batch_size)
        if self.batch_size % partitioning.num_batch_shards(self.mesh):
            raise ConfigError(
                f"batch_size={self.batch_size} must be a multiple of the "
                f"{partitioning.num_batch_shards(self.mesh)} batch shards (mesh data x fsdp)"
            )
        self.model = from_pretrained(config) if config.task == "tatoeba" else from_finetuned(config)
        self._loaded: dict[int, tuple[loading.LoadedParams, Callable]] = {}

    def params_for(self, copies: int) -> tuple[loading.LoadedParams, Callable]:
        """Parameters (resized when the target needs more vocabulary copies) and the predict step."""
        layout = self.model.layout.with_copies(max(self.model.layout.copies, copies))
        if layout.size not in self._loaded:
            m = self.model
            loaded = loading.load_task_params(
                state_dir=m.state_dir, model_fn_for=lambda v: task_model_fn(m.model_config, v, m.head),
                saved_layout=m.layout, target_layout=layout, mesh=self.mesh, rules=self.rules, subtree=m.subtree,
                seed=int(self.config.resize_seed), why="the target is transliterated (MZ)",
            )
            step = inference.make_predict_step(loaded.model_def, mesh=self.mesh, param_shardings=loaded.shardings)
            self._loaded[layout.size] = (loaded, step)
        return self._loaded[layout.size]

    def outputs(self, loaded: loading.LoadedParams, step: Callable, features: tasks.Features,
                postprocess=None) -> dict[str, np.ndarray]:
        return inference.predict_features(
            step, loaded.params, features, batch_size=self.batch_size, mesh=self.mesh, rules=self.rules,
            bucket=self.model.bucket, postprocess=postprocess,
        )

    def evaluate(self, lang: str, transform: str, split: str) -> list[results.ResultRow]:
        m, config = self.model, self.config
        t0 = time.perf_counter()
        parsed = transforms.parse(transform, m.tokenizer.layout())
        data = tasks.prepare(
            m.task, m.tokenizer, lang=lang, split=split, transform=parsed, seed=int(config.transform_seed),
            max_len=m.max_len, source=config.source or None, limit=int(config.max_examples) or None,
            bucket=m.bucket, **parse.tree_options(config), **m.task_options,
        )
        loaded, step = self.params_for(parsed.copies)
        if m.head.kind == "retrieval":
            queries = self.outputs(loaded, step, data.features, _pool)["embedding"]
            candidates = self.outputs(loaded, step, data.extra["targets"], _pool)["embedding"]
            metrics, extra = retrieval.score(data, queries, candidates), {}
        else:
            layout = m.layout.with_copies(max(m.layout.copies, parsed.copies))  # as `params_for`
            metrics, extra = score(m, data, self.outputs(loaded, step, data.features), config, layout)
        setting = row_setting(config.setting, train_lang=m.train_lang, train_transform=m.train_transform,
                              lang=lang, eval_transform=data.transform)
        if config.setting and setting != config.setting:
            logging.info("%s:%s is not a %s row (fine-tuned on %s:%s); written with setting ''", lang,
                         data.transform, config.setting, m.train_lang or "-", m.train_transform)
        extra = {**m.extra, **extra, "source": data.source, "num_features": len(data.features),
                 "resized_vocab": loaded.resized, "transform_seed": int(config.transform_seed)}
        if "syntax_trees" in data.extra:  # gold, or the parser that gave a syntax target its trees
            extra["syntax_trees"] = data.extra["syntax_trees"]
        rows = [
            results.ResultRow(
                model=m.model_name, task=m.task, lang=lang, train_transform=m.train_transform,
                eval_transform=data.transform, setting=setting, metric=name, value=float(value),
                n_examples=len(data.examples), train_lang=m.train_lang, split=split, seed=m.seed,
                checkpoint=os.fspath(m.state_dir.parent), corpus=config.corpus, twin=config.twin, extra=extra,
            )
            for name, value in metrics.items()
        ]
        logging.info("%s %s:%s (%s, %d examples) in %.1f s: %s", m.task, lang, data.transform, split,
                     len(data.examples), time.perf_counter() - t0,
                     ", ".join(f"{k}={v:.2f}" for k, v in metrics.items()))
        return rows


def check_config(config: ml_collections.ConfigDict) -> None:
    if config.task == "tatoeba":
        if not config.pretrained:
            raise ConfigError("pretrained: Tatoeba evaluates a pretraining WORKDIR (pretrained=PATH)")
    elif not config.finetuned:
        raise ConfigError("finetuned: give the fine-tuned WORKDIR to evaluate (finetuned=PATH), or task=tatoeba")
    tagging.check_prediction_bio(config.prediction_bio)
    row_setting(config.setting, train_lang="", train_transform="none", lang="", eval_transform="none")


def run(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, row_tags: Mapping[str, Any] | None = None
) -> list[results.ResultRow]:
    """Evaluate every target of `config.targets`; append the rows to WORKDIR/results.jsonl and return them.

    `row_tags` go into every row's `extra`, with `rows_in_batch` (how many rows this call appends in its one
    write), so that a caller can recognise its own complete batch later (the protocol runner does).
    """
    check_config(config)
    targets = parse_targets(config.targets)
    distributed.maybe_initialize(config.distributed)
    evaluator = _Evaluator(config)
    split = resolve_split(config, evaluator.model)
    rows: list[results.ResultRow] = []
    for lang, transform in targets:
        rows += evaluator.evaluate(lang, transform, split)
    if row_tags is not None:
        tags = {**row_tags, "rows_in_batch": len(rows)}
        rows = [dataclasses.replace(r, extra={**r.extra, **tags}) for r in rows]
    if jax.process_index() == 0:
        path = results.append_rows(workdir, rows)
        logging.info("appended %d rows to %s", len(rows), path)
    return rows
