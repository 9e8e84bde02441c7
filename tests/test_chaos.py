"""Hard kills (SIGKILL) of the real binaries at chosen moments; every rerun of the same command resumes.

Each binary runs once in process, uninterrupted (the reference), and once as a chain of subprocesses: the
command is started under one kill point of `tests/chaos.py` after another, each start resuming what the
previous one left, then once more plainly to the end. The chain must end with a train state (parameters,
optimizer slots, step, RNG) equal to the reference's bit for bit, which only holds if every resume saw the
same batches and dropout masks; each rerun must resume from the newest committed checkpoint (Orbax deletes
an old checkpoint only after the new one is committed, so a kill never loses the older one).

`make test` runs a fixed sample of kill points (3 per binary); the `slow` test kills pretraining with
SIGKILL at random times, many times over. All runs share one persistent compilation cache.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import re
import runpy
import signal
import subprocess
import time

import chaos
import pytest

from xlt_jax import results
from xlt_jax.finetuning import trainer
from xlt_jax.training import loop

REPO = chaos.REPO
BILINGUAL = REPO / "configs" / "pretrain" / "bilingual.py"
POS = REPO / "configs" / "finetune" / "pos.py"
PROTOCOL = REPO / "configs" / "experiments" / "deshpande.py"
STEPS, EVERY = 16, 4


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, pathlib.Path]:
    """Shared by every run of the module: tokenized shards and JAX's persistent compilation cache."""
    return {"shards": tmp_path_factory.mktemp("shards"), "jax_cache": tmp_path_factory.mktemp("jax_cache")}


def pretrain_overrides(dirs: dict[str, pathlib.Path]) -> dict[str, object]:
    return {
        "train.steps": STEPS, "train.checkpoint_every": EVERY, "train.max_to_keep": 1, "train.log_every": EVERY,
        "train.eval_every": 0, "train.compilation_cache": dirs["jax_cache"], "data.cache_dir": dirs["shards"],
        "corpus.source": "text:raw/lingua_leipzig_sample/{lang}.sentences.txt.gz",
    }


def apply(config, overrides: dict[str, object]):
    for key, value in overrides.items():
        *path, name = key.split(".")
        node = config
        for part in path:
            node = node[part]
        node[name] = type(node[name])(value) if not isinstance(node[name], str) else str(value)
    return config


def cli(overrides: dict[str, object]) -> list[str]:
    return [f"--config.{k}={v}" for k, v in overrides.items()]


def kill_chain(args: list[str], checkpoints: pathlib.Path, kills: list[str]) -> list[dict]:
    """Start `python -m ARGS` under each kill point in turn, then plainly; check each start resumed from the
    newest committed checkpoint. Returns per start: kill point, resumed step, committed steps after it and
    whether a temporary (uncommitted) checkpoint directory was left."""
    record = []
    for kill in [*kills, None]:
        before = chaos.committed_steps(checkpoints)
        t0 = time.perf_counter()
        done = chaos.run(args, kill=kill)
        output = done.stdout + done.stderr
        if kill is None:
            assert done.returncode == 0, output[-4000:]
        else:
            assert done.returncode == chaos.KILLED, f"{kill} was never reached:\n{output[-4000:]}"
            assert f"chaos: SIGKILL at {kill}" in output
        resumed = chaos.resumed_step(output)
        assert resumed == (before[-1] if before else None), (kill, before, resumed)
        leftover = checkpoints.is_dir() and any("orbax-checkpoint-tmp" in p.name for p in checkpoints.iterdir())
        record.append({"kill": kill, "resumed": resumed, "committed": chaos.committed_steps(checkpoints),
                       "tmp": leftover, "seconds": round(time.perf_counter() - t0, 1)})
    print("kill chain:", json.dumps(record))
    return record


def assert_same_state(checkpoints: pathlib.Path, reference: pathlib.Path, step: int) -> int:
    """The two runs' train states at `step` are equal bit for bit; returns the number of arrays compared."""
    got, want = chaos.state_arrays(checkpoints, step), chaos.state_arrays(reference, step)
    differ = chaos.different_arrays(got, want)
    assert not differ, f"{len(differ)} of {len(want)} arrays differ from the uninterrupted run's, e.g. {differ[:3]}"
    return len(want)


