"""Proposer and solver on the real torch backend: one verifier message per chunk, seeded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec

from azr.actors._common import ANSWER_STOP, PromptFormat, derive_seed, generate_rollouts
from azr.actors.coordinator import (
    ProposalRecord,
    SolveRecord,
    StepData,
    build_batch,
    step_metrics,
)
from azr.actors.messages import (
    CheckSolutions,
    ProposalsValidated,
    ProposeChunk,
    SolutionsChecked,
    SolveChunk,
    ValidateProposals,
    VerifierWork,
    WorkId,
)
from azr.actors.proposer import Proposer
from azr.actors.solver import Solver
from azr.actors.verifier import judge
from azr.generation import Completion, SamplingParams, TorchBackend
from azr.models import TinyModelSpec, Tokenizer, load_model
from azr.rewards import RewardConfig
from azr.runtime import Mailbox, open_actor_system
from azr.tasks import (
    SEED_INDUCTION_TASK,
    SEED_TRIPLET,
    AbductionTask,
    ProposeRequest,
    Reason,
    TaskType,
)
from azr.tasks.prompts import solve_prompt
from azr.verify import Verifier

from ._support import ScriptedBackend, trio_test

SPEC = TinyModelSpec(
    hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
)
SAMPLING = SamplingParams(max_new_tokens=8, stop=(ANSWER_STOP,))


def _backend() -> TorchBackend:
    model, tokenizer = load_model(None, spec=SPEC, seed=0)
    return TorchBackend(model, tokenizer, device="cpu", copy_model=False)


Inboxes = tuple[Mailbox[ProposeChunk], Mailbox[SolveChunk], Mailbox[VerifierWork]]


@asynccontextmanager
async def _running(
    backend: TorchBackend, max_prompt_tokens: int | None = None
) -> AsyncIterator[Inboxes]:
    fmt = PromptFormat("markers", backend.tokenizer)
    tok = backend.tokenizer
    async with open_actor_system(grace_period=5) as system:
        verifier = system.open_mailbox(VerifierWork, 8, name="verifier")
        proposals = system.open_mailbox(ProposeChunk, 4, name="proposer")
        solutions = system.open_mailbox(SolveChunk, 4, name="solver")
        solver = Solver(
            backend=backend,
            tokenizer=tok,
            prompt_format=fmt,
            sampling=SAMPLING,
            inbox=solutions,
            verifier=verifier,
            max_prompt_tokens=max_prompt_tokens,
        )
        proposer = Proposer(
            backend=backend,
            tokenizer=tok,
            prompt_format=fmt,
            sampling=SAMPLING,
            inbox=proposals,
            verifier=verifier,
            max_prompt_tokens=max_prompt_tokens,
        )
        await system.start_actor("solver", solver, mailboxes=[solutions])
        await system.start_actor("proposer", proposer, mailboxes=[proposals])
        yield proposals, solutions, verifier


@trio_test(timeout=60)
async def test_each_chunk_becomes_one_verifier_message_with_its_rollouts() -> None:
    backend = _backend()
    tok = backend.tokenizer
    async with _running(backend) as (proposals, solutions, verifier):
        work = WorkId(step=1, stage="propose", task_type=TaskType.DEDUCTION, chunk=0)
        requests = (ProposeRequest(TaskType.DEDUCTION, references=(SEED_TRIPLET,)),) * 3
        chunk = ProposeChunk(work=work, requests=requests, seed=derive_seed(0, work))
        await proposals.send(chunk)
        solve_work = WorkId(step=1, stage="learnability", task_type=TaskType.ABDUCTION, chunk=0)
        tasks = (AbductionTask.from_triplet(SEED_TRIPLET), SEED_INDUCTION_TASK)
        await solutions.send(SolveChunk(work=solve_work, tasks=tasks, n=3, seed=5))
        messages = {type(m): m for m in (await verifier.receive(), await verifier.receive())}

    validate = messages[ValidateProposals]
    assert isinstance(validate, ValidateProposals) and validate.chunk == chunk
    assert len(validate.rollouts) == 3
    for rollout in validate.rollouts:
        prompt = tok.decode(rollout.prompt_ids)
        assert prompt.startswith("<|user|>") and prompt.endswith("<|assistant|><think>")
        assert "Design a new code-reasoning puzzle" in prompt
        assert 1 <= len(rollout.response_ids) == len(rollout.logprobs) <= 8
        assert rollout.weight_version == 0
    assert validate.generation.prompts == 3
    assert validate.generation.generated_tokens == sum(
        len(r.response_ids) for r in validate.rollouts
    )

    check = messages[CheckSolutions]
    assert isinstance(check, CheckSolutions)
    assert len(check.rollouts) == 6  # task-major: 3 for the abduction task, then 3 for induction
    first, last = (tok.decode(check.rollouts[i].prompt_ids) for i in (0, 5))
    assert "Find an input" in first and "Write a Python function" in last


@trio_test(timeout=60)
async def test_over_long_prompts_are_dropped_with_a_counted_reason() -> None:
    backend = _backend()
    tok = backend.tokenizer
    fmt = PromptFormat("markers", tok)
    short = AbductionTask.from_triplet(SEED_TRIPLET)
    padded = SEED_TRIPLET.program + "\n" + "# a long comment\n" * 40
    long = AbductionTask.from_triplet(msgspec.structs.replace(SEED_TRIPLET, program=padded))
    limit = len(tok.encode_prompt(fmt(solve_prompt(short))))
    assert len(tok.encode_prompt(fmt(solve_prompt(long)))) > limit

    async with _running(backend, max_prompt_tokens=limit) as (proposals, solutions, verifier):
        work = WorkId(step=1, stage="solve", task_type=TaskType.ABDUCTION, chunk=0)
        await solutions.send(SolveChunk(work=work, tasks=(short, long, short), n=2, seed=3))
        check = await verifier.receive()
        propose = WorkId(step=1, stage="propose", task_type=TaskType.DEDUCTION, chunk=0)
        request = ProposeRequest(TaskType.DEDUCTION, references=(SEED_TRIPLET,) * 6)
        await proposals.send(ProposeChunk(work=propose, requests=(request,), seed=1))
        validate = await verifier.receive()

    # The long task's two rollouts are empty and listed; the others were generated as usual.
    assert isinstance(check, CheckSolutions)
    assert check.generation.too_long == (1,) and check.generation.prompts == 2
    assert [len(r.response_ids) > 0 for r in check.rollouts] == [1, 1, 0, 0, 1, 1]
    assert isinstance(validate, ValidateProposals)  # six references: longer than the limit
    assert validate.generation.too_long == (0,) and not validate.rollouts[0].response_ids

    # The verifier gives them the unscored reason without running them; the step counts them.
    with Verifier(workers=1) as real:
        checked = await judge(real, check)
        validated = await judge(real, validate)
    assert isinstance(checked, SolutionsChecked) and isinstance(validated, ProposalsValidated)
    reasons = [v.reason for v in checked.verdicts]
    assert reasons[2:4] == [Reason.PROMPT_TOO_LONG] * 2
    assert Reason.PROMPT_TOO_LONG not in reasons[:2] + reasons[4:]
    assert [v.reason for v in validated.verdicts] == [Reason.PROMPT_TOO_LONG]
    data = StepData(step=1)
    data.solves[TaskType.ABDUCTION] = {
        i: SolveRecord(rollout=r, verdict=v, task=check.chunk.tasks[i // 2])
        for i, (r, v) in enumerate(zip(check.rollouts, checked.verdicts, strict=True))
    }
    data.proposals[TaskType.DEDUCTION] = {
        0: ProposalRecord(rollout=validate.rollouts[0], verdict=validated.verdicts[0])
    }
    for stage, stats in (("solve", check.generation), ("propose", validate.generation)):
        data.clock(stage).too_long += len(stats.too_long)
    metrics = step_metrics(data, RewardConfig())
    assert metrics["solve/abduction/wrong/prompt_too_long"] == 2
    assert metrics["propose/deduction/rejected/prompt_too_long"] == 1
    assert metrics["gen/prompts_too_long"] == 2
    trained = build_batch(data, RewardConfig()).samples  # never trained on
    assert all(s.role == "solve" and s.prompt_ids != check.rollouts[2].prompt_ids for s in trained)


@trio_test(timeout=60)
async def test_the_same_seed_samples_the_same_rollouts() -> None:
    backend = _backend()
    fmt = PromptFormat("markers", backend.tokenizer)
    prompts = ["first prompt", "second prompt"]
    params = msgspec.structs.replace(SAMPLING, n=2, seed=1234)
    a, _ = await generate_rollouts(backend, backend.tokenizer, fmt, prompts, params)
    b, _ = await generate_rollouts(backend, backend.tokenizer, fmt, prompts, params)
    other = msgspec.structs.replace(params, seed=99)
    c, _ = await generate_rollouts(backend, backend.tokenizer, fmt, prompts, other)
    assert a == b and a != c


def test_seeds_depend_only_on_the_work() -> None:
    work = WorkId(step=3, stage="solve", task_type=TaskType.INDUCTION, chunk=8)
    assert derive_seed(0, work) == derive_seed(0, WorkId(3, "solve", TaskType.INDUCTION, 8))
    assert derive_seed(0, work) != derive_seed(1, work)
    assert derive_seed(0, work) != derive_seed(0, msgspec.structs.replace(work, chunk=9))
    assert 0 <= derive_seed(0, work) < 2**31


@trio_test(timeout=20)
async def test_a_stopped_response_gets_its_closing_tag_back(tokenizer: Tokenizer) -> None:
    """Backends cut text before a stop string; the verifier must still see ``</answer>``."""

    class StopAtAnswer(ScriptedBackend):
        async def generate_ids(self, prompts, params):  # type: ignore[no-untyped-def]
            full = "<think>x</think><answer>1</answer>"
            ids = tuple(self.tokenizer.encode(full))
            cut = full[: full.index(ANSWER_STOP)]
            eos = "<think>x</think><answer>2</answer>"
            eos_ids = (*self.tokenizer.encode(eos), self.tokenizer.eos_token_id)
            return [
                [
                    Completion(cut, ids, (0.0,) * len(ids), "stop", 0),
                    Completion(eos, eos_ids, (0.0,) * len(eos_ids), "stop", 0),
                ]
                for _ in prompts
            ]

    backend = StopAtAnswer(tokenizer)
    fmt = PromptFormat("markers", tokenizer)
    params = msgspec.structs.replace(SAMPLING, n=2)
    (rollouts,), _ = await generate_rollouts(backend, tokenizer, fmt, ["p"], params)
    assert rollouts[0].text == "<think>x</think><answer>1</answer>"
    assert rollouts[1].text == "<think>x</think><answer>2</answer>"


def test_prompt_templates() -> None:
    tok = Tokenizer.byte_level()
    assert PromptFormat("plain", tok)("Do X.").endswith("User: Do X.\n\nAssistant: <think>")
    ids = tok.encode(PromptFormat("markers", tok)("Do X."))
    # The role markers and the opening think tag are single tokens of the byte tokenizer.
    assert ids[0] == tok.token_to_id("<|user|>") and ids[-1] == tok.token_to_id("<think>")
