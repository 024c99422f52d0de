from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("azr.executor", reason="the compiled executor is not built")

from azr.executor import Limits
from azr.verify import Verifier


@pytest.fixture(scope="session")
def verifier() -> Iterator[Verifier]:
    """One verifier for the whole session (servers borrow it); short limits so that hostile
    answers that loop or sleep end quickly."""
    with Verifier(workers=2, limits=Limits(wall_timeout_s=1.0, cpu_time_s=1.0)) as v:
        yield v
