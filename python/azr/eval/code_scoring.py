"""Scoring generated code in the sandbox: EvalPlus (HumanEval+, MBPP+), LiveCodeBench and
CRUXEval.

EvalPlus's protocol, reproduced: expected outputs come from the canonical solution (here run
in the sandbox too), each input's time limit is ``max(min_time_limit, factor * reference
time)`` (defaults 1 s and 4x), a problem's budget is the capped sum of its limits plus one
second, floats compare with the problem's ``atol`` (1e-6 when that is 0 and the expected value
is a float), and the special oracles apply. "Base" passes when every original input passes;
"plus" when every base *and* added input passes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec

from azr.executor import Executor

from .data.problems import CodeProblem, CruxProblem, LcbProblem
from .suite import (
    Comparison,
    Outcome,
    Reference,
    ReferenceFailed,
    SuiteResult,
    TestSuite,
    reference_outputs,
    run_tests_batch,
    run_tests_batch_async,
)

__all__ = [
    "CodeVerdict",
    "EvalPlusScorer",
    "TimeLimits",
    "lcb_suite",
    "score_cruxeval",
    "score_lcb",
]

# Generous per-input limit for reference solutions (their time is what limits are scaled from).
_REFERENCE_INPUT_S = 20.0
# LiveCodeBench's own per-test limit.
LCB_TEST_S = 6.0


class TimeLimits(msgspec.Struct, frozen=True):
    """EvalPlus's time-limit scaling (its defaults)."""

    min_time_limit: float = 1.0
    factor: float = 4.0
    max_problem_s: float = 60.0


class CodeVerdict(msgspec.Struct, frozen=True):
    """The verdict on one generated program."""

    passed: bool
    """HumanEval+/MBPP+: base and plus; LiveCodeBench: every (public) test."""
    base_passed: bool | None = None
    """EvalPlus only: every original input."""
    first_failure: str | None = None
    """The first failing input's outcome and index, e.g. ``"wrong@3"``."""
    error: str | None = None
    wall_ms: float = 0.0
    internal: bool = False
    """The executor failed; not a verdict (skipped when scoring)."""


def _first_failure(result: SuiteResult) -> str | None:
    for i, o in enumerate(result.outcomes):
        if o is not Outcome.PASSED:
            return f"{o.value}@{i}"
    return None


class EvalPlusScorer:
    """Scores solutions of HumanEval+/MBPP+ problems; reference outputs are computed once per
    problem (in the sandbox) and kept."""

    def __init__(self, executor: Executor, limits: TimeLimits | None = None) -> None:
        self._executor = executor
        self._limits = limits or TimeLimits()
        self._references: dict[str, Reference] = {}
        self.failed_references: dict[str, str] = {}

    def _reference_suite(self, p: CodeProblem) -> TestSuite:
        n = p.n_base + p.n_plus
        return TestSuite(
            mode="function",
            entry_point=p.entry_point,
            inputs=p.inputs,
            expected="[]",
            comparison="evalplus",
            time_limits=(_REFERENCE_INPUT_S,) * n,
            budget_s=1e9,
            atol=p.atol,
            oracle=p.oracle,
            conversion=p.conversion,
            not_none=p.not_none,
        )

    def prepare(self, problems: Sequence[CodeProblem]) -> None:
        """Computes the reference outputs and times of problems not seen yet."""
        todo = [p for p in problems if p.task_id not in self._references]
        if not todo:
            return
        refs = reference_outputs(
            self._executor, [(p.reference, self._reference_suite(p)) for p in todo]
        )
        for p, ref in zip(todo, refs, strict=True):
            if isinstance(ref, ReferenceFailed):
                self.failed_references[p.task_id] = str(ref)
            else:
                self._references[p.task_id] = ref

    def reference(self, task_id: str) -> Reference | None:
        return self._references.get(task_id)

    def suite(self, p: CodeProblem) -> TestSuite:
        ref = self._references[p.task_id]
        lim = self._limits
        limits = tuple(max(lim.min_time_limit, lim.factor * t) for t in ref.times)
        base, plus = limits[: p.n_base], limits[p.n_base :]
        budget = min(lim.max_problem_s, sum(base)) + 1.0
        if plus:
            budget += min(lim.max_problem_s, sum(plus)) + 1.0
        return TestSuite(
            mode="function",
            entry_point=p.entry_point,
            inputs=p.inputs,
            expected=ref.expected,
            comparison="evalplus",
            time_limits=limits,
            budget_s=budget,
            atol=p.atol,
            oracle=p.oracle,
            conversion=p.conversion,
            not_none=p.not_none,
            digested=ref.digested,
        )

    def _items(self, pairs: Sequence[tuple[CodeProblem, str]]) -> list[tuple[str, TestSuite]]:
        self.prepare([p for p, _ in pairs])
        return [(s, self.suite(p)) for p, s in pairs if p.task_id in self._references]

    def _verdicts(
        self, pairs: Sequence[tuple[CodeProblem, str]], results: list[SuiteResult]
    ) -> list[CodeVerdict]:
        out = []
        it = iter(results)
        for p, _ in pairs:
            if p.task_id not in self._references:
                msg = self.failed_references[p.task_id]
                out.append(
                    CodeVerdict(False, False, error=f"reference failed: {msg}", internal=True)
                )
                continue
            r = next(it)
            base = r.passed_slice(0, p.n_base)
            out.append(
                CodeVerdict(
                    passed=base and r.passed_slice(p.n_base),
                    base_passed=base,
                    first_failure=_first_failure(r),
                    error=r.error,
                    wall_ms=r.wall_ms,
                    internal=r.internal,
                )
            )
        return out

    def score(self, pairs: Sequence[tuple[CodeProblem, str]]) -> list[CodeVerdict]:
        """One verdict per ``(problem, solution)``; solutions are whole modules."""
        return self._verdicts(pairs, run_tests_batch(self._executor, self._items(pairs)))

    async def score_async(self, pairs: Sequence[tuple[CodeProblem, str]]) -> list[CodeVerdict]:
        items = self._items(pairs)
        return self._verdicts(pairs, await run_tests_batch_async(self._executor, items))


