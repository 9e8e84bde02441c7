"""`python -m xlt_jax.bench train`: compile time, step time, tokens/s and FLOP/s of the pretraining step.

For each RoBERTa preset (default `tiny` and `roberta8`, seq 128) the real jitted train step (AdamW, clipping,
dropout, donated state) runs on one device in fp32; this CPU has no bf16 units (ENV_NOTES §7). Achieved
FLOP/s are the model's analytic training FLOPs (`xlt_jax.models.flops_per_example`, which counts every
scanned layer) over the median step time, reported as a fraction of this machine's fp32 matmul peak measured
in the same run. As a cross-check the FLOPs XLA counts for an unrolled (no-scan) variant of the same step
are printed too: `cost_analysis` counts a scanned layer body only once (ENV_NOTES §7). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable

import jax
import jax.monitoring
import jax.numpy as jnp
import ml_collections
import numpy as np

from xlt_jax import provenance
from xlt_jax.bench import floor as floor_lib
from xlt_jax.bench.timing import timed_calls
from xlt_jax.data.pretrain import mlm
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.models import build_model, default_model_config, flops_per_example, prediction_tiers, resolve_model_config
from xlt_jax.models.stack import resolve_scan_unroll
from xlt_jax.training import compile_cache, optimizer, partitioning, steps
from xlt_jax.training import state as state_lib

RULES = {
    "batch": ("data", "fsdp"), "length": None, "embed": "fsdp", "heads": "tensor", "kv": None,
    "mlp": "tensor", "vocab": "tensor", "layers": None, "relpos_buckets": None,
}  # fmt: skip
OPTIMIZER = ml_collections.ConfigDict(dict(
    learning_rate=1e-4, warmup_steps=10, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=1.0
))  # fmt: skip


_COMPILE_EVENTS: list[str] = []


@functools.cache
def _matmul_operands(device: jax.Device, n: int) -> tuple[jax.Array, jax.Array]:
    a = jax.device_put(jax.random.normal(jax.random.key(0), (n, n), jnp.float32), device)
    b = jax.device_put(jax.random.normal(jax.random.key(1), (n, n), jnp.float32), device)
    return a, b


def matmul_peak(device: jax.Device, n: int = 2048, repeats: int = 8) -> tuple[float, float]:
    """(best, median) fp32 FLOP/s of an n×n×n matmul on `device`, after a warm-up call."""
    a, b = _matmul_operands(device, n)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    times = timed_calls(lambda: dot(a, b).block_until_ready(), repeats)
    return 2.0 * n**3 / min(times), 2.0 * n**3 / statistics.median(times)


def stream_bandwidth(device: jax.Device, mib: int = 256, repeats: int = 5) -> float:
    """Best bytes/s of one elementwise pass (read `mib` MiB of fp32, write as much) on `device`.

    Why: the fraction of the matmul peak a step reaches depends on the machine's balance as well as on the
    code. The memory-bound passes (softmax, dropout, layer norm) cost the same bytes on two machines whose
    matmul peaks differ twofold, so the same step reads a lower fraction on the faster one; peak over
    bandwidth (FLOP per byte) is that balance.
    """
    x = jax.device_put(jnp.ones(mib * 2**20 // 4, jnp.float32), device)
    scale_shift = jax.jit(lambda a: a * 1.5 + 0.5)
    scale_shift(x).block_until_ready()
    times = timed_calls(lambda: scale_shift(x).block_until_ready(), repeats)
    return 2.0 * x.nbytes / min(times)


def synthetic_batch(
    batch: int, seq_len: int, vocab: int, num_langs: int, max_predictions: int
) -> dict[str, np.ndarray]:
    """An MLM batch from the pipeline's own masking (15% predicted; `max_predictions` gathered rows per
    sequence, 0 = dense targets); speed does not depend on the ids."""
    rng = np.random.default_rng(0)
    ids = rng.integers(5, vocab, size=(batch, seq_len), dtype=np.int32)
    out = mlm.mask_tokens(
        ids, layout=VocabLayout(vocab), seed=0, example_ids=np.arange(batch), draws=np.zeros(batch),
        max_predictions=max_predictions,
    )
    out.pop("mlm_overflow", None)
    return out | {"lang_id": (np.arange(batch) % num_langs).astype(np.int32)}


def model_config(preset: str, seq_len: int, *, scan: bool) -> ml_collections.ConfigDict:
    config = default_model_config("roberta", preset)
    config.dtype = "float32"
    config.max_len = max(seq_len, 512)
    config.scan_layers = scan
    return config


def bench_model(preset: str, scan: bool, args: argparse.Namespace, mesh: jax.sharding.Mesh) -> dict:
    """Time the train step of `preset`; the matmul peak is measured right before and after every step."""
    rules = partitioning.logical_rules(RULES)
    tx = optimizer.make_optimizer(OPTIMIZER, 1000)
    schedule = optimizer.learning_rate_schedule(OPTIMIZER, 1000)
    config = model_config(preset, args.seq_len, scan=scan)
    spec = resolve_model_config(config, args.vocab)
    created = state_lib.create_train_state(
        lambda rngs: build_model(config, args.vocab, rngs=rngs), tx, mesh, rules, seed=0
    )
    step = steps.make_train_step(created.model_def, tx, schedule, mesh=mesh, state_shardings=created.shardings)
    predicted = mlm.auto_max_predictions(args.seq_len, 0.15) if args.max_predictions < 0 else args.max_predictions
    batch_np = synthetic_batch(args.batch, args.seq_len, args.vocab, config.num_langs, predicted)
    with partitioning.sharding_context(mesh, rules):
        batch = partitioning.global_batch(batch_np, mesh)
        t0 = time.perf_counter()
        lowered = step.lower(created.state, batch)
        lower_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _COMPILE_EVENTS.clear()
        lowered.compile()
        compile_s = time.perf_counter() - t0
        cache_hit = "/jax/compilation_cache/cache_hits" in _COMPILE_EVENTS
        state = created.state

        def one_step() -> None:
            nonlocal state
            state, metrics = step(state, batch)
            jax.block_until_ready(metrics["loss"])

        timed_calls(one_step, args.warmup)
        # Peak and step alternate, each step bracketed by two peak measurements: on a shared machine the load
        # changes over seconds, and the ratio of neighbouring measurements is what stays meaningful.
        device = mesh.devices.flat[0]
        peaks = [matmul_peak(device, repeats=2)[0]]
        times = []
        for _ in range(args.steps):
            times.extend(timed_calls(one_step, 1))
            peaks.append(matmul_peak(device, repeats=2)[0])
        hlo_flops = unrolled_hlo_flops(preset, args, mesh, rules, tx, schedule, batch)
        tier_count = prediction_tiers.resolve_count(spec.prediction_tiers, "cpu")  # as traced here
        branch = head_branch(batch_np, predicted, tier_count)
        floor = step_floor(step, state, batch, tx, branch) if args.floor else {}
    projected = None  # rows the head projects: the tier `model.prediction_tiers` picks for this batch
    if predicted:
        projected = prediction_tiers.projected_rows(batch_np["mlm_weights"], tier_count) / args.batch
    flops = flops_per_example(config, args.vocab, args.seq_len, predicted=predicted or None, projected=projected)
    flops *= args.batch
    fractions = [flops / t / max(peaks[i], peaks[i + 1]) for i, t in enumerate(times)]
    step_s = statistics.median(times)
    tokens = args.batch * args.seq_len
    if floor:  # the median fraction the step would reach if it took only its matmuls and optimizer update
        floor_s = floor["matmul_s"] + floor["update_s"]
        floor["ceiling_fraction_of_peak"] = round(statistics.median(fractions) * step_s / floor_s, 4)
    return {
        "layers": "scan" if scan else "unrolled",
        # Layers per scanned iteration as traced here (`model.scan_unroll` 0 = auto: all of them on CPU).
        "scan_unroll": resolve_scan_unroll(config.scan_unroll, spec.num_layers) if scan else None,
        "max_predictions_per_seq": predicted,
        # The last layer past attention on the predicted rows only (flops_per_step counts it that way).
        "last_layer_predicted_only": spec.last_layer_predicted_only,
        "prediction_tiers": tier_count,
        "projected_rows_per_seq": projected,
        "params": state_lib.parameter_count(state),
        "lower_s": round(lower_s, 3),
        "compile_s": round(compile_s, 3),
        "compile_cache_hit": cache_hit,
        "step_s": round(step_s, 4),
        "step_s_min": round(min(times), 4),
        "tokens_per_s": round(tokens / step_s, 1),
        "flops_per_step": flops,
        "hlo_flops_unrolled": hlo_flops,
        "flops_per_s": flops / step_s,
        "peak_flops_per_s": max(peaks),
        # Per step: achieved FLOP/s over the best matmul FLOP/s measured just before or after it.
        "fraction_of_peak": round(statistics.median(fractions), 4),
        "fraction_of_peak_best": round(max(fractions), 4),
        **floor,
    }


def head_branch(batch: dict, predicted: int, tier_count: int) -> Callable[[int], int | None] | None:
    """For the floor: the branch of the head's row-tier switch this batch takes (conds with as many branches
    as there are tiers; the dropout conds have no dots, so which of theirs is counted does not matter)."""
    if not predicted:
        return None
    tiers = prediction_tiers.tiers(predicted, tier_count)
    index = tiers.index(prediction_tiers.tier_for(batch["mlm_weights"], tiers))
    return lambda n: index if n == len(tiers) else None


def step_floor(
    step: Callable, state: state_lib.TrainState, batch: dict, tx: object, branch: Callable | None = None
) -> dict:
    """The step's matmuls and its optimizer update, each timed alone (`xlt_jax.bench.floor`)."""
    matmuls = floor_lib.matmul_floor(step, state, batch, branch=branch)
    return {
        "matmul_s": round(matmuls["floor_s"], 4),
        "matmul_flops": matmuls["matmul_flops"],
        "matmul_flops_per_s_alone": matmuls["matmul_flops"] / matmuls["floor_s"],
        "dots": matmuls["dots"],
        "update_s": round(floor_lib.update_seconds(tx, state.params, state.opt_state), 4),
        "top_dots": matmuls["top"],
    }


