"""Checking solver answers. Every comparison happens in the sandbox; the host only parses.

* deduction: the predicted output is evaluated in the sandbox and compared with the gold output
  (``Job.eval(answer, expected=gold)``), or, when no gold output is given, the program is run and
  its value compared with the evaluated answer (``Job(program, input, expected=answer)``);
* abduction: the program is run on the predicted input, and its value compared with the gold
  output (``Job(program, answer, expected=gold)``);
* induction: the predicted program, normalised like a proposal, must reproduce every hidden pair
  (one ``Job(answer, input, expected=output)`` per pair).

Comparison is structural (in the executor, never with a Python ``__eq__``), so an object whose
``__eq__`` always returns True never matches anything.

Answer forms (:class:`CheckConfig`): deduction and abduction answers must by default be
literal values, as ``repr`` writes them. Allowing expressions in deduction answers would let a
solver transcribe the program into a lambda and have the sandbox compute the answer for it; in
abduction answers, an object built from the given output whose every operation yields that
output would pass many programs without any reasoning about them. ``abduction_answers =
"expression"`` restores any expression the safety policy allows (a lambda argument,
``dict(a=1)``), for tasks whose inputs cannot be written as literals.

A function that takes no arguments has one input, the empty argument list: an empty abduction
answer (and an empty proposed input) is then well-formed, and correct when the output matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from azr.executor import Execution, Job, Status
from azr.tasks.ast_checks import (
    AnswerForm,
    Rejected,
    canonical_arguments,
    canonical_value,
    utf8_size,
)
from azr.tasks.error_prediction import error_plan
from azr.tasks.normalize import ProgramPolicy, callable_without_arguments, normalize_program
from azr.tasks.parsing import ParseConfig, parse_solution
from azr.tasks.plan import Plan, reason_for_status
from azr.tasks.types import (
    AbductionTask,
    DeductionTask,
    ErrorTask,
    InductionTask,
    IOPair,
    Reason,
    SolveTask,
)

__all__ = [
    "Check",
    "CheckConfig",
    "abduction_plan",
    "deduction_plan",
    "induction_plan",
    "response_plan",
]


class CheckConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How answers are read and what forms they may take.

    ``max_answer_bytes`` bounds a deduction or abduction answer; induction answers are bounded by
    ``program.max_bytes``. ``program`` is also the safety policy expressions are checked against.
    ``max_induction_pairs`` bounds the pairs one induction answer is run on (each pair is one
    sandboxed execution); a task with more is ``invalid_task``, never run.
    """

    deduction_answers: AnswerForm = "literal"
    abduction_answers: AnswerForm = "literal"
    max_answer_bytes: int = 65_536
    max_induction_pairs: int = 256
    program: ProgramPolicy = ProgramPolicy()
    parse: ParseConfig = ParseConfig()


DEFAULT_CHECKS: Final = CheckConfig()
"""The default answer checks."""


class Check(msgspec.Struct, frozen=True):
    """The result of checking one answer: a reason code and a short explanation."""

    reason: Reason
    detail: str = ""


def _from_rejected(rejected: Rejected, what: str) -> Check:
    return Check(rejected.reason, f"{what}: {rejected.detail}")


def _bad_gold(*texts: str) -> Check | None:
    """A gold text that cannot be sent to the sandbox makes the task, not the answer, invalid."""
    for text in texts:
        if utf8_size(text) is None:
            return Check(Reason.INVALID_TASK, "a gold text is not valid UTF-8")
    return None


def _answer_failed(execution: Execution) -> Check:
    return Check(reason_for_status(execution.status), execution.error or execution.status.value)


def _compare(execution: Execution) -> Check:
    """The verdict on a job whose ``expected`` was the *gold* side, its value the answer's."""
    if execution.status is not Status.OK:
        return _answer_failed(execution)
    if execution.matched is None:
        return Check(Reason.INVALID_TASK, "the gold value could not be evaluated")
    return Check(Reason.OK) if execution.matched else Check(Reason.WRONG, "values differ")


