"""Reward arithmetic: ranges, the learnability formula, the composite and binary schemes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azr.rewards import RewardConfig, learnability, propose_reward, solve_rate, solve_reward
from azr.tasks import Outcome, Reason

CONFIGS = st.builds(
    RewardConfig,
    profile=st.sampled_from(["paper", "official"]),
    scheme=st.sampled_from(["composite", "binary"]),
    extreme_reward=st.sampled_from([None, 0.0, -0.5]),
)


def test_every_reason_has_a_class() -> None:
    classes = {r: r.outcome for r in Reason}
    assert classes[Reason.OK] is Outcome.CORRECT
    assert {r for r, c in classes.items() if c is Outcome.FORMAT} == {
        Reason.FORMAT,
        Reason.SYNTAX,
        Reason.TOO_LARGE,
    }
    assert {r for r, c in classes.items() if c is Outcome.UNSCORED} == {
        Reason.INTERNAL,
        Reason.INVALID_TASK,
        Reason.PROMPT_TOO_LONG,
    }
    assert not Reason.INTERNAL.scored and Reason.WRONG.scored


def test_solve_rewards() -> None:
    assert solve_reward(Reason.OK) == 1.0
    assert solve_reward(Reason.WRONG) == -0.5
    assert solve_reward(Reason.TIMEOUT) == -0.5
    assert solve_reward(Reason.NOT_LITERAL) == -0.5
    assert solve_reward(Reason.FORMAT) == -1.0
    assert solve_reward(Reason.SYNTAX) == -1.0
    assert solve_reward(Reason.INTERNAL) == 0.0
    binary = RewardConfig(scheme="binary")
    assert [solve_reward(r, binary) for r in (Reason.OK, Reason.WRONG, Reason.FORMAT)] == [1, 0, 0]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Reason)), CONFIGS)
def test_solve_reward_range(reason: Reason, config: RewardConfig) -> None:
    reward = solve_reward(reason, config)
    assert -1.0 <= reward <= 1.0
    assert (reward == 1.0) == (reason is Reason.OK)
    if config.scheme == "binary":
        assert reward in (0.0, 1.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=16), CONFIGS)
def test_learnability_formula(solved: list[bool], config: RewardConfig) -> None:
    reasons = [Reason.OK if s else Reason.WRONG for s in solved]
    rate = solve_rate(reasons)
    assert rate == sum(solved) / len(solved)
    reward = propose_reward(Reason.OK, rate, config)
    if all(solved) or not any(solved):
        assert reward == config.extreme
    else:
        assert reward == pytest.approx(1.0 - rate)
        assert 0.0 < reward < 1.0


def test_learnability_examples() -> None:
    assert learnability(0.25) == 0.75
    assert learnability(7 / 8) == pytest.approx(1 / 8)
    assert learnability(0.0) == learnability(1.0) == 0.0
    reference = RewardConfig(extreme_reward=-0.5)
    assert learnability(0.0, reference) == learnability(1.0, reference) == -0.5
    assert learnability(0.5, reference) == 0.5
    with pytest.raises(ValueError):
        learnability(1.5)


def test_solve_rate_ignores_unscored_rollouts() -> None:
    assert solve_rate([Reason.OK, Reason.INTERNAL, Reason.WRONG, Reason.FORMAT]) == 1 / 3
    assert solve_rate([Reason.INTERNAL, Reason.INVALID_TASK]) is None
    assert solve_rate([]) is None


def test_proposal_penalties() -> None:
    assert propose_reward(Reason.FORMAT) == -1.0
    assert propose_reward(Reason.NONDETERMINISTIC) == -0.5
    assert propose_reward(Reason.FORBIDDEN) == -0.5
    assert propose_reward(Reason.INTERNAL) == 0.0
    assert propose_reward(Reason.FORMAT, config=RewardConfig(scheme="binary")) == 0.0
    with pytest.raises(ValueError, match="solve rate"):
        propose_reward(Reason.OK)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        RewardConfig(solver_rollouts=0)


def test_profiles_differ_exactly_where_the_paper_and_the_official_code_do() -> None:
    paper, official = RewardConfig(), RewardConfig(profile="official")
    assert paper.profile == "paper"  # the default
    # A syntax error inside a well-formed answer: format (-1) in the paper, wrong (-0.5) there.
    assert solve_reward(Reason.SYNTAX, paper) == -1.0
    assert solve_reward(Reason.SYNTAX, official) == -0.5
    # Invalid but well-formed proposals: -0.5 in the paper, -1 there.
    for reason in (Reason.ERROR, Reason.NONDETERMINISTIC, Reason.TIMEOUT, Reason.WRONG):
        assert propose_reward(reason, None, paper) == -0.5
        assert propose_reward(reason, None, official) == -1.0
    # Learnability at solve rate 0 or 1: 0 in the paper, -0.5 there.
    for rate in (0.0, 1.0):
        assert propose_reward(Reason.OK, rate, paper) == 0.0
        assert propose_reward(Reason.OK, rate, official) == -0.5
    # Everything else is the same.
    for reason in Reason:
        if reason is not Reason.SYNTAX:
            assert solve_reward(reason, paper) == solve_reward(reason, official)
    assert propose_reward(Reason.OK, 0.25, paper) == propose_reward(Reason.OK, 0.25, official)
    assert propose_reward(Reason.FORMAT, None, paper) == -1.0
    assert propose_reward(Reason.INTERNAL, None, official) == 0.0
    # An explicit extreme_reward wins over the profile.
    assert propose_reward(Reason.OK, 1.0, RewardConfig(profile="official", extreme_reward=0.0)) == 0
    with pytest.raises(ValueError, match="profile"):
        RewardConfig(profile="other")  # type: ignore[arg-type]
