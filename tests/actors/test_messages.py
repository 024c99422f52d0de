"""Messages are plain data: every family round-trips through msgpack and JSON as its own type."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from azr.actors.buffer import restore_rng, rng_state
from azr.actors.messages import (
    COORDINATOR_EVENTS,
    AdmitTasks,
    Blob,
    BufferRequest,
    BuffersSnapshot,
    BufferState,
    CheckSolutions,
    DescribeBuffers,
    GenerationStats,
    LearnerRequest,
    PrepareProposals,
    ProposalsValidated,
    ProposalVerdict,
    ProposeChunk,
    Rollout,
    SampleSolveTasks,
    SaveCheckpoint,
    SnapshotBuffers,
    SolutionsChecked,
    SolveChunk,
    StageProgress,
    StepReport,
    TrainStep,
    ValidateProposals,
    VerifierWork,
    WorkId,
)
from azr.buffer import BufferStats
from azr.rl import Sample, TrainBatch
from azr.tasks import (
    SEED_INDUCTION_TASK,
    SEED_TRIPLET,
    DeductionTask,
    ProposeRequest,
    Reason,
    TaskType,
)
from azr.verify import Verdict

STATS = BufferStats(size=1, capacity=8, seeds=1, admitted=0, duplicates=0, evicted=0)
STATE = BufferState(deduction=STATS, abduction=STATS, induction=STATS)
ROLLOUT = Rollout((1, 2), (3, 4), (-0.5, -0.25), "text", "stop", 2)
GEN = GenerationStats(seconds=0.5, prompts=1, prompt_tokens=2, generated_tokens=2)
PROPOSE = ProposeChunk(
    work=WorkId(step=1, stage="propose", task_type=TaskType.DEDUCTION, chunk=0),
    requests=(ProposeRequest(TaskType.DEDUCTION, references=(SEED_TRIPLET,)),),
    seed=7,
)
SOLVE = SolveChunk(
    work=WorkId(step=1, stage="solve", task_type=TaskType.INDUCTION, chunk=4),
    tasks=(SEED_INDUCTION_TASK, DeductionTask.from_triplet(SEED_TRIPLET)),
    n=1,
    seed=9,
)
VALIDATE = ValidateProposals(chunk=PROPOSE, rollouts=(ROLLOUT,), generation=GEN)
CHECK = CheckSolutions(chunk=SOLVE, rollouts=(ROLLOUT, ROLLOUT), generation=GEN)


@pytest.mark.parametrize(
    ("family", "message"),
    [
        (VerifierWork, VALIDATE),
        (VerifierWork, CHECK),
        (BufferRequest, DescribeBuffers(request_id=1)),
        (
            BufferRequest,
            PrepareProposals(
                request_id=2,
                task_types=(TaskType.INDUCTION,),
                counts=(3,),
                references=6,
                induction_inputs=10,
            ),
        ),
        (BufferRequest, AdmitTasks(request_id=3, induction=(SEED_INDUCTION_TASK,))),
        (BufferRequest, SampleSolveTasks(request_id=4, per_type=2, recent_fraction=0.5)),
        (BufferRequest, SnapshotBuffers(request_id=5)),
        (
            LearnerRequest,
            TrainStep(
                request_id=6,
                step=3,
                batch=TrainBatch((Sample((1,), (2,), (-1.0,), 0.5, "induction", "solve"),)),
            ),
        ),
        (LearnerRequest, SaveCheckpoint(request_id=7, step=3, files=(Blob("a", b"x"),))),
    ],
)
def test_request_families_round_trip(family: type, message: msgspec.Struct) -> None:
    members: list[Any] = family.__subclasses__()
    union: Any = members[0]
    for member in members[1:]:
        union = union | member
    for encode, decode in (
        (msgspec.msgpack.encode, msgspec.msgpack.decode),
        (msgspec.json.encode, msgspec.json.decode),
    ):
        back = decode(encode(message), type=union)
        assert back == message
        assert type(back) is type(message)


def test_coordinator_events_round_trip() -> None:
    events = [
        ProposalsValidated(
            work=VALIDATE,
            verdicts=(
                ProposalVerdict(Reason.OK, triplet=SEED_TRIPLET),
                ProposalVerdict(Reason.FORMAT, "no <answer> tag"),
            ),
            seconds=0.1,
            executions=12,
        ),
        SolutionsChecked(
            work=CHECK,
            verdicts=(Verdict(True, 1.0, Reason.OK), Verdict(False, -1.0, Reason.FORMAT)),
            seconds=0.2,
            executions=14,
        ),
        BuffersSnapshot(
            request_id=9,
            state=STATE,
            files=(Blob("buffers/deduction.msgpack", b"\x00\x01"),),
            rng=rng_state(random.Random(3)),
        ),
    ]
    for event in events:
        back = msgspec.msgpack.decode(msgspec.msgpack.encode(event), type=COORDINATOR_EVENTS)
        assert back == event and type(back) is type(event)


def test_reports_encode_as_json() -> None:
    report = StepReport(step=2, metrics={"solve/deduction/accuracy": 0.5}, summary="step 2")
    assert msgspec.json.decode(msgspec.json.encode(report))["kind"] == "step"
    progress = StageProgress(step=2, stage="solve", done=3, total=12)
    assert msgspec.json.decode(msgspec.json.encode(progress))["stage"] == "solve"


def test_rng_state_restores_the_sequence() -> None:
    rng = random.Random(11)
    rng.random()
    state = msgspec.msgpack.decode(
        msgspec.msgpack.encode(rng_state(rng)), type=type(rng_state(rng))
    )
    copy = restore_rng(state)
    assert [copy.random() for _ in range(5)] == [rng.random() for _ in range(5)]
