"""CRUXEval (``cruxeval.jsonl``: code, input, output, id per line)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from .problems import CruxProblem, DataError

__all__ = ["load_cruxeval"]


class _Row(msgspec.Struct, frozen=True):
    code: str
    input: str
    output: str
    id: str


_decoder = msgspec.json.Decoder(_Row)


def load_cruxeval(path: Path) -> list[CruxProblem]:
    if not path.exists():
        raise DataError(f"{path} does not exist")
    out = []
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = _decoder.decode(line)
        except msgspec.DecodeError as e:
            raise DataError(f"{path}:{n}: {e}") from None
        out.append(CruxProblem(task_id=r.id, code=r.code, input=r.input, output=r.output))
    return out
