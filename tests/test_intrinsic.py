"""Intrinsic proposer rewards: complexity, answer diversity and program-shape novelty, off unless
configured."""

from __future__ import annotations

import pytest

from azr.actors.coordinator import ProposalRecord, proposal_reward
from azr.actors.messages import ProposalVerdict, Rollout
from azr.config import load_config
from azr.intrinsic import (
    AnswerCounts,
    Bonus,
    IntrinsicConfig,
    cognitive_complexity,
    complexity_score,
    diversity_score,
    program_shape,
    proposal_bonus,
)
from azr.rewards import RewardConfig
from azr.tasks import SEED_TRIPLET, Reason


def test_cognitive_complexity_counts_branches_by_nesting() -> None:
    assert cognitive_complexity("def f(a):\n    return a") == 0
    assert cognitive_complexity("def f(a):\n    if a:\n        return 1\n    return 2") == 1
    # if (1) + else (1) + a loop nested once (1 + 1) + an if nested twice (1 + 2) = 7
    nested = (
        "def f(xs):\n    if xs:\n        for x in xs:\n            if x > 1:\n"
        "                return x\n    else:\n        return 0\n    return -1"
    )
    assert cognitive_complexity(nested) == 7
    # elif continues its if (no nesting increment); a boolean sequence and recursion count 1.
    chain = (
        "def f(n):\n    if n < 0:\n        return 0\n    elif n == 0 or n == 1:\n"
        "        return 1\n    return f(n - 1)"
    )
    assert cognitive_complexity(chain) == 4
    assert complexity_score(nested) == pytest.approx(7 / 15)
    assert cognitive_complexity("def (") == 0  # unparsable: no bonus, no error
    deep = "def f(a):\n    return " + "(" * 5000 + "a" + ")" * 5000
    assert cognitive_complexity(deep) == 0


def test_diversity_is_the_surprise_of_an_answer() -> None:
    counts = AnswerCounts()
    assert counts.surprise("1") == 1.0  # nothing seen yet
    counts.observe(["1", "1", "2", "3"])
    assert counts.surprise("1") == 0.5 and counts.surprise("2") == 0.75
    assert counts.surprise("never") == 1.0
    assert diversity_score(4, 4) == 0.0


def test_bonuses_are_capped_and_off_by_default() -> None:
    assert not IntrinsicConfig().enabled and not RewardConfig().intrinsic.enabled
    assert Bonus()(10.0) == 0.0
    assert Bonus(coef=0.1, max=0.5)(2.0) == pytest.approx(0.2)
    assert Bonus(coef=0.1, max=0.5)(20.0) == 0.5
    with pytest.raises(ValueError):
        Bonus(coef=-1.0)
    config = load_config(
        overrides=["rewards.intrinsic.complexity.coef=0.5", "rewards.intrinsic.diversity.max=1"]
    )
    assert config.rewards.intrinsic.enabled and config.rewards.intrinsic.diversity.max == 1.0


def test_a_bonus_is_added_only_to_a_positive_learnability() -> None:
    def record(learn: list[Reason], bonus: float) -> ProposalRecord:
        rollout = Rollout((1,), (2,), (-1.0,), "", "stop", 0)
        verdict = ProposalVerdict(Reason.OK, triplet=SEED_TRIPLET)
        return ProposalRecord(rollout=rollout, verdict=verdict, learnability=learn, bonus=bonus)

    ok, wrong = Reason.OK, Reason.WRONG
    assert proposal_reward(record([ok, wrong], 0.25), RewardConfig()) == 0.75
    assert proposal_reward(record([ok, ok], 0.25), RewardConfig()) == 0.0
    official = RewardConfig(profile="official")
    assert proposal_reward(record([wrong, wrong], 0.25), official) == -0.5


def test_a_proposal_bonus_combines_both_scores() -> None:
    counts = AnswerCounts()
    counts.observe(["1", "1", "2", "3"])
    program = "def f(a):\n    if a:\n        return 1\n    return 2"  # complexity 1
    off = IntrinsicConfig()
    assert proposal_bonus(off, program, "1", counts) == 0.0
    both = IntrinsicConfig(complexity=Bonus(coef=1.5, max=1.0), diversity=Bonus(coef=0.5))
    assert proposal_bonus(both, program, "1", counts) == pytest.approx(0.1 + 0.25)
    assert proposal_bonus(both, program, "new", counts) == pytest.approx(0.1 + 0.5)


def test_a_shape_ignores_names_and_constants_but_not_structure() -> None:
    a = "def f(n: int) -> int:\n    if n > 3:\n        return n * 2\n    return n - 1"
    b = "def g(x):\n    if x > 10:\n        return x * 4\n    return x - 7"
    c = "def f(n):\n    if n > 3:\n        return n + 2\n    return n - 1"  # + instead of *
    d = "def f(n):\n    if n > 'a':\n        return n * 2\n    return n - 1"  # str constant
    assert program_shape(a) == program_shape(b)
    assert len({program_shape(a), program_shape(c), program_shape(d)}) == 3
    assert program_shape("def (") == "def ("  # unparsable: its own text, no error


def test_novelty_pays_for_a_shape_not_yet_common() -> None:
    common = "def f(n):\n    return n * 2"
    rare = "def f(xs):\n    return [v for v in xs if v > 1]"
    shapes = AnswerCounts()
    shapes.observe(program_shape(p) for p in [common, "def f(x):\n    return x * 9", rare])
    config = IntrinsicConfig(novelty=Bonus(coef=0.6, max=1.0))
    assert config.enabled
    answers = AnswerCounts()
    assert proposal_bonus(config, common, "1", answers, shapes) == pytest.approx(0.6 / 3)
    assert proposal_bonus(config, rare, "1", answers, shapes) == pytest.approx(0.6 * 2 / 3)
    new = "def f(s):\n    return s.upper()"
    assert proposal_bonus(config, new, "1", answers, shapes) == pytest.approx(0.6)
    assert proposal_bonus(config, new, "1", answers) == 0.0  # no shape counts given
