"""Learner hyperparameters."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from azr.errors import ConfigError

__all__ = ["DistributedConfig", "LearnerConfig"]


class DistributedConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the learner shards itself when launched under torchrun (one process ignores it).

    FSDP2 shards parameters, gradients and optimiser states over the ranks, one unit per decoder
    layer plus the root. ``mixed_precision`` (CUDA only) computes in bfloat16 parameters and
    reduces gradients in float32, the master weights and optimiser staying float32;
    ``cpu_offload`` keeps the shards (and the optimiser step) in host memory, for models whose
    states do not fit the GPUs; ``reshard_after_forward`` frees the gathered layer after its
    forward (less memory, one more all-gather in the backward). ``timeout_s`` bounds every
    collective of an update, a checkpoint or a weight sync: a rank that stops answering fails
    the job instead of hanging it. Weights leave the learner (exports, syncs) as full tensors
    gathered in buckets of ``weight_bucket_mb``.
    """

    mixed_precision: bool = True
    cpu_offload: bool = False
    reshard_after_forward: bool = True
    timeout_s: float = 600.0
    weight_bucket_mb: int = 512

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ConfigError("distributed.timeout_s must be > 0")
        if self.weight_bucket_mb < 1:
            raise ConfigError("distributed.weight_bucket_mb must be >= 1")


class LearnerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Hyperparameters of :class:`azr.rl.Learner`. Defaults follow the Absolute Zero paper.

    Optimiser
      ``lr`` 1e-6, constant after ``warmup_steps`` of linear warm-up (the paper uses none);
      AdamW with ``betas``/``adam_eps``; ``weight_decay`` (applied to matrices only, never to
      norms or biases) is 0 as the paper does not use it; gradients clipped to ``max_grad_norm``.

    Objective
      PPO-style clipped ratio with ``clip_low``/``clip_high``: 0.2 below as in PPO and 0.28 above
      ("clip-higher"), which keeps exploration alive. Token-mean over the step's batch.
      ``kl_coef`` > 0 adds ``kl_estimator`` of KL(policy || initial policy); the paper runs
      without it. ``entropy_coef`` > 0 adds an entropy bonus (off by default; the paper
      preset uses 0.001).
      Advantages: ``advantage_estimator`` picks the baseline groups (the paper's ablation):
      ``"trr++"`` normalises each of the six (task type x role) groups separately (the paper's
      Task-Relative REINFORCE++); ``"reinforce++"`` normalises the whole batch with one global
      baseline; ``"grpo"`` normalises each group of responses to the same prompt (with one
      response per prompt, as for solver tasks here, such a group carries no signal). All use
      ``advantage_weighting`` ("token" as the reference implementation,
      or "sequence") and ``advantage_eps`` in the denominator.
      ``loss_aggregation``: ``"token"`` (the paper's, and the reference implementation's)
      averages the loss over every response token of the batch, so long responses weigh more;
      ``"sequence"`` averages each response over its own tokens first and then over the
      responses, so each sample weighs the same (where proposals are tens of tokens and answers
      a few, token averaging gives the proposer most of every update).
      ``update_epochs``: optimiser steps per batch (PPO epochs; the paper takes 1). Each later
      epoch reuses the batch's samples and advantages against the same ``pi_old``, so the ratio
      clip bounds how far one batch can move the policy; the policy's version still counts
      batches, one per learner step.

    Execution
      ``micro_batch_size`` samples per forward/backward (gradients accumulate over the batch);
      ``gradient_checkpointing`` trades compute for activation memory; ``bf16_autocast`` uses
      bfloat16 autocast on CUDA only (CPU runs stay float32); ``device`` is "auto" (CUDA when
      present), "cpu", "cuda" or "cuda:N"; under torchrun "auto" and "cuda" mean the rank's own
      GPU (``LOCAL_RANK``). ``distributed``: :class:`DistributedConfig`. ``logprob_chunk_len``
      response positions at a time go through the output head when computing log-probs and
      entropy, so no
      ``(batch, length, vocabulary)`` logits exist at once, in float32 or otherwise (0: the
      model's full logits, the unchunked reference; see :mod:`azr.rl.logprobs`).

    Old log-probs
      ``old_logprobs`` says whose log-probs the PPO ratio divides by: ``"generator"`` trusts the
      ones the generation backend returned; ``"learner"`` recomputes them with the learner's
      weights before the update (as veRL does), which removes the server's numerical drift
      (other kernels, bf16) from the ratio at the cost of one forward pass over the batch, and
      reports the server-vs-learner difference. ``"auto"`` is ``"learner"`` with an SGLang
      backend and ``"generator"`` with the in-process torch backend, which computes exactly the
      learner's numbers (resolved by the run; a bare :class:`~azr.rl.Learner` reads it as
      ``"generator"``).
    """

    lr: float = 1e-6
    warmup_steps: int = 0
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.28
    advantage_estimator: Literal["trr++", "reinforce++", "grpo"] = "trr++"
    advantage_weighting: Literal["token", "sequence"] = "token"
    advantage_eps: float = 1e-6
    loss_aggregation: Literal["token", "sequence"] = "token"
    update_epochs: int = 1
    kl_coef: float = 0.0
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    entropy_coef: float = 0.0
    micro_batch_size: int = 8
    gradient_checkpointing: bool = False
    bf16_autocast: bool = True
    device: str = "auto"
    distributed: DistributedConfig = DistributedConfig()
    logprob_chunk_len: int = 512
    old_logprobs: Literal["auto", "generator", "learner"] = "auto"

    def __post_init__(self) -> None:
        checks = [
            (self.lr > 0, "lr must be > 0"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (all(0 <= b < 1 for b in self.betas), "betas must be in [0, 1)"),
            (self.adam_eps > 0, "adam_eps must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.max_grad_norm > 0, "max_grad_norm must be > 0"),
            (0 < self.clip_low < 1, "clip_low must be in (0, 1)"),
            (self.clip_high > 0, "clip_high must be > 0"),
            (self.advantage_eps > 0, "advantage_eps must be > 0"),
            (self.update_epochs >= 1, "update_epochs must be >= 1"),
            (self.kl_coef >= 0, "kl_coef must be >= 0"),
            (self.entropy_coef >= 0, "entropy_coef must be >= 0"),
            (self.micro_batch_size >= 1, "micro_batch_size must be >= 1"),
            (
                not (self.distributed.cpu_offload and self.device == "cpu"),
                "distributed.cpu_offload moves GPU shards to host memory; with device = 'cpu' "
                "there is nothing to offload",
            ),
            (self.logprob_chunk_len >= 0, "logprob_chunk_len must be >= 0"),
            (
                self.old_logprobs in ("auto", "generator", "learner"),
                "old_logprobs must be 'auto', 'generator' or 'learner'",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def for_backend(self, backend: str) -> LearnerConfig:
        """This config with ``old_logprobs = "auto"`` resolved for a generation backend."""
        if self.old_logprobs != "auto":
            return self
        source = "learner" if backend == "sglang" else "generator"
        return msgspec.structs.replace(self, old_logprobs=source)

    @classmethod
    def tiny_cpu(cls, **overrides: Any) -> LearnerConfig:
        """A preset for the tiny random model on CPU: a far larger learning rate than the paper's
        1e-6 (which is tuned for pretrained billion-parameter models) so that learning is visible
        within tens of steps."""
        return cls(**{"lr": 3e-3, "micro_batch_size": 32, "device": "cpu", **overrides})
