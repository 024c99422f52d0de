"""The advantage-estimator ablation: TRR++, REINFORCE++ and GRPO baselines."""

from __future__ import annotations

import pytest
import torch

from azr.errors import ConfigError
from azr.rl import LearnerConfig, trr_advantages
from azr.rl.advantages import baseline_groups

REWARDS = torch.tensor([1.0, -1.0, 0.5, 0.5, -0.5, 1.0])
TASK_GROUPS = [0, 0, 1, 1, 3, 3]
PROMPTS = [(1, 2), (1, 2), (7,), (8,), (1, 2), (9, 9)]


def _advantages(estimator: str) -> torch.Tensor:
    groups, n = baseline_groups(estimator, TASK_GROUPS, PROMPTS)  # type: ignore[arg-type]
    return trr_advantages(REWARDS, groups, weighting="sequence", num_groups=n)


def test_trr_normalises_each_task_role_group() -> None:
    adv = _advantages("trr++")
    assert adv[0] > 0 > adv[1]
    assert torch.equal(adv[2:4], torch.zeros(2))  # equal rewards within group 1: no signal
    assert adv[5] > 0 > adv[4]


def test_reinforce_uses_one_global_baseline() -> None:
    adv = _advantages("reinforce++").double()
    assert abs(float(adv.mean())) < 1e-6
    # Equal rewards in different task groups now get equal, nonzero advantages.
    assert adv[2] == adv[3] != 0
    assert torch.argsort(adv).tolist() == torch.argsort(REWARDS.double(), stable=True).tolist()


def test_grpo_groups_responses_to_the_same_prompt() -> None:
    groups, n = baseline_groups("grpo", TASK_GROUPS, PROMPTS)
    assert n == 4 and groups.tolist() == [0, 0, 1, 2, 0, 3]
    adv = _advantages("grpo")
    assert adv[0] > 0 > adv[1] and adv[4] < 0  # compared with the other answers to (1, 2)
    assert torch.equal(adv[[2, 3, 5]], torch.zeros(3))  # one answer per prompt: no signal


def test_the_estimator_is_a_validated_setting() -> None:
    assert LearnerConfig().advantage_estimator == "trr++"
    import msgspec

    with pytest.raises((msgspec.ValidationError, ConfigError)):
        msgspec.convert({"advantage_estimator": "ppo"}, LearnerConfig)
    with pytest.raises(ValueError, match="unknown advantage estimator"):
        baseline_groups("ppo", [0], [(1,)])  # type: ignore[arg-type]
