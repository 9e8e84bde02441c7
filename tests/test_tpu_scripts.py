"""The tpu/ scripts, run for real against a recording fake `gcloud` (first on PATH): exact commands, the
relaunch after a simulated preemption, --dry-run printing the same commands and running none, the
worker-side tpu/remote.sh run locally, and shellcheck on every script.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TPU = REPO / "tpu"
SCRIPTS = sorted(p.name for p in TPU.glob("*.sh") if p.name != "lib.sh")
ZONE = ["--zone", "europe-west4-a"]
PAPER = ["python", "-m", "xlt_jax.train", "--config", "configs/pretrain/bilingual.py:lang=en,transform=inv",
         "--workdir", "runs/en_inv"]  # the paper's run: roberta8, seq 512, batch 128, 500k steps (config defaults)

FAKE_GCLOUD = """#!{python}
import json, os, sys
home = os.environ["FAKE_GCLOUD_DIR"]
argv = sys.argv[1:]
with open(os.path.join(home, "calls.jsonl"), "a") as f:
    f.write(json.dumps(argv) + "\\n")
key = ("describe" if "describe" in argv else "status" if any("remote.sh status" in a for a in argv)
       else "ls" if argv[:2] == ["storage", "ls"] else None)
if argv[:4] == ["compute", "tpus", "tpu-vm", "scp"] and os.path.exists(os.path.join(home, "payload.tgz")):
    if ":" in argv[4] and ":" not in argv[5]:  # remote -> local: deliver the canned archive
        import shutil
        shutil.copy(os.path.join(home, "payload.tgz"), argv[5])
path = os.path.join(home, key or "-")
if key and os.path.exists(path):
    lines = open(path).read().splitlines()
    if len(lines) > 1:  # consume; the last answer repeats
        open(path, "w").write("\\n".join(lines[1:]) + "\\n")
    answer = lines[0]
    if answer.startswith("!"):  # "!CODE message": fail like gcloud
        code, _, message = answer[1:].partition(" ")
        print(message, file=sys.stderr)
        sys.exit(int(code))
    print(answer)
