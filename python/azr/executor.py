"""The sandboxed executor: run untrusted Python programs fast, each in a fresh, isolated process.

Every execution is a child forked from a pre-warmed *zygote* interpreter (one per worker and hash
seed), so it starts from a clean interpreter state in well under a millisecond. The child applies
Landlock, a seccomp filter and rlimits to itself before it runs anything; the zygote watches it
from outside (wall clock, output caps) and reaps it; the Rust pool in this process talks to the
zygotes with the GIL released. Nothing a program does can leak into the next execution, and
nothing it returns is ever ``eval``-ed in this process: values come back as ``repr`` text plus a
marshalled encoding that Rust decodes and compares.

>>> with Executor() as ex:
...     ex.run("def f(a, b):\\n    return a + b", "1, 2").value
'3'
"""

from __future__ import annotations

import contextlib
import enum
import os
import sys
import weakref
from collections.abc import Iterator, Sequence
from typing import Literal

import msgspec

from . import _executor
from .errors import ExecutorClosed, InvalidJob

__all__ = ["Execution", "Executor", "Job", "Limits", "Status", "values_equal"]


class Status(enum.StrEnum):
    """How an execution ended."""

    OK = "ok"
    """The program returned a value."""
    ERROR = "error"
    """The program raised (or exited before returning); ``Execution.error`` says what."""
    TIMEOUT = "timeout"
    """The wall-clock or CPU-time limit was reached."""
    MEMORY_LIMIT = "memory_limit"
    """The program ran out of its memory limit."""
    OUTPUT_LIMIT = "output_limit"
    """Stdout or the return value exceeded its cap."""
    VIOLATION = "violation"
    """The program tried something the sandbox forbids (processes, sockets, files, signals)."""
    CRASHED = "crashed"
    """The interpreter was killed by a signal (segfault, abort)."""
    INTERNAL = "internal"
    """The executor itself failed. Never a verdict on the program: retry or skip the sample."""


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Resource limits applied to every execution of one :class:`Executor`."""

    wall_timeout_s: float = 5.0
    """Wall-clock seconds before the child is killed from outside (status ``TIMEOUT``)."""
    cpu_time_s: float = 5.0
    """CPU seconds (RLIMIT_CPU, rounded up to whole seconds by the kernel's accounting)."""
    memory_bytes: int = 512 * 1024 * 1024
    """Address-space limit of the child (RLIMIT_AS); allocations beyond it fail."""
    max_output_bytes: int = 64 * 1024
    """Stdout kept; a program that prints more is stopped with ``OUTPUT_LIMIT``."""
    max_value_bytes: int = 256 * 1024
    """Longest ``repr`` of a return value (and half the cap on its encoding)."""
    max_source_bytes: int = 1024 * 1024
    """Largest program, input or expected text accepted; larger raises ``SourceTooLarge``."""
    recursion_limit: int = 1000
    """``sys.setrecursionlimit`` in the child (the program may raise it and crash itself)."""
    int_max_str_digits: int = 4300
    """``sys.set_int_max_str_digits`` in the child (0 disables the guard)."""
    capture_stdout: bool = True
    """Keep the program's stdout; when False it goes to /dev/null (slightly faster)."""

    def _as_tuple(self) -> tuple[float, float, int, int, int, int, int, int, bool]:
        return (
            float(self.wall_timeout_s),
            float(self.cpu_time_s),
            self.memory_bytes,
            self.max_output_bytes,
            self.max_value_bytes,
            self.max_source_bytes,
            self.recursion_limit,
            self.int_max_str_digits,
            self.capture_stdout,
        )


_CALL, _EVAL = 0, 1
_JobTuple = tuple[int, str, str, str | None, int, int, float, float | None, float, float, str]


class Job(msgspec.Struct, frozen=True):
    """One execution: ``exec(program)`` then ``f(<inputs>)``, or the value of one expression.

    ``inputs`` is argument-list text as in CRUXEval (``"'abc', [1, 2]"``). With ``expected``, the
    expected text is evaluated in its own sandbox too and :attr:`Execution.matched` says whether
    the two values are equal; the program never sees the expected value.
    """

    program: str
    inputs: str = ""
    expected: str | None = None
    hash_seed: int = 0
    """PYTHONHASHSEED of the interpreter that runs the job (0 .. 2**32-1)."""
    random_seed: int = 0
    """Seed of the ``random`` module before the program starts."""
    kind: Literal["call", "eval"] = "call"
    clock_offset_s: float = 0.0
    """Seconds added to every wall clock the program reads: ``time.time``, ``time.time_ns``,
    ``time.localtime``/``gmtime``/``ctime``/``asctime``/``strftime`` without an argument,
    ``time.clock_gettime(CLOCK_REALTIME)`` and ``datetime.datetime.now``/``today``/``utcnow``,
    ``datetime.date.today``. Give two runs of one program different offsets (e.g. 0 and
    ``37_315_951.3``: about 1.2 years and odd hours, minutes and seconds) and a program whose
    value depends on the date or time returns different values. Monotonic clocks and file
    timestamps are not shifted."""
    time_limit_s: float | None = None
    """Wall-clock and CPU limit of this job, below the executor's (None: ``Limits``)."""
    atol: float = 0.0
    """With ``expected``: absolute float tolerance of the comparison (see :func:`values_equal`)."""
    rtol: float = 0.0
    """With ``expected``: relative float tolerance, times the expected value's magnitude."""
    entry: str = "f"
    """The function ``inputs`` are passed to (the program may define others)."""

    @classmethod
    def eval(cls, text: str, *, expected: str | None = None, hash_seed: int = 0) -> Job:
        """A job that evaluates one expression (e.g. a predicted output) in the sandbox."""
        return cls(text, "", expected=expected, hash_seed=hash_seed, kind="eval")

    def _as_tuple(self) -> _JobTuple:
        return (
            _EVAL if self.kind == "eval" else _CALL,
            self.program,
            self.inputs,
            self.expected,
            self.hash_seed,
            self.random_seed,
            float(self.clock_offset_s),
            None if self.time_limit_s is None else float(self.time_limit_s),
            float(self.atol),
            float(self.rtol),
            self.entry,
        )


class Execution(msgspec.Struct, frozen=True):
    """The result of one job."""

    status: Status
    value: str | None
    """``repr`` of the return value, capped at ``Limits.max_value_bytes``."""
    error: str | None
    """What went wrong, e.g. ``"ZeroDivisionError: division by zero"``."""
    stdout: str
    """Captured stdout (invalid UTF-8 replaced), capped at ``Limits.max_output_bytes``."""
    wall_ms: float
    cpu_ms: float
    max_rss_kb: int
    """Peak resident memory of the child, including pages shared with its zygote."""
    matched: bool | None = None
    """With ``Job.expected``: whether the value equals the expected one. None without an
    expectation, or when the expected text itself could not be evaluated."""
    encoded: bytes | None = None
    """Opaque encoding of a plain-data value, for :func:`values_equal`; None for other values."""

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


_STATUS = {s.value: s for s in Status}
_RawExecution = tuple[
    str, str | None, str | None, str, float, float, int, bool | None, bytes | None
]


def _execution(t: _RawExecution) -> Execution:
    return Execution(_STATUS[t[0]], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8])


