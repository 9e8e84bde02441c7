"""`python -m xlt_jax.bench tpu`: the real sharded pretraining step compiled for Cloud TPU topologies, here.

Ahead-of-time, as MaxText's `train_compile.py`: `jax.experimental.topologies` describes a TPU slice without
attaching to one, libtpu (extra `tpu`) compiles for it on this CPU, and XLA's memory analysis says whether the
step fits. Per topology: per-device bytes of arguments (parameters, optimizer slots, batch), outputs, temporaries
and generated code against the chip's HBM; FLOPs per step (analytic, and XLA's count of the compiled per-device
program, which counts a scanned layer body once); the largest global batch that fits (linear fit of the
compiled memory over two batch sizes, confirmed by a third compile); and the projected wall time of the
config's run at a stated MFU. A config that does not fit is reported with XLA's out-of-memory message.
Nothing runs on a TPU. Ends with one JSON line.

    python -m xlt_jax.bench tpu --topology v3-8,v4-8,v5e-8,v4-32 \
        [--config configs/pretrain/bilingual.py:lang=en,transform=inv] [--mfu 0.4]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import runpy
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from xlt_jax import provenance
from xlt_jax.models.platform import tracing_for

DEFAULT_CONFIG = "configs/pretrain/bilingual.py:lang=en,transform=inv"  # the paper's RoBERTa-8 run
GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Topology:
    """A Cloud TPU slice as `get_topology_desc` names it, with the public per-device HBM and bf16 peak."""

    topology_name: str
    chip_config_name: str  # "megacore" (v4/v5p: one device per chip) or "default"
    chips_per_host_bounds: tuple[int, int, int]
    hbm_bytes: int  # per JAX device
    peak_flops: float  # bf16 per JAX device


# HBM and peak per device from Cloud TPU's system-architecture pages: v3 16 GiB and 61.5 TFLOP/s per core
# (2 cores per chip, each a device); v4 32 GiB and 275 TFLOP/s per chip (megacore); v5e 16 GiB, 197 TFLOP/s;
# v5p 95 GiB, 459 TFLOP/s. Layouts follow MaxText's accelerator map.
TOPOLOGIES: dict[str, Topology] = {
    "v3-8": Topology("v3:2x2", "default", (2, 2, 1), 16 * GIB, 61.5e12),
    "v3-32": Topology("v3:4x4", "default", (2, 2, 1), 16 * GIB, 61.5e12),
    "v4-8": Topology("v4:2x2x1", "megacore", (2, 2, 1), 32 * GIB, 275e12),
    "v4-32": Topology("v4:2x2x4", "megacore", (2, 2, 1), 32 * GIB, 275e12),
    "v5e-8": Topology("v5e:2x4", "default", (2, 4, 1), 16 * GIB, 197e12),
    "v5e-256": Topology("v5e:16x16", "default", (2, 2, 1), 16 * GIB, 197e12),
    "v5p-8": Topology("v5:2x2x1", "megacore", (2, 2, 1), 95 * GIB, 459e12),
}
DEFAULT_TOPOLOGIES = "v3-8,v4-8,v5e-8,v4-32"


def topology_devices(name: str) -> tuple[list, Topology]:
    """The (unattached) devices of a named slice."""
    from jax.experimental.topologies import get_topology_desc

    if name not in TOPOLOGIES:
        raise SystemExit(f"unknown topology {name!r}; known: {', '.join(TOPOLOGIES)}")
    t = TOPOLOGIES[name]
    desc = get_topology_desc(
        platform="tpu", topology_name=t.topology_name, chip_config_name=t.chip_config_name,
        chips_per_host_bounds=t.chips_per_host_bounds, num_slices=1,
    )
    return list(desc.devices), t


def load_config(spec: str) -> ml_collections.ConfigDict:
    path, _, arg = spec.partition(":")
    return runpy.run_path(path)["get_config"](arg or None)


@dataclasses.dataclass
class CompiledStep:
    batch: int
    seconds: float
    memory: dict[str, int] | None  # per device
    xla_flops: float | None  # per device, as XLA counts the compiled program
    error: str | None = None

    @property
    def total_bytes(self) -> int:
        m = self.memory or {}
        return m.get("argument", 0) + m.get("output", 0) - m.get("alias", 0) + m.get("temp", 0) + m.get("code", 0)


class StepCompiler:
    """Compiles one config's train step on one topology for any global batch size."""

    def __init__(self, config: ml_collections.ConfigDict, devices: list):
        from xlt_jax.data.pretrain import pipeline
        from xlt_jax.models import build_model
        from xlt_jax.models.attention import resolve_attention_impl
        from xlt_jax.models.presets import resolve_model_config
        from xlt_jax.models.stack import resolve_scan_unroll
        from xlt_jax.training import optimizer, partitioning, steps
        from xlt_jax.training import state as state_lib

        self.config, self.platform = config, devices[0].platform
        self.partitioning, self.pipeline = partitioning, pipeline
        self.mesh = partitioning.make_mesh(config.mesh, devices)
        self.rules = partitioning.logical_rules(config.mesh.rules)
        self.layout = pipeline.vocab_layout(config.data, int(config.tokenizer.vocab_size))
        total = int(config.train.steps)
        tx = optimizer.make_optimizer(config.optimizer, total)
        vocab = self.layout.size
        self.created = state_lib.abstract_train_state(
            lambda rngs: build_model(config.model, vocab, rngs=rngs), tx, self.mesh, self.rules, int(config.seed)
        )
        self.step = steps.make_train_step(
            self.created.model_def, tx, optimizer.learning_rate_schedule(config.optimizer, total), mesh=self.mesh,
            state_shardings=self.created.shardings, grad_accum_steps=int(config.train.grad_accum_steps),
        )
        self.param_count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.created.state.params))
        # The models' automatic choices as the target chip makes them (`lower` traces for it, not for this host).
        spec = resolve_model_config(config.model, vocab)
        self.choices = {
            "attention_impl": resolve_attention_impl(spec.attention_impl, self.platform),
            "scan_unroll": resolve_scan_unroll(
                spec.scan_unroll, max(spec.num_layers, spec.num_decoder_layers), self.platform
            ),
        }

    @property
    def batch_granularity(self) -> int:
        return self.partitioning.num_batch_shards(self.mesh) * int(self.config.train.grad_accum_steps)

    def abstract_batch(self, batch: int) -> dict[str, jax.ShapeDtypeStruct]:
        example = self.pipeline.example_batch(self.config.data, self.layout, batch)
        example.pop("mlm_overflow", None)
        return {
            k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=self.partitioning.batch_sharding(self.mesh, v.ndim))
            for k, v in example.items()
        }

    def lower(self, batch: int) -> jax.stages.Lowered:
        """The step for a global `batch`, traced for the target chip."""
        with tracing_for(self.platform), self.partitioning.sharding_context(self.mesh, self.rules):
            return self.step.lower(self.created.state, self.abstract_batch(batch))

    def compile(self, batch: int) -> CompiledStep:
        t0 = time.perf_counter()
        try:
            compiled = self.lower(batch).compile()
        except Exception as e:  # noqa: BLE001 - XLA reports out-of-memory as a runtime error
            message = str(e)
            if "RESOURCE_EXHAUSTED" not in message and "memory" not in message.lower():
                raise
            return CompiledStep(batch, time.perf_counter() - t0, None, None, error=_first_lines(message))
        m = compiled.memory_analysis()
        memory = {
            "argument": int(m.argument_size_in_bytes), "output": int(m.output_size_in_bytes),
            "alias": int(m.alias_size_in_bytes), "temp": int(m.temp_size_in_bytes),
            "code": int(m.generated_code_size_in_bytes),
        }  # fmt: skip
        cost = compiled.cost_analysis() or {}
        cost = cost[0] if isinstance(cost, list) else cost
        return CompiledStep(batch, time.perf_counter() - t0, memory, float(cost.get("flops", 0.0)) or None)


