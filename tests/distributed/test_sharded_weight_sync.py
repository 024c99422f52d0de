"""The distributed weight sync from a sharded learner, on two real gloo ranks.

One torchrun job (`_sync_ranks.py`): rank 0 steps the FSDP2 learner and pushes its weights
twice through :class:`~azr.generation.weight_sync.DistributedWeightSync` and the real
:class:`~azr.generation.sglang.SGLangBackend`, over HTTP, to the weight receiver (the process
that plays SGLang's servers, see ``tests/conftest.py``); rank 1 follows every gather. The
receiver's tensors are compared with the full weights rank 0 gathers after each push, and
their names and shapes with a one-process learner's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from _learner_ranks import CONFIG, SEED, SPEC, batch  # noqa: E402
from test_sharded_learner import run_ranks  # noqa: E402

from azr.rl import Learner  # noqa: E402


def _lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]


def test_a_sharded_learner_pushes_its_full_bf16_weights_to_the_servers(
    receiver: tuple[str, Path], free_port: int, tmp_path: Path
) -> None:
    url, received_dir = receiver
    out = tmp_path / "ranks"
    out.mkdir()
    run_ranks(HERE / "_sync_ranks.py", str(out), url, str(free_port), timeout=90)
    assert json.loads((out / "done.json").read_text()) == {"opened": 1}

    # The same two steps in one process: what the servers must end up with, by name and shape
    # (in the unsharded model's order), and by value up to float32 summation order.
    one = Learner.from_pretrained(None, CONFIG, spec=SPEC, seed=SEED)
    reference = []
    for version in (1, 2):
        one.step(batch(version - 1))
        reference.append({n: t.detach().clone() for n, t in one.model.state_dict().items()})

    requests = _lines(received_dir)
    timings = [json.loads((out / f"t{v}.json").read_text()) for v in (1, 2)]
    counts = [t["buckets"] for t in timings]
    assert counts[0] == counts[1] >= 3
    per_push = [
        "/pause_generation",
        *["/update_weights_from_distributed"] * counts[0],
        "/flush_cache",
        "/continue_generation",
    ]
    assert [r["path"] for r in requests] == ["/init_weights_update_group", *per_push, *per_push]
    assert requests[0]["body"] == {
        "master_address": "127.0.0.1",
        "master_port": free_port,
        "rank_offset": 1,
        "world_size": 2,
        "group_name": "azr_weights",
        "backend": "gloo",
    }

    updates = [torch.load(p, weights_only=True) for p in sorted(received_dir.glob("update-*.pt"))]
    assert len(updates) == sum(counts)
    pushed: list[dict[str, torch.Tensor]] = []
    for version in (1, 2):
        gathered: dict[str, torch.Tensor] = torch.load(out / f"p{version}.pt", weights_only=True)
        expected = {n: t.to(torch.bfloat16) for n, t in gathered.items()}
        received: dict[str, torch.Tensor] = {}
        first = counts[0] * (version - 1)
        for update in updates[first : first + counts[0]]:
            request = update["request"]
            assert request["group_name"] == "azr_weights"
            assert request["weight_version"] == str(version)
            # The tensors arrive in the announced order, dtypes and shapes.
            assert list(update["tensors"]) == request["names"]
            for name, dtype, shape in zip(
                request["names"], request["dtypes"], request["shapes"], strict=True
            ):
                tensor = update["tensors"][name]
                assert dtype == "bfloat16" and tensor.dtype == torch.bfloat16
                assert list(tensor.shape) == shape
                assert name not in received
                received[name] = tensor
        # Every full tensor once (a tied one under its first name), in the learner's order.
        assert list(received) == list(expected)
        names = list(reference[version - 1])
        assert list(received) == [n for n in names if n in received]
        assert len(received) >= len(names) - 1
        for name, tensor in expected.items():
            assert torch.equal(received[name], tensor), (version, name)
            one_process = reference[version - 1][name]
            assert tensor.shape == one_process.shape, name
            torch.testing.assert_close(
                tensor.float(), one_process.to(torch.bfloat16).float(), rtol=0.02, atol=1e-3
            )
        assert timings[version - 1]["tensors"] == len(received)
        assert timings[version - 1]["bytes"] == sum(t.numel() * 2 for t in received.values())
        pushed.append(received)
    # Both pushes carried the weights of their step: the second differs from the first.
    assert any(not torch.equal(pushed[0][n], pushed[1][n]) for n in pushed[0])
