"""HumanEval+ and MBPP+ from EvalPlus's release files (``HumanEvalPlus.jsonl.gz``,
``MbppPlus.jsonl.gz``).

Inputs stay as JSON text (they are only ever decoded inside the sandbox). MBPP+ stores tuples,
sets and complex numbers as JSON lists and strings; which tasks need which rebuild is a fact of
the dataset (EvalPlus documents it per task id), recorded here as a named conversion that the
sandbox harness applies.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import msgspec

from .problems import CodeProblem, DataError

__all__ = ["load_humaneval_plus", "load_mbpp_plus"]

_CONVERSIONS: dict[str, tuple[int, ...]] = {
    "args_to_tuples": (
        2,
        116,
        132,
        143,
        222,
        261,
        273,
        394,
        399,
        421,
        424,
        429,
        470,
        560,
        579,
        596,
        616,
        630,
        726,
        740,
        744,
        809,
    ),
    "args_items_to_tuples": (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780),
    "first_items_to_tuples": (75, 413, 444, 753),
    "second_to_tuple": (106, 750),
    "first_items_to_sets": (115,),
    "float_complex": (124,),
    "first_to_tuple": (250, 405, 446, 617, 720, 763, 808, 307),
    "nested_then_args_to_tuples": (259, 401, 445),
    "mixed_items_to_tuples": (278,),
    "dict_values_to_tuples": (722,),
    "complex": (252,),
    "all_lists_to_tuples": (580, 615, 791),
}
_CONVERSION_OF = {task: name for name, tasks in _CONVERSIONS.items() for task in tasks}

# EvalPlus's special oracles: where differential testing against the reference output is not
# the right check (by entry point).
_ORACLES = {
    ("humaneval", "find_zero"): "poly_root",
    ("mbpp", "are_equivalent"): "any",
    ("mbpp", "sum_div"): "zero_or_equal",
    ("mbpp", "surface_Area"): "surface_area",
    ("mbpp", "digit_distance_nums"): "digit_distance",
}
_SET_EQUAL = frozenset(
    {
        "similar_elements",
        "find_char_long",
        "common_in_nested_lists",
        "extract_singly",
        "larg_nnum",
        "intersection_array",
        "find_dissimilar",
        "Diff",
    }
)
_NOT_NONE = frozenset({"check_str", "text_match_three", "text_starta_endb"})


class _Row(msgspec.Struct, frozen=True):
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    base_input: list[object]
    plus_input: list[object]
    atol: float = 0.0


def _row(raw: object) -> _Row:
    # The release files are written by Python's json (NaN and Infinity appear), so they are
    # parsed by it too, then checked field by field. MBPP+ v0.2.0 has one task (Mbpp/793) whose
    # plus inputs are an empty object: it has no plus inputs.
    if isinstance(raw, dict) and raw.get("plus_input") == {}:
        raw = {**raw, "plus_input": []}
    return msgspec.convert(raw, _Row)


def _rows(path: Path) -> list[_Row]:
    if not path.exists():
        raise DataError(f"{path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(_row(json.loads(line)))
            except (ValueError, msgspec.ValidationError) as e:
                raise DataError(f"{path}:{n}: {e}") from None
    return rows


def _problem(row: _Row, family: str, solution: str) -> CodeProblem:
    conversion = ""
    oracle = _ORACLES.get((family, row.entry_point), "")
    if family == "mbpp":
        conversion = _CONVERSION_OF.get(int(row.task_id.split("/")[-1]), "")
        if row.entry_point in _SET_EQUAL:
            oracle = "set_equal"
    # The JSON parser keeps NaN/Infinity; the sandbox decodes the same text.
    return CodeProblem(
        task_id=row.task_id,
        prompt=row.prompt,
        entry_point=row.entry_point,
        reference=solution,
        inputs=json.dumps(row.base_input + row.plus_input),
        n_base=len(row.base_input),
        n_plus=len(row.plus_input),
        atol=float(row.atol),
        oracle=oracle,
        conversion=conversion,
        not_none=family == "mbpp" and row.entry_point in _NOT_NONE,
    )


def load_humaneval_plus(path: Path) -> list[CodeProblem]:
    """HumanEval+ (164 problems); the reference is the prompt plus the canonical body."""
    return [_problem(r, "humaneval", r.prompt + r.canonical_solution) for r in _rows(path)]


def load_mbpp_plus(path: Path) -> list[CodeProblem]:
    """MBPP+ (378 problems); the canonical solution is a whole module."""
    return [_problem(r, "mbpp", r.canonical_solution) for r in _rows(path)]
