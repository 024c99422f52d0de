"""The math sets of the paper (AIME 2024/2025, AMC 2023, MATH-500, Minerva, OlympiadBench) in
the JSONL layout of the paper's evaluation data (one object per line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..math_scoring import last_boxed
from .problems import DataError, MathProblem

__all__ = ["load_math"]


def _answer_text(value: Any) -> str:
    # AMC stores floats (27.0); an integral float is the integer answer.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _row(name: str, n: int, row: dict[str, Any]) -> MathProblem:
    task_id = f"{name}/{row.get('id', row.get('idx', row.get('unique_id', n)))}"
    problem = row.get("problem") or row.get("question")
    if not isinstance(problem, str):
        raise DataError(f"{name} row {n}: no problem text")
    if "final_answer" in row:  # OlympiadBench: a list of answer strings in $...$
        parts = row["final_answer"]
        if not isinstance(parts, list) or not parts:
            raise DataError(f"{name} row {n}: final_answer is not a non-empty list")
        answers = tuple(_answer_text(p).replace("$", "").strip() for p in parts)
        if row.get("context"):
            problem = f"{row['context']}\n\n{problem}"
    elif "answer" in row and row["answer"] not in (None, ""):
        answers = (_answer_text(row["answer"]),)
    else:  # Minerva: the last \boxed{} of the worked solution
        boxed = last_boxed(str(row.get("solution", "")))
        if boxed is None:
            raise DataError(f"{name} row {n}: no answer field and no \\boxed{{}} in the solution")
        answers = (boxed.strip(),)
    return MathProblem(task_id=task_id, problem=problem, answers=answers)


def load_math(path: Path, name: str) -> list[MathProblem]:
    if not path.exists():
        raise DataError(f"{path} does not exist")
    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise DataError(f"{path}:{n + 1}: {e}") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{n + 1}: not a JSON object")
            out.append(_row(name, n, row))
    return out
