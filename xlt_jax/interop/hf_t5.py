"""xlt_jax T5 v1.1 parameters ⇄ Hugging Face `T5ForConditionalGeneration` (and mT5) state dicts.

The two networks are the same function of the same numbers: pre-norm RMSNorm blocks (eps 1e-6), no biases,
gated-GELU FFN with the tanh GELU (HF "gelu_new", `feed_forward_proj="gated-gelu"`), no runtime 1/√d (t5x
folds it into the query initialiser; HF T5 never scales), one relative position bias per stack stored in the
first layer of each HF stack and shared by all layers (the bucket tables agree exactly), one shared input
embedding, an untied `lm_head` without output scaling (`tie_word_embeddings=False`), and `<s>` (id 0) as the
decoder start token. Conversions work on NumPy arrays keyed by HF names; torch/transformers are imported
only by `hf_config`.

Layouts: xlt_jax kernels are [in, out] (attention [embed, heads, head_dim] and [heads, head_dim, embed],
relative bias [heads, buckets]); torch weights are [out, in] (relative bias [buckets, heads]).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xlt_jax.errors import ConfigError
from xlt_jax.interop import tree
from xlt_jax.models.presets import ModelSpec

Array = np.ndarray
SHARED = "shared.weight"
# Aliases of the shared embedding that some checkpoints store (and transformers 4.x state dicts list).
EMBEDDING_ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
RELPOS = "{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"

_TOP: dict[tuple[str, ...], str] = {
    ("shared_embedding", "embedding"): SHARED,
    ("encoder", "relpos_bias", "embedding"): RELPOS.format(stack="encoder"),
    ("encoder", "final_norm", "scale"): "encoder.final_layer_norm.weight",
    ("decoder", "relpos_bias", "embedding"): RELPOS.format(stack="decoder"),
    ("decoder", "final_norm", "scale"): "decoder.final_layer_norm.weight",
    ("decoder", "logits_dense", "kernel"): "lm_head.weight",
}


def _attention(module: str, hf: str) -> dict[tuple[str, ...], str]:
    names = {"query": "q", "key": "k", "value": "v", "out": "o"}
    return {(module, ours, "kernel"): f"{hf}.{theirs}.weight" for ours, theirs in names.items()}


def _mlp(layer: int) -> dict[tuple[str, ...], str]:
    return {("mlp", w, "kernel"): f"layer.{layer}.DenseReluDense.{w}.weight" for w in ("wi_0", "wi_1", "wo")}


# Per layer: xlt_jax path inside a block → HF suffix after `{stack}.block.{i}.`.
ENCODER_LAYER: dict[tuple[str, ...], str] = {
    ("pre_attention_norm", "scale"): "layer.0.layer_norm.weight",
    **_attention("attention", "layer.0.SelfAttention"),
    ("pre_mlp_norm", "scale"): "layer.1.layer_norm.weight",
    **_mlp(1),
}
DECODER_LAYER: dict[tuple[str, ...], str] = {
    ("pre_self_attention_norm", "scale"): "layer.0.layer_norm.weight",
    **_attention("self_attention", "layer.0.SelfAttention"),
    ("pre_cross_attention_norm", "scale"): "layer.1.layer_norm.weight",
    **_attention("encoder_decoder_attention", "layer.1.EncDecAttention"),
    ("pre_mlp_norm", "scale"): "layer.2.layer_norm.weight",
    **_mlp(2),
}
STACKS = {"encoder": ENCODER_LAYER, "decoder": DECODER_LAYER}


def hf_config(spec: ModelSpec, **overrides: Any) -> Any:
    """A `transformers.T5Config` describing the same network as `spec` (dropout included)."""
    from transformers import T5Config

    from xlt_jax.data.vocab import SPECIALS
    from xlt_jax.models.t5 import RMS_EPS

    if spec.name != "t5":
        raise ConfigError(f"model.name={spec.name!r}: only T5 converts to T5ForConditionalGeneration")
    kwargs = dict(
        vocab_size=spec.vocab_size,
        d_model=spec.hidden,
        d_kv=spec.head_dim,
        d_ff=spec.mlp,
        num_layers=spec.num_layers,
        num_decoder_layers=spec.num_decoder_layers,
        num_heads=spec.heads,
        relative_attention_num_buckets=spec.relpos_buckets,
        relative_attention_max_distance=spec.relpos_max_distance,
        dropout_rate=spec.dropout,
        layer_norm_epsilon=RMS_EPS,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=SPECIALS.pad,
        eos_token_id=SPECIALS.eos,
        bos_token_id=SPECIALS.bos,
        decoder_start_token_id=SPECIALS.bos,
        is_encoder_decoder=True,
    )
    kwargs.update(overrides)
    return T5Config(**kwargs)


# -- per-tensor layout changes ------------------------------------------------------------------------------


def _to_hf(path: tuple[str, ...], x: Array) -> Array:
    """xlt_jax array → torch layout (see the module docstring)."""
    if path[-1] == "scale" or path == ("shared_embedding", "embedding"):
        return x
    if path[-2:] == ("relpos_bias", "embedding"):
        return x.T
    if len(path) == 3 and path[1] == "out" and "attention" in path[0]:  # [heads, head_dim, embed]
        return x.reshape(-1, x.shape[-1]).T
    if len(path) == 3 and "attention" in path[0]:  # [embed, heads, head_dim]
        return x.reshape(x.shape[0], -1).T
    return x.T


def _from_hf(path: tuple[str, ...], w: Array, spec: ModelSpec) -> Array:
    """Inverse of `_to_hf`; the head split comes from `spec`."""
    if path[-1] == "scale" or path == ("shared_embedding", "embedding"):
        return w
    if len(path) == 3 and path[1] == "out" and "attention" in path[0]:
        return w.T.reshape(spec.heads, spec.head_dim, w.shape[0])
    if len(path) == 3 and "attention" in path[0]:
        return w.T.reshape(w.shape[1], spec.heads, spec.head_dim)
    return w.T


# -- the two directions --------------------------------------------------------------------------------------


def encoder_state_dict(params: Mapping, prefix: str = "") -> dict[str, Array]:
    """The shared embedding and the encoder stack in HF names (`T5EncoderModel`), each name after `prefix`."""
    out = {prefix + SHARED: np.asarray(tree.get(params, ("shared_embedding", "embedding")))}
    out.update(_stack_to_hf(params, "encoder", prefix))
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def to_hf_state_dict(params: Mapping) -> dict[str, Array]:
    """HF `T5ForConditionalGeneration` state dict (NumPy) from an xlt_jax T5 params pure dict."""
    out = {name: _to_hf(path, np.asarray(tree.get(params, path))) for path, name in _TOP.items()}
    for stack in STACKS:
        out.update(_stack_to_hf(params, stack, ""))
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _stack_to_hf(params: Mapping, stack: str, prefix: str) -> dict[str, Array]:
    blocks = params[stack]["stack"]["blocks"]
    layer = tree.layer_getter(blocks)
    out = {}
    for top in ("relpos_bias", "final_norm"):
        path = (stack, top, "embedding" if top == "relpos_bias" else "scale")
        out[prefix + _TOP[path]] = _to_hf(path, np.asarray(tree.get(params, path)))
    for i in range(tree.num_layers(blocks, ("pre_mlp_norm", "scale"))):
        for path, suffix in STACKS[stack].items():
            out[f"{prefix}{stack}.block.{i}.{suffix}"] = _to_hf(path, layer(i, path))
    return out


def from_hf_state_dict(
    state_dict: Mapping[str, Any], spec: ModelSpec, *, scan_layers: bool, encoder_only: bool = False
) -> dict:
    """xlt_jax T5 params pure dict (float32) for `spec` from an HF T5/mT5 state dict.

    `encoder_only`: a `T5EncoderModel`-style dict (shared embedding + encoder), e.g. the backbone of
    `T5ForTokenClassification` with its `transformer.` prefix stripped. Shapes are checked against `spec`;
    a missing or unexpected tensor is an error that names it.
    """
    sd = tree.to_numpy(state_dict)
    if SHARED not in sd:  # some checkpoints keep only the aliases
        for alias in EMBEDDING_ALIASES:
            if alias in sd:
                sd[SHARED] = sd[alias]
                break
    expected = _expected_shapes(spec)
    stacks = ("encoder",) if encoder_only else tuple(STACKS)
    out: dict = {}
    used = {SHARED, *EMBEDDING_ALIASES}
    for path, name in _TOP.items():
        if path[0] in stacks or path[0] == "shared_embedding":
            tree.put(out, path, _convert(sd, name, path, spec, expected[path]))
            used.add(name)
    for stack in stacks:
        layers = []
        count = spec.num_layers if stack == "encoder" else spec.num_decoder_layers
        for i in range(count):
            layer: dict = {}
            for path, suffix in STACKS[stack].items():
                name = f"{stack}.block.{i}.{suffix}"
                tree.put(layer, path, _convert(sd, name, path, spec, expected[(stack, *path)]))
                used.add(name)
            layers.append(layer)
        out[stack]["stack"] = {"blocks": tree.stack_blocks(layers, scan=scan_layers)}
    # An encoder-decoder bias that HF creates but never uses; old checkpoints carry it.
    ignored = {"decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"}
    unexpected = sorted(k for k in sd if k not in used and k not in ignored)
    if unexpected:
        raise ConfigError(f"Hugging Face state dict has tensors xlt_jax's T5 does not: {unexpected[:5]}")
    return out


def _convert(sd: Mapping[str, Array], name: str, path: tuple[str, ...], spec: ModelSpec, shape: tuple) -> Array:
    if name not in sd:
        raise ConfigError(
            f"Hugging Face state dict has no {name!r} (model.num_layers={spec.num_layers}, "
            f"num_decoder_layers={spec.num_decoder_layers})"
        )
    try:
        value = _from_hf(path, sd[name], spec)
    except ValueError as e:
        raise ConfigError(f"{name}: shape {sd[name].shape} does not fit {spec}: {e}") from e
    if value.shape != shape:
        raise ConfigError(f"{name}: shape {sd[name].shape} gives {value.shape}, the model needs {shape} (spec {spec})")
    return value.astype(np.float32)


def _expected_shapes(spec: ModelSpec) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Shapes of the looped model's parameters, keyed by path; per-layer paths lose the layer index."""
    import dataclasses

    import jax
    from flax import nnx

    from xlt_jax.models.layers import param_creation_context
    from xlt_jax.models.t5 import T5

    looped = dataclasses.replace(spec, scan_layers=False)
    with param_creation_context():
        abstract = nnx.eval_shape(lambda: T5(looped, rngs=nnx.Rngs(0)))
    shapes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(abstract, nnx.Param)))[0]:
        keys = tuple(getattr(k, "key", k) for k in path)
        if "blocks" in keys:  # (stack, "stack", "blocks", i, ...) → (stack, ...)
            keys = (keys[0], *keys[4:])
        shapes[keys] = tuple(leaf.shape)
    return shapes


