"""Error prediction in the real sandbox: what makes a valid task, and how answers are judged."""

from __future__ import annotations

import pytest

pytest.importorskip("azr.executor", reason="the compiled executor is not built")

from azr.executor import Executor
from azr.tasks import ErrorTask, ProposeRequest, Reason, Role, TaskType, Triplet, build_prompt
from azr.tasks.error_prediction import SEED_ERROR_TRIPLET, validate_error_plan
from azr.tasks.parsing import format_blocks, format_response
from azr.tasks.plan import run_plans
from azr.tasks.validation import ValidationConfig
from azr.verify import Verifier


def validate(executor: Executor, program: str, inputs: str) -> tuple[Reason, str, Triplet | None]:
    return run_plans([validate_error_plan(program, inputs, ValidationConfig())], executor)[0]


def test_a_program_that_raises_is_a_task_whose_answer_is_the_exception_type(
    executor: Executor,
) -> None:
    reason, _, triplet = validate(executor, "def g(d):\n    return d['missing']  # c", "{}")
    assert reason is Reason.OK
    assert triplet == Triplet("def f(d):\n    return d['missing']", "{}", "KeyError")
    own = "class Oops(Exception):\n    pass\n\ndef f(a):\n    raise Oops(f'no {a}: really')"
    assert validate(executor, own, "1")[2] == Triplet(own, "1", "Oops")
    seed = SEED_ERROR_TRIPLET
    assert validate(executor, seed.program, seed.input)[2] == seed


def test_what_is_not_an_error_prediction_task(executor: Executor) -> None:
    assert validate(executor, "def f(a):\n    return a", "1")[0] is Reason.NO_ERROR
    assert validate(executor, "def f(a):\n    while True:\n        pass", "1")[0] is Reason.TIMEOUT
    assert validate(executor, "import os\ndef f(a):\n    return 1 // 0", "1")[0] is (
        Reason.FORBIDDEN
    )
    assert validate(executor, "def f(a):\n    return 1 // 0", "")[0] is Reason.FORMAT
    # Which exception depends on the weekday, and the runs of the check see different days.
    weekday = (
        "import datetime\ndef f(a):\n"
        "    kinds = [ZeroDivisionError, IndexError, KeyError, TypeError, ValueError,"
        " NameError, AttributeError]\n"
        "    raise kinds[datetime.date.today().weekday()]()"
    )
    assert validate(executor, weekday, "1")[0] is Reason.NONDETERMINISTIC


def test_answers_name_the_type_and_nothing_runs(executor: Executor) -> None:
    task = ErrorTask("def f(a):\n    return a[5]", "[1]", "IndexError")
    with Verifier(executor=executor) as v:
        before = executor.statistics()["executions"]
        verdicts = v.score_response_batch(
            [task] * 7,
            [
                format_response("IndexError"),
                format_response("indexerror: list index out of range"),
                format_response("`builtins.IndexError`"),
                format_response("KeyError"),
                format_response("Index Error"),
                format_response(""),
                "IndexError",
            ],
        )
        assert executor.statistics()["executions"] == before
        assert [x.reason for x in verdicts] == [
            Reason.OK,
            Reason.OK,
            Reason.OK,
            Reason.WRONG,
            Reason.SYNTAX,
            Reason.FORMAT,
            Reason.FORMAT,
        ]
        proposal = v.score_proposal(
            ProposeRequest(TaskType.ERROR_PREDICTION),
            format_response(
                format_blocks([("python", "def f(s):\n    return int(s)"), ("input", "'x'")])
            ),
        )
        assert proposal.reason is Reason.OK
        assert proposal.triplet is not None and proposal.triplet.output == "ValueError"


def test_prompts_for_both_roles() -> None:
    propose = build_prompt(
        Role.PROPOSE, ProposeRequest(TaskType.ERROR_PREDICTION, references=(SEED_ERROR_TRIPLET,))
    )
    assert "raises an exception" in propose and "```error\nIndexError\n```" in propose
    solve = build_prompt(Role.SOLVE, ErrorTask.from_triplet(SEED_ERROR_TRIPLET))
    assert "Which type?" in solve and "def f(a):\n    return a[0]" in solve
