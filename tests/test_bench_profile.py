"""`python -m xlt_jax.bench profile`: traced XLA operations are found in the compiled module and grouped."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from xlt_jax.bench import profile
from xlt_jax.experiments import readme


def test_traced_operations_are_matched_to_the_compiled_module_and_grouped(tmp_path):
    f = jax.jit(lambda a, b: jnp.tanh(a @ b) * 2.0)
    a = jnp.ones((256, 256), jnp.float32)
    known = profile.instructions(f.lower(a, a).compile().as_text())
    with jax.profiler.trace(str(tmp_path), create_perfetto_trace=True):
        for _ in range(3):
            f(a, a).block_until_ready()
    totals = profile.op_times(tmp_path, known)
    groups = {known[name]["group"] for name in totals}
    assert {"matmul", "loop fusion"} <= groups  # the dot (or its library fusion) and the fused tanh * 2
    matmul = [name for name in totals if known[name]["group"] == "matmul"]
    assert all(totals[name] > 0 for name in matmul)
    assert any("dot_general" in known[name]["op_name"] for name in matmul)  # the source of the op is kept

    summary = profile.summarize(totals, known, steps=3, top=5)
    assert sum(summary["groups"].values()) == pytest.approx(1.0, abs=1e-3)
    assert summary["top"][0]["ms_per_step"] == pytest.approx(max(totals.values()) / 3e3, rel=1e-3)
    record = {**summary, "config": "tiny", "layers": "scan", "dropout": 0.1, "step_s": 0.01, "machine": "CPU",
              "date": "today", "commit": "abc", "command": "python -m xlt_jax.bench profile"}
    table = readme.performance_section_of({"profile": record})
    assert "**Where the step's time goes**" in table and "matmul" in table
    assert f"| {100 * summary['top'][0]['share']:.1f}% |" in table


def test_operation_groups_follow_the_opcode_and_the_library_fusion_kind():
    ynn = 'backend_config={"fusion_config":{"kind":"__ynn_fusion"}}'
    assert profile.group_of("fusion", "ynn_fusion.3", ynn) == "matmul"
    assert profile.group_of("dot", "dot.1", "") == "matmul"
    assert profile.group_of("fusion", "multiply_erf_fusion", "kind=kLoop") == "loop fusion"
    assert profile.group_of("fusion", "wrapped_broadcast.10", "kind=kLoop") == "data movement"
    assert profile.group_of("while", "while.3", "") == "control flow"
    assert profile.group_of("scatter", "scatter.1", "") == "gather/scatter"
