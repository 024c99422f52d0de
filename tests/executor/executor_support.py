"""Helpers shared by the executor tests: process and descriptor accounting from /proc."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from azr.executor import Limits

CRUXEVAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cruxeval"


def cruxeval_rows() -> list[dict[str, str]]:
    path = CRUXEVAL / "cruxeval-dev.jsonl"
    if not path.exists():
        pytest.skip("the CRUXEval sample is not present beside the checkout")
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, state) of every process, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # exited while we looked
        # The command name (field 2) may contain spaces and parentheses; split after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        out.append((int(entry), int(fields[1]), fields[0]))
    return out


def child_pids() -> set[int]:
    """Direct children of this process (the executor's zygotes)."""
    me = os.getpid()
    return {pid for pid, ppid, _ in processes() if ppid == me}


def descendants(root: int) -> list[tuple[int, str]]:
    """(pid, state) of every process below root."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for pid, ppid, state in processes():
        parents.setdefault(ppid, []).append((pid, state))
    found, stack = [], [root]
    while stack:
        for pid, state in parents.get(stack.pop(), []):
            found.append((pid, state))
            stack.append(pid)
    return found


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


FAST = Limits(wall_timeout_s=1.0, cpu_time_s=1.0, memory_bytes=256 * 1024 * 1024)
