"""The coordinator: drives the self-play schedule by sending work and collecting verdicts.

One training step (the paper's schedule):

1. ask the buffer actor for B proposal requests per task type (deduction and abduction ones
   carry K reference triplets, induction ones a program from the buffers);
2. send them to the proposer in chunks; the proposer streams each generated chunk to the
   verifier, whose verdicts come back here chunk by chunk;
3. as soon as a chunk's verdicts arrive, its valid proposals go to the solver for n learnability
   rollouts each (checked by the verifier as well), which give the proposer rewards;
4. once every proposal of the step is validated, admit the valid ones to the buffers (in a fixed
   order), and sample B solver tasks per type, which go to the solver in chunks;
5. when everything is checked, assemble the six groups' samples into one batch (fixed order)
   and send it to the learner, which updates, pushes weights to the backend and replies.

Before the first step the buffers are seeded: proposals without learnability or training, until
every buffer holds ``seed_buffer_size`` entries or ``seed_max_rounds`` rounds are spent; first
deduction and abduction, then induction, whose proposals are drawn from the finished pool of
programs.

Overlap: generation, checking and (in async mode) the update of the previous step run in
different actors at once; this actor only ever waits for replies. In sync mode step t's rollouts
start after step t - 1 is trained and checkpointed. In async mode they start as soon as step
t - 1's rollouts are done and the update ``max_staleness`` steps back has been applied.

Reproducibility: every sampling seed is derived from the run seed and the work's identity, the
buffer actor sees requests in an order that does not depend on timing, and the batch is sorted,
so a sync run (and a run resumed from its checkpoint) repeats itself exactly.

The mailbox discipline that rules out deadlock: one task here reads the inbox and does nothing
but hand each event to whoever waits for it, so the actors replying here never block; the
waiting is done by other tasks, which may block sending work to the generating actors.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from typing import Final, TypeVar

import msgspec
import trio

from azr.actors._common import SampleSource, derive_seed, sample_records, tell
from azr.actors.messages import (
    CONFIG_FILE,
    STATE_FILE,
    AdmitTasks,
    Blob,
    BufferReply,
    BufferRequest,
    BuffersDescribed,
    BuffersSnapshot,
    BufferState,
    CheckpointSaved,
    CoordinatorEvent,
    DescribeBuffers,
    GenerationStats,
    LearnerReply,
    LearnerRequest,
    PrepareProposals,
    ProposalsPrepared,
    ProposalsValidated,
    ProposalVerdict,
    ProposeChunk,
    Report,
    RngState,
    Rollout,
    RunFinished,
    SampleSolveTasks,
    SaveCheckpoint,
    SnapshotBuffers,
    SolutionsChecked,
    SolveChunk,
    SolveTasksSampled,
    Stage,
    StageProgress,
    StepReport,
    StepTrained,
    TasksAdmitted,
    TrainStep,
    WorkId,
)
from azr.buffer import Buffers
from azr.config import Config
from azr.eval.heldout import heldout_metrics, is_heldout
from azr.intrinsic import AnswerCounts, CountsState, program_shape, proposal_bonus
from azr.rewards import RewardConfig, propose_reward, solve_rate
from azr.rl.batch import Sample, TrainBatch
from azr.rl.batch import TaskType as TaskName
from azr.runtime import ActorContext, Mailbox
from azr.tasks.types import (
    AbductionTask,
    DeductionTask,
    ErrorTask,
    InductionTask,
    ProposeRequest,
    Reason,
    SolveTask,
    TaskType,
    Triplet,
)
from azr.verify import Verdict

__all__ = [
    "ALL_TASK_TYPES",
    "TASK_TYPES",
    "Coordinator",
    "ProposalRecord",
    "RunState",
    "SolveRecord",
    "StepData",
    "active_task_types",
    "build_batch",
    "learnability_solves",
    "seed_counts",
    "step_metrics",
]

TASK_TYPES: Final = (TaskType.DEDUCTION, TaskType.ABDUCTION, TaskType.INDUCTION)
"""The paper's three task types, always played."""
ALL_TASK_TYPES: Final = (*TASK_TYPES, TaskType.ERROR_PREDICTION)
"""With the optional error prediction (``selfplay.error_prediction``)."""
_TRIPLET_TYPES: Final = (TaskType.DEDUCTION, TaskType.ABDUCTION, TaskType.ERROR_PREDICTION)


def active_task_types(config: Config) -> tuple[TaskType, ...]:
    """The task types a run plays, in a fixed order."""
    return ALL_TASK_TYPES if config.selfplay.error_prediction else TASK_TYPES


E = TypeVar("E", bound=CoordinatorEvent)
T = TypeVar("T")


class RunState(msgspec.Struct, frozen=True, kw_only=True):
    """The coordinator's part of a checkpoint (``state.json``); new fields need defaults."""

    format: int = 1
    step: int
    seeded: bool
    buffer_rng: RngState
    # None in checkpoints from before the counts were stored: such a resume starts them empty.
    counts: CountsState | None = None


STATE_ENCODER: Final = msgspec.json.Encoder()
STATE_DECODER: Final = msgspec.json.Decoder(RunState)


# --------------------------------------------------------------------------------------------
# What a step collects, and what it turns into
# --------------------------------------------------------------------------------------------


class SolveRecord(msgspec.Struct, kw_only=True):
    """One trained solver response and its check."""

    rollout: Rollout
    verdict: Verdict
    task: SolveTask | None = None


