"""`python -m xlt_jax.bench ab`: the train step of one `bench peer` configuration under several model-config
variants, timed in one process in alternating rounds.

On a shared 2-core machine step times drift by ±5% between processes and over minutes, which is as large as
most single changes; alternating the variants inside one process makes their ratio meaningful. A variant is a
comma-separated list of `key=value` overrides of the model config (`scan_layers=False,dropout=0`), or of
`mlm_group_size` (predictions gathered per group of N sequences); `base` is the configuration as `bench peer`
runs it. Reported: median ms per step of each variant and its ratio to the first. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics

from xlt_jax import provenance
from xlt_jax.bench import peer
from xlt_jax.bench.timing import timed_calls


def parse_variant(spec: str) -> dict[str, object]:
    """`"base"` -> {}; `"scan_layers=False,dropout=0"` -> {"scan_layers": False, "dropout": 0}; values are
    Python literals, anything else is kept as a string."""
    if spec.strip() in ("", "base"):
        return {}
    out: dict[str, object] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"variant {spec!r}: {item!r} is not key=value")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.bench ab", description=__doc__)
    parser.add_argument("--config", default="small_translit_128x64", help=f"one of {peer.DEFAULT_CONFIGS}")
    parser.add_argument("--variants", nargs="+", default=["base", "scan_layers=False"],
                        help="each 'base' or key=value[,key=value]; the first is the reference")  # fmt: skip
    parser.add_argument("--mlm-group-size", type=int, default=16, help="as in `bench peer` (0 = per sequence)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    if args.config not in peer.CONFIGS:
        raise SystemExit(f"unknown --config {args.config!r}; choose from {peer.DEFAULT_CONFIGS}")
    variants = {spec: parse_variant(spec) for spec in args.variants}
    steps = {spec: peer.xlt_step(args.config, overrides, args.mlm_group_size) for spec, overrides in variants.items()}
    for step in steps.values():
        timed_calls(step, args.warmup)
    times: dict[str, list[float]] = {spec: [] for spec in steps}
    for _ in range(args.rounds):
        for spec, step in steps.items():
            times[spec].extend(timed_calls(step, args.steps))
    reference = statistics.median(times[args.variants[0]])
    results = {}
    print(f"{args.config}: median ms per train step, {args.rounds} alternating rounds of {args.steps} steps")
    for spec, t in times.items():
        median = statistics.median(t)
        results[spec] = {"overrides": variants[spec], "step_ms": round(1e3 * median, 2),
                         "step_ms_min": round(1e3 * min(t), 2), "ratio": round(median / reference, 4),
                         "compile_s": round(steps[spec].compile_s, 2)}  # fmt: skip
        print(f"  {spec:40s} {1e3 * median:8.1f} ms (min {1e3 * min(t):7.1f})  x{median / reference:.3f}")
    figures = {**provenance.record(), "bench": "ab", "config": args.config, "rounds": args.rounds,
               "steps": args.steps, "mlm_group_size": args.mlm_group_size, "variants": results}  # fmt: skip
    print(json.dumps(figures))
