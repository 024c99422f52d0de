"""Running one solution against a suite of test inputs in the sandbox: the scoring seam.

Everything code scoring needs from the executor goes through :func:`run_tests` (and its batch
and trio forms). It is built on the executor's public job API:

1. **Candidate job.** A trusted harness (``_sandbox_code.py``) ``exec``-s the solution inside the
   sandbox and calls it once per input (all inputs of one problem in one process, as EvalPlus
   does: isolation between inputs of the same candidate buys nothing), each call under an
   interval timer; it hands back ``(statuses, outputs)``.
2. **Host check.** That text is *parsed*, never evaluated, and must be a pure literal
   (:mod:`azr.eval._literal`). A candidate that tampers with the harness, forges its report or
   returns objects with a lying ``__eq__``/``__float__`` can only change which plain data comes
   back, which is no more than it could return honestly.
3. **Comparator job.** A fresh sandbox holding only trusted code, the expected values and that
   literal decides one verdict per input (exact, ``atol`` tolerance, EvalPlus's special oracles,
   LiveCodeBench's stdout rules). The candidate never runs there and never sees the expected
   values.

The wall time the executor measures from outside bounds each problem's budget; the per-input
limits are enforced inside by the harness (a candidate that disables them is still stopped by
the executor's wall clock and judged as timed out).
"""

from __future__ import annotations

import ast
import enum
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import msgspec

from azr.executor import Execution, Executor, Job, Limits, Status

from ._literal import NotLiteral, check_literal, tuple_items

__all__ = [
    "Outcome",
    "Reference",
    "ReferenceFailed",
    "SuiteResult",
    "TestSuite",
    "eval_limits",
    "reference_outputs",
    "run_tests",
    "run_tests_async",
    "run_tests_batch",
    "run_tests_batch_async",
]

_SOURCE = Path(__file__).with_name("_sandbox_code.py").read_text(encoding="utf-8")

# Status codes written by the harness (mirrors _sandbox_code.py).
_OK, _RAISED, _TIMEOUT, _UNREPRESENTABLE, _NOT_RUN = 0, 1, 2, 3, 4
# Slack on top of a problem's budget for the harness's own start-up and reporting.
_BUDGET_SLACK_S = 2.0


class Outcome(enum.StrEnum):
    """What happened on one test input."""

    PASSED = "passed"
    WRONG = "wrong"
    """Returned a value that does not match."""
    ERROR = "error"
    """Raised, or the solution could not be loaded at all."""
    TIMEOUT = "timeout"
    UNREPRESENTABLE = "unrepresentable"
    """Returned something that is not plain data (so it cannot be compared)."""
    NOT_RUN = "not_run"
    """Skipped after an earlier input exhausted the time budget."""
    INTERNAL = "internal"
    """The executor failed: not a verdict on the solution (retry or skip)."""


Mode = Literal["function", "method", "stdio"]
Comparison = Literal["evalplus", "json", "stdout"]


class TestSuite(msgspec.Struct, frozen=True):
    """One problem's tests, in the form the sandbox harness takes.

    ``inputs`` is JSON text of a list with one entry per test: an argument list (``function``),
    newline-separated JSON arguments (``method``: ``Solution().<entry_point>(...)``) or stdin
    text (``stdio``). ``expected`` is the *literal text* of a list of expected values (for
    ``json``: a list of JSON texts; for ``stdout``: a list of strings).
    """

    __test__ = False  # not a pytest test class

    mode: Mode
    entry_point: str
    inputs: str
    expected: str
    comparison: Comparison
    time_limits: tuple[float, ...]
    """Seconds per input."""
    budget_s: float
    """Seconds for the whole suite (EvalPlus: the sum of the limits, capped, plus one)."""
    atol: float = 0.0
    oracle: str = ""
    """An EvalPlus special oracle: poly_root, any, zero_or_equal, surface_area,
    digit_distance, set_equal (see _sandbox_code.py)."""
    conversion: str = ""
    """How to rebuild tuples/sets/complex numbers from the JSON inputs (MBPP+)."""
    not_none: bool = False
    """Compare ``output is not None`` (EvalPlus's tasks whose outputs are regex matches)."""
    digested: tuple[int, ...] = ()
    """Inputs whose expected value is a digest (see :class:`Reference`)."""


