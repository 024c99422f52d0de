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
from azr.tasks.types import ProposeRequest
from azr.verify import InductionValidation, Validation, Verifier

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


async def judge(verifier: Verifier, work: VerifierWork) -> CoordinatorEvent:
    """The verdicts on one piece of work, as the event the coordinator receives."""
    start = time.perf_counter()
    match work:
        case ValidateProposals(chunk=chunk, rollouts=rollouts):
            requests: list[ProposeRequest] = list(chunk.requests)
            results = await verifier.score_proposal_batch_async(
                requests, [r.text for r in rollouts]
            )
            return ProposalsValidated(
                work=work,
                verdicts=tuple(proposal_verdict(r) for r in results),
                seconds=time.perf_counter() - start,
                executions=verifier.executor.statistics()["executions"],
            )
        case CheckSolutions(chunk=chunk, rollouts=rollouts):
            tasks = [task for task in chunk.tasks for _ in range(chunk.n)]
            verdicts = await verifier.score_response_batch_async(tasks, [r.text for r in rollouts])
            return SolutionsChecked(
                work=work,
                verdicts=tuple(verdicts),
                seconds=time.perf_counter() - start,
                executions=verifier.executor.statistics()["executions"],
            )
        case _:
            raise TypeError(f"the verifier cannot handle {type(work).__name__}")