def model_values(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """`config.model` values of the network an HF T5/mT5 `config.json` describes; other variants are refused."""
    proj = config.get("feed_forward_proj", "relu")
    if proj != "gated-gelu":
        raise ConfigError(
            f"{source}: feed_forward_proj={proj!r}; xlt_jax's T5 is v1.1 (gated-gelu). Original T5 (relu) is not "
            "supported"
        )
    eps = float(config.get("layer_norm_epsilon", 1e-6))
    if abs(eps - 1e-6) > 1e-12:
        raise ConfigError(f"{source}: layer_norm_epsilon={eps}; xlt_jax's T5 uses 1e-6")
    scaled = config.get("scale_decoder_outputs", config.get("tie_word_embeddings", True) is not False)
    if scaled:
        raise ConfigError(
            f"{source}: tie_word_embeddings is not false (the decoder output is scaled by d_model**-0.5 and the "
            "lm_head tied); xlt_jax's T5 v1.1 has an untied, unscaled lm_head"
        )
    layers = int(config["num_layers"])
    return dict(
        name="t5", num_layers=layers, num_decoder_layers=int(config.get("num_decoder_layers") or layers),
        hidden=int(config["d_model"]), heads=int(config["num_heads"]), head_dim=int(config["d_kv"]),
        mlp=int(config["d_ff"]), dropout=float(config.get("dropout_rate", 0.0)),
        relpos_buckets=int(config.get("relative_attention_num_buckets", 32)),
        relpos_max_distance=int(config.get("relative_attention_max_distance", 128)),
    )