class SuiteResult(msgspec.Struct, frozen=True):
    """The verdict of one solution on one suite."""

    outcomes: tuple[Outcome, ...]
    status: Status
    """How the candidate's job ended (``ok`` even when some inputs failed)."""
    error: str | None
    wall_ms: float
    """Wall time of the candidate's job, measured by the executor."""

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o is Outcome.PASSED for o in self.outcomes)

    def passed_slice(self, start: int, stop: int | None = None) -> bool:
        """Whether every input in ``[start, stop)`` passed (e.g. the base inputs only)."""
        part = self.outcomes[start:stop]
        return all(o is Outcome.PASSED for o in part)

    @property
    def internal(self) -> bool:
        return any(o is Outcome.INTERNAL for o in self.outcomes)


class Reference(msgspec.Struct, frozen=True):
    """A reference solution's outputs (literal text of the list) and seconds per input.

    Large outputs compared exactly travel as a SHA-256 of a canonical text (equal exactly when
    the values are ``==``); ``digested`` lists those inputs, and a candidate's outputs there are
    digested the same way. Matching a digest means producing an equal value."""

    expected: str
    times: tuple[float, ...]
    digested: tuple[int, ...] = ()


class ReferenceFailed(RuntimeError):
    """The reference solution failed on its own inputs (a broken problem, or limits too low)."""


def eval_limits(max_problem_s: float = 60.0, memory_bytes: int = 4 << 30) -> Limits:
    """Executor limits for scoring: one job may run a whole problem (base and plus budgets),
    values and inputs may be large, big integers must print, stdout is discarded."""
    wall = 2 * (max_problem_s + 1.0) + _BUDGET_SLACK_S
    return Limits(
        wall_timeout_s=wall,
        cpu_time_s=wall,
        memory_bytes=memory_bytes,
        max_value_bytes=64 << 20,
        max_source_bytes=256 << 20,
        int_max_str_digits=0,
        capture_stdout=False,
    )


def _n_inputs(suite: TestSuite) -> int:
    return len(suite.time_limits)


def _run_job(solution: str, suite: TestSuite, *, record_times: bool) -> Job:
    args = (
        "run",
        suite.mode,
        solution,
        suite.entry_point,
        suite.inputs,
        suite.conversion,
        list(suite.time_limits),
        suite.budget_s,
        record_times,
        suite.not_none,
        # Reference runs choose what to digest, only where the comparison is exact.
        None if record_times and not suite.oracle and not suite.atol else list(suite.digested),
    )
    return Job(_SOURCE, ", ".join(repr(a) for a in args))


def _compare_job(suite: TestSuite, statuses: str, outputs: str) -> Job:
    # Only trusted text and checked literals are spliced in; the inputs go along for the
    # oracles that recompute something from them.
    inputs = suite.inputs if suite.oracle else ""
    text = (
        f"'compare', {suite.comparison!r}, {suite.expected}, {outputs}, {statuses}, "
        f"{float(suite.atol)!r}, {suite.oracle!r}, {inputs!r}, {suite.conversion!r}"
    )
    return Job(_SOURCE, text)


def _int_list(text: str) -> list[int]:
    body = check_literal(text).body
    if not isinstance(body, ast.List):
        raise NotLiteral("expected a list")
    values = []
    for e in body.elts:
        if not (isinstance(e, ast.Constant) and type(e.value) is int):
            raise NotLiteral("expected a list of integers")
        values.append(e.value)
    return values


def _bool_list(text: str) -> list[bool]:
    body = check_literal(text).body
    if not isinstance(body, ast.List):
        raise NotLiteral("expected a list")
    values = []
    for e in body.elts:
        if not (isinstance(e, ast.Constant) and type(e.value) is bool):
            raise NotLiteral("expected a list of booleans")
        values.append(e.value)
    return values


