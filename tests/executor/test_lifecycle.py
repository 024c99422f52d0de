"""Shutdown by close, context exit, garbage collection or Ctrl-C leaves nothing behind."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from executor_support import child_pids

from azr.executor import Executor


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_context_exit_stops_every_worker() -> None:
    before = child_pids()
    with Executor(workers=2) as e:
        e.run("def f():\n    return 1")
        zygotes = child_pids() - before
        assert len(zygotes) == 2
    assert not any(alive(p) for p in zygotes)


def test_garbage_collection_stops_workers() -> None:
    before = child_pids()
    e = Executor(workers=1)
    e.run("def f():\n    return 1")
    zygotes = child_pids() - before
    assert zygotes
    del e
    gc.collect()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in zygotes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in zygotes)


SCRIPT = textwrap.dedent(
    """
    import os, sys
    from azr.executor import Executor, Job, Limits
    ex = Executor(workers=2, limits=Limits(wall_timeout_s=30, cpu_time_s=30))
    ex.run("def f():\\n    return 1")
    print(os.getpid(), flush=True)
    try:
        ex.run_batch([Job("def f():\\n    while True: pass")] * 100)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise
    """
)


def test_ctrl_c_interrupts_a_batch_and_cleans_up() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as p:
        assert p.stdout is not None
        pid = int(p.stdout.readline())
        time.sleep(0.5)
        start = time.monotonic()
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            # Fail now rather than wait in Popen.__exit__ for 100 endless jobs of 30 s each.
            p.kill()
            p.communicate()
            pytest.fail("the batch was still running 20 s after SIGINT")
    assert time.monotonic() - start < 10
    assert "interrupted" in out, err
    assert "KeyboardInterrupt" in err
    assert p.returncode != 0
    # Nothing of the child interpreter survives it: no zygote, no running program.
    leftovers = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(") ", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid or int(fields[3]) == pid:
                leftovers.append(int(entry))
    assert leftovers == []


def test_killed_host_takes_its_workers_along() -> None:
    script = textwrap.dedent(
        """
        import os, time
        from azr.executor import Executor
        ex = Executor(workers=2)
        ex.run("def f():\\n    return 1")
        print(os.getpid(), flush=True)
        time.sleep(60)
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None
        pid = int(p.stdout.readline())
        zygotes = [int(e) for e in os.listdir("/proc") if e.isdigit() and _ppid(int(e)) == pid]
        assert len(zygotes) == 2
        p.kill()
        p.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(alive(z) for z in zygotes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(z) for z in zygotes)


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(") ", 1)[1].split()[1])
    except OSError:
        return -1


def test_directories_of_dead_hosts_are_swept() -> None:
    import tempfile
    from pathlib import Path

    # A pid that cannot be alive (above the kernel's pid_max).
    stale = Path(tempfile.gettempdir()) / "azr-exec-4194399-0"
    stale.mkdir(exist_ok=True)
    (stale / "leftover").write_text("x")
    with Executor(workers=1):
        pass
    assert not stale.exists()
