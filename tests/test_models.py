"""Model tests on the tiny presets (CPU): shapes, RoBERTa specifics, T5 causality, scan/loop/remat
equivalence, dtypes, logical-axis metadata, sharded creation, configs and the analytic FLOP count.

Compiles dominate the run time, so models and jitted functions are shared through module fixtures.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from xlt_jax.data.vocab import SPECIALS
from xlt_jax.errors import ConfigError
from xlt_jax.models import (
    LOGICAL_AXES,
    build_model,
    count_params,
    default_model_config,
    flops_per_example,
    param_creation_context,
    prediction_tiers,
    resolve_model_config,
    transfer_weights,
)
from xlt_jax.models.heads import QuestionAnsweringHead, SequenceClassificationHead, TokenClassificationHead
from xlt_jax.models.layers import gelu_erf, relative_position_bucket
from xlt_jax.models.losses import token_cross_entropy
from xlt_jax.models.roberta import position_ids
from xlt_jax.models.stack import resolve_scan_unroll

VOCAB = 101
PAD = SPECIALS.pad
RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv", None),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("layers", None),
    ("relpos_buckets", None),
)


def tiny_config(name: str, **overrides):
    config = default_model_config(name, "tiny")
    config.dtype = "float32"
    config.scan_unroll = 1  # the rolled loop a TPU runs; the CPU's automatic unrolling has its own test
    config.update(overrides)
    return config


def build(name: str, seed: int = 0, **overrides) -> nnx.Module:
    return build_model(tiny_config(name, **overrides), VOCAB, rngs=nnx.Rngs(seed))


def mlm_batch(seed: int = 0, batch: int = 2, length: int = 12) -> dict[str, jax.Array]:
    """Two sequences `<s> … </s> <pad>…` (the second shorter), ~25% of real tokens predicted."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, size=(batch, length)).astype(np.int32)
    lengths = np.array([length, length - 4][:batch])
    ids[:, 0] = SPECIALS.bos
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
    ids[np.arange(batch), lengths - 1] = SPECIALS.eos
    ids[mask == 0] = PAD
    loss_mask = ((rng.random((batch, length)) < 0.25) & (mask == 1)).astype(np.float32)
    loss_mask[:, 1] = 1.0
    inputs = np.where(loss_mask == 1, SPECIALS.mask, ids).astype(np.int32)
    return {
        "input_ids": jnp.asarray(inputs),
        "targets": jnp.asarray(np.where(loss_mask == 1, ids, 0).astype(np.int32)),
        "loss_mask": jnp.asarray(loss_mask),
        "attention_mask": jnp.asarray(mask),
        "lang_id": jnp.arange(batch, dtype=jnp.int32) % 2,
    }


def span_batch(seed: int = 0, batch: int = 2, in_len: int = 12, tgt_len: int = 6) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    enc = rng.integers(5, VOCAB - 10, size=(batch, in_len)).astype(np.int32)
    enc_mask = np.ones_like(enc)
    enc_mask[1, -3:] = 0
    enc[enc_mask == 0] = PAD
    targets = rng.integers(5, VOCAB, size=(batch, tgt_len)).astype(np.int32)
    targets[:, -1] = SPECIALS.eos
    targets[1, -2:] = [SPECIALS.eos, PAD]
    dec_in = np.concatenate([np.full((batch, 1), SPECIALS.bos, np.int32), targets[:, :-1]], axis=1)
    return {
        "encoder_input_ids": jnp.asarray(enc),
        "encoder_attention_mask": jnp.asarray(enc_mask),
        "decoder_input_ids": jnp.asarray(dec_in),
        "decoder_targets": jnp.asarray(targets),
        "decoder_loss_mask": jnp.asarray((targets != PAD).astype(np.float32)),
        "lang_id": jnp.array([0, 1], jnp.int32),
    }


@nnx.jit
def roberta_outputs(model, ids, mask):
    return model(ids, mask), model.encode(ids, mask, return_all_layers=True)


@nnx.jit
def t5_outputs(model, batch):
    logits = model(batch["encoder_input_ids"], batch["encoder_attention_mask"], batch["decoder_input_ids"])
    states = model.encode(batch["encoder_input_ids"], batch["encoder_attention_mask"], return_all_layers=True)
    return logits, states


def t5_logits(model, batch):
    return t5_outputs(model, batch)[0]


@nnx.jit
def loss_and_grads(model, batch, key):
    def loss_fn(m):
        return m.loss(batch, deterministic=False, dropout_rng=key)

    (loss, sums), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    return loss, sums, grads


def stacked(pure: dict, num_layers: int) -> dict:
    """Loop-layout parameters/grads of one stack in the scanned layout."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[pure[i] for i in range(num_layers)])


def assert_trees_close(a, b, atol=1e-5, rtol=1e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=rtol), a, b)


def assert_same_training_signal(got, want):
    """Two `loss_and_grads` results agree: the loss, the metric sums and the gradients, to float rounding."""
    (loss_g, sums_g, grads_g), (loss_w, sums_w, grads_w) = got, want
    np.testing.assert_allclose(loss_g, loss_w, rtol=1e-6)
    assert_trees_close(sums_g, sums_w, atol=1e-5)
    assert_trees_close(nnx.to_pure_dict(grads_g), nnx.to_pure_dict(grads_w), atol=1e-6)


@pytest.fixture(scope="module")
def roberta():
    return build("roberta")


@pytest.fixture(scope="module")
def roberta_loop(roberta):
    """The looped layout with the scanned model's weights."""
    model = build("roberta", seed=1, scan_layers=False)
    transfer_weights(roberta, model)
    return model


@pytest.fixture(scope="module")
def t5():
    return build("t5")


@pytest.fixture(scope="module")
def t5_loop(t5):
    model = build("t5", seed=1, scan_layers=False)
    transfer_weights(t5, model)
    return model


# --- RoBERTa ------------------------------------------------------------------------------------------------


def test_roberta_shapes_and_all_layers(roberta):
    batch = mlm_batch()
    logits, states = roberta_outputs(roberta, batch["input_ids"], batch["attention_mask"])
    assert logits.shape == (2, 12, VOCAB)
    assert len(states) == 2 + 1  # embedding output + one per layer
    assert all(s.shape == (2, 12, 64) for s in states)
    final = nnx.eval_shape(lambda m: m.encode(batch["input_ids"], batch["attention_mask"]), roberta)
    assert final.shape == (2, 12, 64)


def test_position_ids_start_after_pad_and_skip_padding():
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_array_equal(position_ids(mask), [[2, 3, 4, 5], [2, 3, 1, 1]])


def test_roberta_position_table_has_offset_rows(roberta):
    table = roberta.embeddings.position_embeddings.embedding
    assert table.shape == (512 + 2, 64)  # max_len + pad_id + 1
    np.testing.assert_array_equal(table[...][PAD], 0.0)  # HF zeroes the padding row
    np.testing.assert_array_equal(roberta.embeddings.word_embeddings.embedding[...][PAD], 0.0)


def test_roberta_padding_is_masked(roberta):
    batch = mlm_batch()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    logits, _ = roberta_outputs(roberta, ids, mask)
    other_ids = jnp.where(mask == 0, 42, ids)
    logits2, _ = roberta_outputs(roberta, other_ids, mask)
    real = np.asarray(mask, bool)
    np.testing.assert_allclose(np.asarray(logits)[real], np.asarray(logits2)[real], atol=1e-5)
    # Sanity: the same change with the mask claiming those tokens are real does change the outputs.
    logits3, _ = roberta_outputs(roberta, other_ids, jnp.ones_like(mask))
    assert not np.allclose(np.asarray(logits)[real], np.asarray(logits3)[real], atol=1e-3)


def test_mlm_decoder_is_tied_to_word_embeddings(roberta):
    batch = mlm_batch()
    logits, states = roberta_outputs(roberta, batch["input_ids"], batch["attention_mask"])
    head = roberta.lm_head
    h = head.layer_norm(jax.nn.gelu(head.dense(states[-1]), approximate=False))
    expected = h @ roberta.embeddings.word_embeddings.embedding[...].T + head.bias[...]
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    vocab_sized = [
        jax.tree_util.keystr(path)
        for path, x in jax.tree_util.tree_flatten_with_path(nnx.state(roberta, nnx.Param))[0]
        if VOCAB in x.shape
    ]
    assert len(vocab_sized) == 2, vocab_sized  # the embedding table and the output bias; no decoder matrix


def test_roberta8_parameter_count_matches_reference():
    config = default_model_config("roberta", "roberta8")
    model = nnx.eval_shape(lambda: build_model(config, 40000, rngs=nnx.Rngs(0)))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    size = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))  # noqa: E731
    embeddings, blocks = size(params["embeddings"]), size(params["encoder"])
    assert embeddings == 40000 * 512 + 514 * 512 + 512 + 2 * 512
    assert abs(embeddings - 20.5e6) < 0.4e6  # REFERENCE_SPEC §3.1: ~20.5M
    assert blocks == 8 * (4 * (512 * 512 + 512) + 2 * 512 * 2048 + 2048 + 512 + 4 * 512)
    assert abs(blocks - 25.2e6) < 0.1e6  # ~25.2M
    assert count_params(model) == embeddings + blocks + (512 * 512 + 512) + 2 * 512 + 40000


# --- scan / loop / remat ------------------------------------------------------------------------------------


def test_roberta_scan_and_loop_agree(roberta, roberta_loop):
    batch = mlm_batch()
    logits_s, states_s = roberta_outputs(roberta, batch["input_ids"], batch["attention_mask"])
    logits_l, states_l = roberta_outputs(roberta_loop, batch["input_ids"], batch["attention_mask"])
    np.testing.assert_allclose(logits_s, logits_l, atol=1e-5)
    assert_trees_close(states_s, states_l, atol=1e-5)