class ProposalRecord(msgspec.Struct, kw_only=True):
    """One proposal: its response, its validation and (when valid) its learnability checks."""

    rollout: Rollout
    verdict: ProposalVerdict
    learnability: list[Reason] | None = None
    bonus: float = 0.0
    """Intrinsic rewards (``rewards.intrinsic``), added when the learnability is positive."""
    request: ProposeRequest | None = None
    solves: list[SolveRecord] = msgspec.field(default_factory=list)
    """The learnability rollouts themselves, kept when ``selfplay.train_learnability`` trains
    the solver on them."""


class _StageClock(msgspec.Struct):
    """Wall time from the first dispatch of a stage to its last verdict, plus its volume."""

    start: float = math.inf
    end: float = 0.0
    prompts: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    check_seconds: float = 0.0
    responses: int = 0
    too_long: int = 0  # prompts not sent: longer than generation.max_prompt_tokens

    def begin(self) -> None:
        self.start = min(self.start, time.perf_counter())

    def finish(self) -> None:
        self.end = max(self.end, time.perf_counter())

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0) if self.start < math.inf else 0.0


class StepData(msgspec.Struct, kw_only=True):
    """Everything one step's rollouts produced."""

    step: int
    proposals: dict[TaskType, dict[int, ProposalRecord]] = msgspec.field(default_factory=dict)
    solves: dict[TaskType, dict[int, SolveRecord]] = msgspec.field(default_factory=dict)
    clocks: dict[Stage, _StageClock] = msgspec.field(default_factory=dict)
    admitted: dict[TaskType, int] = msgspec.field(default_factory=dict)
    buffers: BufferState | None = None
    snapshot: BuffersSnapshot | None = None
    counts: CountsState | None = None  # taken with the snapshot
    executions: int = 0
    started: float = msgspec.field(default_factory=time.perf_counter)
    rollout_seconds: float = 0.0

    def clock(self, stage: Stage) -> _StageClock:
        return self.clocks.setdefault(stage, _StageClock())


def _sample(rollout: Rollout, reward: float, task_type: TaskType, role: str) -> Sample | None:
    # An aborted response (the backend was closing) or an empty one teaches nothing.
    if rollout.finish_reason == "abort" or not rollout.response_ids:
        return None
    name: TaskName = task_type.value
    return Sample(
        prompt_ids=rollout.prompt_ids,
        response_ids=rollout.response_ids,
        old_logprobs=rollout.logprobs,
        reward=reward,
        task=name,
        role="propose" if role == "propose" else "solve",
        weight_version=rollout.weight_version,
    )


def proposal_reward(record: ProposalRecord, rewards: RewardConfig) -> float | None:
    """The proposer's reward, or None when nothing can be concluded (unscored validation, or a
    valid task none of whose learnability rollouts could be scored)."""
    reason = record.verdict.reason
    if not reason.scored:
        return None
    if reason is not Reason.OK:
        return propose_reward(reason, None, rewards)
    rate = solve_rate(record.learnability or ())
    if rate is None:
        return None
    reward = propose_reward(reason, rate, rewards)
    return reward + record.bonus if reward > 0 else reward


def learnability_solves(
    task: SolveTask, rollouts: Sequence[Rollout], verdicts: Sequence[Verdict]
) -> list[SolveRecord]:
    """The learnability answers to ``task`` as solver samples (``selfplay.train_learnability``);
    none when the task's program is a held-out one: the solver never trains on those."""
    if is_heldout(task.program):
        return []
    return [
        SolveRecord(rollout=r, verdict=v, task=task)
        for r, v in zip(rollouts, verdicts, strict=True)
    ]


def build_batch(
    data: StepData, rewards: RewardConfig, *, learnability_solves: bool = False
) -> TrainBatch:
    """The step's samples, proposer groups first, each group in index order (so the update does
    not depend on the order verdicts arrived in). Unscorable responses are left out.

    With ``learnability_solves`` the solver group of each type also gets the learnability
    rollouts of that type's valid proposals (after the sampled solver tasks, in proposal order),
    each with its own correctness reward: answers the proposer's reward already paid for."""
    samples: list[Sample] = []
    for task_type in ALL_TASK_TYPES:
        for _, record in sorted(data.proposals.get(task_type, {}).items()):
            reward = proposal_reward(record, rewards)
            if reward is not None and (s := _sample(record.rollout, reward, task_type, "propose")):
                samples.append(s)
    for task_type in ALL_TASK_TYPES:
        solved = [r for _, r in sorted(data.solves.get(task_type, {}).items())]
        if learnability_solves:
            for _, record in sorted(data.proposals.get(task_type, {}).items()):
                solved.extend(record.solves)
        for r in solved:
            if r.verdict.scored and (s := _sample(r.rollout, r.verdict.reward, task_type, "solve")):
                samples.append(s)
    return TrainBatch(tuple(samples))


def _put_mean(out: dict[str, float], key: str, values: Sequence[float]) -> None:
    # Metrics hold only numbers that exist: a mean over nothing is left out, not NaN.
    if values:
        out[key] = sum(values) / len(values)


def _count_reasons(out: dict[str, float], prefix: str, reasons: Iterable[Reason]) -> None:
    for reason in reasons:
        if reason is not Reason.OK:
            key = f"{prefix}/{reason.value}"
            out[key] = out.get(key, 0.0) + 1.0


