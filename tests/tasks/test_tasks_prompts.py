"""Prompt builders: all six (type, role) pairs, in the format the parsers read."""

from __future__ import annotations

import pytest

from azr.tasks import (
    SEED_INDUCTION_TASK,
    SEED_TRIPLET,
    AbductionTask,
    DeductionTask,
    ProposeRequest,
    Role,
    TaskType,
    Triplet,
    build_prompt,
)

REFS = tuple(
    Triplet(f"def f(a):\n    return a + {n}", str(n), str(2 * n)) for n in range(6)
)  # fmt: skip


@pytest.mark.parametrize("task_type", [TaskType.DEDUCTION, TaskType.ABDUCTION])
def test_proposer_prompts_show_references(task_type: TaskType) -> None:
    prompt = build_prompt(Role.PROPOSE, ProposeRequest(task_type, REFS))
    for ref in REFS:
        assert f"```python\n{ref.program}\n```" in prompt
        assert f"```input\n{ref.input}\n```" in prompt
        assert f"```output\n{ref.output}\n```" in prompt
    assert prompt.count("Puzzle ") == len(REFS)
    assert "<think>" in prompt and "<answer>" in prompt
    assert "```python" in prompt and "```input" in prompt


def test_proposer_prompts_differ_by_type_and_handle_no_references() -> None:
    deduction = build_prompt(Role.PROPOSE, ProposeRequest(TaskType.DEDUCTION))
    abduction = build_prompt(Role.PROPOSE, ProposeRequest(TaskType.ABDUCTION))
    assert deduction != abduction
    assert "no earlier puzzles" in deduction


def test_induction_proposer_prompt() -> None:
    request = ProposeRequest(TaskType.INDUCTION, program=SEED_TRIPLET.program, n_inputs=7)
    prompt = build_prompt(Role.PROPOSE, request)
    assert SEED_TRIPLET.program in prompt
    assert "7 different inputs" in prompt and "```message" in prompt
    with pytest.raises(ValueError, match="needs a program"):
        build_prompt(Role.PROPOSE, ProposeRequest(TaskType.INDUCTION))


def test_solver_prompts() -> None:
    t = SEED_TRIPLET
    deduction = build_prompt(Role.SOLVE, DeductionTask.from_triplet(t))
    assert t.program in deduction and t.input in deduction
    abduction = build_prompt(Role.SOLVE, AbductionTask.from_triplet(t))
    assert t.program in abduction and f"```output\n{t.output}\n```" in abduction
    induction = build_prompt(Role.SOLVE, SEED_INDUCTION_TASK)
    assert SEED_INDUCTION_TASK.message in induction
    for pair in SEED_INDUCTION_TASK.shown:
        assert f"```input\n{pair.input}\n```" in induction
    for pair in SEED_INDUCTION_TASK.hidden:  # hidden pairs must stay hidden
        assert f"```input\n{pair.input}\n```" not in induction
    assert SEED_INDUCTION_TASK.program not in induction
    for prompt in (deduction, abduction, induction):
        assert "<think>" in prompt and "<answer>" in prompt


def test_role_and_task_must_agree() -> None:
    with pytest.raises(TypeError):
        build_prompt(Role.SOLVE, ProposeRequest(TaskType.DEDUCTION))
    with pytest.raises(TypeError):
        build_prompt(Role.PROPOSE, DeductionTask.from_triplet(SEED_TRIPLET))
