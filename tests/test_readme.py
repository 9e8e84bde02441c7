"""The README's measured sections are rebuilt from run outputs, and left alone when a run is missing."""

from __future__ import annotations

import json

import numpy as np

from xlt_jax.experiments import readme
from xlt_jax.interop import compare


def write_compare_run(root, name="translit_mini"):
    run = root / "fidelity" / name
    run.mkdir(parents=True)
    # A plateau at ~6.0 that xlt_jax leaves at step 1600 and Hugging Face at step 1700.
    rows = []
    for step in range(100, 2100, 100):
        ours = 6.0 if step < 1600 else 5.5 - 0.001 * (step - 1600)
        theirs = 6.0 if step < 1700 else 5.5 - 0.001 * (step - 1700)
        rows.append({"step": step, "xlt_jax/eval_loss": ours, "hf/eval_loss": theirs})
    (run / "curves.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = compare.summarize(rows, {"xlt_jax": 1.0, "hf": 2.0})
    summary |= {"machine": "Test CPU, 2 cores", "date": "2026-11-30 00:00 UTC", "commit": "abc123def4567",
                "command": "python -m xlt_jax.interop.compare ...", "tokens_per_step": 8192, "wall_s": 600}
    (run / "compare.json").write_text(json.dumps(summary))
    return summary


def test_fidelity_section_is_rebuilt_from_the_comparison_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = write_compare_run(tmp_path / "runs")
    assert summary["xlt_jax_plateau_exit_step"] == 1600 and summary["hf_plateau_exit_step"] == 1700
    assert np.isclose(summary["max_eval_loss_gap"], 0.5)
    text = "intro\n<!-- generated:fidelity -->\nold numbers\n<!-- /generated:fidelity -->\n" \
           "<!-- generated:replicate -->\nkept as is\n<!-- /generated:replicate -->\n"
    out, rebuilt = readme.regenerate(text, tmp_path / "runs")
    assert rebuilt == ["fidelity"]
    assert "old numbers" not in out and "kept as is" in out and out.startswith("intro\n")
    assert "xlt_jax at step 1600, hf at step 1700" in out
    assert "| 1700 | 13.9 M | 5.400 | 5.500 | -0.100 |" in out
    assert "Test CPU, 2 cores, 2026-11-30 00:00 UTC, 10 min, commit `abc123def456`" in out
    again, _ = readme.regenerate(out, tmp_path / "runs")
    assert again == out  # idempotent


def test_a_single_model_run_that_never_leaves_the_plateau_says_so(tmp_path):
    run = tmp_path / "fidelity" / "linear"
    run.mkdir(parents=True)
    rows = [{"step": s, "xlt_jax/eval_loss": 6.0 - 0.0001 * s} for s in range(100, 2100, 100)]
    (run / "curves.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = compare.summarize(rows, {"xlt_jax": 1.0}) | {"tokens_per_step": 8192}
    (run / "compare.json").write_text(json.dumps(summary))
    section = readme.fidelity_section(tmp_path)
    assert "xlt_jax never." in section and "hf" not in section.split("Left the plateau")[1]
    assert "| 2000 | 16.4 M | 5.800 | – | – |" in section


def test_demo_section_shows_transfer_against_the_baselines_from_demo_json(tmp_path):
    assert readme.demo_section(tmp_path) is None  # no run: the README keeps its text
    (tmp_path / "demo").mkdir()
    record = {"machine": "Test CPU", "date": "2026-11-30 03:34 UTC", "commit": "abc", "command": "make demo",
              "wall_s": 900, "BZ": 39.4, "BS": 85.1, "MZ": 16.4, "majority": 17.8, "align_nn_procrustes": 3.61,
              "align_chance": 0.05}
    (tmp_path / "demo" / "demo.json").write_text(json.dumps(record))
    section = readme.demo_section(tmp_path)
    assert "| 39.4 | 85.1 | 16.4 | 17.8 | +21.6 |" in section
    assert "procrustes 3.61% (chance 0.05%)" in section and "Test CPU, 2026-11-30 03:34 UTC, 15 min" in section


def test_the_corpus_control_section_reads_each_model_from_its_own_grid(tmp_path):
    from test_paper_report import align_row, protocol_rows

    from xlt_jax import results

    runs = tmp_path / "runs"
    grids = {  # translit on lang:en and translit∘syntax in the previous grid; translit on the treebank in the control
        "replicate_lang": protocol_rows("en", "translit", "pos", (30.0, -50.0, -80.0), "parallel")
        + protocol_rows("en", "translit+syntax:fr", "pos", (42.0, -40.0, -80.0), "parallel")
        + [align_row("en", "translit", "parallel", 0.8), align_row("en", "translit+syntax:fr", "parallel", 3.2)],
        "replicate_treebank": protocol_rows("en", "translit", "pos", (55.0, -25.0, -78.0), "parallel")
        + [align_row("en", "translit", "parallel", 4.5)],
    }
    assert readme.control_section(runs) is None  # no control run yet: the README keeps its text
    for name, rows in grids.items():
        (runs / name).mkdir(parents=True)
        results.append_rows(runs / name, rows)
    markers = [("replicate_lang", "en_translit_parallel", 4.59), ("replicate_treebank", "en_translit_parallel", 4.01),
               ("replicate_lang", "en_translit+syntax-fr_parallel", 4.27)]
    for name, cell, loss in markers:
        marker = runs / name / "cells" / cell / "pretrain" / "bilingual" / "DONE.json"
        marker.parent.mkdir(parents=True)
        marker.write_text(json.dumps({"summary": {"eval": {"eval/loss": loss}}}))
    (runs / "replicate_treebank" / "grid.json").write_text(json.dumps(
        {"command": "python -m xlt_jax.experiments.grid ...corpus=treebank", "machine": "CPU", "wall_s_total": 1200}))
    lines = readme.control_section(runs).splitlines()
    default, control, composed = [line for line in lines if line.startswith("| translit")]
    assert "`lang:en`" in default and "| 4.590 | 30.0 | 80.0 | 0.0 | -50.0 | -80.0 | 0.80 |" in default
    assert "`treebank:en`" in control and "| 4.010 | 55.0 | 80.0 | 2.0 | -25.0 | -78.0 | 4.50 |" in control
    assert "| 4.270 | 42.0 | 82.0 | 2.0 | -40.0 | -80.0 | 3.20 |" in composed
    assert "20 min" in lines[0]


BENCH_HEAD = {"machine": "Test CPU", "date": "2026-11-30", "commit": "abc"}
PEER_ROW = {"model": "tiny 2x128", "vocab": 4000, "batch": 128, "seq_len": 64, "hf_tokens_per_s": 25000.0,
            "hf_masked_tokens_per_s": 38000.0}


def write_bench(root, name: str, record: dict) -> None:
    """runs/bench/NAME.json as `python -m xlt_jax.bench` leaves it (its JSON line)."""
    (root / "bench").mkdir(exist_ok=True)
    (root / "bench" / f"{name}.json").write_text(json.dumps(record))


def test_peer_table_says_how_xlt_jax_ran_each_config(tmp_path):
    row = PEER_ROW | {"tokens_per_s": 40000.0, "ratio_vs_hf": 1.6, "ratio_vs_hf_masked": 1.053}
    write_bench(tmp_path, "peer", BENCH_HEAD | {"torch": "2.13", "torch_threads": 2,
                                                "small": dict(row, layers="unrolled", mlm_group_size=16),
                                                "sparse": dict(row, mlm_group_size=8, last_layer_predicted_only=True),
                                                "tiered": dict(row, mlm_group_size=8, prediction_tiers=8,
                                                               gathered_rows=208, projected_rows=152),
                                                "older": row})  # "older": a record from before
    table = readme.performance_section(tmp_path)
    assert "| small | tiny 2x128 | 4,000 | 128×64 | unrolled, groups of 16 | 40,000 | 25,000 | 1.60 |" in table
    assert "| sparse | tiny 2x128 | 4,000 | 128×64 | scan, groups of 8; last layer on them only | 40,000 |" in table
    assert "| older | tiny 2x128 | 4,000 | 128×64 | scan, per sequence | 40,000 |" in table
    assert "| tiered | tiny 2x128 | 4,000 | 128×64 | scan, groups of 8; head on 152 of 208 rows | 40,000 |" in table
    assert "| 38,000 | 1.05 |" in table
    assert "host memory" not in table  # the record does not say which allocator ran


def test_peer_tables_name_the_host_allocator_each_ran_under(tmp_path):
    row = PEER_ROW | {"tokens_per_s": 60000.0, "ratio_vs_hf": 2.4, "ratio_vs_hf_masked": 1.58}
    head = BENCH_HEAD | {"torch": "2.13", "torch_threads": 2}
    write_bench(tmp_path, "peer", head | {"host_allocator": "retain", "small": row})
    before = row | {"tokens_per_s": 40000.0, "ratio_vs_hf_masked": 1.05}
    write_bench(tmp_path, "peer_system", head | {"host_allocator": "system", "small": before})
    retained, system = readme.performance_section(tmp_path).split("**xlt_jax vs")[1:]
    assert "host memory retained" in retained and "| 60,000 |" in retained and "| 1.58 |" in retained
    assert "XLT_HOST_ALLOCATOR=system" in system and "| 40,000 |" in system and "| 1.05 |" in system
    assert "matmul peak" not in retained  # neither record holds the frameworks' peaks


def test_peer_table_caption_gives_each_frameworks_matmul_peak(tmp_path):
    head = BENCH_HEAD | {"torch": "2.13", "torch_threads": 2, "jax_matmul_peak_flops": 2.116e11,
                         "torch_matmul_peak_flops": 1.904e11}
    row = PEER_ROW | {"tokens_per_s": 40000.0, "ratio_vs_hf": 1.6, "ratio_vs_hf_masked": 1.2}
    write_bench(tmp_path, "peer", head | {"small": row})
    caption = readme.performance_section(tmp_path).split("\n")[0]
    assert caption.endswith("; fp32 2048³ matmul peak: jax 212, torch 190 GFLOP/s.")


def test_train_table_shows_the_step_floor_when_measured(tmp_path):
    row = {"layers": "unrolled", "step_s": 0.8, "tokens_per_s": 1280.0, "fraction_of_peak": 0.5,
           "fraction_of_peak_best": 0.52, "compile_s": 0.4, "compile_cache_hit": True}
    floor = {"matmul_s": 0.5, "matmul_flops_per_s_alone": 3.6e11, "update_s": 0.1, "ceiling_fraction_of_peak": 0.667}
    record = BENCH_HEAD | {"batch": 8, "seq_len": 128, "vocab": 40000, "roberta8/unrolled": row | floor,
                           "roberta8/scan": row | {"layers": "scan"}}  # a record from before the floor
    write_bench(tmp_path, "train", record)
    table = readme.performance_section(tmp_path)
    assert "| roberta8 | unrolled | 0.800 | 1,280 | 50.0 / 52.0 | 0.4 (cache hit) | 0.500 (360) | 0.100 | 66.7 |" \
        in table
    assert "| roberta8 | scan | 0.800 | 1,280 | 50.0 / 52.0 | 0.4 (cache hit) | – | – | – |" in table
    scan_unrolled = row | {"layers": "scan", "scan_unroll": 2}
    write_bench(tmp_path, "train_512", record | {"seq_len": 512, "tiny/scan": scan_unrolled})
    tables = readme.performance_section(tmp_path)
    assert tables.count("**Train step against the matmul peak**") == 2 and "batch 8 × 512" in tables
    assert "| tiny | scan, 2 per iteration | 0.800 |" in tables  # the CPU's automatic unrolling, as recorded
    sparse_last = row | {"last_layer_predicted_only": True}
    write_bench(tmp_path, "train_512", record | {"seq_len": 512, "tiny/unrolled": sparse_last})
    assert "| tiny | unrolled; last layer on predicted rows | 0.800 |" in readme.performance_section(tmp_path)
    tiered = sparse_last | {"prediction_tiers": 8, "projected_rows_per_seq": 32.0, "max_predictions_per_seq": 40}
    write_bench(tmp_path, "train_512", record | {"seq_len": 512, "tiny/unrolled": tiered})
    assert "| tiny | unrolled; last layer on predicted rows; head on 32 of 40 rows per sequence | 0.800 |" \
        in readme.performance_section(tmp_path)
    assert "GB/s" not in tables  # neither record measured the machine's memory stream


def test_train_table_caption_gives_the_machines_balance_when_measured(tmp_path):
    row = {"layers": "scan", "step_s": 0.8, "tokens_per_s": 1280.0, "fraction_of_peak": 0.5,
           "fraction_of_peak_best": 0.52, "compile_s": 0.4, "peak_flops_per_s": 4.8e11}
    record = BENCH_HEAD | {"batch": 8, "seq_len": 512, "vocab": 40000, "roberta8/scan": row,
                           "stream_bytes_per_s": 2.13e10, "peak_flops_per_byte": 22.5}
    write_bench(tmp_path, "train_512", record)
    caption = readme.performance_section(tmp_path).split("\n")[0]
    assert "; memory 21.3 GB/s, peak / memory 22.5 FLOP/byte." in caption


def test_input_table_shows_page_faults_per_step_when_logged(tmp_path):
    row = {"batch": "128x64", "step_s": 0.13, "tokens_per_s": 63000.0, "input_wait_s": 0.0005,
           "wait_fraction": 0.004}
    write_bench(tmp_path, "input", BENCH_HEAD | {"host_allocator": "retain", "older": row,  # from before the column
                                                 "mini": row | {"host_page_faults_per_step": 12.4}})
    table = readme.performance_section(tmp_path)
    assert "| mini | 128x64 | 0.130 | 63,000 | 0.50 ms (0.40%) | 12 |" in table
    assert "| older | 128x64 | 0.130 | 63,000 | 0.50 ms (0.40%) | – |" in table
    assert "host memory retained" in table
