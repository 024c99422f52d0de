"""Task buffers: the memory self-play draws references and solver tasks from.

There is one buffer per task type. Deduction and abduction buffers hold validated
:class:`~azr.tasks.types.Triplet` s; the induction buffer holds validated
:class:`~azr.tasks.types.InductionTask` s. Each:

* admits only what it is given (validation happens before) and drops duplicates, keyed on the
  normalised program and the input text (all inputs, for induction tasks);
* keeps its seed entries (the identity triplet) forever;
* samples ``K`` distinct references uniformly for proposer prompts, and solver batches that mix
  the newest admissions with uniform draws from the whole buffer (``recent_fraction``);
* has a capacity. When full, a new admission evicts an entry chosen uniformly at random among the
  non-seed entries.

Why random eviction: the reference implementation stops changing once it is full, so the
proposer keeps seeing the oldest tasks forever. FIFO would instead forget every early task after
a fixed horizon and let the buffer collapse onto whatever the current policy proposes.
Random eviction keeps a spread over the whole run: an entry survives each later admission with
probability ``1 - 1/capacity``, so old tasks thin out gradually while new ones always get in, and
recency is supplied separately by the solver's ``recent_fraction``.

All randomness comes from the ``random.Random`` passed in, so a run is reproducible from its
seed. The buffer does not save that generator: it may be shared, and its owner checkpoints it.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final, Generic, TypeVar

import msgspec

from azr.tasks.error_prediction import SEED_ERROR_TRIPLET
from azr.tasks.types import (
    SEED_INDUCTION_TASK,
    SEED_TRIPLET,
    InductionTask,
    TaskType,
    Triplet,
)

__all__ = [
    "BufferStats",
    "Buffers",
    "TaskBuffer",
    "restore_induction",
    "restore_triplets",
    "task_key",
]

T = TypeVar("T", Triplet, InductionTask)

DEFAULT_CAPACITY: Final = 16_384


def task_key(item: Triplet | InductionTask) -> tuple[str, str]:
    """The identity used for deduplication: the program and the input text(s)."""
    if isinstance(item, Triplet):
        return (item.program, item.input)
    return (item.program, "\n".join(p.input for p in (*item.shown, *item.hidden)))


class BufferStats(msgspec.Struct, frozen=True):
    """A snapshot of a buffer's counters (for metrics)."""

    size: int
    capacity: int
    seeds: int
    admitted: int
    duplicates: int
    evicted: int


class _Entry(msgspec.Struct, Generic[T], frozen=True, array_like=True):
    item: T
    seq: int


class _Saved(msgspec.Struct, Generic[T], frozen=True):
    """The checkpoint layout; new fields must get defaults so old checkpoints still load."""

    task_type: TaskType
    capacity: int
    seeds: int
    entries: list[_Entry[T]]
    next_seq: int
    admitted: int
    duplicates: int
    evicted: int
    version: int = 1


_ENCODER: Final = msgspec.msgpack.Encoder()
_TRIPLET_DECODER: Final = msgspec.msgpack.Decoder(_Saved[Triplet])
_INDUCTION_DECODER: Final = msgspec.msgpack.Decoder(_Saved[InductionTask])


