"""The task model: triplets, solver tasks, proposal requests and the reason codes every check uses.

A *triplet* is a program ``p`` (source defining ``f``, with its imports), an input ``i`` (the text
of an argument list, as written inside ``f(...)``) and an output ``o`` (the ``repr`` of ``f(i)``).
The three task types hide one part of it: deduction asks for ``o`` given ``p, i``; abduction for
``i`` given ``p, o``; induction for ``p`` given several ``(i, o)`` pairs and a hint message.

Everything here is a frozen msgspec Struct so that it can be logged, checkpointed and shipped
between processes as JSON or msgpack without custom code.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

__all__ = [
    "SEED_INDUCTION_TASK",
    "SEED_TRIPLET",
    "AbductionTask",
    "DeductionTask",
    "ErrorTask",
    "IOPair",
    "InductionTask",
    "Outcome",
    "ProposeRequest",
    "Reason",
    "Role",
    "SolveTask",
    "TaskType",
    "Triplet",
]


class TaskType(enum.StrEnum):
    """Which part of a triplet the solver has to produce."""

    DEDUCTION = "deduction"
    """Predict the output of a program on an input."""
    ABDUCTION = "abduction"
    """Find an input on which a program returns a given output."""
    INDUCTION = "induction"
    """Write a program that maps the given inputs to the given outputs."""
    ERROR_PREDICTION = "error_prediction"
    """Name the exception a program raises on an input (optional, see
    :mod:`azr.tasks.error_prediction`)."""


class Role(enum.StrEnum):
    """Which side of self-play a prompt is for."""

    PROPOSE = "propose"
    SOLVE = "solve"


class Outcome(enum.StrEnum):
    """How a reason code is rewarded: the classes of the composite reward."""

    CORRECT = "correct"
    """The answer is right, or the proposal is valid."""
    WRONG = "wrong"
    """Well-formed but wrong (or an invalid proposal): the -0.5 class of the composite reward."""
    FORMAT = "format"
    """The text does not have the required shape: the -1 class of the composite reward."""
    UNSCORED = "unscored"
    """Nothing can be concluded about the model (an executor fault, a broken gold task): skip it."""


class Reason(enum.StrEnum):
    """Stable reason codes for verdicts and validations (safe to use as metric names).

    :attr:`outcome` gives the reward class of each code.
    """

    OK = "ok"
    """Correct answer, or valid proposal."""
    WRONG = "wrong"
    """Everything ran, but the value differs from the expected one."""
    FORMAT = "format"
    """Missing or malformed ``<answer>`` tags or fenced blocks, an empty answer, text that is not
    valid UTF-8."""
    SYNTAX = "syntax"
    """The answer or program is not valid Python of the required form (expression, argument
    list, module)."""
    TOO_LARGE = "too_large"
    """The response, answer, program or input is longer than its configured limit."""
    NOT_LITERAL = "not_literal"
    """A deduction answer that is an expression rather than a literal value (see
    ``CheckConfig.deduction_answers``)."""
    FORBIDDEN = "forbidden"
    """Uses a module, builtin or attribute the safety policy forbids."""
    INVALID_PROGRAM = "invalid_program"
    """Parses, but is not an acceptable program: no function, a clash when renaming it to ``f``,
    top-level statements other than definitions, or rebinding a builtin."""
    ERROR = "error"
    """Raised an exception when run."""
    TIMEOUT = "timeout"
    """Ran past the wall-clock or CPU limit."""
    LIMIT = "limit"
    """Exceeded the memory limit, the stdout cap, or the size cap on the returned value."""
    VIOLATION = "violation"
    """The sandbox stopped a forbidden operation."""
    CRASHED = "crashed"
    """The sandboxed interpreter died (a signal, a hard crash)."""
    NONDETERMINISTIC = "nondeterministic"
    """A proposal whose result differs between runs with different hash and random seeds."""
    UNREPRESENTABLE = "unrepresentable"
    """A proposal whose output is not plain data, or whose ``repr`` does not evaluate back to an
    equal value."""
    NO_ERROR = "no_error"
    """An error-prediction proposal whose program returns instead of raising."""
    TOO_FEW_INPUTS = "too_few_inputs"
    """An induction proposal with fewer usable distinct inputs than required."""
    INVALID_TASK = "invalid_task"
    """The gold side is broken (the reference program fails, the gold output cannot be
    evaluated): not the answer's fault, so it is not scored."""
    INTERNAL = "internal"
    """The executor failed on its own (status ``INTERNAL``): retry or skip, never score."""
    PROMPT_TOO_LONG = "prompt_too_long"
    """The task's prompt is longer than ``generation.max_prompt_tokens``: nothing was generated
    for it, so nothing is scored or trained on."""

    @property
    def outcome(self) -> Outcome:
        """The reward class of this code."""
        return _OUTCOME.get(self, Outcome.WRONG)

    @property
    def scored(self) -> bool:
        """False for codes that say nothing about the model (:attr:`Outcome.UNSCORED`)."""
        return self.outcome is not Outcome.UNSCORED