def step_metrics(
    data: StepData,
    rewards: RewardConfig,
    trained: StepTrained | None = None,
) -> dict[str, float]:
    """The rollout (and update) metrics of one step, flat and namespaced."""
    m: dict[str, float] = {}
    for t in ALL_TASK_TYPES:
        name = t.value
        played = t in TASK_TYPES or t in data.proposals or t in data.solves
        proposals = [r for _, r in sorted(data.proposals.get(t, {}).items())]
        if proposals:
            scored = [x for r in proposals if (x := proposal_reward(r, rewards)) is not None]
            valid = [r for r in proposals if r.verdict.valid]
            rates = [x for r in valid if (x := solve_rate(r.learnability or ())) is not None]
            m[f"propose/{name}/count"] = float(len(proposals))
            m[f"propose/{name}/valid"] = len(valid) / len(proposals)
            _put_mean(m, f"propose/{name}/reward", scored)
            _put_mean(m, f"propose/{name}/solve_rate", rates)
            _count_reasons(m, f"propose/{name}/rejected", (r.verdict.reason for r in proposals))
        if t in data.admitted:
            m[f"propose/{name}/admitted"] = float(data.admitted[t])
        solves = [r for _, r in sorted(data.solves.get(t, {}).items())]
        if solves:
            scored_solves = [r.verdict for r in solves if r.verdict.scored]
            m[f"solve/{name}/count"] = float(len(solves))
            _put_mean(m, f"solve/{name}/reward", [v.reward for v in scored_solves])
            _put_mean(m, f"solve/{name}/accuracy", [float(v.correct) for v in scored_solves])
            _count_reasons(m, f"solve/{name}/wrong", (r.verdict.reason for r in solves))
        stats = data.buffers.of(t) if data.buffers is not None and played else None
        if stats is not None:
            m[f"buffer/{name}/size"] = float(stats.size)
            m[f"buffer/{name}/duplicates"] = float(stats.duplicates)
            m[f"buffer/{name}/evicted"] = float(stats.evicted)
    generated = sum(c.generated_tokens for c in data.clocks.values())
    rollout_s = data.rollout_seconds
    m["gen/responses"] = float(sum(c.responses for c in data.clocks.values()))
    m["gen/prompt_tokens"] = float(sum(c.prompt_tokens for c in data.clocks.values()))
    m["gen/generated_tokens"] = float(generated)
    m["gen/tokens_per_s"] = generated / rollout_s if rollout_s > 0 else 0.0
    # Per reason and role, these also show as propose/<type>/rejected/prompt_too_long and
    # solve/<type>/wrong/prompt_too_long.
    m["gen/prompts_too_long"] = float(sum(c.too_long for c in data.clocks.values()))
    for stage, clock in data.clocks.items():
        m[f"time/{stage}"] = clock.seconds
        m[f"time/check/{stage}"] = clock.check_seconds
    m["time/rollout"] = rollout_s
    if trained is not None:
        m["time/update"] = trained.update_seconds
        m["time/weight_sync"] = trained.sync_seconds
        m["weights/version"] = float(trained.weight_version)
        m["weights/staleness_mean"] = trained.staleness_mean
        m["weights/staleness_max"] = float(trained.staleness_max)
        lm = trained.metrics
        m["learner/skipped"] = 1.0 if lm is None or lm.skipped else 0.0
        if lm is not None:
            for key in ("loss", "pg_loss", "kl", "entropy", "clip_frac", "ratio_mean"):
                if (value := getattr(lm, key)) is not None:  # entropy: only when it is trained
                    m[f"learner/{key}"] = float(value)
            m["learner/ratio_max_dev"] = lm.ratio_max_dev
            m["learner/grad_norm"] = lm.grad_norm
            m["learner/lr"] = lm.lr
            m["learner/samples"] = float(lm.samples)
            m["learner/tokens"] = float(lm.tokens)
            m["learner/tokens_per_s"] = lm.tokens_per_s
            if lm.old_logprob_diff_mean is not None and lm.old_logprob_diff_max is not None:
                # Generator (server) vs learner log-probs of the same tokens, same weights.
                m["learner/old_logprob_diff_mean"] = lm.old_logprob_diff_mean
                m["learner/old_logprob_diff_max"] = lm.old_logprob_diff_max
    return m


def _chunks(items: Sequence[T], size: int) -> list[tuple[int, Sequence[T]]]:
    """``(first index, items)`` pairs of consecutive chunks of at most ``size`` items."""
    return [(i, items[i : i + size]) for i in range(0, len(items), size)]


def _size(state: BufferState, task_type: TaskType) -> int:
    stats = state.of(task_type)
    return 0 if stats is None else stats.size


def _answer(task_type: TaskType, triplet: Triplet) -> str:
    """What the solver of a triplet task has to produce (for answer diversity)."""
    return triplet.input if task_type is TaskType.ABDUCTION else triplet.output


def _observe(
    answers: AnswerCounts,
    shapes: AnswerCounts,
    task_type: TaskType,
    triplets: Iterable[Triplet],
    *,
    novelty: bool,
) -> None:
    """Count admitted triplets' answers, and their program shapes when the novelty bonus is on
    (shapes cost a parse each)."""
    triplets = tuple(triplets)
    answers.observe(_answer(task_type, x) for x in triplets)
    if novelty:
        shapes.observe(program_shape(x.program) for x in triplets)


def _counts_state(
    answers: Mapping[TaskType, AnswerCounts], shapes: Mapping[TaskType, AnswerCounts]
) -> CountsState:
    return CountsState(
        answers={t.value: c.as_dict() for t, c in answers.items() if c.total},
        shapes={t.value: c.as_dict() for t, c in shapes.items() if c.total},
    )


