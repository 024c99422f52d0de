"""Validation of proposals: is a proposed (program, input) a usable, well-defined task?

Checks, in order, each failure with its own :class:`~azr.tasks.types.Reason`:

1. the program normalises (syntax, size, safety policy, one entry function): see
   :mod:`azr.tasks.normalize`;
2. the input is one argument list within the size limit (literal-only if so configured);
3. integrity: the program runs without error on the input (status other than ``OK`` maps to
   ``error``, ``timeout``, ``limit``, ``violation``, ``crashed``);
4. determinism: it is run once per entry of ``ValidationConfig.seeds`` (at least two, each with a
   different hash seed and random seed, and each seeing the wall clock shifted by a different
   amount, see :mod:`azr.tasks.clock`) and every result must equal the first. Results are
   compared structurally with :func:`~azr.executor.values_equal`, not by ``repr`` text, because
   the order a set prints in depends on the hash seed;
5. the output is plain data whose ``repr`` fits ``max_output_bytes`` and evaluates back, in the
   sandbox, to an equal value, so a deduction answer written as a literal can match it.

Every execution happens in the sandbox; the host only parses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from azr.executor import Execution, Job, Status, values_equal
from azr.tasks.ast_checks import AnswerForm, Rejected, canonical_arguments, utf8_size
from azr.tasks.clock import DEFAULT_CLOCK_STEP_S, clocked_job
from azr.tasks.normalize import (
    NormalizedProgram,
    ProgramPolicy,
    callable_without_arguments,
    normalize_program,
)
from azr.tasks.plan import Plan, reason_for_status
from azr.tasks.types import InductionTask, IOPair, Reason, Triplet

__all__ = [
    "InductionValidation",
    "Validation",
    "ValidationConfig",
    "determinism_jobs",
    "validate_induction_plan",
    "validate_plan",
]


class ValidationConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Limits and policies for proposals.

    ``seeds`` lists one ``(hash_seed, random_seed)`` per run of the determinism check; at least
    two distinct entries are needed. Run ``i`` also sees the wall clock shifted forward by
    ``i * clock_step_s`` seconds (see :mod:`azr.tasks.clock`), so a program that reads the date
    or the time is caught as nondeterministic. ``inputs`` says whether proposed inputs must be
    literals or may be any expression the safety policy allows.

    Induction: a proposal asked for ``N`` inputs needs ``induction_min_inputs`` usable distinct
    ones (None, the default: all ``N``; never fewer than 2). The surviving pairs, in the order
    proposed, alternate hidden, shown, hidden, shown...: the hidden half gets the extra pair of
    an odd count, so at least half of them are hidden, and both halves span the range of inputs
    the proposer chose.
    """

    program: ProgramPolicy = ProgramPolicy()
    inputs: AnswerForm = "expression"
    max_input_bytes: int = 4_096
    max_output_bytes: int = 4_096
    max_message_bytes: int = 4_096
    seeds: tuple[tuple[int, int], ...] = ((0, 0), (918_273_645, 192_837_465))
    clock_step_s: float = DEFAULT_CLOCK_STEP_S
    induction_min_inputs: int | None = None

    def __post_init__(self) -> None:
        if len(set(self.seeds)) < 2:
            raise ValueError("the determinism check needs at least two distinct seed pairs")
        if not self.clock_step_s >= 1.0:
            raise ValueError("clock_step_s must be at least one second, so the runs' clocks differ")
        if self.induction_min_inputs is not None and self.induction_min_inputs < 2:
            raise ValueError("induction_min_inputs must be at least 2 (one shown, one hidden)")

    def needed_inputs(self, requested: int) -> int:
        """How many usable distinct inputs an induction proposal asked for ``requested`` needs."""
        wanted = requested if self.induction_min_inputs is None else self.induction_min_inputs
        return max(2, min(wanted, requested))


DEFAULT_VALIDATION: Final = ValidationConfig()