def deduction_plan(
    program: str,
    inputs: str,
    answer: str,
    *,
    output: str | None = None,
    config: CheckConfig = DEFAULT_CHECKS,
) -> Plan[Check]:
    """Plan the check of a predicted output ``answer`` for ``program`` on ``inputs``.

    With ``output`` (the gold ``repr``) the program is not run again; without it, it is run and
    a failure of the program itself is ``invalid_task``, not held against the answer.
    """
    value = canonical_value(
        answer,
        form=config.deduction_answers,
        max_bytes=config.max_answer_bytes,
        safety=config.program.safety,
    )
    if isinstance(value, Rejected):
        return _from_rejected(value, "answer")
    bad = _bad_gold(output) if output is not None else _bad_gold(program, inputs)
    if bad is not None:
        return bad
    if output is not None:
        (execution,) = yield [Job.eval(value, expected=output)]
        return _compare(execution)
    (execution,) = yield [Job(program, inputs, expected=value)]
    if execution.status is Status.INTERNAL:
        return Check(Reason.INTERNAL, execution.error or "executor failure")
    if execution.status is not Status.OK:
        return Check(Reason.INVALID_TASK, f"the program fails on its input: {execution.error}")
    if execution.matched is None:
        return Check(Reason.ERROR, "the answer could not be evaluated")
    return Check(Reason.OK) if execution.matched else Check(Reason.WRONG, "values differ")


def abduction_plan(
    program: str, output: str, answer: str, *, config: CheckConfig = DEFAULT_CHECKS
) -> Plan[Check]:
    """Plan the check of a predicted argument list ``answer`` for ``program`` and ``output``."""
    arguments: str | Rejected
    if not answer.strip() and callable_without_arguments(program, config.program.max_bytes):
        arguments = ""
    else:
        arguments = canonical_arguments(
            answer,
            form=config.abduction_answers,
            max_bytes=config.max_answer_bytes,
            safety=config.program.safety,
        )
    if isinstance(arguments, Rejected):
        return _from_rejected(arguments, "answer")
    bad = _bad_gold(program, output)
    if bad is not None:
        return bad
    (execution,) = yield [Job(program, arguments, expected=output)]
    return _compare(execution)


def induction_plan(
    answer: str, pairs: Sequence[IOPair | tuple[str, str]], *, config: CheckConfig = DEFAULT_CHECKS
) -> Plan[Check]:
    """Plan the check of a predicted program ``answer`` against every ``(input, output)`` pair.

    The first failing pair (in order) decides the reason; an executor fault on any pair makes
    the whole check ``internal``.
    """
    if not pairs:
        return Check(Reason.INVALID_TASK, "no pairs to check against")
    if len(pairs) > config.max_induction_pairs:
        return Check(
            Reason.INVALID_TASK,
            f"{len(pairs)} pairs to check against; at most {config.max_induction_pairs}",
        )
    norm = normalize_program(answer, config.program)
    if isinstance(norm, Rejected):
        return _from_rejected(norm, "program")
    items = [p if isinstance(p, IOPair) else IOPair(p[0], p[1]) for p in pairs]
    bad = _bad_gold(*(text for p in items for text in (p.input, p.output)))
    if bad is not None:
        return bad
    executions = yield [Job(norm.source, p.input, expected=p.output) for p in items]
    if any(e.status is Status.INTERNAL for e in executions):
        return Check(Reason.INTERNAL, "executor failure")
    for n, execution in enumerate(executions, start=1):
        check = _compare(execution)
        if check.reason is not Reason.OK:
            return Check(check.reason, f"pair {n} of {len(items)}: {check.detail}")
    return Check(Reason.OK)


def response_plan(
    task: SolveTask, response: str, *, config: CheckConfig = DEFAULT_CHECKS
) -> Plan[Check]:
    """Plan the scoring of a full solver response to ``task``: parse it, then check the answer."""
    answer = parse_solution(response, task.task_type, config.parse)
    if isinstance(answer, Rejected) and isinstance(task, AbductionTask):
        # Only a blank answer is looked at again (the program is parsed only then).
        blank = parse_solution(response, task.task_type, config.parse, allow_empty=True)
        if blank == "" and callable_without_arguments(task.program, config.program.max_bytes):
            answer = blank
    if isinstance(answer, Rejected):
        return _from_rejected(answer, "response")
    match task:
        case DeductionTask():
            plan = deduction_plan(
                task.program, task.input, answer, output=task.output, config=config
            )
        case AbductionTask():
            plan = abduction_plan(task.program, task.output, answer, config=config)
        case InductionTask():
            plan = induction_plan(answer, task.hidden, config=config)
        case ErrorTask():
            reason, detail = yield from error_plan(task.program, task.input, task.error, answer)
            return Check(reason, detail)
    return (yield from plan)