def seed_counts(config: Config, buffers: Buffers) -> CountsState:
    """The diversity and novelty counts of the tasks a seed file put into ``buffers`` (the
    built-in seed triplets left out), as if they had been admitted before step 1."""
    answers = {t: AnswerCounts() for t in _TRIPLET_TYPES}
    shapes = {t: AnswerCounts() for t in _TRIPLET_TYPES}
    novelty = config.rewards.intrinsic.novelty.coef > 0
    for t in _TRIPLET_TYPES:
        buffer = buffers.triplets(t)
        builtin = set(buffer.seeds)
        loaded = (x for x in buffer if x not in builtin)
        _observe(answers[t], shapes[t], t, loaded, novelty=novelty)
    return _counts_state(answers, shapes)


def _solve_task(task_type: TaskType, verdict: ProposalVerdict) -> SolveTask | None:
    if task_type is TaskType.INDUCTION:
        return verdict.induction
    if verdict.triplet is None:
        return None
    if task_type is TaskType.DEDUCTION:
        return DeductionTask.from_triplet(verdict.triplet)
    if task_type is TaskType.ERROR_PREDICTION:
        return ErrorTask.from_triplet(verdict.triplet)
    return AbductionTask.from_triplet(verdict.triplet)


# --------------------------------------------------------------------------------------------
# The actor
# --------------------------------------------------------------------------------------------


class _Waiter:
    """One awaited reply: set once by the inbox reader."""

    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value: CoordinatorEvent | None = None

    async def wait(self) -> CoordinatorEvent:
        await self.event.wait()
        assert self.value is not None
        return self.value


