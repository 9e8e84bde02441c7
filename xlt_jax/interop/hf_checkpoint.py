"""Hugging Face checkpoint directories (`config.json` + `model.safetensors` / `pytorch_model.bin`) ⇄ xlt_jax.

Reading: `load_hf_checkpoint(dir)` gives the xlt_jax `config.model` block and the params of the network the
directory describes; the architecture comes from `config.json` (`architectures`, else `model_type`) and one
xlt_jax does not implement is an error naming the file. Writing: `save_hf_checkpoint(dir, state_dict, config)`
writes the two files a `from_pretrained` reads, without going through a torch model, so the weights on disk
are exactly the converted arrays.

Supported: RoBERTa / XLM-R MLM (`RobertaForMaskedLM`, `XLMRobertaForMaskedLM`) and T5 v1.1 / mT5
(`T5ForConditionalGeneration`, `MT5ForConditionalGeneration`).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np

from xlt_jax.errors import ConfigError
from xlt_jax.interop import hf_roberta, hf_t5
from xlt_jax.models.presets import ModelSpec

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"

# Importable architectures → xlt_jax model name.
ARCHITECTURES = {
    "RobertaForMaskedLM": "roberta",
    "XLMRobertaForMaskedLM": "roberta",
    "T5ForConditionalGeneration": "t5",
    "MT5ForConditionalGeneration": "t5",
}
_MODEL_TYPES = {"roberta": "roberta", "xlm-roberta": "roberta", "t5": "t5", "mt5": "t5"}
_CONVERTERS = {"roberta": hf_roberta, "t5": hf_t5}
# Copies of tied tensors that `from_pretrained` re-ties: left out of a written checkpoint.
_TIED_COPIES = ("lm_head.decoder.weight", "lm_head.decoder.bias")


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    path = pathlib.Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: missing; a Hugging Face checkpoint directory has config.json and weights")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON ({e.msg}, line {e.lineno})") from e
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return config


def architecture(config: Mapping[str, Any], source: str) -> str:
    """The xlt_jax model name ("roberta" | "t5") of an HF config; anything else is an error naming it."""
    names = list(config.get("architectures") or [])
    for name in names:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    if not names and config.get("model_type") in _MODEL_TYPES:
        return _MODEL_TYPES[config["model_type"]]
    raise ConfigError(
        f"{source}: architectures={names or None}, model_type={config.get('model_type')!r}; xlt_jax imports "
        f"{', '.join(sorted(ARCHITECTURES))}"
    )


def read_state_dict(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """float32 NumPy arrays by HF name from safetensors (single file or sharded index) or pytorch_model.bin."""
    directory = pathlib.Path(directory)
    if (directory / SAFETENSORS_FILE).is_file():
        from safetensors.numpy import load_file

        return _float32(load_file(directory / SAFETENSORS_FILE))
    if (directory / SAFETENSORS_INDEX).is_file():
        from safetensors.numpy import load_file

        shards = sorted(set(json.loads((directory / SAFETENSORS_INDEX).read_text())["weight_map"].values()))
        out: dict[str, np.ndarray] = {}
        for shard in shards:
            out.update(load_file(directory / shard))
        return _float32(out)
    if (directory / TORCH_FILE).is_file():
        import torch

        from xlt_jax.interop import tree

        return tree.to_numpy(torch.load(directory / TORCH_FILE, map_location="cpu", weights_only=True))
    raise ConfigError(f"{directory}: no {SAFETENSORS_FILE}, {SAFETENSORS_INDEX} or {TORCH_FILE}")


def _float32(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float32) if np.issubdtype(v.dtype, np.floating) else v for k, v in arrays.items()}


def model_config(config: Mapping[str, Any], source: str) -> ml_collections.ConfigDict:
    """The xlt_jax `config.model` block (sizes explicit, float32, scanned layers) of an HF config."""
    from xlt_jax.models import default_model_config

    name = architecture(config, source)
    block = default_model_config(name)
    values = _CONVERTERS[name].model_values(config, source)
    block.update({k: v for k, v in values.items() if k != "name"})
    block.dtype = "float32"
    return block


def load_hf_checkpoint(
    directory: str | os.PathLike, *, scan_layers: bool = True
) -> tuple[ml_collections.ConfigDict, dict, int]:
    """(`config.model` block, params pure dict, vocab size) of an HF checkpoint directory."""
    from xlt_jax.models import resolve_model_config

    directory = pathlib.Path(directory)
    config = read_config(directory)
    block = model_config(config, os.fspath(directory / CONFIG_FILE))
    block.scan_layers = scan_layers
    vocab_size = int(config["vocab_size"])
    spec = resolve_model_config(block, vocab_size)
    params = _CONVERTERS[spec.name].from_hf_state_dict(read_state_dict(directory), spec, scan_layers=scan_layers)
    return block, params, vocab_size


# -- writing --------------------------------------------------------------------------------------------------


def hf_config_dict(spec: ModelSpec, architecture_name: str, **extra: Any) -> dict[str, Any]:
    """`config.json` content for `spec` as `architecture_name` (extra keys: labels, dropout of a head).

    T5 gets `tie_word_embeddings: false` explicitly: transformers 5 reads it as "unscaled decoder output" and
    unties the lm_head whose saved values differ; transformers 4 reads it as "untied"; both are T5 v1.1.
    """
    converter = _CONVERTERS[spec.name]
    config = converter.hf_config(spec, **extra).to_dict()
    config["architectures"] = [architecture_name]
    config.pop("transformers_version", None)
    if spec.name == "t5":
        config["tie_word_embeddings"] = False
    return config


def save_hf_checkpoint(directory: str | os.PathLike, state_dict: Mapping[str, np.ndarray],
                       config: Mapping[str, Any]) -> pathlib.Path:
    """Write `config.json` and `model.safetensors` (float32) into `directory` (created if needed)."""
    from safetensors.numpy import save_file

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state_dict.items() if k not in _TIED_COPIES
    }
    save_file(tensors, directory / SAFETENSORS_FILE, metadata={"format": "pt"})
    (directory / CONFIG_FILE).write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
    return directory
