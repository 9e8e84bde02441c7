"""What every config-driven binary shares: `--config FILE:ARGS` (locked) and `--workdir DIR`, readable errors
for a mistyped `--config.a.b=...` override or a `ConfigError` from `get_config`, quieter library logs, and
the run wrapper that turns a package error into `error: ...` and exit status 1, and a preemption (SIGTERM,
after the checkpoint is saved) into a message and exit status 0.

The binaries (train, finetune, evaluate, the protocol runner) import their heavy modules only inside the
function they hand to `run`, so `--help` and flag errors stay fast.
"""

from __future__ import annotations

import difflib
import logging as py_logging
import runpy
import sys
from collections.abc import Callable, Sequence

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from xlt_jax import host_allocator
from xlt_jax.errors import ConfigError, Preempted, XltError

WORKDIR_HELP = "Directory for checkpoints, metrics, tokenizer, config and results; rerunning resumes there."


def define_flags(config_help: str, workdir_help: str = WORKDIR_HELP) -> None:
    """Define the required `--config` (locked: unknown override keys are errors) and `--workdir` flags."""
    config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
    flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flags_as_required(["config", "workdir"])


def unknown_override(config: ml_collections.ConfigDict, argv: Sequence[str]) -> str | None:
    """A readable message for the first `--config.a.b=...` whose key does not exist, else None."""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg.removeprefix("--config.").split("=", 1)[0]
        node, walked = config, []
        for part in path.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                keys = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                close = difflib.get_close_matches(part, keys, n=1)
                where = ".".join(walked) or "the top level"
                hint = f"; did you mean {'.'.join([*walked, close[0]])!r}?" if close else ""
                return (
                    f"unknown config key {path!r} in {arg!r}: {where} has no key {part!r} "
                    f"(it has: {', '.join(keys)}){hint}"
                )
            node, walked = node[part], [*walked, part]
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with a clear message when an override names no existing key or the config fails."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
        spec = _config_file_arg(argv)
        if spec is None:
            raise
        path, _, arg = spec.partition(":")
        try:
            config = runpy.run_path(path)["get_config"](arg or None)
        except Exception:  # noqa: BLE001 - report the original parsing error instead
            raise e from None
        message = unknown_override(config, argv)
        if message is None:
            raise
        sys.exit(f"error: {message}")
    except Exception as e:
        root = _innermost_config_error(e)
        if root is None:
            raise
        sys.exit(f"error: {root}")


def run(body: Callable[[ml_collections.ConfigDict, str], object], argv: list[str] | None = None) -> None:
    """`app.run` with the shared flag parsing; an `XltError` from `body(config, workdir)` (bad data or config,
    a diverged run) ends the process with `error: <message>` instead of a traceback, `Preempted` with its
    message on stderr and status 0 (the checkpoint is saved; the scheduler should just rerun the command)."""

    def main(args: list[str]) -> None:
        if len(args) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(args[1:])}")
        logging.get_absl_handler().addFilter(QuietLibraries())
        host_allocator.retain_freed_memory()  # before JAX starts its threads
        try:
            body(flags.FLAGS.config, flags.FLAGS.workdir)
        except XltError as e:
            logging.error("%s: %s", type(e).__name__, e)
            sys.exit(f"error: {e}")
        except Preempted as e:
            print(e, file=sys.stderr, flush=True)

    app.run(main, argv=argv, flags_parser=parse_flags)


class QuietLibraries(py_logging.Filter):
    """Orbax logs a dozen INFO lines per checkpoint; keep its warnings, drop the chatter."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname


def _config_file_arg(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _innermost_config_error(error: BaseException) -> ConfigError | None:
    """config_flags re-wraps errors of `get_config` (with a traceback in the text); find the original."""
    found, seen = None, set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ConfigError):
            found = error
        error = error.__cause__ or error.__context__
    return found
