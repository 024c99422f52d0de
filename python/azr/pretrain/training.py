"""Training the base model: next-token prediction on the packed corpus, on the CPU.

Documents are packed greedily, in corpus order, into rows of ``seq_len`` tokens; a document that
does not fit starts a new row (the rest of the row is padding), and one longer than a row is cut.
Every row therefore begins at a document's start, where prompts begin at self-play time. Loss is
taken on each document's target tokens, and on its context (a conversation's prompt) with the
weight ``context_weight``. The schedule
is linear warm-up then cosine decay; everything is seeded, so the same recipe on the same
machine and thread count gives the same losses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from azr.models.tokenizer import Tokenizer
from azr.pretrain.corpus import Document

__all__ = ["TrainLog", "TrainSpec", "pack", "train_model"]


class TrainSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Optimisation settings (part of the recipe)."""

    seed: int = 0
    seq_len: int = 512
    batch_rows: int = 16
    epochs: float = 2.0
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    threads: int = 2
    # Loss weight of a document's context (a conversation's prompt) beside its target's 1.
    # Above 0 the model also learns to predict the programs it is shown, which it must read
    # to answer; 0 trains on targets only.
    context_weight: float = 0.0


class TrainLog(msgspec.Struct, kw_only=True):
    """What training recorded: the loss of every step, tokens seen, wall time."""

    losses: list[float] = msgspec.field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    steps: int = 0


def pack(
    docs: Sequence[Document], tokenizer: Tokenizer, seq_len: int
) -> tuple[list[list[int]], list[list[bool]]]:
    """Rows of token ids ``(rows, <= seq_len)`` and their loss masks (True: trained on)."""
    rows: list[list[int]] = []
    masks: list[list[bool]] = []
    ids: list[int] = []
    mask: list[bool] = []
    for doc in docs:
        ctx = tokenizer.encode(doc.context) if doc.context else []
        tgt = tokenizer.encode(doc.target)
        d_ids = ctx + tgt
        d_mask = [False] * len(ctx) + [True] * len(tgt)
        if ids and len(ids) + len(d_ids) > seq_len:
            rows.append(ids)
            masks.append(mask)
            ids, mask = [], []
        while len(d_ids) > seq_len:
            rows.append(d_ids[:seq_len])
            masks.append(d_mask[:seq_len])
            d_ids, d_mask = d_ids[seq_len:], d_mask[seq_len:]
        ids += d_ids
        mask += d_mask
    if ids:
        rows.append(ids)
        masks.append(mask)
    return rows, masks


def train_model(
    model: Any,
    rows: Sequence[Sequence[int]],
    masks: Sequence[Sequence[bool]],
    spec: TrainSpec,
    pad_id: int,
    *,
    max_steps: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainLog:
    """Train ``model`` in place over ``rows`` for ``spec.epochs`` epochs (or ``max_steps``)."""
    import torch

    torch.set_num_threads(spec.threads)
    g = torch.Generator().manual_seed(spec.seed)
    per_epoch = math.ceil(len(rows) / spec.batch_rows)
    total = max(1, round(per_epoch * spec.epochs))
    steps = total if max_steps is None else min(total, max_steps)
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "norm" not in name else no_decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": spec.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=spec.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < spec.warmup_steps:
            return spec.lr * (step + 1) / spec.warmup_steps
        progress = (step - spec.warmup_steps) / max(1, total - spec.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return spec.lr * (spec.min_lr_ratio + (1 - spec.min_lr_ratio) * cosine)

    log = TrainLog()
    start = time.perf_counter()
    model.train()
    order: list[int] = []
    for step in range(steps):
        if len(order) < spec.batch_rows:
            order += torch.randperm(len(rows), generator=g).tolist()
        batch, order = order[: spec.batch_rows], order[spec.batch_rows :]
        width = max(len(rows[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # (b, T)
        loss_mask = torch.zeros((len(batch), width), dtype=torch.bool)  # (b, T)
        attn = torch.zeros((len(batch), width), dtype=torch.long)  # (b, T)
        for r, i in enumerate(batch):
            n = len(rows[i])
            ids[r, :n] = torch.tensor(rows[i])
            loss_mask[r, :n] = torch.tensor(masks[i])
            attn[r, :n] = 1
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]  # (b, T-1, V)
        target = ids[:, 1:]  # (b, T-1)
        if spec.context_weight == 0.0:
            keep = loss_mask[:, 1:]  # (b, T-1): predict a target token from what precedes it
            loss = torch.nn.functional.cross_entropy(logits[keep], target[keep])
        else:
            # (b, T-1): target tokens weigh 1, context tokens context_weight, padding 0
            weight = torch.where(loss_mask[:, 1:], 1.0, spec.context_weight) * attn[:, 1:]
            ce = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), target.flatten(), reduction="none"
            ).view_as(weight)
            loss = (ce * weight).sum() / weight.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.max_grad_norm)
        opt.step()
        value = float(loss.detach())
        log.losses.append(value)
        log.tokens += int(attn.sum())
        log.steps = step + 1
        if on_step is not None:
            on_step(step, value)
    log.seconds = time.perf_counter() - start
    model.eval()
    return log
