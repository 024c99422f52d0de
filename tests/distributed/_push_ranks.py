"""One rank of test_push_off_the_loop.py (run under torchrun).

Rank 0 builds a sharded learner, takes a step, then runs the learner actor's weight push to an
in-process torch backend on a trio loop, beside a task that marks OUT/ticked once the loop has
turned. Rank 1 follows, but joins the gather of the weights only once that mark exists (or
after WAIT seconds): a push that blocks the loop for the gather's duration would never let the
mark be made. What lands in OUT: rank1.json (whether the mark came first), rank0.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import trio
from _learner_ranks import CONFIG, SEED, SPEC, batch

from azr.actors.learner import LearnerActor
from azr.actors.messages import CoordinatorEvent, LearnerRequest
from azr.generation.torch import TorchBackend
from azr.models import load_model
from azr.rl.distributed import Build, FromPretrained, Gather, LearnerGroup, Step, Stop, open_group
from azr.rl.follower import build_learner
from azr.rl.learner import Learner
from azr.run.checkpoints import CheckpointStore
from azr.runtime import open_mailbox

WAIT = 20.0


def follower(group: LearnerGroup, out: Path) -> None:
    command = group.receive()
    assert isinstance(command, Build)
    learner = Learner.from_pretrained(None, command.config, spec=SPEC, seed=SEED)
    command = group.receive()
    assert isinstance(command, Step)
    learner.step(command.batch)
    command = group.receive()
    assert isinstance(command, Gather)
    deadline = time.monotonic() + WAIT
    while not (out / "ticked").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    (out / "rank1.json").write_text(json.dumps({"ticked_first": (out / "ticked").exists()}))
    for _ in range(2):  # the push's gather, then rank 0's own check of what was served
        dtype = getattr(torch, command.dtype)
        for _ in learner.weight_buckets(dtype=dtype, bucket_bytes=command.bucket_bytes):
            pass
        command = group.receive()
        if not isinstance(command, Gather):
            break
    assert isinstance(command, Stop), command


async def leader(learner: Learner, out: Path) -> None:
    model, tokenizer = load_model(None, spec=SPEC, seed=SEED + 1)
    backend = TorchBackend(model, tokenizer, device="cpu")
    actor = LearnerActor(
        learner=learner,
        backend=backend,
        weight_sync="in_process",
        store=CheckpointStore(out / "checkpoints"),
        inbox=open_mailbox(LearnerRequest, 2),
        coordinator=open_mailbox(CoordinatorEvent, 2),
    )

    async def tick() -> None:
        await trio.sleep(0.05)
        (out / "ticked").touch()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(actor._push)
        nursery.start_soon(tick)
    served = backend._model.state_dict()
    live = {n: t for bucket in learner.weight_buckets(dtype=torch.float32) for n, t in bucket}
    same = all(torch.equal(served[n], t) for n, t in live.items())
    record = {"version": backend.weight_version, "same": same}
    (out / "rank0.json").write_text(json.dumps(record))


def main(out: Path) -> None:
    with open_group(CONFIG) as group:
        if not group.is_leader:
            follower(group, out)
            return
        try:
            learner = build_learner(FromPretrained(None, SPEC, SEED), CONFIG)
            learner.step(batch(0))
            trio.run(leader, learner, out)
        finally:
            group.stop(timeout=60)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
