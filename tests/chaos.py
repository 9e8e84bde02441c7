"""Hard kills for the resumption tests (a helper module, and the wrapper a killed run is started with).

    python tests/chaos.py POINT@N -- -m xlt_jax.train --config=... --workdir=...

runs the binary module as `python -m` would (its `run_main()`), except that the process SIGKILLs itself (no cleanup, no
atexit, no flush: as a lost VM or the OOM killer) the N-th time it reaches POINT, after printing
`chaos: SIGKILL at POINT@N` to stderr. The points are moments that matter for resumption:

  between_writes   inside an async checkpoint save, between its two writes: Orbax writes the (small,
                   synchronous) iterator-state item first, then starts the state arrays' write
  save_in_flight   just after `Checkpointer.save` returned: the arrays are being written and committed in
                   Orbax's background threads
  batch            the input pipeline hands over a batch (pretraining: in the prefetch thread, which runs
                   ahead of the step being computed; fine-tuning: right before the step)
  gc               while Orbax deletes a checkpoint beyond `max_to_keep` (half of its files are gone)
  rows_appended    an evaluation's rows are in results.jsonl, its DONE.json is not
  marker           a protocol step finished, its DONE.json is not written yet

The helpers start these runs and the plain reruns, and compare the final states of two runs bit for bit.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading

REPO = pathlib.Path(__file__).resolve().parents[1]
KILLED = -signal.SIGKILL


def _die(point: str) -> None:
    sys.stderr.write(f"chaos: SIGKILL at {point}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _counting(point: str, nth: int):
    """A function that kills the process on its `nth` call, thread-safely."""
    calls = [0]
    lock = threading.Lock()

    def tick() -> None:
        with lock:
            calls[0] += 1
            hit = calls[0] == nth
        if hit:
            _die(f"{point}@{nth}")

    return tick


def _wrap(owner: object, name: str, tick, *, after: bool = False) -> None:
    """Replace `owner.name` by a version that ticks before or after calling the original."""
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        if not after:
            tick()
        result = original(*args, **kwargs)
        if after:
            tick()
        return result

    setattr(owner, name, wrapped)


def install(spec: str) -> None:
    """Arm one kill point, `POINT@N`."""
    point, _, nth = spec.partition("@")
    tick = _counting(point, int(nth or 1))
    if point == "between_writes":
        from xlt_jax.training import checkpointing

        _wrap(checkpointing.DataStateHandler, "save", tick, after=True)
    elif point == "save_in_flight":
        from xlt_jax.training import checkpointing

        _wrap(checkpointing.Checkpointer, "save", tick, after=True)
    elif point == "batch":
        from xlt_jax.training import loop, partitioning

        _wrap(loop._Trainer, "_prepare_batch", tick)  # pretraining: the prefetch thread
        from xlt_jax.finetuning import trainer

        trainer.partitioning = _module_with(partitioning, "global_batch", tick)  # fine-tuning: the main thread
    elif point == "gc":
        from orbax.checkpoint._src.path import deleter

        def half_then_die(self, path, *args, **kwargs):
            files = sorted(p for p in pathlib.Path(os.fspath(path)).rglob("*") if p.is_file())
            for p in files[: len(files) // 2]:
                p.unlink()
            tick()
            return original(self, path, *args, **kwargs)

        original = deleter.PathDeleter.delete
        deleter.PathDeleter.delete = half_then_die
    elif point == "rows_appended":
        from xlt_jax import results

        _wrap(results, "append_rows", tick, after=True)
    elif point == "marker":
        from xlt_jax.experiments import markers

        _wrap(markers, "write_marker", tick)  # the runner calls it as markers.write_marker
    else:
        raise SystemExit(f"chaos: unknown kill point {point!r}")


def _module_with(module, name: str, tick):
    """A stand-in for `module` whose `name` kills on the N-th call (other attributes pass through)."""
    import types

    proxy = types.ModuleType(module.__name__)
    proxy.__dict__.update(module.__dict__)
    original = getattr(module, name)

    def wrapped(*args, **kwargs):
        tick()
        return original(*args, **kwargs)

    setattr(proxy, name, wrapped)
    return proxy


# -- running binaries ------------------------------------------------------------------------------


def env(**extra: str) -> dict[str, str]:
    """The environment of a child run: this worktree's code first, CPU devices as in the tests."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "JAX_PLATFORMS": "cpu", **extra}


def run(module_args: list[str], *, kill: str | None = None, timeout: float = 240, **env_extra: str
        ) -> subprocess.CompletedProcess:
    """Run `python -m MODULE ARGS` (plain), or under the kill point `kill` ("POINT@N")."""
    prefix = [sys.executable, str(pathlib.Path(__file__)), kill, "--"] if kill else [sys.executable]
    return subprocess.run([*prefix, *module_args], cwd=REPO, env=env(**env_extra), capture_output=True, text=True,
                          timeout=timeout)


def resumed_step(output: str) -> int | None:
    """The step a run said it resumed from (None: it started fresh)."""
    found = re.findall(r"resumed (?:fine-tuning )?from \S+ at step (\d+)", output)
    return int(found[-1]) if found else None


def committed_steps(checkpoint_dir: pathlib.Path) -> list[int]:
    """Step directories Orbax has committed (renamed from their temporary name)."""
    if not checkpoint_dir.is_dir():
        return []
    return sorted(int(p.name) for p in checkpoint_dir.iterdir() if p.name.isdigit())


def state_arrays(checkpoint_dir: pathlib.Path, step: int) -> dict[str, bytes]:
    """{path: raw bytes} of every array of a checkpoint's train state (params, optimizer slots, step, RNG)."""
    import jax
    import numpy as np

    from xlt_jax.training import checkpointing

    ckpt = checkpointing.Checkpointer(checkpoint_dir, max_to_keep=100)
    try:
        state, _ = ckpt.restore(step)
    finally:
        ckpt.close()
    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    return {jax.tree_util.keystr(path): np.asarray(leaf).tobytes() for path, leaf in flat}


def different_arrays(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--" or argv[3] != "-m":
        raise SystemExit("usage: python tests/chaos.py POINT@N -- -m MODULE ARGS...")
    install(argv[1])
    name, args = argv[4], argv[5:]
    sys.argv = [name, *args]
    # The binaries' `run_main`, called on the imported module: a `runpy` copy would not see the patches.
    importlib.import_module(name).run_main()


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main(sys.argv)
