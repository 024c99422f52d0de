"""Properties of TRR++ advantages."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from azr.rl import GROUP_NAMES, NUM_GROUPS, ROLES, TASK_TYPES, group_index, trr_advantages

# Rewards on a coarse grid keep every informative group's spread far above eps, so "unit
# variance" can be checked tightly.
rewards_st = st.integers(-4, 4).map(lambda k: k / 4)
sample_st = st.tuples(rewards_st, st.integers(0, NUM_GROUPS - 1), st.integers(1, 20))
batch_st = st.lists(sample_st, min_size=1, max_size=40)
weighting_st = st.sampled_from(["token", "sequence"])


def _tensors(batch: list[tuple[float, int, int]]) -> tuple[torch.Tensor, ...]:
    r, g, n = zip(*batch, strict=True)
    return torch.tensor(r), torch.tensor(g), torch.tensor(n)


def _weights(lengths: torch.Tensor, weighting: str) -> torch.Tensor:
    return lengths.double() if weighting == "token" else torch.ones_like(lengths, dtype=float)


@settings(deadline=None)  # the first torch call in a process can be slow
@given(batch_st, weighting_st)
def test_each_group_has_zero_mean_and_unit_variance(batch: list, weighting: str) -> None:
    rewards, groups, lengths = _tensors(batch)
    adv = trr_advantages(rewards, groups, lengths, weighting=weighting).double()
    w = _weights(lengths, weighting)
    for g in groups.unique():
        sel = groups == g
        a, wg = adv[sel], w[sel]
        if rewards[sel].unique().numel() < 2:
            continue
        mean = (wg * a).sum() / wg.sum()
        var = (wg * (a - mean) ** 2).sum() / wg.sum()
        assert abs(float(mean)) < 1e-6  # advantages come back in float32
        assert 1 - 1e-4 < float(var) < 1 + 1e-6


@settings(deadline=None)  # the first torch call in a process can be slow
@given(batch_st, weighting_st, st.integers(0, NUM_GROUPS - 1), st.lists(rewards_st, min_size=40))
def test_groups_are_independent(
    batch: list, weighting: str, changed: int, new_rewards: list[float]
) -> None:
    rewards, groups, lengths = _tensors(batch)
    before = trr_advantages(rewards, groups, lengths, weighting=weighting)
    altered = torch.where(groups == changed, torch.tensor(new_rewards[: len(batch)]), rewards)
    after = trr_advantages(altered, groups, lengths, weighting=weighting)
    other = groups != changed
    assert torch.equal(before[other], after[other])


@settings(deadline=None)  # the first torch call in a process can be slow
@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.lists(st.integers(0, 50), min_size=1, max_size=30),
    weighting_st,
)
def test_constant_group_gives_exact_zeros(value: float, lengths: list[int], weighting: str) -> None:
    n = len(lengths)
    adv = trr_advantages(
        torch.full((n,), value), torch.full((n,), 2), torch.tensor(lengths), weighting=weighting
    )
    assert torch.equal(adv, torch.zeros(n))


def test_single_sample_and_empty_groups_give_zero_not_nan() -> None:
    adv = trr_advantages(
        torch.tensor([0.7, 1.0, 0.0]), torch.tensor([0, 5, 5]), torch.tensor([3, 0, 0])
    )
    # Group 5 has no tokens under token weighting: nothing to learn from, and no NaN.
    assert torch.equal(adv, torch.zeros(3))


@settings(deadline=None)  # the first torch call in a process can be slow
@given(
    st.lists(st.tuples(rewards_st, st.integers(1, 20)), min_size=2, max_size=30), st.integers(1, 9)
)
def test_token_and_sequence_weighting_coincide_for_equal_lengths(
    items: list[tuple[float, int]], length: int
) -> None:
    rewards = torch.tensor([r for r, _ in items])
    groups = torch.tensor([n % NUM_GROUPS for _, n in items])
    lengths = torch.full((len(items),), length)
    tok = trr_advantages(rewards, groups, lengths, weighting="token")
    seq = trr_advantages(rewards, groups, lengths, weighting="sequence")
    assert torch.allclose(tok, seq, atol=1e-6)


def test_token_weighting_lets_long_responses_pull_the_statistics() -> None:
    rewards = torch.tensor([1.0, 0.0])
    groups = torch.tensor([0, 0])
    lengths = torch.tensor([9, 1])
    seq = trr_advantages(rewards, groups, lengths, weighting="sequence")
    tok = trr_advantages(rewards, groups, lengths, weighting="token")
    assert torch.allclose(seq, torch.tensor([1.0, -1.0]), atol=1e-5)
    # Token mean is 0.9 and token std 0.3: the long, rewarded response is "typical".
    assert torch.allclose(tok, torch.tensor([1 / 3, -3.0]), atol=1e-5)
    assert abs(float((tok * lengths).sum())) < 1e-5


def test_token_weighting_needs_lengths() -> None:
    with pytest.raises(ValueError):
        trr_advantages(torch.tensor([1.0]), torch.tensor([0]), weighting="token")
    adv = trr_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), weighting="sequence")
    assert not any(math.isnan(x) for x in adv.tolist())


def test_group_index_enumerates_the_six_groups() -> None:
    seen = {group_index(t, r): f"{t}.{r}" for t in TASK_TYPES for r in ROLES}
    assert sorted(seen) == list(range(NUM_GROUPS))
    assert all(GROUP_NAMES[i] == name for i, name in seen.items())
