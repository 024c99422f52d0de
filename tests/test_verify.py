"""The public verifier, end to end in the real sandbox: API, reasons, rewards, adversaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

pytest.importorskip("azr.executor", reason="the compiled executor is not built")

import trio

from azr.executor import Execution, Executor, Job, Limits, Status
from azr.rewards import RewardConfig
from azr.tasks import (
    SEED_INDUCTION_TASK,
    SEED_TRIPLET,
    AbductionTask,
    DeductionTask,
    InductionTask,
    IOPair,
    ProgramPolicy,
    ProposeRequest,
    Reason,
    SafetyPolicy,
    SolveTask,
    TaskType,
    format_blocks,
    format_response,
)
from azr.tasks.checking import CheckConfig
from azr.verify import InductionValidation, Validation, Verdict, Verifier

ROOT = Path(__file__).resolve().parents[1]
DOUBLE = "def f(x):\n    return x * 2"
IDENTITY = SEED_TRIPLET.program


@pytest.fixture(scope="module")
def executor() -> Iterator[Executor]:
    with Executor(limits=Limits(wall_timeout_s=1.0, cpu_time_s=1.0)) as ex:
        yield ex


@pytest.fixture(scope="module")
def v(executor: Executor) -> Verifier:
    return Verifier(executor=executor)


def answer(text: str) -> str:
    return format_response(text, think="working")


def test_readme_example() -> None:
    with Verifier() as v:
        assert v.check_deduction("def f(x):\n    return x * 2", "21", "42").correct
        assert v.check_abduction("def f(x):\n    return x * 2", "42", "21").correct
        assert v.check_induction("def f(x):\n    return 2 * x", [("1", "2"), ("5", "10")]).correct
        task = DeductionTask(program="def f(s):\n    return s[::-1]", input="'ab'", output="'ba'")
        verdict = v.score_response(task, "<think>reverse it</think><answer>'ba'</answer>")
        assert verdict == Verdict(correct=True, reward=1.0, reason=Reason.OK)
    assert v.executor.closed  # an owned executor is closed with the verifier


def test_borrowed_executor_stays_open(executor: Executor) -> None:
    with Verifier(executor=executor) as v:
        assert v.executor is executor
    assert not executor.closed
    with pytest.raises(ValueError):
        Verifier(executor=executor, workers=2)


def test_deduction(v: Verifier) -> None:
    assert v.check_deduction(DOUBLE, "21", "42").reason is Reason.OK
    assert v.check_deduction(DOUBLE, "21", " 42.0 ").reason is Reason.OK  # Python == on values
    assert v.check_deduction(DOUBLE, "21", "42", output="42").reason is Reason.OK
    assert v.check_deduction(DOUBLE, "21", "43").reason is Reason.WRONG
    assert v.check_deduction(DOUBLE, "'ab'", "'abab'").correct
    assert v.check_deduction(DOUBLE, "21", "40 + 2").reason is Reason.NOT_LITERAL
    # Transcribing the program into a lambda would make the sandbox compute the answer.
    hack = "(lambda x: x * 2)(21)"
    assert v.check_deduction(DOUBLE, "21", hack).reason is Reason.NOT_LITERAL
    lenient = Verifier(executor=v.executor, checks=CheckConfig(deduction_answers="expression"))
    assert lenient.check_deduction(DOUBLE, "21", hack).correct  # what the default prevents
    assert v.check_deduction(DOUBLE, "21", "42 +").reason is Reason.SYNTAX
    assert v.check_deduction(DOUBLE, "21", "{[1]: 2}").reason is Reason.ERROR  # unhashable
    assert v.check_deduction(DOUBLE, "21", "").reason is Reason.FORMAT
    sets = "def f(n):\n    return {str(i) for i in range(n)}"
    shuffled = "{" + ", ".join(repr(str(i)) for i in reversed(range(12))) + "}"
    assert v.check_deduction(sets, "12", shuffled).correct


def test_deduction_with_a_broken_task_is_not_scored(v: Verifier) -> None:
    verdict = v.check_deduction("def f(x):\n    return 1 / x", "0", "1")
    assert verdict.reason is Reason.INVALID_TASK and not verdict.scored and verdict.reward == 0.0
    broken_gold = v.check_deduction(DOUBLE, "1", "2", output="<object at 0x1>")
    assert broken_gold.reason is Reason.INVALID_TASK


def test_abduction(v: Verifier) -> None:
    assert v.check_abduction(DOUBLE, "42", "21").reason is Reason.OK
    assert v.check_abduction(DOUBLE, "42", "x=21").reason is Reason.OK
    # Answers are literal values: an expression is refused even when it evaluates right.
    assert v.check_abduction(DOUBLE, "42", "int('21')").reason is Reason.NOT_LITERAL
    assert v.check_abduction(DOUBLE, "42", "20").reason is Reason.WRONG
    assert v.check_abduction(DOUBLE, "42", "21, 22").reason is Reason.ERROR
    assert v.check_abduction(DOUBLE, "42", "0) or (42").reason is Reason.SYNTAX
    assert v.check_abduction(DOUBLE, "<lambda>", "21").reason is Reason.INVALID_TASK


def test_induction(v: Verifier) -> None:
    pairs = [("1", "2"), ("'a'", "'aa'")]
    assert v.check_induction("def double(v):\n    return v + v", pairs).reason is Reason.OK
    assert v.check_induction("```python\ndef f(v):\n    return v * 2\n```", pairs).reason is (
        Reason.SYNTAX  # the verifier takes a bare program; score_response unfences
    )
    wrong = v.check_induction("def f(v):\n    return v * 3", pairs)
    assert wrong.reason is Reason.WRONG and "pair 1 of 2" in wrong.detail
    assert v.check_induction("def f(v):\n    return v / 0", pairs).reason is Reason.ERROR
    assert v.check_induction("x = 1", pairs).reason is Reason.INVALID_PROGRAM
    assert v.check_induction("def f(v):\n    return v", []).reason is Reason.INVALID_TASK
    iopairs = [IOPair("1", "2")]
    assert v.check_induction(DOUBLE, iopairs).correct


def test_score_response_and_rewards(v: Verifier) -> None:
    ded = DeductionTask.from_triplet(SEED_TRIPLET)
    abd = AbductionTask.from_triplet(SEED_TRIPLET)
    ind = SEED_INDUCTION_TASK
    cases: list[tuple[SolveTask, str, Reason, float]] = [
        (ded, answer("'Hello world'"), Reason.OK, 1.0),
        (ded, answer("```python\n'Hello world'\n```"), Reason.OK, 1.0),
        (ded, answer("'Hello'"), Reason.WRONG, -0.5),
        (ded, "<answer>'Hello world'</answer>", Reason.FORMAT, -1.0),  # no reasoning block
        (ded, answer("'Hello world"), Reason.SYNTAX, -1.0),
        (abd, answer("'Hello world'"), Reason.OK, 1.0),
        (abd, answer("a='Hello world'"), Reason.OK, 1.0),
        (abd, answer("'Hello'"), Reason.WRONG, -0.5),
        (ind, answer("```python\ndef g(x):\n    return x\n```"), Reason.OK, 1.0),
        (ind, answer("def f(x):\n    return 42"), Reason.WRONG, -0.5),
        (ind, answer("def f(x):\n    while True:\n        pass"), Reason.TIMEOUT, -0.5),
        (ind, "no tags at all", Reason.FORMAT, -1.0),
    ]
    verdicts = v.score_response_batch([c[0] for c in cases], [c[1] for c in cases])
    for (_, text, reason, reward), verdict in zip(cases, verdicts, strict=True):
        assert (verdict.reason, verdict.reward) == (reason, reward), (text, verdict)
        assert verdict.correct is (reason is Reason.OK)


def test_binary_rewards(executor: Executor) -> None:
    v = Verifier(executor=executor, rewards=RewardConfig(scheme="binary"))
    task = DeductionTask.from_triplet(SEED_TRIPLET)
    rewards = [v.score_response(task, r).reward for r in (answer("'Hello world'"), answer("1"), "")]
    assert rewards == [1.0, 0.0, 0.0]


def test_tasks_decode_from_rows(v: Verifier) -> None:
    # Dataset rows (e.g. JSON lines) decode straight into tasks through the ``type`` tag.
    import msgspec

    row = {"type": "abduction", "program": DOUBLE, "input": "2", "output": "4"}
    task = msgspec.convert(row, SolveTask)
    assert task == AbductionTask(DOUBLE, "2", "4")
    assert v.score_response(task, answer("2")).correct
    assert msgspec.json.decode(msgspec.json.encode(SEED_INDUCTION_TASK), type=SolveTask) == (
        SEED_INDUCTION_TASK
    )


# -- adversarial answers ------------------------------------------------------------------

EQ_OBJECT = "type('A', (), {'__eq__': lambda s, o: True, '__hash__': lambda s: 0})()"
PERMISSIVE = SafetyPolicy(
    forbidden_modules=frozenset(), forbidden_names=frozenset(), forbidden_attributes=frozenset()
)


def _adversaries(marker: Path) -> list[str]:
    return [
        EQ_OBJECT,
        "exit(0)",
        "__import__('os')._exit(0)",
        f"__import__('os').system('touch {marker}')",
        f"open({str(marker)!r}, 'w').write('x')",
        "__import__('os').kill(__import__('os').getppid(), 9)",
        "'" + "x" * 10_000_000 + "'",
        "'\ud800'",
        b"'\xff\xfe'".decode("utf-8", "surrogateescape"),
        "(_ for _ in ()).throw(SystemExit)",
    ]


@pytest.mark.parametrize("permissive", [False, True])
def test_adversarial_answers_never_pass(
    executor: Executor, tmp_path: Path, permissive: bool
) -> None:
    # With the default policy most of these are refused before they run; with every static
    # check switched off they run, and the sandbox alone must keep them from passing or harming.
    marker = tmp_path / "pwned"
    checks = (
        CheckConfig(deduction_answers="expression", program=ProgramPolicy(safety=PERMISSIVE))
        if permissive
        else CheckConfig()
    )
    v = Verifier(executor=executor, checks=checks)
    bad = _adversaries(marker)
    gold = SEED_TRIPLET
    verdicts: list[Verdict] = []
    verdicts += v.check_deduction_batch([IDENTITY] * len(bad), [gold.input] * len(bad), bad)
    verdicts += v.check_deduction_batch(
        [IDENTITY] * len(bad), [gold.input] * len(bad), bad, outputs=[gold.output] * len(bad)
    )
    verdicts += v.check_abduction_batch([IDENTITY] * len(bad), [gold.output] * len(bad), bad)
    programs = [f"def f(a):\n    return {b}" for b in bad]
    pairs = [[(gold.input, gold.output), ("1", "1")]] * len(bad)
    verdicts += v.check_induction_batch(programs, pairs)
    task = DeductionTask.from_triplet(gold)
    verdicts += v.score_response_batch([task] * len(bad), [answer(b) for b in bad])

    for verdict in verdicts:
        assert not verdict.correct and verdict.reward < 0, verdict
        assert verdict.reason not in (Reason.OK, Reason.INTERNAL, Reason.INVALID_TASK), verdict
    assert not marker.exists()
    # The host process and the executor are unharmed.
    assert v.check_deduction(IDENTITY, gold.input, gold.output).correct
    assert not executor.closed


def test_huge_response_is_a_format_error(v: Verifier) -> None:
    task = DeductionTask.from_triplet(SEED_TRIPLET)
    verdict = v.score_response(task, answer("1" * 10_000_000))
    assert verdict.reason is Reason.TOO_LARGE and verdict.reward == -1.0


# -- executor faults and batching -----------------------------------------------------------


class Broken:
    """An executor whose every job ends with ``INTERNAL``."""

    def run_batch(self, jobs: Sequence[Job]) -> list[Execution]:
        return [Execution(Status.INTERNAL, None, "worker lost", "", 0.0, 0.0, 0) for _ in jobs]


class Counting:
    """The real executor, counting the jobs it is sent."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.jobs = 0
        self.batches = 0

    def run_batch(self, jobs: Sequence[Job]) -> list[Execution]:
        self.jobs += len(jobs)
        self.batches += 1
        return self.inner.run_batch(jobs)


