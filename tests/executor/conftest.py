from __future__ import annotations

from collections.abc import Iterator

import pytest
from executor_support import FAST

from azr.executor import Executor


@pytest.fixture(scope="session")
def ex() -> Iterator[Executor]:
    with Executor(workers=2) as e:
        yield e


@pytest.fixture(scope="session")
def fast() -> Iterator[Executor]:
    """Short limits, for programs that are meant to hit them."""
    with Executor(workers=2, limits=FAST) as e:
        yield e
