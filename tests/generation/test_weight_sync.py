"""A run's NCCL weight sync, end to end at the learner actor, over gloo.

The real :class:`~azr.actors.LearnerActor` trains the tiny model and pushes its weights with a
:class:`~azr.generation.weight_sync.DistributedWeightSync` through the real
:class:`~azr.generation.sglang.SGLangBackend`, over HTTP, to ``weight_receiver.py``: a second
process that answers SGLang's control endpoints and receives the tensors the way SGLang's
servers do (see ``tests/conftest.py``). SGLang itself needs a GPU and NCCL; the receiver follows
SGLang's documented protocol, and gloo runs the same collective code on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
import torch
import trio

from _train_batches import train_batch
from azr.actors.learner import CheckpointStore, LearnerActor
from azr.actors.messages import CoordinatorEvent, LearnerRequest, StepTrained, TrainStep
from azr.generation.base import WeightSyncError
from azr.generation.sglang import SGLangBackend, SGLangConfig
from azr.generation.weight_sync import DistributedWeightSync
from azr.models import TinyModelSpec
from azr.rl import Learner, LearnerConfig
from azr.runtime import open_mailbox

SPEC = TinyModelSpec(
    hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
)
BUCKET_BYTES = 64 * 1024  # several buckets for the ~0.2 MiB of bf16 weights


def _bf16_weights(learner: Learner) -> dict[str, torch.Tensor]:
    """The policy's weights as a server should receive them: state-dict order, bfloat16, a
    tensor tied under two names sent once (under its first)."""
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in learner.model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        out[name] = tensor.detach().to(torch.bfloat16).clone()
    return out


def _requests(out: Path) -> list[dict[str, Any]]:
    lines = (out / "requests.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _received(out: Path) -> list[dict[str, Any]]:
    return [torch.load(p, weights_only=True) for p in sorted(out.glob("update-*.pt"))]


def _setup(
    url: str, port: int, tmp_path: Path, group_name: str = "azr_weights"
) -> tuple[Learner, SGLangBackend, DistributedWeightSync, LearnerActor]:
    learner = Learner.from_pretrained(None, LearnerConfig.tiny_cpu(micro_batch_size=4), spec=SPEC)
    backend = SGLangBackend(SGLangConfig(url=url, control_timeout_s=60.0))
    sync = DistributedWeightSync(
        backend,
        bucket_bytes=BUCKET_BYTES,
        master_address="127.0.0.1",
        master_port=port,
        group_name=group_name,
        collective_backend="gloo",
        timeout_s=60.0,
    )
    actor = LearnerActor(
        learner=learner,
        backend=backend,
        weight_sync=sync,
        store=CheckpointStore(tmp_path / "checkpoints"),
        inbox=open_mailbox(LearnerRequest, 2),
        coordinator=open_mailbox(CoordinatorEvent, 2),
    )
    return learner, backend, sync, actor


def test_every_push_after_a_real_step_delivers_the_learners_bf16_weights(
    receiver: tuple[str, Path], free_port: int, tmp_path: Path
) -> None:
    url, out = receiver
    learner, backend, sync, actor = _setup(url, free_port, tmp_path)
    initial = _bf16_weights(learner)
    pushed: list[dict[str, torch.Tensor]] = []
    replies: list[StepTrained] = []
    timings = []

    async def main() -> None:
        with trio.fail_after(120):
            async with backend:
                try:
                    for version in (1, 2):
                        step = TrainStep(
                            request_id=version, step=version, batch=train_batch(version - 1)
                        )
                        reply = await actor.handle(step)
                        assert isinstance(reply, StepTrained)
                        replies.append(reply)
                        pushed.append(_bf16_weights(learner))
                        timings.append(sync.last)
                finally:
                    sync.close()

    trio.run(main)

    assert [r.weight_version for r in replies] == [1, 2] and backend.weight_version == 2
    assert sync.groups_opened == 1
    # Real updates: every push carries weights the servers did not have yet.
    assert any(not torch.equal(initial[n], pushed[0][n]) for n in initial)
    assert any(not torch.equal(pushed[0][n], pushed[1][n]) for n in initial)

    paths = [r["path"] for r in _requests(out)]
    counts = [t.buckets for t in timings if t is not None]
    assert len(counts) == 2 and min(counts) >= 3
    per_push = [
        "/pause_generation",
        *["/update_weights_from_distributed"] * counts[0],
        "/flush_cache",
        "/continue_generation",
    ]
    assert paths == ["/init_weights_update_group", *per_push, *per_push]
    init = _requests(out)[0]["body"]
    assert init == {
        "master_address": "127.0.0.1",
        "master_port": free_port,
        "rank_offset": 1,
        "world_size": 2,
        "group_name": "azr_weights",
        "backend": "gloo",
    }

    updates = _received(out)
    assert len(updates) == sum(counts)
    for version, expected in ((1, pushed[0]), (2, pushed[1])):
        received: dict[str, torch.Tensor] = {}
        first = counts[0] * (version - 1)
        for update in updates[first : first + counts[version - 1]]:
            request = update["request"]
            assert request["group_name"] == "azr_weights"
            assert request["weight_version"] == str(version)
            assert request["flush_cache"] is False
            for name, dtype, shape in zip(
                request["names"], request["dtypes"], request["shapes"], strict=True
            ):
                tensor = update["tensors"][name]
                assert dtype == "bfloat16" and tensor.dtype == torch.bfloat16
                assert list(tensor.shape) == shape
                assert name not in received
                received[name] = tensor
        assert list(received) == list(expected)  # every tensor, once, in the learner's order
        for name, tensor in expected.items():
            assert torch.equal(received[name], tensor), (version, name)

    for reply, timing in zip(replies, timings, strict=True):
        assert timing is not None and timing.bytes == sum(t.numel() * 2 for t in pushed[0].values())
        # The push (gather, requests, broadcasts) is what the step reports as time/weight_sync.
        assert reply.sync_seconds >= timing.seconds >= timing.broadcast_seconds > 0


@pytest.mark.parametrize("receiver", [4], indirect=True)
def test_a_refused_bucket_breaks_the_group_and_later_pushes_fail_at_once(
    receiver: tuple[str, Path], free_port: int, tmp_path: Path
) -> None:
    url, out = receiver  # refuses the 5th bucket: the second push's second bucket
    # A broken group stays registered in this process (its broadcast is abandoned, not
    # withdrawn): a name of its own keeps it from the other tests'.
    _, backend, sync, actor = _setup(url, free_port, tmp_path, "azr_weights_refused")
    errors: list[WeightSyncError] = []

    async def main() -> None:
        with trio.fail_after(60):
            async with backend:
                await actor.handle(TrainStep(request_id=1, step=1, batch=train_batch(0)))
                assert sync.last is not None and sync.last.buckets == 3
                for step in (2, 3):
                    with pytest.raises(WeightSyncError) as caught:
                        await actor.handle(
                            TrainStep(request_id=step, step=step, batch=train_batch(1))
                        )
                    errors.append(caught.value)
                sync.close()

    trio.run(main)

    assert "refused" in str(errors[0]) and "/update_weights_from_distributed" in str(errors[0])
    assert "broke during an earlier update" in str(errors[1])
    assert "--resume" in str(errors[1])
    assert backend.weight_version == 1  # the failed push never claimed version 2
    paths = [r["path"] for r in _requests(out)]
    assert paths.count("/init_weights_update_group") == 1
    # The failed push still resumed generation; the third never paused the servers.
    assert paths[-1] == "/continue_generation"
    assert paths.count("/pause_generation") == 2


def test_the_run_uses_the_configured_weight_sync(tmp_path: Path) -> None:
    from azr.config import load_config
    from azr.train import _make_backend

    learner = Learner.from_pretrained(None, LearnerConfig.tiny_cpu(micro_batch_size=4), spec=SPEC)
    connect = [
        "generation.backend=sglang",
        f"model.path={tmp_path}",
        "generation.sglang.launch=false",  # nothing is started or contacted
        "generation.sglang.url=http://127.0.0.1:30000",
    ]

    async def make(*overrides: str) -> object:
        config = load_config(preset="tiny-cpu", overrides=[*connect, *overrides])
        # The actor system is only used to launch a server.
        backend, sync = await _make_backend(cast(Any, None), config, learner, None, tmp_path)
        assert isinstance(backend, SGLangBackend)
        await backend.aclose()
        return sync

    async def main() -> None:
        assert await make() == "checkpoint"
        sync = await make(
            "generation.sglang.weight_sync=distributed", "learner.distributed.weight_bucket_mb=3"
        )
        assert isinstance(sync, DistributedWeightSync)
        assert (sync.bucket_bytes, sync.group_name, sync.groups_opened) == (
            3 << 20,
            "azr_weights",
            0,
        )
        sync = await make(
            "generation.sglang.weight_sync=distributed",
            "generation.sglang.weight_group.bucket_mb=7",
            "generation.sglang.weight_group.group_name=mine",
        )
        assert isinstance(sync, DistributedWeightSync)
        assert (sync.bucket_bytes, sync.group_name) == (7 << 20, "mine")

    trio.run(main)