"""


class Fake:
    """The fake gcloud's directory: canned answers per kind (describe, status, ls) and the recorded calls."""

    def __init__(self, root: pathlib.Path):
        self.dir = root / "gcloud"
        self.bin = root / "bin"
        self.dir.mkdir()
        self.bin.mkdir()
        gcloud = self.bin / "gcloud"
        gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable))
        gcloud.chmod(0o755)
        self.env = {**os.environ, "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
                    "FAKE_GCLOUD_DIR": str(self.dir), "TMPDIR": str(root), "POLL": "0"}
        for name in ("TPU_NAME", "ZONE", "ACCELERATOR", "RUNTIME", "PROJECT", "REMOTE_DIR"):
            self.env.pop(name, None)

    def answer(self, kind: str, *lines: str) -> None:
        (self.dir / kind).write_text("".join(f"{line}\n" for line in lines))

    def calls(self) -> list[list[str]]:
        path = self.dir / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def clear(self) -> None:
        (self.dir / "calls.jsonl").unlink(missing_ok=True)

    def run(self, script: str, *args: str, check: bool = True, cwd: pathlib.Path | None = None, timeout: int = 120):
        done = subprocess.run(["bash", str(TPU / script), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=cwd)
        if check:
            assert done.returncode == 0, f"{script} {args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done


@pytest.fixture
def fake(tmp_path) -> Fake:
    return Fake(tmp_path)


def ssh_command(call: list[str]) -> list[str]:
    """The words of an `ssh --command` string, as the worker's shell splits them."""
    return shlex.split(call[call.index("--command") + 1])


def dry_run_gcloud(stdout: str) -> list[list[str]]:
    return [words[1:] for line in stdout.splitlines() if not line.startswith("#")
            for words in [shlex.split(line)] if words[0] == "gcloud"]


# -- create / delete ---------------------------------------------------------------------------------


def test_create_on_demand_spot_and_queued(fake):
    fake.run("create.sh")
    fake.run("create.sh", "--spot", "--name", "paper", "--accelerator=v3-8")
    fake.run("create.sh", "--queued", "--spot", "--valid-until", "6h", "--accelerator", "v4-32",
             "--zone", "us-central2-b", "--project", "proj", "--version", "tpu-ubuntu2204-base")
    assert fake.calls() == [
        ["compute", "tpus", "tpu-vm", "create", "xlt-jax", *ZONE, "--accelerator-type", "v3-8",
         "--version", "tpu-ubuntu2204-base"],
        ["compute", "tpus", "tpu-vm", "create", "paper", *ZONE, "--accelerator-type", "v3-8",
         "--version", "tpu-ubuntu2204-base", "--spot"],
        ["compute", "tpus", "queued-resources", "create", "xlt-jax-qr", "--node-id", "xlt-jax",
         "--zone", "us-central2-b", "--accelerator-type", "v4-32", "--runtime-version", "tpu-ubuntu2204-base",
         "--spot", "--valid-until-duration", "6h", "--project", "proj"],
    ]


def test_create_wait_polls_until_ready_and_fails_on_preemption(fake):
    fake.answer("describe", "CREATING", "CREATING", "READY")
    fake.run("create.sh", "--wait")
    assert [c[3] for c in fake.calls()] == ["create", "describe", "describe", "describe"]
    assert fake.calls()[1] == ["compute", "tpus", "tpu-vm", "describe", "xlt-jax", *ZONE, "--format=value(state)"]
    fake.clear()
    fake.answer("describe", "ACCEPTED", "ACTIVE")
    fake.run("create.sh", "--queued", "--wait")
    assert fake.calls()[-1][:5] == ["compute", "tpus", "queued-resources", "describe", "xlt-jax-qr"]
    assert fake.calls()[-1][-1] == "--format=value(state.state)"
    fake.answer("describe", "PREEMPTED")
    failed = fake.run("create.sh", "--wait", check=False)
    assert failed.returncode != 0 and "PREEMPTED" in failed.stderr


def test_delete_vm_or_queued_resource(fake):
    fake.run("delete.sh")
    fake.run("delete.sh", "--queued")
    assert fake.calls() == [
        ["compute", "tpus", "tpu-vm", "delete", "xlt-jax", *ZONE, "--quiet"],
        ["compute", "tpus", "queued-resources", "delete", "xlt-jax-qr", *ZONE, "--force", "--quiet"],
    ]


# -- setup / launch / logs ---------------------------------------------------------------------------


def test_setup_copies_the_checkout_and_installs_on_every_worker(fake, tmp_path):
    fake.run("setup.sh", "--no-data")
    scp, ssh = fake.calls()
    assert scp == ["compute", "tpus", "tpu-vm", "scp", f"{tmp_path}/xlt_jax-xlt-jax.tgz", "xlt-jax:/tmp/xlt_jax.tgz",
                   *ZONE, "--worker=all"]
    assert ssh[:7] == ["compute", "tpus", "tpu-vm", "ssh", "xlt-jax", *ZONE] and "--worker=all" in ssh
    assert ssh_command(ssh) == ["mkdir", "-p", "xlt_jax", "&&", "tar", "-C", "xlt_jax", "-xzf", "/tmp/xlt_jax.tgz",
                                "&&", "bash", "xlt_jax/tpu/remote.sh", "install", "--extras", "tfds,tpu",
                                "--python", "python3.11", "--no-data"]


def test_setup_tarball_holds_the_code_not_the_data(tmp_path):
    """The archive setup.sh ships (kept here by a dry run's tar line, executed for real)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run(["bash", str(TPU / "setup.sh"), "--dry-run"], env=env, capture_output=True, text=True,
                         check=True).stdout
    tar_line = next(shlex.split(line) for line in out.splitlines() if line.startswith("tar "))
    subprocess.run(tar_line, check=True)
    with tarfile.open(tmp_path / "xlt_jax-xlt-jax.tgz") as tar:
        names = tar.getnames()
    assert "./tpu/remote.sh" in names and "./setup.py" in names and "./xlt_jax/train.py" in names
    assert not any(n.split("/")[1:2] in ([".git"], [".venv"], ["data"], ["runs"]) or "__pycache__" in n for n in names)


def test_launch_runs_the_command_on_all_workers(fake):
    tricky = "--config.mesh.shape=(1,8,1)"  # parentheses: must reach the worker's shell quoted
    fake.run("launch.sh", "--", *PAPER, tricky)
    (ssh,) = fake.calls()
    assert ssh[:8] == ["compute", "tpus", "tpu-vm", "ssh", "xlt-jax", *ZONE, "--worker=all"]
    assert ssh_command(ssh) == ["cd", "xlt_jax", "&&", "bash", "tpu/remote.sh", "start", "en_inv", "--", *PAPER,
                                tricky]


def test_launch_options_reach_the_worker(fake):
    fake.run("launch.sh", "--run", "paper", "--sync", "gs://bucket/en_inv", "--sync-every", "300",
             "--env", "TFDS_DATA_DIR=/mnt/tfds", "--remote-dir", "code", "--", *PAPER)
    assert ssh_command(fake.calls()[0]) == [
        "cd", "code", "&&", "bash", "tpu/remote.sh", "start", "paper", "--sync", "gs://bucket/en_inv",
        "--sync-every", "300", "--env", "TFDS_DATA_DIR=/mnt/tfds", "--", *PAPER]


def test_launch_passes_a_gs_workdir_through(fake):
    """The binaries write gs:// workdirs themselves: the command reaches the workers as given, no --sync."""
    command = [*PAPER[:-1], "gs://bucket/xlt/en_inv"]
    fake.run("launch.sh", "--", *command)
    (ssh,) = fake.calls()
    assert ssh_command(ssh) == ["cd", "xlt_jax", "&&", "bash", "tpu/remote.sh", "start", "en_inv", "--", *command]


def test_launch_refuses_what_cannot_work(fake):
    for args, message in [
        ((), "no command"),
        (("--", "python", "-m", "xlt_jax.train"), "no --workdir"),
        (("--sync", "gs://b/copy", "--", "python", "-m", "xlt_jax.train", "--workdir", "gs://b/run"),
         "already in Cloud Storage"),
        (("--sync", "/local", "--", *PAPER), "gs://"),
        (("--bogus", "--", *PAPER), "unknown option --bogus"),
        (("--run",), "--run needs a value"),
    ]:
        done = fake.run("launch.sh", *args, check=False)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert fake.calls() == []


def test_launch_wait_returns_the_run_outcome(fake):
    fake.answer("status", "running", "running", "exit 0")
    fake.run("launch.sh", "--wait", "--", *PAPER)
    calls = fake.calls()
    assert len(calls) == 4 and all("--worker=0" in c for c in calls[1:])
    assert ssh_command(calls[1])[-3:] == ["tpu/remote.sh", "status", "en_inv"]
    fake.answer("status", "exit 1")
    assert fake.run("launch.sh", "--wait", "--", *PAPER, check=False).returncode == 1


def test_logs_streams_a_workers_log(fake):
    fake.run("logs.sh", "--run", "en_inv")
    fake.run("logs.sh", "--run", "en_inv", "--worker", "all", "--lines", "5", "--no-follow")
    first, second = fake.calls()
    assert "--worker=0" in first and ssh_command(first) == ["cd", "xlt_jax", "&&", "tail", "-n", "100", "-F",
                                                            "logs/en_inv.log"]
    assert "--worker=all" in second and ssh_command(second)[3:] == ["tail", "-n", "5", "logs/en_inv.log"]


# -- watch: relaunch and recreate ----------------------------------------------------------------------


def test_watch_recreates_a_preempted_spot_vm_and_resumes(fake):
    fake.answer("describe", "PREEMPTED", "CREATING", "READY")
    fake.run("watch.sh", "--once", "--spot", "--sync", "gs://bucket/en_inv", "--", *PAPER)
    calls = fake.calls()
    assert [c[3] for c in calls] == ["describe", "delete", "create", "describe", "describe", "scp", "ssh", "ssh"]
    assert calls[1] == ["compute", "tpus", "tpu-vm", "delete", "xlt-jax", *ZONE, "--quiet"]
    assert calls[2] == ["compute", "tpus", "tpu-vm", "create", "xlt-jax", *ZONE, "--accelerator-type", "v3-8",
                        "--version", "tpu-ubuntu2204-base", "--spot"]
    assert ssh_command(calls[6])[:3] == ["mkdir", "-p", "xlt_jax"]  # setup on the new VM
    assert "--worker=all" in calls[7]
    assert ssh_command(calls[7]) == ["cd", "xlt_jax", "&&", "bash", "tpu/remote.sh", "start", "en_inv", "--sync",
                                     "gs://bucket/en_inv", "--", *PAPER]


def test_watch_recreates_a_queued_resource_whose_node_is_gone(fake):
    fake.answer("describe", "!1 ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: node xlt-jax", "ACTIVE")
    fake.run("watch.sh", "--once", "--queued", "--spot", "--", *PAPER)
    calls = fake.calls()
    assert calls[1] == ["compute", "tpus", "queued-resources", "delete", "xlt-jax-qr", *ZONE, "--force", "--quiet"]
    assert calls[2][:4] == ["compute", "tpus", "queued-resources", "create"] and "--spot" in calls[2]
    assert ssh_command(calls[-1])[5:] == ["start", "en_inv", "--", *PAPER]


def test_watch_relaunches_a_dead_run_and_stops_when_it_finished(fake):
    fake.answer("describe", "READY")
    for status, relaunched in [("dead", True), ("none", True), ("exit 1", True), ("running", False),
                               ("exit 0", False)]:
        fake.clear()
        fake.answer("status", status)
        fake.run("watch.sh", "--once", "--", *PAPER)
        calls = fake.calls()
        assert [c[3] for c in calls[:2]] == ["describe", "ssh"]
        starts = [c for c in calls if "remote.sh start" in c[-1]]
        assert len(starts) == int(relaunched), status
        assert not any(c[3] in ("delete", "create") for c in calls)
    fake.answer("describe", "CREATING")
    fake.clear()
    fake.run("watch.sh", "--once", "--", *PAPER)
    assert [c[3] for c in fake.calls()] == ["describe"]  # not ready yet: wait


def test_watch_loops_until_done_and_gives_up_after_max_restarts(fake):
    fake.answer("describe", "READY")
    fake.answer("status", "dead", "running", "exit 0")
    fake.run("watch.sh", "--interval", "0", "--", *PAPER, timeout=30)  # a loop that never ends: fails, not hangs
    assert sum("remote.sh start" in c[-1] for c in fake.calls()) == 1
    fake.clear()
    fake.answer("status", "exit 1")
    done = fake.run("watch.sh", "--interval", "0", "--max-restarts", "2", "--", *PAPER, check=False, timeout=30)
    assert done.returncode == 2 and "giving up" in done.stderr
    assert sum("remote.sh start" in c[-1] for c in fake.calls()) == 2


# -- fetch / sweep -------------------------------------------------------------------------------------


def test_fetch_from_worker_zero_or_cloud_storage(fake, tmp_path):
    payload = tmp_path / "src"
    payload.mkdir()
    (payload / "results.jsonl").write_text('{"metric": "accuracy"}\n')
    with tarfile.open(fake.dir / "payload.tgz", "w:gz") as tar:
        tar.add(payload / "results.jsonl", arcname="./results.jsonl")
    fake.run("fetch.sh", "runs/en_inv", cwd=tmp_path)
    ssh, scp = fake.calls()
    assert "--worker=0" in ssh and ssh_command(ssh) == [
        "cd", "xlt_jax", "&&", "tar", "-C", "runs/en_inv", "--exclude=checkpoints", "-czf",
        "/tmp/xlt-fetch-en_inv.tgz", "."]
    assert scp == ["compute", "tpus", "tpu-vm", "scp", "xlt-jax:/tmp/xlt-fetch-en_inv.tgz",
                   "runs/en_inv/.fetch.tgz", *ZONE, "--worker=0"]
    assert (tmp_path / "runs/en_inv/results.jsonl").read_text() == '{"metric": "accuracy"}\n'
    assert not (tmp_path / "runs/en_inv/.fetch.tgz").exists()
    fake.clear()
    fake.run("fetch.sh", "gs://bucket/en_inv/", str(tmp_path / "out"))
    fake.run("fetch.sh", "--checkpoints", "gs://bucket/en_inv", str(tmp_path / "out"))
    assert fake.calls() == [
        ["storage", "rsync", "-r", "--exclude=(^|.*/)checkpoints/.*", "gs://bucket/en_inv", str(tmp_path / "out")],
        ["storage", "rsync", "-r", "gs://bucket/en_inv", str(tmp_path / "out")],
    ]


def test_sweep_runs_the_protocol_cells_in_turn(fake):
    fake.answer("status", "exit 0")
    fake.run("sweep.sh", "--langs", "en", "--transforms", "inv syntax:hi", "--sync-root", "gs://b/grid")
    starts = [ssh_command(c) for c in fake.calls() if "remote.sh start" in c[-1]]
    assert starts == [
        ["cd", "xlt_jax", "&&", "bash", "tpu/remote.sh", "start", cell, "--sync", f"gs://b/grid/{cell}", "--",
         "python", "-m", "xlt_jax.experiments.protocol", "--config",
         f"configs/experiments/deshpande.py:lang=en,transform={t},model=roberta8", "--workdir",
         f"runs/protocol/{cell}"]
        for cell, t in [("en_inv", "inv"), ("en_syntax_hi", "syntax:hi")]
    ]


# -- every script: --help, --dry-run ------------------------------------------------------------------

DRY_RUNS = {
    "create.sh": ["--spot", "--wait"],
    "delete.sh": [],
    "setup.sh": [],
    "launch.sh": ["--wait", "--sync", "gs://b/en_inv", "--", *PAPER],
    "logs.sh": ["--run", "en_inv"],
    "watch.sh": ["--spot", "--", *PAPER],
    "fetch.sh": ["runs/en_inv"],
    "sweep.sh": ["--langs", "en", "--transforms", "inv"],
}


def test_every_script_has_help(fake):
    assert set(SCRIPTS) == {*DRY_RUNS, "remote.sh"}
    for script in SCRIPTS:
        done = fake.run(script, "--help")
        assert done.stdout.startswith("Usage"), script
        if script != "remote.sh":  # the worker side takes no gcloud options
            assert "--dry-run" in done.stdout and 'source "$(dirname "$0")/lib.sh"' in (TPU / script).read_text()
    assert fake.calls() == []


@pytest.mark.parametrize("script", sorted(DRY_RUNS))
def test_dry_run_prints_the_commands_and_runs_nothing(fake, tmp_path, script):
    fake.answer("describe", "READY")
    fake.answer("status", "exit 0")
    dry = fake.run(script, "--dry-run", *DRY_RUNS[script], cwd=tmp_path)
    assert fake.calls() == [] and not (tmp_path / "runs").exists()
    printed = dry_run_gcloud(dry.stdout)
    assert printed, dry.stdout
    if script in ("launch.sh", "create.sh", "delete.sh", "logs.sh", "setup.sh", "sweep.sh"):
        # Without --dry-run the same gcloud commands run, in the same order (polls answered at once).
        fake.run(script, *DRY_RUNS[script], cwd=tmp_path)
        assert fake.calls() == printed


def test_dry_run_of_watch_shows_the_check_the_relaunch_and_the_recreation(fake):
    out = fake.run("watch.sh", "--dry-run", "--spot", "--", *PAPER).stdout
    verbs = [c[3] for c in dry_run_gcloud(out)]
    assert verbs == ["describe", "ssh", "ssh", "delete", "create", "describe", "scp", "ssh", "ssh"]
    assert fake.calls() == []


# -- the worker side, run here -------------------------------------------------------------------------


@pytest.fixture
def checkout(tmp_path) -> pathlib.Path:
    """A worker's checkout: tpu/remote.sh and a .venv whose activate script leaves a mark."""
    root = tmp_path / "checkout"
    (root / "tpu").mkdir(parents=True)
    shutil.copy(TPU / "remote.sh", root / "tpu" / "remote.sh")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "activate").write_text("export VENV_ACTIVE=yes\n")
    return root


