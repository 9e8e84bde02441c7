"""Mesh resolution, sharded initialisation and mesh-independent training on 8 fake CPU devices.

The model here is a small stand-in defined in this file (embedding, a scanned stack of dense layers, tied MLM
logits, dropout) that follows the models' contract: logical axis names on every parameter and
`loss(batch, deterministic) -> (mean loss, metric sums)`. Batches are byte-level ids of real sentences.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from xlt_jax.data import hashing, io
from xlt_jax.errors import ConfigError
from xlt_jax.training import checkpointing, optimizer, partitioning, steps
from xlt_jax.training import state as state_lib

RULES = {
    "batch": ("data", "fsdp"),
    "length": None,
    "embed": "fsdp",
    "mlp": "tensor",
    "heads": "tensor",
    "kv": None,
    "vocab": "tensor",
    "layers": None,
}
VOCAB = 264  # 256 bytes + 5 specials, rounded up to a multiple of 8 so every mesh axis divides it
NUM_LANGS = 2
SEQ = 32


class StandInMLM(nnx.Module):
    """Tiny MLM with the models' interface; just enough structure to exercise every sharding rule."""

    def __init__(self, *, rngs: nnx.Rngs, embed: int = 16, mlp: int = 32, layers: int = 2, dropout: float = 0.1):
        init = nnx.initializers.normal(0.02)
        self.embedding = nnx.Param(init(rngs.params(), (VOCAB, embed)), out_sharding=("vocab", "embed"))
        self.wi = nnx.Param(init(rngs.params(), (layers, embed, mlp)), out_sharding=("layers", "embed", "mlp"))
        self.wo = nnx.Param(init(rngs.params(), (layers, mlp, embed)), out_sharding=("layers", "mlp", "embed"))
        self.norm = nnx.LayerNorm(embed, scale_metadata={"out_sharding": ("embed",)},
                                  bias_metadata={"out_sharding": ("embed",)}, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros((VOCAB,)), out_sharding=("vocab",))
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def loss(self, batch, *, deterministic: bool):
        x = self.embedding[...][batch["input_ids"]]

        def layer(h, weights):
            wi, wo = weights
            return h + jax.nn.gelu(h @ wi) @ wo, None

        x, _ = jax.lax.scan(layer, x, (self.wi[...], self.wo[...]))
        x = self.dropout(self.norm(x), deterministic=deterministic)
        logits = x @ self.embedding[...].T + self.bias[...]
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
        w = batch["loss_mask"]
        correct = (jnp.argmax(logits, -1) == batch["targets"]) * w
        onehot = jax.nn.one_hot(batch["lang_id"], NUM_LANGS)
        sums = {
            "loss_sum": jnp.sum(nll * w),
            "weight_sum": jnp.sum(w),
            "correct_sum": jnp.sum(correct),
            "lang_loss_sum": onehot.T @ jnp.sum(nll * w, -1),
            "lang_weight_sum": onehot.T @ jnp.sum(w, -1),
            "lang_correct_sum": onehot.T @ jnp.sum(correct, -1),
        }
        return sums["loss_sum"] / jnp.maximum(sums["weight_sum"], 1.0), sums


def real_batches(data_dir, batch_size: int, count: int) -> list[dict[str, np.ndarray]]:
    """MLM batches of UTF-8 bytes of real English and French sentences (15% of positions predicted)."""
    half = batch_size * count // 2
    texts, langs = [], []
    for lang_id, lang in enumerate(("en", "fr")):
        path = data_dir / f"raw/lingua_leipzig_sample/{lang}.sentences.txt.gz"
        texts += [line for _, line in itertools.islice(io.open_lines(path), half)]
        langs += [lang_id] * half
    order = np.stack([np.arange(half), np.arange(half) + half], 1).ravel()  # alternate en, fr
    lines = [(texts[i], langs[i]) for i in order]
    ids = np.ones((len(lines), SEQ), np.int32)
    for row, (text, _) in enumerate(lines):
        b = np.frombuffer(text.encode()[: SEQ - 2], np.uint8).astype(np.int32) + 5
        ids[row, : len(b) + 2] = np.concatenate([[0], b, [2]])
    example = np.arange(len(lines))[:, None]
    masked = (hashing.uniform(7, example, np.arange(SEQ)[None, :]) < 0.15) & (ids > 4)
    out = []
    for b in range(count):
        rows = slice(b * batch_size, (b + 1) * batch_size)
        out.append({
            "input_ids": np.where(masked[rows], 4, ids[rows]),
            "targets": np.where(masked[rows], ids[rows], 0),
            "loss_mask": masked[rows].astype(np.float32),
            "attention_mask": (ids[rows] != 1).astype(np.int32),
            "lang_id": np.array([lang for _, lang in lines[rows]], np.int32),
        })
    return out


def opt_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        learning_rate=1e-2, warmup_steps=1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01, clip_norm=1.0))


def build(mesh_shape, dropout: float = 0.1, devices=None):
    mesh = partitioning.make_mesh(ml_collections.ConfigDict({"shape": mesh_shape}), devices)
    rules = partitioning.logical_rules(RULES)
    tx = optimizer.make_optimizer(opt_config(), total_steps=10)
    created = state_lib.create_train_state(
        lambda rngs: StandInMLM(rngs=rngs, dropout=dropout), tx, mesh, rules, seed=0)
    return mesh, rules, tx, created


