"""Shifted clocks for the determinism check: each validation run sees a different time of day.

A proposal whose result depends on the clock (``datetime.date.today()``, the minute of
``datetime.now()``) is not a task: its gold answer changes while it sits in a buffer. The
determinism check runs a program several times and compares the results, so the runs must see
different clocks for such a program to be caught; two runs a millisecond apart see the same
date, hour and minute.

:func:`clocked_job` is the one place that gives a validation job its clock. Run ``i`` of the
check sees the wall clock shifted forward by ``i * ValidationConfig.clock_step_s`` (by default
400 days, 3 hours, 17 minutes and 29.25 seconds: every calendar field from the year down to the
second, and the weekday, differs between two runs). The shift is the executor's own
``Job.clock_offset_s``: the sandboxed child's trusted start-up code shifts every wall clock the
program can read before the program runs, so the program text is never altered and run 0 (no
shift) is exactly the run that answers are later checked against.
"""

from __future__ import annotations

from typing import Final

from azr.executor import Job

__all__ = ["DEFAULT_CLOCK_STEP_S", "clocked_job"]

DEFAULT_CLOCK_STEP_S: Final = 400 * 86_400 + 3 * 3_600 + 17 * 60 + 29.25
"""400 days, 3 h, 17 min, 29.25 s: year, month, day, weekday, hour, minute and second all move."""


def clocked_job(
    program: str, inputs: str, *, hash_seed: int, random_seed: int, offset_s: float
) -> Job:
    """A job running ``program`` on ``inputs`` with the wall clock shifted by ``offset_s``."""
    return Job(
        program, inputs, hash_seed=hash_seed, random_seed=random_seed, clock_offset_s=offset_s
    )
