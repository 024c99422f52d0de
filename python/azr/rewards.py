"""Rewards for both self-play roles, from reason codes to scalars. Pure Python.

Solver (per answer), with ``r_solve = 1`` when correct and ``0`` otherwise:

* ``scheme="binary"``: ``r_solve``.
* ``scheme="composite"`` (the paper's format-aware reward, the default): ``1`` when correct,
  ``wrong_penalty`` (-0.5) when well-formed but wrong, ``format_penalty`` (-1) when the response
  does not have the required shape.

Proposer (per proposal), with ``r`` the mean solve rate of ``n`` solver rollouts on the task
(``n = 8`` by default):

* learnability ``r_propose = 1 - r`` when ``0 < r < 1``; at ``r`` in ``{0, 1}`` the task teaches
  nothing and the reward is ``extreme_reward``, which is ``0`` in the paper. The authors' code
  uses ``-0.5`` there instead (treating a trivial or impossible task like an invalid one); set
  ``extreme_reward=-0.5`` to reproduce it.
* an invalid but well-formed proposal gets ``wrong_penalty`` and an unparsable one
  ``format_penalty`` under the composite scheme, ``0`` under the binary one.

Reason codes in :attr:`~azr.tasks.types.Outcome.UNSCORED` (``internal``, ``invalid_task``) say
nothing about the model: rollouts with them are left out of ``r``, and a caller should drop or
retry the sample rather than train on its (zero) reward.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

import msgspec

from azr.tasks.types import Outcome, Reason

__all__ = [
    "DEFAULT_REWARDS",
    "RewardConfig",
    "learnability",
    "propose_reward",
    "solve_rate",
    "solve_reward",
]


class RewardConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Reward shaping for both roles (see the module docstring)."""

    scheme: Literal["composite", "binary"] = "composite"
    wrong_penalty: float = -0.5
    format_penalty: float = -1.0
    extreme_reward: float = 0.0
    solver_rollouts: int = 8

    def __post_init__(self) -> None:
        if self.solver_rollouts < 1:
            raise ValueError("solver_rollouts must be at least 1")


DEFAULT_REWARDS: Final = RewardConfig()


def _penalty(outcome: Outcome, config: RewardConfig) -> float:
    if config.scheme == "binary" or outcome is Outcome.UNSCORED:
        return 0.0
    return config.format_penalty if outcome is Outcome.FORMAT else config.wrong_penalty


def solve_reward(reason: Reason, config: RewardConfig = DEFAULT_REWARDS) -> float:
    """The solver's reward for an answer checked with ``reason``."""
    outcome = reason.outcome
    return 1.0 if outcome is Outcome.CORRECT else _penalty(outcome, config)


def solve_rate(reasons: Iterable[Reason]) -> float | None:
    """Mean correctness of solver rollouts, leaving out unscored ones; None when none is scored.

    A rollout with bad format counts as unsolved.
    """
    scored = [r for r in reasons if r.scored]
    if not scored:
        return None
    return sum(r is Reason.OK for r in scored) / len(scored)


def learnability(rate: float, config: RewardConfig = DEFAULT_REWARDS) -> float:
    """``1 - rate`` for a task solved sometimes, ``config.extreme_reward`` at ``rate`` 0 or 1."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a solve rate lies in [0, 1], got {rate}")
    if rate in (0.0, 1.0):
        return config.extreme_reward
    return 1.0 - rate


def propose_reward(
    reason: Reason, rate: float | None = None, config: RewardConfig = DEFAULT_REWARDS
) -> float:
    """The proposer's reward for a proposal validated with ``reason``.

    ``rate`` (from :func:`solve_rate`) is required for a valid proposal and ignored otherwise.
    """
    outcome = reason.outcome
    if outcome is not Outcome.CORRECT:
        return _penalty(outcome, config)
    if rate is None:
        raise ValueError("a valid proposal needs the solve rate of its task")
    return learnability(rate, config)
