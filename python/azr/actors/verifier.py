"""The verifier actor: owns the sandboxed executor and judges every generated response.

Proposals are parsed and validated (:meth:`azr.verify.Verifier.score_proposal_batch_async`),
solutions parsed and checked (:meth:`~azr.verify.Verifier.score_response_batch_async`). Up to
``max_concurrent`` chunks are judged at once, so the executor's workers stay busy while chunks
arrive one by one from the generating actors; every verdict goes to the coordinator.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from azr.actors._common import serve, tell
from azr.actors.messages import (
    CheckSolutions,
    CoordinatorEvent,
    ProposalsValidated,
    ProposalVerdict,
    SolutionsChecked,
    ValidateProposals,
    VerifierWork,
)
from azr.runtime import ActorContext, Mailbox
from azr.tasks.types import ProposeRequest, Reason
from azr.verify import InductionValidation, Validation, Verdict, Verifier

__all__ = ["VerifierActor", "proposal_verdict"]


def proposal_verdict(result: Validation | InductionValidation) -> ProposalVerdict:
    """The message form of a validation result."""
    if isinstance(result, InductionValidation):
        return ProposalVerdict(result.reason, result.detail, induction=result.task)
    return ProposalVerdict(result.reason, result.detail, triplet=result.triplet)


class VerifierActor:
    """An actor run. ``make_verifier`` builds the :class:`~azr.verify.Verifier` (and with it the
    executor) when the actor starts; the executor is closed when the actor stops, whatever the
    reason, so no sandbox process outlives it."""

    def __init__(
        self,
        *,
        make_verifier: Callable[[], Verifier],
        inbox: Mailbox[VerifierWork],
        coordinator: Mailbox[CoordinatorEvent],
        max_concurrent: int = 4,
    ) -> None:
        self._make_verifier = make_verifier
        self._inbox = inbox
        self._coordinator = coordinator
        self._max_concurrent = max_concurrent

    async def __call__(self, ctx: ActorContext) -> None:
        with self._make_verifier() as verifier:
            ctx.started()

            async def handle(work: VerifierWork) -> None:
                await tell(self._coordinator, await judge(verifier, work))

            await serve(ctx, self._inbox, handle, self._max_concurrent)


_TOO_LONG_DETAIL = "the prompt exceeds generation.max_prompt_tokens; nothing was generated"
_TOO_LONG_PROPOSAL = ProposalVerdict(Reason.PROMPT_TOO_LONG, _TOO_LONG_DETAIL)
_TOO_LONG_ANSWER = Verdict(
    correct=False, reward=0.0, reason=Reason.PROMPT_TOO_LONG, detail=_TOO_LONG_DETAIL
)


async def judge(verifier: Verifier, work: VerifierWork) -> CoordinatorEvent:
    """The verdicts on one piece of work, as the event the coordinator receives.

    Rollouts of prompts the generating actor left out as too long are not run: they get the
    unscored reason ``prompt_too_long``, so they are counted but never rewarded."""
    start = time.perf_counter()
    match work:
        case ValidateProposals(chunk=chunk, rollouts=rollouts, generation=generation):
            skipped = set(generation.too_long)
            keep = [i for i in range(len(rollouts)) if i not in skipped]
            requests: list[ProposeRequest] = [chunk.requests[i] for i in keep]
            results = await verifier.score_proposal_batch_async(
                requests, [rollouts[i].text for i in keep]
            )
            proposals = dict(zip(keep, map(proposal_verdict, results), strict=True))
            return ProposalsValidated(
                work=work,
                verdicts=tuple(proposals.get(i, _TOO_LONG_PROPOSAL) for i in range(len(rollouts))),
                seconds=time.perf_counter() - start,
                executions=verifier.executor.statistics()["executions"],
            )
        case CheckSolutions(chunk=chunk, rollouts=rollouts, generation=generation):
            skipped = set(generation.too_long)
            # Rollouts are task-major: rollout i answers task i // n.
            keep = [i for i in range(len(rollouts)) if i // chunk.n not in skipped]
            tasks = [chunk.tasks[i // chunk.n] for i in keep]
            verdicts = await verifier.score_response_batch_async(
                tasks, [rollouts[i].text for i in keep]
            )
            answers = dict(zip(keep, verdicts, strict=True))
            return SolutionsChecked(
                work=work,
                verdicts=tuple(answers.get(i, _TOO_LONG_ANSWER) for i in range(len(rollouts))),
                seconds=time.perf_counter() - start,
                executions=verifier.executor.statistics()["executions"],
            )
        case _:
            raise TypeError(f"the verifier cannot handle {type(work).__name__}")
