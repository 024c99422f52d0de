"""The buffer actor: requests in, one reply each, draws reproducible from a snapshot."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from azr.actors.buffer import BufferActor, load_buffers
from azr.actors.messages import (
    AdmitTasks,
    BufferRequest,
    BuffersSnapshot,
    CoordinatorEvent,
    PrepareProposals,
    ProposalsPrepared,
    SampleSolveTasks,
    SnapshotBuffers,
    SolveTasksSampled,
    TasksAdmitted,
)
from azr.buffer import Buffers
from azr.runtime import open_actor_system, open_mailbox
from azr.tasks import (
    SEED_TRIPLET,
    AbductionTask,
    DeductionTask,
    InductionTask,
    TaskType,
    Triplet,
)

from ._support import trio_test

TRIPLETS = tuple(Triplet(f"def f(x):\n    return x + {i}", "1", str(1 + i)) for i in range(5))


def _actor(seed: int = 0) -> BufferActor:
    rng = random.Random(seed)
    return BufferActor(
        buffers=Buffers(rng, capacity=64),
        rng=rng,
        inbox=open_mailbox(BufferRequest, 4),
        coordinator=open_mailbox(CoordinatorEvent, 4),
    )


def test_prepare_proposals_builds_requests_per_type() -> None:
    actor = _actor()
    actor.handle(AdmitTasks(request_id=1, deduction=TRIPLETS))
    reply = actor.handle(
        PrepareProposals(
            request_id=2,
            task_types=(TaskType.DEDUCTION, TaskType.ABDUCTION, TaskType.INDUCTION),
            counts=(3, 2, 4),
            references=2,
            induction_inputs=6,
        )
    )
    assert isinstance(reply, ProposalsPrepared) and reply.request_id == 2
    by_type = {t: [r for r in reply.requests if r.type is t] for t in TaskType}
    assert [len(by_type[t]) for t in TaskType] == [3, 2, 4, 0]
    for request in by_type[TaskType.DEDUCTION]:
        assert len(request.references) == 2
        assert set(request.references) <= {SEED_TRIPLET, *TRIPLETS}
    # The abduction buffer holds only its seed: fewer references than asked for.
    assert all(r.references == (SEED_TRIPLET,) for r in by_type[TaskType.ABDUCTION])
    programs = {t.program for t in (SEED_TRIPLET, *TRIPLETS)}
    for request in by_type[TaskType.INDUCTION]:
        assert request.program in programs and request.n_inputs == 6


def test_admission_counts_duplicates_and_sampling_covers_every_type() -> None:
    actor = _actor()
    first = actor.handle(AdmitTasks(request_id=1, deduction=TRIPLETS[:3], abduction=TRIPLETS))
    again = actor.handle(AdmitTasks(request_id=2, deduction=TRIPLETS[:4]))
    assert isinstance(first, TasksAdmitted) and isinstance(again, TasksAdmitted)
    assert (first.deduction, first.abduction, first.induction) == (3, 5, 0)
    assert again.deduction == 1 and again.state.deduction.duplicates == 3
    assert again.state.deduction.size == 5 and again.state.abduction.size == 6

    sampled = actor.handle(SampleSolveTasks(request_id=3, per_type=4, recent_fraction=0.5))
    assert isinstance(sampled, SolveTasksSampled)
    kinds = [type(t) for t in sampled.tasks]
    assert kinds == [DeductionTask] * 4 + [AbductionTask] * 4 + [InductionTask] * 4
    # Half of each batch is the newest entries: the last admitted triplet is always there.
    assert DeductionTask.from_triplet(TRIPLETS[3]) in sampled.tasks


def test_a_snapshot_resumes_the_same_draws(tmp_path: Path) -> None:
    actor = _actor(seed=5)
    actor.handle(AdmitTasks(request_id=1, deduction=TRIPLETS, abduction=TRIPLETS[:2]))
    snapshot = actor.handle(SnapshotBuffers(request_id=2))
    assert isinstance(snapshot, BuffersSnapshot)
    for blob in snapshot.files:
        (tmp_path / blob.name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / blob.name).write_bytes(blob.data)
    buffers, rng = load_buffers(tmp_path, snapshot.rng)
    twin = BufferActor(
        buffers=buffers,
        rng=rng,
        inbox=open_mailbox(BufferRequest, 1),
        coordinator=open_mailbox(CoordinatorEvent, 1),
    )
    requests = [
        SampleSolveTasks(request_id=3, per_type=5, recent_fraction=0.2),
        PrepareProposals(
            request_id=4,
            task_types=(TaskType.DEDUCTION, TaskType.INDUCTION),
            counts=(4, 4),
            references=3,
            induction_inputs=10,
        ),
    ]
    for request in requests:
        assert twin.handle(request) == actor.handle(request)


@trio_test(timeout=20)
async def test_the_actor_answers_every_request_in_order() -> None:
    async with open_actor_system(grace_period=5) as system:
        inbox = system.open_mailbox(BufferRequest, 4, name="buffer")
        replies = system.open_mailbox(CoordinatorEvent, 16, name="replies")
        rng = random.Random(1)
        actor = BufferActor(buffers=Buffers(rng), rng=rng, inbox=inbox, coordinator=replies)
        await system.start_actor("buffer", actor, mailboxes=[inbox])
        await inbox.send(AdmitTasks(request_id=1, deduction=TRIPLETS[:2]))
        await inbox.send(SampleSolveTasks(request_id=2, per_type=1, recent_fraction=1.0))
        first, second = await replies.receive(), await replies.receive()
        assert isinstance(first, TasksAdmitted) and first.request_id == 1
        assert isinstance(second, SolveTasksSampled) and second.request_id == 2
        # recent_fraction 1: the newest deduction entry, admitted just before.
        assert second.tasks[0] == DeductionTask.from_triplet(TRIPLETS[1])
        with trio.move_on_after(0.2):
            await replies.receive()
            raise AssertionError("one reply per request")