class _Countdown:
    __slots__ = ("done", "left")

    def __init__(self, n: int) -> None:
        self.left = n
        self.done = trio.Event()
        if n <= 0:
            self.done.set()

    def tick(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.done.set()


class Coordinator:
    """An actor run; see the module docstring. ``start_step`` and ``seeded`` come from the
    checkpoint being resumed (0 and False for a fresh run); ``config_json`` is stored in every
    checkpoint beside the state."""

    def __init__(
        self,
        *,
        config: Config,
        inbox: Mailbox[CoordinatorEvent],
        proposer: Mailbox[ProposeChunk],
        solver: Mailbox[SolveChunk],
        buffer: Mailbox[BufferRequest],
        learner: Mailbox[LearnerRequest],
        reports: Mailbox[Report],
        start_step: int = 0,
        seeded: bool = False,
        counts: CountsState | None = None,
        config_json: bytes = b"{}",
        evaluate: Callable[[int], Awaitable[dict[str, float]]] | None = None,
        eval_tasks: Sequence[SolveTask] = (),
    ) -> None:
        self.config = config
        # Called every run.eval_every steps; its metrics join the step's (e.g. eval/<bench>).
        self._benchmarks = evaluate
        self._inbox = inbox
        self._proposer = proposer
        self._solver = solver
        self._buffer = buffer
        self._learner = learner
        self._reports = reports
        self._start_step = start_step
        self._seeded = seeded
        self._config_json = config_json
        self._waiting: dict[Hashable, _Waiter] = {}
        self._next_request = 0
        self._last_checkpoint: str | None = None
        self._executions = 0
        # Answers and program shapes of the admitted tasks, for the diversity and novelty
        # bonuses; a checkpoint stores them with the buffers.
        counts = counts or CountsState()
        self._answers = {t: AnswerCounts(counts.answers.get(t.value)) for t in ALL_TASK_TYPES}
        self._shapes = {t: AnswerCounts(counts.shapes.get(t.value)) for t in ALL_TASK_TYPES}
        self._types = active_task_types(config)
        self._eval_tasks = tuple(eval_tasks)
        self._step_seconds: list[float] = []
        self._steps_started: float | None = None
        self._last_step: int | None = None

    # -- plumbing -------------------------------------------------------------------------

    async def __call__(self, ctx: ActorContext) -> None:
        ctx.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, ctx, nursery.cancel_scope)
            await self._drive(ctx)
            nursery.cancel_scope.cancel()

    async def _read(self, ctx: ActorContext, scope: trio.CancelScope) -> None:
        async for event in ctx.messages(self._inbox):
            waiter = self._waiting.pop(self._key(event), None)
            if waiter is None:
                raise RuntimeError(f"unexpected {type(event).__name__}: nobody waits for it")
            waiter.value = event
            waiter.event.set()
        # The inbox was closed: the system is stopping, and no awaited reply can come any more.
        scope.cancel()

    @staticmethod
    def _key(event: CoordinatorEvent) -> Hashable:
        match event:
            case ProposalsValidated(work=work):
                return ("work", work.chunk.work)
            case SolutionsChecked(work=work):
                return ("work", work.chunk.work)
            case BufferReply(request_id=rid):
                return ("buffer", rid)
            case LearnerReply(request_id=rid):
                return ("learner", rid)
            case _:
                raise TypeError(f"the coordinator cannot handle {type(event).__name__}")

    def _expect(self, key: Hashable) -> _Waiter:
        waiter = self._waiting[key] = _Waiter()
        return waiter

    def _request_id(self) -> int:
        self._next_request += 1
        return self._next_request

    async def _ask_buffer(self, request: BufferRequest, reply: type[E]) -> E:
        waiter = self._expect(("buffer", request.request_id))
        await self._buffer.send(request)
        return _expect_type(await waiter.wait(), reply)

    def _report_nowait(self, report: Report) -> None:
        # Progress is advisory: dropped rather than waited for when the reader is behind.
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._reports.send_nowait(report)

    # -- the schedule ---------------------------------------------------------------------

    async def _drive(self, ctx: ActorContext) -> None:
        cfg = self.config.run
        if not self._seeded:
            initial = await self._evaluate(0) if self._eval_due(0) else {}
            await self._seed(ctx, initial)
        self._steps_started = time.perf_counter()
        lookback = 0 if cfg.mode == "sync" else cfg.max_staleness
        trained: dict[int, trio.Event] = {}
        previous = trio.Event()
        previous.set()
        async with trio.open_nursery() as nursery:
            for step in range(self._start_step + 1, cfg.steps + 1):
                if lookback == 0:
                    await previous.wait()
                elif (gate := step - 1 - lookback) in trained:
                    await trained[gate].wait()
                if self._last_step is not None:
                    break  # out of time: the step that ended the run was evaluated as the last
                data = await self._rollout(step)
                trained[step] = trio.Event()
                done = trio.Event()
                # Sent here, in step order, so that the learner saves step t before it trains
                # step t + 1 whatever the timing.
                batch = build_batch(
                    data,
                    self.config.rewards,
                    learnability_solves=self.config.selfplay.train_learnability,
                )
                train_waiter = self._expect(("learner", rid := self._request_id()))
                await self._learner.send(TrainStep(request_id=rid, step=step, batch=batch))
                save_waiter = None
                if data.snapshot is not None:
                    save_waiter = self._expect(("learner", rid := self._request_id()))
                    save = self._save_request(rid, step, data.snapshot, data.counts)
                    await self._learner.send(save)
                nursery.start_soon(
                    self._finish,
                    ctx,
                    data,
                    train_waiter,
                    save_waiter,
                    trained[step],
                    previous,
                    done,
                )
                previous = done
        steps = cfg.steps if self._last_step is None else self._last_step
        await tell(self._reports, RunFinished(steps=steps, checkpoint=self._last_checkpoint))

    # -- held-out evaluation and the time limit -----------------------------------------

    def _eval_due(self, step: int) -> bool:
        every = self.config.run.eval_every
        return bool(self._eval_tasks) and every > 0 and step % every == 0

    def _out_of_time(self) -> bool:
        """Whether the time limit leaves no room for another step of the average length so
        far (the run's steps only: seeding and the first evaluation are not counted)."""
        limit = self.config.run.time_limit_s
        if limit is None or self._steps_started is None or not self._step_seconds:
            return False
        elapsed = time.perf_counter() - self._steps_started
        mean = sum(self._step_seconds) / len(self._step_seconds)
        return elapsed + mean > limit

    async def _evaluate(self, step: int) -> dict[str, float]:
        """Greedy answers of the current policy to the held-out tasks, checked by the verifier
        like any solution (never trained on, never admitted anywhere)."""
        tasks = self._eval_tasks
        size = self.config.generation.torch.max_batch_size
        verdicts: dict[int, Verdict] = {}
        async with trio.open_nursery() as nursery:
            for t in TASK_TYPES:
                indices = [i for i, x in enumerate(tasks) if x.task_type is t]
                for first, part in _chunks(indices, size):
                    work = WorkId(step=step, stage="eval", task_type=t, chunk=first)
                    waiter = self._expect(("work", work))

                    async def collect(waiter: _Waiter = waiter, part: Sequence[int] = part) -> None:
                        event = _expect_type(await waiter.wait(), SolutionsChecked)
                        verdicts.update(zip(part, event.verdicts, strict=True))

                    nursery.start_soon(collect)
                    chunk = SolveChunk(
                        work=work,
                        tasks=tuple(tasks[i] for i in part),
                        n=1,
                        seed=derive_seed(self.config.run.seed, work),
                        greedy=True,
                    )
                    await self._solver.send(chunk)
        return heldout_metrics(tasks, [verdicts[i] for i in range(len(tasks))])

    def _checkpoint_due(self, step: int) -> bool:
        cfg = self.config.run
        return step % cfg.checkpoint_every == 0 or step == cfg.steps

    def counts(self) -> CountsState:
        """The diversity and novelty counts as they stand (a copy)."""
        return _counts_state(self._answers, self._shapes)

    def _save_request(
        self, rid: int, step: int, snapshot: BuffersSnapshot, counts: CountsState | None
    ) -> SaveCheckpoint:
        state = RunState(step=step, seeded=True, buffer_rng=snapshot.rng, counts=counts)
        files = (
            *snapshot.files,
            Blob(STATE_FILE, STATE_ENCODER.encode(state)),
            Blob(CONFIG_FILE, self._config_json),
        )
        return SaveCheckpoint(request_id=rid, step=step, files=files)

    async def _finish(
        self,
        ctx: ActorContext,
        data: StepData,
        train_waiter: _Waiter,
        save_waiter: _Waiter | None,
        trained: trio.Event,
        previous: trio.Event,
        done: trio.Event,
    ) -> None:
        result = _expect_type(await train_waiter.wait(), StepTrained)
        trained.set()
        checkpoint = None
        save_seconds = 0.0
        if save_waiter is not None:
            saved = _expect_type(await save_waiter.wait(), CheckpointSaved)
            checkpoint, save_seconds = saved.path, saved.seconds
        await previous.wait()  # reports leave in step order
        if checkpoint is not None:
            self._last_checkpoint = checkpoint
        metrics = step_metrics(data, self.config.rewards, result)
        metrics["time/checkpoint"] = save_seconds
        metrics["time/step"] = time.perf_counter() - data.started
        self._step_seconds.append(metrics["time/step"])
        final = data.step == self.config.run.steps or self._out_of_time()
        if final:
            self._last_step = data.step
        if self._eval_due(data.step) or (final and self._eval_tasks):
            evaluated = time.perf_counter()
            metrics.update(await self._evaluate(data.step))
            metrics["time/eval"] = time.perf_counter() - evaluated
        executions = data.executions - self._executions
        self._executions = max(self._executions, data.executions)
        metrics["executor/executions"] = float(executions)
        if data.rollout_seconds > 0:
            metrics["executor/executions_per_s"] = executions / data.rollout_seconds
        metrics.update(_system_metrics(ctx))
        every = self.config.run.eval_every
        if self._benchmarks is not None and every and data.step > 0 and data.step % every == 0:
            metrics.update(await self._benchmarks(data.step))
        summary = _summary(data.step, self.config.run.steps, metrics)
        samples = sample_records(data.step, _sample_sources(data, self.config))
        report = StepReport(
            step=data.step, metrics=metrics, summary=summary, checkpoint=checkpoint, samples=samples
        )
        await tell(self._reports, report)
        done.set()

    # -- seeding --------------------------------------------------------------------------

    async def _seed(self, ctx: ActorContext, initial: dict[str, float]) -> None:
        sp = self.config.selfplay
        started = time.perf_counter()
        described = await self._ask_buffer(
            DescribeBuffers(request_id=self._request_id()), BuffersDescribed
        )
        state = described.state
        data = StepData(step=0)
        rounds = 0
        # Induction proposals write inputs for programs drawn from the deduction and abduction
        # buffers, so they are seeded only once those are: otherwise the first induction round
        # could draw nothing but the identity program.
        phases = (
            [t for t in self._types if t is not TaskType.INDUCTION],
            [TaskType.INDUCTION],
        )
        for phase in phases:
            phase_rounds = 0
            while phase_rounds < sp.seed_max_rounds:
                short = [t for t in phase if _size(state, t) < sp.seed_buffer_size]
                if not short:
                    break
                prepared = await self._prepare(short)
                base = rounds * sp.batch_size
                async with trio.open_nursery() as nursery:
                    countdown = await self._dispatch_proposals(
                        nursery, data, prepared.requests, "seed", base, learn=False
                    )
                    await countdown.done.wait()
                state = (await self._admit(data, since=base)).state
                rounds += 1
                phase_rounds += 1
        self._seeded = True
        data.buffers = state
        data.rollout_seconds = time.perf_counter() - started
        metrics = {
            k.replace("propose/", "seed/", 1): v
            for k, v in step_metrics(data, self.config.rewards).items()
        }
        metrics["seed/rounds"] = float(rounds)
        metrics["time/seed"] = data.rollout_seconds
        metrics.update(initial)
        self._executions = data.executions
        sizes = "/".join(str(stats.size) for t in self._types if (stats := state.of(t)))
        summary = (
            f"seeded buffers in {rounds} round(s), {data.rollout_seconds:.1f} s: "
            f"{'/'.join(t.value for t in self._types)} sizes {sizes}"
        )
        await tell(self._reports, StepReport(step=0, metrics=metrics, summary=summary))

    # -- one step's rollouts --------------------------------------------------------------

    async def _prepare(self, types: Sequence[TaskType]) -> ProposalsPrepared:
        sp = self.config.selfplay
        request = PrepareProposals(
            request_id=self._request_id(),
            task_types=tuple(types),
            counts=tuple(sp.batch_size for _ in types),
            references=sp.references,
            induction_inputs=sp.induction_inputs,
        )
        return await self._ask_buffer(request, ProposalsPrepared)

    async def _admit(self, data: StepData, since: int = 0) -> TasksAdmitted:
        """Admit the valid proposals of ``data`` numbered ``since`` or more, each type in index
        order; the counts of new entries accumulate in ``data.admitted``."""
        triplets: dict[TaskType, list[Triplet]] = {t: [] for t in ALL_TASK_TYPES}
        induction: list[InductionTask] = []
        for t in ALL_TASK_TYPES:
            for index, record in sorted(data.proposals.get(t, {}).items()):
                if index < since:
                    continue
                verdict = record.verdict
                if self._eval_tasks and verdict.valid and _held_out(verdict):
                    continue  # the evaluation's tasks never enter the buffers
                if verdict.valid and verdict.triplet is not None:
                    triplets[t].append(verdict.triplet)
                elif verdict.valid and verdict.induction is not None:
                    induction.append(verdict.induction)
        request = AdmitTasks(
            request_id=self._request_id(),
            deduction=tuple(triplets[TaskType.DEDUCTION]),
            abduction=tuple(triplets[TaskType.ABDUCTION]),
            induction=tuple(induction),
            error_prediction=tuple(triplets[TaskType.ERROR_PREDICTION]),
        )
        admitted = await self._ask_buffer(request, TasksAdmitted)
        novelty = self.config.rewards.intrinsic.novelty.coef > 0
        for t in _TRIPLET_TYPES:
            _observe(self._answers[t], self._shapes[t], t, triplets[t], novelty=novelty)
        counts = (
            admitted.deduction,
            admitted.abduction,
            admitted.induction,
            admitted.error_prediction,
        )
        for t, count in zip(ALL_TASK_TYPES, counts, strict=True):
            data.admitted[t] = data.admitted.get(t, 0) + count
        data.buffers = admitted.state
        return admitted

    async def _rollout(self, step: int) -> StepData:
        sp = self.config.selfplay
        data = StepData(step=step)
        prepared = await self._prepare(self._types)
        async with trio.open_nursery() as nursery:
            countdown = await self._dispatch_proposals(
                nursery, data, prepared.requests, "propose", 0, learn=True
            )
            await countdown.done.wait()
            await self._admit(data)
            sample = SampleSolveTasks(
                request_id=self._request_id(),
                per_type=sp.batch_size,
                recent_fraction=sp.recent_fraction,
                task_types=self._types,
            )
            sampled = await self._ask_buffer(sample, SolveTasksSampled)
            if self._checkpoint_due(step):
                # Taken now, right after the step's last buffer operation, so that a resumed run
                # draws exactly what this one will draw next, whatever runs meanwhile.
                data.snapshot = await self._ask_buffer(
                    SnapshotBuffers(request_id=self._request_id()), BuffersSnapshot
                )
                data.counts = self.counts()
            await self._dispatch_solves(nursery, data, sampled.tasks)
        data.rollout_seconds = time.perf_counter() - data.started
        return data

    async def _dispatch_proposals(
        self,
        nursery: trio.Nursery,
        data: StepData,
        requests: Sequence[ProposeRequest],
        stage: Stage,
        base: int,
        *,
        learn: bool,
    ) -> _Countdown:
        """Send ``requests`` to the proposer in chunks; the returned countdown reaches zero when
        every chunk is validated (learnability rollouts, if any, continue in ``nursery``).

        Request i of a type is recorded as proposal ``base + i`` of that type, and its chunk is
        numbered by its first proposal, so seeding rounds (each with a higher ``base``) never
        reuse a number."""
        size = self.config.generation.chunk_size
        per_type = {t: [r for r in requests if r.type is t] for t in ALL_TASK_TYPES}
        chunks = [
            (t, first, part) for t in ALL_TASK_TYPES for first, part in _chunks(per_type[t], size)
        ]
        countdown = _Countdown(len(chunks))
        total = len(requests)
        progress = [0]
        clock = data.clock(stage)
        for t, first, part in chunks:
            index = base + first
            work = WorkId(step=data.step, stage=stage, task_type=t, chunk=index)
            waiter = self._expect(("work", work))
            nursery.start_soon(
                self._on_validated, data, waiter, index, countdown, progress, total, learn
            )
            clock.begin()
            seed = derive_seed(self.config.run.seed, work)
            await self._proposer.send(ProposeChunk(work=work, requests=tuple(part), seed=seed))
        return countdown

    async def _on_validated(
        self,
        data: StepData,
        waiter: _Waiter,
        first: int,
        countdown: _Countdown,
        progress: list[int],
        total: int,
        learn: bool,
    ) -> None:
        event = _expect_type(await waiter.wait(), ProposalsValidated)
        work = event.work.chunk.work
        t = work.task_type
        clock = data.clock(work.stage)
        clock.finish()
        _count_generation(clock, event.work.generation, len(event.verdicts), event.seconds)
        data.executions = max(data.executions, event.executions)
        records = data.proposals.setdefault(t, {})
        for offset, (rollout, verdict) in enumerate(
            zip(event.work.rollouts, event.verdicts, strict=True)
        ):
            records[first + offset] = ProposalRecord(
                rollout=rollout,
                verdict=verdict,
                bonus=self._bonus(t, verdict),
                request=event.work.chunk.requests[offset],
            )
        progress[0] += len(event.verdicts)
        progress_report = StageProgress(
            step=data.step, stage=work.stage, done=progress[0], total=total
        )
        self._report_nowait(progress_report)
        countdown.tick()
        if not learn:
            return
        chosen = [
            (first + offset, task)
            for offset, verdict in enumerate(event.verdicts)
            if verdict.valid and (task := _solve_task(t, verdict)) is not None
        ]
        if not chosen:
            return
        n = self.config.solver_rollouts
        learn_work = WorkId(step=data.step, stage="learnability", task_type=t, chunk=work.chunk)
        learn_waiter = self._expect(("work", learn_work))
        chunk = SolveChunk(
            work=learn_work,
            tasks=tuple(task for _, task in chosen),
            n=n,
            seed=derive_seed(self.config.run.seed, learn_work),
        )
        learn_clock = data.clock("learnability")
        learn_clock.begin()
        await self._solver.send(chunk)
        checked = _expect_type(await learn_waiter.wait(), SolutionsChecked)
        learn_clock.finish()
        _count_generation(
            learn_clock, checked.work.generation, len(checked.verdicts), checked.seconds
        )
        data.executions = max(data.executions, checked.executions)
        keep = self.config.selfplay.train_learnability
        for j, (index, task) in enumerate(chosen):
            verdicts = checked.verdicts[j * n : (j + 1) * n]
            records[index].learnability = [v.reason for v in verdicts]
            if keep:
                rollouts = checked.work.rollouts[j * n : (j + 1) * n]
                records[index].solves = learnability_solves(task, rollouts, verdicts)

    def _bonus(self, task_type: TaskType, verdict: ProposalVerdict) -> float:
        """The intrinsic rewards of a valid deduction or abduction proposal (0 when off)."""
        triplet = verdict.triplet
        if not verdict.valid or triplet is None:
            return 0.0
        return proposal_bonus(
            self.config.rewards.intrinsic,
            triplet.program,
            _answer(task_type, triplet),
            self._answers[task_type],
            self._shapes[task_type],
        )

    async def _dispatch_solves(
        self, nursery: trio.Nursery, data: StepData, tasks: Sequence[SolveTask]
    ) -> None:
        size = self.config.generation.chunk_size
        per_type = {t: [x for x in tasks if x.task_type is t] for t in ALL_TASK_TYPES}
        progress = [0]
        total = len(tasks)
        clock = data.clock("solve")
        for t in ALL_TASK_TYPES:
            for first, part in _chunks(per_type[t], size):
                work = WorkId(step=data.step, stage="solve", task_type=t, chunk=first)
                waiter = self._expect(("work", work))
                nursery.start_soon(self._on_checked, data, waiter, first, progress, total)
                clock.begin()
                seed = derive_seed(self.config.run.seed, work)
                await self._solver.send(SolveChunk(work=work, tasks=tuple(part), n=1, seed=seed))

    async def _on_checked(
        self, data: StepData, waiter: _Waiter, first: int, progress: list[int], total: int
    ) -> None:
        event = _expect_type(await waiter.wait(), SolutionsChecked)
        work = event.work.chunk.work
        clock = data.clock("solve")
        clock.finish()
        _count_generation(clock, event.work.generation, len(event.verdicts), event.seconds)
        data.executions = max(data.executions, event.executions)
        records = data.solves.setdefault(work.task_type, {})
        for offset, (rollout, verdict) in enumerate(
            zip(event.work.rollouts, event.verdicts, strict=True)
        ):
            records[first + offset] = SolveRecord(
                rollout=rollout, verdict=verdict, task=event.work.chunk.tasks[offset]
            )
        progress[0] += len(event.verdicts)
        self._report_nowait(
            StageProgress(step=data.step, stage="solve", done=progress[0], total=total)
        )


