"""Error types that name the offending file, line or config key."""

from __future__ import annotations

import os


class XltError(Exception):
    """Base class of every error xlt_jax raises on bad input."""


class DataFormatError(XltError, ValueError):
    """Malformed data file: the message names the file and, when known, the line."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        self.path = os.fspath(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(XltError, ValueError):
    """Invalid configuration: the message names the key."""


class DownloadError(XltError, RuntimeError):
    """A dataset could not be fetched or verified: the message names dataset and URL."""


class TransformError(XltError, ValueError):
    """Unknown transformation, or one that cannot apply to a task."""


class TrainingDiverged(XltError, RuntimeError):
    """The loss or gradient norm became NaN/Inf; the run stopped without saving that state."""


class Preempted(Exception):
    """SIGTERM (a preemption notice) ended the run after saving a checkpoint; rerunning resumes there.

    Not an `XltError`: nothing failed, and the protocol runner must stop rather than go on with other steps.
    The binaries exit with status 0.
    """


class CheckpointError(XltError, RuntimeError):
    """No checkpoint of a run directory could be restored; the message lists what was wrong with each."""
