"""Response parsing: never raises on model text; well-formed blocks round-trip."""

from __future__ import annotations

import string
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azr.tasks import (
    InductionProposal,
    ParseConfig,
    Proposal,
    Reason,
    Rejected,
    TaskType,
    extract_answer,
    fenced_blocks,
    format_blocks,
    format_response,
    parse_proposal,
    parse_solution,
)

# Fragments that steer generated text into the parser's interesting branches.
_FRAGMENTS = st.sampled_from(
    ["<think>", "</think>", "<answer>", "</answer>", "```", "```python", "```input",
     "```message", "\n", " ", "def f(a):\n    return a", "'x'", "\ud800", "\x00", "\r\n"]
)  # fmt: skip
_TEXT = st.one_of(st.text(), st.lists(st.one_of(_FRAGMENTS, st.text(max_size=5))).map("".join))


@settings(max_examples=300, deadline=None)
@given(_TEXT, st.sampled_from(list(TaskType)), st.booleans())
def test_parsers_never_raise(text: str, task_type: TaskType, require_think: bool) -> None:
    config = ParseConfig(require_think=require_think)
    for result in (
        extract_answer(text, config),
        parse_solution(text, task_type, config),
        parse_proposal(text, task_type, config=config),
    ):
        assert isinstance(result, str | Proposal | InductionProposal | Rejected)
        if isinstance(result, Rejected):
            assert result.reason.outcome.value == "format"
    fenced_blocks(text)


# Block contents: any text without a line that would close the fence.
_CONTENT = st.text(alphabet=string.printable.replace("\x0b", "").replace("\x0c", "")).filter(
    lambda s: all(line.strip() != "```" and not line.strip().startswith("```")
                  for line in s.split("\n"))
)  # fmt: skip
_TAG = st.sampled_from(["python", "input", "output", "message", ""])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_TAG, _CONTENT), max_size=6))
def test_fenced_blocks_round_trip(blocks: list[tuple[str, str]]) -> None:
    parsed = fenced_blocks(format_blocks(blocks))
    assert [(b.tag, b.content) for b in parsed] == blocks


_CODE_LINE = st.text(alphabet=string.ascii_letters + string.digits + " ()[]'=+-:,.", max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_CODE_LINE, min_size=1, max_size=5).map("\n".join).filter(lambda s: s.strip()),
    _CODE_LINE.filter(lambda s: s.strip()),
    st.text(alphabet=string.ascii_letters + " \n", max_size=40),
)
def test_proposal_round_trip(program: str, inputs: str, think: str) -> None:
    answer = format_blocks([("python", program), ("input", inputs)])
    parsed = parse_proposal(format_response(answer, think=think), TaskType.DEDUCTION)
    assert parsed == Proposal(textwrap.dedent(program).strip("\n"), inputs.strip())


@settings(max_examples=100, deadline=None)
@given(
    st.lists(_CODE_LINE.filter(lambda s: s.strip()), min_size=1, max_size=12),
    _CODE_LINE.filter(lambda s: s.strip()),
    st.integers(1, 12),
)
def test_induction_proposal_round_trip(inputs: list[str], message: str, n: int) -> None:
    blocks = [("input", i) for i in inputs] + [("message", message)]
    parsed = parse_proposal(format_response(format_blocks(blocks)), TaskType.INDUCTION, n_inputs=n)
    assert parsed == InductionProposal(tuple(i.strip() for i in inputs)[:n], message.strip())