def _sample_sources(data: StepData, config: Config) -> list[SampleSource]:
    """The first ``run.samples_per_step`` responses per task type and role, in index order."""
    k = config.run.samples_per_step
    out: list[SampleSource] = []
    for t in TASK_TYPES:
        for _, p in sorted(data.proposals.get(t, {}).items())[:k]:
            reward = proposal_reward(p, config.rewards)
            out.append((t, "propose", p.request, p.rollout.text, p.verdict.reason, reward))
        for _, r in sorted(data.solves.get(t, {}).items())[:k]:
            v = r.verdict
            reward = v.reward if v.scored else None
            out.append((t, "solve", r.task, r.rollout.text, v.reason, reward))
    return out


def _held_out(verdict: ProposalVerdict) -> bool:
    task = verdict.triplet or verdict.induction
    return task is not None and is_heldout(task.program)


def _count_generation(
    clock: _StageClock, stats: GenerationStats, responses: int, check_seconds: float
) -> None:
    clock.prompts += stats.prompts
    clock.prompt_tokens += stats.prompt_tokens
    clock.generated_tokens += stats.generated_tokens
    clock.responses += responses
    clock.check_seconds += check_seconds
    clock.too_long += len(stats.too_long)


def _expect_type(event: CoordinatorEvent, kind: type[E]) -> E:
    if not isinstance(event, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(event).__name__}")
    return event


