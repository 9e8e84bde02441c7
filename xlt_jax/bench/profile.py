"""`python -m xlt_jax.bench profile`: where the pretraining step's time goes, from a `jax.profiler` trace.

The step of one `bench peer` configuration (the same model, batch and optimizer) is timed untraced, then
traced for a few steps with `jax.profiler`; every XLA operation in the trace is matched to its instruction in
the compiled module and grouped: library matmuls (`dot`, and the YNNPACK/XNNPACK/oneDNN fusions XLA CPU hands
its dots to), loop fusions (elementwise work, reductions, the dropout hash), data movement (copy, transpose,
broadcast, concatenate, dynamic slices), gather/scatter, and control flow. Tracing slows every operation
(roughly uniformly here), so shares are of the traced operation time and the untraced step time is printed
beside them. The trace stays in --trace-dir for TensorBoard's profile plugin or Perfetto. Ends with one JSON
line: the step time, shares by group, and the top operations with their source (`op_name`).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import pathlib
import re
import statistics

import jax

from xlt_jax import provenance
from xlt_jax.bench import peer
from xlt_jax.bench.timing import timed_calls

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\S+) (\w[\w-]*)\(.*$", re.M)
_OP_NAME = re.compile(r'op_name="([^"]+)"')
_LIBRARY = ("__ynn_fusion", "__xnn_fusion", "__onednn_fusion")
_MOVEMENT = ("copy", "transpose", "broadcast", "concatenate", "dynamic-slice", "dynamic-update-slice", "slice",
             "pad", "reshape", "bitcast", "reverse")  # fmt: skip


def instructions(hlo_text: str) -> dict[str, dict[str, str]]:
    """Instruction name -> {shape, opcode, group, op_name} of a compiled module's text (every computation:
    a fused computation's inner instructions never appear in a trace, so they never match an event)."""
    out = {}
    for line in hlo_text.splitlines():
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        name, shape, opcode = m.groups()
        source = _OP_NAME.search(line)
        out[name] = {"shape": shape, "opcode": opcode, "group": group_of(opcode, name, line),
                     "op_name": source.group(1) if source else ""}  # fmt: skip
    return out


def group_of(opcode: str, name: str, line: str) -> str:
    if opcode in ("dot", "convolution") or any(kind in line for kind in _LIBRARY):
        return "matmul"
    if opcode in ("while", "conditional", "call"):
        return "control flow"
    if opcode in ("gather", "scatter") or (opcode == "fusion" and re.match(r"(gather|scatter)", name)):
        return "gather/scatter"
    if opcode in _MOVEMENT or (opcode == "fusion" and name.startswith(("wrapped_", "copy", "transpose"))):
        return "data movement"
    if opcode == "fusion":
        return "loop fusion"
    return "other"


def op_times(trace_dir: pathlib.Path, known: dict[str, dict[str, str]]) -> collections.Counter:
    """Total µs per XLA operation over the newest Perfetto trace in `trace_dir` (nested events of a `while`
    body are counted in their own operations and in the loop)."""
    newest = max(trace_dir.rglob("*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    with gzip.open(newest) as f:
        events = json.load(f)["traceEvents"]
    totals: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("name") in known:
            totals[e["name"]] += float(e["dur"])
    return totals


def profile(name: str, args: argparse.Namespace) -> dict:
    batch_size, seq_len = peer.CONFIGS[name][-2:]
    step = peer.xlt_step(name, {"dropout": args.dropout, "scan_layers": args.layers == "scan"}, args.mlm_group_size)
    known = instructions(step.compiled.as_text())
    timed_calls(step, args.warmup)
    step_s = statistics.median(timed_calls(step, args.steps))
    trace_dir = pathlib.Path(args.trace_dir) / f"{name}_{args.layers}_dropout{args.dropout:g}"
    with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
        timed_calls(step, args.traced_steps)
    return {
        "config": name, "layers": args.layers, "dropout": args.dropout, "mlm_group_size": step.mlm_group_size,
        "projected_rows": step.projected_rows, "batch": batch_size, "seq_len": seq_len,
        "vocab": step.vocab, "step_s": round(step_s, 4),
        "tokens_per_s": round(batch_size * seq_len / step_s, 1),
        **summarize(op_times(trace_dir, known), known, args.traced_steps, args.top), "trace_dir": str(trace_dir),
    }  # fmt: skip


def summarize(totals: collections.Counter, known: dict[str, dict[str, str]], steps: int, top: int) -> dict:
    """Traced ms per step, shares by group and the `top` operations; a `while` (or `call`, `conditional`) is
    left out of the shares because the operations of its body are counted themselves."""
    top_level = collections.Counter({k: v for k, v in totals.items() if known[k]["group"] != "control flow"})
    traced = sum(top_level.values())
    groups: collections.Counter = collections.Counter()
    for k, v in top_level.items():
        groups[known[k]["group"]] += v
    return {
        "traced_ms_per_step": round(traced / 1e3 / steps, 2),
        "groups": {g: round(v / traced, 4) for g, v in groups.most_common()},
        "top": [{"op": k, **known[k], "ms_per_step": round(v / 1e3 / steps, 3), "share": round(v / traced, 4)}
                for k, v in top_level.most_common(top)],
    }  # fmt: skip


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.bench profile", description=__doc__)
    parser.add_argument("--config", default="small_translit_128x64", help=f"one of {peer.DEFAULT_CONFIGS}")
    parser.add_argument("--layers", default="scan", choices=("scan", "unrolled"))
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--mlm-group-size", type=int, default=16,
                        help="predictions gathered per group of N sequences, as in `bench peer` (0 = per sequence)")
    parser.add_argument("--steps", type=int, default=10, help="untraced steps timed (median)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--traced-steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--trace-dir", default="runs/bench/profile")
    args = parser.parse_args(argv)
    if args.config not in peer.CONFIGS:
        raise SystemExit(f"unknown --config {args.config!r}; choose from {peer.DEFAULT_CONFIGS}")
    r = profile(args.config, args)
    print(f"{r['config']} ({r['layers']} layers, dropout {r['dropout']:g}): untraced step {r['step_s'] * 1e3:.1f} ms "
          f"({r['tokens_per_s']:,.0f} tok/s); traced operations {r['traced_ms_per_step']:.1f} ms/step")
    print("  by group: " + ", ".join(f"{g} {100 * s:.1f}%" for g, s in r["groups"].items()))
    for t in r["top"]:
        print(f"  {100 * t['share']:5.1f}% {t['ms_per_step']:8.2f} ms  {t['group']:14s} {t['shape']:28s} "
              f"{t['op_name'][-70:]}")
    print(json.dumps({**provenance.record(), "bench": "profile", **r}))
