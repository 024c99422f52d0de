"""Task buffers: capacity, deduplication, seeds, sampling, checkpoints, reproducibility."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azr.buffer import Buffers, TaskBuffer, restore_induction, restore_triplets, task_key
from azr.tasks import SEED_INDUCTION_TASK, SEED_TRIPLET, InductionTask, IOPair, TaskType, Triplet


def triplet(n: int, program: int | None = None) -> Triplet:
    return Triplet(f"def f(a):\n    return a + {n if program is None else program}", str(n), "0")


def make(capacity: int, seed: int = 0) -> TaskBuffer[Triplet]:
    return TaskBuffer[Triplet](
        TaskType.DEDUCTION, random.Random(seed), capacity=capacity, seeds=(SEED_TRIPLET,)
    )


def check_invariants(buffer: TaskBuffer[Triplet]) -> None:
    items = list(buffer)
    assert len(items) <= buffer.capacity
    assert items[0] == SEED_TRIPLET and SEED_TRIPLET in buffer
    keys = [task_key(t) for t in items]
    assert len(set(keys)) == len(keys)
    assert all(t in buffer for t in items)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(2, 12),
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3)), max_size=80),
    st.integers(0, 2**32 - 1),
)
def test_invariants_under_random_admissions(
    capacity: int, ops: list[tuple[int, int]], seed: int
) -> None:
    buffer = make(capacity, seed)
    admitted = 0
    for n, program in ops:
        item = triplet(n, program)
        present = item in buffer
        assert buffer.add(item) is (not present)
        admitted += not present
        check_invariants(buffer)
    stats = buffer.stats()
    assert stats.admitted == admitted
    assert stats.size == len(buffer) == min(capacity, 1 + admitted)
    assert stats.evicted == max(0, 1 + admitted - capacity)
    assert stats.duplicates == len(ops) - admitted

    contents = list(buffer)
    refs = buffer.sample_references(6)
    assert len(refs) == min(6, len(contents)) and len(set(map(task_key, refs))) == len(refs)
    assert all(r in contents for r in refs)
    batch = buffer.sample_for_solver(10, recent_fraction=0.5)
    assert len(batch) == 10 and all(t in contents for t in batch)
    for t in buffer.newest(min(5, len(contents))):
        assert t in batch

    restored = restore_triplets(buffer.to_bytes(), random.Random(seed))
    assert list(restored) == contents
    assert restored.stats() == stats
    assert restored.seeds == (SEED_TRIPLET,)


def test_dedupe_is_on_program_and_input_only() -> None:
    buffer = make(10)
    assert buffer.add(Triplet("def f(a):\n    return 1", "1", "1"))
    assert not buffer.add(Triplet("def f(a):\n    return 1", "1", "2"))  # same task
    assert buffer.add(Triplet("def f(a):\n    return 1", "2", "1"))
    assert not buffer.add(SEED_TRIPLET)


def test_seed_survives_any_number_of_evictions() -> None:
    buffer = make(3)
    buffer.extend(triplet(n) for n in range(1_000))
    check_invariants(buffer)
    assert buffer.stats().evicted == 998


def test_eviction_keeps_a_spread_of_ages() -> None:
    buffer = make(101, seed=1)
    buffer.extend(triplet(n) for n in range(2_000))
    ages = sorted(int(t.input) for t in buffer if t != SEED_TRIPLET)
    # FIFO would keep exactly the last 100; random eviction keeps some older entries too.
    assert ages[0] < 1_900 and ages[-1] >= 1_990


def test_same_seed_same_run() -> None:
    runs = []
    for _ in range(2):
        buffer = make(20, seed=7)
        buffer.extend(triplet(n) for n in range(100))
        runs.append((list(buffer), buffer.sample_references(6), buffer.sample_for_solver(8)))
    assert runs[0] == runs[1]


def test_sampling_edge_cases() -> None:
    empty = TaskBuffer[Triplet](TaskType.ABDUCTION, random.Random(0), capacity=4)
    assert empty.sample_references(6) == [] and empty.sample_for_solver(5) == []
    buffer = make(10)
    buffer.extend(triplet(n) for n in range(5))
    assert buffer.sample_for_solver(0) == []
    newest_only = buffer.sample_for_solver(3, recent_fraction=1.0)
    assert sorted(t.input for t in newest_only) == ["2", "3", "4"]
    with pytest.raises(ValueError):
        buffer.sample_for_solver(3, recent_fraction=1.5)
    with pytest.raises(ValueError):
        make(1)


def test_induction_buffer_round_trip(tmp_path: Path) -> None:
    buffer = TaskBuffer[InductionTask](
        TaskType.INDUCTION, random.Random(0), capacity=5, seeds=(SEED_INDUCTION_TASK,)
    )
    task = InductionTask(
        "def f(a):\n    return -a", "negates", (IOPair("1", "-1"),), (IOPair("2", "-2"),)
    )
    assert buffer.add(task) and not buffer.add(task)
    buffer.save(tmp_path / "induction.msgpack")
    data = (tmp_path / "induction.msgpack").read_bytes()
    restored = restore_induction(data, random.Random(0))
    assert list(restored) == [SEED_INDUCTION_TASK, task]
    with pytest.raises(msgspec.ValidationError):
        restore_triplets(data, random.Random(0))
    with pytest.raises(msgspec.DecodeError):
        restore_triplets(b"\x00garbage", random.Random(0))


def test_buffers_save_and_load(tmp_path: Path) -> None:
    buffers = Buffers(random.Random(3), capacity=50)
    buffers.deduction.extend(triplet(n) for n in range(10))
    buffers.abduction.add(triplet(99))
    programs = buffers.sample_programs(20)
    assert len(programs) == 20
    assert set(programs) <= {t.program for t in (*buffers.deduction, *buffers.abduction)}
    buffers.save(tmp_path / "ckpt")
    loaded = Buffers.load(tmp_path / "ckpt", random.Random(3))
    assert list(loaded.deduction) == list(buffers.deduction)
    assert list(loaded.abduction) == list(buffers.abduction)
    assert list(loaded.induction) == [SEED_INDUCTION_TASK]
    assert loaded.deduction.task_type is TaskType.DEDUCTION
    with pytest.raises(ValueError):
        buffers.triplets(TaskType.INDUCTION)
