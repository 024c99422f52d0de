"""The public verifier: from a model's answer to a verdict and a reward, for any RLVR stack.

Importing this module pulls in only the executor, the error types, the task model
(:mod:`azr.tasks`) and the reward arithmetic (:mod:`azr.rewards`, plain Python): no training
code, no torch, no trio at import time.

Example::

    from azr.verify import Verifier
    from azr.tasks import DeductionTask

    with Verifier() as v:
        v.check_deduction("def f(x):\\n    return x * 2", "21", "42").correct      # True
        v.check_abduction("def f(x):\\n    return x * 2", "42", "21").correct      # True
        v.check_induction("def f(x):\\n    return 2 * x", [("1", "2"), ("5", "10")]).correct
        task = DeductionTask(program="def f(s):\\n    return s[::-1]", input="'ab'", output="'ba'")
        v.score_response(task, "<think>reverse it</think><answer>'ba'</answer>").reward  # 1.0

Every method has a batch form taking parallel lists (``check_deduction_batch(programs, inputs,
answers)``), which runs all checks in as few executor batches as possible and runs identical
jobs once, and trio-async forms of both (``await v.check_deduction_async(...)``,
``await v.check_deduction_batch_async(...)``).

Verdicts carry a stable :class:`~azr.tasks.types.Reason` code. ``internal`` (the executor
failed on its own) and ``invalid_task`` (the gold side is broken) are never scored as wrong
answers: their reward is 0 and :attr:`Verdict.scored` is False, so callers can retry or skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import TypeVar

import msgspec

from azr.executor import Executor, Limits
from azr.rewards import DEFAULT_REWARDS, RewardConfig, solve_reward
from azr.tasks.ast_checks import Rejected
from azr.tasks.checking import (
    DEFAULT_CHECKS,
    Check,
    CheckConfig,
    abduction_plan,
    deduction_plan,
    induction_plan,
    response_plan,
)
from azr.tasks.error_prediction import validate_error_plan
from azr.tasks.parsing import InductionProposal, parse_proposal
from azr.tasks.plan import Plan, run_plans, run_plans_async
from azr.tasks.types import IOPair, ProposeRequest, Reason, SolveTask, TaskType
from azr.tasks.validation import (
    DEFAULT_VALIDATION,
    InductionValidation,
    Validation,
    ValidationConfig,
    validate_induction_plan,
    validate_plan,
)

__all__ = ["InductionValidation", "Reason", "Validation", "Verdict", "Verifier"]

T = TypeVar("T")
Pair = IOPair | tuple[str, str]
ProposalResult = Validation | InductionValidation


class Verdict(msgspec.Struct, frozen=True):
    """The judgement of one answer.

    ``correct``: the answer is right. ``reward``: the solver reward under the verifier's
    :class:`~azr.rewards.RewardConfig` (1 / -0.5 / -1 by default, 1 / 0 with
    ``scheme="binary"``). ``reason``: a stable code (``ok``, ``wrong``, ``format``, ``syntax``,
    ``too_large``, ``not_literal``, ``forbidden``, ``invalid_program``, ``error``, ``timeout``,
    ``limit``, ``violation``, ``crashed``, ``invalid_task``, ``internal``). ``detail``: a short
    human-readable explanation, not stable.
    """

    correct: bool
    reward: float
    reason: Reason
    detail: str = ""

    @property
    def scored(self) -> bool:
        """False for ``internal`` and ``invalid_task``: train on neither, retry or skip."""
        return self.reason.scored


def _same_length(*columns: Sequence[object]) -> None:
    if len({len(c) for c in columns}) > 1:
        raise ValueError(f"batch columns differ in length: {[len(c) for c in columns]}")


class Verifier:
    """Checks answers and validates proposals in the sandbox (see the module docstring).

    ``Verifier()`` starts and owns an :class:`~azr.executor.Executor` (built from ``limits`` and
    ``workers``) and closes it on :meth:`close` or at the end of a ``with`` block.
    ``Verifier(executor=ex)`` borrows ``ex`` and leaves it open.
    """

    def __init__(
        self,
        executor: Executor | None = None,
        *,
        limits: Limits | None = None,
        workers: int | None = None,
        checks: CheckConfig = DEFAULT_CHECKS,
        validation: ValidationConfig = DEFAULT_VALIDATION,
        rewards: RewardConfig = DEFAULT_REWARDS,
    ) -> None:
        self._stack = contextlib.ExitStack()
        if executor is None:
            executor = self._stack.enter_context(
                Executor(workers=workers, limits=limits if limits is not None else Limits())
            )
        elif limits is not None or workers is not None:
            raise ValueError("limits and workers configure an owned executor; pass one or these")
        self.executor = executor
        self.checks = checks
        self.validation = validation
        self.rewards = rewards

    def close(self) -> None:
        """Close the executor if this verifier started it."""
        self._stack.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _verdict(self, check: Check) -> Verdict:
        return Verdict(
            correct=check.reason is Reason.OK,
            reward=solve_reward(check.reason, self.rewards),
            reason=check.reason,
            detail=check.detail,
        )

    def _run(self, plans: Sequence[Plan[T]]) -> list[T]:
        return run_plans(plans, self.executor)

    async def _run_async(self, plans: Sequence[Plan[T]]) -> list[T]:
        return await run_plans_async(plans, self.executor)

    def _deduction(
        self,
        programs: Sequence[str],
        inputs: Sequence[str],
        answers: Sequence[str],
        outputs: Sequence[str | None] | None,
    ) -> list[Plan[Check]]:
        golds: Sequence[str | None] = [None] * len(programs) if outputs is None else outputs
        _same_length(programs, inputs, answers, golds)
        return [
            deduction_plan(p, i, a, output=o, config=self.checks)
            for p, i, a, o in zip(programs, inputs, answers, golds, strict=True)
        ]

    def _abduction(
        self, programs: Sequence[str], outputs: Sequence[str], answers: Sequence[str]
    ) -> list[Plan[Check]]:
        _same_length(programs, outputs, answers)
        return [
            abduction_plan(p, o, a, config=self.checks)
            for p, o, a in zip(programs, outputs, answers, strict=True)
        ]

    def _induction(
        self, answers: Sequence[str], pairs: Sequence[Sequence[Pair]]
    ) -> list[Plan[Check]]:
        _same_length(answers, pairs)
        return [
            induction_plan(a, ps, config=self.checks) for a, ps in zip(answers, pairs, strict=True)
        ]

    def _responses(self, tasks: Sequence[SolveTask], responses: Sequence[str]) -> list[Plan[Check]]:
        _same_length(tasks, responses)
        return [
            response_plan(t, r, config=self.checks) for t, r in zip(tasks, responses, strict=True)
        ]

    def _validations(
        self, programs: Sequence[str], inputs: Sequence[str]
    ) -> list[Plan[Validation]]:
        _same_length(programs, inputs)
        return [validate_plan(p, i, self.validation) for p, i in zip(programs, inputs, strict=True)]

    def _proposals(
        self, requests: Sequence[ProposeRequest], responses: Sequence[str]
    ) -> list[Plan[ProposalResult]]:
        _same_length(requests, responses)
        return [self._proposal(q, r) for q, r in zip(requests, responses, strict=True)]

    def _proposal(self, request: ProposeRequest, response: str) -> Plan[ProposalResult]:
        parsed = parse_proposal(
            response, request.type, n_inputs=request.n_inputs, config=self.checks.parse
        )
        if isinstance(parsed, Rejected):
            if request.type is TaskType.INDUCTION:
                return InductionValidation(parsed.reason, parsed.detail)
            return Validation(parsed.reason, parsed.detail)
        if isinstance(parsed, InductionProposal):
            if request.program is None:
                raise ValueError("an induction proposal request needs a program")
            return (
                yield from validate_induction_plan(
                    request.program,
                    parsed.inputs,
                    parsed.message,
                    n_requested=request.n_inputs,
                    config=self.validation,
                )
            )
        if request.type is TaskType.ERROR_PREDICTION:
            reason, detail, triplet = yield from validate_error_plan(
                parsed.program, parsed.input, self.validation
            )
            return Validation(reason, detail, triplet)
        return (yield from validate_plan(parsed.program, parsed.input, self.validation))

    # -- single checks ----------------------------------------------------------------------

    def check_deduction(
        self, program: str, inputs: str, answer: str, *, output: str | None = None
    ) -> Verdict:
        """Is ``answer`` (a predicted output, as text) what ``program`` returns on ``inputs``?

        Pass the gold ``output`` when known: the program then need not run again.
        """
        return self.check_deduction_batch(
            [program], [inputs], [answer], outputs=None if output is None else [output]
        )[0]

    def check_abduction(self, program: str, output: str, answer: str) -> Verdict:
        """Does ``program`` return ``output`` on ``answer`` (a predicted argument list)?"""
        return self.check_abduction_batch([program], [output], [answer])[0]

    def check_induction(self, answer: str, pairs: Sequence[Pair]) -> Verdict:
        """Does the program ``answer`` map every ``(input, output)`` of ``pairs`` correctly?"""
        return self.check_induction_batch([answer], [pairs])[0]

    def score_response(self, task: SolveTask, response: str) -> Verdict:
        """Parse a full solver response to ``task`` and check its answer, format penalties
        included. Deduction and abduction use ``task.output``; induction ``task.hidden``."""
        return self.score_response_batch([task], [response])[0]

    def validate(self, program: str, inputs: str) -> Validation:
        """Validate a proposed (program, input): see :mod:`azr.tasks.validation`."""
        return self.validate_batch([program], [inputs])[0]

    def validate_induction(
        self, program: str, inputs: Sequence[str], message: str, *, n_requested: int | None = None
    ) -> InductionValidation:
        """Validate proposed induction ``inputs`` and ``message`` for ``program``."""
        plan = validate_induction_plan(
            program, inputs, message, n_requested=n_requested, config=self.validation
        )
        return self._run([plan])[0]

    def score_proposal(self, request: ProposeRequest, response: str) -> ProposalResult:
        """Parse a full proposer response to ``request`` and validate what it proposes.

        Feed the result's ``reason`` (and, when valid, the solve rate of its task) to
        :func:`azr.rewards.propose_reward`.
        """
        return self.score_proposal_batch([request], [response])[0]

    # -- batches ----------------------------------------------------------------------------

    def check_deduction_batch(
        self,
        programs: Sequence[str],
        inputs: Sequence[str],
        answers: Sequence[str],
        *,
        outputs: Sequence[str | None] | None = None,
    ) -> list[Verdict]:
        """:meth:`check_deduction` over parallel lists."""
        checks = self._run(self._deduction(programs, inputs, answers, outputs))
        return [self._verdict(c) for c in checks]

    def check_abduction_batch(
        self, programs: Sequence[str], outputs: Sequence[str], answers: Sequence[str]
    ) -> list[Verdict]:
        """:meth:`check_abduction` over parallel lists."""
        return [self._verdict(c) for c in self._run(self._abduction(programs, outputs, answers))]

    def check_induction_batch(
        self, answers: Sequence[str], pairs: Sequence[Sequence[Pair]]
    ) -> list[Verdict]:
        """:meth:`check_induction` over parallel lists."""
        return [self._verdict(c) for c in self._run(self._induction(answers, pairs))]

    def score_response_batch(
        self, tasks: Sequence[SolveTask], responses: Sequence[str]
    ) -> list[Verdict]:
        """:meth:`score_response` over parallel lists."""
        return [self._verdict(c) for c in self._run(self._responses(tasks, responses))]

    def validate_batch(self, programs: Sequence[str], inputs: Sequence[str]) -> list[Validation]:
        """:meth:`validate` over parallel lists."""
        return self._run(self._validations(programs, inputs))

    def score_proposal_batch(
        self, requests: Sequence[ProposeRequest], responses: Sequence[str]
    ) -> list[ProposalResult]:
        """:meth:`score_proposal` over parallel lists."""
        return self._run(self._proposals(requests, responses))

    # -- async ------------------------------------------------------------------------------

    async def check_deduction_async(
        self, program: str, inputs: str, answer: str, *, output: str | None = None
    ) -> Verdict:
        """:meth:`check_deduction`, awaiting the executor (trio)."""
        golds = None if output is None else [output]
        return (
            await self.check_deduction_batch_async([program], [inputs], [answer], outputs=golds)
        )[0]

    async def check_abduction_async(self, program: str, output: str, answer: str) -> Verdict:
        """:meth:`check_abduction`, awaiting the executor (trio)."""
        return (await self.check_abduction_batch_async([program], [output], [answer]))[0]

    async def check_induction_async(self, answer: str, pairs: Sequence[Pair]) -> Verdict:
        """:meth:`check_induction`, awaiting the executor (trio)."""
        return (await self.check_induction_batch_async([answer], [pairs]))[0]

    async def score_response_async(self, task: SolveTask, response: str) -> Verdict:
        """:meth:`score_response`, awaiting the executor (trio)."""
        return (await self.score_response_batch_async([task], [response]))[0]

    async def validate_async(self, program: str, inputs: str) -> Validation:
        """:meth:`validate`, awaiting the executor (trio)."""
        return (await self.validate_batch_async([program], [inputs]))[0]

    async def validate_induction_async(
        self, program: str, inputs: Sequence[str], message: str, *, n_requested: int | None = None
    ) -> InductionValidation:
        """:meth:`validate_induction`, awaiting the executor (trio)."""
        plan = validate_induction_plan(
            program, inputs, message, n_requested=n_requested, config=self.validation
        )
        return (await self._run_async([plan]))[0]

    async def score_proposal_async(self, request: ProposeRequest, response: str) -> ProposalResult:
        """:meth:`score_proposal`, awaiting the executor (trio)."""
        return (await self.score_proposal_batch_async([request], [response]))[0]

    async def check_deduction_batch_async(
        self,
        programs: Sequence[str],
        inputs: Sequence[str],
        answers: Sequence[str],
        *,
        outputs: Sequence[str | None] | None = None,
    ) -> list[Verdict]:
        """:meth:`check_deduction_batch`, awaiting the executor (trio)."""
        checks = await self._run_async(self._deduction(programs, inputs, answers, outputs))
        return [self._verdict(c) for c in checks]

    async def check_abduction_batch_async(
        self, programs: Sequence[str], outputs: Sequence[str], answers: Sequence[str]
    ) -> list[Verdict]:
        """:meth:`check_abduction_batch`, awaiting the executor (trio)."""
        checks = await self._run_async(self._abduction(programs, outputs, answers))
        return [self._verdict(c) for c in checks]

    async def check_induction_batch_async(
        self, answers: Sequence[str], pairs: Sequence[Sequence[Pair]]
    ) -> list[Verdict]:
        """:meth:`check_induction_batch`, awaiting the executor (trio)."""
        checks = await self._run_async(self._induction(answers, pairs))
        return [self._verdict(c) for c in checks]

    async def score_response_batch_async(
        self, tasks: Sequence[SolveTask], responses: Sequence[str]
    ) -> list[Verdict]:
        """:meth:`score_response_batch`, awaiting the executor (trio)."""
        checks = await self._run_async(self._responses(tasks, responses))
        return [self._verdict(c) for c in checks]

    async def validate_batch_async(
        self, programs: Sequence[str], inputs: Sequence[str]
    ) -> list[Validation]:
        """:meth:`validate_batch`, awaiting the executor (trio)."""
        return await self._run_async(self._validations(programs, inputs))

    async def score_proposal_batch_async(
        self, requests: Sequence[ProposeRequest], responses: Sequence[str]
    ) -> list[ProposalResult]:
        """:meth:`score_proposal_batch`, awaiting the executor (trio)."""
        return await self._run_async(self._proposals(requests, responses))