def test_internal_is_never_scored_as_wrong() -> None:
    v = Verifier(executor=Broken())  # type: ignore[arg-type]
    verdicts = [
        v.check_deduction(DOUBLE, "1", "2"),
        v.check_deduction(DOUBLE, "1", "2", output="2"),
        v.check_abduction(DOUBLE, "2", "1"),
        v.check_induction(DOUBLE, [("1", "2")]),
        v.score_response(DeductionTask.from_triplet(SEED_TRIPLET), answer("1")),
    ]
    for verdict in verdicts:
        assert verdict == Verdict(False, 0.0, Reason.INTERNAL, verdict.detail)
        assert not verdict.scored
    assert v.validate(DOUBLE, "1").reason is Reason.INTERNAL


def test_identical_jobs_run_once(executor: Executor) -> None:
    counting = Counting(executor)
    v = Verifier(executor=counting)  # type: ignore[arg-type]
    task = DeductionTask.from_triplet(SEED_TRIPLET)
    responses = [answer("'Hello world'")] * 50 + [answer("'nope'")] * 50 + ["bad"] * 10
    verdicts = v.score_response_batch([task] * len(responses), responses)
    assert [x.reason for x in verdicts] == (
        [Reason.OK] * 50 + [Reason.WRONG] * 50 + [Reason.FORMAT] * 10
    )
    assert (counting.jobs, counting.batches) == (2, 1)
    # Validation of many proposals: two rounds in all, however many proposals.
    counting.jobs = counting.batches = 0
    results = v.validate_batch([DOUBLE, IDENTITY, DOUBLE], ["1", "2", "3"])
    assert all(r.valid for r in results) and counting.batches == 2


