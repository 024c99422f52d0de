"""Seed files: the buffers a seeding stage produced, saved once and reused by later runs.

``azr seed --out FILE`` runs only the seeding stage (proposals without training, see
:mod:`azr.actors.coordinator`) and writes what the three buffers then hold; a run with
``selfplay.seed_file = FILE`` starts from it and proposes only what is still missing. The
authors ship such files per model for the same reason: seeding a large model costs hours.

The file is JSON (a :class:`SeedFile`): one list per task type, deduplicated, with every program
in the canonical form normalisation gives (imports first, comments and layout gone, the entry
function named ``f``). It is data, not trust: when a run loads it, every entry is validated
again in the sandbox like a fresh proposal, its outputs are recomputed there, and entries that
no longer validate are left out (and counted on the console).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec

from azr.buffer import Buffers
from azr.config import Config
from azr.errors import ConfigError
from azr.generation.base import GenerationBackend
from azr.tasks.ast_checks import Rejected
from azr.tasks.error_prediction import validate_error_plan
from azr.tasks.normalize import normalize_program
from azr.tasks.plan import run_plans
from azr.tasks.types import InductionTask, Reason, Triplet
from azr.tasks.validation import validate_induction_plan
from azr.verify import Verifier

__all__ = [
    "SeedFile",
    "SeedLoad",
    "load_seed_file",
    "read_seed_file",
    "seed_async",
    "seed_file_from_buffers",
    "write_seed_file",
]

FORMAT: Final = 1


class SeedFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The contents of a seed file."""

    format: int = FORMAT
    deduction: tuple[Triplet, ...] = ()
    abduction: tuple[Triplet, ...] = ()
    induction: tuple[InductionTask, ...] = ()
    error_prediction: tuple[Triplet, ...] = ()

    @property
    def size(self) -> int:
        return (
            len(self.deduction)
            + len(self.abduction)
            + len(self.induction)
            + len(self.error_prediction)
        )


class SeedLoad(msgspec.Struct, frozen=True, kw_only=True):
    """What loading a seed file into buffers did: entries admitted and dropped per type."""

    admitted: dict[str, int]
    dropped: dict[str, int]


_DECODER: Final = msgspec.json.Decoder(SeedFile)


def _canonical(program: str) -> str:
    norm = normalize_program(program)
    return program if isinstance(norm, Rejected) else norm.source


def seed_file_from_buffers(buffers: Buffers) -> SeedFile:
    """The buffers' entries (seeds included), programs in canonical form, without duplicates."""

    def triplets(items: Sequence[Triplet]) -> tuple[Triplet, ...]:
        out: dict[tuple[str, str], Triplet] = {}
        for t in items:
            canonical = Triplet(_canonical(t.program), t.input, t.output)
            out.setdefault((canonical.program, canonical.input), canonical)
        return tuple(out.values())

    induction: dict[tuple[str, tuple[str, ...]], InductionTask] = {}
    for task in buffers.induction:
        program = _canonical(task.program)
        inputs = tuple(p.input for p in (*task.shown, *task.hidden))
        induction.setdefault(
            (program, inputs),
            InductionTask(program, task.message, task.shown, task.hidden),
        )
    return SeedFile(
        deduction=triplets(list(buffers.deduction)),
        abduction=triplets(list(buffers.abduction)),
        induction=tuple(induction.values()),
        error_prediction=triplets(list(buffers.error_prediction)),
    )


def write_seed_file(path: str | Path, seeds: SeedFile) -> None:
    """Write ``seeds`` to ``path`` as indented JSON, atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = msgspec.json.format(msgspec.json.encode(seeds), indent=1)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(data + b"\n")
    Path(tmp.name).replace(target)


def read_seed_file(path: str | Path) -> SeedFile:
    """Read a seed file; :class:`ConfigError` (naming the file) when it cannot be used."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read seed file {path}: {exc.strerror or exc}") from None
    try:
        seeds = _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"seed file {path}: {exc}") from None
    if seeds.format != FORMAT:
        raise ConfigError(f"seed file {path}: format {seeds.format}, this version reads {FORMAT}")
    return seeds


def _interleaved(task: InductionTask) -> list[str]:
    """The inputs in the order they were proposed (hidden and shown alternate, hidden first)."""
    order: list[str] = []
    for i in range(max(len(task.hidden), len(task.shown))):
        order += [p.input for p in task.hidden[i : i + 1]]
        order += [p.input for p in task.shown[i : i + 1]]
    return order


def load_seed_file(buffers: Buffers, path: str | Path, verifier: Verifier) -> SeedLoad:
    """Validate every entry of the seed file at ``path`` again and admit the valid ones.

    ``verifier``'s validation settings apply, and the admitted triplets and pairs carry the
    outputs its sandbox computed, not the file's.
    """
    seeds = read_seed_file(path)
    admitted: dict[str, int] = {}
    dropped: dict[str, int] = {}
    for name, items, buffer in (
        ("deduction", seeds.deduction, buffers.deduction),
        ("abduction", seeds.abduction, buffers.abduction),
    ):
        checked = verifier.validate_batch([t.program for t in items], [t.input for t in items])
        good = [v.triplet for v in checked if v.valid and v.triplet is not None]
        admitted[name] = buffer.extend(good)
        dropped[name] = len(items) - len(good)
    plans = [
        validate_induction_plan(
            task.program, _interleaved(task), task.message, config=verifier.validation
        )
        for task in seeds.induction
    ]
    results = run_plans(plans, verifier.executor)
    good_tasks = [r.task for r in results if r.valid and r.task is not None]
    admitted["induction"] = buffers.induction.extend(good_tasks)
    dropped["induction"] = len(seeds.induction) - len(good_tasks)
    errors = seeds.error_prediction
    checked_errors = run_plans(
        [validate_error_plan(t.program, t.input, verifier.validation) for t in errors],
        verifier.executor,
    )
    good_errors = [t for reason, _, t in checked_errors if reason is Reason.OK and t is not None]
    admitted["error_prediction"] = buffers.error_prediction.extend(good_errors)
    dropped["error_prediction"] = len(errors) - len(good_errors)
    if any(dropped.values()):
        lost = ", ".join(f"{n} {k}" for k, n in dropped.items() if n)
        print(
            f"seed file {path}: left out entries that no longer validate: {lost}", file=sys.stderr
        )
    return SeedLoad(admitted=admitted, dropped=dropped)


async def seed_async(
    config: Config, out: str | Path, *, backend: GenerationBackend | None = None
) -> SeedFile:
    """Run only the seeding stage that ``config`` describes and write its buffers to ``out``.

    The run's own output (metrics, the resolved configuration) goes to a temporary directory;
    ``selfplay.seed_file``, if set, is where seeding starts from, as in training.
    """
    from azr.train import train_async

    captured: list[SeedFile] = []
    with tempfile.TemporaryDirectory(prefix="azr-seed-") as scratch:
        run = msgspec.structs.replace(config.run, steps=0, output_dir=scratch)
        seeding = msgspec.structs.replace(config, run=run)
        result = await train_async(
            seeding,
            backend=backend,
            on_buffers=lambda buffers: captured.append(seed_file_from_buffers(buffers)),
        )
    if not result.completed or not captured:
        raise RuntimeError(f"seeding stopped before it finished: {result.stop_reason}")
    write_seed_file(out, captured[0])
    return captured[0]
