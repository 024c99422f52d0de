"""Held-out evaluation at CPU scale: fixed deduction, abduction and induction tasks.

The tasks come from the pretraining program generator (:mod:`azr.pretrain.programs`) with a seed
of their own, so they share the base model's distribution but are not items it saw: the
pretraining corpus skips every program whose normalised hash is in this set, and the self-play
buffers refuse them too (:func:`is_heldout`). The coordinator solves them greedily with the
policy being trained every ``run.eval_every`` steps and logs ``eval/<type>/accuracy``.

Outputs and the induction split come from the sandbox, as for any proposal: the tasks are built
once per process by :func:`heldout_tasks` and are the same on every machine.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from azr.pretrain.programs import GeneratedProgram, generate, program_hash
from azr.tasks.types import (
    AbductionTask,
    DeductionTask,
    ProposeRequest,
    SolveTask,
    TaskType,
)
from azr.verify import Verdict, Verifier

if TYPE_CHECKING:
    from azr.config import VerifierSettings

__all__ = [
    "HELDOUT_SEED",
    "HeldOutSpec",
    "heldout_hashes",
    "heldout_metrics",
    "heldout_programs",
    "heldout_tasks",
    "is_heldout",
    "load_heldout_tasks",
    "run_summary",
    "summary",
]

HELDOUT_SEED: Final = 7_919_001
"""The generator seed of the held-out set (the corpus uses the recipe's seed, a small number)."""


class HeldOutSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``per_type`` tasks of each type from ``programs`` generated programs of seed ``seed``;
    induction tasks show half of ``induction_inputs`` pairs and hide the rest."""

    seed: int = HELDOUT_SEED
    programs: int = 200
    per_type: int = 32
    induction_inputs: int = 4


DEFAULT_SPEC: Final = HeldOutSpec()


def heldout_programs(spec: HeldOutSpec = DEFAULT_SPEC) -> list[GeneratedProgram]:
    """The distinct programs the held-out tasks are drawn from."""
    seen: dict[str, GeneratedProgram] = {}
    for p in generate(spec.seed, spec.programs * 3, max(spec.induction_inputs, 2)):
        seen.setdefault(program_hash(p.program), p)
        if len(seen) == spec.programs:
            break
    return list(seen.values())


@functools.cache
def heldout_hashes(spec: HeldOutSpec = DEFAULT_SPEC) -> frozenset[str]:
    """Normalised-program hashes of the held-out set (no sandbox needed)."""
    return frozenset(program_hash(p.program) for p in heldout_programs(spec))


def is_heldout(program: str, spec: HeldOutSpec = DEFAULT_SPEC) -> bool:
    """Whether ``program`` is, once normalised, one of the held-out programs."""
    return program_hash(program) in heldout_hashes(spec)


def heldout_tasks(verifier: Verifier, spec: HeldOutSpec = DEFAULT_SPEC) -> list[SolveTask]:
    """``spec.per_type`` tasks of each type, deduction then abduction then induction.

    Deduction and abduction tasks take the first input of distinct programs (abduction from the
    second half of the program list, so the two sets share no program); induction tasks use the
    programs in between. Programs or inputs the sandbox rejects are skipped.
    """
    programs = heldout_programs(spec)
    n = spec.per_type
    firsts = [(p.program, p.inputs[0]) for p in programs]
    checked = verifier.validate_batch([p for p, _ in firsts], [i for _, i in firsts])
    triplets = [v.triplet for v in checked if v.valid and v.triplet is not None]
    half = len(triplets) // 2
    deduction = [DeductionTask.from_triplet(t) for t in triplets[:half][:n]]
    abduction = [AbductionTask.from_triplet(t) for t in triplets[half:][:n]]

    used = {t.program for t in triplets[:n]} | {t.program for t in triplets[half:][:n]}
    candidates = [p for p in programs if p.program not in used]
    k = spec.induction_inputs
    requests = [
        ProposeRequest(TaskType.INDUCTION, program=p.program, n_inputs=k)
        for p in candidates
        if len(p.inputs) >= k
    ]
    messages = [p.message for p in candidates if len(p.inputs) >= k]
    inputs = [p.inputs[:k] for p in candidates if len(p.inputs) >= k]
    induction: list[SolveTask] = []
    for request, message, xs in zip(requests, messages, inputs, strict=True):
        assert request.program is not None
        result = verifier.validate_induction(request.program, xs, message, n_requested=k)
        if result.valid and result.task is not None:
            induction.append(result.task)
        if len(induction) == n:
            break
    return [*deduction, *abduction, *induction]


@functools.cache
def load_heldout_tasks(
    settings: VerifierSettings, spec: HeldOutSpec = DEFAULT_SPEC
) -> tuple[SolveTask, ...]:
    """:func:`heldout_tasks` through a sandbox configured as the run's verifier (built once per
    process and configuration)."""
    with Verifier(
        workers=settings.workers,
        limits=settings.limits,
        checks=settings.checks,
        validation=settings.validation,
    ) as verifier:
        return tuple(heldout_tasks(verifier, spec))


def heldout_metrics(tasks: Sequence[SolveTask], verdicts: Sequence[Verdict]) -> dict[str, float]:
    """``eval/<type>/accuracy`` (unscored verdicts count as wrong: the task is fixed, so a
    sandbox failure on it is the policy's answer failing), ``eval/<type>/format`` (share of
    answers with the wrong shape) and ``eval/accuracy`` (mean over the types)."""
    correct: dict[str, list[float]] = {}
    badly_formed: dict[str, list[float]] = {}
    for task, verdict in zip(tasks, verdicts, strict=True):
        name = task.task_type.value
        correct.setdefault(name, []).append(float(verdict.correct))
        badly_formed.setdefault(name, []).append(float(verdict.reward <= -1.0))
    out: dict[str, float] = {}
    for name, values in correct.items():
        out[f"eval/{name}/accuracy"] = sum(values) / len(values)
        out[f"eval/{name}/format"] = sum(badly_formed[name]) / len(badly_formed[name])
    if correct:
        out["eval/accuracy"] = sum(out[f"eval/{n}/accuracy"] for n in correct) / len(correct)
    return out


def run_summary(metrics: str | os.PathLike[str]) -> str:
    """The before -> after summary of a run's ``metrics.jsonl`` (its first and last records
    with held-out accuracy); empty if it has fewer than two."""
    records = []
    for line in Path(metrics).read_bytes().splitlines():
        try:
            record = msgspec.json.decode(line)
        except msgspec.DecodeError:
            continue
        if isinstance(record, dict) and "eval/accuracy" in record:
            records.append(record)
    if len(records) < 2:
        return ""
    first, last = records[0], records[-1]
    return summary(first, last, (int(first["step"]), int(last["step"])))


def summary(
    before: Mapping[str, float], after: Mapping[str, float], steps: tuple[int, int] | None = None
) -> str:
    """A before -> after table of held-out accuracy per type."""
    at = f" (step {steps[0]} -> step {steps[1]})" if steps else ""
    lines = [f"held-out accuracy, greedy{at}:"]
    for t in ("deduction", "abduction", "induction"):
        key = f"eval/{t}/accuracy"
        if key in before and key in after:
            lines.append(f"  {t:<10} {before[key]:6.1%} -> {after[key]:6.1%}")
    if "eval/accuracy" in before and "eval/accuracy" in after:
        b, a = before["eval/accuracy"], after["eval/accuracy"]
        lines.append(f"  {'mean':<10} {b:6.1%} -> {a:6.1%}  ({(a - b) * 100:+.1f} points)")
    return "\n".join(lines)
