"""Training samples as they travel from rollout actors to the learner."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "GROUP_NAMES",
    "NUM_GROUPS",
    "ROLES",
    "TASK_TYPES",
    "Role",
    "Sample",
    "TaskType",
    "TrainBatch",
    "group_index",
]

TaskType = Literal["deduction", "abduction", "induction", "error_prediction"]
Role = Literal["propose", "solve"]

# Error prediction is optional; its two groups are simply empty in runs without it.
TASK_TYPES: tuple[TaskType, ...] = ("deduction", "abduction", "induction", "error_prediction")
ROLES: tuple[Role, ...] = ("propose", "solve")
NUM_GROUPS = len(TASK_TYPES) * len(ROLES)
# Index i of GROUP_NAMES is group_index(task, role) == i.
GROUP_NAMES: tuple[str, ...] = tuple(f"{t}.{r}" for t in TASK_TYPES for r in ROLES)


def group_index(task: TaskType, role: Role) -> int:
    """The advantage-normalisation group (0-7) of a task type and role."""
    return TASK_TYPES.index(task) * len(ROLES) + ROLES.index(role)


class Sample(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One prompt/response pair with its scalar outcome reward.

    ``old_logprobs`` are the generator's per-token log-probabilities of ``response_ids`` (raw
    logits, temperature 1; see ``azr.generation.base``); the PPO ratio is taken against them.
    ``weight_version`` is the policy version that sampled the response, kept for staleness metrics.
    """

    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    old_logprobs: tuple[float, ...]
    reward: float
    task: TaskType
    role: Role
    weight_version: int = 0

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise ValueError("prompt_ids must not be empty")
        if len(self.old_logprobs) != len(self.response_ids):
            raise ValueError(
                f"{len(self.old_logprobs)} old logprobs for {len(self.response_ids)} tokens"
            )

    @property
    def group(self) -> int:
        return group_index(self.task, self.role)


class TrainBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The samples of one optimiser step; advantages are normalised over exactly this set."""

    samples: tuple[Sample, ...]
