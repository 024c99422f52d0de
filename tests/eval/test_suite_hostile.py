"""Hostile solutions against the scoring seam: they fail, and nothing reaches the host.

The candidate runs in the sandbox next to the trusted harness and can tamper with it, forge
its report, exit early or return objects that lie. None of that may turn into a pass or an
``internal`` verdict: the host only accepts plain literal data from the candidate's job and
judges it in a separate sandbox that never runs candidate code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azr.eval.suite import Outcome, TestSuite, run_tests, run_tests_batch
from azr.executor import Executor

# add(a, b) on three inputs; the expected values are known only to the comparator.
INPUTS = [[1, 2], [3, 4], [10, -5]]
ADD = TestSuite(
    mode="function",
    entry_point="add",
    inputs=json.dumps(INPUTS),
    expected="[3, 7, 5]",
    comparison="evalplus",
    time_limits=(0.5, 0.5, 0.5),
    budget_s=2.5,
)
GOOD = "def add(a, b):\n    return a + b\n"


def _verdict(ex: Executor, solution: str, suite: TestSuite = ADD) -> tuple[bool, set[Outcome]]:
    r = run_tests(ex, solution, suite)
    return r.passed, set(r.outcomes)


def test_a_correct_solution_passes(quick_executor: Executor) -> None:
    r = run_tests(quick_executor, GOOD, ADD)
    assert r.passed and r.outcomes == (Outcome.PASSED,) * 3


def test_per_input_outcomes(quick_executor: Executor) -> None:
    src = (
        "def add(a, b):\n"
        "    if a == 3:\n        raise ValueError('no')\n"
        "    if a == 10:\n        return a - b\n"
        "    return a + b\n"
    )
    r = run_tests(quick_executor, src, ADD)
    assert r.outcomes == (Outcome.PASSED, Outcome.ERROR, Outcome.WRONG)


@pytest.mark.parametrize(
    "name, solution",
    [
        ("fork", "import os\ndef add(a, b):\n    os.fork()\n    return a + b\n"),
        (
            "subprocess",
            "import subprocess\ndef add(a, b):\n"
            "    return int(subprocess.check_output(['echo', str(a + b)]))\n",
        ),
        (
            "socket",
            "import socket\ndef add(a, b):\n    socket.create_connection(('1.1.1.1', 80))\n",
        ),
        ("endless loop", "def add(a, b):\n    while True:\n        a += 1\n"),
        (
            "endless loop that ignores the timer",
            "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
            "def add(a, b):\n    while True:\n        pass\n",
        ),
        (
            "catches the timeout",
            "def add(a, b):\n    while True:\n        try:\n            while True:\n"
            "                pass\n        except BaseException:\n            pass\n",
        ),
        ("huge output", "def add(a, b):\n    print('x' * 10**6)\n    return 'x' * 10**8\n"),
        ("memory", "def add(a, b):\n    return len(bytearray(10**10))\n"),
        ("exit early", "import sys\ndef add(a, b):\n    sys.exit(0)\n"),
        ("os._exit", "import os\ndef add(a, b):\n    os._exit(0)\n"),
        ("syntax error", "def add(a, b)\n    return a + b\n"),
        ("missing entry point", "def plus(a, b):\n    return a + b\n"),
        (
            "lying __eq__",
            "class Yes:\n    def __eq__(self, other):\n        return True\n"
            "    __hash__ = object.__hash__\n"
            "def add(a, b):\n    return Yes()\n",
        ),
        (
            "lying int subclass",
            "class Yes(int):\n    def __eq__(self, other):\n        return True\n"
            "    __hash__ = int.__hash__\n"
            "def add(a, b):\n    return Yes(0)\n",
        ),
        (
            "lying __repr__",
            "class R:\n    def __repr__(self):\n        return '3'\n"
            "def add(a, b):\n    return R()\n",
        ),
        (
            "monkeypatched builtins",
            "import builtins\nbuiltins.isinstance = lambda *a: True\n"
            "builtins.all = lambda *a: True\nbuiltins.type = lambda *a: int\n"
            "def add(a, b):\n    return None\n",
        ),
        (
            "harness tampering",
            "import sys\nh = sys.modules['__main__'] if '__main__' in sys.modules else None\n"
            "g = sys._getframe(1).f_globals\n"
            "g['_compare'] = lambda *a, **k: [True] * 3\n"
            "g['_evalplus_match'] = lambda *a, **k: True\n"
            "g['_plain'] = lambda *a: True\n"
            "def add(a, b):\n    return object()\n",
        ),
    ],
)
def test_hostile_solutions_fail(quick_executor: Executor, name: str, solution: str) -> None:
    passed, outcomes = _verdict(quick_executor, solution)
    assert not passed, name
    assert Outcome.INTERNAL not in outcomes, name


def test_a_forged_report_with_code_in_it_is_not_run(
    quick_executor: Executor, tmp_path: Path
) -> None:
    # The candidate writes its own report on the result pipe and exits: the "outputs" are an
    # expression that would make any comparator say yes if it were evaluated. It is refused.
    payload = "[__import__('builtins').setattr(__import__('builtins'), 'all', lambda x: True)]"
    forged = (
        "import os, marshal\n"
        f"text = '([0, 0, 0], ' + {payload!r} + ' * 3, [], [])'\n"
        "os.write(3, marshal.dumps((0, text, None, None), 4))\n"
        "os._exit(0)\n"
        "def add(a, b):\n    return 0\n"
    )
    r = run_tests(quick_executor, forged, ADD)
    assert not r.passed
    assert Outcome.INTERNAL not in r.outcomes


def test_a_forged_report_can_only_claim_plain_values(quick_executor: Executor) -> None:
    # Forging is no better than returning values: wrong values still fail.
    forged = (
        "import os, marshal\n"
        "os.write(3, marshal.dumps((0, '([0, 0, 0], [0, 0, 0], [], [])', None, None), 4))\n"
        "os._exit(0)\n"
    )
    assert not run_tests(quick_executor, forged, ADD).passed


def test_file_reads_do_not_reach_the_host(quick_executor: Executor, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("3")
    src = f"def add(a, b):\n    return int(open({str(secret)!r}).read()) if a == 1 else a + b\n"
    r = run_tests(quick_executor, src, ADD)
    assert r.outcomes[0] is not Outcome.PASSED
    writer = (
        f"def add(a, b):\n    open({str(tmp_path / 'x')!r}, 'w').write('1')\n    return a + b\n"
    )
    assert not run_tests(quick_executor, writer, ADD).passed
    assert not (tmp_path / "x").exists()
    assert secret.read_text() == "3"


def test_batches_keep_their_order(quick_executor: Executor) -> None:
    bad = "def add(a, b):\n    return a - b\n"
    results = run_tests_batch(quick_executor, [(GOOD, ADD), (bad, ADD), (GOOD, ADD)])
    assert [r.passed for r in results] == [True, False, True]


def test_float_tolerance(quick_executor: Executor) -> None:
    suite = TestSuite(
        mode="function",
        entry_point="half",
        inputs=json.dumps([[1], [3]]),
        expected="[0.5, 1.5]",
        comparison="evalplus",
        time_limits=(0.5, 0.5),
        budget_s=2.0,
        atol=1e-4,
    )
    assert run_tests(quick_executor, "def half(x):\n    return x / 2 + 1e-5\n", suite).passed
    assert not run_tests(quick_executor, "def half(x):\n    return x / 2 + 1e-3\n", suite).passed
    # A float that claims to be close is not a float.
    liar = (
        "class F(float):\n    def __sub__(self, o):\n        return 0.0\n"
        "    def __eq__(self, o):\n        return True\n    __hash__ = float.__hash__\n"
        "def half(x):\n    return F(99.0)\n"
    )
    assert not run_tests(quick_executor, liar, suite).passed
