"""`azr train --nproc 2` stopped the hard ways: a rank killed, SIGTERM to the launcher, Ctrl-C.

Real runs of the tiny preset (torchrun, two gloo ranks, the real executor with its zygotes),
about half a minute each on two cores. Every process the job started is accounted for
through /proc: none may outlive it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from azr.run.checkpoints import CheckpointStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc"),
]


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            ppid = _parent(int(entry.name))
            if ppid is not None:
                parents[int(entry.name)] = ppid
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


def _start(out: Path, steps: int, *, session: bool = False) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "azr", "train", "--nproc", "2", "--preset", "tiny-cpu"]
    args += ["--set", f"run.output_dir={out}", "--set", f"run.steps={steps}"]
    args += ["--set", "run.progress=false", "--set", "learner.distributed.timeout_s=30"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with (out.parent / f"{out.name}.log").open("wb") as log:  # the child keeps its own copy
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=session
        )


def _wait_for(condition: object, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert proc.poll() is None, f"the job ended early ({proc.returncode})"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def _metrics_lines(out: Path) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _log(out: Path) -> str:
    return (out.parent / f"{out.name}.log").read_text(errors="replace")[-4000:]


def _ended_without_orphans(proc: subprocess.Popen[bytes], family: set[int], since: float) -> int:
    try:
        status = proc.wait(timeout=60 - (time.monotonic() - since))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the job did not end within 60 s") from None
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = sorted(pid for pid in family if _alive(pid))
    assert not left, f"processes outlived the job: {left}"
    return status


def test_a_killed_rank_ends_the_job_without_orphans(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    proc = _start(out, steps=1000)
    try:
        _wait_for(lambda: _metrics_lines(out) >= 1, 150, proc)
        family = _descendants(proc.pid)
        follower = [pid for pid in family if _rank_of(pid) == 1 and _parent(pid) == proc.pid]
        assert len(follower) == 1, family
        # Zygotes and sandboxed workers of rank 0's executor are part of the family too.
        assert len(family) > 3
        killed_at = time.monotonic()
        os.kill(follower[0], signal.SIGKILL)
        status = _ended_without_orphans(proc, family, killed_at)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status != 0, _log(out)
    # What was committed before the kill is intact.
    store = CheckpointStore(out / "checkpoints")
    published = store.published()
    if published is not None:
        store.verify(published)


def test_sigterm_to_the_launcher_stops_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    proc = _start(out, steps=1000)
    try:
        _wait_for(lambda: (out / "checkpoints" / "latest").exists(), 150, proc)
        family = _descendants(proc.pid)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status = _ended_without_orphans(proc, family, stopped_at)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status != 0, _log(out)
    log = _log(out)
    assert "stopped by signal SIGTERM" in log, log
    store = CheckpointStore(out / "checkpoints")
    newest = store.published()
    assert newest is not None and newest >= 1
    learner = store.verify(newest) / "learner"
    assert (learner / "shards" / ".metadata").is_file()
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert newest in [line["step"] for line in lines if "checkpoint" in line]


def test_ctrl_c_at_a_terminal_stops_cleanly(tmp_path: Path) -> None:
    """Ctrl-C at a terminal signals the whole foreground process group, not just the launcher."""
    out = tmp_path / "interrupted"
    # Its own process group, as a terminal's foreground job has: killpg reaches all of it.
    proc = _start(out, steps=1000, session=True)
    try:
        _wait_for(lambda: (out / "checkpoints" / "latest").exists(), 150, proc)
        family = _descendants(proc.pid)
        ranks = [pid for pid in family if _rank_of(pid) is not None and _parent(pid) == proc.pid]
        assert len(ranks) == 2, family
        # A rank in the terminal's process group would get Ctrl-C twice, from the terminal and
        # from torchrun, and take the second for "stop now". torchrun starts each in a session
        # of its own, so only its forwarded signal arrives.
        assert all(os.getpgid(pid) != os.getpgid(proc.pid) for pid in ranks)
        stopped_at = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        status = _ended_without_orphans(proc, family, stopped_at)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = _log(out)
    assert status != 0, log
    assert "stopped by signal SIGINT" in log, log
    store = CheckpointStore(out / "checkpoints")
    newest = store.published()
    assert newest is not None and newest >= 1
    assert (store.verify(newest) / "learner" / "shards" / ".metadata").is_file()