def _failed(suite: TestSuite, run: Execution, outcome: Outcome, error: str | None) -> SuiteResult:
    # The same outcome on every input (a pass too, on the identical-output path).
    return SuiteResult((outcome,) * _n_inputs(suite), run.status, error, run.wall_ms)


class _Pending(msgspec.Struct):
    """A candidate run that needs its comparator job."""

    index: int
    statuses: list[int]
    job: Job


def _identical(suite: TestSuite, value: str) -> bool:
    """All inputs pass when the report says every call returned and the outputs' text is the
    expected text itself: identical literals are identical values, so no comparator job is
    needed. (Plain text equality; nothing is parsed. NaN is never equal to itself, and the
    special oracles judge something else, so neither takes this path.)"""
    if suite.oracle or suite.comparison != "evalplus" or "nan" in suite.expected:
        return False
    n = _n_inputs(suite)
    statuses = "[" + ", ".join(["0"] * n) + "]"
    digested = "[" + ", ".join(map(str, suite.digested)) + "]"
    return value == f"({statuses}, {suite.expected}, [], {digested})"


def _after_run(i: int, suite: TestSuite, run: Execution) -> SuiteResult | _Pending:
    """Judges a candidate job, or prepares its comparator job."""
    if run.status is Status.INTERNAL:
        return _failed(suite, run, Outcome.INTERNAL, run.error)
    if run.status is Status.TIMEOUT or (run.error or "").startswith("_Timeout"):
        return _failed(suite, run, Outcome.TIMEOUT, run.error)
    if run.status is not Status.OK or run.value is None:
        return _failed(suite, run, Outcome.ERROR, run.error)
    if run.wall_ms > 1000.0 * (suite.budget_s + _BUDGET_SLACK_S):
        return _failed(suite, run, Outcome.TIMEOUT, "over the problem's time budget")
    if _identical(suite, run.value):
        return _failed(suite, run, Outcome.PASSED, None)
    try:
        statuses_text, outputs_text, _, _ = tuple_items(run.value, 4)
        statuses = _int_list(statuses_text)
        check_literal(outputs_text)
    except NotLiteral as e:
        return _failed(suite, run, Outcome.UNREPRESENTABLE, f"the harness report is unusable: {e}")
    if len(statuses) != _n_inputs(suite):
        return _failed(suite, run, Outcome.ERROR, "the harness report has the wrong length")
    return _Pending(i, statuses, _compare_job(suite, statuses_text, outputs_text))


def _after_compare(suite: TestSuite, run: Execution, p: _Pending, cmp: Execution) -> SuiteResult:
    if cmp.status is Status.INTERNAL:
        return _failed(suite, run, Outcome.INTERNAL, cmp.error)
    verdicts: list[bool] | None = None
    if cmp.status is Status.OK and cmp.value is not None:
        try:
            verdicts = _bool_list(cmp.value)
        except NotLiteral:
            verdicts = None
    if verdicts is None or len(verdicts) != len(p.statuses):
        # The comparator only fails on data the candidate produced (e.g. absurd nesting).
        return _failed(suite, run, Outcome.WRONG, f"outputs could not be compared: {cmp.error}")
    codes = {
        _RAISED: Outcome.ERROR,
        _TIMEOUT: Outcome.TIMEOUT,
        _UNREPRESENTABLE: Outcome.UNREPRESENTABLE,
        _NOT_RUN: Outcome.NOT_RUN,
    }
    outcomes = tuple(
        (Outcome.PASSED if ok else Outcome.WRONG) if s == _OK else codes.get(s, Outcome.ERROR)
        for s, ok in zip(p.statuses, verdicts, strict=True)
    )
    return SuiteResult(outcomes, run.status, None, run.wall_ms)


def _check_pairs(items: Sequence[tuple[str, TestSuite]]) -> None:
    for solution, suite in items:
        if not isinstance(solution, str) or not isinstance(suite, TestSuite):
            raise TypeError("run_tests takes (solution: str, suite: TestSuite) pairs")


