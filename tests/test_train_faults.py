"""Faults inside one pretraining process: damaged checkpoints, restoring onto other meshes, NaN/Inf steps.

All runs are the bilingual smoke config of `test_train_loop` (8 fake CPU devices) and share one compile cache.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train_loop import read_scalars, smoke_config

from xlt_jax.errors import CheckpointError
from xlt_jax.training import checkpointing, integrity, loop, steps

REPO = pathlib.Path(__file__).resolve().parents[1]
EVERY = 4


@pytest.fixture(scope="module")
def shard_cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("shards")


def config_for(shard_cache: pathlib.Path, **train):
    config = smoke_config(shard_cache, **{"steps": 12, "eval_every": 0, "checkpoint_every": EVERY, "max_to_keep": 3,
                                          **train})
    config.corpus.source = "text:raw/lingua_leipzig_sample/{lang}.sentences.txt.gz"
    return config


@pytest.fixture(scope="module")
def base_run(data_dir, compile_cache, shard_cache, tmp_path_factory) -> pathlib.Path:
    """A run interrupted after step 8 (a kill): good checkpoints at steps 4 and 8."""
    workdir = tmp_path_factory.mktemp("base")
    loop.run(config_for(shard_cache), workdir, stop_after=8)
    return workdir


def named(state) -> dict[str, np.ndarray]:
    """{"params/...", "opt_state/...", "step", "rng": array} of a train state or a raw restored tree."""
    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    return {integrity._path_name(path): np.asarray(leaf) for path, leaf in flat}


def arrays(workdir: pathlib.Path, step: int) -> dict[str, np.ndarray]:
    ckpt = checkpointing.Checkpointer(workdir / loop.CHECKPOINT_DIR, max_to_keep=10)
    try:
        state, _ = ckpt.restore(step)
    finally:
        ckpt.close()
    return named(state)


def same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


# -- damaged checkpoints -----------------------------------------------------------------------------------------


def _biggest_file(directory: pathlib.Path) -> pathlib.Path:
    return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _flip_byte(path: pathlib.Path, where: float) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGE = {  # kind: (damage step dir, what the warning must say)
    "partial: data item missing": (lambda d: shutil.rmtree(d / "data"), 'Item "data" was not found'),
    "partial: array index missing": (lambda d: (d / "state" / "manifest.ocdbt").unlink(), "NOT_FOUND"),
    "partial: iterator state file missing": (lambda d: (d / "data" / "process_0-of-1.json").unlink(),
                                             "missing, and no other process's state either"),
    "truncated array file": (
        lambda d: (f := _biggest_file(d / "state")).write_bytes(f.read_bytes()[: f.stat().st_size // 2]),
        "Encountered error while reading array"),
    "flipped byte, middle of the array file": (lambda d: _flip_byte(_biggest_file(d / "state"), 0.5),
                                               "differ from what was saved (checksum)"),
    "flipped byte, first quarter": (lambda d: _flip_byte(_biggest_file(d / "state"), 0.25),
                                    "differ from what was saved (checksum)"),
    "iterator position changed": (
        lambda d: (f := d / "data" / "process_0-of-1.json").write_text(
            f.read_text().replace('"position": 128', '"position": 144')),
        "does not match its SHA-256"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(kind, base_run, shard_cache, tmp_path, caplog):
    workdir = tmp_path / "run"
    shutil.copytree(base_run, workdir)
    damage, says = DAMAGE[kind]
    damage(workdir / loop.CHECKPOINT_DIR / "8")
    with caplog.at_level(logging.WARNING):
        result = loop.run(config_for(shard_cache), workdir, stop_after=8)
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "checkpoint step 8" in warnings and says in warnings, warnings
    assert "resumed from step 4, the newest good checkpoint" in warnings
    assert result.start_step == 4
    # The damaged step is kept for inspection, out of Orbax's sight; step 4 was never touched.
    assert (workdir / (loop.CHECKPOINT_DIR + checkpointing.DAMAGED_SUFFIX) / "8").is_dir()
    assert same_bits(arrays(workdir, 4), arrays(base_run, 4))
    # Steps 5-8 recomputed from step 4 give the lost step 8 again, bit for bit.
    assert same_bits(arrays(workdir, 8), arrays(base_run, 8))


def test_when_no_checkpoint_restores_the_error_lists_each_and_nothing_is_moved(base_run, shard_cache, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(base_run, workdir)
    for step in (4, 8):
        shutil.rmtree(workdir / loop.CHECKPOINT_DIR / str(step) / "data")
    with pytest.raises(CheckpointError, match=r"no checkpoint can be restored: step 8: .*; step 4: "):
        loop.run(config_for(shard_cache), workdir, stop_after=8)
    assert sorted(p.name for p in (workdir / loop.CHECKPOINT_DIR).iterdir() if p.name.isdigit()) == ["4", "8"]


def test_what_killed_saves_left_is_removed_by_the_run_not_by_a_reader(base_run, shard_cache, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(base_run, workdir)
    leftover = workdir / loop.CHECKPOINT_DIR / "12.orbax-checkpoint-tmp"
    (leftover / "state.orbax-checkpoint-tmp").mkdir(parents=True)
    checkpointing.Checkpointer(workdir / loop.CHECKPOINT_DIR, max_to_keep=3).close()  # e.g. an export tool
    assert leftover.is_dir()
    assert loop.run(config_for(shard_cache), workdir, stop_after=8).start_step == 8
    assert not leftover.exists()


# -- restoring onto another mesh ---------------------------------------------------------------------------------


def continue_one_step(config, base_run: pathlib.Path, workdir: pathlib.Path) -> loop.RunResult:
    shutil.copytree(base_run, workdir)
    return loop.run(config, workdir, stop_after=9)


def test_checkpoints_restore_onto_other_mesh_shapes(base_run, shard_cache, tmp_path):
    """Written on (8,1,1); restored onto (2,2,2) (FSDP and tensor shards) and onto 1 device, verified by the
    checksums, and training continues with the same loss."""
    same = continue_one_step(config_for(shard_cache), base_run, tmp_path / "8x1x1")
    config = config_for(shard_cache)
    config.mesh.shape = (2, 2, 2)
    shutil.copytree(base_run, tmp_path / "2x2x2")
    trainer = loop._Trainer(config, (tmp_path / "2x2x2").resolve())
    try:
        assert same_bits(named(trainer.state), arrays(base_run, 8))
        embedding = trainer.state.params["embeddings"]["word_embeddings"]["embedding"]
        assert embedding.sharding.mesh.shape == {"data": 2, "fsdp": 2, "tensor": 2}
        assert embedding.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
        assert embedding.addressable_shards[0].data.shape == (embedding.shape[0] // 2, embedding.shape[1] // 2)
        reshaped = trainer.run(stop_after=9)
    finally:
        trainer.close()
    assert reshaped.start_step == 8
    np.testing.assert_allclose(reshaped.history[0]["loss"], same.history[0]["loss"], rtol=1e-5)

    one = tmp_path / "1x1x1"
    shutil.copytree(base_run, one)
    proc = subprocess.run(
        [sys.executable, "-m", "xlt_jax.train", f"--config={REPO}/configs/pretrain/bilingual.py:smoke",
         f"--workdir={one}", "--config.train.steps=12", f"--config.train.checkpoint_every={EVERY}",
         "--config.train.eval_every=0", "--config.train.max_to_keep=3", "--config.train.log_every=1",
         f"--config.data.cache_dir={shard_cache}", "--config.mesh.shape=(1,1,1)",
         "--config.corpus.source=text:raw/lingua_leipzig_sample/{lang}.sentences.txt.gz"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu",
             "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resumed from" in proc.stderr and "at step 8" in proc.stderr
    one_device = read_scalars(one)["train/loss"]
    np.testing.assert_allclose(one_device[9], same.history[0]["loss"], rtol=1e-5)


# -- NaN / Inf ---------------------------------------------------------------------------------------------------

POISON = -7  # a token id no batch has: the test's loss function turns a batch carrying it into NaN


@pytest.fixture
def poisoned_step_3(monkeypatch):
    """The 3rd batch of a fresh run carries POISON; the loss of such a batch is NaN (and so its gradients)."""
    original_loss, original_prepare = steps._weighted_loss_fn, loop._Trainer._prepare_batch
    calls = [0]

    def loss_fn(model_def, weighted=True):
        fn = original_loss(model_def, weighted)

        def poisoned(params, batch, key):
            wloss, aux = fn(params, batch, key)
            return wloss * jnp.where(jnp.any(batch["input_ids"] == POISON), jnp.nan, 1.0), aux

        return poisoned

    def prepare(self, local):
        calls[0] += 1
        if calls[0] == 3:
            local = {**local, "input_ids": local["input_ids"].copy()}
            local["input_ids"][0, 0] = POISON
        return original_prepare(self, local)

    monkeypatch.setattr(steps, "_weighted_loss_fn", loss_fn)
    monkeypatch.setattr(loop._Trainer, "_prepare_batch", prepare)


def test_skip_policy_leaves_the_state_unchanged_on_a_nan_batch_and_counts_it(
    data_dir, poisoned_step_3, shard_cache, tmp_path
):
    config = config_for(shard_cache, checkpoint_every=1, max_to_keep=10, log_every=5, nonfinite_policy="skip")
    result = loop.run(config, tmp_path, stop_after=5)
    assert [h["skipped"] for h in result.history] == [0, 0, 1, 0, 0]
    assert np.isnan(result.history[2]["loss"]) and np.isfinite([h["loss"] for h in result.history[3:]]).all()
    at = {step: arrays(tmp_path, step) for step in (2, 3, 4)}
    for key in at[2]:  # step 3 skipped: parameters, optimizer slots and RNG exactly those after step 2
        if key != "step":
            assert at[3][key].tobytes() == at[2][key].tobytes(), key
    assert (int(at[2]["step"]), int(at[3]["step"])) == (2, 3)  # the batch was consumed
    assert not same_bits(at[4], at[3])  # step 4 trains again
    assert read_scalars(tmp_path)["train/skipped_steps"][5] == 1.0


def test_stop_policy_names_the_step_and_metric(data_dir, poisoned_step_3, shard_cache, tmp_path):
    config = config_for(shard_cache, checkpoint_every=2)
    assert config.train.nonfinite_policy == "stop"  # the visible default
    with pytest.raises(loop.TrainingDiverged, match=r"at step 3 \(loss/grad_norm not finite: loss=nan"):
        loop.run(config, tmp_path, stop_after=5)
    assert sorted(p.name for p in (tmp_path / loop.CHECKPOINT_DIR).iterdir() if p.name.isdigit()) == ["2"]


def test_skip_policy_stops_after_too_many_skips_in_a_row(data_dir, shard_cache, tmp_path):
    config = config_for(shard_cache, checkpoint_every=2, nonfinite_policy="skip", max_consecutive_skips=2)
    config.optimizer.learning_rate = 1e30  # every update after the first overflows
    with pytest.raises(loop.TrainingDiverged, match="3 consecutive non-finite steps exceed "
                                                    "train.max_consecutive_skips=2"):
        loop.run(config, tmp_path)
    saved = sorted(int(p.name) for p in (tmp_path / loop.CHECKPOINT_DIR).iterdir() if p.name.isdigit())
    assert saved
    for step in saved:  # every checkpoint written during the skips holds finite numbers
        assert all(np.isfinite(x).all() for x in arrays(tmp_path, step).values() if x.dtype.kind == "f")