def lcb_suite(p: LcbProblem, test_s: float = LCB_TEST_S) -> TestSuite:
    n = len(p.inputs)
    comparison: Comparison = "stdout" if p.mode == "stdio" else "json"
    expected = repr(list(p.outputs))
    return TestSuite(
        mode=p.mode,
        entry_point=p.entry_point,
        inputs=json.dumps(list(p.inputs)),
        expected=expected,
        comparison=comparison,
        time_limits=(test_s,) * n,
        budget_s=test_s * n + 1.0,
    )


def _lcb_verdict(r: SuiteResult) -> CodeVerdict:
    return CodeVerdict(
        passed=r.passed,
        first_failure=_first_failure(r),
        error=r.error,
        wall_ms=r.wall_ms,
        internal=r.internal,
    )


def score_lcb(
    executor: Executor, pairs: Sequence[tuple[LcbProblem, str]], test_s: float = LCB_TEST_S
) -> list[CodeVerdict]:
    """LiveCodeBench: every (public) test must pass; stdout compared by LCB's line/token rules,
    functional outputs as JSON values."""
    items = [(s, lcb_suite(p, test_s)) for p, s in pairs]
    return [_lcb_verdict(r) for r in run_tests_batch(executor, items)]


async def score_lcb_async(
    executor: Executor, pairs: Sequence[tuple[LcbProblem, str]], test_s: float = LCB_TEST_S
) -> list[CodeVerdict]:
    items = [(s, lcb_suite(p, test_s)) for p, s in pairs]
    return [_lcb_verdict(r) for r in await run_tests_batch_async(executor, items)]


def score_cruxeval(
    executor: Executor, pairs: Sequence[tuple[CruxProblem, str]], mode: str
) -> list[CodeVerdict]:
    """CRUXEval-O (``mode="output"``: the answer is the output) or -I (``"input"``: any input
    for which ``f`` returns the output), checked by :class:`azr.verify.Verifier`."""
    from azr.verify import Verifier

    with Verifier(executor=executor) as v:
        codes = [p.code for p, _ in pairs]
        answers = [a for _, a in pairs]
        if mode == "output":
            inputs = [p.input for p, _ in pairs]
            golds: list[str | None] = [p.output for p, _ in pairs]
            verdicts = v.check_deduction_batch(codes, inputs, answers, outputs=golds)
        else:
            verdicts = v.check_abduction_batch(codes, [p.output for p, _ in pairs], answers)
    return [
        CodeVerdict(
            passed=x.correct,
            first_failure=None if x.correct else x.reason,
            internal=not x.scored,
        )
        for x in verdicts
    ]