def unrolled_hlo_flops(preset, args, mesh, rules, tx, schedule, batch) -> float:
    """XLA's FLOP count for the same step with Python-loop layers (lowering only: no compile, no params)."""
    config = model_config(preset, args.seq_len, scan=False)
    created = state_lib.create_train_state(
        lambda rngs: build_model(config, args.vocab, rngs=rngs), tx, mesh, rules, seed=0, initialize=False
    )
    step = steps.make_train_step(created.model_def, tx, schedule, mesh=mesh, state_shardings=created.shardings)
    return float(step.lower(created.state, batch).cost_analysis()["flops"])


def layer_variants(spec: str) -> list[str]:
    """`--layers`: "scan", "unrolled", "both" or a comma list of the first two; anything else is refused."""
    names = ["scan", "unrolled"] if spec == "both" else [v for v in spec.split(",") if v]
    unknown = [v for v in names if v not in ("scan", "unrolled")]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{spec!r}: give scan, unrolled, both, or scan,unrolled")
    return names


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.bench train", description=__doc__)
    parser.add_argument("--models", default="tiny,roberta8", help="comma-separated RoBERTa presets")
    parser.add_argument("--layers", default="both", type=layer_variants,
                        help="scan (the default config), unrolled, or both (= scan,unrolled)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=40000, help="the paper's monolingual vocabulary")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median and best reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-predictions", type=int, default=-1, help="MLM rows projected: -1 auto, 0 all")
    parser.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the step's matmuls and its optimizer update alone (xlt_jax.bench.floor)")
    parser.add_argument(
        "--compile-cache", default="auto", help="persistent XLA cache: auto ($XLT_CACHE_DIR/jax), a path, or ''"
    )
    args = parser.parse_args(argv)
    jax.monitoring.register_event_listener(lambda name, **_: _COMPILE_EVENTS.append(name))
    with compile_cache.persistent_cache(args.compile_cache):
        run(args)


def run(args: argparse.Namespace) -> None:
    device = jax.devices()[0]
    mesh = partitioning.make_mesh(ml_collections.ConfigDict({"shape": (1, 1, 1)}), [device])
    figures: dict[str, object] = {
        **provenance.record(), "bench": "train", "batch": args.batch, "seq_len": args.seq_len, "vocab": args.vocab,
        "dtype": "float32",
        "device": device.device_kind, "dropout": "preset (0.1)",
    }  # fmt: skip
    print(f"RoBERTa train step (AdamW, clip, dropout), fp32, batch {args.batch} x seq {args.seq_len}, "
          f"vocab {args.vocab}, one {device.device_kind} device; peak = best fp32 2048^3 matmul next to each step")
    figures["stream_bytes_per_s"] = stream_bandwidth(device)
    print(f"memory: {figures['stream_bytes_per_s'] / 1e9:.1f} GB/s read + written by one elementwise pass")
    for preset in [m for m in args.models.split(",") if m]:
        for layers in args.layers:
            r = bench_model(preset, layers == "scan", args, mesh)
            figures[f"{preset}/{layers}"] = r
            print(
                f"{preset:8s} {layers:8s} {r['params'] / 1e6:5.1f}M params | compile {r['compile_s']:6.2f} s "
                f"({'cache hit' if r['compile_cache_hit'] else 'compiled'}) "
                f"(lower {r['lower_s']:.2f}) | step {r['step_s']:.3f} s (best {r['step_s_min']:.3f}) | "
                f"{r['tokens_per_s']:7,.0f} tok/s | {r['flops_per_s'] / 1e9:5.1f} GFLOP/s | peak "
                f"{r['peak_flops_per_s'] / 1e9:5.1f} GFLOP/s | {100 * r['fraction_of_peak']:5.1f}% of peak "
                f"(best step {100 * r['fraction_of_peak_best']:5.1f}%) | FLOPs/step analytic "
                f"{r['flops_per_step']:.3e}, XLA unrolled {r['hlo_flops_unrolled']:.3e}"
            )
            if "matmul_s" in r:
                print(
                    f"{'':17s} floor: its {r['dots']} matmuls alone {r['matmul_s']:.3f} s "
                    f"({r['matmul_flops_per_s_alone'] / 1e9:.0f} GFLOP/s), optimizer update alone "
                    f"{r['update_s']:.3f} s, rest {r['step_s'] - r['matmul_s'] - r['update_s']:.3f} s | "
                    "ceiling with these kernels "
                    f"{100 * r['ceiling_fraction_of_peak']:.1f}% of peak"
                )
    peaks = [r["peak_flops_per_s"] for r in figures.values() if isinstance(r, dict)]
    if peaks:  # the machine's balance: see stream_bandwidth
        figures["peak_flops_per_byte"] = round(max(peaks) / figures["stream_bytes_per_s"], 1)
        print(f"balance: matmul peak / memory stream = {figures['peak_flops_per_byte']:.1f} FLOP per byte")
    print(json.dumps(figures))
