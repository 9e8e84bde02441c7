"""xlt_jax RoBERTa parameters ⇄ Hugging Face `RobertaForMaskedLM` / `XLMRobertaForMaskedLM` state dicts.

Both directions work on plain NumPy arrays keyed by Hugging Face's parameter names, so the conversion itself
needs neither torch nor transformers (`hf_config` and the loaders import them lazily). Layers may be scanned
(parameters stacked on a leading `layers` axis) or looped (one dict per layer index); the layout is read from
the parameter tree, so a checkpoint of either form converts.

Layouts: xlt_jax dense kernels are [in, out] (attention projections [embed, heads, head_dim] and
[heads, head_dim, embed]); torch `nn.Linear` weights are [out, in]. The MLM decoder is tied to the word
embeddings in both, and `lm_head.decoder.bias` is the same tensor as `lm_head.bias`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xlt_jax.errors import ConfigError
from xlt_jax.interop import tree
from xlt_jax.models.presets import ModelSpec

Array = np.ndarray
PREFIX = "roberta."

# HF names of the embedding block and the MLM head; the word embeddings double as the tied decoder.
_TOP: dict[tuple[str, ...], str] = {
    ("embeddings", "word_embeddings", "embedding"): "roberta.embeddings.word_embeddings.weight",
    ("embeddings", "position_embeddings", "embedding"): "roberta.embeddings.position_embeddings.weight",
    ("embeddings", "token_type_embeddings", "embedding"): "roberta.embeddings.token_type_embeddings.weight",
    ("embeddings", "layer_norm", "scale"): "roberta.embeddings.LayerNorm.weight",
    ("embeddings", "layer_norm", "bias"): "roberta.embeddings.LayerNorm.bias",
    ("lm_head", "dense", "kernel"): "lm_head.dense.weight",
    ("lm_head", "dense", "bias"): "lm_head.dense.bias",
    ("lm_head", "layer_norm", "scale"): "lm_head.layer_norm.weight",
    ("lm_head", "layer_norm", "bias"): "lm_head.layer_norm.bias",
    ("lm_head", "bias"): "lm_head.bias",
}

# Per layer: xlt_jax path inside the block → HF suffix after `roberta.encoder.layer.{i}.`.
_LAYER: dict[tuple[str, ...], str] = {
    ("attention", "query", "kernel"): "attention.self.query.weight",
    ("attention", "query", "bias"): "attention.self.query.bias",
    ("attention", "key", "kernel"): "attention.self.key.weight",
    ("attention", "key", "bias"): "attention.self.key.bias",
    ("attention", "value", "kernel"): "attention.self.value.weight",
    ("attention", "value", "bias"): "attention.self.value.bias",
    ("attention", "out", "kernel"): "attention.output.dense.weight",
    ("attention", "out", "bias"): "attention.output.dense.bias",
    ("attention_norm", "scale"): "attention.output.LayerNorm.weight",
    ("attention_norm", "bias"): "attention.output.LayerNorm.bias",
    ("mlp", "wi", "kernel"): "intermediate.dense.weight",
    ("mlp", "wi", "bias"): "intermediate.dense.bias",
    ("mlp", "wo", "kernel"): "output.dense.weight",
    ("mlp", "wo", "bias"): "output.dense.bias",
    ("output_norm", "scale"): "output.LayerNorm.weight",
    ("output_norm", "bias"): "output.LayerNorm.bias",
}


def hf_config(spec: ModelSpec, **overrides: Any) -> Any:
    """A `transformers.RobertaConfig` describing the same network as `spec` (dropout included)."""
    from transformers import RobertaConfig

    from xlt_jax.data.vocab import SPECIALS
    from xlt_jax.models.roberta import LAYER_NORM_EPS

    if spec.name != "roberta":
        raise ConfigError(f"model.name={spec.name!r}: only RoBERTa converts to RobertaForMaskedLM")
    if spec.heads * spec.head_dim != spec.hidden:
        raise ConfigError(
            f"model.head_dim={spec.head_dim} × heads={spec.heads} != hidden={spec.hidden}: Hugging Face RoBERTa "
            "needs heads × head_dim = hidden"
        )
    kwargs = dict(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.heads,
        intermediate_size=spec.mlp,
        hidden_act="gelu",
        hidden_dropout_prob=spec.dropout,
        attention_probs_dropout_prob=spec.dropout,
        max_position_embeddings=spec.max_len + SPECIALS.pad + 1,
        type_vocab_size=1,
        initializer_range=0.02,
        layer_norm_eps=LAYER_NORM_EPS,
        pad_token_id=SPECIALS.pad,
        bos_token_id=SPECIALS.bos,
        eos_token_id=SPECIALS.eos,
        tie_word_embeddings=True,
    )
    kwargs.update(overrides)
    return RobertaConfig(**kwargs)


# -- per-tensor layout changes ------------------------------------------------------------------------------


def _kernel_to_hf(path: tuple[str, ...], x: Array) -> Array:
    """[in, …, out] kernel → torch [out, in] weight; q/k/v biases [heads, head_dim] → [hidden]."""
    if path[-1] != "kernel":
        return x.reshape(-1) if path[0] == "attention" else x
    if path[:2] == ("attention", "out"):  # [heads, head_dim, embed]
        return x.reshape(-1, x.shape[-1]).T
    if path[0] == "attention":  # [embed, heads, head_dim]
        return x.reshape(x.shape[0], -1).T
    return x.T


def _kernel_from_hf(path: tuple[str, ...], w: Array, spec: ModelSpec) -> Array:
    """Inverse of `_kernel_to_hf` (the head split comes from `spec`); biases of q/k/v become [heads, head_dim]."""
    if path[0] == "attention" and path[1] in ("query", "key", "value"):
        if path[-1] == "kernel":
            return w.T.reshape(w.shape[1], spec.heads, spec.head_dim)
        return w.reshape(spec.heads, spec.head_dim)
    if path[-1] != "kernel":
        return w
    if path[:2] == ("attention", "out"):
        return w.T.reshape(spec.heads, spec.head_dim, w.shape[0])
    return w.T


def _top_to_hf(path: tuple[str, ...], x: Array) -> Array:
    return x.T if path[-1] == "kernel" else x


# -- the two directions --------------------------------------------------------------------------------------


def backbone_state_dict(params: Mapping) -> dict[str, Array]:
    """Embeddings and encoder layers in HF names (`roberta.*`, no MLM head): the backbone of a task model."""
    out = {name: np.asarray(tree.get(params, path)) for path, name in _TOP.items() if path[0] == "embeddings"}
    blocks = params["encoder"]["blocks"]
    layer = tree.layer_getter(blocks)
    for i in range(tree.num_layers(blocks, ("mlp", "wi", "kernel"))):
        for path, suffix in _LAYER.items():
            out[f"roberta.encoder.layer.{i}.{suffix}"] = _kernel_to_hf(path, layer(i, path))
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def to_hf_state_dict(params: Mapping) -> dict[str, Array]:
    """HF `RobertaForMaskedLM` state dict (NumPy, float32 as stored) from an xlt_jax params pure dict."""
    out = backbone_state_dict(params)
    for path, name in _TOP.items():
        if path[0] == "lm_head":
            out[name] = np.ascontiguousarray(_top_to_hf(path, np.asarray(tree.get(params, path))))
    out["lm_head.decoder.weight"] = out["roberta.embeddings.word_embeddings.weight"]
    out["lm_head.decoder.bias"] = out["lm_head.bias"]
    return out


def _normalise_keys(state_dict: Mapping[str, Any]) -> dict[str, Array]:
    """NumPy values; XLM-R's `roberta.`-prefixed names are the same, and a bare encoder gets the prefix."""
    return {
        (key if key.startswith((PREFIX, "lm_head.")) else PREFIX + key): value
        for key, value in tree.to_numpy(state_dict).items()
    }


