"""A full disk is recognised whatever words the writer used."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from azr.errors import DiskFull
from azr.run.disk import disk_full_errors, is_disk_full


def test_the_ways_writers_say_the_disk_is_full(tmp_path: Path) -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path)
    assert is_disk_full(RuntimeError("I/O error: No space left on device (os error 28)"), tmp_path)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path)
    # torch's zip writer drops the errno: only a full file system makes it a full disk.
    torn = RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos 576 vs 534")
    assert not is_disk_full(torn, tmp_path)


def test_disk_full_errors_name_what_was_written(tmp_path: Path) -> None:
    with (
        pytest.raises(DiskFull, match=r"writing checkpoint step-000003 to .* free"),
        disk_full_errors("checkpoint step-000003", tmp_path),
    ):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(PermissionError), disk_full_errors("x", tmp_path):
        raise PermissionError(errno.EACCES, "Permission denied")
