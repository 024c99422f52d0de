"""Error prediction: an optional fourth task type (``code_e`` in the authors' code).

The proposer writes a program and an input on which it *raises*; the solver, shown both, names
the type of the exception (``ZeroDivisionError``, or a class the program defines). Like the
other types it has its own buffer and its own two TRR++ groups; it is off unless
``selfplay.error_prediction`` is set (the authors' scripts leave it off too).

A task is a :class:`~azr.tasks.types.Triplet` whose ``output`` is the gold exception type name,
so buffers, seed files and references treat it like a deduction triplet.

Validation (:func:`validate_error_plan`): the program normalises and the input is well-formed
(as for deduction); every run of the determinism check (different hash and random seeds, and
clocks, see :mod:`azr.tasks.validation`) must raise, and raise the same type. A program that
returns is ``no_error``; one that times out, runs out of memory or is stopped by the sandbox
gets that status's reason; one whose runs raise different types is ``nondeterministic``. The
authors' code also admits programs that return (with the answer ``NoError``); here the task is
always an error to predict.

Checking (:func:`error_plan`): the answer is the type name, optionally followed by ``:`` and a
message, and optionally qualified (``builtins.KeyError``); it is compared with the gold name,
ignoring case as the authors' code does. Nothing is run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from azr.executor import Execution, Status
from azr.tasks.ast_checks import Rejected, canonical_arguments
from azr.tasks.normalize import callable_without_arguments, normalize_program
from azr.tasks.parsing import format_blocks
from azr.tasks.plan import Plan, reason_for_status
from azr.tasks.types import ErrorTask, Reason, Triplet
from azr.tasks.validation import ValidationConfig, determinism_jobs

__all__ = [
    "SEED_ERROR_TRIPLET",
    "ErrorTask",
    "error_name",
    "error_plan",
    "propose_error_prompt",
    "solve_error_prompt",
    "validate_error_plan",
]


SEED_ERROR_TRIPLET: Final = Triplet(
    program="def f(a):\n    return a[0]", input="[]", output="IndexError"
)
"""The error buffer's seed, as the identity triplet seeds the others."""


def _dotted_identifier(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def error_name(execution: Execution) -> str | None:
    """The type name of the exception an execution ended with (None when it did not raise)."""
    if execution.status is not Status.ERROR or not execution.error:
        return None
    name = execution.error.split(":", 1)[0].strip()
    return name if _dotted_identifier(name) else None


def _answer_name(answer: str) -> str | None:
    text = answer.strip().strip("`").strip()
    name = text.split(":", 1)[0].strip()
    if not _dotted_identifier(name):
        return None
    return name.rsplit(".", 1)[-1]


def error_plan(program: str, inputs: str, gold: str, answer: str) -> Plan[tuple[Reason, str]]:
    """Check a predicted exception type (a plan that runs nothing)."""
    name = _answer_name(answer)
    if name is None:
        return (Reason.SYNTAX, "answer: expected the name of an exception type")
    yield []
    if name.casefold() == gold.rsplit(".", 1)[-1].casefold():
        return (Reason.OK, "")
    return (Reason.WRONG, "another exception type")


def validate_error_plan(
    program: str, inputs: str, config: ValidationConfig
) -> Plan[tuple[Reason, str, Triplet | None]]:
    """Plan the validation of an error-prediction proposal (see the module docstring)."""
    norm = normalize_program(program, config.program)
    if isinstance(norm, Rejected):
        return (norm.reason, norm.detail, None)
    canonical: str | Rejected
    if not inputs.strip() and callable_without_arguments(norm.source):
        canonical = ""
    else:
        canonical = canonical_arguments(
            inputs,
            form=config.inputs,
            max_bytes=config.max_input_bytes,
            safety=config.program.safety,
        )
    if isinstance(canonical, Rejected):
        return (canonical.reason, "input: " + canonical.detail, None)
    runs: Sequence[Execution] = yield determinism_jobs(norm.source, canonical, config)
    if any(run.status is Status.INTERNAL for run in runs):
        return (Reason.INTERNAL, "executor failure", None)
    first = runs[0]
    if first.status is Status.OK:
        return (Reason.NO_ERROR, "the program returns instead of raising", None)
    if first.status is not Status.ERROR:
        return (reason_for_status(first.status), first.error or first.status.value, None)
    names = [error_name(run) for run in runs]
    if names[0] is None:
        return (Reason.UNREPRESENTABLE, "the exception has no usable type name", None)
    if any(name != names[0] for name in names[1:]):
        return (Reason.NONDETERMINISTIC, "the runs raise different exceptions", None)
    return (Reason.OK, "", Triplet(norm.source, canonical, names[0]))


def propose_error_prompt(references: Sequence[Triplet], rules: str, answer_shape: str) -> str:
    """Ask for a program and an input on which it raises an exception worth predicting."""
    if references:
        earlier = "\n\n".join(
            f"Puzzle {n}:\n"
            + format_blocks([("python", t.program), ("input", t.input), ("error", t.output)])
            for n, t in enumerate(references, start=1)
        )
        earlier = "Earlier puzzles (yours must differ from all of them):\n\n" + earlier
    else:
        earlier = "There are no earlier puzzles yet."
    return f"""\
Design a new code-reasoning puzzle: a Python function `f` and one input on which calling `f`
raises an exception. A solver will see the function and the input, and must name the type of
the exception by reasoning alone, without running anything. Aim for a puzzle where the failure
is not obvious at a glance (the error surfaces only after some real computation) and where the
exception type follows from careful tracing. Do not raise the exception explicitly with
`raise` unless the interesting part is working out which branch gets there.

{rules}

{earlier}

{answer_shape}"""


def solve_error_prompt(program: str, inputs: str, answer_format: str) -> str:
    """Ask for the exception type ``program`` raises on ``inputs``."""
    blocks = format_blocks([("python", program), ("input", inputs)])
    return f"""\
Calling this Python function with the input below raises an exception. Which type?

{blocks}

Trace the execution carefully. {answer_format} Write only the name of the exception type (for
example `KeyError`), with nothing else in the answer."""
