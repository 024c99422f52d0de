"""A small training batch for the learner-facing tests (actor, weight sync): twelve samples, two
per (task type x role) group with different rewards, so every advantage is nonzero and one
update moves the weights."""

from __future__ import annotations

from azr.rl import Sample, TrainBatch


def train_batch(version: int = 0) -> TrainBatch:
    samples = [
        Sample(
            prompt_ids=(256 + 8, 65 + i),
            response_ids=(66, 67 + i, 68),
            old_logprobs=(-5.6, -5.6, -5.6),
            reward=float(i // 6),
            task=("deduction", "abduction", "induction")[i % 3],
            role=("propose", "solve")[(i // 3) % 2],
            weight_version=version,
        )
        for i in range(12)
    ]
    return TrainBatch(tuple(samples))
