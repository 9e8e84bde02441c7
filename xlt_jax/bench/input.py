"""`python -m xlt_jax.bench input`: does the host ever starve the device? The real training loop, timed.

Runs `python -m xlt_jax.train`'s loop (real English text, real tokenizer, the bilingual pipeline, the
prefetch thread) for a few logged intervals per model and reads back what it logs: seconds per step and the
time each step waited for its batch (`train/input_wait_s`) and the process's page faults per step
(`train/host_page_faults_per_step`: the heap reused, or memory faulted in anew). The first interval (compile,
warm-up) is dropped. Models: the CPU recipe's `mini` (batch 128 x 64, transliteration) and roberta8 (batch
8 x 128). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import runpy
import statistics
import tempfile

from xlt_jax import provenance

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
# name -> (bilingual.py arguments, steps, log interval)
MODELS = {
    "mini": ("lang=en,transform=translit,model=mini,vocab=2000,seq=64,batch=128,lr=2e-3", 60, 10),
    "roberta8": ("lang=en,transform=translit,model=roberta8,seq=128,batch=8,lr=1e-4", 12, 3),
}


def bench_model(name: str, cache_dir: pathlib.Path) -> dict:
    from xlt_jax.training import loop
    from xlt_jax.training.writers import read_scalars

    arg, steps, every = MODELS[name]
    config = runpy.run_path(str(CONFIGS / "pretrain" / "bilingual.py"))["get_config"](arg + f",steps={steps}")
    config.model.dtype = "float32"
    config.model.max_len = int(config.data.seq_len)
    config.mesh.shape = (1, 1, 1)
    config.data.cache_dir = str(cache_dir / "shards")
    config.train.update(log_every=every, eval_every=0, checkpoint_every=10 * steps, async_checkpointing=False)
    with tempfile.TemporaryDirectory() as workdir:
        loop.run(config, workdir)
        scalars = read_scalars(workdir)
    logged = sorted(scalars["train/step_time_s"])[1:]  # the first interval holds warm-up steps
    step_s = statistics.median(scalars["train/step_time_s"][s] for s in logged)
    wait_s = statistics.median(scalars["train/input_wait_s"][s] for s in logged)
    faults = statistics.median(scalars["train/host_page_faults_per_step"][s] for s in logged)
    tokens = int(config.data.global_batch_size) * int(config.data.seq_len)
    return {
        "batch": f"{config.data.global_batch_size}x{config.data.seq_len}",
        "step_s": round(step_s, 4),
        "input_wait_s": round(wait_s, 6),
        "wait_fraction": round(wait_s / step_s, 5),
        "host_page_faults_per_step": round(faults, 1),  # ~0 when host memory is retained (host_allocator)
        "tokens_per_s": round(tokens / step_s, 1),
        "intervals": len(logged),
    }


def main(argv: list[str]) -> None:
    import jax

    parser = argparse.ArgumentParser(prog="python -m xlt_jax.bench input", description=__doc__)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {list(MODELS)}")
    args = parser.parse_args(argv)
    figures: dict[str, object] = {**provenance.record(), "bench": "input", "device": jax.devices()[0].device_kind}
    with tempfile.TemporaryDirectory() as cache:
        for name in [m for m in args.models.split(",") if m]:
            r = bench_model(name, pathlib.Path(cache))
            figures[name] = r
            print(f"{name:9s} batch {r['batch']:8s} | {r['step_s']:.3f} s/step, {r['tokens_per_s']:9,.0f} tok/s | "
                  f"waited for input {1000 * r['input_wait_s']:.2f} ms/step ({100 * r['wait_fraction']:.2f}%) | "
                  f"{r['host_page_faults_per_step']:,.0f} page faults/step",
                  flush=True)
    print(json.dumps(figures))
