"""What every learner rank but rank 0 runs: do what rank 0 announces, until it says stop.

Rank 0 builds its learner with :func:`build_learner` and then uses it as in one process; each
call that needs all ranks announces itself (:mod:`azr.rl.distributed`), and :func:`follow`
makes the same call here. A follower never decides anything: stop signals are rank 0's to act
on (it stops the run, finishes a checkpoint being written, and then sends ``Stop``), and a
follower whose rank 0 is gone fails at its next collective.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from azr.rl.config import LearnerConfig
from azr.rl.distributed import (
    Build,
    FromCheckpoint,
    FromPretrained,
    Gather,
    LearnerGroup,
    Save,
    Step,
    Stop,
    current_group,
    leading,
)

if TYPE_CHECKING:
    from azr.rl.learner import Learner

__all__ = ["build_learner", "follow"]


def _build(source: FromPretrained | FromCheckpoint, config: LearnerConfig) -> Learner:
    from azr.rl.learner import Learner

    match source:
        case FromCheckpoint(path=path):
            return Learner.from_checkpoint(path, config)
        case FromPretrained(path=path, spec=spec, seed=seed):
            return Learner.from_pretrained(path, config, spec=spec, seed=seed)


def build_learner(source: FromPretrained | FromCheckpoint, config: LearnerConfig) -> Learner:
    """The learner of ``source``; under torchrun every rank builds its shard of it (rank 0
    announces it). In one process, just the learner."""
    with leading(current_group(), Build(source=source, config=config)):
        return _build(source, config)


def follow(group: LearnerGroup) -> None:
    """Run rank 0's commands on this rank until it sends ``Stop``."""
    from azr.rl.sharded_checkpoint import write_shards

    learner: Learner | None = None
    while True:
        command = group.receive()
        if isinstance(command, Stop):
            return
        if isinstance(command, Build):
            learner = _build(command.source, command.config)
            continue
        if learner is None:
            raise RuntimeError(f"rank 0 sent {type(command).__name__} before building a learner")
        match command:
            case Step(batch=batch):
                # A batch rank 0 rejects too, before any collective: nothing to do.
                with contextlib.suppress(ValueError):
                    learner.step(batch)
            case Save(path=path):
                write_shards(learner, Path(path))
            case Gather(dtype=dtype, bucket_bytes=size):
                for _ in learner.weight_buckets(dtype=getattr(torch, dtype), bucket_bytes=size):
                    pass
