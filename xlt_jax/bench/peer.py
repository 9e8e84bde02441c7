"""`python -m xlt_jax.bench peer`: xlt_jax against Hugging Face PyTorch RoBERTa MLM on identical work (extra `hf`).

For each configuration both frameworks train the same model (built from a config, no download; fp32, dropout
0.1, AdamW + clipping) on the same MLM batch (15% predicted, the pipeline's masking), in alternating rounds so
that a change of machine load hits both. The peer runs twice: as Hugging Face ships `RobertaForMaskedLM`
(every position projected onto the vocabulary) and with its head on the predicted positions only, which is
what xlt_jax does; the honest comparison is against both. xlt_jax also runs its last layer, past the
attention core, on the predicted rows only (`model.last_layer_predicted_only`, the same loss), which neither
peer does; `--no-last-layer-predicted-only` measures without it. Of its gathered rows, padded to a fixed budget,
xlt_jax's head projects only as many as the batch uses (`model.prediction_tiers`, the record's
`projected_rows` of `gathered_rows`). Reported: median tokens/s of each and the ratios,
plus each framework's fp32 2048³ matmul peak measured in the same run. Ends with one JSON line.

Each configuration runs in a process of its own (`--isolate`, the default): with the host memory retained
(`xlt_jax.host_allocator`) a process keeps the heap its steps once needed, so roberta8 at 8 × 512 measured
after 8 × 128 in one process ran at 932 tokens/s, alone at 1,473 (AMD EPYC, 2026-11-30; peak RSS 15.6 GB alone).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from xlt_jax import provenance
from xlt_jax.bench.timing import timed_calls
from xlt_jax.bench.train import OPTIMIZER, RULES, matmul_peak
from xlt_jax.data.pretrain import mlm
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.models import build_model, default_model_config, prediction_tiers, resolve_model_config
from xlt_jax.training import optimizer, partitioning, steps
from xlt_jax.training import state as state_lib

# name -> (preset, overrides, base vocabulary, vocabulary copies, batch, seq_len)
CONFIGS: dict[str, tuple[str, dict, int, int, int, int]] = {
    "roberta8_8x128": ("roberta8", {}, 40_000, 1, 8, 128),
    "roberta8_8x512": ("roberta8", {}, 40_000, 1, 8, 512),
    "roberta8_translit_8x128": ("roberta8", {}, 40_000, 2, 8, 128),
    # The CPU-scale experiments' model: 2 layers x 128, V = 2,000 doubled for transliteration, batch 128 x 64.
    "small_translit_128x64": ("tiny", {"hidden": 128, "heads": 2, "mlp": 512}, 2_000, 2, 128, 64),
}
DEFAULT_CONFIGS = ",".join(CONFIGS)


def mlm_batch(
    layout: VocabLayout, batch: int, seq_len: int, max_predictions: int, group_size: int = 1
) -> dict[str, np.ndarray]:
    """A batch of random ids masked by the pipeline's MLM code (speed does not depend on the ids); predictions
    gathered per sequence, or per group of `group_size` sequences (`max_predictions` rows per group)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(5, layout.base_size, size=(batch, seq_len), dtype=np.int32)
    ids[:, 0], ids[:, -1] = 0, 2
    out = mlm.mask_tokens(
        ids, layout=layout, seed=0, example_ids=np.arange(batch), draws=np.zeros(batch),
        max_predictions=max_predictions, group_size=group_size,
    )
    out.pop("mlm_overflow", None)
    return out | {"lang_id": np.zeros(batch, np.int32)}


def model_config(preset: str, overrides: dict, seq_len: int) -> ml_collections.ConfigDict:
    config = default_model_config("roberta", preset)
    config.update(dtype="float32", max_len=max(seq_len, 64), scan_layers=True, dropout=0.1, **overrides)
    return config


