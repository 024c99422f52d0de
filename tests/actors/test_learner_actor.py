"""The learner actor: an update, a weight push to a real backend, atomic checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import trio

from _train_batches import train_batch
from azr.actors.learner import LEARNER_DIR, CheckpointStore, LearnerActor
from azr.actors.messages import (
    STATE_FILE,
    Blob,
    CheckpointSaved,
    CoordinatorEvent,
    LearnerRequest,
    SaveCheckpoint,
    StepTrained,
    TrainStep,
)
from azr.generation import TorchBackend
from azr.models import TinyModelSpec
from azr.rl import Learner, LearnerConfig, TrainBatch
from azr.runtime import open_mailbox

from ._support import trio_test

SPEC = TinyModelSpec(
    hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
)


def _learner() -> Learner:
    return Learner.from_pretrained(None, LearnerConfig.tiny_cpu(micro_batch_size=4), spec=SPEC)


def _actor(learner: Learner, backend: TorchBackend, store: CheckpointStore) -> LearnerActor:
    return LearnerActor(
        learner=learner,
        backend=backend,
        weight_sync="in_process",
        store=store,
        inbox=open_mailbox(LearnerRequest, 2),
        coordinator=open_mailbox(CoordinatorEvent, 2),
    )


@trio_test(timeout=60)
async def test_an_update_reaches_the_backend(tmp_path: Path) -> None:
    learner = _learner()
    backend = TorchBackend(learner.model, learner.tokenizer, device="cpu")
    actor = _actor(learner, backend, CheckpointStore(tmp_path))
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}

    reply = await actor.handle(TrainStep(request_id=1, step=1, batch=train_batch()))
    assert isinstance(reply, StepTrained) and reply.request_id == 1
    assert reply.metrics is not None and not reply.metrics.skipped
    assert reply.weight_version == learner.weight_version == backend.weight_version == 1
    assert reply.staleness_max == 0
    live = learner.model.state_dict()
    served = backend._model.state_dict()
    assert any(not torch.equal(before[k], live[k]) for k in live)
    assert all(torch.equal(live[k], served[k]) for k in live)

    # Samples generated two versions ago are two versions stale.
    learner.step_count = 2
    reply = await actor.handle(TrainStep(request_id=2, step=2, batch=train_batch(version=0)))
    assert isinstance(reply, StepTrained) and reply.staleness_max == 2


@trio_test(timeout=30)
async def test_an_empty_batch_keeps_the_weights(tmp_path: Path) -> None:
    learner = _learner()
    backend = TorchBackend(learner.model, learner.tokenizer, device="cpu")
    actor = _actor(learner, backend, CheckpointStore(tmp_path))
    reply = await actor.handle(TrainStep(request_id=1, step=1, batch=TrainBatch(())))
    assert isinstance(reply, StepTrained)
    assert reply.metrics is None and reply.weight_version == 0 == backend.weight_version


@trio_test(timeout=60)
async def test_checkpoints_are_complete_directories_and_old_ones_go(tmp_path: Path) -> None:
    learner = _learner()
    backend = TorchBackend(learner.model, learner.tokenizer, device="cpu")
    store = CheckpointStore(tmp_path / "checkpoints")
    actor = _actor(learner, backend, store)
    assert store.latest() is None
    for step in (1, 2, 3):
        await actor.handle(TrainStep(request_id=step, step=step, batch=train_batch()))
        files = (Blob(STATE_FILE, b'{"step": %d}' % step), Blob("buffers/x.msgpack", b"\x01"))
        saved = await actor.handle(SaveCheckpoint(request_id=10 + step, step=step, files=files))
        assert isinstance(saved, CheckpointSaved) and saved.path == str(store.path(step))
        # Written, not committed: the run moves ``latest`` once the step's metrics are recorded.
        assert store.published() == (step - 1 if step > 1 else None)
        store.publish(step, keep=2)
    assert store.latest() == store.path(3)
    assert sorted(p.name for p in store.root.glob("step-*")) == ["step-000002", "step-000003"]
    newest = store.path(3)
    assert (newest / "buffers" / "x.msgpack").read_bytes() == b"\x01"
    assert not list(store.root.glob(".*tmp*"))  # nothing half-written left behind
    resumed = Learner.from_checkpoint(newest / LEARNER_DIR)
    assert resumed.step_count == 3
    live = learner.model.state_dict()
    assert all(torch.equal(live[k], v) for k, v in resumed.model.state_dict().items())

    assert store.verify(3) == newest  # the manifest matches what is there

    # A lost pointer is not a lost checkpoint: the newest complete directory is chosen.
    (store.root / "latest").unlink()
    choice = store.choose()
    assert choice.path == newest
    # A missing file is damage: set aside, and the one before is chosen.
    (newest / STATE_FILE).unlink()
    choice = store.choose()
    assert choice.path == store.path(2)
    assert any("state.json: missing" in note for note in choice.notes), choice.notes


@trio_test(timeout=30)
async def test_checkpoint_files_must_stay_inside(tmp_path: Path) -> None:
    learner = _learner()
    backend = TorchBackend(learner.model, learner.tokenizer, device="cpu")
    store = CheckpointStore(tmp_path)
    actor = _actor(learner, backend, store)
    with pytest.raises(ValueError, match="relative"):
        await actor.handle(SaveCheckpoint(request_id=1, step=1, files=(Blob("../escape", b""),)))
    assert store.latest() is None and not (tmp_path / "escape").exists()
    await trio.lowlevel.checkpoint()
