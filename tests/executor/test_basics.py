"""The public API on ordinary programs: values, errors, stdout, batches, equality, seeds."""

from __future__ import annotations

import ast

import pytest
import trio

from azr.errors import ConfigError, ExecutorClosed, InvalidJob, SourceTooLarge
from azr.executor import Execution, Executor, Job, Limits, Status, values_equal

ADD = "def f(a, b):\n    return a + b"


def test_value_error_and_stdout(ex: Executor) -> None:
    r = ex.run(ADD, "1, 2")
    assert (r.status, r.value, r.error) == (Status.OK, "3", None)
    r = ex.run("def f(x):\n    print('hi', x)\n    return [x]", "'a'")
    assert (r.status, r.value, r.stdout) == (Status.OK, "['a']", "hi a\n")
    r = ex.run("def f(x):\n    return 1 // x", "0")
    assert r.status is Status.ERROR
    assert r.error == "ZeroDivisionError: integer division or modulo by zero"
    r = ex.run("def f(:\n", "1")
    assert r.status is Status.ERROR and r.error is not None and r.error.startswith("SyntaxError")
    r = ex.run("def g(x):\n    return x", "1")
    assert r.status is Status.ERROR and r.error == "NameError: name 'f' is not defined"
    assert r.wall_ms > 0 and r.cpu_ms >= 0 and r.max_rss_kb > 0


def test_imports_and_keyword_arguments(ex: Executor) -> None:
    prog = "import re\nfrom collections import Counter\ndef f(s, *, k=1):\n"
    prog += "    return Counter(re.findall('a', s))['a'] * k"
    assert ex.run(prog, "'banana', k=2").value == "6"


def test_inputs_must_be_an_argument_list(ex: Executor) -> None:
    # An answer that computes the output itself instead of supplying arguments must not pass.
    for inputs in ["0) or (5", "0)(5", "1), (2", "0) if 0 else (5"]:
        r = ex.run("def f(x):\n    return x", inputs, expected="5")
        assert r.status is Status.ERROR, inputs
        assert r.matched is False


def test_a_program_cannot_replace_the_compiler_that_builds_the_call(ex: Executor) -> None:
    # The call is compiled after the program ran; a rebound builtin must not decide what runs.
    prog = (
        "import builtins\n"
        "_real = builtins.compile\n"
        "builtins.compile = lambda *a, **k: _real('5', '<forged>', 'eval')\n"
        "def f(x):\n    return x"
    )
    r = ex.run(prog, "1", expected="5")
    assert r.status is Status.OK and r.value == "1" and r.matched is False


def test_modules_left_out_of_the_zygote_still_import(ex: Executor) -> None:
    prog = "import ast, traceback\ndef f(s):\n    return type(ast.parse(s).body[0]).__name__"
    assert ex.run(prog, "'x = 1'").value == "'Assign'"


def test_batch_keeps_order(ex: Executor) -> None:
    jobs = [Job("def f(a):\n    return a * a", str(i)) for i in range(200)]
    rs = ex.run_batch(jobs)
    assert [r.value for r in rs] == [str(i * i) for i in range(200)]
    assert ex.run_batch([]) == []


def test_expected_and_value_equality(ex: Executor) -> None:
    r = ex.run("def f():\n    return [1, 2.0, {3: (True,)}]", "", expected="[1.0, 2, {3.0: (1,)}]")
    assert r.matched is True
    r = ex.run("def f():\n    return [1, 2]", "", expected="(1, 2)")
    assert r.matched is False
    sets = ex.run_batch(
        [
            Job("def f():\n    return {'a', 'b', 'c'}", hash_seed=1),
            Job("def f():\n    return {'c', 'b', 'a'}", hash_seed=2),
        ]
    )
    assert values_equal(sets[0], sets[1])
    assert ex.equal("float('nan')", "nan")
    assert ex.equal("{1: 'x', 2: 'y'}", "{2: 'y', 1: 'x'}")
    assert not ex.equal("'1'", "1")
    assert not ex.equal("[1]", "[1, 1]")
    # An expected text that does not evaluate leaves the match undecided, not false.
    assert ex.run(ADD, "1, 2", expected="undefined_name").matched is None


def test_eval_jobs(ex: Executor) -> None:
    r = ex.evaluate("sorted({3, 1, 2})")
    assert (r.status, r.value) == (Status.OK, "[1, 2, 3]")
    assert ex.evaluate("inf").value == "inf"
    assert ex.evaluate("-inf", expected="float('-inf')").matched is True


