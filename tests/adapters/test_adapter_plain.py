"""Plain Python: the shared verifier and the scoring helpers."""

from __future__ import annotations

import os

import pytest

from azr.adapters import InvalidTask, decode_task, encode_task
from azr.adapters._tasks import completion_text, response_from_query
from azr.adapters.plain import (
    configure_shared_verifier,
    rewards,
    score,
    score_batch,
    shared_verifier,
)
from azr.tasks import AbductionTask, DeductionTask, InductionTask, IOPair

TASK = DeductionTask(program="def f(s):\n    return s[::-1]", input="'ab'", output="'ba'")
RIGHT = "<think>reverse</think><answer>'ba'</answer>"


def test_score_helpers_share_one_verifier() -> None:
    v = score(TASK, RIGHT)
    assert (v.correct, v.reward, v.reason.value) == (True, 1.0, "ok")
    verdicts = score_batch([TASK, TASK], [RIGHT, "nothing"])
    assert [v.reason.value for v in verdicts] == ["ok", "format"]
    broken = DeductionTask(program="def f(x):\n    return x", input="1", output="nope(")
    assert rewards([TASK, broken], [RIGHT, "<think>x</think><answer>1</answer>"]) == [1.0, None]
    assert shared_verifier() is shared_verifier()
    with pytest.raises(RuntimeError, match="already running"):
        configure_shared_verifier(workers=1)


def test_forked_child_gets_its_own_verifier() -> None:
    parent = shared_verifier()
    pid = os.fork()
    if pid == 0:  # the child: exit status says whether it scored with a verifier of its own
        ok = False
        try:
            ok = shared_verifier() is not parent and score(TASK, RIGHT).correct
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert score(TASK, RIGHT).correct


def test_task_text_round_trip_and_errors() -> None:
    tasks = [
        TASK,
        AbductionTask(program="def f(x):\n    return x", input="1", output="1"),
        InductionTask(program="p", message="m", shown=(IOPair("1", "2"),), hidden=()),
    ]
    for task in tasks:
        text = encode_task(task)
        assert decode_task(text) == task
        assert decode_task(text.encode()) == task
        assert decode_task(task) is task
    assert decode_task({"type": "deduction", "program": "p", "input": "i", "output": "o"})
    for bad in ["", "{}", '{"type": "proof"}', 3, None, b"\xff"]:
        with pytest.raises(InvalidTask):
            decode_task(bad)


def test_completion_and_query_text() -> None:
    assert completion_text("x") == "x"
    chat = [
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": "ignored"},
        {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
    ]
    assert completion_text(chat) == "ab"
    assert response_from_query("PROMPT answer", "PROMPT ") == "answer"
    assert response_from_query(" PROMPT answer", "PROMPT ") == "answer"
    assert response_from_query("answer", "PROMPT") is None
    assert response_from_query("answer", None) is None
