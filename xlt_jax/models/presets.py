"""Model sizes by preset, the `config.model` block and its resolution into a concrete spec.

Size fields of `config.model` default to typed placeholders (None = "take the preset's value"), so
`--config.model.preset=small` changes every size while `--config.model.num_layers=4` overrides one.
Everything that does not depend on the preset has a visible concrete default.
"""

from __future__ import annotations

import dataclasses

import ml_collections
from ml_collections import config_dict

from xlt_jax.config_utils import check_keys
from xlt_jax.errors import ConfigError
from xlt_jax.models.attention import check_attention_impl
from xlt_jax.models.layers import DTYPES
from xlt_jax.models.stack import REMAT_POLICIES, check_scan_unroll

# num_layers / hidden / heads / head_dim / mlp. head_dim None means hidden // heads. T5's decoder has
# num_layers layers too unless model.num_decoder_layers says otherwise.
PRESETS: dict[str, dict[str, dict[str, int | None]]] = {
    "roberta": {
        "tiny": dict(num_layers=2, hidden=64, heads=2, head_dim=None, mlp=128),
        # The CPU-scale experiments' model (README: fidelity, `make demo`, `make replicate`).
        "mini": dict(num_layers=2, hidden=128, heads=2, head_dim=None, mlp=512),
        "small": dict(num_layers=4, hidden=256, heads=4, head_dim=None, mlp=1024),
        # The paper's model (REFERENCE_SPEC §3.1, config/{lang}/roberta_8/config.json).
        "roberta8": dict(num_layers=8, hidden=512, heads=8, head_dim=None, mlp=2048),
    },
    "t5": {
        "tiny": dict(num_layers=2, hidden=64, heads=2, head_dim=32, mlp=128),
        # T5.1.1-small / mT5-small (REFERENCE_SPEC §3.4).
        "small": dict(num_layers=8, hidden=512, heads=6, head_dim=64, mlp=1024),
        "base": dict(num_layers=12, hidden=768, heads=12, head_dim=64, mlp=2048),
    },
}

