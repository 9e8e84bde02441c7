"""`python -m xlt_jax.bench NAME [ARGS]`: run the benchmark module `xlt_jax.bench.NAME`.

Each benchmark is a module with `main(argv: list[str]) -> None` that prints readable lines and ends with
exactly one JSON line of figures. Registering a benchmark is one line in `BENCHMARKS`.
"""

from __future__ import annotations

import importlib
import sys

from xlt_jax import host_allocator

BENCHMARKS = {
    "data": "tokenization, transformation, MLM and span-corruption collation throughput (tokens/s)",
    "train": "compile time, step time, tokens/s and FLOP/s of the pretraining step",
    "tpu": "the pretraining step compiled ahead of time for Cloud TPU topologies: memory, FLOPs, largest batch",
    "input": "the real training loop: seconds per step and the time each step waits for its batch",
    "peer": "tokens/s of xlt_jax vs Hugging Face PyTorch RoBERTa MLM on identical configs (extra hf)",
    "profile": "a jax.profiler trace of a `peer` configuration's step: time by operation group and top operations",
    "ab": "a `peer` configuration's step under several model-config variants, alternating in one process",
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in BENCHMARKS:
        lines = "\n".join(f"  {name:8s} {what}" for name, what in BENCHMARKS.items())
        sys.exit(f"usage: python -m xlt_jax.bench NAME [ARGS]\nbenchmarks:\n{lines}")
    name = argv[0]
    host_allocator.retain_freed_memory()  # as the binaries do, before JAX starts its threads
    try:
        module = importlib.import_module(f"xlt_jax.bench.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"xlt_jax.bench.{name}":
            raise
        sys.exit(f"benchmark {name!r} is not implemented yet (no module xlt_jax.bench.{name})")
    module.main(argv[1:])


if __name__ == "__main__":
    main()