def test_batch_columns_must_agree(v: Verifier) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        v.check_deduction_batch([DOUBLE], ["1", "2"], ["2"])
    assert v.check_abduction_batch([], [], []) == []


# -- proposals ------------------------------------------------------------------------------


def test_score_proposal(v: Verifier) -> None:
    text = answer(format_blocks([("python", "def g(s):\n    return s[::-1]"), ("input", "'abc'")]))
    result = v.score_proposal(ProposeRequest(TaskType.DEDUCTION), text)
    assert isinstance(result, Validation) and result.valid and result.triplet is not None
    assert result.triplet.output == "'cba'" and result.triplet.program.startswith("def f(s)")
    bad = v.score_proposal(ProposeRequest(TaskType.ABDUCTION), answer("def f(): pass"))
    assert isinstance(bad, Validation) and bad.reason is Reason.FORMAT

    blocks = [("input", str(n)) for n in range(6)] + [("message", "returns its input")]
    request = ProposeRequest(TaskType.INDUCTION, program=IDENTITY, n_inputs=6)
    ind = v.score_proposal(request, answer(format_blocks(blocks)))
    assert isinstance(ind, InductionValidation) and ind.valid and ind.task is not None
    assert len(ind.task.shown) == len(ind.task.hidden) == 3
    missing = v.score_proposal(request, answer(format_blocks(blocks[:-1])))
    assert isinstance(missing, InductionValidation) and missing.reason is Reason.FORMAT


