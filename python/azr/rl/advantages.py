"""Task-relative REINFORCE++ (TRR++) advantages, and the ablation's other baselines.

Absolute Zero normalises rewards separately for each of the six (task type x role) groups, since
proposing and solving, and the three task types, have very different reward scales and success
rates. Within a group: ``A = (r - mean) / (std + eps)`` over the step's batch.

Weighting. With ``"token"`` weighting (the reference implementation's behaviour) the group's mean
and standard deviation are taken over response tokens: each sample counts once per token it
generated, so long responses pull the statistics towards their reward and the advantages have zero
length-weighted mean. With ``"sequence"`` weighting each sample counts once, and the advantages
have zero plain mean. With equal lengths within a group the two coincide.

The standard deviation is the population one (divide by the total weight, not weight - 1), so a
normalised group has unit (weighted) variance up to the ``eps`` term. A group whose weighted
samples all carry the same reward (including a group of one) has no learning signal: its
advantages are exactly zero rather than ``0 / eps`` noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

__all__ = ["AdvantageEstimator", "AdvantageWeighting", "baseline_groups", "trr_advantages"]

AdvantageWeighting = Literal["token", "sequence"]
AdvantageEstimator = Literal["trr++", "reinforce++", "grpo"]


def baseline_groups(
    estimator: AdvantageEstimator,
    task_groups: Sequence[int],
    prompts: Sequence[Sequence[int]],
    num_task_groups: int = 8,
) -> tuple[torch.Tensor, int]:
    """Group ids ``(N,)`` and the group count under which rewards are normalised.

    ``"trr++"``: the (task type x role) group of each sample (``task_groups``, out of
    ``num_task_groups``: 8 with the optional error-prediction type's two); ``"reinforce++"``:
    one group for the whole batch; ``"grpo"``: one group per distinct prompt (token ids), numbered
    in order of first appearance.
    """
    n = len(task_groups)
    if estimator == "trr++":
        return torch.tensor(list(task_groups), dtype=torch.long), num_task_groups
    if estimator == "reinforce++":
        return torch.zeros(n, dtype=torch.long), 1
    if estimator == "grpo":
        ids: dict[tuple[int, ...], int] = {}
        groups = [ids.setdefault(tuple(p), len(ids)) for p in prompts]
        return torch.tensor(groups, dtype=torch.long), max(1, len(ids))
    raise ValueError(f"unknown advantage estimator {estimator!r}")


def trr_advantages(
    rewards: torch.Tensor,
    groups: torch.Tensor,
    lengths: torch.Tensor | None = None,
    *,
    weighting: AdvantageWeighting = "token",
    num_groups: int = 8,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Per-sample advantages ``(N,)`` from rewards ``(N,)`` and group ids ``(N,)`` in
    ``[0, num_groups)``. ``lengths`` ``(N,)`` (response tokens) is required for token weighting.

    The learner broadcasts each sample's advantage to all of its response tokens.
    """
    if weighting == "token":
        if lengths is None:
            raise ValueError("token weighting needs response lengths")
        w = lengths.to(torch.float64)  # (N,)
    elif weighting == "sequence":
        w = torch.ones_like(rewards, dtype=torch.float64)  # (N,)
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    # float64 so that the statistics of large token-weighted groups stay exact enough.
    r = rewards.to(torch.float64)  # (N,)
    g = groups.to(torch.long)  # (N,)
    zeros = torch.zeros(num_groups, dtype=torch.float64, device=r.device)

    total = zeros.index_add(0, g, w)  # (G,)
    safe_total = total.clamp_min(1e-300)
    mean = zeros.index_add(0, g, w * r) / safe_total  # (G,)
    centred = r - mean[g]  # (N,)
    var = zeros.index_add(0, g, w * centred.square()) / safe_total  # (G,)
    std = var.sqrt()

    # Degenerate groups: all weighted rewards equal (or nothing weighted). Decided by exact
    # comparison, not by std, so rounding in the mean can never leak a tiny nonzero advantage.
    weighted = w > 0
    inf = torch.full_like(zeros, torch.inf)
    hi = (-inf).scatter_reduce(0, g, torch.where(weighted, r, -torch.inf), "amax")  # (G,)
    lo = inf.scatter_reduce(0, g, torch.where(weighted, r, torch.inf), "amin")  # (G,)
    informative = hi > lo  # (G,)

    adv = centred / (std[g] + eps)  # (N,)
    adv = torch.where(informative[g], adv, torch.zeros_like(adv))
    return adv.to(rewards.dtype if rewards.is_floating_point() else torch.float32)
