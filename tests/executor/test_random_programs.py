"""10,000 generated programs: every one ends with a real status, results do not depend on what
ran before (isolation), and the pool ends healthy with no leaked process or descriptor."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest
from executor_support import child_pids, descendants, open_fds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azr.executor import Executor, Job, Limits, Status

# Statements over a running value `v`; some fail, some are hostile, some poison global state
# (which must never reach another program).
FRAGMENTS = [
    "v = v * 2 if isinstance(v, int) else v",
    "v = str(v)[::-1]",
    "v = [v, v]",
    "v = len(str(v))",
    "v = {'k': v}",
    "v = sorted(set(str(v)))",
    "v = tuple(range(len(str(v)) % 7))",
    "v = v + 1",
    "v = 1 // (len(str(v)) % 3)",
    "v = [x * x for x in range(len(str(v)) % 50)]",
    "v = sum(range(min(len(str(v)), 5000)))",
    "print(v)",
    "raise ValueError(v)",
    "v = {str(v)}",
    "v = hash('x') % 1000",
    "v = random.random()",
    "v = frozenset(str(v))",
    "v = float(len(str(v))) / 3",
    "v = str(v).encode()",
    "v = None",
    "import builtins\nbuiltins.len = lambda x: 42",
    "import math\nmath.pi = v",
    "random.seed(len(str(v)))",
    "import os\nos.fork()",
    "open('/tmp/azr-random-escape', 'w')",
    "open('local.txt', 'a').write(str(v))\nv = open('local.txt').read()",
    "import sys\nsys.setrecursionlimit(50)",
    "v = [0] * (10**9)",
    "import os\nv = sorted(os.listdir('.'))",
]


def program(picks: list[int]) -> str:
    body = "\n".join(FRAGMENTS[i] for i in picks)
    return (
        "import random\ndef f(v):\n"
        + "\n".join("    " + line for line in body.splitlines())
        + "\n    return v"
    )


batches = st.lists(
    st.tuples(
        st.lists(st.integers(0, len(FRAGMENTS) - 1), min_size=0, max_size=6),
        st.one_of(st.integers(-(10**6), 10**6), st.text(max_size=8)),
    ),
    min_size=100,
    max_size=100,
)


@pytest.fixture(scope="module")
def pool() -> Iterator[Executor]:
    limits = Limits(wall_timeout_s=2.0, cpu_time_s=2.0, memory_bytes=256 << 20)
    with Executor(workers=2, limits=limits) as e:
        yield e


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=batches)
def test_random_programs(pool: Executor, batch: list[tuple[list[int], int | str]]) -> None:
    jobs = [Job(program(picks), repr(arg), hash_seed=0, random_seed=1) for picks, arg in batch]
    first = pool.run_batch(jobs)
    assert all(r.status is not Status.INTERNAL for r in first), [r for r in first if not r.ok][:3]
    # Run again in another order: each program's result must not depend on its neighbours.
    order = list(range(len(jobs)))
    random.Random(len(jobs)).shuffle(order)
    second = pool.run_batch([jobs[i] for i in order])
    for i, r in zip(order, second, strict=True):
        assert (r.status, r.value, r.stdout) == (first[i].status, first[i].value, first[i].stdout)


def test_pool_is_healthy_afterwards(pool: Executor) -> None:
    # Runs after the property above (same module, file order): 20,000 executions later.
    fds, procs = open_fds(), child_pids()
    assert pool.run("def f(a):\n    return a + 1", "1").value == "2"
    assert pool.statistics()["internal_errors"] == 0
    assert open_fds() == fds and child_pids() == procs
    assert all(state != "Z" for _, state in descendants(os.getpid()))
    assert not os.path.exists("/tmp/azr-random-escape")
