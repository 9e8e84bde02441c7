"""The step's floor: its matmuls and its optimizer update, each timed alone.

`bench train` reports the step's FLOP/s against the best fp32 2048³ matmul. That ratio mixes three losses: the
matmuls themselves running below the 2048³ rate because their shapes (thin, transposed operands) suit the
library less; the optimizer update, which is memory-bound and scales with the parameters, not the batch; and
everything else (normalisation, softmax, GELU, dropout, gathers). This module measures the first two.
`matmul_floor` walks the step's jaxpr (into jit, scan, remat and custom-VJP bodies; a `scan` body counts
`length` times), collects every `dot_general` with its operand shapes and dimension numbers, and times each
distinct one as a jitted dot on its own, on this machine, in this run; `update_seconds` times the optimizer
update alone on the step's own state. Their sum is the step's floor; `bench train` reports the fraction of the
2048³ peak the step would reach if it took only that long: its ceiling with these matmul kernels and this
optimizer.
"""

from __future__ import annotations

import collections
import functools
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xlt_jax.bench.timing import timed_calls


@dataclass(frozen=True)
class Dot:
    """One `dot_general` signature: operand shapes and dtypes, dimension numbers, accumulation type."""

    lhs: tuple[int, ...]
    rhs: tuple[int, ...]
    dtype: str
    dimension_numbers: tuple
    preferred: str | None

    @property
    def flops(self) -> int:
        (lhs_contract, _), _ = self.dimension_numbers
        contracted = int(np.prod([self.lhs[d] for d in lhs_contract]))
        return 2 * contracted * int(np.prod(self.output_shape))

    @property
    def output_shape(self) -> tuple[int, ...]:
        (lc, rc), (lb, rb) = self.dimension_numbers
        free_l = [s for d, s in enumerate(self.lhs) if d not in lc and d not in lb]
        free_r = [s for d, s in enumerate(self.rhs) if d not in rc and d not in rb]
        return tuple(self.lhs[d] for d in lb) + tuple(free_l) + tuple(free_r)

    def describe(self) -> str:
        (lc, rc), (lb, rb) = self.dimension_numbers
        batch = f" batch {list(lb)}x{list(rb)}" if lb else ""
        return f"{list(self.lhs)} . {list(self.rhs)} contract {list(lc)}x{list(rc)}{batch}"


def _sub_jaxprs(params: dict[str, Any]) -> Iterator[jax.extend.core.Jaxpr]:
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def collect_dots(
    jaxpr: jax.extend.core.Jaxpr,
    times: int = 1,
    out: collections.Counter | None = None,
    branch: Callable[[int], int | None] | None = None,
) -> collections.Counter:
    """Dot -> how many times one call of `jaxpr` runs it (a scan body `length` times; a `while` body once, as
    its trip count is not static). Of a `cond` (or switch) with n branches, the branch `branch(n)` names when
    the caller knows which one runs (the head's row tier for a given batch), else each branch once, an upper
    bound."""
    out = collections.Counter() if out is None else out
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            lhs, rhs = (v.aval for v in eqn.invars)
            preferred = eqn.params.get("preferred_element_type")
            dot = Dot(tuple(lhs.shape), tuple(rhs.shape), str(lhs.dtype), eqn.params["dimension_numbers"],
                      None if preferred is None else str(np.dtype(preferred)))  # fmt: skip
            out[dot] += times
            continue
        repeat = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        subs = list(_sub_jaxprs(eqn.params))
        taken = branch(len(subs)) if branch is not None and eqn.primitive.name == "cond" else None
        for sub in subs if taken is None else subs[taken : taken + 1]:
            collect_dots(sub, times * repeat, out, branch)
    return out


def time_dot(dot: Dot, repeats: int = 7) -> float:
    """Median seconds of `dot` alone, jitted, on fresh random operands (after one warm-up call)."""
    k1, k2 = jax.random.split(jax.random.key(0))
    a = jax.random.normal(k1, dot.lhs, jnp.dtype(dot.dtype))
    b = jax.random.normal(k2, dot.rhs, jnp.dtype(dot.dtype))
    preferred = None if dot.preferred is None else jnp.dtype(dot.preferred)
    fn = jax.jit(lambda a, b: jax.lax.dot_general(a, b, dot.dimension_numbers, preferred_element_type=preferred))
    fn(a, b).block_until_ready()
    return statistics.median(timed_calls(lambda: fn(a, b).block_until_ready(), repeats))


def update_seconds(tx: Any, params: Any, opt_state: Any, repeats: int = 7) -> float:
    """Median seconds of `tx`'s update plus `optax.apply_updates` alone, on `params` and `opt_state` (copied,
    so the caller's state is untouched), with a gradient the size of the parameters."""
    grads = jax.tree.map(lambda p: p * 1e-3, params)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def update(params: Any, opt_state: Any, grads: Any) -> tuple[Any, Any]:
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    state = list(jax.tree.map(jnp.copy, (params, opt_state)))

    def run() -> None:
        state[0], state[1] = update(state[0], state[1], grads)
        jax.block_until_ready(state[0])

    run()
    return statistics.median(timed_calls(run, repeats))


def matmul_floor(
    step: Any, *args: Any, repeats: int = 7, top: int = 8, branch: Callable[[int], int | None] | None = None
) -> dict:
    """The matmul floor of `step(*args)` (call inside the step's sharding context): total seconds, FLOPs and
    the `top` dots by total time, each with its count, ms per call and GFLOP/s alone (`branch`: as in
    `collect_dots`)."""
    dots = collect_dots(jax.make_jaxpr(step)(*args).jaxpr, branch=branch)
    rows = []
    for dot, count in dots.items():
        seconds = time_dot(dot, repeats)
        rows.append({"dot": dot.describe(), "count": count, "ms": round(1e3 * seconds, 4),
                     "gflops_per_s": round(dot.flops / seconds / 1e9, 2), "total_s": seconds * count,
                     "flops": dot.flops * count})  # fmt: skip
    rows.sort(key=lambda r: -r["total_s"])
    return {
        "floor_s": sum(r["total_s"] for r in rows),
        "matmul_flops": sum(r["flops"] for r in rows),
        "dots": sum(dots.values()),
        "distinct_dots": len(dots),
        "top": rows[:top],
    }
