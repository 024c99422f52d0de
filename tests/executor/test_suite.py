"""Test-suite mode: one program, many inputs, a verdict per input, each input in its own child."""

from __future__ import annotations

import pytest

from azr.errors import InvalidJob
from azr.executor import Executor, Job, Status

PROGRAM = """
counter = []

def helper(x):
    return x * 2

def third_of_double(x):
    counter.append(x)
    return (helper(x) / 3, len(counter))
"""


def test_a_verdict_per_input_with_tolerance_and_entry(ex: Executor) -> None:
    rs = ex.run_suite(
        PROGRAM,
        ["1", "2", "'a'", "3"],
        expected=["(0.6667, 1)", "(1.3333, 1)", "(0, 1)", "(2.1, 1)"],
        atol=1e-3,
        entry="third_of_double",
    )
    assert [(r.status, r.matched) for r in rs] == [
        (Status.OK, True),
        (Status.OK, True),
        (Status.ERROR, False),
        (Status.OK, False),
    ]
    # Each input ran in a fresh child: the module-level list never saw another input.
    assert all(r.value is None or r.value.endswith(", 1)") for r in rs)


def test_stop_on_first_failure_and_total_limit(ex: Executor) -> None:
    rs = ex.run_suite(
        PROGRAM, ["1", "'a'", "3", "4"], entry="third_of_double", stop_on_first_failure=True
    )
    assert [r.status for r in rs] == [Status.OK, Status.ERROR]
    rs = ex.run_suite(
        "def f(x):\n    return x",
        ["1", "2"],
        expected=["1", "3"],
        stop_on_first_failure=True,
    )
    assert [r.matched for r in rs] == [True, False]
    sleepy = "def f(x):\n    import time\n    time.sleep(x)\n    return x"
    rs = ex.run_suite(sleepy, ["0.3"] * 10, total_time_limit=0.5, time_limit_per_input=2)
    assert len(rs) < 10 and rs[-1].status is Status.TIMEOUT
    assert [r.status for r in rs[:2]] == [Status.OK, Status.OK]
    r = ex.run_suite(sleepy, ["5"], time_limit_per_input=0.3)[0]
    assert r.status is Status.TIMEOUT and r.wall_ms < 5000


def test_bad_suites_are_invalid_jobs(ex: Executor) -> None:
    with pytest.raises(InvalidJob):
        ex.run_suite("def f(x):\n    return x", ["1", "2"], expected=["1"])
    with pytest.raises(InvalidJob):
        ex.run_suite("def f(x):\n    return x", ["1"], entry="not a name")
    with pytest.raises(InvalidJob):
        ex.run_suite("def f(x):\n    return x", ["1"], time_limit_per_input=0)
    with pytest.raises(InvalidJob):
        ex.run_suite("def f(x):\n    return x", ["1"], expected=["1"], atol=float("nan"))
    r = ex.run_suite("def g(x):\n    return x", ["1"], entry="h")[0]
    assert r.status is Status.ERROR and "'h'" in (r.error or "")


def test_entry_point_in_jobs(ex: Executor) -> None:
    (r,) = ex.run_batch(
        [Job("def f(x):\n    return 0\ndef g(x):\n    return x + 1", "1", entry="g")]
    )
    assert r.value == "2"