def from_hf_state_dict(state_dict: Mapping[str, Any], spec: ModelSpec, *, scan_layers: bool) -> dict:
    """xlt_jax params pure dict (float32) for `spec` from an HF RoBERTa/XLM-R MLM state dict.

    Shapes are checked against `spec`, and a missing or unexpected tensor is an error that names it
    (`roberta.pooler.*` and the `position_ids` buffer are ignored: xlt_jax's MLM model has neither).
    """
    sd = _normalise_keys(state_dict)
    out: dict = {}
    expected = set(_TOP.values())
    for path, name in _TOP.items():
        if name not in sd:
            raise ConfigError(f"Hugging Face state dict has no {name!r}")
        tree.put(out, path, _top_to_hf(path, sd[name]).astype(np.float32))
    layers: list[dict] = []
    for i in range(spec.num_layers):
        layer: dict = {}
        for path, suffix in _LAYER.items():
            name = f"roberta.encoder.layer.{i}.{suffix}"
            if name not in sd:
                raise ConfigError(f"Hugging Face state dict has no {name!r} (model.num_layers={spec.num_layers})")
            expected.add(name)
            try:
                value = _kernel_from_hf(path, sd[name], spec)
            except ValueError as e:
                raise ConfigError(f"{name}: shape {sd[name].shape} does not fit {spec}: {e}") from e
            tree.put(layer, path, value.astype(np.float32))
        layers.append(layer)
    ignored = {"lm_head.decoder.weight", "lm_head.decoder.bias", "roberta.embeddings.position_ids"}
    unexpected = sorted(k for k in sd if k not in expected and k not in ignored and not k.startswith("roberta.pooler"))
    if unexpected:
        raise ConfigError(f"Hugging Face state dict has tensors xlt_jax's RoBERTa does not: {unexpected[:5]}")
    out["encoder"] = {"blocks": tree.stack_blocks(layers, scan=scan_layers)}
    _check_shapes(out, spec)
    return out


