"""Proposal validation in the real sandbox: integrity, determinism, plain outputs, reasons."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

pytest.importorskip("azr.executor", reason="the compiled executor is not built")

from azr.executor import Execution, Executor, Job, Limits, Status, values_equal
from azr.tasks import (
    SEED_TRIPLET,
    ProgramPolicy,
    Reason,
    SafetyPolicy,
    Triplet,
)
from azr.tasks.plan import run_plans
from azr.tasks.validation import (
    InductionValidation,
    Validation,
    ValidationConfig,
    validate_induction_plan,
    validate_plan,
)


def validate(
    ex: Any, program: str, inputs: str, config: ValidationConfig | None = None
) -> Validation:
    return run_plans([validate_plan(program, inputs, config or ValidationConfig())], ex)[0]


def validate_induction(
    ex: Any, program: str, inputs: Sequence[str], message: str = "hint", **kw: Any
) -> InductionValidation:
    return run_plans([validate_induction_plan(program, inputs, message, **kw)], ex)[0]


@pytest.fixture(scope="module")
def quick() -> Iterator[Executor]:
    """An executor with short limits, for programs that are meant to run out of them."""
    with Executor(workers=2, limits=Limits(wall_timeout_s=0.5, cpu_time_s=1.0)) as ex:
        yield ex


def test_seed_triplet_is_valid(executor: Executor) -> None:
    result = validate(executor, SEED_TRIPLET.program, SEED_TRIPLET.input)
    assert result.valid and result.triplet == SEED_TRIPLET


def test_valid_triplet_is_normalised_and_canonical(executor: Executor) -> None:
    program = "def rev(s):\n    # reverse\n    return s[::-1] if s else rev('x')\nprint(rev('a'))"
    result = validate(executor, program, ' "abc"  # hint')
    assert result.triplet == Triplet(
        "def f(s):\n    return s[::-1] if s else f('x')", "'abc'", "'cba'"
    )


def test_sets_are_compared_as_values_not_text(executor: Executor) -> None:
    program = "def f(n):\n    return {str(i) for i in range(n)}"
    # The repr of this set depends on the hash seed...
    a, b = executor.run_batch([Job(program, "20", hash_seed=0), Job(program, "20", hash_seed=77)])
    assert a.value != b.value and values_equal(a, b)
    # ...yet the program is deterministic, and validation says so.
    assert validate(executor, program, "20").valid


@pytest.mark.parametrize(
    ("program", "inputs", "reason"),
    [
        ("def f(n):\n    return list({str(i) for i in range(n)})", "20", Reason.NONDETERMINISTIC),
        ("def f(s):\n    return hash(s)", "'abc'", Reason.NONDETERMINISTIC),
        ("def f(x):\n    return 1 / x", "0", Reason.ERROR),
        ("def f(x):\n    return x", "y", Reason.ERROR),
        ("def f(x):\n    return lambda: x", "1", Reason.UNREPRESENTABLE),
        ("def f(x):\n    return (i for i in x)", "[1]", Reason.UNREPRESENTABLE),
        ("def f(x):\n    class A:\n        pass\n    return A()", "1", Reason.UNREPRESENTABLE),
        ("def f(x):\n    a = [x]\n    a.append(a)\n    return a", "1", Reason.UNREPRESENTABLE),
        ("def f(x):\n    return 'x' * 5000", "1", Reason.LIMIT),
        ("def f(x):\n    return x +", "1", Reason.SYNTAX),
        ("def f(x):\n    import os\n    return 1", "1", Reason.FORBIDDEN),
        ("x = 1", "1", Reason.INVALID_PROGRAM),
        ("def f(x):\n    return x", "0) or (5", Reason.SYNTAX),
        ("def f(x):\n    return x", "__import__('os')", Reason.FORBIDDEN),
        ("def f(x):\n    return x", "'" + "a" * 5000 + "'", Reason.TOO_LARGE),
        ("def f(x):\n    return x", "'\ud800'", Reason.FORMAT),
    ],
)
def test_rejections(executor: Executor, program: str, inputs: str, reason: Reason) -> None:
    result = validate(executor, program, inputs)
    assert result.reason is reason, result
    assert result.triplet is None and not result.valid


def test_special_floats_round_trip(executor: Executor) -> None:
    result = validate(executor, "def f(x):\n    return [x, -x, x - x]", "float('inf')")
    assert result.valid and result.triplet is not None
    assert result.triplet.output == "[inf, -inf, nan]"


def test_resource_limits(quick: Executor) -> None:
    assert validate(quick, "def f(x):\n    while True:\n        pass", "1").reason is Reason.TIMEOUT
    assert validate(quick, "def f(x):\n    return 'x' * 10**10", "1").reason is Reason.LIMIT


def test_random_seeds_differ_between_runs(executor: Executor) -> None:
    lenient = SafetyPolicy(forbidden_modules=SafetyPolicy().forbidden_modules - {"random"})
    config = ValidationConfig(program=ProgramPolicy(safety=lenient))
    program = "import random\ndef f(x):\n    return random.random()"
    assert validate(executor, program, "1", config).reason is Reason.NONDETERMINISTIC
    assert validate(executor, "import random\ndef f(x):\n    return x", "1", config).valid


def test_input_policy(executor: Executor) -> None:
    program = "def f(g, x):\n    return g(x)"
    assert validate(executor, program, "lambda v: v * 2, 4").valid
    literal = ValidationConfig(inputs="literal")
    assert validate(executor, program, "lambda v: v * 2, 4", literal).reason is Reason.NOT_LITERAL


def test_config_checks() -> None:
    with pytest.raises(ValueError):
        ValidationConfig(seeds=((1, 1), (1, 1)))
    with pytest.raises(ValueError):
        ValidationConfig(induction_min_inputs=1)
    with pytest.raises(ValueError):
        ValidationConfig(clock_step_s=0.0)
    assert ValidationConfig().needed_inputs(10) == 10  # by default every requested input
    assert ValidationConfig(induction_min_inputs=6).needed_inputs(10) == 6
    assert ValidationConfig(induction_min_inputs=6).needed_inputs(4) == 4


def test_induction_proposal(executor: Executor) -> None:
    # Some inputs fail; with a minimum of 4 the 4 good ones make a task.
    program = "def f(a, b=1):\n    return a * b"
    inputs = ["2", "3, 4", "2", "'ab', 2", "[1], 0", "x", "0) or (1", "None"]
    loose = ValidationConfig(induction_min_inputs=4)
    result = validate_induction(executor, program, inputs, " doubles ", n_requested=8, config=loose)
    assert result.valid and result.task is not None, result
    task = result.task
    pairs = [(p.input, p.output) for p in (*task.shown, *task.hidden)]
    assert sorted(pairs) == sorted(
        [("2", "2"), ("3, 4", "12"), ("'ab', 2", "'abab'"), ("[1], 0", "[]")]
    )
    assert [p.input for p in task.hidden] == ["2", "'ab', 2"]  # alternating, hidden first
    assert [p.input for p in task.shown] == ["3, 4", "[1], 0"]
    assert task.message == "doubles" and task.program == program
    assert result.dropped == 4  # a duplicate, an unknown name, an injection, a TypeError
    # By default every requested input must be usable: the same proposal is refused.
    strict = validate_induction(executor, program, inputs, "doubles", n_requested=8)
    assert strict.reason is Reason.TOO_FEW_INPUTS and "4 usable inputs, 8 needed" in strict.detail


@pytest.mark.parametrize("count", [2, 3, 5, 10])
def test_induction_keeps_at_least_half_of_the_pairs_hidden(executor: Executor, count: int) -> None:
    program = "def f(a):\n    return a + 1"
    inputs = [str(n) for n in range(count)]
    result = validate_induction(executor, program, inputs, "adds one", n_requested=count)
    assert result.valid and result.task is not None, result
    shown, hidden = result.task.shown, result.task.hidden
    assert len(shown) + len(hidden) == count and len(shown) >= 1
    assert len(hidden) == count - count // 2 >= len(shown)
    assert result.dropped == 0


def test_induction_counts_missing_and_repeated_inputs_as_dropped(executor: Executor) -> None:
    program = "def f(a):\n    return a + 1"
    short = validate_induction(executor, program, ["1", "2", "3"], "adds one", n_requested=4)
    assert short.reason is Reason.TOO_FEW_INPUTS and short.dropped == 1
    repeated = validate_induction(executor, program, ["1", "2", "1", "3"], "x", n_requested=4)
    assert repeated.reason is Reason.TOO_FEW_INPUTS and repeated.dropped == 1


def test_induction_rejections(executor: Executor) -> None:
    program = "def f(a):\n    return 10 // a"
    few = validate_induction(executor, program, ["0", "1", "x", "2"], n_requested=10)
    assert few.reason is Reason.TOO_FEW_INPUTS and "2 usable inputs, 10 needed" in few.detail
    assert validate_induction(executor, program, ["1", "2"], "  ").reason is Reason.FORMAT
    broken = validate_induction(executor, "def (", ["1", "2"])
    assert broken.reason is Reason.INVALID_TASK


class Broken:
    """An executor whose every job ends with ``INTERNAL``: a fault of the executor itself."""

    def __init__(self) -> None:
        self.calls = 0

    def run_batch(self, jobs: Sequence[Job]) -> list[Execution]:
        self.calls += 1
        return [Execution(Status.INTERNAL, None, "worker lost", "", 0.0, 0.0, 0) for _ in jobs]


def test_internal_status_is_never_a_rejection() -> None:
    assert validate(Broken(), SEED_TRIPLET.program, SEED_TRIPLET.input).reason is Reason.INTERNAL
    result = validate_induction(Broken(), SEED_TRIPLET.program, ["1", "2"])
    assert result.reason is Reason.INTERNAL and not result.reason.scored


def test_a_function_without_parameters_takes_the_empty_input(executor: Executor) -> None:
    result = validate(executor, "def f():\n    return 7 * 6", "")
    assert result.valid and result.triplet == Triplet("def f():\n    return 7 * 6", "", "42")
    defaults = validate(executor, "def f(a=2, *rest, k=3):\n    return a * k", "  ")
    assert defaults.valid and defaults.triplet is not None and defaults.triplet.output == "6"
    # A function that needs an argument: an empty input is still a format error.
    needs = validate(executor, "def f(a):\n    return a", "")
    assert needs.reason is Reason.FORMAT
