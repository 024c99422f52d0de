"""Every message the self-play actors exchange: frozen msgspec Structs, families as tagged unions.

Who sends what (arrows are mailboxes)::

    coordinator --ProposeChunk--> proposer --ValidateProposals--> verifier --ProposalsValidated-->
    coordinator --SolveChunk----> solver ----CheckSolutions-----> verifier --SolutionsChecked--->
    coordinator --BufferRequest--> buffer --(reply)--> coordinator
    coordinator --LearnerRequest--> learner --(reply)--> coordinator
    coordinator --Report--> whoever runs the loop (metrics, progress, the end)

Each mailbox carries one family; a family is a base class with ``tag_field="kind"`` whose
subclasses are its members, so a mailbox typed with the base accepts every member, a receiver
dispatches with ``match``, and ``Union[members]`` round-trips through msgpack or JSON. Nothing
here holds a live object: a message could cross a process boundary unchanged.

Correlation: the coordinator is the only actor that asks questions. Buffer and learner requests
carry a ``request_id`` that the reply repeats; generation work is identified by its
``WorkId`` (step, stage, task type, chunk), which the verifier's verdicts repeat.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from azr.buffer import BufferStats
from azr.generation.base import FinishReason
from azr.rl.batch import TrainBatch
from azr.rl.learner import StepMetrics
from azr.tasks.types import InductionTask, ProposeRequest, Reason, SolveTask, TaskType, Triplet
from azr.verify import Verdict

__all__ = [
    "CONFIG_FILE",
    "STATE_FILE",
    "AdmitTasks",
    "Blob",
    "BufferReply",
    "BufferRequest",
    "BufferState",
    "BuffersDescribed",
    "BuffersSnapshot",
    "CheckSolutions",
    "CheckpointSaved",
    "CoordinatorEvent",
    "DescribeBuffers",
    "GenerationStats",
    "LearnerReply",
    "LearnerRequest",
    "PrepareProposals",
    "ProposalVerdict",
    "ProposalsPrepared",
    "ProposalsValidated",
    "ProposeChunk",
    "Report",
    "RngState",
    "Rollout",
    "RunFinished",
    "SampleRecord",
    "SampleSolveTasks",
    "SaveCheckpoint",
    "SnapshotBuffers",
    "SolutionsChecked",
    "SolveChunk",
    "SolveTasksSampled",
    "Stage",
    "StageProgress",
    "StepReport",
    "StepTrained",
    "TasksAdmitted",
    "TrainStep",
    "ValidateProposals",
    "VerifierWork",
    "WorkId",
]

STATE_FILE: Final = "state.json"
"""The coordinator's state inside a checkpoint (a :class:`Blob` of :class:`SaveCheckpoint`)."""
CONFIG_FILE: Final = "config.json"
"""The run's resolved configuration, beside it."""

Stage = Literal["seed", "propose", "learnability", "solve", "eval"]
"""What a piece of generation work is for: ``seed`` proposals fill the buffers before training
(never trained on); ``propose`` proposals are trained on; ``learnability`` rollouts only score
proposals; ``solve`` rollouts are trained on; ``eval`` answers held-out tasks (never trained
on)."""


class _Message(msgspec.Struct, frozen=True, kw_only=True):
    pass


# --------------------------------------------------------------------------------------------
# Generation work and its products
# --------------------------------------------------------------------------------------------


class WorkId(_Message, frozen=True, array_like=True):
    """Names one chunk of generation work; unique within a run."""

    step: int
    stage: Stage
    task_type: TaskType
    chunk: int


class Rollout(_Message, frozen=True, array_like=True):
    """One sampled response with everything the learner needs from it.

    ``text`` is the response as the verifier reads it (with the stop string put back, see
    :func:`azr.actors._common.generate_rollouts`); ``response_ids``/``logprobs`` are exactly what
    was sampled, under the weights ``weight_version``.
    """

    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str
    finish_reason: FinishReason
    weight_version: int


class GenerationStats(_Message, frozen=True):
    """The cost of one backend call. ``prompts`` counts the prompts sent; ``too_long`` lists
    (by index within the chunk) those left out for exceeding ``generation.max_prompt_tokens``,
    whose rollouts are empty."""

    seconds: float
    prompts: int
    prompt_tokens: int
    generated_tokens: int
    too_long: tuple[int, ...] = ()


class ProposeChunk(_Message, frozen=True):
    """For the proposer: write one response to each request. ``seed`` seeds the sampling."""

    work: WorkId
    requests: tuple[ProposeRequest, ...]
    seed: int


