"""The buffer actor: the only owner of the three task buffers and of the generator driving them.

Requests are handled strictly one at a time, in mailbox order, and every draw comes from one
``random.Random``. So the buffers' evolution is a function of the run's seed and of the order the
coordinator sends requests in, which it keeps deterministic; a checkpoint (contents plus the
generator's state) resumes it exactly.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Final

from azr.actors._common import tell
from azr.actors.messages import (
    AdmitTasks,
    Blob,
    BufferReply,
    BufferRequest,
    BuffersDescribed,
    BuffersSnapshot,
    BufferState,
    CoordinatorEvent,
    DescribeBuffers,
    PrepareProposals,
    ProposalsPrepared,
    RngState,
    SampleSolveTasks,
    SnapshotBuffers,
    SolveTasksSampled,
    TasksAdmitted,
)
from azr.buffer import Buffers
from azr.runtime import ActorContext, Mailbox
from azr.tasks.types import (
    AbductionTask,
    DeductionTask,
    ErrorTask,
    ProposeRequest,
    SolveTask,
    TaskType,
)

__all__ = ["BUFFER_DIR", "BufferActor", "load_buffers", "restore_rng", "rng_state"]

BUFFER_DIR: Final = "buffers"
"""Where a checkpoint keeps the buffer files (``<type>.msgpack``, as :meth:`Buffers.save`)."""


def rng_state(rng: random.Random) -> RngState:
    version, internal, gauss_next = rng.getstate()
    return RngState(version, tuple(internal), gauss_next)


def restore_rng(state: RngState) -> random.Random:
    rng = random.Random()
    rng.setstate((state.version, tuple(state.internal), state.gauss_next))
    return rng


def load_buffers(checkpoint: str | Path, state: RngState) -> tuple[Buffers, random.Random]:
    """The buffers of a checkpoint written from a :class:`BuffersSnapshot`, and their generator."""
    rng = restore_rng(state)
    return Buffers.load(Path(checkpoint) / BUFFER_DIR, rng), rng


class BufferActor:
    """An actor run; ``buffers`` must be driven by ``rng`` (see :class:`azr.buffer.Buffers`)."""

    def __init__(
        self,
        *,
        buffers: Buffers,
        rng: random.Random,
        inbox: Mailbox[BufferRequest],
        coordinator: Mailbox[CoordinatorEvent],
    ) -> None:
        self.buffers = buffers
        self._rng = rng
        self._inbox = inbox
        self._coordinator = coordinator

    async def __call__(self, ctx: ActorContext) -> None:
        ctx.started()
        async for request in ctx.messages(self._inbox):
            if self._inbox.closed:
                continue  # stopping: nobody waits for the answer any more
            await tell(self._coordinator, self.handle(request))

    def state(self) -> BufferState:
        b = self.buffers
        return BufferState(
            deduction=b.deduction.stats(),
            abduction=b.abduction.stats(),
            induction=b.induction.stats(),
            error_prediction=b.error_prediction.stats(),
        )

    def handle(self, request: BufferRequest) -> BufferReply:
        """Serve one request (synchronously: buffer operations are cheap and must not
        interleave)."""
        rid = request.request_id
        match request:
            case DescribeBuffers():
                return BuffersDescribed(request_id=rid, state=self.state())
            case PrepareProposals():
                requests = self._prepare(request)
                return ProposalsPrepared(request_id=rid, state=self.state(), requests=requests)
            case AdmitTasks():
                b = self.buffers
                counts = (
                    b.deduction.extend(request.deduction),
                    b.abduction.extend(request.abduction),
                    b.induction.extend(request.induction),
                    b.error_prediction.extend(request.error_prediction),
                )
                return TasksAdmitted(
                    request_id=rid,
                    state=self.state(),
                    deduction=counts[0],
                    abduction=counts[1],
                    induction=counts[2],
                    error_prediction=counts[3],
                )
            case SampleSolveTasks():
                tasks = self._sample(request.per_type, request.recent_fraction, request.task_types)
                return SolveTasksSampled(request_id=rid, state=self.state(), tasks=tasks)
            case SnapshotBuffers():
                b = self.buffers
                files = tuple(
                    Blob(f"{BUFFER_DIR}/{buf.task_type.value}.msgpack", buf.to_bytes())
                    for buf in b.all()
                )
                return BuffersSnapshot(
                    request_id=rid, state=self.state(), files=files, rng=rng_state(self._rng)
                )
            case _:
                raise TypeError(f"the buffer actor cannot handle {type(request).__name__}")

    def _prepare(self, request: PrepareProposals) -> tuple[ProposeRequest, ...]:
        out: list[ProposeRequest] = []
        for task_type, count in zip(request.task_types, request.counts, strict=True):
            if task_type is TaskType.INDUCTION:
                for program in self.buffers.sample_programs(count):
                    out.append(
                        ProposeRequest(
                            TaskType.INDUCTION, program=program, n_inputs=request.induction_inputs
                        )
                    )
                continue
            buffer = self.buffers.triplets(task_type)
            for _ in range(count):
                references = tuple(buffer.sample_references(request.references))
                out.append(ProposeRequest(task_type, references=references))
        return tuple(out)

    def _sample(
        self, n: int, recent_fraction: float, task_types: tuple[TaskType, ...]
    ) -> tuple[SolveTask, ...]:
        b = self.buffers
        tasks: list[SolveTask] = []
        tasks += [
            DeductionTask.from_triplet(t)
            for t in b.deduction.sample_for_solver(n, recent_fraction=recent_fraction)
        ]
        tasks += [
            AbductionTask.from_triplet(t)
            for t in b.abduction.sample_for_solver(n, recent_fraction=recent_fraction)
        ]
        tasks += b.induction.sample_for_solver(n, recent_fraction=recent_fraction)
        if TaskType.ERROR_PREDICTION in task_types:
            tasks += [
                ErrorTask.from_triplet(t)
                for t in b.error_prediction.sample_for_solver(n, recent_fraction=recent_fraction)
            ]
        return tuple(tasks)
