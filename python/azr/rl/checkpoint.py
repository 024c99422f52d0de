"""Crash-safe directory writes for checkpoints and exported weights.

A checkpoint is written into a temporary sibling directory and moved into place with ``rename``,
so the directory at the target path is always either the previous complete checkpoint or the new
complete one. POSIX cannot atomically swap two non-empty directories, so replacing an existing
checkpoint takes two renames; if the process dies between them, the previous checkpoint survives
under a fixed backup name and :func:`resolve_checkpoint` finds it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_directory", "resolve_checkpoint"]


def _backup_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary directory; on normal exit it replaces ``target`` atomically.

    On an exception the temporary directory is removed and ``target`` is left untouched.
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir()
    try:
        yield tmp
        # Data must be on disk before the rename makes it visible as complete.
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    backup = _backup_path(target)
    if target.exists():
        # A leftover backup is older than the current target (a swap that was interrupted after
        # its second rename); it is safe to drop.
        shutil.rmtree(backup, ignore_errors=True)
        target.rename(backup)
    tmp.rename(target)
    _fsync_dir(target.parent)
    shutil.rmtree(backup, ignore_errors=True)


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The complete checkpoint directory to read for ``path``.

    Normally ``path`` itself; if a save was interrupted between its two renames, the previous
    checkpoint's backup.
    """
    path = Path(path).absolute()
    if path.is_dir():
        return path
    backup = _backup_path(path)
    if backup.is_dir():
        return backup
    raise FileNotFoundError(f"no checkpoint at {os.fspath(path)!r}")