class SolveChunk(_Message, frozen=True):
    """For the solver: ``n`` responses to each task. ``seed`` seeds the sampling; ``greedy``
    decodes at temperature 0 instead of the run's sampling temperature (evaluation)."""

    work: WorkId
    tasks: tuple[SolveTask, ...]
    n: int
    seed: int
    greedy: bool = False


class VerifierWork(_Message, frozen=True, tag_field="kind"):
    """What the verifier's mailbox carries."""


class ValidateProposals(VerifierWork, frozen=True, tag="validate"):
    """Generated proposals, one rollout per request of ``chunk``."""

    chunk: ProposeChunk
    rollouts: tuple[Rollout, ...]
    generation: GenerationStats


class CheckSolutions(VerifierWork, frozen=True, tag="check"):
    """Generated solutions, ``chunk.n`` per task, task-major (task 0's n, then task 1's...)."""

    chunk: SolveChunk
    rollouts: tuple[Rollout, ...]
    generation: GenerationStats


class ProposalVerdict(_Message, frozen=True, array_like=True):
    """The validation of one proposal: a reason code, and the task it defines when valid
    (``triplet`` for deduction and abduction, ``induction`` for induction)."""

    reason: Reason
    detail: str = ""
    triplet: Triplet | None = None
    induction: InductionTask | None = None

    @property
    def valid(self) -> bool:
        return self.reason is Reason.OK


# --------------------------------------------------------------------------------------------
# Buffer requests and replies
# --------------------------------------------------------------------------------------------


class BufferRequest(_Message, frozen=True, tag_field="kind"):
    """What the buffer actor's mailbox carries; every request gets exactly one reply."""

    request_id: int


class DescribeBuffers(BufferRequest, frozen=True, tag="describe"):
    """Only the state (every reply carries it)."""


class PrepareProposals(BufferRequest, frozen=True, tag="prepare"):
    """Proposal requests: ``counts[i]`` for ``task_types[i]``, deduction and abduction ones with
    ``references`` triplets of their type, induction ones on programs drawn from the deduction
    and abduction buffers, asking for ``induction_inputs`` inputs."""

    task_types: tuple[TaskType, ...]
    counts: tuple[int, ...]
    references: int
    induction_inputs: int


class AdmitTasks(BufferRequest, frozen=True, tag="admit"):
    """Validated tasks to store, in a deterministic order chosen by the sender."""

    deduction: tuple[Triplet, ...] = ()
    abduction: tuple[Triplet, ...] = ()
    induction: tuple[InductionTask, ...] = ()
    error_prediction: tuple[Triplet, ...] = ()


class SampleSolveTasks(BufferRequest, frozen=True, tag="sample"):
    """``per_type`` solver tasks of each type, ``recent_fraction`` of them the newest entries."""

    per_type: int
    recent_fraction: float
    task_types: tuple[TaskType, ...] = (TaskType.DEDUCTION, TaskType.ABDUCTION, TaskType.INDUCTION)


class SnapshotBuffers(BufferRequest, frozen=True, tag="snapshot"):
    """The buffers' contents and random state, for a checkpoint."""


class BufferState(_Message, frozen=True):
    deduction: BufferStats
    abduction: BufferStats
    induction: BufferStats
    error_prediction: BufferStats | None = None

    def of(self, task_type: TaskType) -> BufferStats | None:
        match task_type:
            case TaskType.DEDUCTION:
                return self.deduction
            case TaskType.ABDUCTION:
                return self.abduction
            case TaskType.INDUCTION:
                return self.induction
            case TaskType.ERROR_PREDICTION:
                return self.error_prediction


class Blob(_Message, frozen=True, array_like=True):
    """A named file's bytes (``name`` is a relative path)."""

    name: str
    data: bytes


class RngState(_Message, frozen=True, array_like=True):
    """``random.Random.getstate()`` as plain data."""

    version: int
    internal: tuple[int, ...]
    gauss_next: float | None


# --------------------------------------------------------------------------------------------
# Learner requests and replies
# --------------------------------------------------------------------------------------------


class LearnerRequest(_Message, frozen=True, tag_field="kind"):
    """What the learner actor's mailbox carries; every request gets exactly one reply."""

    request_id: int


class TrainStep(LearnerRequest, frozen=True, tag="train"):
    """One optimiser step on ``batch`` (may be empty: then the weights stay), then a weight push
    to the generation backend."""

    step: int
    batch: TrainBatch