def _scan_unrolls(model, batch) -> list:
    graphdef, state = nnx.split(model)
    jaxpr = jax.make_jaxpr(lambda st: nnx.merge(graphdef, st).loss(batch, deterministic=True)[0])(state)
    return [e.params["unroll"] for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]


def test_scan_unroll_keeps_stacked_weights_and_values(roberta):
    """`model.scan_unroll` unrolls layers inside the scanned loop (faster on CPU) with the same stacked weights;
    0 (auto, the default) unrolls every layer when tracing for CPU and none for TPU or GPU."""
    unrolled = build("roberta", seed=3, scan_unroll=2)
    transfer_weights(roberta, unrolled)
    batch, key = mlm_batch(), jax.random.key(7)
    auto = build("roberta", seed=4, scan_unroll=default_model_config("roberta").scan_unroll)
    assert [_scan_unrolls(m, batch) for m in (roberta, unrolled, auto)] == [[1], [2], [2]]
    loss, sums, grads = loss_and_grads(roberta, batch, key)
    loss_u, sums_u, grads_u = loss_and_grads(unrolled, batch, key)
    np.testing.assert_allclose(loss, loss_u, rtol=1e-6)
    assert_trees_close(nnx.to_pure_dict(grads), nnx.to_pure_dict(grads_u), atol=1e-6)
    assert [resolve_scan_unroll(0, 8, p) for p in ("cpu", "tpu", "gpu")] == [8, 1, 1]
    assert resolve_scan_unroll(4, 8, "tpu") == 4 and resolve_scan_unroll(16, 8, "cpu") == 8
    for bad in (-1, True):
        with pytest.raises(ConfigError, match=r"model.scan_unroll must be 0 \(auto\) or a positive integer"):
            build("roberta", scan_unroll=bad)
    with pytest.raises(TypeError, match="scan_unroll"):  # ml_collections keeps the field an integer
        build("roberta", scan_unroll="auto")


def gathered_batch(dense: dict[str, jax.Array], slots: int) -> dict[str, jax.Array]:
    """`dense` with its predictions gathered per sequence into `slots` rows (padding slots weighted 0)."""
    loss_mask = np.asarray(dense["loss_mask"])
    positions = np.zeros((len(loss_mask), slots), np.int32)
    weights = np.zeros((len(loss_mask), slots), np.float32)
    for row in range(len(loss_mask)):
        where = np.flatnonzero(loss_mask[row])
        positions[row, : len(where)], weights[row, : len(where)] = where, 1.0
    gathered = {k: v for k, v in dense.items() if k not in ("targets", "loss_mask")}
    return gathered | {
        "mlm_positions": jnp.asarray(positions),
        "mlm_targets": jnp.asarray(np.take_along_axis(np.asarray(dense["targets"]), positions, 1) * (weights > 0)),
        "mlm_weights": jnp.asarray(weights),
    }


def test_remat_gives_same_loss_and_grads(roberta):
    remat = build("roberta", seed=2, remat_policy="full")
    transfer_weights(roberta, remat)
    batch = gathered_batch(mlm_batch(), slots=8)  # the last layer on the predicted rows, under remat too
    key = jax.random.key(7)  # dropout on: recomputed layers must redraw the same masks
    loss, sums, grads = loss_and_grads(roberta, batch, key)
    loss_r, sums_r, grads_r = loss_and_grads(remat, batch, key)
    np.testing.assert_allclose(loss, loss_r, rtol=1e-6)
    assert_trees_close(sums, sums_r, atol=1e-5)
    assert_trees_close(nnx.to_pure_dict(grads), nnx.to_pure_dict(grads_r), atol=1e-6)
    # Dropout really is on: another key gives another loss.
    loss_other, _, _ = loss_and_grads(roberta, batch, jax.random.key(8))
    assert abs(float(loss_other) - float(loss)) > 1e-4
    # And rematerialisation really is in the program.
    graphdef, params, rest = nnx.split(remat, nnx.Param, ...)
    jaxpr = jax.make_jaxpr(lambda p, r: nnx.merge(graphdef, p, r).loss(batch, deterministic=True)[0])(params, rest)
    assert "remat" in str(jaxpr)


@pytest.fixture(scope="module")
def roberta_full_last(roberta):
    """The scanned model computing every row of its last layer (model.last_layer_predicted_only=False)."""
    model = build("roberta", seed=2, last_layer_predicted_only=False)
    transfer_weights(roberta, model)
    return model