def run_steps(built, batches, accum: int = 1, metric: str = "loss") -> list[float]:
    mesh, rules, tx, created = built
    schedule = optimizer.learning_rate_schedule(opt_config(), 10)
    step = steps.make_train_step(created.model_def, tx, schedule, mesh=mesh,
                                 state_shardings=created.shardings, grad_accum_steps=accum)
    state = jax.tree.map(jnp.copy, created.state)  # the step donates its input
    losses = []
    with partitioning.sharding_context(mesh, rules):
        for batch in batches:
            state, metrics = step(state, partitioning.global_batch(batch, mesh))
            losses.append(float(metrics[metric]))
    return losses


MESH_SHAPES = [(8, 1, 1), (2, 4, 1), (2, 2, 2)]


@pytest.fixture(scope="module")
def built_on():
    """One state per mesh shape, shared by the sharding and the loss tests (compiles dominate test time)."""
    cache = {}

    def get(shape):
        if shape not in cache:
            cache[shape] = build(shape)
        return cache[shape]

    return get


@pytest.mark.parametrize(
    "shape, devices, expected",
    [((-1, 1, 1), 8, (8, 1, 1)), ((2, -1, 1), 8, (2, 4, 1)), ((2, 2, -1), 8, (2, 2, 2)), ((1, 1, 1), 1, (1, 1, 1))],
)
def test_mesh_shape_resolves_minus_one(shape, devices, expected):
    assert partitioning.resolve_mesh_shape(shape, devices) == expected


@pytest.mark.parametrize("shape", [(3, -1, 1), (2, 2, 1), (-1, -1, 1), (2, 2), (0, -1, 1), (16, 1, 1)])
def test_mesh_that_does_not_divide_devices_is_config_error(shape):
    with pytest.raises(ConfigError, match="mesh.shape"):
        partitioning.make_mesh(ml_collections.ConfigDict({"shape": shape}))


def test_unknown_mesh_axis_in_rules_is_config_error():
    with pytest.raises(ConfigError, match="mesh.rules.mlp"):
        partitioning.logical_rules({"mlp": "model"})


EXPECTED_SPECS = {
    "embedding": P("tensor", "fsdp"),
    "wi": P(None, "fsdp", "tensor"),
    "wo": P(None, "tensor", "fsdp"),
    "bias": P("tensor"),
    "norm": {"scale": P("fsdp"), "bias": P("fsdp")},
}


@pytest.mark.parametrize("mesh_shape", MESH_SHAPES)
def test_params_and_optimizer_state_land_with_intended_shardings(mesh_shape, built_on):
    mesh, _, _, created = built_on(mesh_shape)
    expected = jax.tree.map(lambda spec: NamedSharding(mesh, spec), EXPECTED_SPECS,
                            is_leaf=lambda x: isinstance(x, P))
    adam = created.state.opt_state[1][0]
    for tree in (created.state.params, adam.mu, adam.nu):
        got = jax.tree.map(lambda x: x.sharding, tree)
        for (path, g), e in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(expected), strict=True):
            assert g.is_equivalent_to(e, 3), (jax.tree_util.keystr(path), g.spec, e.spec)
    # Every device holds only its shard of the embedding (no full copy anywhere).
    emb = created.state.params["embedding"]
    rows = VOCAB // mesh.shape["tensor"]
    cols = 16 // mesh.shape["fsdp"]
    assert {s.data.shape for s in emb.addressable_shards} == {(rows, cols)}
    assert adam.count.sharding.is_fully_replicated
    assert created.state.step.sharding.is_fully_replicated


def test_first_losses_agree_across_mesh_shapes(data_dir, built_on):
    batches = real_batches(data_dir, batch_size=16, count=3)
    losses = {shape: run_steps(built_on(shape), batches) for shape in MESH_SHAPES}
    reference = losses[(8, 1, 1)]
    assert reference[0] > reference[2]  # it trains
    for shape, got in losses.items():
        np.testing.assert_allclose(got, reference, rtol=2e-5, err_msg=str(shape))


def test_gradient_accumulation_matches_one_big_step(data_dir):
    """Token-weighted accumulation over 4 strided microbatches = one step on the whole batch (no dropout)."""
    batches = real_batches(data_dir, batch_size=16, count=3)
    built = build((2, 1, 1), dropout=0.0, devices=jax.devices()[:2])
    np.testing.assert_allclose(run_steps(built, batches, accum=4), run_steps(built, batches, accum=1), rtol=2e-5)
    # The gradient's scale too (AdamW after clipping barely sees it): one step divides inside the backward pass.
    norms = [run_steps(built, batches, accum=a, metric="grad_norm") for a in (4, 1)]
    np.testing.assert_allclose(*norms, rtol=2e-5)


def test_checkpoint_restores_onto_another_mesh(built_on, tmp_path):
    """Saved on (8,1,1), restored onto (2,2,2): values equal, every leaf in the new mesh's intended sharding."""
    _, _, _, saved = built_on((8, 1, 1))
    _, _, _, target = built_on((2, 2, 2))
    ckpt = checkpointing.Checkpointer(tmp_path, max_to_keep=1)
    ckpt.save(7, saved.state, {"position": 112})
    ckpt.wait()
    restored, data_state = ckpt.restore(7, state_lib.abstract_with_shardings(target.state, target.shardings))
    ckpt.close()
    assert data_state == {"position": 112}
    for got, want, sharding in zip(jax.tree.leaves(restored), jax.tree.leaves(saved.state),
                                   jax.tree.leaves(target.shardings), strict=True):
        assert got.sharding.is_equivalent_to(sharding, got.ndim)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