def values_equal(a: Execution, b: Execution, *, atol: float = 0.0, rtol: float = 0.0) -> bool:
    """Whether two executions returned equal plain-data values (Python ``==`` semantics on
    numbers, str, bytes, tuples, lists, dicts, sets; NaN equals NaN). Values of any other type
    never compare equal: an object with a lying ``__eq__`` cannot pass. Decoded and compared in
    Rust; nothing is unpickled or evaluated here, and the work is linear in the encodings' sizes
    however much of a value is shared.

    With ``atol``/``rtol``, numbers of which at least one is a float (or complex) are equal when
    ``|a - b| <= atol + rtol * |b|`` (``b`` is the expected value; infinities must match,
    integers and set members and dict keys stay exact)."""
    if a.encoded is None or b.encoded is None:
        return False
    return _executor.values_equal(a.encoded, b.encoded, atol, rtol)


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Executor:
    """A pool of sandboxed workers. Use as a context manager, or call :meth:`close`.

    Args:
        workers: parallel executions; None means one per available CPU.
        limits: applied to every job.
        python: the interpreter the workers run (default: this one).
    """

    def __init__(
        self,
        workers: int | None = None,
        limits: Limits | None = None,
        *,
        python: str | None = None,
    ) -> None:
        self._limits = limits if limits is not None else Limits()
        if not isinstance(self._limits, Limits):
            raise TypeError(f"limits must be azr.executor.Limits, not {type(limits).__name__}")
        n = _default_workers() if workers is None else workers
        self._pool = _executor.Pool(
            n, python or sys.executable, _executor.__file__, self._limits._as_tuple()
        )
        # Runs at close(), garbage collection or interpreter exit, whichever comes first.
        self._finalizer = weakref.finalize(self, self._pool.close)

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def workers(self) -> int:
        return self._pool.workers

    @property
    def closed(self) -> bool:
        return self._pool.closed

    def isolation(self) -> dict[str, object]:
        """Which isolation layers protect executions on this host.

        ``landlock_abi`` (0 when the kernel has none; then nothing is writable at all and reads
        are not confined), ``seccomp`` (process, socket, signal, IPC, scheduling, ioctl and
        xattr filtering), ``workdir_limit_bytes`` (the size of the tmpfs a program's files live
        in; 0 when the directory is a plain one), ``sandbox_uid`` (the user id children run as;
        0 when they keep the executor's), a boolean per host-dependent layer
        (``unprivileged_uid``, ``mount_namespace``, ``ipc_namespace``, ``network_namespace``,
        ``uts_namespace``, ``minimal_filesystem``, ``fresh_workdir``), ``unavailable``
        (layer -> why the host forbids it), ``rlimits``, ``process_session`` and
        ``private_job_data`` (always on), and the worker ``python``.
        """
        info = dict(self._pool.isolation())
        info["rlimits"] = True
        info["process_session"] = True
        # Jobs go straight from this process into their child: no zygote ever holds one.
        info["private_job_data"] = True
        return info

    def statistics(self) -> dict[str, int]:
        """Counters since start: executions, zygotes started and lost, internal errors, and
        rechecks (jobs re-run on a fresh zygote after the executor failed under them)."""
        return dict(self._pool.stats())

    def close(self) -> None:
        """Stops the workers. Running jobs end as ``INTERNAL``; idempotent."""
        self._finalizer()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._pool.closed:
            raise ExecutorClosed("the executor is closed")

    def run(
        self,
        program: str,
        inputs: str = "",
        *,
        expected: str | None = None,
        hash_seed: int = 0,
        random_seed: int = 0,
        clock_offset_s: float = 0.0,
        atol: float = 0.0,
        rtol: float = 0.0,
    ) -> Execution:
        """Runs ``exec(program)`` then ``f(<inputs>)`` in a fresh sandbox (see :class:`Job`)."""
        job = Job(
            program,
            inputs,
            expected=expected,
            hash_seed=hash_seed,
            random_seed=random_seed,
            clock_offset_s=clock_offset_s,
            atol=atol,
            rtol=rtol,
        )
        return self.run_batch([job])[0]

    def evaluate(self, text: str, *, expected: str | None = None) -> Execution:
        """Evaluates one expression in a fresh sandbox (``inf`` and ``nan`` are defined)."""
        return self.run_batch([Job.eval(text, expected=expected)])[0]

    def equal(self, a: str, b: str) -> bool:
        """Whether two value texts evaluate (each in its own sandbox) to equal plain values."""
        x, y = self.run_batch([Job.eval(a), Job.eval(b)])
        return x.ok and y.ok and values_equal(x, y)

    def run_suite(
        self,
        program: str,
        inputs: Sequence[str],
        *,
        expected: Sequence[str] | None = None,
        atol: float = 0.0,
        rtol: float = 0.0,
        entry: str = "f",
        time_limit_per_input: float | None = None,
        total_time_limit: float | None = None,
        stop_on_first_failure: bool = False,
        hash_seed: int = 0,
        random_seed: int = 0,
    ) -> list[Execution]:
        """Runs one program on many inputs (a test suite): a verdict per input, in order.

        Each input runs in its own sandboxed child, exactly as :meth:`run` does, so no input
        sees another's state. With ``expected`` (one value text per input) each
        :attr:`Execution.matched` says whether the value equals it, floats within
        ``atol + rtol * |expected|``, compared in Rust. ``time_limit_per_input`` lowers the
        executor's wall and CPU limits for each input; ``total_time_limit`` bounds the whole
        suite: inputs still waiting when it is spent are not run, and the first of them is
        reported as ``TIMEOUT``. With ``stop_on_first_failure`` the list ends at the first input
        that did not return (``status`` not ``OK``) or did not match. So a list shorter than
        ``inputs`` means the suite was cut short.
        """
        if expected is not None and len(expected) != len(inputs):
            raise InvalidJob(f"{len(expected)} expected values for {len(inputs)} inputs")
        for t in (time_limit_per_input, total_time_limit):
            if t is not None and not (0 < t <= 3600):
                raise InvalidJob("time limits must be in (0, 3600] seconds")

        def job(i: int, limit: float | None) -> Job:
            return Job(
                program,
                inputs[i],
                expected=None if expected is None else expected[i],
                hash_seed=hash_seed,
                random_seed=random_seed,
                time_limit_s=limit,
                atol=atol,
                rtol=rtol,
                entry=entry,
            )

        n = len(inputs)
        # Validate every job before running any.
        jobs = [job(i, time_limit_per_input) for i in range(n)]
        for j in jobs:
            self._pool.validate(_job_tuple(j))
        if not stop_on_first_failure and total_time_limit is None:
            return self.run_batch(jobs)
        import time

        start = time.monotonic()
        wave = max(1, self.workers)
        out: list[Execution] = []
        for lo in range(0, n, wave):
            limit = time_limit_per_input
            if total_time_limit is not None:
                left = total_time_limit - (time.monotonic() - start)
                if left <= 0:
                    out.append(_suite_timeout())
                    return out
                limit = left if limit is None else min(limit, left)
            batch = self.run_batch([job(i, limit) for i in range(lo, min(n, lo + wave))])
            for r in batch:
                out.append(r)
                if stop_on_first_failure and (r.status is not Status.OK or r.matched is False):
                    return out
        return out

    def run_batch(self, jobs: Sequence[Job]) -> list[Execution]:
        """Runs jobs in parallel across the workers; results in the order given."""
        raw = [_job_tuple(j) for j in jobs]
        self._check_open()
        with _unicode_is_invalid_job():
            return [_execution(t) for t in self._pool.run_batch(raw)]

    async def run_async(
        self,
        program: str,
        inputs: str = "",
        *,
        expected: str | None = None,
        hash_seed: int = 0,
        random_seed: int = 0,
        clock_offset_s: float = 0.0,
        atol: float = 0.0,
        rtol: float = 0.0,
    ) -> Execution:
        """:meth:`run` for trio: waits without blocking the event loop."""
        job = Job(
            program,
            inputs,
            expected=expected,
            hash_seed=hash_seed,
            random_seed=random_seed,
            clock_offset_s=clock_offset_s,
            atol=atol,
            rtol=rtol,
        )
        return (await self.run_batch_async([job]))[0]

    async def run_batch_async(self, jobs: Sequence[Job]) -> list[Execution]:
        """:meth:`run_batch` for trio. Cancelling the caller skips the jobs not yet started."""
        from ._trio_bridge import run_batch_async

        raw = [_job_tuple(j) for j in jobs]
        self._check_open()
        with _unicode_is_invalid_job():
            return [_execution(t) for t in await run_batch_async(self._pool, raw)]


@contextlib.contextmanager
def _unicode_is_invalid_job() -> Iterator[None]:
    # Text that cannot be encoded (lone surrogates) cannot reach a sandbox; the binding reports
    # it while converting the batch, before anything runs.
    try:
        yield
    except UnicodeEncodeError as e:
        raise InvalidJob(f"job text is not valid Unicode: {e.reason} at index {e.start}") from e


def _suite_timeout() -> Execution:
    return Execution(
        Status.TIMEOUT, None, "the suite's total time limit was reached", "", 0.0, 0.0, 0
    )


def _job_tuple(job: Job) -> _JobTuple:
    if not isinstance(job, Job):
        raise TypeError(f"expected azr.executor.Job, not {type(job).__name__}")
    return job._as_tuple()