class TaskBuffer(Generic[T]):
    """A bounded, deduplicating store of validated tasks of one type (see the module docs)."""

    def __init__(
        self,
        task_type: TaskType,
        rng: random.Random,
        *,
        capacity: int = DEFAULT_CAPACITY,
        seeds: Sequence[T] = (),
    ) -> None:
        if capacity <= len(seeds):
            raise ValueError(f"capacity {capacity} leaves no room beside {len(seeds)} seeds")
        self.task_type = task_type
        self.capacity = capacity
        self._rng = rng
        # Seeds occupy the first ``_seeds`` slots and are never moved, so a uniformly random
        # non-seed slot is ``randrange(_seeds, len)``; eviction swaps the last entry into it.
        self._entries: list[_Entry[T]] = []
        self._index: dict[tuple[str, str], int] = {}
        self._next_seq = 0
        self._admitted = 0
        self._duplicates = 0
        self._evicted = 0
        for seed in seeds:
            self._insert(seed)
        self._seeds = len(self._entries)
        self._admitted = self._duplicates = 0  # seeds are not admissions

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, Triplet | InductionTask) and task_key(item) in self._index

    def __iter__(self) -> Iterator[T]:
        return (e.item for e in self._entries)

    @property
    def seeds(self) -> tuple[T, ...]:
        return tuple(e.item for e in self._entries[: self._seeds])

    def _insert(self, item: T) -> bool:
        key = task_key(item)
        if key in self._index:
            self._duplicates += 1
            return False
        entry = _Entry(item, self._next_seq)
        self._next_seq += 1
        if len(self._entries) >= self.capacity:
            slot = self._rng.randrange(self._seeds, len(self._entries))
            del self._index[task_key(self._entries[slot].item)]
            self._entries[slot] = entry
            self._evicted += 1
        else:
            slot = len(self._entries)
            self._entries.append(entry)
        self._index[key] = slot
        self._admitted += 1
        return True

    def add(self, item: T) -> bool:
        """Admit ``item``; False when an entry with the same program and input is present."""
        return self._insert(item)

    def extend(self, items: Iterable[T]) -> int:
        """Admit each of ``items``; the number actually admitted."""
        return sum(self._insert(item) for item in items)

    def sample_references(self, k: int = 6) -> list[T]:
        """Up to ``k`` distinct entries, uniformly at random (for a proposer's prompt)."""
        return [e.item for e in self._rng.sample(self._entries, min(max(k, 0), len(self._entries)))]

    def sample_for_solver(self, n: int, *, recent_fraction: float = 0.5) -> list[T]:
        """``n`` tasks: the ``round(n * recent_fraction)`` newest entries (distinct) and uniform
        draws with replacement for the rest, in random order. Empty if the buffer is."""
        if not 0.0 <= recent_fraction <= 1.0:
            raise ValueError("recent_fraction must lie in [0, 1]")
        if n <= 0 or not self._entries:
            return []
        recent_n = min(round(n * recent_fraction), len(self._entries))
        recent = heapq.nlargest(recent_n, self._entries, key=lambda e: e.seq)
        chosen = [e.item for e in recent]
        chosen += [e.item for e in self._rng.choices(self._entries, k=n - recent_n)]
        self._rng.shuffle(chosen)
        return chosen

    def newest(self, n: int) -> list[T]:
        """The ``n`` most recently admitted entries, newest first."""
        return [e.item for e in heapq.nlargest(max(n, 0), self._entries, key=lambda e: e.seq)]

    def stats(self) -> BufferStats:
        return BufferStats(
            size=len(self._entries),
            capacity=self.capacity,
            seeds=self._seeds,
            admitted=self._admitted,
            duplicates=self._duplicates,
            evicted=self._evicted,
        )

    # -- checkpoints ------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The buffer's contents and counters as msgpack (the generator is not included)."""
        saved = _Saved(
            task_type=self.task_type,
            capacity=self.capacity,
            seeds=self._seeds,
            entries=list(self._entries),
            next_seq=self._next_seq,
            admitted=self._admitted,
            duplicates=self._duplicates,
            evicted=self._evicted,
        )
        return _ENCODER.encode(saved)

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_bytes` to ``path`` atomically (a crash leaves the old file intact)."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(self.to_bytes())
        tmp.replace(target)


def restore_triplets(data: bytes, rng: random.Random) -> TaskBuffer[Triplet]:
    """Rebuild a deduction or abduction buffer from :meth:`TaskBuffer.to_bytes`.

    ``rng`` drives it from now on. Raises ``msgspec.DecodeError`` or ``ValidationError`` (both
    ``ValueError``) on malformed data or a checkpoint of the induction buffer.
    """
    if _HEAD_DECODER.decode(data).task_type is TaskType.INDUCTION:
        raise msgspec.ValidationError("the checkpoint holds induction tasks")
    return _restore(TaskBuffer[Triplet], _TRIPLET_DECODER.decode(data), rng)


def restore_induction(data: bytes, rng: random.Random) -> TaskBuffer[InductionTask]:
    """Rebuild an induction buffer from :meth:`TaskBuffer.to_bytes` (see
    :func:`restore_triplets`)."""
    if _HEAD_DECODER.decode(data).task_type is not TaskType.INDUCTION:
        raise msgspec.ValidationError("the checkpoint holds triplets, not induction tasks")
    return _restore(TaskBuffer[InductionTask], _INDUCTION_DECODER.decode(data), rng)


class _Head(msgspec.Struct):
    task_type: TaskType


_HEAD_DECODER: Final = msgspec.msgpack.Decoder(_Head)


def _restore(kind: type[TaskBuffer[T]], saved: _Saved[T], rng: random.Random) -> TaskBuffer[T]:
    if not 0 <= saved.seeds <= len(saved.entries) <= saved.capacity:
        raise msgspec.ValidationError("inconsistent buffer checkpoint")
    buffer = kind(saved.task_type, rng, capacity=saved.capacity)
    buffer._entries = list(saved.entries)
    buffer._index = {task_key(e.item): i for i, e in enumerate(buffer._entries)}
    if len(buffer._index) != len(buffer._entries):
        raise msgspec.ValidationError("duplicate entries in buffer checkpoint")
    buffer._seeds = saved.seeds
    buffer._next_seq = saved.next_seq
    buffer._admitted = saved.admitted
    buffer._duplicates = saved.duplicates
    buffer._evicted = saved.evicted
    return buffer


class Buffers:
    """The per-type buffers self-play uses, seeded with the identity function (and, for the
    optional error-prediction type, a program that raises ``IndexError``)."""

    def __init__(self, rng: random.Random, *, capacity: int = DEFAULT_CAPACITY) -> None:
        self.deduction = TaskBuffer[Triplet](
            TaskType.DEDUCTION, rng, capacity=capacity, seeds=(SEED_TRIPLET,)
        )
        self.abduction = TaskBuffer[Triplet](
            TaskType.ABDUCTION, rng, capacity=capacity, seeds=(SEED_TRIPLET,)
        )
        self.induction = TaskBuffer[InductionTask](
            TaskType.INDUCTION, rng, capacity=capacity, seeds=(SEED_INDUCTION_TASK,)
        )
        self.error_prediction = TaskBuffer[Triplet](
            TaskType.ERROR_PREDICTION, rng, capacity=capacity, seeds=(SEED_ERROR_TRIPLET,)
        )
        self._rng = rng

    def triplets(self, task_type: TaskType) -> TaskBuffer[Triplet]:
        """The deduction, abduction or error-prediction buffer."""
        if task_type is TaskType.DEDUCTION:
            return self.deduction
        if task_type is TaskType.ABDUCTION:
            return self.abduction
        if task_type is TaskType.ERROR_PREDICTION:
            return self.error_prediction
        raise ValueError("the induction buffer holds induction tasks, not triplets")

    def all(self) -> tuple[TaskBuffer[Triplet] | TaskBuffer[InductionTask], ...]:
        """Every buffer, in task-type order."""
        return (self.deduction, self.abduction, self.induction, self.error_prediction)

    def sample_programs(self, n: int) -> list[str]:
        """``n`` programs for induction proposals, drawn uniformly from the deduction and
        abduction buffers together (with replacement)."""
        pool = [t.program for t in (*self.deduction, *self.abduction)]
        return self._rng.choices(pool, k=max(n, 0)) if pool else []

    def save(self, directory: str | Path) -> None:
        """Write the buffers as ``<type>.msgpack`` files in ``directory``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        for buffer in self.all():
            buffer.save(folder / f"{buffer.task_type.value}.msgpack")

    @classmethod
    def load(cls, directory: str | Path, rng: random.Random) -> Buffers:
        """Read buffers written by :meth:`save`; ``rng`` drives them from now on."""
        folder = Path(directory)
        out = cls(rng)
        out.deduction = restore_triplets((folder / "deduction.msgpack").read_bytes(), rng)
        out.abduction = restore_triplets((folder / "abduction.msgpack").read_bytes(), rng)
        out.induction = restore_induction((folder / "induction.msgpack").read_bytes(), rng)
        errors = folder / "error_prediction.msgpack"
        if errors.is_file():  # checkpoints from before the type existed have none
            out.error_prediction = restore_triplets(errors.read_bytes(), rng)
        for task_type in (TaskType.DEDUCTION, TaskType.ABDUCTION, TaskType.ERROR_PREDICTION):
            if out.triplets(task_type).task_type is not task_type:
                raise msgspec.ValidationError(f"{task_type.value}.msgpack holds another type")
        return out
