"""Response-token log-probabilities (and entropy) without a full-vocabulary float32 tensor.

A policy's vocabulary is large (151,936 for Qwen2.5): the logits of one micro-batch of 4
responses of 8k tokens are 4.9e9 numbers, 10 GB in bfloat16 and 20 GB once upcast to float32 for
a stable log-softmax, and autograd keeps them for the backward pass. This module never builds
them. The backbone's last hidden states ``(b, R, H)`` are split into chunks of ``chunk_len``
positions along the sequence; per chunk the output head gives ``(b, c, V)`` logits in the
model's dtype, upcast to float32, reduced to a log-probability (and an entropy, only when asked)
per token, and dropped. Each chunk runs under activation checkpointing, so the backward pass
recomputes that chunk's logits from its hidden states instead of keeping them: at any time at
most one chunk of logits exists, forward or backward. The gradients are those of the unchunked
computation (the same operations on the same numbers, summed in another order).

``chunk_len = 0`` keeps the plain path (the model's full logits, float32 over the whole
vocabulary): the reference the chunked path is tested against, and the way for a model whose
logits are more than ``head(hidden)``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

from azr.rl.loss import entropy_from_logits, token_logprobs

__all__ = [
    "LogprobDrift",
    "ResponseScores",
    "logprob_drift",
    "register_sharded_scoring",
    "response_scores",
]

# Under FSDP2 the root unit's parameters (embeddings, final norm, head) are gathered only around
# a forward of the root module; the chunked path calls the decoder and the head directly, so on a
# sharded model it runs as this extra forward method of the root (see register_sharded_scoring).
_ROOT_METHOD: Final = "azr_chunked_scores"

# Config fields with which a model's forward transforms ``head(hidden)`` further (Gemma's
# soft-capping, Cohere's and Granite's scaling): the chunked path would silently differ, so such
# models take the plain path.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


class ResponseScores(NamedTuple):
    logprobs: torch.Tensor  # (b, R) float32: log pi(target)
    entropy: torch.Tensor | None  # (b, R) float32, or None when not asked for


def _plain_head(model: Any) -> torch.nn.Module | None:
    """The output head when the model's logits are exactly ``head(last hidden state)``."""
    config = getattr(model, "config", None)
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS):
        return None
    get_decoder = getattr(model, "get_decoder", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if get_decoder is None or not isinstance(head, torch.nn.Linear):
        return None
    return head


def _chunk_scores(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(hidden).float()  # (b, c, V): the only full-vocabulary tensor, one chunk long
    logp = token_logprobs(logits, targets)  # (b, c)
    entropy = entropy_from_logits(logits) if with_entropy else logp.new_zeros(())
    return logp, entropy


def response_scores(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_len: int,
    with_entropy: bool,
) -> ResponseScores:
    """Scores of the last ``R = targets.shape[1]`` tokens of each row.

    ``input_ids``, ``attention_mask``, ``position_ids`` are ``(b, P + R)`` with every response in
    the last ``R`` columns (the learner's layout); ``targets`` ``(b, R)`` are those response
    tokens. Column ``P - 1 + i`` predicts target ``i``. Run it under the autocast the caller
    wants; the recomputation in the backward pass runs under the same one.
    """
    R = targets.shape[1]
    head = _plain_head(model) if chunk_len > 0 else None
    if head is None:
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            logits_to_keep=R + 1,
        )
        logits = out.logits[:, :-1]  # (b, R, V)
        entropy = entropy_from_logits(logits) if with_entropy else None
        return ResponseScores(token_logprobs(logits, targets), entropy)

    root_method = getattr(model, _ROOT_METHOD, None)
    run = root_method if root_method is not None else functools.partial(_chunked, model)
    return run(head, input_ids, attention_mask, position_ids, targets, chunk_len, with_entropy)


def register_sharded_scoring(model: Any) -> None:
    """Make the chunked path a forward of ``model``'s FSDP2 root, so that the root's parameters
    are gathered around it as around ``model(...)`` (on an unsharded model it only routes
    through the same function)."""
    from torch.distributed.fsdp import register_fsdp_forward_method

    setattr(model, _ROOT_METHOD, functools.partial(_chunked, model))
    register_fsdp_forward_method(model, _ROOT_METHOD)


def _chunked(
    model: Any,
    head: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    targets: torch.Tensor,
    chunk_len: int,
    with_entropy: bool,
) -> ResponseScores:
    R = targets.shape[1]
    decoder = model.get_decoder()
    hidden = decoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
    ).last_hidden_state[:, -(R + 1) : -1]  # (b, R, H)
    # Checkpointing only pays when there is a backward pass to keep the logits for.
    keep_graph = torch.is_grad_enabled() and hidden.requires_grad
    logps, entropies = [], []
    for start in range(0, R, chunk_len):
        h = hidden[:, start : start + chunk_len]  # (b, c, H)
        t = targets[:, start : start + chunk_len]  # (b, c)
        if keep_graph:
            logp, entropy = checkpoint(_chunk_scores, head, h, t, with_entropy, use_reentrant=False)
        else:
            logp, entropy = _chunk_scores(head, h, t, with_entropy)
        logps.append(logp)
        entropies.append(entropy)
    return ResponseScores(
        torch.cat(logps, dim=1),  # (b, R)
        torch.cat(entropies, dim=1) if with_entropy else None,  # (b, R)
    )


class LogprobDrift(NamedTuple):
    """How far the generator's log-probs are from the learner's, over all response tokens."""

    mean_abs: float
    max_abs: float


def logprob_drift(
    generator: Sequence[Sequence[float]], learner: Sequence[Sequence[float]]
) -> LogprobDrift:
    """Mean and max ``|generator - learner|`` per token, rows paired and of equal lengths."""
    diffs = [
        abs(a - b)
        for gen_row, learner_row in zip(generator, learner, strict=True)
        for a, b in zip(gen_row, learner_row, strict=True)
    ]
    if not diffs:
        return LogprobDrift(0.0, 0.0)
    return LogprobDrift(sum(diffs) / len(diffs), max(diffs))
