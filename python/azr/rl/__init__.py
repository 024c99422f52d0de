"""Reinforcement learning for Absolute Zero: TRR++ advantages, the clipped policy-gradient
learner, and the sample format actors send to it."""

from azr.rl.advantages import AdvantageWeighting, trr_advantages
from azr.rl.batch import (
    GROUP_NAMES,
    NUM_GROUPS,
    ROLES,
    TASK_TYPES,
    Role,
    Sample,
    TaskType,
    TrainBatch,
    group_index,
)
from azr.rl.checkpoint import atomic_directory, resolve_checkpoint
from azr.rl.config import LearnerConfig
from azr.rl.learner import Learner, StepMetrics
from azr.rl.logprobs import LogprobDrift, ResponseScores, logprob_drift, response_scores
from azr.rl.loss import (
    KlEstimator,
    entropy_from_logits,
    kl_penalty,
    ppo_clip_loss,
    token_logprobs,
)

__all__ = [
    "GROUP_NAMES",
    "NUM_GROUPS",
    "ROLES",
    "TASK_TYPES",
    "AdvantageWeighting",
    "KlEstimator",
    "Learner",
    "LearnerConfig",
    "LogprobDrift",
    "ResponseScores",
    "Role",
    "Sample",
    "StepMetrics",
    "TaskType",
    "TrainBatch",
    "atomic_directory",
    "entropy_from_logits",
    "group_index",
    "kl_penalty",
    "logprob_drift",
    "ppo_clip_loss",
    "resolve_checkpoint",
    "response_scores",
    "token_logprobs",
    "trr_advantages",
]
