"""The checks against 400 real programs (CRUXEval), run in the real sandbox."""

from __future__ import annotations

import ast
from typing import Any

import pytest

pytest.importorskip("azr.executor", reason="the compiled executor is not built")

from azr.executor import Executor, Job, Limits, values_equal
from azr.tasks import Reason
from azr.tasks.checking import abduction_plan, deduction_plan
from azr.tasks.plan import run_plans
from azr.tasks.validation import validate_plan

Rows = list[dict[str, str]]


def _mutate(text: str) -> str:
    """A different value of the same kind where that is easy, a wrapped one otherwise."""
    value = ast.literal_eval(text)  # trusted test data, and literal_eval runs no code
    if type(value) is int:
        return repr(value + 1)
    if type(value) is str:
        return repr(value + "#")
    if type(value) is bool:
        return repr(not value)
    if type(value) is list:
        return repr([*value, None])
    return repr([value])


def test_gold_outputs_pass_as_deduction_answers(executor: Executor, cruxeval_rows: Rows) -> None:
    # Without the gold output the program runs and the answer is compared with its value;
    # with it, the answer is evaluated and compared with the gold text.
    plans = [deduction_plan(r["code"], r["input"], r["output"]) for r in cruxeval_rows]
    plans += [
        deduction_plan(r["code"], r["input"], r["output"], output=r["output"])
        for r in cruxeval_rows
    ]
    checks = run_plans(plans, executor)
    assert [c.reason for c in checks] == [Reason.OK] * len(plans)


def test_changed_outputs_fail(executor: Executor, cruxeval_rows: Rows) -> None:
    plans = [deduction_plan(r["code"], r["input"], _mutate(r["output"])) for r in cruxeval_rows]
    checks = run_plans(plans, executor)
    assert all(c.reason is Reason.WRONG for c in checks), [c for c in checks if c.reason != "wrong"]


def test_gold_inputs_pass_as_abduction_answers(executor: Executor, cruxeval_rows: Rows) -> None:
    # Some gold inputs are expressions (a lambda, ``dict(a=1)``, a program global), which the
    # default abduction answer form allows.
    plans = [abduction_plan(r["code"], r["output"], r["input"]) for r in cruxeval_rows]
    checks = run_plans(plans, executor)
    assert [c.reason for c in checks] == [Reason.OK] * len(plans)


def _shape(inputs: str) -> tuple[str, ...]:
    """The kinds of an argument list's arguments: ``"[1], 'a'"`` -> ``("List", "str")``."""
    call = ast.parse(f"f({inputs})", mode="eval").body
    assert isinstance(call, ast.Call)
    args = [*call.args, *(k.value for k in call.keywords)]
    return tuple(
        type(a.value).__name__ if isinstance(a, ast.Constant) else type(a).__name__ for a in args
    )


def test_inputs_with_other_outputs_fail(executor: Executor, cruxeval_rows: Rows) -> None:
    # For each task, find the input of another task (arguments of the same kinds) on which the
    # program runs and returns a *different* value, established independently by running it
    # and comparing values; that input, given as the answer, must be judged wrong.
    by_shape: dict[tuple[str, ...], list[str]] = {}
    for row in cruxeval_rows:
        by_shape.setdefault(_shape(row["input"]), []).append(row["input"])
    candidates = []
    for row in cruxeval_rows:
        pool = [i for i in by_shape[_shape(row["input"])] if i != row["input"]]
        candidates += [(row, answer) for answer in pool[:2]]
    # Wrong inputs can send a program into a long loop: search with a short time limit.
    with Executor(limits=Limits(wall_timeout_s=0.25, cpu_time_s=1.0)) as quick:
        runs = quick.run_batch([Job(row["code"], answer) for row, answer in candidates])
        golds = quick.run_batch([Job.eval(row["output"]) for row, _ in candidates])
    differ: dict[str, tuple[dict[str, str], str]] = {}
    for (row, answer), run, gold in zip(candidates, runs, golds, strict=True):
        if run.ok and not values_equal(run, gold):
            differ.setdefault(row["id"], (row, answer))
    assert len(differ) >= 300, len(differ)

    chosen = list(differ.values())
    checks = run_plans([abduction_plan(r["code"], r["output"], a) for r, a in chosen], executor)
    assert [c.reason for c in checks] == [Reason.WRONG] * len(chosen)


def test_every_program_validates_to_its_gold_output(
    executor: Executor, cruxeval_rows: Rows
) -> None:
    validations = run_plans([validate_plan(r["code"], r["input"]) for r in cruxeval_rows], executor)
    assert [v.reason for v in validations] == [Reason.OK] * len(cruxeval_rows)
    # The normalised program on the canonical input gives the gold output (compared as values).
    outputs: list[Any] = [v.triplet.output for v in validations if v.triplet is not None]
    runs = executor.run_batch(
        [Job.eval(o) for o in outputs] + [Job.eval(r["output"]) for r in cruxeval_rows]
    )
    n = len(cruxeval_rows)
    assert all(values_equal(runs[i], runs[n + i]) for i in range(n))
