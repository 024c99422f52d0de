"""The policy learner: clipped policy-gradient steps on each batch of self-play samples.

Per step: TRR++ advantages over the batch (six task-type x role groups), each sample's advantage
broadcast to its response tokens, a PPO-style clipped ratio against the generator's logprobs,
token-mean over the whole batch, gradient accumulation over micro-batches, clipping, AdamW;
``update_epochs`` times over the same batch (once, as in the paper, by default).

Batch layout. Each micro-batch is ``[left padding][prompt][response][right padding]``: prompts
are left-padded to end in the same column, so all response positions are the last ``R + 1``
columns and only their logits are computed (``logits_to_keep``); positions come from the
attention mask, so padding never shifts a token's position. This is the same layout the torch
generation backend decodes with, which keeps the recomputed logprobs equal to the generator's.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import torch

from azr.generation.base import CheckpointWeights, InProcessWeights
from azr.models import (
    TinyModelSpec,
    Tokenizer,
    load_model,
    load_state_dict_into,
    load_weights_into,
    save_model,
)
from azr.rl import distributed, sharded_checkpoint, sharded_loading
from azr.rl.advantages import baseline_groups, trr_advantages
from azr.rl.batch import GROUP_NAMES, Sample, TrainBatch
from azr.rl.checkpoint import atomic_directory, resolve_checkpoint
from azr.rl.config import LearnerConfig
from azr.rl.logprobs import ResponseScores, logprob_drift, response_scores
from azr.rl.loss import kl_penalty, ppo_clip_loss

__all__ = ["Learner", "StepMetrics"]

_STATE_FILE = "learner_state.pt"
_META_FILE = "learner.json"
_REFERENCE_DIR = "reference"


class StepMetrics(msgspec.Struct, frozen=True):
    """What one learner step (``update_epochs`` optimiser steps on one batch) did.

    ``loss``, ``pg_loss``, ``kl``, ``entropy``, ``grad_norm`` and ``total_tokens`` are those of
    the first epoch (the on-policy objective); ``clip_frac`` and the ratios cover every epoch.
    ``loss`` is the full objective (policy + KL - entropy terms), token-mean over the batch.
    ``kl`` is the KL estimate to the reference policy (0 when disabled) and ``entropy`` the mean
    per-token entropy of the current policy, computed only when the entropy bonus is on (None
    otherwise: it costs a pass over the whole vocabulary per token). ``clip_frac`` is the
    fraction of response tokens whose gradient the ratio clip removed; ``ratio_mean`` and
    ``ratio_max_dev`` describe ``pi / pi_old`` over response tokens (``ratio_max_dev`` =
    max |ratio - 1|, 0 for a fully on-policy batch up to rounding). ``grad_norm`` is before
    clipping; a non-finite one skips the update (``skipped``; in a later epoch it ends the step
    early, keeping the epochs before it). ``tokens`` counts response tokens trained on;
    ``tokens_per_s`` counts every non-padding token the step processed, each epoch's
    (prompts included) per second of wall time. ``reward_mean``/``reward_std`` are per group
    present in the batch, keyed like ``"deduction.propose"``. With ``old_logprobs =
    "learner"``, ``old_logprob_diff_mean``/``_max`` are the mean and max absolute difference
    between the generator's log-probs and the learner's recomputed ones (None otherwise).
    """

    step: int
    loss: float
    pg_loss: float
    kl: float
    entropy: float | None
    clip_frac: float
    ratio_mean: float
    ratio_max_dev: float
    grad_norm: float
    lr: float
    samples: int
    tokens: int
    total_tokens: int
    seconds: float
    tokens_per_s: float
    skipped: bool
    reward_mean: dict[str, float]
    reward_std: dict[str, float]
    old_logprob_diff_mean: float | None = None
    old_logprob_diff_max: float | None = None


class _LearnerMeta(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: int
    step: int
    config: LearnerConfig


_META_ENCODER = msgspec.json.Encoder()
_META_DECODER = msgspec.json.Decoder(_LearnerMeta)


@dataclass(frozen=True, slots=True)
class _MicroBatch:
    input_ids: torch.Tensor  # (b, P + R)
    attention_mask: torch.Tensor  # (b, P + R)
    position_ids: torch.Tensor  # (b, P + R)
    targets: torch.Tensor  # (b, R) response tokens, padded
    mask: torch.Tensor  # (b, R) bool, True on real response tokens
    old_logp: torch.Tensor  # (b, R)
    advantages: torch.Tensor  # (b, R) per-sample advantage broadcast over its tokens
    response_len: int  # R
    total_tokens: int  # non-padding tokens in input_ids


@dataclass(frozen=True, slots=True)
class _EpochSums:
    values: dict[str, float]  # loss, pg, kl, entropy, clipped, ratio: sums over response tokens
    total_tokens: int
    ratio_max_dev: float


def _collate(
    samples: Sequence[Sample], advantages: torch.Tensor, pad_id: int, device: torch.device
) -> _MicroBatch:
    P = max(len(s.prompt_ids) for s in samples)
    R = max(1, max(len(s.response_ids) for s in samples))
    rows, masks, targets, old = [], [], [], []
    for s in samples:
        p, r = len(s.prompt_ids), len(s.response_ids)
        rows.append([pad_id] * (P - p) + [*s.prompt_ids, *s.response_ids] + [pad_id] * (R - r))
        masks.append([0] * (P - p) + [1] * (p + r) + [0] * (R - r))
        targets.append([*s.response_ids] + [pad_id] * (R - r))
        old.append([*s.old_logprobs] + [0.0] * (R - r))
    input_ids = torch.tensor(rows, dtype=torch.long)  # (b, P + R)
    attention_mask = torch.tensor(masks, dtype=torch.long)  # (b, P + R)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (b, P + R)
    lengths = torch.tensor([len(s.response_ids) for s in samples])  # (b,)
    mask = torch.arange(R)[None, :] < lengths[:, None]  # (b, R)
    adv = advantages[:, None].expand(-1, R).float()  # (b, R)
    return _MicroBatch(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        position_ids=position_ids.to(device),
        targets=torch.tensor(targets, dtype=torch.long).to(device),
        mask=mask.to(device),
        old_logp=torch.tensor(old, dtype=torch.float32).to(device),
        advantages=adv.to(device),
        response_len=R,
        total_tokens=int(attention_mask.sum()),
    )


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Learner:
    """Owns the policy being trained, its optimiser and its checkpoints.

    Weights are float32 master weights; on CUDA the forward runs under bfloat16 autocast. The
    policy's version is the number of optimiser steps taken (``step``); completions sampled from
    a backend synced to version ``v`` carry ``weight_version == v``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Tokenizer,
        config: LearnerConfig | None = None,
        *,
        ref_model: Any = None,
    ) -> None:
        self.config = config = config or LearnerConfig()
        # Under torchrun every rank holds a shard (azr.rl.distributed); None in one process.
        self.group = distributed.current_group()
        group = self.group
        self.device = group.device if group is not None else _resolve_device(config.device)
        self.tokenizer = tokenizer
        # Sharded, the model may be empty (meta parameters): sharding places and fills it.
        self.model = model.to(self.device) if group is None else model
        self.ref_model: Any = None
        if config.kl_coef > 0:
            # Snapshot before gradient checkpointing is switched on: the reference only infers.
            if ref_model is None:
                twin = copy.deepcopy if group is None else sharded_loading.meta_twin
                ref_model = twin(self.model)
            ref = ref_model.to(self.device) if group is None else ref_model
            self.ref_model = ref.eval().requires_grad_(False)
        if config.gradient_checkpointing:
            kwargs = {"use_reentrant": False}
            if hasattr(self.model, "activation_checkpointing_enable"):
                self.model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:  # the older name of the same switch
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if group is not None:
            # Before the optimiser is built: it must hold the sharded parameters.
            sharded_loading.shard_and_load(self.model, self.ref_model, group)
        self.model.train()

        # Decay only matrices: shrinking norm gains or biases towards zero is not regularisation.
        params = [p for p in self.model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.AdamW(
            groups, lr=config.lr, betas=config.betas, eps=config.adam_eps
        )
        warmup = config.warmup_steps

        def lr_factor(step: int) -> float:
            return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        self.step_count = 0

    # ----------------------------------------------------------------------------------------
    # Construction
    # ----------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str] | None,
        config: LearnerConfig | None = None,
        *,
        spec: TinyModelSpec | None = None,
        seed: int = 0,
    ) -> Learner:
        """A learner on a Hugging Face model directory, or the tiny model when ``path`` is None."""
        # Sharded, only rank 0 reads the weights (azr.rl.sharded_loading).
        group = distributed.current_group()
        model, tokenizer = sharded_loading.rank_model(path, group, spec=spec, seed=seed)
        return cls(model, tokenizer, config)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], config: LearnerConfig | None = None
    ) -> Learner:
        """Resume from :meth:`save_checkpoint` output; ``config`` defaults to the saved one."""
        path = resolve_checkpoint(path)
        meta = _META_DECODER.decode(Path(path, _META_FILE).read_bytes())
        if distributed.current_group() is not None or sharded_checkpoint.is_sharded(path):
            # Allocated only: load_checkpoint fills it (sharded, from rank 0 or the shards).
            model, tokenizer = sharded_checkpoint.empty_model(path)
        else:
            model, tokenizer = load_model(path)
        learner = cls(model, tokenizer, config or meta.config)
        learner.load_checkpoint(path)
        return learner

    # ----------------------------------------------------------------------------------------
    # Training
    # ----------------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda" and self.config.bf16_autocast:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _scores(self, model: Any, mb: _MicroBatch, *, with_entropy: bool) -> ResponseScores:
        """Log-probs (and entropy) of ``mb``'s response tokens, ``(b, R)``, chunked along R."""
        return response_scores(
            model,
            mb.input_ids,
            mb.attention_mask,
            mb.position_ids,
            mb.targets,
            chunk_len=self.config.logprob_chunk_len,
            with_entropy=with_entropy,
        )

    def _micro_batches(
        self, samples: Sequence[Sample], advantages: torch.Tensor
    ) -> Iterator[tuple[_MicroBatch, bool]]:
        """This rank's micro-batches, each with whether it counts (False: a zero-weight repeat
        that keeps the ranks' collectives in step; see azr.rl.distributed)."""
        size = self.config.micro_batch_size
        starts = [
            start
            for start in range(0, len(samples), size)
            if any(s.response_ids for s in samples[start : start + size])
        ]
        for start, counted in distributed.share(starts, self.group):
            chunk = samples[start : start + size]
            mb = _collate(
                chunk, advantages[start : start + size], self.tokenizer.pad_token_id, self.device
            )
            yield mb, counted

    @property
    def sharded(self) -> bool:
        """Whether this learner is one rank of several (its parameters are FSDP shards)."""
        return self.group is not None

    def step(self, batch: TrainBatch | Sequence[Sample]) -> StepMetrics:
        """One optimiser step on ``batch``; advantages are normalised over exactly this batch."""
        batch = batch if isinstance(batch, TrainBatch) else TrainBatch(tuple(batch))
        with distributed.leading(self.group, distributed.Step(batch)):
            return self._step(batch)

    def _step(self, batch: TrainBatch) -> StepMetrics:
        t0 = time.perf_counter()
        cfg = self.config
        samples = batch.samples if isinstance(batch, TrainBatch) else tuple(batch)
        if not samples:
            raise ValueError("empty batch")
        drift = None
        if cfg.old_logprobs == "learner":
            # pi_old := this policy before the update, computed by the same code as pi below.
            recomputed = self.compute_logprobs(samples)
            drift = logprob_drift([s.old_logprobs for s in samples], recomputed)
            samples = tuple(
                msgspec.structs.replace(s, old_logprobs=tuple(lp))
                for s, lp in zip(samples, recomputed, strict=True)
            )
        lengths = torch.tensor([len(s.response_ids) for s in samples])  # (N,)
        rewards = torch.tensor([s.reward for s in samples], dtype=torch.float32)  # (N,)
        groups, num_groups = baseline_groups(
            cfg.advantage_estimator, [s.group for s in samples], [s.prompt_ids for s in samples]
        )  # (N,)
        n_tokens = int(lengths.sum())
        if n_tokens == 0:
            raise ValueError("batch has no response tokens")
        advantages = trr_advantages(
            rewards,
            groups,
            lengths,
            weighting=cfg.advantage_weighting,
            num_groups=num_groups,
            eps=cfg.advantage_eps,
        )  # (N,)

        self.model.train()
        # Each epoch is one optimiser step over the whole batch. pi_old stays the sampling
        # policy, so from the second epoch on the ratio clip is what bounds the move.
        lr = float(self.scheduler.get_last_lr()[0])
        epochs: list[_EpochSums] = []
        grad_norm = 0.0
        for epoch in range(cfg.update_epochs):
            epochs.append(self._accumulate(samples, advantages, n_tokens))
            norm = distributed.to_float(
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            )
            if epoch == 0:
                grad_norm = norm
            if not math.isfinite(norm):
                # A non-finite gradient would destroy the weights: drop this update and the
                # epochs after it (and, past the first, its sums from the metrics).
                self.optimizer.zero_grad(set_to_none=True)
                if epoch > 0:
                    epochs.pop()
                break
            self.optimizer.step()
        # Skipped only when nothing was applied: a later epoch's failure keeps the earlier ones.
        skipped = not math.isfinite(grad_norm)
        if not skipped:
            self.scheduler.step()
            self.step_count += 1
        first = epochs[0]
        epoch_tokens = n_tokens * len(epochs)

        reward_mean: dict[str, float] = {}
        reward_std: dict[str, float] = {}
        # Reported per (task type x role) group whatever the baseline groups were: under GRPO
        # those are prompts, hundreds per step.
        task_groups = torch.tensor([s.group for s in samples], dtype=torch.long)  # (N,)
        for g in sorted(set(task_groups.tolist())):
            r = rewards[task_groups == g].double()
            reward_mean[GROUP_NAMES[g]] = float(r.mean())
            reward_std[GROUP_NAMES[g]] = float(r.std(correction=0))
        seconds = time.perf_counter() - t0
        return StepMetrics(
            step=self.step_count,
            loss=first.values["loss"],
            pg_loss=first.values["pg"] / n_tokens,
            kl=first.values["kl"] / n_tokens,
            entropy=first.values["entropy"] / n_tokens if cfg.entropy_coef > 0 else None,
            clip_frac=sum(e.values["clipped"] for e in epochs) / epoch_tokens,
            ratio_mean=sum(e.values["ratio"] for e in epochs) / epoch_tokens,
            ratio_max_dev=max(e.ratio_max_dev for e in epochs),
            grad_norm=grad_norm,
            lr=lr,
            samples=len(samples),
            tokens=n_tokens,
            total_tokens=first.total_tokens,
            seconds=seconds,
            tokens_per_s=first.total_tokens * len(epochs) / seconds if seconds > 0 else 0.0,
            skipped=skipped,
            reward_mean=reward_mean,
            reward_std=reward_std,
            old_logprob_diff_mean=drift.mean_abs if drift is not None else None,
            old_logprob_diff_max=drift.max_abs if drift is not None else None,
        )

    def _accumulate(
        self, samples: Sequence[Sample], advantages: torch.Tensor, n_tokens: int
    ) -> _EpochSums:
        """Zero the gradients and accumulate the batch's loss gradient over its micro-batches."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        sums = {"loss": 0.0, "pg": 0.0, "kl": 0.0, "entropy": 0.0, "clipped": 0.0, "ratio": 0.0}
        ratio_max_dev = 0.0
        total_tokens = 0
        for mb, counted in self._micro_batches(samples, advantages):
            total_tokens += mb.total_tokens if counted else 0
            mask = mb.mask.float()  # (b, R)
            with self._autocast():
                scores = self._scores(self.model, mb, with_entropy=cfg.entropy_coef > 0)
            logp = scores.logprobs  # (b, R)
            pg, clipped, ratio = ppo_clip_loss(
                logp,
                mb.old_logp,
                mb.advantages,
                clip_low=cfg.clip_low,
                clip_high=cfg.clip_high,
            )
            per_token = pg  # (b, R)
            kl = torch.zeros_like(pg)
            if self.ref_model is not None:
                with torch.no_grad(), self._autocast():
                    ref_logp = self._scores(self.ref_model, mb, with_entropy=False).logprobs
                kl = kl_penalty(logp, ref_logp, cfg.kl_estimator)
                per_token = per_token + cfg.kl_coef * kl
            if scores.entropy is not None:
                per_token = per_token - cfg.entropy_coef * scores.entropy  # (b, R)
            # Dividing by the whole batch's token (or response) count, not the micro-batch's,
            # makes the accumulated gradient exactly that of the batch's mean loss.
            if cfg.loss_aggregation == "sequence":
                per_response = mask / mask.sum(dim=1, keepdim=True).clamp_min(1.0)  # (b, R)
                loss = (per_token * per_response).sum() / len(samples)
            else:
                loss = (per_token * mask).sum() / n_tokens
            if not counted:
                loss = loss * 0.0
            loss.backward()  # type: ignore[no-untyped-call]
            if not counted:
                continue

            with torch.no_grad():
                sums["loss"] += float(loss.detach())
                sums["pg"] += float((pg.detach() * mask).sum())
                sums["kl"] += float((kl.detach() * mask).sum())
                if scores.entropy is not None:
                    sums["entropy"] += float((scores.entropy.detach() * mask).sum())
                sums["clipped"] += float((clipped.float() * mask).sum())
                sums["ratio"] += float((ratio.detach() * mask).sum())
                dev = ((ratio.detach() - 1.0).abs() * mask).max()
                ratio_max_dev = max(ratio_max_dev, float(dev))

        sums, total_tokens, ratio_max_dev = distributed.reduce_step_sums(
            self.group, sums, total_tokens, ratio_max_dev
        )
        return _EpochSums(sums, total_tokens, ratio_max_dev)

    @torch.no_grad()
    def compute_logprobs(self, samples: Sequence[Sample]) -> list[list[float]]:
        """The current policy's log-probability of each response token (as used in ``step``)."""
        samples = tuple(samples)
        out: list[list[float]] = [[] for _ in samples]
        dummy = torch.zeros(len(samples))
        size = self.config.micro_batch_size
        for start in range(0, len(samples), size):
            chunk = samples[start : start + size]
            mb = _collate(chunk, dummy[: len(chunk)], self.tokenizer.pad_token_id, self.device)
            with self._autocast():
                logp = self._scores(self.model, mb, with_entropy=False).logprobs  # (b, R)
            for i, s in enumerate(chunk):
                out[start + i] = logp[i, : len(s.response_ids)].tolist()
        return out

    # ----------------------------------------------------------------------------------------
    # Weights for generation backends
    # ----------------------------------------------------------------------------------------

    @property
    def weight_version(self) -> int:
        return self.step_count

    def weights(self) -> InProcessWeights:
        """The parameters for an in-process backend (which copies them before returning): the
        live ones in one process; sharded, full tensors gathered onto rank 0 (bfloat16 on CUDA,
        float32 on the CPU), a collective that rank 0 announces."""
        if self.group is None:
            return InProcessWeights(self.model.state_dict(), self.step_count)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        state = {n: t for bucket in self.weight_buckets(dtype=dtype) for n, t in bucket}
        return InProcessWeights(state, self.step_count)

    def weight_buckets(
        self, *, dtype: torch.dtype = torch.bfloat16, bucket_bytes: int | None = None
    ) -> Generator[list[tuple[str, torch.Tensor]], None, None]:
        """The policy's full weights as lists of ``(name, tensor)`` of about ``bucket_bytes``
        each (default ``learner.distributed.weight_bucket_mb``), floating ones cast to
        ``dtype``; a tied tensor appears once. Sharded, each tensor is gathered from all ranks
        on the learner's device (rank 0 announces it; only rank 0's copies are meant to be
        used): run the iterator to its end or close it, which finishes the gather."""
        size = bucket_bytes or self.config.distributed.weight_bucket_mb << 20
        command = distributed.Gather(dtype=str(dtype).removeprefix("torch."), bucket_bytes=size)
        device = self.device if self.group is not None else None
        with distributed.leading(self.group, command):
            tensors = distributed.full_tensors(self.model, dtype=dtype, device=device)
            buckets = distributed.weight_buckets(tensors, size)
            try:
                yield from buckets
            finally:
                for _ in buckets:  # the other ranks gather to the end whatever happens here
                    pass

    def unsharded_model(self) -> Any:
        """A plain float32 copy of the policy (for an in-process generation backend beside a
        sharded learner); a collective when sharded."""
        from transformers import AutoModelForCausalLM

        weights = self.weights()
        auto: Any = AutoModelForCausalLM
        model = auto.from_config(self.model.config, dtype=torch.float32)
        model.generation_config = copy.deepcopy(self.model.generation_config)
        load_state_dict_into(model, weights.state_dict)
        return model.to(self.device)

    def export_weights(self, path: str | os.PathLike[str]) -> CheckpointWeights:
        """Write a Hugging Face model directory (bfloat16 safetensors, atomically) for a server
        to load; sharded, rank 0 writes it from the gathered tensors."""
        from azr.export import write_model_directory

        with atomic_directory(path) as tmp, contextlib.closing(self.weight_buckets()) as buckets:
            write_model_directory(tmp, buckets, self.model, self.tokenizer)
        return CheckpointWeights(path=os.fspath(Path(path).absolute()), version=self.step_count)

    # ----------------------------------------------------------------------------------------
    # Checkpoints
    # ----------------------------------------------------------------------------------------

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write weights (a loadable Hugging Face directory), optimiser, scheduler, RNG states and
        the step counter. The write is atomic: ``path`` always holds one complete checkpoint."""
        with atomic_directory(path) as tmp:
            state = {
                "scheduler": self.scheduler.state_dict(),
                "rng": _rng_state(),
                "step": self.step_count,
            }
            if self.group is not None:
                # Weights, optimiser and reference as torch.distributed.checkpoint shards.
                sharded_checkpoint.save(self, tmp)
            else:
                save_model(self.model, self.tokenizer, tmp)
                if self.ref_model is not None:
                    self.ref_model.save_pretrained(tmp / _REFERENCE_DIR, safe_serialization=True)
                state["optimizer"] = self.optimizer.state_dict()
            # Through a Python file: a full disk is then an OSError (ENOSPC), not torch's
            # errno-less "enforce fail at inline_container.cc".
            with (tmp / _STATE_FILE).open("wb") as f:
                torch.save(state, f)
            version = 2 if self.group is not None else 1
            meta = _LearnerMeta(format=version, step=self.step_count, config=self.config)
            (tmp / _META_FILE).write_bytes(_META_ENCODER.encode(meta))

    def _apply_optimizer_settings(self) -> None:
        """Make this learner's config, not the checkpoint's, drive the optimiser from now on:
        ``load_state_dict`` restores the saved lr, betas, eps and weight decay, which would
        silently ignore a change made on resume. Unchanged settings give identical values."""
        cfg = self.config
        decays = (cfg.weight_decay, 0.0)
        for group, decay in zip(self.optimizer.param_groups, decays, strict=True):
            group["initial_lr"] = cfg.lr
            group["betas"] = cfg.betas
            group["eps"] = cfg.adam_eps
            group["weight_decay"] = decay
        scheduler = self.scheduler
        scheduler.base_lrs = [cfg.lr] * len(self.optimizer.param_groups)
        factors = [fn(scheduler.last_epoch) for fn in scheduler.lr_lambdas]
        for group, base, factor in zip(
            self.optimizer.param_groups, scheduler.base_lrs, factors, strict=True
        ):
            group["lr"] = base * factor
        scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore everything :meth:`save_checkpoint` wrote into this learner, in place."""
        path = resolve_checkpoint(path)
        # Mapped, not read: a one-process checkpoint's optimiser state is rank 0's to send.
        state = torch.load(path / _STATE_FILE, map_location="cpu", weights_only=True, mmap=True)
        if self.group is not None or sharded_checkpoint.is_sharded(path):
            # Either format at any world size: the shards are re-cut to this one.
            sharded_checkpoint.load(self, path, state.get("optimizer"), _REFERENCE_DIR)
        else:
            load_weights_into(self.model, path)
            reference = path / _REFERENCE_DIR
            if self.ref_model is not None and reference.is_dir():
                load_weights_into(self.ref_model, reference)
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._apply_optimizer_settings()
        _set_rng_state(state["rng"])
        self.step_count = int(state["step"])
