"""The problem types every benchmark loader produces (frozen msgspec structs)."""

from __future__ import annotations

from typing import Literal

import msgspec

from azr.errors import AzrError

__all__ = ["CodeProblem", "CruxProblem", "DataError", "LcbProblem", "MathProblem", "Problem"]


class DataError(AzrError, ValueError):
    """A benchmark file is missing or not in the expected upstream format."""


class CodeProblem(msgspec.Struct, frozen=True, tag="code"):
    """An EvalPlus function-completion problem (HumanEval+, MBPP+).

    ``inputs`` is the JSON text of all argument lists, the ``n_base`` original (base) inputs
    first, then the ``n_plus`` added by EvalPlus; it is decoded only in the sandbox.
    ``reference`` is the canonical solution as a whole module.
    """

    task_id: str
    prompt: str
    entry_point: str
    reference: str
    inputs: str
    n_base: int
    n_plus: int
    atol: float = 0.0
    oracle: str = ""
    conversion: str = ""
    not_none: bool = False


class LcbProblem(msgspec.Struct, frozen=True, tag="lcb"):
    """A LiveCodeBench problem: stdin/stdout, or a LeetCode-style ``class Solution`` method."""

    task_id: str
    question: str
    starter_code: str
    mode: Literal["stdio", "method"]
    entry_point: str
    """The method name of ``Solution`` (empty for stdin/stdout problems)."""
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    public_only: bool
    """True when only the public tests are known (the score overstates the official one)."""


class CruxProblem(msgspec.Struct, frozen=True, tag="crux"):
    """A CRUXEval item: ``f``, an input and the output ``f`` returns for it."""

    task_id: str
    code: str
    input: str
    output: str


class MathProblem(msgspec.Struct, frozen=True, tag="math"):
    """A math word problem with its gold final answer(s) as LaTeX/plain text."""

    task_id: str
    problem: str
    answers: tuple[str, ...]
    """All parts of the gold answer (OlympiadBench has multi-part answers)."""


Problem = CodeProblem | LcbProblem | CruxProblem | MathProblem