class XltStep:
    """xlt_jax's jitted train step on one device with its state and batch; calling it runs one step."""

    def __init__(self, config: ml_collections.ConfigDict, layout: VocabLayout, batch: dict[str, np.ndarray]):
        device = jax.devices()[0]
        self.vocab = layout.size
        self.prediction_tiers = prediction_tiers.resolve_count(  # as traced here, for the CPU
            resolve_model_config(config, layout.size).prediction_tiers, "cpu"
        )
        self.mesh = partitioning.make_mesh(ml_collections.ConfigDict({"shape": (1, 1, 1)}), [device])
        self.rules = partitioning.logical_rules(RULES)
        tx = optimizer.make_optimizer(OPTIMIZER, 1000)
        created = state_lib.create_train_state(
            lambda rngs: build_model(config, layout.size, rngs=rngs), tx, self.mesh, self.rules, seed=0
        )
        self.state = created.state
        self.initial_params = jax.device_get(created.state.params)
        self.step = steps.make_train_step(
            created.model_def, tx, optimizer.learning_rate_schedule(OPTIMIZER, 1000), mesh=self.mesh,
            state_shardings=created.shardings,
        )
        with partitioning.sharding_context(self.mesh, self.rules):
            self.batch = partitioning.global_batch(batch, self.mesh)
            t0 = time.perf_counter()
            self.compiled = self.step.lower(self.state, self.batch).compile()  # `bench profile` reads its HLO
            self.compile_s = time.perf_counter() - t0

    @property
    def gathered_rows(self) -> int:
        """Predicted rows gathered per batch (the budget, padding slots included)."""
        return int(np.prod(self.batch["mlm_positions"].shape))

    @property
    def projected_rows(self) -> int:
        """Of them, the rows projected onto the vocabulary (the tier `model.prediction_tiers` picks)."""
        return prediction_tiers.projected_rows(np.asarray(self.batch["mlm_weights"]), self.prediction_tiers)

    @property
    def mlm_group_size(self) -> int:
        """Sequences that share one budget of projected rows (1: per sequence)."""
        return self.batch["input_ids"].shape[0] // self.batch["mlm_positions"].shape[0]

    def __call__(self) -> None:
        with partitioning.sharding_context(self.mesh, self.rules):
            self.state, metrics = self.step(self.state, self.batch)
            jax.block_until_ready(metrics["loss"])


def xlt_setup(
    name: str, overrides: dict[str, object], group_size: int
) -> tuple[ml_collections.ConfigDict, VocabLayout, dict[str, np.ndarray]]:
    """The model config, vocabulary layout and MLM batch of `xlt_step` (nothing built or compiled)."""
    preset, model_overrides, base, copies, batch_size, seq_len = CONFIGS[name]
    layout = VocabLayout(base, copies=copies)
    config = model_config(preset, model_overrides, seq_len)
    overrides = dict(overrides)
    group = int(overrides.pop("mlm_group_size", group_size))
    group = math.gcd(group, batch_size) if group > 1 else 1
    config.update(overrides)
    rows = mlm.auto_max_predictions(group * seq_len, 0.15)  # per group (= per sequence when group is 1)
    return config, layout, mlm_batch(layout, batch_size, seq_len, rows, group)


def xlt_step(name: str, overrides: dict[str, object], group_size: int) -> XltStep:
    """xlt_jax's step for `CONFIGS[name]` with `overrides` on its model config (a wrong key fails with the
    config's error, which names it); predictions gathered per group of `group_size` sequences (or of an
    `mlm_group_size` override), at most the whole batch: the largest group that divides both (per sequence
    when that is 1, or when the size is 0)."""
    return XltStep(*xlt_setup(name, overrides, group_size))


def torch_matmul_peak(n: int = 2048, repeats: int = 4) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    return 2.0 * n**3 / min(timed_calls(lambda: torch.mm(a, b), repeats))


def bench_config(name: str, args: argparse.Namespace) -> dict:
    from xlt_jax.interop.torch_peer import TorchMlmPeer

    preset, overrides, base, copies, batch_size, seq_len = CONFIGS[name]
    layout = VocabLayout(base, copies=copies)
    config = model_config(preset, overrides, seq_len)
    config.scan_layers = args.layers == "scan"
    spec = resolve_model_config(config, layout.size)
    p = mlm.auto_max_predictions(seq_len, 0.15)
    batch = mlm_batch(layout, batch_size, seq_len, p)  # the peers read per-sequence predictions
    model_overrides = {
        "scan_layers": args.layers == "scan", "last_layer_predicted_only": args.last_layer_predicted_only,
    }
    ours = xlt_step(name, model_overrides, args.mlm_group_size)
    peers = {
        "hf": TorchMlmPeer(spec, OPTIMIZER, 1000, params=ours.initial_params, threads=args.threads),
        "hf_masked": TorchMlmPeer(
            spec, OPTIMIZER, 1000, params=ours.initial_params, masked_only=True, threads=args.threads
        ),
    }
    runners: dict[str, Callable[[], object]] = {"xlt_jax": ours}
    runners |= {key: (lambda peer=peer: peer.train_step(batch)) for key, peer in peers.items()}
    for run in runners.values():
        timed_calls(run, args.warmup)
    times: dict[str, list[float]] = {key: [] for key in runners}
    for _ in range(args.rounds):  # alternate, so load changes hit every framework alike
        for key, run in runners.items():
            times[key].extend(timed_calls(run, args.steps))
    tokens = batch_size * seq_len
    tps = {key: tokens / statistics.median(t) for key, t in times.items()}
    return {
        "model": f"{preset} {spec.num_layers}x{spec.hidden}, heads {spec.heads}, mlp {spec.mlp}",
        "vocab": layout.size,
        "batch": batch_size,
        "seq_len": seq_len,
        "max_predictions_per_seq": p,
        "layers": args.layers,
        "mlm_group_size": ours.mlm_group_size,
        "last_layer_predicted_only": args.last_layer_predicted_only,
        "prediction_tiers": ours.prediction_tiers,
        "gathered_rows": ours.gathered_rows,
        "projected_rows": ours.projected_rows,
        "masked_positions": int(np.sum(batch["mlm_weights"])),
        "compile_s": round(ours.compile_s, 2),
        "tokens_per_s": round(tps["xlt_jax"], 1),
        "hf_tokens_per_s": round(tps["hf"], 1),
        "hf_masked_tokens_per_s": round(tps["hf_masked"], 1),
        "ratio_vs_hf": round(tps["xlt_jax"] / tps["hf"], 3),
        "ratio_vs_hf_masked": round(tps["xlt_jax"] / tps["hf_masked"], 3),
        "steps_timed": len(times["xlt_jax"]),
    }


