"""Shifted clocks for the determinism check: each validation run sees a different time of day.

A proposal whose result depends on the clock (``datetime.date.today()``, the minute of
``datetime.now()``) is not a task: its gold answer changes while it sits in a buffer. The
determinism check runs a program several times and compares the results, so the runs must see
different clocks for such a program to be caught; two runs a millisecond apart see the same
date, hour and minute.

:func:`clocked_job` is the one place that gives a validation job its clock. Run ``i`` of the
check sees the wall clock shifted forward by ``i * ValidationConfig.clock_step_s`` (by default
400 days, 3 hours, 17 minutes and 29.25 seconds: every calendar field from the year down to the
second, and the weekday, differs between two runs).

How the shift is applied: the executor has no clock setting of its own yet, so the job's
program is prefixed with a short harness that, inside the sandboxed child and before the
program runs, replaces the clock readers of ``time`` (``time``, ``time_ns``, ``localtime``,
``gmtime``, ``ctime``, ``monotonic``, ``perf_counter`` and their ``_ns`` forms) and the
``datetime.datetime`` / ``datetime.date`` classes of ``datetime`` with shifted ones. It runs only
in the child (never in this process), defines and leaves no global name, and is applied to every
run of the check (run 0 with a zero shift) so that the runs differ in nothing but the clock.
Once the executor can give a job a clock of its own, this function is where that setting goes.
"""

from __future__ import annotations

from typing import Final

from azr.executor import Job

__all__ = ["DEFAULT_CLOCK_STEP_S", "clock_harness", "clocked_job"]

DEFAULT_CLOCK_STEP_S: Final = 400 * 86_400 + 3 * 3_600 + 17 * 60 + 29.25
"""400 days, 3 h, 17 min, 29.25 s: year, month, day, weekday, hour, minute and second all move."""

_HARNESS: Final = """\
def __azr_shift_clock(offset):
    import datetime as _dt
    import time as _t

    real_time, real_ns = _t.time, _t.time_ns
    shift_ns = int(offset * 1_000_000_000)

    def shifted():
        return real_time() + offset

    def pick(secs):
        return shifted() if secs is None else secs

    local, gm, ctime = _t.localtime, _t.gmtime, _t.ctime
    _t.time = shifted
    _t.time_ns = lambda: real_ns() + shift_ns
    _t.localtime = lambda secs=None: local(pick(secs))
    _t.gmtime = lambda secs=None: gm(pick(secs))
    _t.ctime = lambda secs=None: ctime(pick(secs))
    for name in ("monotonic", "perf_counter"):
        real = getattr(_t, name)
        real_n = getattr(_t, name + "_ns")
        setattr(_t, name, lambda real=real: real() + offset)
        setattr(_t, name + "_ns", lambda real_n=real_n: real_n() + shift_ns)

    base_datetime, base_date = _dt.datetime, _dt.date

    class datetime(base_datetime):
        @classmethod
        def now(cls, tz=None):
            return cls.fromtimestamp(shifted(), tz)

        @classmethod
        def today(cls):
            return cls.fromtimestamp(shifted())

        @classmethod
        def utcnow(cls):
            return cls.utcfromtimestamp(shifted())

    class date(base_date):
        @classmethod
        def today(cls):
            return cls.fromtimestamp(shifted())

    for cls in (datetime, date):
        cls.__module__ = "datetime"
        cls.__qualname__ = cls.__name__
    _dt.datetime, _dt.date = datetime, date


__azr_shift_clock({offset!r})
del __azr_shift_clock
"""

_FUTURE: Final = "from __future__ import"


def clock_harness(offset_s: float) -> str:
    """The source that shifts the sandboxed child's clocks by ``offset_s`` seconds."""
    return _HARNESS.format(offset=float(offset_s))


def clocked_job(
    program: str, inputs: str, *, hash_seed: int, random_seed: int, offset_s: float
) -> Job:
    """A job running ``program`` on ``inputs`` with the clocks shifted by ``offset_s`` seconds.

    ``from __future__`` imports must open a module, so the harness goes after them.
    """
    lines = program.split("\n")
    head = 0
    while head < len(lines) and lines[head].startswith(_FUTURE):
        head += 1
    future = "\n".join(lines[:head])
    rest = "\n".join(lines[head:])
    text = (future + "\n" if future else "") + clock_harness(offset_s) + "\n" + rest
    return Job(text, inputs, hash_seed=hash_seed, random_seed=random_seed)