def remote(fake, checkout, *args, **env):
    base = {k: v for k, v in fake.env.items() if k != "XLT_DATA_DIR"}
    done = subprocess.run(["bash", str(checkout / "tpu" / "remote.sh"), *args], capture_output=True, text=True,
                          env={**base, "XLT_WORKER_ID": "0", "HOME": str(checkout.parent), **env}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def wait_for_end(fake, checkout, run: str) -> str:
    for _ in range(200):
        status = remote(fake, checkout, "status", run)
        if status != "running":
            return status
        time.sleep(0.05)
    raise AssertionError("still running")


def test_remote_start_detaches_and_records_the_exit_status(fake, checkout):
    assert remote(fake, checkout, "status", "r") == "none"
    script = 'echo "venv=$VENV_ACTIVE init=$XLT_DISTRIBUTED_INITIALIZE data=$XLT_DATA_DIR x=$X"; exit 3'
    out = remote(fake, checkout, "start", "r", "--env", "X=1", "--", "bash", "-c", script)
    assert out.startswith("started r on worker 0")
    assert wait_for_end(fake, checkout, "r") == "exit 3"
    log = (checkout / "logs" / "r.log").read_text()
    assert f"venv=yes init=1 data={checkout.parent}/xlt_data x=1" in log


def test_remote_start_is_idempotent_and_status_sees_a_killed_run(fake, checkout):
    remote(fake, checkout, "start", "s", "--", "sleep", "30")
    assert remote(fake, checkout, "status", "s") == "running"
    assert "already running" in remote(fake, checkout, "start", "s", "--", "sleep", "30")
    pid = int((checkout / "logs" / "s.pid").read_text())
    assert os.getpgid(pid) == pid  # its own session and group: killing the group ends the run only
    os.killpg(pid, 9)
    for _ in range(100):
        if remote(fake, checkout, "status", "s") == "dead":
            break
        time.sleep(0.05)
    assert remote(fake, checkout, "status", "s") == "dead"  # a relaunch by watch.sh will resume it


def test_remote_sync_restores_then_copies_the_workdir(fake, checkout):
    fake.answer("ls", "gs://b/w/config.json")
    remote(fake, checkout, "start", "w", "--sync", "gs://b/w", "--", "bash", "-c", "true", "--workdir", "runs/w")
    assert wait_for_end(fake, checkout, "w") == "exit 0"
    assert fake.calls() == [
        ["storage", "ls", "gs://b/w"],
        ["storage", "rsync", "-r", "gs://b/w", "runs/w"],  # restore before starting
        ["storage", "rsync", "-r", "--delete-unmatched-destination-objects", "runs/w", "gs://b/w"],  # final copy
    ]
    fake.clear()
    fake.answer("ls", "!1 ERROR: one or more URLs matched no objects")
    remote(fake, checkout, "start", "v", "--sync", "gs://b/v", "--", "bash", "-c", "true", "--workdir", "runs/v",
           XLT_WORKER_ID="1")
    assert wait_for_end(fake, checkout, "v") == "exit 0"
    assert fake.calls() == [["storage", "ls", "gs://b/v"]]  # nothing to restore; only worker 0 copies


# -- shellcheck ---------------------------------------------------------------------------------------


def test_shellcheck_passes_on_every_script_and_ci():
    if shutil.which("shellcheck") is None:
        if os.environ.get("XLT_REQUIRE_EXTRAS") == "1":
            pytest.fail("shellcheck is required here (XLT_REQUIRE_EXTRAS=1): apt-get install -y shellcheck")
        pytest.skip("shellcheck not installed (apt-get install -y shellcheck)")
    files = [*sorted(str(p) for p in TPU.glob("*.sh")), str(REPO / ".ci" / "run")]
    done = subprocess.run(["shellcheck", "-x", *files], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout
