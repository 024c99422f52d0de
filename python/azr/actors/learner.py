"""The learner actor: owns the policy being trained, pushes its weights to the generation
backend after every update, and writes checkpoints.

Updates, weight gathers and checkpoints run in worker threads, so the trio loop (and with it
generation of the next step in async mode, checking, and signal handling) carries on meanwhile.
A checkpoint is one directory written atomically, its manifest last: a stop while it is written
leaves the previous one as it was. The learner only writes it; the run commits it (metrics
line, then ``latest``: see :mod:`azr.run.checkpoints`).

Checkpoint layout (``<output_dir>/checkpoints``)::

    step-000050/learner/        Learner.save_checkpoint: weights, optimiser, scheduler, RNG, step
    step-000050/buffers/        the three task buffers
    step-000050/state.json      the coordinator's state (step, seeding done, buffer RNG, config)
    step-000050/manifest.json   size and SHA-256 of every file above
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import trio

from azr.actors._common import tell
from azr.actors.messages import (
    STATE_FILE,
    CheckpointSaved,
    CoordinatorEvent,
    LearnerReply,
    LearnerRequest,
    SaveCheckpoint,
    StepTrained,
    TrainStep,
)
from azr.generation.weight_sync import DistributedWeightSync
from azr.rl.learner import Learner
from azr.run.checkpoints import CheckpointStore
from azr.run.disk import disk_full_errors
from azr.runtime import ActorContext, Mailbox

__all__ = [
    "LEARNER_DIR",
    "STATE_FILE",
    "CheckpointStore",
    "LearnerActor",
    "WeightSink",
    "WeightSync",
]

LEARNER_DIR: Final = "learner"

WeightSync = Literal["in_process", "checkpoint"]
"""How new weights reach the backend: the live state dict (a backend in this process), or a
model directory written for a server to load. A :class:`DistributedWeightSync` instead
broadcasts them to SGLang servers over a collective group."""


class WeightSink(Protocol):
    """The part of a generation backend the learner uses."""

    async def update_weights(self, source: Any) -> int: ...


def _relative(name: str) -> Path:
    path = Path(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"checkpoint file names must be relative paths inside it: {name!r}")
    return path


class LearnerActor:
    """An actor run. ``weights_dir`` receives exported weights when ``weight_sync`` is
    ``"checkpoint"`` (one directory per version; older ones are removed once a newer one is
    served). A :class:`DistributedWeightSync` opens its group on the first push and is closed
    when the actor ends."""

    def __init__(
        self,
        *,
        learner: Learner,
        backend: WeightSink,
        weight_sync: WeightSync | DistributedWeightSync,
        store: CheckpointStore,
        inbox: Mailbox[LearnerRequest],
        coordinator: Mailbox[CoordinatorEvent],
        weights_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if weight_sync == "checkpoint" and weights_dir is None:
            raise ValueError("checkpoint weight sync needs a weights_dir")
        self.learner = learner
        self._backend = backend
        self._sync = weight_sync
        self._store = store
        self._inbox = inbox
        self._coordinator = coordinator
        self._weights_dir = Path(weights_dir) if weights_dir is not None else None
        self._served: Path | None = None

    async def __call__(self, ctx: ActorContext) -> None:
        ctx.started()
        try:
            async for request in ctx.messages(self._inbox):
                if self._inbox.closed:
                    continue  # stopping: no new update or checkpoint is begun
                await tell(self._coordinator, await self.handle(request))
        finally:
            if isinstance(self._sync, DistributedWeightSync):
                self._sync.close()

    async def handle(self, request: LearnerRequest) -> LearnerReply:
        rid = request.request_id
        match request:
            case TrainStep(step=step, batch=batch):
                learner = self.learner
                samples = batch.samples
                before = learner.weight_version
                lags = [before - s.weight_version for s in samples]
                start = time.perf_counter()
                metrics = None
                if any(s.response_ids for s in samples):
                    # Abandoned on cancellation: a stop must not wait for a long update whose
                    # result nobody will save.
                    metrics = await trio.to_thread.run_sync(
                        learner.step, batch, abandon_on_cancel=True
                    )
                updated = time.perf_counter()
                if learner.weight_version != before:
                    await self._push()
                return StepTrained(
                    request_id=rid,
                    step=step,
                    metrics=metrics,
                    weight_version=learner.weight_version,
                    update_seconds=updated - start,
                    sync_seconds=time.perf_counter() - updated,
                    staleness_mean=sum(lags) / len(lags) if lags else 0.0,
                    staleness_max=max(lags, default=0),
                )
            case SaveCheckpoint():
                start = time.perf_counter()
                # Not abandoned: the directory is either written and renamed into place or not
                # at all, and the thread must get to the end of one or the other.
                path = await trio.to_thread.run_sync(self._save, request)
                return CheckpointSaved(
                    request_id=rid,
                    step=request.step,
                    path=str(path),
                    seconds=time.perf_counter() - start,
                )
            case _:
                raise TypeError(f"the learner actor cannot handle {type(request).__name__}")

    async def _push(self) -> None:
        learner = self.learner
        if isinstance(self._sync, DistributedWeightSync):
            # Gathered in a worker thread, broadcast bucket by bucket (azr.generation.weight_sync).
            await self._sync.push(learner, learner.weight_version)
            return
        if self._sync == "in_process":
            # In a thread: sharded, this gathers every tensor from all ranks (a collective that
            # rank 0 announces under the group's lock, after any update still running).
            weights = await trio.to_thread.run_sync(learner.weights)
            await self._backend.update_weights(weights)
            return
        assert self._weights_dir is not None
        target = self._weights_dir / f"v{learner.weight_version:06d}"
        with disk_full_errors(f"weights {target.name}", self._weights_dir):
            source = await trio.to_thread.run_sync(learner.export_weights, target)
        await self._backend.update_weights(source)
        previous, self._served = self._served, target
        if previous is not None and previous != target:
            await trio.to_thread.run_sync(shutil.rmtree, previous, True)

    def _save(self, request: SaveCheckpoint) -> Path:
        path = self._store.path(request.step)
        with (
            disk_full_errors(f"checkpoint {path.name}", self._store.root),
            self._store.write(request.step) as tmp,
        ):
            self.learner.save_checkpoint(tmp / LEARNER_DIR)
            for blob in request.files:
                target = tmp / _relative(blob.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob.data)
        return path
