"""Rewards for both self-play roles, from reason codes to scalars. Pure Python.

Solver (per answer), with ``r_solve = 1`` when correct and ``0`` otherwise:

* ``scheme="binary"``: ``r_solve``.
* ``scheme="composite"`` (the paper's format-aware reward, the default): ``1`` when correct,
  ``wrong_penalty`` (-0.5) when well-formed but wrong, ``format_penalty`` (-1) when the response
  does not have the required shape.

Proposer (per proposal), with ``r`` the mean solve rate of ``n`` solver rollouts on the task
(``n = 8`` by default):

* learnability ``r_propose = 1 - r`` when ``0 < r < 1``; at ``r`` in ``{0, 1}`` the task teaches
  nothing and the reward is the profile's (or ``extreme_reward`` when set);
* an invalid proposal gets a penalty under the composite scheme, ``0`` under the binary one.

Profiles: where the paper's text and the authors' released code disagree, ``profile`` picks one.

==========================================  ===============  =================
case                                        ``"paper"``      ``"official"``
==========================================  ===============  =================
answer that is not valid Python             -1 (format)      -0.5 (wrong)
(``syntax``) inside a well-formed response
invalid but well-formed proposal            -0.5 (wrong)     -1 (format)
learnability at solve rate 0 or 1           0                -0.5
==========================================  ===============  =================

``paper`` follows the paper (arXiv 2505.03335, section 3.3: the format-aware penalty, and the
learnability reward defined as 0 for tasks solved always or never). ``official`` follows the
reward manager of the authors' repository (LeapLabTHU/Absolute-Zero-Reasoner): a solver
response whose answer block was extracted is "well formatted" and any failure after that,
including a syntax error, scores -0.5; a proposal that fails validation gets a format score of
0 and so -1; and a valid proposal whose accuracy reward (``1 - r``, set to 0 at ``r = 0``)
is not positive, which is the case at ``r`` 0 and 1, scores -0.5.

Reason codes in :attr:`~azr.tasks.types.Outcome.UNSCORED` (``internal``, ``invalid_task``) say
nothing about the model: rollouts with them are left out of ``r``, and a caller should drop or
retry the sample rather than train on its (zero) reward.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

import msgspec

from azr.intrinsic import IntrinsicConfig
from azr.tasks.types import Outcome, Reason

__all__ = [
    "DEFAULT_REWARDS",
    "RewardConfig",
    "RewardProfile",
    "learnability",
    "propose_outcome",
    "propose_reward",
    "solve_outcome",
    "solve_rate",
    "solve_reward",
]


RewardProfile = Literal["paper", "official"]

_OFFICIAL_EXTREME: Final = -0.5


class RewardConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Reward shaping for both roles (see the module docstring).

    ``profile`` decides the three cases where the paper and the official code differ;
    ``extreme_reward``, when set, overrides the profile's learnability at solve rate 0 or 1.
    ``intrinsic`` adds the official code's optional proposer bonuses (off by default; see
    :mod:`azr.intrinsic`).
    """

    profile: RewardProfile = "paper"
    scheme: Literal["composite", "binary"] = "composite"
    wrong_penalty: float = -0.5
    format_penalty: float = -1.0
    extreme_reward: float | None = None
    solver_rollouts: int = 8
    intrinsic: IntrinsicConfig = IntrinsicConfig()

    def __post_init__(self) -> None:
        if self.solver_rollouts < 1:
            raise ValueError("solver_rollouts must be at least 1")
        if self.profile not in ("paper", "official"):
            raise ValueError(f"unknown reward profile {self.profile!r} (paper or official)")

    @property
    def extreme(self) -> float:
        """The learnability reward at solve rate 0 or 1."""
        if self.extreme_reward is not None:
            return self.extreme_reward
        return 0.0 if self.profile == "paper" else _OFFICIAL_EXTREME


DEFAULT_REWARDS: Final = RewardConfig()


def solve_outcome(reason: Reason, config: RewardConfig = DEFAULT_REWARDS) -> Outcome:
    """The reward class of a solver answer checked with ``reason`` under ``config.profile``."""
    if config.profile == "official" and reason is Reason.SYNTAX:
        return Outcome.WRONG
    return reason.outcome


def propose_outcome(reason: Reason, config: RewardConfig = DEFAULT_REWARDS) -> Outcome:
    """The reward class of a proposal validated with ``reason`` under ``config.profile``."""
    outcome = reason.outcome
    if config.profile == "official" and outcome is Outcome.WRONG:
        return Outcome.FORMAT
    return outcome


def _penalty(outcome: Outcome, config: RewardConfig) -> float:
    if config.scheme == "binary" or outcome is Outcome.UNSCORED:
        return 0.0
    return config.format_penalty if outcome is Outcome.FORMAT else config.wrong_penalty


def solve_reward(reason: Reason, config: RewardConfig = DEFAULT_REWARDS) -> float:
    """The solver's reward for an answer checked with ``reason``."""
    outcome = solve_outcome(reason, config)
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
    """``1 - rate`` for a task solved sometimes, ``config.extreme`` at ``rate`` 0 or 1."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a solve rate lies in [0, 1], got {rate}")
    if rate in (0.0, 1.0):
        return config.extreme
    return 1.0 - rate


def propose_reward(
    reason: Reason, rate: float | None = None, config: RewardConfig = DEFAULT_REWARDS
) -> float:
    """The proposer's reward for a proposal validated with ``reason``.

    ``rate`` (from :func:`solve_rate`) is required for a valid proposal and ignored otherwise.
    """
    outcome = propose_outcome(reason, config)
    if outcome is not Outcome.CORRECT:
        return _penalty(outcome, config)
    if rate is None:
        raise ValueError("a valid proposal needs the solve rate of its task")
    return learnability(rate, config)
