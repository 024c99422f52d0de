"""The per-token loss pieces against their definitions."""

from __future__ import annotations

import pytest
import torch

from azr.rl import entropy_from_logits, kl_penalty, ppo_clip_loss, token_logprobs


def test_token_logprobs_and_entropy_match_torch_definitions() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=gen) * 3
    targets = torch.randint(0, 11, (2, 5), generator=gen)
    expected = torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    assert torch.allclose(token_logprobs(logits, targets), expected, atol=1e-6)
    dist = torch.distributions.Categorical(logits=logits)
    assert torch.allclose(entropy_from_logits(logits), dist.entropy(), atol=1e-5)


def test_on_policy_loss_is_minus_advantage_without_clipping() -> None:
    logp = torch.log(torch.tensor([[0.1, 0.5, 0.9]]))
    adv = torch.tensor([[1.0, -2.0, 0.5]])
    loss, clipped, ratio = ppo_clip_loss(logp, logp, adv, clip_low=0.2, clip_high=0.28)
    assert torch.allclose(ratio, torch.ones(1, 3))
    assert torch.allclose(loss, -adv)
    assert not clipped.any()


@pytest.mark.parametrize(
    ("ratio", "adv", "clipped", "grad_is_zero"),
    [
        (1.25, 1.0, False, False),  # inside the wider upper bound
        (1.30, 1.0, True, True),  # above 1 + clip_high with A > 0: no further push up
        (1.30, -1.0, False, False),  # ratio too high but A < 0: unclipped term is the min
        (0.79, -1.0, True, True),  # below 1 - clip_low with A < 0
        (0.79, 1.0, False, False),
    ],
)
def test_clipping_is_asymmetric_and_stops_the_gradient(
    ratio: float, adv: float, clipped: bool, grad_is_zero: bool
) -> None:
    old = torch.tensor([[-1.0]])
    logp = (old + torch.log(torch.tensor(ratio))).requires_grad_()
    loss, was_clipped, _ = ppo_clip_loss(
        logp, old, torch.tensor([[adv]]), clip_low=0.2, clip_high=0.28
    )
    loss.sum().backward()
    assert bool(was_clipped) is clipped
    assert logp.grad is not None
    assert (float(logp.grad) == 0.0) is grad_is_zero


def test_kl_estimators_are_zero_at_equality_and_k3_estimates_the_kl() -> None:
    logp = torch.log(torch.tensor([0.2, 0.3, 0.5]))
    for est in ("k1", "k2", "k3"):
        assert torch.equal(kl_penalty(logp, logp, est), torch.zeros(3))
    # Monte Carlo: E_{x~p}[k(x)] approximates KL(p || q) for the unbiased k1 and k3.
    p = torch.tensor([0.2, 0.3, 0.5])
    q = torch.tensor([0.4, 0.4, 0.2])
    true_kl = float((p * (p / q).log()).sum())
    x = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(1))
    for est in ("k1", "k3"):
        approx = float(kl_penalty(p.log()[x], q.log()[x], est).mean())
        assert abs(approx - true_kl) < 0.01
    assert (kl_penalty(p.log()[x], q.log()[x], "k2") >= 0).all()
    assert (kl_penalty(p.log()[x], q.log()[x], "k3") >= 0).all()
    with pytest.raises(ValueError):
        kl_penalty(logp, logp, "k4")  # type: ignore[arg-type]
