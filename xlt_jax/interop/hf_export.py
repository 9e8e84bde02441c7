"""An xlt_jax model (pretrained, or fine-tuned with a task head) as a Hugging Face checkpoint directory.

| xlt_jax model                  | Hugging Face class                  |
|--------------------------------|-------------------------------------|
| RoBERTa, MLM (pretraining)     | `RobertaForMaskedLM`                |
| RoBERTa + tagging head         | `RobertaForTokenClassification`     |
| RoBERTa + classification head  | `RobertaForSequenceClassification`  |
| RoBERTa + QA head              | `RobertaForQuestionAnswering`       |
| T5 (pretraining; text head)    | `T5ForConditionalGeneration`        |
| T5 encoder + tagging head      | `T5ForTokenClassification`          |

The heads map one to one (xlt_jax's follow HF RoBERTa's). T5 encoder + classification / QA heads have no HF
counterpart: HF's `T5ForSequenceClassification` / `T5ForQuestionAnswering` run the decoder, xlt_jax's heads
sit on the encoder; exporting those is refused (`UnsupportedExport`) before anything is written.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xlt_jax.data.tokenizer import Tokenizer
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError
from xlt_jax.interop import hf_checkpoint, hf_roberta, hf_t5, hf_tokenizer
from xlt_jax.models.presets import ModelSpec

PRETRAINED = "pretrained"  # head kind of a pretraining run (the model's own LM head)
ARCHITECTURES: dict[tuple[str, str], str] = {
    ("roberta", PRETRAINED): "RobertaForMaskedLM",
    ("roberta", "tagging"): "RobertaForTokenClassification",
    ("roberta", "classification"): "RobertaForSequenceClassification",
    ("roberta", "qa"): "RobertaForQuestionAnswering",
    ("t5", PRETRAINED): "T5ForConditionalGeneration",
    ("t5", "text"): "T5ForConditionalGeneration",
    ("t5", "tagging"): "T5ForTokenClassification",
}
# Head parameters → HF names, per head kind (kernels [in, out] become [out, in] weights).
_HEADS: dict[str, dict[tuple[str, ...], str]] = {
    "tagging": {("classifier", "kernel"): "classifier.weight", ("classifier", "bias"): "classifier.bias"},
    "classification": {
        ("dense", "kernel"): "classifier.dense.weight", ("dense", "bias"): "classifier.dense.bias",
        ("out_proj", "kernel"): "classifier.out_proj.weight", ("out_proj", "bias"): "classifier.out_proj.bias",
    },
    "qa": {("qa_outputs", "kernel"): "qa_outputs.weight", ("qa_outputs", "bias"): "qa_outputs.bias"},
}


class UnsupportedExport(ConfigError):
    """The model has no matching Hugging Face class."""


def architecture(model_name: str, head: str) -> str:
    """The HF class name for `model_name` with `head` (`PRETRAINED` or a task head kind), or UnsupportedExport."""
    if (model_name, head) not in ARCHITECTURES:
        supported = ", ".join(f"{m}+{h}" for m, h in ARCHITECTURES)
        raise UnsupportedExport(
            f"--format hf: a {model_name} model with a {head!r} head has no matching Hugging Face class "
            f"(supported: {supported}); export with --format orbax"
        )
    return ARCHITECTURES[(model_name, head)]


def state_dict(params: Mapping, model_name: str, head: str) -> dict[str, np.ndarray]:
    """HF state dict of a pretraining model (`head=PRETRAINED`) or of a task model (`backbone` + `head`)."""
    if head == PRETRAINED:
        return (hf_roberta if model_name == "roberta" else hf_t5).to_hf_state_dict(params)
    backbone = params["backbone"]
    if model_name == "t5" and head == "text":
        return hf_t5.to_hf_state_dict(backbone)
    if model_name == "t5":
        out = hf_t5.encoder_state_dict(backbone, prefix="transformer.")
    else:
        out = hf_roberta.backbone_state_dict(backbone)
    for path, name in _HEADS[head].items():
        value = np.asarray(params["head"][path[0]][path[1]])
        out[name] = value.T if path[-1] == "kernel" else value
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def config_dict(spec: ModelSpec, head: str, label_names: Sequence[str] = ()) -> dict[str, Any]:
    """`config.json` for the model: sizes from `spec`, labels of a classification or tagging head."""
    extra: dict[str, Any] = {}
    if head in ("tagging", "classification"):
        extra = dict(id2label=dict(enumerate(label_names)), label2id={n: i for i, n in enumerate(label_names)})
        extra["classifier_dropout"] = spec.dropout
    return hf_checkpoint.hf_config_dict(spec, architecture(spec.name, head), **extra)


def write(
    directory: str | os.PathLike,
    *,
    params: Mapping,
    spec: ModelSpec,
    head: str,
    tokenizer: Tokenizer,
    layout: VocabLayout,
    model_config: Mapping[str, Any],
    label_names: Sequence[str] = (),
    data: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Write config.json, model.safetensors, the tokenizer files and `xlt_jax.json` (layout and model block,
    read back by `hf_import`) into `directory`."""
    from xlt_jax.interop.hf_import import INFO_FILE

    config = config_dict(spec, head, label_names)
    directory = hf_checkpoint.save_hf_checkpoint(directory, state_dict(params, spec.name, head), config)
    hf_tokenizer.save_hf_tokenizer(tokenizer, directory, layout=layout, max_len=spec.max_len)
    info = {
        "layout": {"base_size": layout.base_size, "copies": layout.copies, "num_sentinels": layout.num_sentinels},
        "model": dict(model_config), "head": head, "data": dict(data or {}),
    }
    (directory / INFO_FILE).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return directory