def _first_lines(message: str, n: int = 3) -> str:
    return " | ".join(line.strip() for line in message.strip().splitlines()[:n])


def largest_batch(compiler: StepCompiler, first: CompiledStep, hbm: int, limit: int) -> tuple[int, list]:
    """Largest multiple of the batch granularity whose step fits in `hbm`: the per-device bytes are linear in
    the batch (parameters and slots fixed, activations and batch proportional), so two compiles give the line
    and a third confirms its prediction (stepping down if the prediction does not fit)."""
    g = compiler.batch_granularity
    probes = [first]
    second = compiler.compile(max(g, (first.batch // 2) // g * g) if first.batch > g else first.batch * 2)
    probes.append(second)
    if first.memory is None or second.memory is None or second.batch == first.batch:
        return (first.batch if first.error is None else 0), probes
    slope = (first.total_bytes - second.total_bytes) / (first.batch - second.batch)
    fixed = first.total_bytes - slope * first.batch
    guess = int((hbm - fixed) / slope) // g * g if slope > 0 else limit
    guess = max(g, min(guess, limit))
    for _ in range(3):
        probe = compiler.compile(guess)
        probes.append(probe)
        if probe.error is None and probe.total_bytes <= hbm:
            return guess, probes
        guess = max(g, int(guess * 0.9) // g * g)
    return 0, probes


def bench_topology(name: str, config: ml_collections.ConfigDict, args: argparse.Namespace) -> dict[str, Any]:
    from xlt_jax.models import flops_per_example

    devices, topo = topology_devices(name)
    compiler = StepCompiler(config, devices)
    batch = int(config.data.global_batch_size)
    first = compiler.compile(batch)
    seq = int(config.data.seq_len)
    settings_p = compiler.pipeline._Settings.from_config(config.data).max_predictions or None
    target = 0
    if config.data.objective == "span":
        target = compiler.pipeline.span_corruption.random_spans_helper(
            seq, float(config.data.noise_density), float(config.data.mean_noise_span_length)
        )[1]
    flops_step = batch * flops_per_example(config.model, compiler.layout.size, seq, target, predicted=settings_p)
    n = len(devices)
    result: dict[str, Any] = {
        "devices": n, "hosts": len({d.process_index for d in devices}), "device_kind": devices[0].device_kind,
        "mesh": dict(zip(compiler.mesh.axis_names, compiler.mesh.devices.shape, strict=True)),
        "params": compiler.param_count, "global_batch": batch, "seq_len": seq, "compile_s": round(first.seconds, 1),
        "hbm_bytes_per_device": topo.hbm_bytes, "flops_per_step": flops_step,
        **compiler.choices,
    }  # fmt: skip
    if first.error is not None:
        result |= {"fits": False, "error": first.error}
    else:
        result |= {
            "memory_per_device": first.memory, "total_bytes_per_device": first.total_bytes,
            "fits": first.total_bytes <= topo.hbm_bytes, "xla_flops_per_device": first.xla_flops,
        }  # fmt: skip
    steps = int(config.train.steps)
    step_s = flops_step / (n * topo.peak_flops * args.mfu)
    result |= {"mfu": args.mfu, "projected_step_s": step_s, "projected_run_hours": steps * step_s / 3600}
    if args.search_batch:
        best, probes = largest_batch(compiler, first, topo.hbm_bytes, args.max_batch)
        result["largest_global_batch"] = best
        result["batch_probes"] = [
            {"batch": p.batch, "total_bytes": p.total_bytes if p.memory else None, "error": p.error} for p in probes
        ]
    return result


def describe(name: str, r: dict[str, Any]) -> str:
    head = (
        f"{name:8s} {r['devices']:3d} x {r['device_kind']} ({r['hosts']} host(s)), mesh {r['mesh']}, "
        f"{r['params'] / 1e6:.1f}M params, batch {r['global_batch']} x {r['seq_len']}, compile {r['compile_s']} s"
    )
    if r.get("memory_per_device") is None:
        return f"{head}\n    DOES NOT FIT: {r.get('error')}"
    m = r["memory_per_device"]
    lines = [
        head,
        f"    per device: arguments {m['argument'] / GIB:.2f} GiB (params + optimizer + batch), temporaries "
        f"{m['temp'] / GIB:.2f} GiB, outputs {m['output'] / GIB:.2f} GiB (aliased {m['alias'] / GIB:.2f}), code "
        f"{m['code'] / GIB:.3f} GiB -> total {r['total_bytes_per_device'] / GIB:.2f} of "
        f"{r['hbm_bytes_per_device'] / GIB:.0f} GiB HBM: {'fits' if r['fits'] else 'DOES NOT FIT'}",
        f"    FLOPs/step {r['flops_per_step']:.3e} analytic (XLA, per device, scanned body once: "
        f"{(r['xla_flops_per_device'] or 0):.3e}); at {100 * r['mfu']:.0f}% MFU: {r['projected_step_s'] * 1e3:.1f} "
        f"ms/step, {r['projected_run_hours']:.1f} h for the config's {r.get('steps', '')} steps",
    ]
    if "largest_global_batch" in r:
        lines.append(f"    largest global batch that fits: {r['largest_global_batch']}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.bench tpu", description=__doc__)
    parser.add_argument("--topology", default=DEFAULT_TOPOLOGIES, help=f"comma-separated, from {list(TOPOLOGIES)}")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="pretraining config FILE:ARGS")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation for the projection")
    parser.add_argument("--search-batch", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--max-batch", type=int, default=4096)
    parser.add_argument("--mesh", default="", help="override config.mesh.shape, e.g. '-1,1,1'")
    args = parser.parse_args(argv)
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")  # no metadata server here: describe, don't attach
    config = load_config(args.config)
    if args.mesh:
        config.mesh.shape = tuple(int(x) for x in args.mesh.split(","))
    figures: dict[str, Any] = {**provenance.record(), "bench": "tpu", "config": args.config, "jax": jax.__version__}
    print(f"train step of {args.config} ({config.train.steps} steps) compiled ahead of time for Cloud TPU")
    for name in [t for t in args.topology.split(",") if t]:
        r = bench_topology(name, config, args)
        r["steps"] = int(config.train.steps)
        figures[name] = r
        print(describe(name, r), flush=True)
    print(json.dumps(figures))
