"""Fixtures for the evaluation tests: the benchmark copies (``../shared/data/eval`` beside the
checkout, or ``AZR_EVAL_DATA``) and real sandboxes with scoring limits."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from azr.eval.suite import eval_limits
from azr.executor import Executor

_SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
EVAL_DATA = Path(os.environ.get("AZR_EVAL_DATA", _SHARED / "eval"))
CRUXEVAL = Path(os.environ.get("AZR_CRUXEVAL_DATA", _SHARED / "cruxeval"))


@pytest.fixture(scope="session")
def eval_data() -> Path:
    if not (EVAL_DATA / "evalplus" / "HumanEvalPlus.jsonl.gz").exists():
        pytest.skip("the evaluation data is not present")
    return EVAL_DATA


@pytest.fixture(scope="session")
def data_dir(eval_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``--data-dir`` layout, CRUXEval included, built from links to the copies."""
    root = tmp_path_factory.mktemp("data")
    for name in ("evalplus", "math", "livecodebench"):
        (root / name).symlink_to((eval_data / name).resolve())
    crux = CRUXEVAL / "cruxeval-dev.jsonl"
    if crux.exists():
        (root / "cruxeval").mkdir()
        (root / "cruxeval" / "cruxeval.jsonl").symlink_to(crux.resolve())
    return root


@pytest.fixture(scope="session")
def scoring_executor() -> Iterator[Executor]:
    """Scoring limits as ``azr eval`` uses them."""
    with Executor(2, eval_limits()) as ex:
        yield ex


@pytest.fixture(scope="session")
def quick_executor() -> Iterator[Executor]:
    """Scoring limits with a short problem budget, for solutions meant to run out of time."""
    with Executor(2, eval_limits(max_problem_s=1.0, memory_bytes=512 << 20)) as ex:
        yield ex
