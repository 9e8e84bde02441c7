"""End-to-end pretraining runs of the bilingual smoke config on real English text (8 fake CPU devices).

Compiles dominate the cost, so runs of the same config share JAX's persistent compilation cache.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import pathlib
import runpy
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from xlt_jax.data.tokenizer import Tokenizer
from xlt_jax.errors import ConfigError
from xlt_jax.training import checkpointing, loop, partitioning, writers

REPO = pathlib.Path(__file__).resolve().parents[1]
BILINGUAL = REPO / "configs" / "pretrain" / "bilingual.py"
STEPS = 8


def smoke_config(cache_dir: pathlib.Path, **train_overrides):
    config = runpy.run_path(str(BILINGUAL))["get_config"]("smoke")
    config.data.cache_dir = str(cache_dir)
    config.train.steps = STEPS
    config.train.log_every = 2
    config.train.eval_every = 4
    config.train.checkpoint_every = 4
    config.train.max_to_keep = 2
    config.train.update(train_overrides)
    return config


@pytest.fixture(scope="module")
def shard_cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("shards")


def read_scalars(workdir: pathlib.Path) -> dict[str, dict[int, float]]:
    assert sorted(workdir.glob("events.out.tfevents.*")), f"no event file in {workdir}"
    return writers.read_scalars(workdir)


def test_smoke_run_writes_metrics_checkpoints_tokenizer_and_config(
    data_dir, compile_cache, shard_cache, tmp_path, caplog, monkeypatch
):
    config, workdir = smoke_config(shard_cache), tmp_path
    faults = itertools.count(0, 1000)  # the process's page-fault counter, 1,000 more at every reading
    monkeypatch.setattr(loop.host_allocator, "page_faults", lambda: next(faults))
    with caplog.at_level(logging.INFO):
        result = loop.run(config, workdir)
    # clu's parameter table: one row per parameter with its PartitionSpec under the config's rules.
    table = next(r.getMessage() for r in caplog.records if "| Name" in r.getMessage())
    assert "| Sharding" in table and "Total:" in table
    assert any("word_embeddings/embedding" in line and "('tensor', 'fsdp')" in line for line in table.splitlines())
    assert (result.start_step, result.final_step) == (0, STEPS)
    assert [h["step"] for h in result.history] == list(range(1, STEPS + 1))
    losses = [h["loss"] for h in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]

    scalars = read_scalars(workdir)
    assert sorted(scalars["train/loss"]) == [2, 4, 6, 8]
    for tag in ("train/accuracy/en", "train/accuracy/en_inv", "train/learning_rate", "train/tokens_per_s",
                "train/step_time_s", "eval/loss/en", "eval/loss/en_inv", "eval/accuracy"):
        assert tag in scalars, tag
    assert sorted(scalars["eval/loss"]) == [4, 8]
    np.testing.assert_allclose(scalars["train/loss"][8], np.mean(losses[6:8]), rtol=1e-5)
    # The input wait is measured per step: non-negative and a small share of the step on this tiny pipeline.
    waits, times = scalars["train/input_wait_s"], scalars["train/step_time_s"]
    assert sorted(waits) == [2, 4, 6, 8] and all(0 <= waits[s] < times[s] for s in waits)
    assert scalars["train/mlm_overflow"][8] == 0  # predictions are gathered; the auto size never overflows
    # Read once when an interval starts and once when it is logged: 1,000 faults per 2-step interval.
    assert scalars["train/host_page_faults_per_step"] == {2: 500.0, 4: 500.0, 6: 500.0, 8: 500.0}

    ckpt = checkpointing.Checkpointer(workdir / loop.CHECKPOINT_DIR, max_to_keep=2)
    assert ckpt.all_steps() == [4, 8]
    ckpt.close()
    data_state = (workdir / loop.CHECKPOINT_DIR / "8" / "data" / "process_0-of-1.json").read_text()
    assert f'"position": {STEPS * config.data.global_batch_size}' in data_state

    assert Tokenizer.load(workdir / loop.TOKENIZER_DIR).base_size == config.tokenizer.vocab_size
    saved = (workdir / loop.CONFIG_FILE).read_text()
    assert '"num_langs": 2' in saved and '"transform": "inv"' in saved


def test_rerun_resumes_from_last_checkpoint_with_the_same_batches(data_dir, compile_cache, shard_cache, tmp_path):
    """Steps 5-6 recomputed after the restart equal those of the run that was interrupted after step 6."""
    config = smoke_config(shard_cache)
    first = loop.run(config, tmp_path, stop_after=6)  # "preempted" after step 6: last checkpoint is step 4
    assert (first.final_step, [h["step"] for h in first.history]) == (6, [1, 2, 3, 4, 5, 6])
    second = loop.run(config, tmp_path)  # the same command again
    assert second.start_step == 4
    assert [h["step"] for h in second.history] == [5, 6, 7, 8]
    uninterrupted = {h["step"]: h["loss"] for h in first.history}
    resumed = {h["step"]: h["loss"] for h in second.history}
    np.testing.assert_allclose([resumed[5], resumed[6]], [uninterrupted[5], uninterrupted[6]], rtol=1e-6)
    assert loop.run(config, tmp_path).history == []  # finished: nothing left to do


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, compile_cache, shard_cache, tmp_path):
    config = smoke_config(shard_cache, checkpoint_every=2)
    config.optimizer.learning_rate = 1e30  # diverges within the first few updates
    with pytest.raises(loop.TrainingDiverged, match="non-finite training loss at step") as info:
        loop.run(config, tmp_path)
    bad_step = int(str(info.value).split("at step ")[1].split()[0])
    ckpt = checkpointing.Checkpointer(tmp_path / loop.CHECKPOINT_DIR, max_to_keep=2)
    steps = ckpt.all_steps()
    assert steps and max(steps) < bad_step, (steps, bad_step)
    assert f"last good checkpoint is step {max(steps)}" in str(info.value)
    # The kept checkpoint holds finite parameters.
    restored, _ = ckpt.restore(max(steps))
    ckpt.close()
    assert set(restored) == {"step", "params", "opt_state", "rng"}
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(restored["params"]))


def test_grouped_predictions_train_as_per_sequence_ones(data_dir, compile_cache, shard_cache, tmp_path):
    """data.mlm_group_size=-1 on 8 devices: one group of 2 per shard, fewer projected rows, the same losses."""
    per_sequence = loop.run(smoke_config(shard_cache), tmp_path / "per_sequence", stop_after=4)
    config = smoke_config(shard_cache)
    config.data.mlm_group_size = -1
    grouped = loop.run(config, tmp_path / "grouped", stop_after=4)
    np.testing.assert_allclose([h["loss"] for h in grouped.history], [h["loss"] for h in per_sequence.history],
                               rtol=2e-5)
    saved = json.loads((tmp_path / "grouped" / loop.CONFIG_FILE).read_text())
    assert saved["data"]["mlm_group_size"] == 2  # what ran: 16 sequences over 8 batch shards
    config.data.mlm_group_size = 4  # 16 sequences = 4 groups: not one per shard of 8
    with pytest.raises(ConfigError, match="mlm_group_size=4: data.global_batch_size=16 must be a multiple of 4 x 8"):
        loop.run(config, tmp_path / "bad")
    assert not (tmp_path / "bad" / loop.TOKENIZER_DIR).exists()


def test_mlm_group_size_minus_one_is_the_largest_group_every_batch_part_holds(tmp_path):
    config = smoke_config(tmp_path)
    config.data.update(global_batch_size=16, eval_batch_size=0, mlm_group_size=-1)
    eight_shards = partitioning.make_mesh(ml_collections.ConfigDict({"shape": (8, 1, 1)}))
    one_device = partitioning.make_mesh(ml_collections.ConfigDict({"shape": (1, 1, 1)}), jax.devices()[:1])
    group = lambda c, mesh: loop.resolve_mlm_group_size(c, mesh).data.mlm_group_size  # noqa: E731
    assert group(config, one_device) == 16  # the whole batch
    assert group(config, eight_shards) == 2  # 16 sequences over 8 shards
    config.data.eval_batch_size = 24  # eval parts of 3 sequences: groups must divide 2 and 3
    assert group(config, eight_shards) == 1 and group(config, one_device) == 8
    config.data.eval_batch_size = 0
    config.train.grad_accum_steps = 2  # microbatches of 8 on one device
    assert group(config, one_device) == 8
    assert config.data.mlm_group_size == -1  # resolved on a copy
    config.data.mlm_group_size = 4
    assert loop.resolve_mlm_group_size(config, one_device) is config  # explicit sizes are left alone


def test_bad_mesh_is_a_config_error_before_any_compute(data_dir, shard_cache, tmp_path):
    config = smoke_config(shard_cache)
    config.mesh.shape = (3, -1, 1)
    with pytest.raises(ConfigError, match="does not divide the 8 devices"):
        loop.run(config, tmp_path)
    assert not (tmp_path / loop.TOKENIZER_DIR).exists()


def test_unknown_config_key_is_a_clear_error(tmp_path):
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "xlt_jax.train", f"--config={BILINGUAL}:smoke", f"--workdir={workdir}",
         "--config.train.stpes=5"],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode != 0
    assert "unknown config key 'train.stpes'" in proc.stderr
    assert "did you mean 'train.steps'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not workdir.exists()
