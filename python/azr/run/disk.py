"""A full disk reported as one: ``DiskFull`` naming what was being written and the space left.

Writers report a full file system in their own words: an ``OSError`` with ``ENOSPC``, safetensors
"No space left on device (os error 28)", torch's zip writer "enforce fail at
inline_container.cc" (it drops the errno). :func:`disk_full_errors` turns all of them into
:class:`~azr.errors.DiskFull`; checkpoints are written atomically, so the message can promise
that the newest committed checkpoint is untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from azr.errors import DiskFull

__all__ = ["disk_full_errors", "free_bytes", "is_disk_full"]

_WORDS: Final = ("no space left on device", "disk quota exceeded", "os error 28", "os error 122")
# torch's zip writer loses the errno; with this little room left, a failed write is a full disk.
_NEARLY_FULL: Final = 64 << 20


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged writer may still use on ``path``'s file system (its nearest
    existing ancestor), or None when that cannot be told."""
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        st = os.statvfs(where)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def is_disk_full(exc: BaseException, path: str | os.PathLike[str]) -> bool:
    """Whether ``exc``, raised writing under ``path``, means the file system is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    if any(word in text for word in _WORDS):
        return True
    if "inline_container" in text or "file write failed" in text:
        free = free_bytes(path)
        return free is not None and free < _NEARLY_FULL
    return False


def _mib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / (1 << 20):.1f} MiB"


@contextlib.contextmanager
def disk_full_errors(what: str, path: str | os.PathLike[str]) -> Iterator[None]:
    """Raise :class:`DiskFull` for a full-disk failure inside the block (``what`` is written to
    ``path``); any other error passes through unchanged."""
    try:
        yield
    except DiskFull:
        raise
    except (OSError, RuntimeError) as exc:
        if not is_disk_full(exc, path):
            raise
        raise DiskFull(
            f"no space left on the device writing {what} to {path} "
            f"({_mib(free_bytes(path))} free); free some space (or lower "
            "run.keep_checkpoints) and resume with --resume",
        ) from exc