class Validation(msgspec.Struct, frozen=True):
    """The verdict on one (program, input) proposal.

    When valid, ``triplet`` holds the normalised program, the canonical input and the output
    the sandbox computed (its ``repr``).
    """

    reason: Reason
    detail: str = ""
    triplet: Triplet | None = None

    @property
    def valid(self) -> bool:
        return self.reason is Reason.OK


class InductionValidation(msgspec.Struct, frozen=True):
    """The verdict on one induction proposal (inputs and a message for a given program).

    Inputs that are malformed, repeated, or on which the program fails are dropped and counted
    in ``dropped``; the proposal is valid when enough remain (by default none may be dropped).
    ``task`` alternates the surviving pairs between hidden and shown, hidden first, so that at
    least half are hidden and both halves span the proposer's range of inputs.
    """

    reason: Reason
    detail: str = ""
    task: InductionTask | None = None
    dropped: int = 0

    @property
    def valid(self) -> bool:
        return self.reason is Reason.OK


class _Run(msgspec.Struct, frozen=True):
    """The outcome of running one program on one input under every seed."""

    reason: Reason
    detail: str = ""
    output: str | None = None


def determinism_jobs(program: str, inputs: str, config: ValidationConfig) -> list[Job]:
    """One job per run of the determinism check: its own seeds and its own clock."""
    return [
        clocked_job(program, inputs, hash_seed=h, random_seed=r, offset_s=i * config.clock_step_s)
        for i, (h, r) in enumerate(config.seeds)
    ]


def _first_verdict(runs: Sequence[Execution], config: ValidationConfig) -> _Run | Execution:
    """Judge the seeded runs; the first execution when it still needs the round-trip check."""
    if any(run.status is Status.INTERNAL for run in runs):
        return _Run(Reason.INTERNAL, "executor failure")
    first = runs[0]
    if first.status is not Status.OK:
        return _Run(reason_for_status(first.status), first.error or first.status.value)
    for run in runs[1:]:
        if run.status is Status.TIMEOUT:
            return _Run(Reason.TIMEOUT, "timed out on a repeated run")
        if run.status is not Status.OK:
            return _Run(Reason.NONDETERMINISTIC, f"a repeated run ended with {run.status.value}")
    # A value unequal to itself is not plain data the executor can compare (a list containing
    # itself, say); NaN is fine, the executor's equality treats it as equal to itself.
    if first.encoded is None or first.value is None or not values_equal(first, first):
        return _Run(Reason.UNREPRESENTABLE, "the output is not plain data")
    for run in runs[1:]:
        if not values_equal(first, run):
            return _Run(Reason.NONDETERMINISTIC, "results differ between seeds")
    size = utf8_size(first.value)
    if size is None or size > config.max_output_bytes:
        return _Run(Reason.LIMIT, f"the output repr is over {config.max_output_bytes} bytes")
    return first


def _run_plan(program: str, inputs: str, config: ValidationConfig) -> Plan[_Run]:
    runs = yield determinism_jobs(program, inputs, config)
    first = _first_verdict(runs, config)
    if isinstance(first, _Run):
        return first
    assert first.value is not None
    (back,) = yield [Job.eval(first.value)]
    if back.status is Status.INTERNAL:
        return _Run(Reason.INTERNAL, "executor failure")
    if back.status is not Status.OK or not values_equal(first, back):
        return _Run(Reason.UNREPRESENTABLE, "the output repr does not evaluate to an equal value")
    return _Run(Reason.OK, output=first.value)


def _normalized(program: str, config: ValidationConfig) -> NormalizedProgram | Rejected:
    return normalize_program(program, config.program)


