"""Every canonical solution of HumanEval+ (164) and MBPP+ (378) passes its base and plus tests
in the sandbox, and wrong solutions do not.

Expected outputs come from running the canonical solutions in the sandbox; scoring the same
solutions again as candidates then checks the whole path (time limits from the measured times,
digests of large outputs, tolerance, special oracles, MBPP+'s input conversions). No
upstream-known exception is needed at these releases (HumanEval+ v0.1.10, MBPP+ v0.2.0): all
542 pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from azr.eval.code_scoring import EvalPlusScorer
from azr.eval.data.evalplus import load_humaneval_plus, load_mbpp_plus
from azr.eval.data.problems import CodeProblem
from azr.executor import Executor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def problems(eval_data: Path) -> list[CodeProblem]:
    d = eval_data / "evalplus"
    return load_humaneval_plus(d / "HumanEvalPlus.jsonl.gz") + load_mbpp_plus(
        d / "MbppPlus.jsonl.gz"
    )


@pytest.fixture(scope="module")
def scorer(scoring_executor: Executor, problems: list[CodeProblem]) -> EvalPlusScorer:
    s = EvalPlusScorer(scoring_executor)
    s.prepare(problems)
    return s


def test_counts(problems: list[CodeProblem]) -> None:
    assert sum(p.task_id.startswith("HumanEval/") for p in problems) == 164
    assert sum(p.task_id.startswith("Mbpp/") for p in problems) == 378


def test_every_reference_runs(scorer: EvalPlusScorer) -> None:
    assert scorer.failed_references == {}


def test_every_canonical_solution_passes_base_and_plus(
    scorer: EvalPlusScorer, problems: list[CodeProblem]
) -> None:
    verdicts = scorer.score([(p, p.reference) for p in problems])
    failed = {p.task_id: v for p, v in zip(problems, verdicts, strict=True) if not v.passed}
    assert failed == {}
    assert all(v.base_passed for v in verdicts)


_OFF = """
def _off(out):
    if isinstance(out, bool):
        return not out
    if isinstance(out, (int, float)):
        return out + 1
    if isinstance(out, str):
        return out + "?"
    if isinstance(out, (list, tuple)):
        return type(out)([*out, 0])
    return ["wrong"]
"""


def _wrapped(p: CodeProblem, body: str) -> str:
    """The canonical solution under another name, behind an entry point that ``body`` writes
    (``out`` is the right answer, ``_calls[0]`` counts calls, ``_off`` spoils a value)."""
    return (
        p.reference
        + _OFF
        + f"\n_reference = {p.entry_point}\n_calls = [0]\n"
        + f"def {p.entry_point}(*args):\n"
        + "    _calls[0] += 1\n"
        + "    out = _reference(*args)\n"
        + body
    )


def _some(problems: list[CodeProblem]) -> list[CodeProblem]:
    # Problems compared exactly, with base and plus inputs, from both sets.
    chosen = [p for p in problems if not p.oracle and not p.atol and p.n_plus and not p.not_none]
    return chosen[::40]


def test_mutated_solutions_fail(scorer: EvalPlusScorer, problems: list[CodeProblem]) -> None:
    chosen = _some(problems)
    assert len(chosen) >= 10
    body = "    return _off(out) if _calls[0] == 1 else out\n"
    wrong = [(p, _wrapped(p, body)) for p in chosen]
    verdicts = scorer.score(wrong)
    assert [v.passed for v in verdicts] == [False] * len(chosen)
    assert [v.base_passed for v in verdicts] == [False] * len(chosen)
    assert all(v.first_failure == "wrong@0" for v in verdicts)


def test_wrong_only_on_plus_inputs_fails_plus_but_passes_base(
    scorer: EvalPlusScorer, problems: list[CodeProblem]
) -> None:
    chosen = _some(problems)
    late = [
        (
            p,
            _wrapped(
                p, f"    if _calls[0] > {p.n_base}:\n        return ['wrong']\n    return out\n"
            ),
        )
        for p in chosen
    ]
    verdicts = scorer.score(late)
    assert [(v.base_passed, v.passed) for v in verdicts] == [(True, False)] * len(chosen)
    assert all(
        v.first_failure == f"wrong@{p.n_base}" for (p, _), v in zip(late, verdicts, strict=True)
    )


def test_float_tolerance_is_honoured(scorer: EvalPlusScorer, problems: list[CodeProblem]) -> None:
    # Problems with an atol accept an output within it and reject one beyond it.
    tolerant = [p for p in problems if p.atol and not p.oracle][:3]
    assert tolerant
    near = [
        (p, _wrapped(p, f"    return out + {p.atol / 10!r} if isinstance(out, float) else out\n"))
        for p in tolerant
    ]
    far = [
        (p, _wrapped(p, f"    return out + {p.atol * 100!r} if isinstance(out, float) else out\n"))
        for p in tolerant
    ]
    assert all(v.passed for v in scorer.score(near))
    assert not any(v.passed for v in scorer.score(far))
