"""LiveCodeBench (stdin/stdout and functional) and CRUXEval scoring, on the real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from azr.eval.benchmarks import label, load_benchmark
from azr.eval.code_scoring import score_cruxeval, score_lcb
from azr.eval.data.livecodebench import load_livecodebench
from azr.eval.data.problems import CruxProblem, LcbProblem
from azr.executor import Executor

CARDS = """\
import sys
data = sys.stdin.read().split()
for s in data[1:]:
    wrong = sum(a != b for a, b in zip(s, "abc"))
    print("YES" if wrong in (0, 2) else "NO")
"""
SENIORS = """\
class Solution:
    def countSeniors(self, details: List[str]) -> int:
        return sum(int(d[11:13]) > 60 for d in details)
"""


@pytest.fixture(scope="module")
def lcb(eval_data: Path) -> list[LcbProblem]:
    return load_livecodebench(eval_data / "livecodebench" / "livecodebench_v5_public.json.gz")


def test_loads_both_kinds_with_public_tests_only(lcb: list[LcbProblem]) -> None:
    assert len(lcb) == 879
    assert {p.mode for p in lcb} == {"stdio", "method"}
    assert all(p.public_only for p in lcb)
    assert label("lcb", lcb) == "LiveCodeBench (public tests)"


def test_stdio_and_functional_solutions(scoring_executor: Executor, lcb: list[LcbProblem]) -> None:
    cards = next(p for p in lcb if p.mode == "stdio" and "abc" in p.question)
    seniors = next(p for p in lcb if p.entry_point == "countSeniors")
    wrong_cards = CARDS.replace("(0, 2)", "(0,)")
    wrong_seniors = SENIORS.replace("> 60", ">= 60")
    verdicts = score_lcb(
        scoring_executor,
        [(cards, CARDS), (seniors, SENIORS), (cards, wrong_cards), (seniors, "x = 1\n")],
    )
    assert [v.passed for v in verdicts] == [True, True, False, False]
    # Whitespace differences in stdout are not errors.
    spaced = CARDS.replace('print("YES" if', 'print(" YES " if')
    assert score_lcb(scoring_executor, [(cards, spaced)])[0].passed
    assert not score_lcb(scoring_executor, [(seniors, wrong_seniors)])[0].passed or all(
        int(d.split('"')[1][11:13]) != 60 for d in seniors.inputs
    )


def test_stdio_numeric_tokens_and_hostile_reads(scoring_executor: Executor) -> None:
    p = LcbProblem(
        task_id="lcb/x",
        question="print a/b",
        starter_code="",
        mode="stdio",
        entry_point="",
        inputs=("1 4\n", "3 4\n"),
        outputs=("0.25\n", "0.75\n"),
        public_only=True,
    )
    ok = "a, b = map(int, input().split())\nprint(f'{a / b:.4f}')\n"
    reads = "print(open('/etc/hostname').read())\n"
    verdicts = score_lcb(scoring_executor, [(p, ok), (p, reads)], test_s=1.0)
    assert [v.passed for v in verdicts] == [True, False]


def test_official_rows_format(tmp_path: Path) -> None:
    row = (
        '{"question_id": "q1", "question_content": "add", "starter_code": "", '
        '"public_test_cases": "[{\\"input\\": \\"1 2\\\\n\\", \\"output\\": \\"3\\\\n\\", '
        '\\"testtype\\": \\"stdin\\"}]", "private_test_cases": "eJzLSM3JyQcABiwCFQ==", '
        '"metadata": "{}"}\n'
    )
    (tmp_path / "test.jsonl").write_text(row)
    [p] = load_livecodebench(tmp_path)
    assert (p.task_id, p.mode, p.inputs, p.public_only) == ("lcb/q1", "stdio", ("1 2\n",), True)


def test_cruxeval(data_dir: Path) -> None:
    problems = load_benchmark("cruxeval-o", data_dir, limit=3)
    assert all(isinstance(p, CruxProblem) for p in problems)
    with Executor(2) as ex:
        right = score_cruxeval(ex, [(p, p.output) for p in problems], "output")  # type: ignore[misc]
        wrong = score_cruxeval(ex, [(p, "'nope'") for p in problems], "output")  # type: ignore[misc]
        inputs = score_cruxeval(ex, [(p, p.input) for p in problems], "input")  # type: ignore[misc]
    assert [v.passed for v in right] == [True] * 3
    assert [v.passed for v in wrong] == [False] * 3
    assert [v.passed for v in inputs] == [True] * 3
