"""LiveCodeBench: the public-test file (a JSON list of ``problem``, ``starter_code``, ``tests``)
and the official ``code_generation_lite`` rows (JSONL with ``question_content``,
``public_test_cases``, ``private_test_cases``, ``metadata``).

Hidden (private) tests are used when they are plain JSON. Upstream ships them as a pickled,
compressed blob; this loader never unpickles anything, so such rows are scored on their public
tests and marked ``public_only`` (the report then says "public tests").
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any, Literal

from .problems import DataError, LcbProblem

__all__ = ["load_livecodebench"]

_METHOD = re.compile(r"def\s+(\w+)\s*\(\s*self")


def _tests(raw: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return []  # not JSON (e.g. pickled): unusable here
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise DataError(f"{where}: tests are not a list of objects")
    return raw


def _method_name(starter_code: str, metadata: Any) -> str:
    if isinstance(metadata, str) and metadata:
        try:
            metadata = json.loads(metadata)
        except ValueError:
            metadata = {}
    if isinstance(metadata, dict) and isinstance(metadata.get("func_name"), str):
        return str(metadata["func_name"])
    found = _METHOD.findall(starter_code)
    return found[-1] if found else ""


def _problem(n: int, row: dict[str, Any], where: str) -> LcbProblem:
    question = row.get("question_content", row.get("problem"))
    if not isinstance(question, str):
        raise DataError(f"{where}: no problem text")
    starter = row.get("starter_code") or ""
    public = _tests(row.get("public_test_cases", row.get("tests", [])), where)
    private_raw = row.get("private_test_cases")
    private = _tests(private_raw, where) if private_raw else []
    tests = public + private
    if not tests:
        raise DataError(f"{where}: no tests")
    kinds = {t.get("testtype") for t in tests}
    mode: Literal["stdio", "method"]
    if kinds == {"stdin"}:
        mode, entry = "stdio", ""
    elif kinds == {"functional"}:
        mode, entry = "method", _method_name(starter, row.get("metadata"))
        if not entry:
            raise DataError(f"{where}: a functional problem without a method name")
    else:
        raise DataError(f"{where}: unknown or mixed test types {sorted(map(str, kinds))}")
    task_id = str(row.get("question_id") or row.get("id") or n)
    return LcbProblem(
        task_id=f"lcb/{task_id}",
        question=question,
        starter_code=starter,
        mode=mode,
        entry_point=entry,
        inputs=tuple(str(t["input"]) for t in tests),
        outputs=tuple(str(t["output"]) for t in tests),
        public_only=not private,
    )


def load_livecodebench(path: Path) -> list[LcbProblem]:
    """Reads a ``.json``/``.json.gz`` list or a ``.jsonl`` file of either format, or a folder of
    ``.jsonl`` files (``code_generation_lite``)."""
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise DataError(f"{path} has no .jsonl files")
        return [p for f in files for p in load_livecodebench(f)]
    if not path.exists():
        raise DataError(f"{path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    try:
        if path.name.endswith((".jsonl", ".jsonl.gz")):
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a list of problems")
    return [_problem(n, r, f"{path} item {n}") for n, r in enumerate(rows)]
