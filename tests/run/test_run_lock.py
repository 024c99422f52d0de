"""The run lock: one holder per output folder, released however the holder ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from azr.errors import RunLocked
from azr.run.lock import LOCK_FILE, hold_run_lock


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    with hold_run_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"), hold_run_lock(tmp_path):
            pass
    with hold_run_lock(tmp_path):  # released on exit
        pass


def test_the_lock_dies_with_a_killed_holder(tmp_path: Path) -> None:
    holder = textwrap.dedent(
        f"""
        import sys, time
        from azr.run.lock import hold_run_lock
        with hold_run_lock({str(tmp_path)!r}):
            print("held", flush=True)
            time.sleep(60)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None and process.stdout.readline() == "held\n"
            with pytest.raises(RunLocked, match=f"pid {process.pid}"), hold_run_lock(tmp_path):
                pass
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
    # The lock file is still there (stale), but it locks nothing.
    assert (tmp_path / LOCK_FILE).exists()
    with hold_run_lock(tmp_path):
        pass
