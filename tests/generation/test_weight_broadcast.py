"""The learner's side of SGLang's NCCL weight sync, over gloo, against a second real process.

The other process (``weight_receiver.py``) plays an SGLang server: it answers the control
requests of the real :class:`~azr.generation.sglang.SGLangBackend` over HTTP, joins the weight
group the way SGLang's servers do, and receives each bucket by the metadata of its request
(names, dtypes, shapes). The test checks that it got every tensor, in order, equal to the
learner's in bfloat16. NCCL itself needs GPUs; gloo runs the same collective code on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import trio

from azr.generation.sglang import SGLangBackend, SGLangConfig
from azr.generation.weight_broadcast import (
    BroadcastTiming,
    broadcast_weights,
    bucket_weights,
    open_weight_update_group,
)
from azr.models import TinyModelSpec, load_model

SPEC = TinyModelSpec(
    hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
)


def test_buckets_keep_order_convert_to_bf16_and_respect_the_size() -> None:
    weights = [
        ("a", torch.ones(10, dtype=torch.float32)),  # 20 bytes in bf16
        ("b", torch.ones(30, dtype=torch.float32)),  # 60: would overflow a 64-byte bucket
        ("steps", torch.arange(3)),  # an integer buffer keeps its dtype (24 bytes)
        ("huge", torch.ones(100)),  # larger than a bucket: alone
    ]
    buckets = list(bucket_weights(weights, bucket_bytes=64))
    assert [b.names for b in buckets] == [("a",), ("b",), ("steps",), ("huge",)]
    assert [b.nbytes for b in buckets] == [20, 60, 24, 200]
    meta = buckets[1].metadata("g", version=3)
    assert (meta.dtypes, meta.shapes, meta.version) == (("bfloat16",), ((30,),), 3)
    assert buckets[2].tensors[0].dtype == torch.int64
    together = list(bucket_weights(weights[:2], bucket_bytes=80))
    assert [b.names for b in together] == [("a", "b")]
    with pytest.raises(ValueError):
        list(bucket_weights(weights, bucket_bytes=0))


def test_the_receiving_server_gets_every_tensor_in_order(
    receiver: tuple[str, Path], free_port: int
) -> None:
    url, out = receiver
    model, _ = load_model(None, spec=SPEC, seed=0)
    state = model.state_dict()
    master_port = free_port
    timings: list[BroadcastTiming] = []

    async def main() -> None:
        with trio.fail_after(60):
            await sync()

    async def sync() -> None:
        config = SGLangConfig(url=url, control_timeout_s=60.0)
        async with SGLangBackend(config) as backend:

            async def ask_servers_to_join() -> None:
                offsets = await backend.init_weights_update_group(
                    master_address="127.0.0.1",
                    master_port=master_port,
                    world_size=2,
                    group_name="azr_weights",
                    backend="gloo",
                )
                assert offsets == {url: 1}

            group = await open_weight_update_group(
                ask_servers_to_join,
                master_address="127.0.0.1",
                master_port=master_port,
                world_size=2,
                group_name="azr_weights",
                backend="gloo",
                timeout_s=60.0,
            )
            try:
                async with backend.weight_update(1) as update:
                    timings.append(
                        await broadcast_weights(
                            group,
                            update.load_distributed,
                            iter(state.items()),
                            version=1,
                            bucket_bytes=64 * 1024,
                        )
                    )
                assert backend.weight_version == 1
            finally:
                group.close()

    trio.run(main)

    requests = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    paths = [r["path"] for r in requests]
    updates = sorted(out.glob("update-*.pt"))
    timing = timings[0]
    assert timing.buckets == len(updates) >= 3  # 64 KiB buckets: several requests
    assert paths == [
        "/init_weights_update_group",
        "/pause_generation",
        *["/update_weights_from_distributed"] * timing.buckets,
        "/flush_cache",
        "/continue_generation",
    ]
    init = requests[0]["body"]
    assert (init["rank_offset"], init["world_size"], init["group_name"]) == (1, 2, "azr_weights")

    received: dict[str, torch.Tensor] = {}
    for path in updates:
        update = torch.load(path, weights_only=True)
        request = update["request"]
        assert request["group_name"] == "azr_weights" and request["weight_version"] == "1"
        assert request["flush_cache"] is False
        for name, dtype, shape in zip(
            request["names"], request["dtypes"], request["shapes"], strict=True
        ):
            tensor = update["tensors"][name]
            assert dtype == "bfloat16" and list(tensor.shape) == shape
            received[name] = tensor
    assert list(received) == list(state)  # every tensor, in the learner's order
    for name, tensor in state.items():
        assert torch.equal(received[name], tensor.to(torch.bfloat16)), name
    expected_bytes = sum(t.numel() * 2 for t in state.values())
    assert timing.bytes == expected_bytes and timing.tensors == len(state)
    assert timing.seconds >= timing.broadcast_seconds > 0
