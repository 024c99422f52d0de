"""Does a base model read its prompt, and what could self-play sharpen? Held-out probes.

Self-play can only sharpen what the policy sometimes finds, and only where its answer depends on
the task. For a base model directory (default: the committed ``cpu-base``) and the held-out tasks
this prints, per task type:

* the loss (nats per target token) of the gold solver turn under its own prompt and under the
  prompt of the next task of the same type: equal losses mean the answer ignores the prompt;
* greedy accuracy (what ``eval/<type>/accuracy`` measures) and, with ``k`` samples per task at
  each temperature, the mean accuracy and pass@k (some sample right): the headroom RL has.

    python benches/base_probe.py [--model DIR] [--k 8] [--temperatures 1.0 0.7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from azr.eval.heldout import heldout_tasks
from azr.generation.base import SamplingParams
from azr.generation.torch import TorchBackend
from azr.models.loading import load_model
from azr.pretrain import resolve_base
from azr.pretrain.corpus import conversation
from azr.tasks.parsing import format_blocks
from azr.tasks.prompts import solve_prompt
from azr.tasks.types import AbductionTask, DeductionTask, SolveTask
from azr.verify import Verifier

TYPES = ("deduction", "abduction", "induction")
STOP = "</answer>"


def _turn(prompt: str) -> str:
    return f"<|user|>{prompt}<|end|><|assistant|><think>"


def _gold(task: SolveTask) -> str:
    if isinstance(task, DeductionTask):
        return task.output
    if isinstance(task, AbductionTask):
        return task.input
    return format_blocks([("python", task.program)])


def _target_loss(model: Any, tokenizer: Any, context: str, target: str) -> float:
    c, t = tokenizer.encode(context), tokenizer.encode(target)
    ids = torch.tensor([c + t])  # (1, C+T)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(c) - 1 : -1]  # (T, V)
    return float(torch.nn.functional.cross_entropy(logits, ids[0, len(c) :]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model directory (default: cpu-base)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.7])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    path = args.model or resolve_base("cpu-base")
    model, tokenizer = load_model(path)
    model = model.float().eval()
    backend = TorchBackend(model, tokenizer, device="cpu", copy_model=False, max_batch_size=128)
    with Verifier(workers=2) as verifier:
        tasks = heldout_tasks(verifier)
        prompts = [_turn(solve_prompt(t)) for t in tasks]

        right: dict[str, list[float]] = {t: [] for t in TYPES}
        wrong: dict[str, list[float]] = {t: [] for t in TYPES}
        for i, task in enumerate(tasks):
            kind = task.task_type.value
            same = [j for j in (i + 1, i - 1) if 0 <= j < len(tasks)]
            other = next(j for j in same if tasks[j].task_type is task.task_type)
            _, target = conversation(solve_prompt(task), _gold(task), "solve", kind)
            right[kind].append(_target_loss(model, tokenizer, prompts[i], target))
            wrong[kind].append(_target_loss(model, tokenizer, prompts[other], target))

        greedy = backend.generate_blocking(
            prompts, SamplingParams(temperature=0.0, max_new_tokens=64, stop=(STOP,))
        )
        texts = [c[0].text + STOP for c in greedy]
        verdicts = verifier.score_response_batch(tasks, texts)
        greedy_acc: dict[str, list[float]] = {t: [] for t in TYPES}
        answers: dict[str, Counter[str]] = {t: Counter() for t in TYPES}
        for task, verdict, text in zip(tasks, verdicts, texts, strict=True):
            greedy_acc[task.task_type.value].append(float(verdict.correct))
            answers[task.task_type.value][text.rsplit("<answer>", 1)[-1]] += 1

        sampled: dict[float, tuple[dict[str, list[float]], dict[str, list[float]]]] = {}
        for temperature in args.temperatures:
            started = time.perf_counter()
            params = SamplingParams(
                n=args.k, temperature=temperature, max_new_tokens=64, stop=(STOP,), seed=1
            )
            out = backend.generate_blocking(prompts, params)
            flat = [c.text + STOP for cs in out for c in cs]
            checked = verifier.score_response_batch([t for t in tasks for _ in range(args.k)], flat)
            mean: dict[str, list[float]] = {t: [] for t in TYPES}
            any_: dict[str, list[float]] = {t: [] for t in TYPES}
            for i, task in enumerate(tasks):
                hits = [checked[i * args.k + j].correct for j in range(args.k)]
                mean[task.task_type.value].append(sum(hits) / args.k)
                any_[task.task_type.value].append(float(any(hits)))
            sampled[temperature] = (mean, any_)
            print(f"sampled T={temperature}: {time.perf_counter() - started:.0f} s", flush=True)

    def pct(values: list[float]) -> str:
        return f"{statistics.fmean(values) * 100:5.1f}" if values else "    -"

    print(f"\nbase: {path}; {len(tasks)} held-out tasks")
    head = f"{'type':<10} {'loss right':>10} {'loss other':>10} {'greedy':>7} {'distinct':>8}"
    for temperature in args.temperatures:
        head += f" {f'mean T={temperature}':>11} {f'pass@{args.k}':>7}"
    print(head)
    print("-" * len(head))
    for t in TYPES:
        line = (
            f"{t:<10} {statistics.fmean(right[t]):10.3f} {statistics.fmean(wrong[t]):10.3f} "
            f"{pct(greedy_acc[t]):>7} {len(answers[t]):8d}"
        )
        for temperature in args.temperatures:
            mean, any_ = sampled[temperature]
            line += f" {pct(mean[t]):>11} {pct(any_[t]):>7}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