class SaveCheckpoint(LearnerRequest, frozen=True, tag="save"):
    """Write the checkpoint of ``step``: the learner's state plus ``files`` from other actors,
    atomically. It counts once the run has recorded the step (see :mod:`azr.run.checkpoints`)."""

    step: int
    files: tuple[Blob, ...]


# --------------------------------------------------------------------------------------------
# The coordinator's inbox: verdicts and replies
# --------------------------------------------------------------------------------------------


class CoordinatorEvent(_Message, frozen=True, tag_field="kind"):
    """What the coordinator's mailbox carries."""


class ProposalsValidated(CoordinatorEvent, frozen=True, tag="validated"):
    """The verdicts on one :class:`ValidateProposals`, in order. ``executions`` is the executor's
    running total when the verdicts were ready."""

    work: ValidateProposals
    verdicts: tuple[ProposalVerdict, ...]
    seconds: float
    executions: int


class SolutionsChecked(CoordinatorEvent, frozen=True, tag="checked"):
    """The verdicts on one :class:`CheckSolutions`, in order."""

    work: CheckSolutions
    verdicts: tuple[Verdict, ...]
    seconds: float
    executions: int


class BufferReply(CoordinatorEvent, frozen=True, tag_field="kind"):
    request_id: int
    state: BufferState


class BuffersDescribed(BufferReply, frozen=True, tag="described"):
    pass


class ProposalsPrepared(BufferReply, frozen=True, tag="prepared"):
    requests: tuple[ProposeRequest, ...]


class TasksAdmitted(BufferReply, frozen=True, tag="admitted"):
    """How many of each type were new (the rest were duplicates)."""

    deduction: int
    abduction: int
    induction: int
    error_prediction: int = 0


class SolveTasksSampled(BufferReply, frozen=True, tag="sampled"):
    tasks: tuple[SolveTask, ...]


class BuffersSnapshot(BufferReply, frozen=True, tag="snapshot"):
    files: tuple[Blob, ...]
    rng: RngState


class LearnerReply(CoordinatorEvent, frozen=True, tag_field="kind"):
    request_id: int


class StepTrained(LearnerReply, frozen=True, tag="trained"):
    """``metrics`` is None when the batch was empty. ``weight_version`` is what the backend
    serves now; staleness is the learner's version minus each sample's, before the update."""

    step: int
    metrics: StepMetrics | None
    weight_version: int
    update_seconds: float
    sync_seconds: float
    staleness_mean: float
    staleness_max: int


class CheckpointSaved(LearnerReply, frozen=True, tag="saved"):
    step: int
    path: str
    seconds: float


# --------------------------------------------------------------------------------------------
# Reports: from the coordinator to whoever runs the loop
# --------------------------------------------------------------------------------------------


class Report(_Message, frozen=True, tag_field="kind"):
    """What the coordinator tells the outside world."""


class StageProgress(Report, frozen=True, tag="progress"):
    """``done`` of ``total`` responses of ``stage`` are generated and checked."""

    step: int
    stage: Stage
    done: int
    total: int


class StepReport(Report, frozen=True, tag="step"):
    """One finished step (``step`` 0 is the buffer seeding). ``metrics`` are flat and
    namespaced (``solve/deduction/accuracy``); ``summary`` is a one-line digest."""

    step: int
    metrics: dict[str, float]
    summary: str
    checkpoint: str | None = None
    samples: tuple[SampleRecord, ...] = ()


class SampleRecord(_Message, frozen=True):
    """One response of a step as people read it when a run misbehaves (``samples.jsonl``):
    the prompt (without the turn template), the response, the extracted answer, the verdict's
    reason code and the reward (None when unscored)."""

    step: int
    stage: Stage
    task_type: TaskType
    role: Literal["propose", "solve"]
    prompt: str
    response: str
    answer: str
    reason: Reason
    reward: float | None


class RunFinished(Report, frozen=True, tag="finished"):
    """Every step ran; ``checkpoint`` is the newest one written."""

    steps: int
    checkpoint: str | None


COORDINATOR_EVENTS: Final = (
    ProposalsValidated
    | SolutionsChecked
    | BuffersDescribed
    | ProposalsPrepared
    | TasksAdmitted
    | SolveTasksSampled
    | BuffersSnapshot
    | StepTrained
    | CheckpointSaved
)
"""The decodable union of everything the coordinator receives."""
