r"""Pretraining binary: `python -m xlt_jax.train --config configs/pretrain/X.py:ARGS --workdir DIR`.

Overrides: `--config.train.steps=1000 --config.mesh.shape='(2,4,1)'`. The config is locked, so a key that
does not exist is an error before anything runs. Rerunning the same command resumes from DIR's last
checkpoint. Multi-host: set `--config.distributed.coordinator_address=HOST:PORT` with
`num_processes`/`process_id` (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) on every host.
"""

from __future__ import annotations

import difflib
import logging as py_logging
import runpy
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from xlt_jax.errors import ConfigError, XltError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Pretraining config file (configs/pretrain/*.py:ARGS).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, tokenizer and config.")
flags.mark_flags_as_required(["config", "workdir"])


def _config_file_arg(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def unknown_override(config: ml_collections.ConfigDict, argv: list[str]) -> str | None:
    """A readable message for the first `--config.a.b=...` whose key does not exist, else None."""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config."):].split("=", 1)[0]
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
    """absl flag parsing, with a clear message when a `--config.` override names no existing key."""
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


def _innermost_config_error(error: BaseException) -> ConfigError | None:
    """config_flags re-wraps errors of `get_config` (with a traceback in the text); find the original."""
    found, seen = None, set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ConfigError):
            found = error
        error = error.__cause__ or error.__context__
    return found


class _QuietLibraries(py_logging.Filter):
    """Orbax logs a dozen INFO lines per checkpoint; keep its warnings, drop the chatter."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.get_absl_handler().addFilter(_QuietLibraries())
    from xlt_jax.training import loop  # after flag parsing: keeps `--help` and flag errors fast

    try:
        loop.run(_CONFIG.value, _WORKDIR.value)
    except (XltError, loop.TrainingDiverged) as e:
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(f"error: {e}")


def run_main() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run_main()
