"""The checks against 400 real programs (CRUXEval), run in the real sandbox."""

from __future__ import annotations

import ast
from typing import Any

import pytest

pytest.importorskip("azr.executor", reason="the compiled executor is not built")

from azr.executor import Executor, Job, Limits, values_equal
from azr.tasks import Reason, is_literal
from azr.tasks.checking import CheckConfig, abduction_plan, deduction_plan
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


def _literal_arguments(inputs: str) -> bool:
    call = ast.parse(f"f({inputs})", mode="eval").body
    assert isinstance(call, ast.Call)
    return is_literal(ast.Tuple([*call.args, *(k.value for k in call.keywords)]))


def test_gold_inputs_pass_as_abduction_answers(executor: Executor, cruxeval_rows: Rows) -> None:
    # By default abduction answers are literal values: every gold input written as literals
    # passes, and the few written as expressions (a lambda, ``dict(a=1)``, a program global)
    # are refused as such. With expressions allowed, every gold input passes.
    literal = [_literal_arguments(r["input"]) for r in cruxeval_rows]
    assert 0 < literal.count(False) < 20
    plans = [abduction_plan(r["code"], r["output"], r["input"]) for r in cruxeval_rows]
    checks = run_plans(plans, executor)
    expected = [Reason.OK if ok else Reason.NOT_LITERAL for ok in literal]
    assert [c.reason for c in checks] == expected
    loose = CheckConfig(abduction_answers="expression")
    plans = [
        abduction_plan(r["code"], r["output"], r["input"], config=loose) for r in cruxeval_rows
    ]
    checks = run_plans(plans, executor)
    assert [c.reason for c in checks] == [Reason.OK] * len(plans)


def test_an_answer_built_from_the_output_alone_solves_no_abduction(
    executor: Executor, cruxeval_rows: Rows
) -> None:
    # One template per task, built only from the shown output: an object whose every operation
    # (comparison, arithmetic, indexing, calls, iteration, hashing, conversions) gives back that
    # output. Literal-only answers refuse it outright, so no task is solved without reasoning.
    template = (
        "type('Echo', (), {{m: (lambda self, *a, **k: {out}) for m in ("
        "'__eq__', '__ne__', '__lt__', '__le__', '__gt__', '__ge__', '__add__', '__radd__', "
        "'__sub__', '__mul__', '__getitem__', '__call__', '__getattr__', '__str__', "
        "'__len__', '__hash__', '__bool__', '__int__', '__index__', '__contains__')}})()"
    )
    answers = [template.format(out=r["output"]) for r in cruxeval_rows]
    pairs = zip(cruxeval_rows, answers, strict=True)
    plans = [abduction_plan(r["code"], r["output"], a) for r, a in pairs]
    checks = run_plans(plans, executor)
    assert {c.reason for c in checks} == {Reason.NOT_LITERAL}


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
        same = by_shape[_shape(row["input"])]
        pool = [i for i in same if i != row["input"] and _literal_arguments(i)]
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