def _system_metrics(ctx: ActorContext) -> dict[str, float]:
    stats = ctx.system.statistics()
    out: dict[str, float] = {}
    for name, actor in stats.actors.items():
        out[f"actor/{name}/busy_s"] = actor.busy_seconds
        out[f"actor/{name}/waiting_s"] = actor.waiting_seconds
        out[f"actor/{name}/handled"] = float(actor.messages_handled)
    for name, box in stats.mailboxes.items():
        out[f"mailbox/{name}/peak_depth"] = float(box.peak_depth)
        out[f"mailbox/{name}/send_blocked_s"] = box.send_blocked_seconds
    return out


def _summary(step: int, steps: int, m: dict[str, float]) -> str:
    played = [
        t
        for t in ALL_TASK_TYPES
        if t in TASK_TYPES or f"propose/{t.value}/count" in m or f"solve/{t.value}/count" in m
    ]
    letters = "/".join(t.value[0] for t in played)

    def per_type(fmt: str) -> list[str]:
        return [fmt.format(t=t.value) for t in played]

    valid = " ".join(
        f"{m.get(v, 0.0) * m.get(c, 0.0):.0f}/{m.get(c, 0.0):.0f}"
        for v, c in zip(per_type("propose/{t}/valid"), per_type("propose/{t}/count"), strict=True)
    )
    rewards_p = "/".join(f"{m.get(k, float('nan')):+.2f}" for k in per_type("propose/{t}/reward"))
    rewards_s = "/".join(f"{m.get(k, float('nan')):+.2f}" for k in per_type("solve/{t}/reward"))
    accuracy = "/".join(f"{m.get(k, float('nan')):.2f}" for k in per_type("solve/{t}/accuracy"))
    sizes = "/".join(f"{m.get(k, 0.0):.0f}" for k in per_type("buffer/{t}/size"))
    loss = m.get("learner/loss")
    loss_text = f"{loss:+.4f}" if loss is not None else "skipped"
    too_long = m.get("gen/prompts_too_long", 0.0)
    dropped = f" | {too_long:.0f} prompts too long, dropped" if too_long else ""
    return (
        f"step {step}/{steps} | loss {loss_text} | propose reward {letters} {rewards_p}, valid "
        f"{valid} | solve reward {rewards_s}, accuracy {accuracy} | buffers {sizes} | "
        f"{m.get('time/step', 0.0):.1f} s (rollout {m.get('time/rollout', 0.0):.1f}, update "
        f"{m.get('time/update', 0.0):.1f}) | {m.get('gen/tokens_per_s', 0.0):.0f} tok/s{dropped}"
    )