DEFAULT_PRESET = {"roberta": "roberta8", "t5": "small"}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Every number a model needs, resolved from `config.model`, its preset and the vocabulary size."""

    name: str
    vocab_size: int
    num_layers: int
    hidden: int
    heads: int
    head_dim: int
    mlp: int
    dropout: float
    max_len: int
    dtype: str
    param_dtype: str
    scan_layers: bool
    remat_policy: str
    num_langs: int
    scan_unroll: int = 0
    attention_impl: str = "auto"
    last_layer_predicted_only: bool = True
    prediction_tiers: int = 1  # 0 = auto (prediction_tiers.resolve_count)
    num_decoder_layers: int = 0
    z_loss: float = 0.0
    relpos_buckets: int = 32
    relpos_max_distance: int = 128


def default_model_config(name: str = "roberta", preset: str | None = None) -> ml_collections.ConfigDict:
    """The `config.model` block for `name` in {"roberta", "t5"}, with visible defaults."""
    if name not in PRESETS:
        raise ConfigError(f"model.name {name!r} is not one of {sorted(PRESETS)}")
    c = ml_collections.ConfigDict()
    c.name = name
    c.preset = preset or DEFAULT_PRESET[name]
    # Sizes: None = from the preset.
    c.num_layers = config_dict.placeholder(int)
    c.hidden = config_dict.placeholder(int)
    c.heads = config_dict.placeholder(int)
    c.head_dim = config_dict.placeholder(int)
    c.mlp = config_dict.placeholder(int)
    # Hidden and attention dropout: 0.1 in RoBERTa (§3.1); 0 in T5 pretraining (§3.4, small_c4_pretrain.gin).
    c.dropout = 0.1 if name == "roberta" else 0.0
    # Longest input; RoBERTa learns max_len + 2 positions (padding offset). T5 has no absolute positions.
    c.max_len = 512
    c.dtype = "bfloat16"  # compute dtype; parameters stay in param_dtype (REFERENCE_SPEC §3.2)
    c.param_dtype = "float32"
    c.scan_layers = True
    # Layers per iteration of the scanned loop, or 0 = auto: all of them on the CPU backend, 1 (rolled)
    # elsewhere (stack.resolve_scan_unroll). Parameters stay stacked either way.
    c.scan_unroll = 0
    c.remat_policy = "none"  # one of stack.REMAT_POLICIES
    # Attention core: "xla" (autodiff), "cpu" (hand-written VJP, faster on XLA:CPU), "auto" ("cpu" on the CPU
    # backend, "xla" elsewhere). Same function and dropout masks; see models/attention.py.
    c.attention_impl = "auto"
    if name == "roberta":
        # With gathered MLM predictions (data.max_predictions_per_seq), the last layer computes only the predicted
        # rows past its attention core (the other rows' outputs would be thrown away); the same loss to float
        # rounding and the same dropout masks. False computes every row, as Hugging Face does.
        c.last_layer_predicted_only = True
        # With gathered MLM predictions, the head projects the smallest of this many row counts (multiples of 8
        # from half the budget to all of it) that covers the batch's predictions, chosen per batch on the device:
        # the same loss and gradients, about the work of the exact number of predictions. 1 = the whole budget;
        # 0 = auto: 8 when traced for CPU, 1 elsewhere (models/prediction_tiers.py::resolve_count says why).
        c.prediction_tiers = 0
    c.num_langs = 2  # size of the per-language metric arrays (lang_id in batches)
    if name == "t5":
        c.num_decoder_layers = config_dict.placeholder(int)  # None = num_layers
        c.z_loss = 1e-4  # t5x default
        c.relpos_buckets = 32
        c.relpos_max_distance = 128
    return c


def resolve_model_config(config: ml_collections.ConfigDict, vocab_size: int) -> ModelSpec:
    """Validate `config.model` and fill its placeholders from the preset; errors name the offending key."""
    name = config.get("name")
    if name not in PRESETS:
        raise ConfigError(f"model.name {name!r} is not one of {sorted(PRESETS)}")
    defaults = default_model_config(name)
    check_keys(config, defaults, prefix="model.")
    # Keys missing from `config` (e.g. a roberta block switched to name=t5) take the model's defaults.
    merged = defaults.copy_and_resolve_references()
    merged.update(config)
    config = merged
    presets = PRESETS[name]
    if config.preset not in presets:
        raise ConfigError(f"model.preset {config.preset!r} is not one of {sorted(presets)} for {name}")
    values = dict(presets[config.preset])
    for key in (*values, "num_decoder_layers"):
        value = config.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"model.{key} must be an integer, got {value!r}")
        if value is not None and key in values:
            values[key] = value
    if values["head_dim"] is None:
        if values["hidden"] % values["heads"]:
            raise ConfigError(f"model.hidden={values['hidden']} is not divisible by model.heads={values['heads']}")
        values["head_dim"] = values["hidden"] // values["heads"]
    for key in ("num_layers", "hidden", "heads", "head_dim", "mlp"):
        if values[key] < 1:
            raise ConfigError(f"model.{key} must be positive, got {values[key]}")
    if vocab_size < 5:
        raise ConfigError(f"vocab_size {vocab_size} is too small (5 special ids are reserved)")
    for key in ("dtype", "param_dtype"):
        if config[key] not in DTYPES:
            raise ConfigError(f"model.{key} {config[key]!r} is not one of {sorted(DTYPES)}")
    if config.remat_policy not in REMAT_POLICIES:
        raise ConfigError(f"model.remat_policy {config.remat_policy!r} is not one of {sorted(REMAT_POLICIES)}")
    check_scan_unroll(config.scan_unroll)
    check_attention_impl(config.attention_impl)
    if not 0.0 <= config.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {config.dropout}")
    extra = {}
    if name == "roberta":
        tiers = config.prediction_tiers
        if not isinstance(tiers, int) or isinstance(tiers, bool) or tiers < 0:
            raise ConfigError(f"model.prediction_tiers must be 0 (auto) or a positive integer, got {tiers!r}")
        extra = dict(  # last_layer_predicted_only is a bool: ml_collections checks the type
            last_layer_predicted_only=config.last_layer_predicted_only, prediction_tiers=tiers
        )
    if name == "t5":
        extra = dict(
            z_loss=float(config.z_loss),
            relpos_buckets=int(config.relpos_buckets),
            relpos_max_distance=int(config.relpos_max_distance),
        )
    return ModelSpec(
        name=name,
        vocab_size=int(vocab_size),
        num_layers=int(values["num_layers"]),
        hidden=int(values["hidden"]),
        heads=int(values["heads"]),
        head_dim=int(values["head_dim"]),
        mlp=int(values["mlp"]),
        dropout=float(config.dropout),
        max_len=int(config.max_len),
        dtype=config.dtype,
        param_dtype=config.param_dtype,
        scan_layers=bool(config.scan_layers),
        scan_unroll=config.scan_unroll,
        attention_impl=str(config.attention_impl),
        remat_policy=config.remat_policy,
        num_langs=int(config.num_langs),
        num_decoder_layers=int(config.get("num_decoder_layers") or values["num_layers"]) if name == "t5" else 0,
        **extra,
    )
