"""Final-answer extraction and math-verify equivalence."""

from __future__ import annotations

from pathlib import Path

import pytest

from azr.eval.data.math import load_math
from azr.eval.math_scoring import (
    MAX_ANSWER_CHARS,
    answers_equivalent,
    check_math,
    extract_final_answer,
    last_boxed,
)


@pytest.mark.parametrize("predicted", ["\\frac{1}{2}", "0.5", "1/2", "\\dfrac12", ".5", "2/4"])
def test_equivalent_forms_of_one_half(predicted: str) -> None:
    assert answers_equivalent("\\frac{1}{2}", predicted)
    assert answers_equivalent("0.5", predicted)


@pytest.mark.parametrize("predicted", ["0.51", "\\frac{1}{3}", "-\\frac{1}{2}", "1/20", "2", "x"])
def test_near_misses_are_rejected(predicted: str) -> None:
    assert not answers_equivalent("\\frac{1}{2}", predicted)


def test_other_equivalences() -> None:
    assert answers_equivalent("27", "27.0")
    assert answers_equivalent("\\sqrt{8}", "2\\sqrt{2}")
    assert answers_equivalent("3, 5", "5, 3")  # a set of answers
    assert not answers_equivalent("\\sqrt{2}", "1.41")
    assert not answers_equivalent("204", "")


def test_extraction_takes_the_last_boxed_with_nested_braces() -> None:
    text = "first \\boxed{1} then \\boxed{\\frac{1}{2^{3}}} end"
    assert extract_final_answer(text) == "\\frac{1}{2^{3}}"
    assert last_boxed("\\boxed 7 and more") == "7"
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("nothing") is None


def test_extraction_falls_back_to_the_answer_tag() -> None:
    assert extract_final_answer("<think>2+2</think><answer> 4 </answer>") == "4"
    assert extract_final_answer("<answer>so \\boxed{5}</answer>") == "5"
    assert extract_final_answer("The answer is 4.") is None
    assert extract_final_answer("<answer></answer>") is None


def test_check_math_verdicts() -> None:
    assert check_math(("204",), "<think>...</think><answer>\\boxed{204}</answer>").passed
    v = check_math(("204",), "<answer>205</answer>")
    assert (v.passed, v.extracted, v.reason) == (False, "205", "wrong")
    assert check_math(("204",), "no idea").reason == "no_answer"
    assert check_math(("1",), "\\boxed{" + "1+" * MAX_ANSWER_CHARS + "1}").reason == "too_long"


def test_minerva_gold_comes_from_the_solution(tmp_path: Path) -> None:
    f = tmp_path / "minerva_math.jsonl"
    f.write_text('{"idx": 3, "problem": "p", "solution": "so \\\\boxed{1} and \\\\boxed{4.5}"}\n')
    [p] = load_math(f, "minerva")
    assert p.answers == ("4.5",) and p.task_id == "minerva/3"


def test_olympiadbench_list_answers(tmp_path: Path) -> None:
    f = tmp_path / "olympiadbench.jsonl"
    f.write_text(
        '{"id": 7, "question": "q", "final_answer": ["$69$,$84$"], "is_multiple_answer": true}\n'
    )
    [p] = load_math(f, "olympiadbench")
    assert p.answers == ("69,84",)
    assert check_math(p.answers, "\\boxed{84, 69}").passed
    assert not check_math(p.answers, "\\boxed{69}").passed


def test_the_real_math_sets_load(eval_data: Path) -> None:
    sizes = {
        "aime24": 30,
        "aime25": 30,
        "amc23": 40,
        "math500": 500,
        "minerva_math": 272,
        "olympiadbench": 675,
    }
    for name, n in sizes.items():
        problems = load_math(eval_data / "math" / f"{name}.jsonl", name)
        assert len(problems) == n
        assert all(p.answers and all(a for a in p.answers) for p in problems)
    amc = load_math(eval_data / "math" / "amc23.jsonl", "amc23")
    assert amc[0].answers == ("27",)  # stored as 27.0