def validate_plan(
    program: str, inputs: str, config: ValidationConfig = DEFAULT_VALIDATION
) -> Plan[Validation]:
    """Plan the validation of one (program, input) proposal."""
    norm = _normalized(program, config)
    if isinstance(norm, Rejected):
        return Validation(norm.reason, norm.detail)
    canonical: str | Rejected
    if not inputs.strip() and callable_without_arguments(norm.source):
        canonical = ""  # the empty argument list of a function that takes none
    else:
        canonical = canonical_arguments(
            inputs,
            form=config.inputs,
            max_bytes=config.max_input_bytes,
            safety=config.program.safety,
        )
    if isinstance(canonical, Rejected):
        return Validation(canonical.reason, "input: " + canonical.detail)
    run = yield from _run_plan(norm.source, canonical, config)
    if run.reason is not Reason.OK or run.output is None:
        return Validation(run.reason, run.detail)
    return Validation(Reason.OK, triplet=Triplet(norm.source, canonical, run.output))


def validate_induction_plan(
    program: str,
    inputs: Sequence[str],
    message: str,
    *,
    n_requested: int | None = None,
    config: ValidationConfig = DEFAULT_VALIDATION,
) -> Plan[InductionValidation]:
    """Plan the validation of an induction proposal: ``inputs`` and ``message`` for ``program``.

    ``program`` comes from a buffer, not from the proposer, so a program that no longer
    normalises is reported as ``invalid_task`` rather than held against the proposal.
    """
    norm = _normalized(program, config)
    if isinstance(norm, Rejected):
        return InductionValidation(Reason.INVALID_TASK, "program: " + norm.detail)
    text = message.strip()
    if not text:
        return InductionValidation(Reason.FORMAT, "empty message")
    size = utf8_size(text)
    if size is None:
        return InductionValidation(Reason.FORMAT, "message is not valid UTF-8")
    if size > config.max_message_bytes:
        return InductionValidation(Reason.TOO_LARGE, f"message over {config.max_message_bytes}")

    requested = len(inputs) if n_requested is None else n_requested
    needed = config.needed_inputs(requested)
    canonical: list[str] = []
    first_problem = ""
    for item in inputs:
        checked = canonical_arguments(
            item,
            form=config.inputs,
            max_bytes=config.max_input_bytes,
            safety=config.program.safety,
        )
        if isinstance(checked, Rejected):
            first_problem = first_problem or f"input: {checked.reason.value}: {checked.detail}"
        elif checked not in canonical:
            canonical.append(checked)

    # All inputs go through the rounds together, so the proposal costs two executor batches.
    batches = [determinism_jobs(norm.source, c, config) for c in canonical]
    flat = yield [job for jobs in batches for job in jobs]
    per_input = len(config.seeds)
    firsts = [_first_verdict(flat[i * per_input : (i + 1) * per_input], config)
              for i in range(len(canonical))]  # fmt: skip
    if any(isinstance(f, _Run) and f.reason is Reason.INTERNAL for f in firsts):
        return InductionValidation(Reason.INTERNAL, "executor failure")
    pending = [(i, f) for i, f in enumerate(firsts) if isinstance(f, Execution)]
    backs = yield [Job.eval(f.value or "") for _, f in pending]
    if any(b.status is Status.INTERNAL for b in backs):
        return InductionValidation(Reason.INTERNAL, "executor failure")
    good: dict[int, str] = {}
    for (i, first), back in zip(pending, backs, strict=True):
        if back.status is Status.OK and values_equal(first, back) and first.value is not None:
            good[i] = first.value
        else:
            first_problem = first_problem or "output: unrepresentable"
    for f in firsts:
        if isinstance(f, _Run):
            first_problem = first_problem or f"run: {f.reason.value}: {f.detail}"

    pairs = [IOPair(canonical[i], good[i]) for i in sorted(good)]
    dropped = max(requested, len(inputs)) - len(pairs)
    if len(pairs) < needed:
        detail = f"{len(pairs)} usable inputs, {needed} needed"
        if first_problem:
            detail += f" (first problem: {first_problem})"
        return InductionValidation(Reason.TOO_FEW_INPUTS, detail, dropped=dropped)
    task = InductionTask(
        program=norm.source, message=text, shown=tuple(pairs[1::2]), hidden=tuple(pairs[0::2])
    )
    return InductionValidation(Reason.OK, task=task, dropped=dropped)