# -- pretraining -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrain_reference(data_dir, dirs, tmp_path_factory) -> pathlib.Path:
    """The uninterrupted run, in process (it also fills the compilation cache for the subprocesses)."""
    workdir = tmp_path_factory.mktemp("pretrain_reference")
    config = apply(runpy.run_path(str(BILINGUAL))["get_config"]("smoke"), pretrain_overrides(dirs))
    loop.run(config, workdir)
    return workdir


def pretrain_args(workdir: pathlib.Path, dirs: dict[str, pathlib.Path]) -> list[str]:
    return ["-m", "xlt_jax.train", f"--config={BILINGUAL}:smoke", f"--workdir={workdir}",
            *cli(pretrain_overrides(dirs))]


def test_pretraining_killed_three_times_ends_bit_identical(pretrain_reference, dirs, tmp_path):
    checkpoints = tmp_path / loop.CHECKPOINT_DIR
    record = kill_chain(pretrain_args(tmp_path, dirs), checkpoints, ["between_writes@2", "batch@6", "gc@1"])
    # Killed while step 8 was being written: step 4 (max_to_keep=1) is still there, the rest is temporary.
    assert record[0]["committed"] == [EVERY] and record[0]["tmp"]
    assert record[1]["resumed"] == EVERY
    # Killed while deleting the checkpoint before the newest: the newest was committed first.
    assert len(record[2]["committed"]) == 2 and record[3]["resumed"] == record[2]["committed"][-1]
    assert not record[-1]["tmp"]  # what killed saves left is removed when a run starts
    assert chaos.committed_steps(checkpoints) == [STEPS]
    assert assert_same_state(checkpoints, pretrain_reference / loop.CHECKPOINT_DIR, STEPS) > 80


SLOW_STEPS = 48  # 12 checkpoints: a random kill lands in a save more often


