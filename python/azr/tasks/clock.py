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
``datetime.datetime`` / ``datetime.date`` classes of ``datetime`` with shifted ones. Most
programs import nothing, and compiling the patch costs a child about as much as running a
typical program (importing ``datetime`` four times that), so the harness only installs an
import hook: the patch is compiled and applied when the program first imports a module that is
not loaded yet, and ``datetime`` is patched as it is imported. The harness runs only in the
child (never in this process) and defines and leaves no global name. Run 0 (no shift) runs the
program as it is, exactly as answers are later checked against its output, so the harness
costs only the repeated runs: about 0.35 ms of child CPU each (``benches/validation.py``).
Once the executor can give a job a clock of its own, this function is where that setting goes.
"""

from __future__ import annotations

from typing import Final

from azr.executor import Job

__all__ = ["DEFAULT_CLOCK_STEP_S", "clock_harness", "clocked_job"]

DEFAULT_CLOCK_STEP_S: Final = 400 * 86_400 + 3 * 3_600 + 17 * 60 + 29.25
"""400 days, 3 h, 17 min, 29.25 s: year, month, day, weekday, hour, minute and second all move."""

_PATCH: Final = """\
import time as t

now, ns, shift_ns = t.time, t.time_ns, int(offset * 1e9)
shifted = t.time = lambda: now() + offset
t.time_ns = lambda: ns() + shift_ns
for name in ("localtime", "gmtime", "ctime"):
    setattr(t, name, lambda s=None, f=getattr(t, name): f(shifted() if s is None else s))
for name in ("monotonic", "perf_counter"):
    setattr(t, name, lambda f=getattr(t, name): f() + offset)
    setattr(t, name + "_ns", lambda f=getattr(t, name + "_ns"): f() + shift_ns)


def patch(module):
    base_datetime, base_date = module.datetime, module.date

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
    module.datetime, module.date = datetime, date


class DatetimeHook:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "datetime":
            return None
        sys.meta_path.remove(DatetimeHook)
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                run = spec.loader.exec_module
                spec.loader.exec_module = lambda m: (run(m), patch(m))
                return spec


if "datetime" in sys.modules:
    patch(sys.modules["datetime"])
else:
    sys.meta_path.insert(0, DatetimeHook)
"""
"""Shifts ``time`` and ``datetime``; compiled and run in the child only once the program
imports a module that is not loaded yet (nothing already loaded that a program may import
reads the clock), or at once if ``datetime`` is loaded."""

_HARNESS: Final = """\
def __azr_shift_clock(offset, source):
    import sys

    def run(*spec):
        sys.meta_path.remove(Hook)
        scope = {{"offset": offset, "sys": sys}}
        exec(source, scope)
        return scope["DatetimeHook"].find_spec(*spec) if spec else None

    Hook = type("Hook", (), {{"find_spec": staticmethod(run)}})
    sys.meta_path.insert(0, Hook)
    if "datetime" in sys.modules:
        run()


__azr_shift_clock({offset!r}, {patch!r})
del __azr_shift_clock
"""

_FUTURE: Final = "from __future__ import"


def clock_harness(offset_s: float) -> str:
    """The source that shifts the sandboxed child's clocks by ``offset_s`` seconds."""
    return _HARNESS.format(offset=float(offset_s), patch=_PATCH)


def clocked_job(
    program: str, inputs: str, *, hash_seed: int, random_seed: int, offset_s: float
) -> Job:
    """A job running ``program`` on ``inputs`` with the clocks shifted by ``offset_s`` seconds.

    ``from __future__`` imports must open a module, so the harness goes after them. With no
    shift the program runs as it is.
    """
    if offset_s == 0:
        return Job(program, inputs, hash_seed=hash_seed, random_seed=random_seed)
    lines = program.split("\n")
    head = 0
    while head < len(lines) and lines[head].startswith(_FUTURE):
        head += 1
    future = "\n".join(lines[:head])
    rest = "\n".join(lines[head:])
    text = (future + "\n" if future else "") + clock_harness(offset_s) + "\n" + rest
    return Job(text, inputs, hash_seed=hash_seed, random_seed=random_seed)
