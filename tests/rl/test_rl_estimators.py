"""The advantage-estimator ablation: TRR++, REINFORCE++ and GRPO baselines."""

from __future__ import annotations

import msgspec
import pytest
import torch

from azr.errors import ConfigError
from azr.models import TinyModelSpec, load_model
from azr.rl import GROUP_NAMES, ROLES, TASK_TYPES, Learner, LearnerConfig, Sample, trr_advantages
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
    with pytest.raises((msgspec.ValidationError, ConfigError)):
        msgspec.convert({"advantage_estimator": "ppo"}, LearnerConfig)
    with pytest.raises(ValueError, match="unknown advantage estimator"):
        baseline_groups("ppo", [0], [(1,)])  # type: ignore[arg-type]


def test_a_grpo_step_with_more_prompts_than_task_groups_reports_per_task_group(
    tiny_spec: TinyModelSpec,
) -> None:
    # A self-play batch has hundreds of distinct prompts; GRPO's baseline groups are prompts,
    # but the rewards are still reported per (task type x role) group. The first version indexed
    # the group names with prompt ids and failed the learner on such a batch.
    model, tok = load_model(None, spec=tiny_spec, seed=0)
    learner = Learner(model, tok, LearnerConfig.tiny_cpu(advantage_estimator="grpo"))
    samples = []
    for i in range(12):  # 12 prompts > 6 group names, two answers each
        prompt = tuple(tok.encode(f"<|user|>task {i}<|assistant|>"))
        for j in range(2):
            samples.append(
                Sample(
                    prompt_ids=prompt,
                    response_ids=tuple(tok.encode("ab"[j] * 3)),
                    old_logprobs=(0.0,) * 3,
                    reward=float(j),
                    task=TASK_TYPES[i % 3],
                    role=ROLES[i % 2],
                    weight_version=0,
                )
            )
    logprobs = learner.compute_logprobs(samples)
    samples = [
        msgspec.structs.replace(s, old_logprobs=tuple(lp))
        for s, lp in zip(samples, logprobs, strict=True)
    ]
    metrics = learner.step(samples)
    assert metrics.samples == 24 and metrics.grad_norm > 0
    assert set(metrics.reward_mean) == set(GROUP_NAMES[:6])
    assert all(v == 0.5 for v in metrics.reward_mean.values())