def test_validate_forms(v: Verifier) -> None:
    assert v.validate(DOUBLE, "4").triplet is not None
    result = v.validate_induction(DOUBLE, ["1", "2", "3", "4"], "doubles")
    assert isinstance(result.task, InductionTask)


# -- async ------------------------------------------------------------------------------------


def test_async_forms(v: Verifier) -> None:
    task = DeductionTask.from_triplet(SEED_TRIPLET)

    async def main() -> list[object]:
        with trio.fail_after(30):
            return [
                await v.check_deduction_async(DOUBLE, "21", "42"),
                await v.check_deduction_async(DOUBLE, "21", "42", output="42"),
                await v.check_abduction_async(DOUBLE, "42", "21"),
                await v.check_induction_async(DOUBLE, [("1", "2")]),
                await v.score_response_async(task, answer("'Hello world'")),
                await v.validate_async(DOUBLE, "4"),
                await v.validate_induction_async(DOUBLE, ["1", "2"], "doubles"),
                await v.score_proposal_async(
                    ProposeRequest(TaskType.DEDUCTION),
                    answer(format_blocks([("python", DOUBLE), ("input", "4")])),
                ),
                await v.check_deduction_batch_async([DOUBLE], ["1"], ["3"]),
            ]

    results = trio.run(main)
    assert all(getattr(r, "reason", None) is Reason.OK for r in results[:-1]), results
    assert results[-1] == [Verdict(False, -0.5, Reason.WRONG, "values differ")]


# -- packaging ------------------------------------------------------------------------------


def test_verify_imports_nothing_from_training() -> None:
    code = (
        "import sys, json, azr.verify\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('azr', 'torch', 'trio', 'transformers'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    loaded = set(json.loads(out.stdout))
    allowed = {
        "azr",
        "azr.executor",
        "azr._executor",
        "azr.errors",
        "azr.rewards",
        "azr.intrinsic",
        "azr.verify",
    }
    assert {m for m in loaded if not m.startswith("azr.tasks")} <= allowed, loaded


def test_the_empty_input_answers_abduction_for_a_function_without_parameters(v: Verifier) -> None:
    program = "def f():\n    return [1, 2]"
    task = AbductionTask(program=program, input="", output="[1, 2]")
    for response in (
        "<think>no args</think><answer></answer>",
        "</think><answer>\n```\n```\n</answer>",
    ):
        verdict = v.score_response(task, response)
        assert verdict.reason is Reason.OK and verdict.reward == 1.0, verdict
    assert v.check_abduction(program, "[1, 2]", "").reason is Reason.OK
    assert v.check_abduction(program, "[1, 3]", "").reason is Reason.WRONG
    # With a parameter, an empty answer is still a format error, never a wrong answer.
    needs = AbductionTask(program="def f(a):\n    return a", input="1", output="1")
    assert v.score_response(needs, "</think><answer> </answer>").reason is Reason.FORMAT
    # A proposal may leave the input block empty for such a function.
    request = ProposeRequest(TaskType.DEDUCTION)
    blocks = format_blocks([("python", program), ("input", "")])
    proposal = v.score_proposal(request, format_response(blocks))
    assert proposal.reason is Reason.OK and isinstance(proposal, Validation)
    assert proposal.triplet is not None and proposal.triplet.input == ""