def _check_shapes(params: Mapping, spec: ModelSpec) -> None:
    word = params["embeddings"]["word_embeddings"]["embedding"].shape
    if word != (spec.vocab_size, spec.hidden):
        raise ConfigError(f"word embeddings {word} != (vocab_size={spec.vocab_size}, hidden={spec.hidden})")
    pos = params["embeddings"]["position_embeddings"]["embedding"].shape[0]
    if pos != spec.max_len + 2:
        raise ConfigError(f"{pos} position rows != model.max_len={spec.max_len} + 2 (RoBERTa's padding offset)")


def model_values(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """`config.model` values of the network an HF RoBERTa/XLM-R `config.json` describes; variants xlt_jax's
    RoBERTa does not implement (another activation, LayerNorm eps, position scheme or padding id) are refused."""
    from xlt_jax.data.vocab import SPECIALS
    from xlt_jax.models.roberta import LAYER_NORM_EPS

    wanted = dict(hidden_act="gelu", position_embedding_type="absolute", type_vocab_size=1, pad_token_id=SPECIALS.pad)
    for key, value in wanted.items():
        if config.get(key, value) != value:
            raise ConfigError(f"{source}: {key}={config.get(key)!r}; xlt_jax's RoBERTa needs {value!r}")
    eps = float(config.get("layer_norm_eps", LAYER_NORM_EPS))
    if abs(eps - LAYER_NORM_EPS) > 1e-12:
        raise ConfigError(f"{source}: layer_norm_eps={eps}; xlt_jax's RoBERTa uses {LAYER_NORM_EPS}")
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    return dict(
        name="roberta",
        num_layers=int(config["num_hidden_layers"]),
        hidden=hidden,
        heads=heads,
        head_dim=hidden // heads,
        mlp=int(config["intermediate_size"]),
        dropout=float(config.get("hidden_dropout_prob", 0.1)),
        max_len=int(config["max_position_embeddings"]) - SPECIALS.pad - 1,
    )
