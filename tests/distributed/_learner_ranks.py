"""One rank of the two-rank learner scenario of test_sharded_learner.py (run under torchrun).

Rank 0 drives real sharded learners through the command channel, exactly as the learner actor
does in `azr train`; rank 1 runs the follower loop. What rank 0 writes into OUT:

    p1.pt      full float32 weights after a step on batch A           (+ m1.json metrics)
    ckpt2/     a sharded checkpoint taken right after that step
    p2.pt      the weights after a further step on batch B            (+ m2.json)
    r2.pt      ckpt2 resumed at world 2, then the step on batch B
    q2.pt      ONE_PROCESS_CKPT (written by one process after batch A) resumed at world 2, then B
    export/    the Hugging Face directory exported after that
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec
import torch

from azr.models import TinyModelSpec
from azr.rl import LearnerConfig, Sample, TrainBatch
from azr.rl.distributed import FromCheckpoint, FromPretrained, open_group
from azr.rl.follower import build_learner, follow
from azr.rl.learner import Learner

SPEC = TinyModelSpec(
    hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64
)
# Adam's epsilon well above float32 rounding of the gradients: summation order then moves the
# weights by rounding only, while a wrong gradient moves them by about lr.
CONFIG = LearnerConfig.tiny_cpu(
    lr=1e-3, adam_eps=1e-6, micro_batch_size=2, gradient_checkpointing=True, entropy_coef=1e-3
)
SEED = 7
TASKS = ("deduction", "abduction", "induction")
ROLES = ("propose", "solve")


def batch(offset: int) -> TrainBatch:
    """Nine samples over the six groups with uneven lengths: five micro-batches of two, so the
    two ranks get three and two (one zero-weight repeat)."""
    samples = []
    for i in range(9):
        n_prompt, n_response = 3 + (i * 5 + offset) % 7, 1 + (i * 3 + offset) % 6
        prompt = tuple(32 + (i * 11 + j * 7 + offset) % 90 for j in range(n_prompt))
        response = tuple(40 + (i * 13 + j * 5 + offset) % 80 for j in range(n_response))
        samples.append(
            Sample(
                prompt_ids=prompt,
                response_ids=response,
                old_logprobs=tuple(-5.6 + 0.02 * j for j in range(n_response)),
                reward=float((i * 7 + offset) % 5) / 4,
                task=TASKS[i % 3],  # type: ignore[arg-type]
                role=ROLES[(i // 3) % 2],  # type: ignore[arg-type]
            )
        )
    return TrainBatch(tuple(samples))


def full_weights(learner: Learner) -> dict[str, torch.Tensor]:
    return {n: t.cpu() for bucket in learner.weight_buckets(dtype=torch.float32) for n, t in bucket}


def main(out: Path, one_process_ckpt: Path) -> None:
    with open_group(CONFIG) as group:
        if not group.is_leader:
            follow(group)
            return
        try:
            learner = build_learner(FromPretrained(None, SPEC, SEED), CONFIG)
            m1 = learner.step(batch(0))
            torch.save(full_weights(learner), out / "p1.pt")
            (out / "m1.json").write_bytes(msgspec.json.encode(m1))
            learner.save_checkpoint(out / "ckpt2")
            m2 = learner.step(batch(1))
            torch.save(full_weights(learner), out / "p2.pt")
            (out / "m2.json").write_bytes(msgspec.json.encode(m2))

            resumed = build_learner(FromCheckpoint(str(out / "ckpt2")), CONFIG)
            resumed.step(batch(1))
            torch.save(full_weights(resumed), out / "r2.pt")

            widened = build_learner(FromCheckpoint(str(one_process_ckpt)), CONFIG)
            widened.step(batch(1))
            torch.save(full_weights(widened), out / "q2.pt")
            widened.export_weights(out / "export")
            (out / "done.json").write_text(json.dumps({"world": group.world_size}))
        finally:
            group.stop(timeout=60)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
