"""The determinism check's runs see different clocks (in the sandbox child only)."""

from __future__ import annotations

import datetime
import time

import pytest

pytest.importorskip("azr.executor", reason="the compiled executor is not built")

from azr.executor import Executor, Job, values_equal
from azr.tasks import Reason
from azr.tasks.clock import DEFAULT_CLOCK_STEP_S, clocked_job
from azr.tasks.plan import run_plans
from azr.tasks.validation import ValidationConfig, validate_plan

CLOCK_READERS = {
    "minute": "import datetime\ndef f(a):\n    return datetime.datetime.now().minute + a",
    "today": "import datetime\ndef f(a):\n    return str(datetime.date.today()) + a",
    "from-import": "from datetime import datetime\ndef f(a):\n    return datetime.today().hour * a",
    "utc": "import datetime\ndef f(a):\n    return datetime.datetime.utcnow().second + a",
    "timestamp": (
        "import datetime\ndef f(a):\n"
        "    return int(datetime.datetime.now(datetime.timezone.utc).timestamp()) // 3600 + a"
    ),
}
ARGUMENT = {"today": "'x'"}


@pytest.mark.parametrize("name", sorted(CLOCK_READERS))
def test_programs_that_read_the_clock_are_nondeterministic(executor: Executor, name: str) -> None:
    plan = validate_plan(CLOCK_READERS[name], ARGUMENT.get(name, "1"))
    result = run_plans([plan], executor)[0]
    assert result.reason is Reason.NONDETERMINISTIC, result


def test_datetime_arithmetic_without_the_clock_stays_valid(executor: Executor) -> None:
    program = (
        "from __future__ import annotations\nimport datetime\n"
        "def f(y: int):\n    return (datetime.date(y, 3, 1) - datetime.timedelta(days=1)).day"
    )
    result = run_plans([validate_plan(program, "2024")], executor)[0]
    assert result.valid and result.triplet is not None and result.triplet.output == "29"


def test_the_shift_reaches_the_child_and_leaves_no_trace(executor: Executor) -> None:
    program = (
        "import datetime\ndef f():\n"
        "    return datetime.datetime.now().timestamp(), sorted(k for k in globals() if "
        "not k.startswith('__') or 'azr' in k)"
    )
    plain, shifted = executor.run_batch(
        [
            clocked_job(program, "", hash_seed=0, random_seed=0, offset_s=0.0),
            clocked_job(program, "", hash_seed=0, random_seed=0, offset_s=DEFAULT_CLOCK_STEP_S),
        ]
    )
    assert plain.ok and shifted.ok, (plain.error, shifted.error)
    assert plain.value is not None and shifted.value is not None
    t0, names0 = plain.value.strip("()").split(", ", 1)
    t1, names1 = shifted.value.strip("()").split(", ", 1)
    assert abs(float(t0) - time.time()) < 60  # run 0 sees the real clock
    assert abs(float(t1) - float(t0) - DEFAULT_CLOCK_STEP_S) < 60
    assert names0 == names1 == "['datetime', 'f']"  # the shift binds no global name
    # The host's own clock and classes are untouched.
    assert abs(datetime.datetime.now().timestamp() - time.time()) < 60
    assert datetime.datetime.__module__ == "datetime" and datetime.datetime.now.__self__ is (
        datetime.datetime
    )


def test_every_run_of_the_check_gets_its_own_clock() -> None:
    config = ValidationConfig(seeds=((0, 0), (1, 1), (2, 2)), clock_step_s=100.0)
    plan = validate_plan("def f(a):\n    return a", "1", config)
    jobs = next(plan)
    assert len(jobs) == 3
    assert [job.clock_offset_s for job in jobs] == [0.0, 100.0, 200.0]
    assert all(job.program == "def f(a):\n    return a" for job in jobs)  # never rewritten
    assert len({(job.hash_seed, job.random_seed) for job in jobs}) == 3


def test_plain_programs_give_the_same_value_with_any_shift(executor: Executor) -> None:
    program = "def f(a):\n    return sorted({a, a * 2, a**2})"
    runs = executor.run_batch(
        [clocked_job(program, "3", hash_seed=h, random_seed=h, offset_s=h * 1e7) for h in range(3)]
        + [Job(program, "3")]
    )
    assert all(r.ok for r in runs)
    assert all(values_equal(runs[0], r) for r in runs[1:])


def test_clock_readers_reached_through_other_imports_are_shifted(executor: Executor) -> None:
    # ``time`` itself may not be imported, but modules that are allowed read it (logging's
    # record timestamps use time.localtime): the patch is applied on the first import.
    via_logging = "import logging\ndef f(a):\n    return logging.Formatter.converter().tm_min + a"
    result = run_plans([validate_plan(via_logging, "1")], executor)[0]
    assert result.reason is Reason.NONDETERMINISTIC, result
    # A datetime imported after another module is still patched.
    late = "import json\nimport datetime\ndef f(a):\n    return datetime.date.today().day + a"
    assert run_plans([validate_plan(late, "1")], executor)[0].reason is Reason.NONDETERMINISTIC
