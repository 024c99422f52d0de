"""Sans-IO plans: check logic written once, run synchronously or asynchronously, in batches.

A *plan* is a generator that yields the list of :class:`~azr.executor.Job` it needs next,
receives the matching list of :class:`~azr.executor.Execution` (same order), and finally returns
its result. Validation needs two rounds (run the program, then evaluate its output's ``repr``),
an answer check one; written as plans, neither knows whether it runs under trio or not.

:func:`run_plans` and :func:`run_plans_async` drive many plans together: each round gathers the
jobs of every unfinished plan, drops duplicates (one training step checks thousands of answers,
and identical answers to the same task are common), and sends them to the executor as one batch.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Final, Generic, Protocol, TypeVar

from azr.errors import InvalidJob
from azr.executor import Execution, Job, Status
from azr.tasks.types import Reason

__all__ = [
    "AsyncBatchRunner",
    "BatchRunner",
    "Plan",
    "Scheduler",
    "reason_for_status",
    "refused",
    "run_plans",
    "run_plans_async",
]

T = TypeVar("T")

Plan = Generator[list[Job], list[Execution], T]
"""Yields the jobs it needs, receives their executions, returns its result."""


class BatchRunner(Protocol):
    """What the synchronous driver needs of an executor."""

    def run_batch(self, jobs: Sequence[Job]) -> list[Execution]: ...


class AsyncBatchRunner(Protocol):
    """What the asynchronous driver needs of an executor."""

    async def run_batch_async(self, jobs: Sequence[Job]) -> list[Execution]: ...


_STATUS_REASON: Final[dict[Status, Reason]] = {
    Status.OK: Reason.OK,
    Status.ERROR: Reason.ERROR,
    Status.TIMEOUT: Reason.TIMEOUT,
    Status.MEMORY_LIMIT: Reason.LIMIT,
    Status.OUTPUT_LIMIT: Reason.LIMIT,
    Status.VIOLATION: Reason.VIOLATION,
    Status.CRASHED: Reason.CRASHED,
    Status.INTERNAL: Reason.INTERNAL,
}


def reason_for_status(status: Status) -> Reason:
    """The reason code for an execution status (``OK`` maps to :attr:`Reason.OK`)."""
    return _STATUS_REASON.get(status, Reason.INTERNAL)


_REFUSED = (InvalidJob, UnicodeEncodeError)
"""What the executor raises for a job it will not start: too large, malformed, or text that
cannot be sent because it holds lone surrogates."""


def refused(exc: Exception) -> Execution:
    """An execution standing for a job the executor refused to start.

    Plans check sizes and encodings of what the model wrote before building jobs, so this only
    happens when the executor's own limits are tighter than the plan's, or a caller's gold text
    is malformed; the job's content is then at fault, which is what an ``ERROR`` status says.
    """
    return Execution(
        status=Status.ERROR,
        value=None,
        error=f"{type(exc).__name__}: {exc}",
        stdout="",
        wall_ms=0.0,
        cpu_ms=0.0,
        max_rss_kb=0,
        matched=None,
        encoded=None,
    )


class Scheduler(Generic[T]):
    """Advances a set of plans in lock-step rounds; the drivers below feed it executions."""

    def __init__(self, plans: Sequence[Plan[T]]) -> None:
        self._plans = list(plans)
        self._results: dict[int, T] = {}
        self._waiting: dict[int, list[Job]] = {}
        for index in range(len(self._plans)):
            self._advance(index, None)

    def _advance(self, index: int, executions: list[Execution] | None) -> None:
        plan = self._plans[index]
        try:
            jobs = next(plan) if executions is None else plan.send(executions)
            while not jobs:  # a round with nothing to run needs no executor
                jobs = plan.send([])
        except StopIteration as stop:
            self._results[index] = stop.value
            self._waiting.pop(index, None)
            return
        self._waiting[index] = jobs

    @property
    def done(self) -> bool:
        return not self._waiting

    def jobs(self) -> list[Job]:
        """The distinct jobs every waiting plan needs, in first-seen order."""
        return list(dict.fromkeys(job for jobs in self._waiting.values() for job in jobs))

    def feed(self, jobs: Sequence[Job], executions: Sequence[Execution]) -> None:
        """Hand each waiting plan the executions of its jobs, and advance it."""
        if len(jobs) != len(executions):
            raise RuntimeError(f"executor returned {len(executions)} results for {len(jobs)} jobs")
        by_job = dict(zip(jobs, executions, strict=True))
        for index, wanted in list(self._waiting.items()):
            self._advance(index, [by_job[job] for job in wanted])

    def results(self) -> list[T]:
        if not self.done:
            raise RuntimeError("plans are not finished")
        return [self._results[i] for i in range(len(self._plans))]


def _run_batch(runner: BatchRunner, jobs: list[Job]) -> list[Execution]:
    try:
        return runner.run_batch(jobs)
    except _REFUSED:
        # One refused job fails the whole batch; retry one by one so only it is marked.
        out: list[Execution] = []
        for job in jobs:
            try:
                out.extend(runner.run_batch([job]))
            except _REFUSED as exc:
                out.append(refused(exc))
        return out


async def _run_batch_async(runner: AsyncBatchRunner, jobs: list[Job]) -> list[Execution]:
    try:
        return await runner.run_batch_async(jobs)
    except _REFUSED:
        out: list[Execution] = []
        for job in jobs:
            try:
                out.extend(await runner.run_batch_async([job]))
            except _REFUSED as exc:
                out.append(refused(exc))
        return out


def run_plans(plans: Sequence[Plan[T]], runner: BatchRunner) -> list[T]:
    """Run ``plans`` to completion with ``runner.run_batch``; results in the order of ``plans``."""
    scheduler = Scheduler(plans)
    while not scheduler.done:
        jobs = scheduler.jobs()
        scheduler.feed(jobs, _run_batch(runner, jobs))
    return scheduler.results()


async def run_plans_async(plans: Sequence[Plan[T]], runner: AsyncBatchRunner) -> list[T]:
    """As :func:`run_plans`, awaiting ``runner.run_batch_async`` (trio-native on an Executor)."""
    scheduler = Scheduler(plans)
    while not scheduler.done:
        jobs = scheduler.jobs()
        scheduler.feed(jobs, await _run_batch_async(runner, jobs))
    return scheduler.results()
