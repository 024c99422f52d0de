"""Prompt builders for the six (task type, role) pairs.

Every prompt asks for reasoning in ``<think>...</think>`` followed by the final answer in
``<answer>...</answer>``; proposers put fenced ```` ```python ````, ```` ```input ```` and
```` ```message ```` blocks inside the answer. :mod:`azr.tasks.parsing` reads exactly this shape.

The builders return the text of one user turn; applying a chat template is the caller's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from azr.tasks.error_prediction import propose_error_prompt, solve_error_prompt
from azr.tasks.parsing import format_blocks
from azr.tasks.types import (
    AbductionTask,
    DeductionTask,
    ErrorTask,
    InductionTask,
    ProposeRequest,
    Role,
    SolveTask,
    TaskType,
    Triplet,
)

__all__ = [
    "build_prompt",
    "propose_abduction_prompt",
    "propose_deduction_prompt",
    "propose_induction_prompt",
    "propose_prompt",
    "solve_abduction_prompt",
    "solve_deduction_prompt",
    "solve_induction_prompt",
    "solve_prompt",
]

_FORMAT: Final = (
    "Reason inside <think> </think> first. Then put only your final answer inside "
    "<answer> </answer>."
)

_FUNCTION_RULES: Final = """\
Rules for the program:
- It defines a function named `f`; helper functions, classes and standard-library imports are
  fine.
- `f` must be deterministic and self-contained: no files, network, operating system, clock,
  randomness, threads, `eval`/`exec` or introspection.
- `f` returns plain data: numbers, strings, bytes, booleans, None, and tuples, lists, dicts and
  sets built from them."""

_PROGRAM_RULES: Final = (
    _FUNCTION_RULES
    + """
- The input is the argument list of one call, written as it appears between the parentheses of
  `f(...)`, for example `[3, 1, 2], 'abc'`."""
)


def _triplet_blocks(triplet: Triplet) -> str:
    return format_blocks(
        [("python", triplet.program), ("input", triplet.input), ("output", triplet.output)]
    )


def _references(references: Sequence[Triplet]) -> str:
    if not references:
        return "There are no earlier puzzles yet."
    parts = [f"Puzzle {n}:\n{_triplet_blocks(t)}" for n, t in enumerate(references, start=1)]
    return "Earlier puzzles (yours must differ from all of them):\n\n" + "\n\n".join(parts)


def _propose_answer_shape() -> str:
    example = format_blocks([("python", "def f(...):\n    ..."), ("input", "...")])
    return f"{_FORMAT} The answer holds exactly two blocks:\n<answer>\n{example}\n</answer>"


def propose_deduction_prompt(references: Sequence[Triplet]) -> str:
    """Ask for a new program and input whose *output* is worth predicting."""
    return f"""\
Design a new code-reasoning puzzle: a Python function `f` and one input for it. A solver will
see the function and the input, and must work out the returned value by reasoning alone, without
running anything. Aim for a puzzle that takes real step-by-step tracing to get right but can be
solved with care.

{_PROGRAM_RULES}

{_references(references)}

{_propose_answer_shape()}"""


def propose_abduction_prompt(references: Sequence[Triplet]) -> str:
    """Ask for a new program and input whose *input* is worth recovering from the output."""
    return f"""\
Design a new code-reasoning puzzle: a Python function `f` and one input for it. A solver will
see the function and the value it returns on your input, and must find an input that produces
that value. Aim for a function where the input cannot simply be read off the output, yet can be
recovered by reasoning backwards.

{_PROGRAM_RULES}

{_references(references)}

{_propose_answer_shape()}"""


def propose_induction_prompt(program: str, n_inputs: int = 10) -> str:
    """Ask for ``n_inputs`` inputs to ``program`` and a message describing it."""
    example = format_blocks(
        [("input", "..."), ("input", "..."), ("message", "a short hint about what f does")]
    )
    return f"""\
Here is a Python function:

{format_blocks([("python", program)])}

Write {n_inputs} different inputs for `f` and a short message about it. A solver will be shown
the message and half of the input/output pairs, must write the function from them, and is then
tested on the other half. Choose inputs that together pin down the behaviour (typical cases and
edge cases). The message should point the solver in the right direction without spelling out the
code.

Each input is the argument list of one call, as it appears between the parentheses of `f(...)`.

{_FORMAT} The answer holds {n_inputs} ```input blocks and one ```message block:
<answer>
{example}
</answer>"""


def propose_prompt(request: ProposeRequest) -> str:
    """The proposer prompt for ``request`` (induction requests need ``request.program``)."""
    match request.type:
        case TaskType.DEDUCTION:
            return propose_deduction_prompt(request.references)
        case TaskType.ABDUCTION:
            return propose_abduction_prompt(request.references)
        case TaskType.INDUCTION:
            if request.program is None:
                raise ValueError("an induction proposal request needs a program")
            return propose_induction_prompt(request.program, request.n_inputs)
        case TaskType.ERROR_PREDICTION:
            return propose_error_prompt(request.references, _PROGRAM_RULES, _propose_answer_shape())


def solve_deduction_prompt(program: str, input: str) -> str:
    """Ask for the value ``program`` returns on ``input``."""
    blocks = format_blocks([("python", program), ("input", input)])
    return f"""\
What does this Python function return when called with the input below?

{blocks}

Trace the execution carefully. {_FORMAT} Write the returned value as a Python literal, the way
`repr` prints it (for example `[1, 'a', (2.5, None)]`), with nothing else in the answer."""


def solve_abduction_prompt(program: str, output: str) -> str:
    """Ask for an input on which ``program`` returns ``output``."""
    blocks = format_blocks([("python", program), ("output", output)])
    return f"""\
Find an input for which this Python function returns the output below.

{blocks}

Any input that produces exactly this output is correct. {_FORMAT} Write the input as the
argument list of one call, as it appears between the parentheses of `f(...)`, using literal
values only (for example `[3, 1], 'x'`; leave the answer empty if `f` takes no arguments), with
nothing else in the answer."""


def solve_induction_prompt(message: str, pairs: Sequence[tuple[str, str]]) -> str:
    """Ask for a function ``f`` consistent with ``pairs`` and ``message``."""
    shown = "\n\n".join(
        f"Example {n}:\n" + format_blocks([("input", i), ("output", o)])
        for n, (i, o) in enumerate(pairs, start=1)
    )
    return f"""\
Write a Python function `f` that behaves as described and matches every example. Each input is
the argument list of a call to `f`; each output is the `repr` of what it returns. Your function
will also be tested on further inputs that are not shown.

Description: {message}

{shown}

{_FUNCTION_RULES}

{_FORMAT} The answer holds the complete program in one ```python block."""


def solve_prompt(task: SolveTask) -> str:
    """The solver prompt for ``task``."""
    match task:
        case DeductionTask():
            return solve_deduction_prompt(task.program, task.input)
        case AbductionTask():
            return solve_abduction_prompt(task.program, task.output)
        case InductionTask():
            return solve_induction_prompt(task.message, [(p.input, p.output) for p in task.shown])
        case ErrorTask():
            return solve_error_prompt(task.program, task.input, _FORMAT)


def build_prompt(role: Role, task: ProposeRequest | SolveTask) -> str:
    """Dispatch on ``role``: a proposer prompt for a request, a solver prompt for a task."""
    if role is Role.PROPOSE:
        if not isinstance(task, ProposeRequest):
            raise TypeError("a proposer prompt needs a ProposeRequest")
        return propose_prompt(task)
    if isinstance(task, ProposeRequest):
        raise TypeError("a solver prompt needs a solve task")
    return solve_prompt(task)
