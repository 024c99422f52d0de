"""Fixtures for the task tests: the CRUXEval rows and, where it is built, the real executor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CRUXEVAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cruxeval"


@pytest.fixture(scope="session")
def cruxeval_rows() -> list[dict[str, str]]:
    path = CRUXEVAL / "cruxeval-dev.jsonl"
    if not path.exists():
        pytest.skip("the CRUXEval sample is not present")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="session")
def executor() -> Iterator[Any]:
    """One real executor shared by every test that needs the sandbox."""
    module = pytest.importorskip("azr.executor", reason="the compiled executor is not built")
    with module.Executor(limits=module.Limits(wall_timeout_s=2.0, cpu_time_s=2.0)) as ex:
        yield ex