@settings(max_examples=200, deadline=None)
@given(_CODE_LINE.filter(lambda s: s.strip() and "`" not in s), st.sampled_from(list(TaskType)))
def test_solution_round_trip(answer: str, task_type: TaskType) -> None:
    bare = parse_solution(format_response(answer), task_type)
    fenced = parse_solution(format_response(format_blocks([("python", answer)])), task_type)
    assert bare == answer.strip()
    assert isinstance(fenced, str) and fenced.strip() == answer.strip()


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("<answer>1</answer>", "no </think>"),
        ("<think>x</think>", "no <answer>"),
        ("<think>x</think><answer>1", "not closed"),
        ("<think>x</think><answer>  \n </answer>", "empty"),
        ("<think>x</think><answer>1</answer><answer>2</answer>", "more than one"),
        ("<think>x</think><answer>1<answer>2</answer>", "nested"),
        ("<think>x</think><answer>'\ud800'</answer>", "UTF-8"),
    ],
)
def test_extract_answer_failures(text: str, detail: str) -> None:
    result = extract_answer(text)
    assert isinstance(result, Rejected)
    assert result.reason is Reason.FORMAT
    assert detail in result.detail


def test_extract_answer_accepts_variants() -> None:
    # The opening <think> may live in the prompt; an <answer> inside the reasoning is ignored.
    assert extract_answer("reasoning</think>\n<answer> 42 </answer><|im_end|>") == " 42 "
    assert extract_answer("<think>try <answer>1</answer></think><answer>2</answer>") == "2"
    assert extract_answer("<answer>3</answer>", ParseConfig(require_think=False)) == "3"


def test_too_long_response_is_rejected_before_scanning() -> None:
    result = extract_answer("x" * 11, ParseConfig(max_response_chars=10))
    assert isinstance(result, Rejected) and result.reason is Reason.TOO_LARGE
    assert result.reason.outcome.value == "format"


def test_solution_unfencing() -> None:
    wrap = format_response
    assert parse_solution(wrap("```output\n[1, 2]\n```"), TaskType.DEDUCTION) == "[1, 2]"
    assert parse_solution(wrap("`'abc'`"), TaskType.ABDUCTION) == "'abc'"
    two = wrap("```\n1\n```\n```\n2\n```")
    assert isinstance(parse_solution(two, TaskType.DEDUCTION), Rejected)
    program = "def f(x):\n    return x"
    assert parse_solution(wrap(program), TaskType.INDUCTION) == program
    mixed = wrap(f"Here:\n```python\n{program}\n```\n```output\n3\n```")
    assert parse_solution(mixed, TaskType.INDUCTION) == program
    ambiguous = wrap(f"```python\n{program}\n```\n```python\n{program}\n```")
    assert isinstance(parse_solution(ambiguous, TaskType.INDUCTION), Rejected)


@pytest.mark.parametrize(
    ("answer", "task_type", "detail"),
    [
        ("```input\n1\n```", TaskType.DEDUCTION, "python block"),
        ("```python\ndef f(a): return a\n```", TaskType.ABDUCTION, "input block"),
        ("```python\nx\n```\n```python\ny\n```\n```input\n1\n```", TaskType.DEDUCTION, "found 2"),
        ("```python\ndef f(a): return a\n```\n```input\n1\n```\n```input\n2\n```",
         TaskType.DEDUCTION, "found 2"),
        ("```input\n1\n```", TaskType.INDUCTION, "message"),
        ("```message\nhint\n```", TaskType.INDUCTION, "no ```input"),
        ("```input\n1\n```\n```message\n\n```", TaskType.INDUCTION, "empty message"),
        ("```python\ndef f(a):\n    return a\n", TaskType.DEDUCTION, "python block"),
    ],
)  # fmt: skip
def test_proposal_failures(answer: str, task_type: TaskType, detail: str) -> None:
    result = parse_proposal(format_response(answer), task_type)
    assert isinstance(result, Rejected), result
    assert result.reason is Reason.FORMAT
    assert detail in result.detail


def test_proposal_ignores_other_blocks_and_indented_fences() -> None:
    answer = (
        "Plan:\n  ```python\n  def f(a):\n      return a\n  ```\n"
        "```output\n'guess'\n```\n```input\n'Hello'\n```"
    )
    parsed = parse_proposal(format_response(answer), TaskType.ABDUCTION)
    assert parsed == Proposal("def f(a):\n    return a", "'Hello'")