def child_argv(name: str, argv: list[str]) -> list[str]:
    """This command's options for one configuration in a process of its own."""
    options = [a for i, a in enumerate(argv) if a != "--configs" and (i == 0 or argv[i - 1] != "--configs")]
    options = [a for a in options if not a.startswith("--configs=") and a != "--isolate"]
    return [*options, "--configs", name, "--no-isolate"]


def in_own_process(name: str, argv: list[str]) -> dict:
    """`bench_config(name)` in a child process with the same options; its figures from its JSON line."""
    command = [sys.executable, "-m", "xlt_jax.bench", "peer", *child_argv(name, argv)]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])[name]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.bench peer", description=__doc__)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"comma-separated, from: {DEFAULT_CONFIGS}")
    parser.add_argument("--rounds", type=int, default=6,
                        help="alternating rounds per configuration (a shared machine's speed drifts: the same "
                             "xlt_jax step read 1,022 and 1,102 ms a few seconds apart; more rounds steady the "
                             "medians)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per framework per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    parser.add_argument("--mlm-group-size", type=int, default=16,
                        help="xlt_jax gathers predictions per group of N sequences (data.mlm_group_size, 16 in the "
                             "CPU recipe; 0 = per sequence); a config whose batch N does not divide groups by their "
                             "greatest common divisor (roberta8's batch of 8: groups of 8)")
    parser.add_argument("--layers", choices=("scan", "unrolled"), default="scan",
                        help="xlt_jax's layers under jax.lax.scan or unrolled (model.scan_layers; the CPU recipe's "
                             "two layers are unrolled); the peers are PyTorch loops either way")
    parser.add_argument("--last-layer-predicted-only", action=argparse.BooleanOptionalAction, default=True,
                        help="xlt_jax's last layer computes the predicted rows only past its attention core "
                             "(model.last_layer_predicted_only; the peers compute every row)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                        help="run each configuration in a fresh process (the retained heap of one would weigh on "
                             "the next)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    unknown = [c for c in args.configs.split(",") if c and c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown --configs {unknown}; choose from {DEFAULT_CONFIGS}")
    device = jax.devices()[0]
    jax_peak, torch_peak = matmul_peak(device)[0], torch_matmul_peak()
    figures: dict[str, object] = {
        **provenance.record(), "bench": "peer",
        "jax": jax.__version__, "torch": torch.__version__, "torch_threads": args.threads, "dtype": "float32",
        "jax_matmul_peak_flops": jax_peak, "torch_matmul_peak_flops": torch_peak,
    }  # fmt: skip
    print(
        f"fp32, dropout 0.1, AdamW + clipping; fp32 2048^3 matmul peak: jax {jax_peak / 1e9:.0f} GFLOP/s, "
        f"torch {torch_peak / 1e9:.0f} GFLOP/s ({args.threads} threads)"
    )
    names = [c for c in args.configs.split(",") if c]
    for name in names:
        r = in_own_process(name, argv) if args.isolate and len(names) > 1 else bench_config(name, args)
        figures[name] = r
        print(
            f"{name:24s} {r['model']}, V={r['vocab']}, {r['batch']}x{r['seq_len']} (P={r['max_predictions_per_seq']})"
            f" | xlt_jax {r['tokens_per_s']:8,.0f} tok/s | HF {r['hf_tokens_per_s']:8,.0f} "
            f"(x{r['ratio_vs_hf']:.2f}) | HF masked-only {r['hf_masked_tokens_per_s']:8,.0f} "
            f"(x{r['ratio_vs_hf_masked']:.2f}) | compile {r['compile_s']:.1f} s",
            flush=True,
        )
    print(json.dumps(figures))