_OUTCOME: Final[dict[Reason, Outcome]] = {
    Reason.OK: Outcome.CORRECT,
    Reason.FORMAT: Outcome.FORMAT,
    Reason.SYNTAX: Outcome.FORMAT,
    Reason.TOO_LARGE: Outcome.FORMAT,
    Reason.INVALID_TASK: Outcome.UNSCORED,
    Reason.INTERNAL: Outcome.UNSCORED,
    Reason.PROMPT_TOO_LONG: Outcome.UNSCORED,
}


class Triplet(msgspec.Struct, frozen=True):
    """A program, one input and the output it produces.

    ``program`` is complete source (imports first) defining ``f``; ``input`` is the argument-list
    text of the call ``f(<input>)``; ``output`` is the ``repr`` of the result, as the sandbox
    produced it.
    """

    program: str
    input: str
    output: str


class IOPair(msgspec.Struct, frozen=True, array_like=True):
    """One input (argument-list text) and the ``repr`` of the output it gives."""

    input: str
    output: str


class DeductionTask(msgspec.Struct, frozen=True, tag="deduction", tag_field="type"):
    """Solve: given ``program`` and ``input``, predict ``output`` (the gold answer)."""

    program: str
    input: str
    output: str

    @property
    def task_type(self) -> TaskType:
        return TaskType.DEDUCTION

    @classmethod
    def from_triplet(cls, triplet: Triplet) -> DeductionTask:
        return cls(triplet.program, triplet.input, triplet.output)


class AbductionTask(msgspec.Struct, frozen=True, tag="abduction", tag_field="type"):
    """Solve: given ``program`` and ``output``, find an input; ``input`` is one gold answer."""

    program: str
    input: str
    output: str

    @property
    def task_type(self) -> TaskType:
        return TaskType.ABDUCTION

    @classmethod
    def from_triplet(cls, triplet: Triplet) -> AbductionTask:
        return cls(triplet.program, triplet.input, triplet.output)


class InductionTask(msgspec.Struct, frozen=True, tag="induction", tag_field="type"):
    """Solve: given ``message`` and the ``shown`` pairs, write ``f``; checked on ``hidden``.

    ``program`` is the gold program the pairs came from (never shown to the solver).
    """

    program: str
    message: str
    shown: tuple[IOPair, ...]
    hidden: tuple[IOPair, ...]

    @property
    def task_type(self) -> TaskType:
        return TaskType.INDUCTION


class ErrorTask(msgspec.Struct, frozen=True, tag="error_prediction", tag_field="type"):
    """Solve: given ``program`` and ``input``, name the exception type ``error`` it raises
    (see :mod:`azr.tasks.error_prediction`)."""

    program: str
    input: str
    error: str

    @property
    def task_type(self) -> TaskType:
        return TaskType.ERROR_PREDICTION

    @classmethod
    def from_triplet(cls, triplet: Triplet) -> ErrorTask:
        return cls(triplet.program, triplet.input, triplet.output)


SolveTask = DeductionTask | AbductionTask | InductionTask | ErrorTask
"""A task for the solver; a tagged union (field ``type``) so a list of them round-trips."""


class ProposeRequest(msgspec.Struct, frozen=True):
    """What a proposer is conditioned on.

    ``references`` are earlier triplets to steer away from (deduction and abduction proposals);
    ``program`` is the program an induction proposal must write inputs for; ``n_inputs`` is how
    many inputs it is asked for.
    """

    type: TaskType
    references: tuple[Triplet, ...] = ()
    program: str | None = None
    n_inputs: int = 10


SEED_TRIPLET: Final = Triplet(
    program="def f(a):\n    return a",
    input="'Hello world'",
    output="'Hello world'",
)
"""The only triplet self-play starts from: the identity function."""

SEED_INDUCTION_TASK: Final = InductionTask(
    program=SEED_TRIPLET.program,
    message="The function hands back exactly what it is given.",
    shown=(IOPair("'Hello world'", "'Hello world'"), IOPair("[1, 2, 3]", "[1, 2, 3]")),
    hidden=(IOPair("42", "42"), IOPair("(True, None)", "(True, None)")),
)
"""An induction task derived from :data:`SEED_TRIPLET`, so the induction buffer is never empty."""
