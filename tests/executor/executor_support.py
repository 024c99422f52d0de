"""Helpers shared by the executor tests: process and descriptor accounting from /proc."""

from __future__ import annotations

import json
import os
from pathlib import Path

from azr.executor import Limits

CRUXEVAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cruxeval"


def cruxeval_rows() -> list[dict[str, str]]:
    path = CRUXEVAL / "cruxeval-dev.jsonl"
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def child_pids() -> set[int]:
    """Direct children of this process (the executor's zygotes), from /proc."""
    me = os.getpid()
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # Field 4 is the parent pid; the command name (field 2) may contain spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me:
            out.add(int(entry))
    return out


def descendants(root: int) -> list[tuple[int, str]]:
    """(pid, state) of every process below root."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents.setdefault(int(fields[1]), []).append((int(entry), fields[0]))
    found, stack = [], [root]
    while stack:
        for pid, state in parents.get(stack.pop(), []):
            found.append((pid, state))
            stack.append(pid)
    return found


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


FAST = Limits(wall_timeout_s=1.0, cpu_time_s=1.0, memory_bytes=256 * 1024 * 1024)
