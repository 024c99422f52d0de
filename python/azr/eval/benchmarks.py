"""The benchmarks ``azr eval`` knows: names, families, report labels and the ``--data-dir``
layout they are read from.

    DATA_DIR/evalplus/HumanEvalPlus.jsonl.gz        HumanEval+ (EvalPlus release)
    DATA_DIR/evalplus/MbppPlus.jsonl.gz             MBPP+ (EvalPlus release)
    DATA_DIR/livecodebench/code_generation_lite/    official rows (*.jsonl), if present, else
    DATA_DIR/livecodebench/livecodebench_v5_public.json.gz   the public-test file
    DATA_DIR/cruxeval/cruxeval.jsonl                CRUXEval
    DATA_DIR/math/{aime24,aime25,amc23,math500,minerva_math,olympiadbench}.jsonl
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from .data.cruxeval import load_cruxeval
from .data.evalplus import load_humaneval_plus, load_mbpp_plus
from .data.livecodebench import load_livecodebench
from .data.math import load_math
from .data.problems import DataError, LcbProblem, Problem

__all__ = ["BENCHMARKS", "Benchmark", "find_data", "load_benchmark", "parse_benchmarks"]

Family = Literal["code", "math", "reasoning"]


class Benchmark(msgspec.Struct, frozen=True):
    name: str
    label: str
    family: Family
    """code and math enter the paper's averages; reasoning (CRUXEval) is reported alone."""
    paths: tuple[str, ...]
    """Candidate locations under the data directory, first existing wins."""


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("humaneval+", "HumanEval+", "code", ("evalplus/HumanEvalPlus.jsonl.gz",)),
        Benchmark("mbpp+", "MBPP+", "code", ("evalplus/MbppPlus.jsonl.gz",)),
        Benchmark(
            "lcb",
            "LiveCodeBench",
            "code",
            (
                "livecodebench/code_generation_lite",
                "livecodebench/livecodebench_v5_public.json.gz",
            ),
        ),
        Benchmark("cruxeval-o", "CRUXEval-O", "reasoning", ("cruxeval/cruxeval.jsonl",)),
        Benchmark("cruxeval-i", "CRUXEval-I", "reasoning", ("cruxeval/cruxeval.jsonl",)),
        Benchmark("aime24", "AIME24", "math", ("math/aime24.jsonl",)),
        Benchmark("aime25", "AIME25", "math", ("math/aime25.jsonl",)),
        Benchmark("amc23", "AMC23", "math", ("math/amc23.jsonl",)),
        Benchmark("math500", "MATH500", "math", ("math/math500.jsonl",)),
        Benchmark("minerva", "Minerva", "math", ("math/minerva_math.jsonl",)),
        Benchmark("olympiadbench", "OlympiadBench", "math", ("math/olympiadbench.jsonl",)),
    ]
}

_LOADERS: dict[str, Callable[[Path], Sequence[Problem]]] = {
    "humaneval+": load_humaneval_plus,
    "mbpp+": load_mbpp_plus,
    "lcb": load_livecodebench,
    "cruxeval-o": load_cruxeval,
    "cruxeval-i": load_cruxeval,
    "aime24": lambda p: load_math(p, "aime24"),
    "aime25": lambda p: load_math(p, "aime25"),
    "amc23": lambda p: load_math(p, "amc23"),
    "math500": lambda p: load_math(p, "math500"),
    "minerva": lambda p: load_math(p, "minerva"),
    "olympiadbench": lambda p: load_math(p, "olympiadbench"),
}


def parse_benchmarks(text: str | Sequence[str]) -> list[str]:
    """Comma-separated names (or a list) -> known names, in order, without duplicates."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text)]
    out: list[str] = []
    for n in names:
        if not n:
            continue
        if n not in BENCHMARKS:
            known = ", ".join(BENCHMARKS)
            raise DataError(f"unknown benchmark {n!r} (known: {known})")
        if n not in out:
            out.append(n)
    if not out:
        raise DataError("no benchmark named")
    return out


def find_data(name: str, data_dir: Path) -> Path:
    bench = BENCHMARKS[name]
    for rel in bench.paths:
        if (data_dir / rel).exists():
            return data_dir / rel
    wanted = " or ".join(str(data_dir / rel) for rel in bench.paths)
    raise DataError(f"{bench.label}: no data at {wanted}")


def load_benchmark(name: str, data_dir: Path, limit: int | None = None) -> list[Problem]:
    """The first ``limit`` problems of a benchmark (all when None)."""
    problems = list(_LOADERS[name](find_data(name, data_dir)))
    return problems if limit is None else problems[:limit]


def label(name: str, problems: Sequence[Problem]) -> str:
    """The report label; LiveCodeBench scored on public tests only says so."""
    bench = BENCHMARKS[name]
    if name == "lcb" and any(isinstance(p, LcbProblem) and p.public_only for p in problems):
        return f"{bench.label} (public tests)"
    return bench.label
