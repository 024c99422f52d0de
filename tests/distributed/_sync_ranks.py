"""One rank of test_sharded_weight_sync.py (run under torchrun).

Rank 0 builds the sharded learner and, twice, takes a step and pushes the weights through a
:class:`~azr.generation.weight_sync.DistributedWeightSync` and the real SGLang backend to the
receiver at URL, whose weight-update group meets at 127.0.0.1:PORT (its own rendezvous, beside
torchrun's). Rank 1 runs the follower loop, so it joins each gather only when rank 0's worker
thread announces it. What rank 0 writes into OUT after each push N (N = 1, 2):

    pN.pt      the full float32 weights, gathered again after the push
    tN.json    the push's timing (buckets, tensors, bytes)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec
import torch
import trio
from _learner_ranks import CONFIG, SEED, SPEC, batch, full_weights

from azr.generation.sglang import SGLangBackend, SGLangConfig
from azr.generation.weight_sync import DistributedWeightSync
from azr.rl.distributed import FromPretrained, open_group
from azr.rl.follower import build_learner, follow
from azr.rl.learner import Learner

BUCKET_BYTES = 16 * 1024  # several buckets for the tiny model's bf16 weights
TIMEOUT_S = 30.0  # a hang fails the test well inside its own limit


async def leader(learner: Learner, url: str, port: int, out: Path) -> None:
    backend = SGLangBackend(SGLangConfig(url=url, control_timeout_s=TIMEOUT_S))
    sync = DistributedWeightSync(
        backend,
        bucket_bytes=BUCKET_BYTES,
        master_address="127.0.0.1",
        master_port=port,
        collective_backend="gloo",
        timeout_s=TIMEOUT_S,
    )
    with trio.fail_after(2 * TIMEOUT_S):
        async with backend:
            try:
                for version in (1, 2):
                    learner.step(batch(version - 1))
                    timing = await sync.push(learner, version)
                    torch.save(full_weights(learner), out / f"p{version}.pt")
                    (out / f"t{version}.json").write_bytes(msgspec.json.encode(timing))
            finally:
                sync.close()
    (out / "done.json").write_text(json.dumps({"opened": sync.groups_opened}))


def main(out: Path, url: str, port: int) -> None:
    with open_group(CONFIG) as group:
        if not group.is_leader:
            follow(group)
            return
        try:
            learner = build_learner(FromPretrained(None, SPEC, SEED), CONFIG)
            trio.run(leader, learner, url, port, out)
        finally:
            group.stop(timeout=60)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