@pytest.mark.slow
def test_pretraining_survives_many_random_sigkills(data_dir, dirs, tmp_path):
    """SIGKILL at a uniformly random time of each start, rerun after each kill; a run that completes before
    its kill ends an episode (its final state must equal an uninterrupted run's bit for bit) and the next
    episode starts afresh, until `XLT_CHAOS_KILLS` (default 12) kills have struck."""
    overrides = {**pretrain_overrides(dirs), "train.steps": SLOW_STEPS}
    reference = tmp_path / "reference"
    loop.run(apply(runpy.run_path(str(BILINGUAL))["get_config"]("smoke"), overrides), reference)
    rng = random.Random(int(os.environ.get("XLT_CHAOS_SEED", "12")))
    wanted = int(os.environ.get("XLT_CHAOS_KILLS", "12"))
    kills: list[dict] = []
    episodes = 0
    while len(kills) < wanted:
        episodes += 1
        workdir = tmp_path / f"episode_{episodes}"
        args = ["-m", "xlt_jax.train", f"--config={BILINGUAL}:smoke", f"--workdir={workdir}", *cli(overrides)]
        checkpoints = workdir / loop.CHECKPOINT_DIR
        while True:
            before = chaos.committed_steps(checkpoints)
            proc = subprocess.Popen([chaos.sys.executable, *args], cwd=REPO, env=chaos.env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            delay = rng.uniform(2.0, 10.0)
            if len(kills) < wanted:
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
            output = proc.communicate(timeout=240)[0]
            resumed = chaos.resumed_step(output)
            if "parameters, vocabulary" in output:  # logged once the state is created or restored
                assert resumed == (before[-1] if before else None), (before, resumed, output[-3000:])
            if proc.returncode == 0:
                break
            assert proc.returncode == chaos.KILLED, output[-4000:]
            logged = re.findall(r"step (\d+)/\d+ \(", output)
            phase = f"after step {logged[-1]}" if logged else ("compiled" if "compiled the train step" in output
                                                                else "starting")
            kills.append({"episode": episodes, "at_s": round(delay, 1), "phase": phase, "resumed": resumed,
                          "committed": chaos.committed_steps(checkpoints)})
        assert assert_same_state(checkpoints, reference / loop.CHECKPOINT_DIR, SLOW_STEPS) > 80
    print(f"random SIGKILLs: {len(kills)} in {episodes} episodes, every episode bit-identical:", json.dumps(kills))


# -- fine-tuning -----------------------------------------------------------------------------------------------

FT_STEPS = 12


def finetune_overrides(pretrained: pathlib.Path) -> dict[str, object]:
    # 256 examples in batches of 32: 8 steps per epoch, so the 12 steps cross an epoch boundary (reshuffle).
    return {"pretrained": pretrained, "bucket": 64, "train.epochs": 2, "train.max_steps": FT_STEPS,
            "train.checkpoint_every": EVERY, "train.max_to_keep": 1, "train.log_every": EVERY}


@pytest.fixture(scope="module")
def finetune_reference(pretrain_reference, dirs, tmp_path_factory) -> pathlib.Path:
    """POS fine-tuned from the pretraining reference, uninterrupted and in process."""
    from xlt_jax.training import compile_cache

    workdir = tmp_path_factory.mktemp("finetune_reference")
    config = apply(runpy.run_path(str(POS))["get_config"]("smoke"), finetune_overrides(pretrain_reference))
    with compile_cache.persistent_cache(str(dirs["jax_cache"])):
        trainer.run(config, workdir)
    return workdir


def test_finetuning_killed_three_times_ends_bit_identical(finetune_reference, pretrain_reference, dirs, tmp_path):
    args = ["-m", "xlt_jax.finetune", f"--config={POS}:smoke", f"--workdir={tmp_path}",
            *cli(finetune_overrides(pretrain_reference))]
    checkpoints = tmp_path / "checkpoints"
    with pytest.MonkeyPatch.context() as patch:  # the fine-tuning config has no cache setting: JAX's own variables
        patch.setenv("JAX_COMPILATION_CACHE_DIR", str(dirs["jax_cache"]))
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
        record = kill_chain(args, checkpoints, ["between_writes@2", "batch@3", "save_in_flight@2"])
    assert record[0]["committed"] == [EVERY] and record[1]["resumed"] == EVERY
    assert record[2]["resumed"] == EVERY  # batch@3 struck at step 7, before the step-8 save
    assert chaos.committed_steps(checkpoints) == [FT_STEPS]
    assert assert_same_state(checkpoints, finetune_reference / "checkpoints", FT_STEPS) > 50


# -- the protocol runner ---------------------------------------------------------------------------------------

PROTOCOL_ARG = ("lang=en,transform=inv,tasks=pos,crosslingual=false,smoke,steps=4,ft_steps=4,ft_examples=128,"
                "eval_examples=32")


def protocol_overrides(dirs: dict[str, pathlib.Path]) -> dict[str, object]:
    out: dict[str, object] = {"compilation_cache": dirs["jax_cache"]}
    for model in ("bilingual", "monolingual"):
        out[f"pretrain.{model}.data.cache_dir"] = dirs["shards"]
        out[f"pretrain.{model}.train.checkpoint_every"] = 2
    out["pretrain.bilingual.corpus.source"] = "conllu:ud/en_ewt/train.conllu.gz"
    out["pretrain.monolingual.model.num_langs"] = 2  # the bilingual model's shapes: compiled once
    out["finetune.pos.train.checkpoint_every"] = 2
    return out


@pytest.fixture(scope="module")
def protocol_reference(data_dir, dirs, tmp_path_factory) -> pathlib.Path:
    from xlt_jax.experiments import protocol

    workdir = tmp_path_factory.mktemp("protocol_reference")
    config = apply(runpy.run_path(str(PROTOCOL))["get_config"](PROTOCOL_ARG), protocol_overrides(dirs))
    protocol.run(config, workdir, out=lambda _: None)
    return workdir


def markers(workdir: pathlib.Path) -> dict[str, bytes]:
    return {str(p.parent.relative_to(workdir)): p.read_bytes() for p in workdir.rglob("DONE.json")}


def test_protocol_killed_three_times_runs_each_step_once_and_writes_each_row_once(protocol_reference, dirs,
                                                                                 tmp_path):
    args = ["-m", "xlt_jax.experiments.protocol", f"--config={PROTOCOL}:{PROTOCOL_ARG}", f"--workdir={tmp_path}",
            *cli(protocol_overrides(dirs))]
    kills = ["between_writes@2", "rows_appended@1", "marker@2"]
    ran: list[list[str]] = []
    for kill in [*kills, None]:
        before = markers(tmp_path)
        done = chaos.run(args, kill=kill)
        output = done.stdout + done.stderr
        assert done.returncode == (0 if kill is None else chaos.KILLED), (kill, done.stdout[-3000:], output[-3000:])
        started = re.findall(r"^\[\d+/\d+\] (\S+): (?!done)", done.stdout, flags=re.M)
        ran.append(started)
        assert not set(started) & set(before), f"finished steps ran again: {set(started) & set(before)}"
        after = markers(tmp_path)
        assert {k: after[k] for k in before} == before, "a DONE.json was rewritten"
        if kill == "rows_appended@1":  # pretrain/bilingual resumed from its step-2 checkpoint
            assert re.search(r"resumed from \S+pretrain/bilingual/checkpoints at step 2", output)
    print("protocol starts ran:", json.dumps(ran))
    assert ran[1][:4] == ["pretrain/bilingual", "pretrain/monolingual", "finetune/pos/bilingual-original-s42",
                          "evaluate/pos/BZ-s42"]
    assert ran[2][:2] == ["evaluate/pos/BZ-s42", "finetune/pos/bilingual-derived-s42"]

    rows = results.read_rows(tmp_path)
    reference = results.read_rows(protocol_reference)
    cell = lambda r: (r.model, r.setting, r.lang, r.train_transform, r.eval_transform, r.metric)  # noqa: E731
    assert len(rows) == len(reference) == 10
    assert sorted(map(cell, rows)) == sorted(map(cell, reference))  # each cell once: none lost or doubled
    assert {cell(r): r.value for r in rows} == {cell(r): r.value for r in reference}
    ft = json.loads((tmp_path / "finetune/pos/bilingual-derived-s42/DONE.json").read_text())["summary"]
    assert ft == {"start_step": 4, "final_step": 4}  # killed before its marker: resumed, nothing retrained
    assert set(markers(tmp_path)) == set(markers(protocol_reference))


# -- SIGTERM: graceful preemption ------------------------------------------------------------------------------


def start_and_signal_after(args: list[str], line: str, sig: int) -> tuple[int, str]:
    """Start `python ARGS`, send `sig` once `line` appears in its output; (exit status, whole output)."""
    proc = subprocess.Popen([chaos.sys.executable, *args], cwd=REPO, env=chaos.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for text in proc.stdout:
        lines.append(text)
        if line in text:
            proc.send_signal(sig)
            break
    lines += proc.stdout.readlines()
    return proc.wait(timeout=120), "".join(lines)


def test_sigterm_saves_the_next_step_exits_0_and_the_rerun_ends_bit_identical(pretrain_reference, dirs, tmp_path):
    args = pretrain_args(tmp_path, dirs)
    status, output = start_and_signal_after(args, "compiled the train step", signal.SIGTERM)
    assert status == 0, output[-4000:]
    saved = re.search(r"preempted: pretraining saved step (\d+) in \S+ and stopped; rerun the same command", output)
    assert saved, output[-4000:]
    step = int(saved.group(1))
    assert 1 <= step < STEPS and step % EVERY  # the step boundary after the signal, not a scheduled save
    checkpoints = tmp_path / loop.CHECKPOINT_DIR
    assert chaos.committed_steps(checkpoints)[-1] == step
    print(f"SIGTERM after compiling: saved step {step}, exit status {status}")
    rerun = chaos.run(args)
    assert rerun.returncode == 0 and chaos.resumed_step(rerun.stderr) == step, rerun.stderr[-3000:]
    assert assert_same_state(checkpoints, pretrain_reference / loop.CHECKPOINT_DIR, STEPS) > 80
