"""The pretraining step compiled ahead of time for a Cloud TPU slice on this CPU (extra `tpu`: libtpu).

Nothing runs on a TPU: `jax.experimental.topologies` describes a v5e-8 and XLA's TPU compiler reports the
per-device memory of the real sharded step, which must account for the parameters and optimizer slots.
"""

from __future__ import annotations

import argparse
import os
import runpy
from pathlib import Path

import numpy as np
import pytest
from conftest import require_extra

require_extra("libtpu", "tpu")
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")

from xlt_jax.bench import tpu  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "pretrain"


def smoke_config(batch: int):
    config = runpy.run_path(str(CONFIGS / "bilingual.py"))["get_config"]("lang=en,transform=translit,smoke")
    config.data.global_batch_size = batch
    return config


def test_smoke_step_compiles_for_v5e_8_and_its_memory_accounts_for_the_state():
    config = smoke_config(batch=16)
    args = argparse.Namespace(mfu=0.4, search_batch=False, max_batch=0)
    r = tpu.bench_topology("v5e-8", config, args)
    assert r["devices"] == 8 and r["device_kind"].startswith("TPU v5") and r["fits"]
    # "auto" resolves for the target chip, not for this CPU host: the plan is the step a TPU would run.
    assert (config.model.attention_impl, r["attention_impl"]) == ("auto", "xla")
    assert (config.model.scan_unroll, r["scan_unroll"]) == (0, 1)  # auto: the rolled loop on TPU
    # Data parallel (8, 1, 1): every device holds all parameters and both AdamW slots in float32, plus its
    # 2 rows of the batch; TPU tiling pads small minor dimensions, so allow some slack above.
    state_bytes = 3 * 4 * r["params"]
    argument = r["memory_per_device"]["argument"]
    assert state_bytes < argument < 1.6 * state_bytes + 64 * 1024, (argument, state_bytes)
    # The donated state is aliased: outputs do not need a second copy of it.
    assert r["memory_per_device"]["alias"] >= state_bytes
    assert r["total_bytes_per_device"] < r["hbm_bytes_per_device"]
    vocab = 2 * config.tokenizer.vocab_size  # translit doubles the vocabulary
    assert r["params"] > vocab * 64  # the (doubled) embedding table is in the compiled state
    assert r["projected_run_hours"] == pytest.approx(
        config.train.steps * r["flops_per_step"] / (8 * tpu.TOPOLOGIES["v5e-8"].peak_flops * 0.4) / 3600
    )


@pytest.mark.slow  # a second TPU compile (~20-60 s here): `make test-slow`
def test_the_plan_is_traced_for_the_chip_not_for_this_host():
    """CPU-only choices stay out of a TPU plan: no dropout-mask conditional (XLA:CPU's fusion boundary, see
    models/dropout.py) and no switch over the head's row tiers (`model.prediction_tiers` auto); the same step
    traced for this host's 8 CPU devices has both."""
    import jax

    config = smoke_config(batch=16)
    assert config.model.dropout > 0
    plans = {}
    for name, devices in (("v5e-8", tpu.topology_devices("v5e-8")[0]), ("cpu", jax.devices()[:8])):
        plans[name] = tpu.StepCompiler(config, devices).lower(16).as_text()
    conditionals = ("stablehlo.case", "stablehlo.if")
    assert not any(c in plans["v5e-8"] for c in conditionals)
    assert any(c in plans["cpu"] for c in conditionals)


def test_a_step_that_does_not_fit_is_reported_with_xlas_message():
    config = smoke_config(batch=1 << 19)  # ~0.5M sequences: far beyond 16 GiB per device
    r = tpu.bench_topology("v5e-8", config, argparse.Namespace(mfu=0.4, search_batch=False, max_batch=0))
    assert r["fits"] is False
    message = r.get("error") or ""
    assert message or r["total_bytes_per_device"] > r["hbm_bytes_per_device"]
    assert "DOES NOT FIT" in tpu.describe("v5e-8", r | {"steps": 1})
    assert np.isfinite(r["flops_per_step"])
