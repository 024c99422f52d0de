"""One trainer per output folder: an advisory lock on ``<output_dir>/run.lock``.

``flock`` belongs to the open file, so the kernel releases it however the holder ends (SIGKILL
included), and a stale lock file left behind locks nothing. The file holds the holder's pid, for
the refusal message only. The descriptor is close-on-exec: servers the trainer launches never
inherit (and so never prolong) the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from azr.errors import RunLocked

__all__ = ["LOCK_FILE", "hold_run_lock"]

LOCK_FILE: Final = "run.lock"


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return "pid unknown"
    return f"pid {text}" if text.isdigit() else "pid unknown"


@contextlib.contextmanager
def hold_run_lock(output_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the run lock of ``output_dir`` (which must exist) for the ``with`` block.

    Raises :class:`~azr.errors.RunLocked`, naming the holder's pid, when another process holds it.
    """
    path = Path(output_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise RunLocked(
                f"{output_dir} is in use by another trainer ({_holder(fd)}); wait for it to end "
                "or choose another run.output_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
