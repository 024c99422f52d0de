"""The verifier actor on the real sandbox: proposals validated, answers checked, executor closed."""

from __future__ import annotations

from azr.actors.messages import (
    CheckSolutions,
    CoordinatorEvent,
    GenerationStats,
    ProposalsValidated,
    ProposeChunk,
    Rollout,
    SolutionsChecked,
    SolveChunk,
    ValidateProposals,
    VerifierWork,
    WorkId,
)
from azr.actors.verifier import VerifierActor
from azr.executor import Limits
from azr.runtime import open_actor_system
from azr.tasks import (
    SEED_INDUCTION_TASK,
    SEED_TRIPLET,
    AbductionTask,
    DeductionTask,
    ProposeRequest,
    Reason,
    TaskType,
    Triplet,
    format_blocks,
    format_response,
)
from azr.verify import Verifier

from ._support import trio_test

GEN = GenerationStats(seconds=0.0, prompts=0, prompt_tokens=0, generated_tokens=0)


def _rollout(text: str) -> Rollout:
    return Rollout((1,), (2,), (-1.0,), text, "stop", 0)


def _proposal(program: str, inputs: str) -> str:
    return format_response(format_blocks([("python", program), ("input", inputs)]))


@trio_test(timeout=60)
async def test_proposals_and_solutions_get_verdicts_in_order() -> None:
    verifiers: list[Verifier] = []

    def make() -> Verifier:
        verifier = Verifier(workers=2, limits=Limits(wall_timeout_s=2.0, cpu_time_s=2.0))
        verifiers.append(verifier)
        return verifier

    async with open_actor_system(grace_period=5) as system:
        inbox = system.open_mailbox(VerifierWork, 4, name="verifier")
        out = system.open_mailbox(CoordinatorEvent, 8, name="out")
        actor = VerifierActor(make_verifier=make, inbox=inbox, coordinator=out, max_concurrent=2)
        await system.start_actor("verifier", actor, mailboxes=[inbox])

        deduction = ProposeRequest(TaskType.DEDUCTION, references=(SEED_TRIPLET,))
        induction = ProposeRequest(TaskType.INDUCTION, program=SEED_TRIPLET.program, n_inputs=4)
        propose = ProposeChunk(
            work=WorkId(step=1, stage="propose", task_type=TaskType.DEDUCTION, chunk=0),
            requests=(deduction, deduction, deduction, induction),
            seed=0,
        )
        responses = (
            _proposal("def g(x):\n    return sorted(x)", "[3, 1, 2]"),
            _proposal("def f(x):\n    return x / 0", "1"),
            "<answer>no reasoning first</answer>",
            format_response(
                format_blocks(
                    [
                        ("input", "1"),
                        ("input", "'ab'"),
                        ("input", "[0]"),
                        ("input", "None"),
                        ("message", "same"),
                    ]
                )
            ),
        )
        await inbox.send(
            ValidateProposals(
                chunk=propose, rollouts=tuple(_rollout(r) for r in responses), generation=GEN
            )
        )
        task = DeductionTask.from_triplet(Triplet("def f(x):\n    return x * 3", "2", "6"))
        solve = SolveChunk(
            work=WorkId(step=1, stage="solve", task_type=TaskType.DEDUCTION, chunk=0),
            tasks=(task, AbductionTask.from_triplet(SEED_TRIPLET), SEED_INDUCTION_TASK),
            n=2,
            seed=0,
        )
        answers = (
            format_response("6"),
            format_response("7"),
            format_response("'Hello world'"),
            format_response("'Hello'"),
            format_response(format_blocks([("python", "def f(a):\n    return a")])),
            "no tags at all",
        )
        await inbox.send(
            CheckSolutions(
                chunk=solve, rollouts=tuple(_rollout(a) for a in answers), generation=GEN
            )
        )
        events = {type(e): e for e in (await out.receive(), await out.receive())}

        validated = events[ProposalsValidated]
        assert isinstance(validated, ProposalsValidated)
        assert validated.work.chunk == propose
        reasons = [v.reason for v in validated.verdicts]
        assert reasons == [Reason.OK, Reason.ERROR, Reason.FORMAT, Reason.OK]
        triplet = validated.verdicts[0].triplet
        assert triplet is not None and triplet.output == "[1, 2, 3]"
        assert "def f(" in triplet.program  # renamed to the entry name
        induction_task = validated.verdicts[3].induction
        assert induction_task is not None and induction_task.message == "same"
        assert len(induction_task.shown) + len(induction_task.hidden) == 4

        checked = events[SolutionsChecked]
        assert isinstance(checked, SolutionsChecked)
        assert [v.reason for v in checked.verdicts] == [
            Reason.OK,
            Reason.WRONG,
            Reason.OK,
            Reason.WRONG,
            Reason.OK,
            Reason.FORMAT,
        ]
        assert [v.reward for v in checked.verdicts] == [1.0, -0.5, 1.0, -0.5, 1.0, -1.0]
        assert checked.executions > 0 and validated.executions > 0  # a running total

    # Leaving the system stopped the actor, and with it the sandbox.
    assert verifiers and verifiers[0].executor.closed
