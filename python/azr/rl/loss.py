"""Per-token policy-gradient pieces: log-probabilities, the clipped PPO objective, KL, entropy.

Everything here returns per-token tensors; the learner masks them and aggregates by token mean
over the whole step's batch (so micro-batching does not change the loss).
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = [
    "KlEstimator",
    "entropy_from_logits",
    "kl_penalty",
    "ppo_clip_loss",
    "token_logprobs",
]

KlEstimator = Literal["k1", "k2", "k3"]


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[target]`` in float32: logits ``(B, T, V)``, targets ``(B, T)``.

    Computed as ``logit[target] - logsumexp(logits)`` so no ``(B, T, V)`` log-softmax is kept.
    """
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked - torch.logsumexp(logits, dim=-1)  # (B, T)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` per position: ``(B, T, V) -> (B, T)``, float32."""
    logits = logits.float()
    logz = torch.logsumexp(logits, dim=-1, keepdim=True)  # (B, T, 1)
    p = torch.exp(logits - logz)  # (B, T, V)
    return logz.squeeze(-1) - (p * logits).sum(-1)  # (B, T)


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_low: float,
    clip_high: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate loss per token, with asymmetric clipping ("clip-higher").

    All inputs ``(B, T)``. Returns ``(loss, clipped, ratio)``: the per-token loss to minimise
    ``-min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)``, a bool mask of tokens whose
    gradient the clip removed, and the importance ratio ``pi / pi_old``.

    A wider upper bound lets low-probability tokens with positive advantage grow faster, which
    counters entropy collapse; the lower bound stays at the usual PPO value.
    """
    ratio = torch.exp(logp - old_logp)  # (B, T)
    unclipped = ratio * advantages
    clipped_obj = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * advantages
    loss = -torch.minimum(unclipped, clipped_obj)  # (B, T)
    clipped = ((advantages > 0) & (ratio > 1.0 + clip_high)) | (
        (advantages < 0) & (ratio < 1.0 - clip_low)
    )  # (B, T)
    return loss, clipped, ratio


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KlEstimator) -> torch.Tensor:
    """Per-token estimate of ``KL(pi || pi_ref)`` from samples of ``pi``; ``(B, T) -> (B, T)``.

    k1 = log(pi/pi_ref): unbiased, high variance, can be negative.
    k2 = 0.5 * log(pi/pi_ref)^2: biased, low variance, always >= 0.
    k3 = pi_ref/pi - 1 - log(pi_ref/pi): unbiased, low variance, always >= 0.
    """
    log_ratio = logp - ref_logp  # (B, T)
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.square()
    if estimator == "k3":
        # Clamped so one wildly off token cannot overflow exp() and poison the step.
        neg = (-log_ratio).clamp(max=20.0)
        return torch.exp(neg) - 1.0 - neg
    raise ValueError(f"unknown KL estimator {estimator!r}")