def run_tests_batch(
    executor: Executor, items: Sequence[tuple[str, TestSuite]]
) -> list[SuiteResult]:
    """Runs each ``(solution, suite)`` pair; suites run in parallel across the workers."""
    _check_pairs(items)
    runs = executor.run_batch([_run_job(s, t, record_times=False) for s, t in items])
    firsts = [_after_run(i, t, r) for i, ((_, t), r) in enumerate(zip(items, runs, strict=True))]
    pending = [x for x in firsts if isinstance(x, _Pending)]
    compared = executor.run_batch([p.job for p in pending])
    return _assemble(items, runs, firsts, pending, compared)


async def run_tests_batch_async(
    executor: Executor, items: Sequence[tuple[str, TestSuite]]
) -> list[SuiteResult]:
    """:func:`run_tests_batch` for trio."""
    _check_pairs(items)
    runs = await executor.run_batch_async([_run_job(s, t, record_times=False) for s, t in items])
    firsts = [_after_run(i, t, r) for i, ((_, t), r) in enumerate(zip(items, runs, strict=True))]
    pending = [x for x in firsts if isinstance(x, _Pending)]
    compared = await executor.run_batch_async([p.job for p in pending])
    return _assemble(items, runs, firsts, pending, compared)


def _assemble(
    items: Sequence[tuple[str, TestSuite]],
    runs: list[Execution],
    firsts: list[SuiteResult | _Pending],
    pending: list[_Pending],
    compared: list[Execution],
) -> list[SuiteResult]:
    results: dict[int, SuiteResult] = {}
    for i, x in enumerate(firsts):
        if isinstance(x, SuiteResult):
            results[i] = x
    for p, cmp in zip(pending, compared, strict=True):
        results[p.index] = _after_compare(items[p.index][1], runs[p.index], p, cmp)
    return [results[i] for i in range(len(items))]


def run_tests(executor: Executor, solution: str, suite: TestSuite) -> SuiteResult:
    """Runs ``solution`` on every input of ``suite`` in the sandbox; one outcome per input."""
    return run_tests_batch(executor, [(solution, suite)])[0]


async def run_tests_async(executor: Executor, solution: str, suite: TestSuite) -> SuiteResult:
    return (await run_tests_batch_async(executor, [(solution, suite)]))[0]


def reference_outputs(
    executor: Executor, items: Sequence[tuple[str, TestSuite]]
) -> list[Reference | ReferenceFailed]:
    """Runs trusted reference solutions (still in the sandbox) and records their outputs and
    per-input times, from which candidates' expected values and time limits follow.
    ``suite.expected`` and the limits of these suites are not used for judging."""
    _check_pairs(items)
    runs = executor.run_batch([_run_job(s, t, record_times=True) for s, t in items])
    out: list[Reference | ReferenceFailed] = []
    for (_, suite), run in zip(items, runs, strict=True):
        if run.status is not Status.OK or run.value is None:
            out.append(ReferenceFailed(f"{suite.entry_point}: {run.status}: {run.error}"))
            continue
        try:
            statuses_text, outputs_text, times_text, digested_text = tuple_items(run.value, 4)
            statuses = _int_list(statuses_text)
            times = _float_list(times_text)
            digested = _int_list(digested_text)
        except NotLiteral as e:
            out.append(ReferenceFailed(f"{suite.entry_point}: unusable report: {e}"))
            continue
        bad = [i for i, s in enumerate(statuses) if s != _OK]
        if bad:
            out.append(
                ReferenceFailed(
                    f"{suite.entry_point}: the reference fails on input {bad[0]} "
                    f"(status {statuses[bad[0]]}) of {len(statuses)}"
                )
            )
            continue
        out.append(Reference(outputs_text, tuple(times), tuple(digested)))
    return out


def _float_list(text: str) -> list[float]:
    body = check_literal(text).body
    if not isinstance(body, ast.List):
        raise NotLiteral("expected a list")
    values = []
    for e in body.elts:
        if not (isinstance(e, ast.Constant) and isinstance(e.value, int | float)):
            raise NotLiteral("expected a list of numbers")
        values.append(float(e.value))
    return values
