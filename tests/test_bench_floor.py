"""`xlt_jax.bench.floor`: every matmul of a step is found (through jit, scan, custom VJPs, the backward pass)
and counted as often as it runs; the optimizer update is timed on a copy of the state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xlt_jax.bench import floor
from xlt_jax.models.layers import tied_logits

N, K, LAYERS, V = 32, 16, 3, 24


def _loss(ws, x, emb, bias):
    def layer(h, w):
        return jnp.tanh(h @ w), None

    h, _ = jax.lax.scan(layer, x, ws)  # LAYERS forward dots
    return jnp.sum(tied_logits(h, emb, bias) ** 2)  # one forward dot, two backward (custom VJP)


def _args():
    k = jax.random.split(jax.random.key(0), 3)
    return (jax.random.normal(k[0], (LAYERS, K, K)), jax.random.normal(k[1], (N, K)),
            jax.random.normal(k[2], (V, K)), jnp.zeros((V,)))  # fmt: skip


def test_dots_of_a_scanned_backward_pass_are_counted_per_layer():
    grad = jax.jit(jax.grad(_loss, argnums=(0, 2)))
    dots = floor.collect_dots(jax.make_jaxpr(grad)(*_args()).jaxpr)
    layer_dots = {d: c for d, c in dots.items() if (K, K) in (d.lhs, d.rhs, d.output_shape)}
    # forward h @ w, backward dX and dW: three signatures, each once per scanned layer
    assert sorted(layer_dots.values()) == [LAYERS] * 3
    assert sum(d.flops * c for d, c in layer_dots.items()) == 3 * LAYERS * 2 * N * K * K
    head = {d: c for d, c in dots.items() if V in d.lhs + d.rhs and len(d.rhs) == 2 and d.rhs != (V,)}
    # logits, d_x, d_embedding, and d_bias as a ones-vector product (the custom VJP's four dots)
    assert sum(d.flops * c for d, c in head.items()) == 3 * 2 * N * K * V + 2 * N * V


def test_batched_dot_shape_and_flops_match_einsum():
    dot = floor.Dot((4, 8, 2, 16), (4, 2, 16, 8), "float32", (((3,), (2,)), ((0, 2), (0, 1))), None)
    want = jnp.einsum("bqhd,bhdk->bhqk", jnp.ones(dot.lhs), jnp.ones(dot.rhs)).shape
    assert dot.output_shape == want
    assert dot.flops == 2 * 16 * int(np.prod(want))


def test_matmul_floor_times_every_dot_and_sums_their_flops():
    r = floor.matmul_floor(jax.jit(_loss), *_args(), repeats=2)
    assert r["dots"] == LAYERS + 1 and r["distinct_dots"] == 2
    assert r["matmul_flops"] == LAYERS * 2 * N * K * K + 2 * N * K * V
    assert len(r["top"]) == 2 and all(row["total_s"] > 0 for row in r["top"])  # tiny dots: GFLOP/s may round to 0
    assert r["floor_s"] == sum(row["total_s"] for row in r["top"])
    assert sorted(row["count"] for row in r["top"]) == [1, LAYERS]


def test_update_is_timed_on_a_copy_of_the_state():
    params = {"w": jnp.ones((64, 64))}
    tx = optax.adamw(1e-2)
    opt_state = tx.init(params)
    seconds = floor.update_seconds(tx, params, opt_state, repeats=2)
    assert seconds > 0
    np.testing.assert_array_equal(params["w"], 1.0)  # not donated, not updated
    assert int(opt_state[0].count) == 0


def test_a_switch_counts_the_branch_the_caller_names_or_every_branch():
    def f(x, index):
        return jax.lax.switch(index, [lambda x, n=n: x[:n].T @ x[:n] for n in (8, 16, 32)], x)  # [K, K] each

    jaxpr = jax.make_jaxpr(f)(jnp.ones((32, K)), 0).jaxpr
    rows = lambda dots: sorted(d.lhs[d.dimension_numbers[0][0][0]] for d in dots.elements())  # noqa: E731
    assert rows(floor.collect_dots(jaxpr)) == [8, 16, 32]  # unknown: an upper bound
    assert rows(floor.collect_dots(jaxpr, branch=lambda n: 1 if n == 3 else None)) == [16]
    assert rows(floor.collect_dots(jaxpr, branch=lambda n: None)) == [8, 16, 32]
