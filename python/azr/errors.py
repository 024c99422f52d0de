"""The exception hierarchy of azr.

Everything azr raises on purpose derives from :class:`AzrError`. The compiled executor raises these
same classes (it imports them from here), so callers catch ordinary, documented Python types.
"""

from __future__ import annotations

__all__ = [
    "AzrError",
    "CheckpointError",
    "ConfigError",
    "DiskFull",
    "ExecutorClosed",
    "ExecutorError",
    "InvalidJob",
    "RunLocked",
    "SandboxUnavailable",
    "SourceTooLarge",
]


class AzrError(Exception):
    """Base class of every error azr raises deliberately."""


class ConfigError(AzrError, ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


class CheckpointError(AzrError):
    """A checkpoint is damaged, incomplete, or cannot be used to resume this run."""


class DiskFull(AzrError):
    """A write failed because the file system is full (or a quota is exhausted)."""


class RunLocked(AzrError):
    """Another trainer holds the run's output folder."""


class ExecutorError(AzrError):
    """The executor could not do what was asked (as opposed to the program failing)."""


class InvalidJob(ExecutorError, ValueError):
    """A job was rejected before running: wrong types, an empty program, a bad limit."""


class SourceTooLarge(InvalidJob):
    """A program, input or expected value is larger than ``Limits.max_source_bytes``."""


class ExecutorClosed(ExecutorError):
    """The executor was used after ``close()``."""


class SandboxUnavailable(ExecutorError):
    """The workers could not be started (no Python interpreter, or the sandbox failed to set up)."""