# The gathered-prediction path with the last layer on the predicted rows only (scanned and looped) and on all.
@pytest.mark.parametrize("model_name", ["roberta", "roberta_full_last"])
def test_gathered_predictions_give_the_full_projection_loss_and_grads(model_name, request):
    """Projecting only the predicted rows (mlm_positions) is the same objective as projecting every position,
    with dropout on (same key) and with padded prediction slots."""
    roberta = request.getfixturevalue(model_name)
    dense = mlm_batch(seed=3, batch=2, length=12)
    gathered = gathered_batch(dense, slots=8)
    assert 0 < np.asarray(gathered["mlm_weights"]).sum(1).min() < 8  # real padding slots in the gathered batch
    key = jax.random.key(11)
    assert_same_training_signal(loss_and_grads(roberta, gathered, key), loss_and_grads(roberta, dense, key))


@pytest.mark.parametrize("model_name", ["roberta", "roberta_loop"])
def test_grouped_predictions_give_the_full_projection_loss_and_per_language_sums(model_name, request):
    """Predictions gathered per group of two sequences (data.mlm_group_size): flat positions over the group,
    each scored in the language of the sequence it lies in; the same loss, sums and grads as every position."""
    roberta = request.getfixturevalue(model_name)
    parts = [mlm_batch(seed=3), mlm_batch(seed=4)]
    dense = {k: jnp.concatenate([p[k] for p in parts]) for k in parts[0]}  # 4 sequences, languages 0 1 0 1
    batch, length = dense["input_ids"].shape
    group, slots = 2, 14
    flat_mask = np.asarray(dense["loss_mask"]).reshape(batch // group, group * length)
    positions = np.zeros((batch // group, slots), np.int32)
    weights = np.zeros((batch // group, slots), np.float32)
    for row in range(batch // group):
        where = np.flatnonzero(flat_mask[row])
        positions[row, : len(where)], weights[row, : len(where)] = where, 1.0
    assert 0 < weights.sum(1).min() < slots
    assert (positions[weights > 0] >= length).any()  # some predictions lie in a group's second sequence
    flat_targets = np.asarray(dense["targets"]).reshape(batch // group, group * length)
    grouped = {k: v for k, v in dense.items() if k not in ("targets", "loss_mask")}
    grouped |= {
        "mlm_positions": jnp.asarray(positions),
        "mlm_targets": jnp.asarray(np.take_along_axis(flat_targets, positions, 1) * (weights > 0)),
        "mlm_weights": jnp.asarray(weights),
    }
    key = jax.random.key(11)
    loss_d, sums_d, grads_d = loss_and_grads(roberta, dense, key)
    loss_g, sums_g, grads_g = loss_and_grads(roberta, grouped, key)
    np.testing.assert_allclose(loss_g, loss_d, rtol=1e-6)
    assert (np.asarray(sums_d["lang_weight_sum"]) > 0).all()  # both languages scored
    assert_trees_close(sums_g, sums_d, atol=1e-5)
    assert_trees_close(nnx.to_pure_dict(grads_g), nnx.to_pure_dict(grads_d), atol=1e-6)


def test_prediction_tiers_are_multiples_of_eight_up_to_the_budget():
    assert prediction_tiers.tiers(208, 8) == (104, 120, 136, 152, 168, 184, 200, 208)
    assert prediction_tiers.tiers(208, 1) == (208,) and prediction_tiers.tiers(8, 8) == (8,)
    for rows, count in ((208, 8), (720, 8), (40, 8), (40, 2), (13, 4)):
        tiers = prediction_tiers.tiers(rows, count)
        assert tiers[-1] == rows and len(tiers) <= count and list(tiers) == sorted(set(tiers))
        assert all(m % 8 == 0 and m >= rows / 2 for m in tiers[:-1])


def test_prediction_tiers_auto_is_eight_on_cpu_and_off_elsewhere():
    assert build("roberta").spec.prediction_tiers == 0  # the default is auto
    assert [prediction_tiers.resolve_count(0, p) for p in ("cpu", "tpu", "gpu")] == [8, 1, 1]
    assert prediction_tiers.resolve_count(3, "tpu") == 3  # a count given is kept on every platform
    for bad in (-1, True):
        with pytest.raises(ConfigError, match=r"model.prediction_tiers must be 0 \(auto\) or a positive integer"):
            build("roberta", prediction_tiers=bad)


def test_device_picks_the_smallest_tier_covering_the_last_weighted_row():
    rng = np.random.default_rng(0)
    tiers = prediction_tiers.tiers(40, 8)
    pick = jax.jit(lambda w: jnp.asarray(tiers)[prediction_tiers._tier_index(w, tiers)])
    for used in (0, 1, 20, 24, 25, 31, 33, 40):
        weights = np.zeros((3, 40), np.float32)
        weights[rng.integers(3), used - 1] = 1.0 if used else 0.0  # one group's last row; the others fewer
        weights[:, : max(used - 8, 0)] = 1.0
        expected = min(m for m in tiers if m >= used)
        assert prediction_tiers.tier_for(weights, tiers) == expected == int(pick(weights)), used


@pytest.fixture(scope="module")
def roberta_untiered(roberta):
    """The scanned model always projecting every gathered row (model.prediction_tiers=1)."""
    model = build("roberta", seed=2, prediction_tiers=1)
    transfer_weights(roberta, model)
    return model


@pytest.mark.parametrize("rows_used", [12, 26])
def test_prediction_tiers_give_the_loss_and_grads_of_every_gathered_row(roberta, roberta_untiered, rows_used):
    """40 gathered slots, tiers (24, 32, 40): the head projects 24 or 32 rows, as the last weighted slot needs
    (a padding slot inside the used rows, so counting weights would stop short), and scores as if all 40."""
    dense = mlm_batch(seed=5, length=40)
    loss_mask = np.zeros((2, 40), np.float32)
    loss_mask[0, 1 : rows_used + 2] = 1.0  # rows_used + 1 predictions in sequence 0; 5 in sequence 1
    loss_mask[1, [1, 4, 9, 16, 30]] = 1.0
    ids = np.where(np.asarray(dense["loss_mask"]) == 1, np.asarray(dense["targets"]), np.asarray(dense["input_ids"]))
    dense |= {"loss_mask": jnp.asarray(loss_mask), "targets": jnp.asarray(np.where(loss_mask == 1, ids, 0)),
              "input_ids": jnp.asarray(np.where(loss_mask == 1, SPECIALS.mask, ids))}  # fmt: skip
    gathered = gathered_batch(dense, slots=40)
    weights = np.asarray(gathered["mlm_weights"]).copy()
    weights[0, rows_used - 1] = 0.0  # a padding slot before the group's last prediction
    gathered["mlm_weights"] = jnp.asarray(weights)
    tiers = prediction_tiers.tiers(40, prediction_tiers.resolve_count(roberta.spec.prediction_tiers))
    assert prediction_tiers.tier_for(weights, tiers) == (24 if rows_used < 24 else 32)
    key = jax.random.key(11)
    tiered = loss_and_grads(roberta, gathered, key)
    assert_same_training_signal(tiered, loss_and_grads(roberta_untiered, gathered, key))
    loss_t, _, grads_t = tiered
    if rows_used < 24:  # and both equal the full projection of every position, that slot unweighted too
        dense_mask = loss_mask.copy()
        dense_mask[0, int(gathered["mlm_positions"][0, rows_used - 1])] = 0.0
        loss_d, _, grads_d = loss_and_grads(roberta, dense | {"loss_mask": jnp.asarray(dense_mask)}, key)
        np.testing.assert_allclose(loss_t, loss_d, rtol=1e-6)
        assert_trees_close(nnx.to_pure_dict(grads_t), nnx.to_pure_dict(grads_d), atol=1e-6)


def test_transfer_weights_round_trips(roberta, roberta_loop):
    back = build("roberta", seed=9)
    transfer_weights(roberta_loop, back)
    assert_trees_close(nnx.to_pure_dict(nnx.state(back, nnx.Param)), nnx.to_pure_dict(nnx.state(roberta, nnx.Param)))
    g_scan = nnx.to_pure_dict(nnx.state(roberta, nnx.Param))
    g_loop = nnx.to_pure_dict(nnx.state(roberta_loop, nnx.Param))
    assert_trees_close(g_scan["encoder"].pop("blocks"), stacked(g_loop["encoder"].pop("blocks"), 2))


def test_t5_scan_and_loop_agree(t5, t5_loop):
    # Forward only: gradients through LayerStack are covered by the RoBERTa test above; this checks the
    # decoder's extra per-layer context (encoder output, cross-attention bias) in both layouts.
    batch = span_batch()
    logits_s, states_s = t5_outputs(t5, batch)
    logits_l, states_l = t5_outputs(t5_loop, batch)
    np.testing.assert_allclose(logits_s, logits_l, atol=1e-5)
    assert_trees_close(states_s, states_l, atol=1e-5)


def test_task_heads_output_shapes():
    hidden = jnp.zeros((2, 12, 64))
    init = jax.nn.initializers.normal(0.02)
    kw = dict(kernel_init=init, dtype=jnp.float32, param_dtype=jnp.float32)

    def run(make, **call):
        with param_creation_context():
            return nnx.eval_shape(lambda: make(rngs=nnx.Rngs(0))(hidden, **call))

    key = dict(key=jax.random.key(0), deterministic=False)
    assert run(lambda rngs: SequenceClassificationHead(64, 3, dropout_rate=0.1, rngs=rngs, **kw), **key).shape == (2, 3)
    assert run(lambda rngs: TokenClassificationHead(64, 17, dropout_rate=0.1, rngs=rngs, **kw), **key).shape == (
        2, 12, 17,
    )
    start, end = run(lambda rngs: QuestionAnsweringHead(64, rngs=rngs, **kw))
    assert start.shape == end.shape == (2, 12)


# --- T5 -----------------------------------------------------------------------------------------------------


def test_t5_shapes_and_decoder_causality(t5):
    batch = span_batch()
    logits = t5_logits(t5, batch)
    assert logits.shape == (2, 6, VOCAB)
    t = 3
    changed = dict(batch, decoder_input_ids=batch["decoder_input_ids"].at[:, t:].set(17))
    logits2 = t5_logits(t5, changed)
    np.testing.assert_allclose(logits[:, :t], logits2[:, :t], atol=1e-5)
    assert not np.allclose(logits[:, t:], logits2[:, t:], atol=1e-3)
    # ... and it sees every earlier input, not only the start token: a change at 1 reaches position t.
    earlier = dict(batch, decoder_input_ids=batch["decoder_input_ids"].at[:, 1].set(17))
    assert not np.allclose(logits[:, t], t5_logits(t5, earlier)[:, t], atol=1e-3)
    # Encoder padding is masked: pad ids do not reach the decoder.
    enc = batch["encoder_input_ids"]
    other = dict(batch, encoder_input_ids=jnp.where(batch["encoder_attention_mask"] == 0, 33, enc))
    np.testing.assert_allclose(logits, t5_logits(t5, other), atol=1e-5)


def test_t5_encode_returns_hidden_states(t5):
    _, states = t5_outputs(t5, span_batch())
    assert len(states) == 3 and all(s.shape == (2, 12, 64) for s in states)
    # The last state is the encoder output after the final RMSNorm: unit root-mean-square times the scale.
    scale = t5.encoder.final_norm.scale[...]
    rms = jnp.sqrt(jnp.mean(jnp.square(states[-1] / scale), axis=-1))
    np.testing.assert_allclose(rms, 1.0, atol=1e-3)


def test_t5_structure_follows_v1_1(t5):
    params = nnx.to_pure_dict(nnx.state(t5, nnx.Param))
    flat = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert not [k for k in flat if "bias'" in k and "relpos_bias" not in k]  # no dense biases
    assert flat["['encoder']['relpos_bias']['embedding']"].shape == (2, 32)  # one per stack
    assert flat["['decoder']['relpos_bias']['embedding']"].shape == (2, 32)
    assert flat["['decoder']['logits_dense']['kernel']"].shape == (64, VOCAB)  # untied
    assert "['encoder']['stack']['blocks']['mlp']['wi_1']['kernel']" in flat  # gated FFN


def test_gelu_erf_matches_exact_gelu_value_and_gradient():
    x = jnp.linspace(-8.0, 8.0, 1001, dtype=jnp.float32)
    np.testing.assert_allclose(gelu_erf(x), jax.nn.gelu(x, approximate=False), atol=1e-6)
    grad = jax.grad(lambda v: jnp.sum(gelu_erf(v) * jnp.cos(v)))(x)
    want = jax.grad(lambda v: jnp.sum(jax.nn.gelu(v, approximate=False) * jnp.cos(v)))(x)
    np.testing.assert_allclose(grad, want, atol=1e-5)
    assert gelu_erf(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_relative_position_buckets_match_t5_formula():
    rel = np.array([0, -1, 1, -7, -8, -20, -100, -128, -1000, 7, 20, 200])
    # Bidirectional, 32 buckets: 16 per direction, exact below 8, log-spaced to 128; later keys +16.
    expected = [0, 1, 17, 7, 8, 10, 15, 15, 15, 23, 26, 31]
    np.testing.assert_array_equal(relative_position_bucket(rel, bidirectional=True), expected)
    # Causal: future keys in bucket 0, exact below 16, then 16 + floor(log(n/16)/log(8)·16).
    rel = np.array([5, 0, -5, -15, -16, -40, -127, -128, -500])
    np.testing.assert_array_equal(
        relative_position_bucket(rel, bidirectional=False), [0, 0, 5, 15, 16, 23, 31, 31, 31]
    )


# --- dtypes and training ------------------------------------------------------------------------------------


@nnx.jit
def eval_loss(model, batch):
    return model.loss(batch, deterministic=True)


def test_bf16_compute_keeps_fp32_params(roberta):
    model = build("roberta", seed=4, scan_layers=False, dtype="bfloat16")
    transfer_weights(roberta, model)
    assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("float32")}
    batch = mlm_batch()
    logits = nnx.eval_shape(lambda m: m(batch["input_ids"], batch["attention_mask"]), model)
    assert logits.dtype == jnp.bfloat16
    loss_bf16, sums = eval_loss(model, batch)
    assert sums["loss_sum"].dtype == jnp.float32  # the loss itself is computed in float32
    logits_f32, _ = roberta_outputs(roberta, batch["input_ids"], batch["attention_mask"])
    loss_f32, _ = token_cross_entropy(
        logits_f32, batch["targets"], batch["loss_mask"], batch["lang_id"], num_langs=2
    )
    assert np.isfinite(float(loss_bf16))
    np.testing.assert_allclose(loss_bf16, loss_f32, rtol=0.02)


@pytest.mark.parametrize("name", ["roberta", "t5"])
def test_loss_decreases_with_adamw(name):
    model = build(name, seed=3)  # same structure as the fixtures: reuses their compiled loss_and_grads
    batch = mlm_batch(seed=5) if name == "roberta" else span_batch(seed=5)
    tx = optax.adamw(3e-3)
    params = nnx.state(model, nnx.Param)
    opt_state = tx.init(params)

    @jax.jit
    def apply(params, grads, opt_state):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    losses = []
    for i in range(8):
        loss, sums, grads = loss_and_grads(model, batch, jax.random.key(i))
        params, opt_state = apply(params, grads, opt_state)
        nnx.update(model, params)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses
    # Metric sums agree with the mean loss (T5 adds a small z-loss) and split by language id.
    ce = float(sums["loss_sum"]) / float(sums["weight_sum"])
    if name == "roberta":
        np.testing.assert_allclose(ce, losses[-1], rtol=1e-5)
    else:
        assert 0.0 < losses[-1] - ce < 0.05
    np.testing.assert_allclose(sums["lang_weight_sum"].sum(), sums["weight_sum"])
    np.testing.assert_allclose(sums["lang_correct_sum"].sum(), sums["correct_sum"])
    np.testing.assert_allclose(sums["lang_loss_sum"].sum(), sums["loss_sum"], rtol=1e-5)
    mask = batch["loss_mask"] if name == "roberta" else batch["decoder_loss_mask"]
    np.testing.assert_allclose(sums["lang_weight_sum"], np.asarray(mask).sum(axis=1))


# --- logical axes and sharding ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["roberta", "t5"])
@pytest.mark.parametrize("scan", [True, False])
def test_every_parameter_has_logical_axes(name, scan):
    model = nnx.eval_shape(lambda: build_model(tiny_config(name, scan_layers=scan), VOCAB, rngs=nnx.Rngs(0)))
    count = 0
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        names = var.get_metadata().get("out_sharding")
        assert names is not None, path
        assert len(names) == len(var.shape), (path, names, var.shape)
        assert set(names) <= set(LOGICAL_AXES) | {None}, (path, names)
        in_stack = "blocks" in path
        assert (names[0] == "layers") == (in_stack and scan), (path, names)
        count += 1
    assert count > 10


def _strip(spec: P) -> tuple:
    """Spec entries without trailing Nones (Auto-axes shardings may drop them, ENV_NOTES §3)."""
    entries = list(spec)
    while entries and entries[-1] is None:
        entries.pop()
    return tuple(entries)


def test_sharded_build_follows_rules():
    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
    config = tiny_config("t5")
    with jax.set_mesh(mesh), nnx.logical_axis_rules(RULES):
        # eval_shape runs the same eager-sharding code as a real build, without computing values.
        model = nnx.eval_shape(lambda: build_model(config, 128, rngs=nnx.Rngs(0)))
        specs = dict(nnx.to_flat_state(nnx.get_partition_spec(nnx.state(model, nnx.Param))))
    expected = {
        ("shared_embedding", "embedding"): P("tensor", "fsdp"),
        ("encoder", "stack", "blocks", "attention", "query", "kernel"): P(None, "fsdp", "tensor", None),
        ("encoder", "stack", "blocks", "attention", "out", "kernel"): P(None, "tensor", None, "fsdp"),
        ("encoder", "stack", "blocks", "pre_mlp_norm", "scale"): P(None, "fsdp"),
        ("decoder", "stack", "blocks", "mlp", "wo", "kernel"): P(None, "tensor", "fsdp"),
        ("decoder", "relpos_bias", "embedding"): P("tensor", None),
        ("decoder", "logits_dense", "kernel"): P("fsdp", "tensor"),
    }
    params = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    for path, spec in expected.items():
        assert _strip(specs[path].get_value()) == _strip(spec), (path, specs[path])
        assert _strip(params[path].get_value().sharding.spec) == _strip(spec), path
    with jax.set_mesh(mesh), nnx.logical_axis_rules(RULES[:-2]), pytest.raises(ConfigError, match="layers"):
        build_model(config, 128, rngs=nnx.Rngs(0))


def test_last_layer_on_predicted_rows_under_data_fsdp_and_tensor_sharding():
    """On a (2, 2, 2) mesh the gathered rows keep their logical shardings (heads over `tensor`, groups over the
    batch axes) and give the loss of every position projected."""
    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
    dense = {k: jnp.concatenate([v, v]) for k, v in mlm_batch(seed=5).items()}  # 4 sequences: one per batch shard
    gathered = gathered_batch(dense, slots=8)
    with jax.set_mesh(mesh), nnx.logical_axis_rules(RULES):
        model = build_model(tiny_config("roberta"), 128, rngs=nnx.Rngs(0))  # a vocabulary `tensor` divides
        graphdef, state = nnx.split(model)

        @jax.jit
        def loss(state, batch):
            return nnx.merge(graphdef, state).loss(batch, deterministic=False, dropout_rng=jax.random.key(3))[0]

        np.testing.assert_allclose(loss(state, gathered), loss(state, dense), rtol=1e-6)
        hlo = loss.lower(state, gathered).compile().as_text()
        # 24 slots: the head picks its tier of 16 rows on the sharded batch (a replicated switch index), and
        # the gradients are those of every position too.
        tiered = gathered_batch(dense, slots=24)
        param_def, params, rest = nnx.split(model, nnx.Param, ...)
        grads = jax.jit(jax.value_and_grad(lambda p, batch: loss(nnx.state(nnx.merge(param_def, p, rest)), batch)))
        (loss_t, grads_t), (loss_d, grads_d) = grads(params, tiered), grads(params, dense)
        np.testing.assert_allclose(loss_t, loss_d, rtol=1e-6)
        assert_trees_close(nnx.to_pure_dict(grads_t), nnx.to_pure_dict(grads_d), atol=1e-6)
    # The last layer's gathered context [groups, rows, heads, kv] stays split over heads for its output
    # projection: per device [1, 8, 1, 32], never all-gathered into [1, 8, 2, 32] (it was, constrained unnamed).
    gathers = [line for line in hlo.splitlines() if " all-gather(" in line]
    assert gathers and not any("= f32[1,8,2,32]" in line for line in gathers)


# --- configs and FLOPs --------------------------------------------------------------------------------------


def test_model_config_resolution_and_errors():
    config = default_model_config("t5", "small")
    spec = resolve_model_config(config, 32128)
    assert (spec.num_layers, spec.num_decoder_layers, spec.hidden, spec.heads, spec.head_dim, spec.mlp) == (
        8, 8, 512, 6, 64, 1024,
    )
    config.num_layers = 4
    assert resolve_model_config(config, 32128).num_decoder_layers == 4
    config = default_model_config("roberta", "tiny")
    config.heads = 3
    with pytest.raises(ConfigError, match="heads"):
        resolve_model_config(config, 100)
    config = default_model_config("roberta")
    config.preset = "huge"
    with pytest.raises(ConfigError, match="preset"):
        resolve_model_config(config, 100)
    config = default_model_config("roberta")
    config.unknown = 1
    with pytest.raises(ConfigError, match="model.unknown"):
        resolve_model_config(config, 100)
    config = default_model_config("roberta")
    config.remat_policy = "some"
    with pytest.raises(ConfigError, match="remat_policy"):
        resolve_model_config(config, 100)


@pytest.mark.parametrize("name", ["roberta", "t5"])
def test_analytic_flops_match_cost_analysis_of_unrolled_model(name):
    config = tiny_config(name, scan_layers=False, hidden=128, mlp=512, heads=2, head_dim=64)
    vocab, batch_size, length, target_len = 4000, 2, 64, 16
    model = nnx.eval_shape(lambda: build_model(config, vocab, rngs=nnx.Rngs(0)))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    ones = lambda *shape: jnp.ones(shape, jnp.int32)  # noqa: E731
    if name == "roberta":
        batch = dict(input_ids=ones(2, length), targets=ones(2, length), attention_mask=ones(2, length),
                     loss_mask=jnp.ones((2, length)), lang_id=ones(2))
    else:
        batch = dict(encoder_input_ids=ones(2, length), encoder_attention_mask=ones(2, length),
                     decoder_input_ids=ones(2, target_len), decoder_targets=ones(2, target_len),
                     decoder_loss_mask=jnp.ones((2, target_len)), lang_id=ones(2))

    def measured_flops(batch):
        def grads(params, rest):
            return jax.grad(lambda p: nnx.merge(graphdef, p, rest).loss(batch, deterministic=True)[0])(params)

        return jax.jit(grads).lower(params, rest).cost_analysis()["flops"]

    measured = measured_flops(batch)
    analytic = batch_size * flops_per_example(config, vocab, length, target_len)
    assert abs(measured / analytic - 1) < 0.06, (measured, analytic)
    if name == "roberta":  # the same with the head on 16 gathered rows per sequence
        predicted = 16
        batch = dict(input_ids=ones(2, length), attention_mask=ones(2, length), lang_id=ones(2),
                     mlm_positions=ones(2, predicted), mlm_targets=ones(2, predicted),
                     mlm_weights=jnp.ones((2, predicted)))
        for sparse_last in (True, False):  # the last layer's FFN on those rows only (~25% less here), or on all
            config.last_layer_predicted_only = sparse_last
            model = nnx.eval_shape(lambda: build_model(config, vocab, rngs=nnx.Rngs(0)))
            graphdef, params, rest = nnx.split(model, nnx.Param, ...)
            measured = measured_flops(batch)
            analytic = batch_size * flops_per_example(config, vocab, length, predicted=predicted)
            assert abs(measured / analytic - 1) < 0.06, (sparse_last, measured, analytic)