def test_non_plain_values_never_compare_equal(ex: Executor) -> None:
    a = ex.run("def f():\n    return object()")
    assert a.status is Status.OK and a.encoded is None
    assert not values_equal(a, a)


def test_seeds_make_runs_deterministic(ex: Executor) -> None:
    prog = "import random\ndef f():\n    return (hash('abc'), random.random())"
    same = ex.run_batch([Job(prog, hash_seed=7, random_seed=3) for _ in range(3)])
    assert len({r.value for r in same}) == 1
    other = ex.run_batch(
        [Job(prog, hash_seed=8, random_seed=3), Job(prog, hash_seed=7, random_seed=4)]
    )
    values = [ast.literal_eval(r.value or "") for r in [*same, *other]]
    hashes = {v[0] for v in values}
    randoms = {v[1] for v in values}
    assert len(hashes) == 2 and len(randoms) == 2


def test_environment_is_fixed(ex: Executor) -> None:
    prog = "import os, time\ndef f():\n    e = os.environ\n"
    prog += "    return (e.get('TZ'), time.tzname[0], e.get('LC_ALL'))"
    assert ex.run(prog).value == "('UTC', 'UTC', 'C.UTF-8')"


def test_invalid_arguments_raise_typed_errors(ex: Executor) -> None:
    with pytest.raises(InvalidJob, match="empty"):
        ex.run("   ", "")
    with pytest.raises(InvalidJob, match="no inputs"):
        ex.run_batch([Job("1", "2", kind="eval")])
    with pytest.raises(SourceTooLarge, match="program"):
        ex.run("x = 1\n" * 300_000)
    with pytest.raises(SourceTooLarge, match="expected"):
        ex.run(ADD, "1, 2", expected="1" * (2 << 20))
    with pytest.raises(TypeError):
        ex.run_batch(["def f(): return 1"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        ex.run(123)  # type: ignore[arg-type]
    with pytest.raises(InvalidJob, match="Unicode"):
        ex.run("def f():\n    return '\udc80'")
    with pytest.raises(OverflowError):
        ex.run(ADD, "1, 2", hash_seed=-1)
    with pytest.raises(ConfigError):
        Executor(workers=1, limits=Limits(wall_timeout_s=0))
    with pytest.raises(ConfigError):
        Executor(workers=0)
    with pytest.raises(TypeError):
        Executor(limits={"wall_timeout_s": 1})  # type: ignore[arg-type]


def test_closed_executor_raises() -> None:
    e = Executor(workers=1)
    assert e.run(ADD, "1, 1").value == "2"
    e.close()
    e.close()  # idempotent
    assert e.closed
    with pytest.raises(ExecutorClosed):
        e.run(ADD, "1, 1")


def test_isolation_report(ex: Executor) -> None:
    info = ex.isolation()
    assert info["seccomp"] is True
    assert info["rlimits"] is True
    assert isinstance(info["landlock_abi"], int)
    assert str(info["python"]).startswith("3.")


def test_async_forms_under_trio(ex: Executor) -> None:
    async def main() -> tuple[Execution, list[Execution], list[Execution]]:
        with trio.fail_after(30):
            one = await ex.run_async(ADD, "2, 3")
            many = await ex.run_batch_async([Job(ADD, f"{i}, 1") for i in range(50)])
            # Many concurrent callers share the pool without blocking the loop.
            results: list[Execution] = []

            async def call(i: int) -> None:
                results.append(await ex.run_async(ADD, f"{i}, 0"))

            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while len(results) < 40:
                    ticks += 1
                    await trio.sleep(0)

            async with trio.open_nursery() as n:
                n.start_soon(ticker)
                for i in range(40):
                    n.start_soon(call, i)
            assert ticks > 0
            return one, many, results

    one, many, results = trio.run(main)
    assert one.value == "5"
    assert [r.value for r in many] == [str(i + 1) for i in range(50)]
    assert sorted(int(r.value or "0") for r in results) == list(range(40))


def test_async_cancellation_skips_queued_jobs() -> None:
    with Executor(workers=1, limits=Limits(wall_timeout_s=0.5, cpu_time_s=1)) as e:

        async def main() -> None:
            with trio.move_on_after(0.2):
                await e.run_batch_async([Job("def f():\n    while True: pass")] * 20)

        trio.run(main)
        # Had the 19 queued loops run, this would wait ~10 s behind them; it finishes at once
        # after the one that had started.
        assert e.run(ADD, "1, 2").value == "3"
        assert e.statistics()["executions"] < 20
