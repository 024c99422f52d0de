"""Throughput of the learner's update step and of in-process torch generation.

Runs the tiny byte-level model (or a local Hugging Face model directory via ``--model``) on CPU,
and on CUDA when one is present, and prints tokens per second and peak memory:

    python benches/learner.py                 # tiny model, CPU (+ CUDA if available)
    python benches/learner.py --devices cpu --steps 3
    python benches/learner.py --nproc 2 --devices cpu   # FSDP2 over 2 ranks vs one process

Update tokens/s counts every non-padding token the step processes (prompt + response);
generation tokens/s counts generated tokens. CPU peak memory is the process's maximum resident
set size so far (it only grows); CUDA peak memory is ``torch.cuda.max_memory_allocated`` for
that phase alone.

With ``--nproc N`` the update is also run sharded over N torchrun ranks (FSDP2, gloo on CPU,
NCCL on CUDA), on the same batches, and both are printed side by side: tokens/s of the whole
job, and peak memory per rank. On CPU the ranks share the machine's cores with each other, so
a speed-up below 1 is expected there; the memory per rank is what sharding buys.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers

from azr.generation import SamplingParams, TorchBackend
from azr.models import load_model
from azr.rl import ROLES, TASK_TYPES, Learner, LearnerConfig, Sample


@dataclass
class Row:
    device: str
    phase: str
    tokens_per_s: float
    seconds: float
    peak_mib: float


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batch(args: argparse.Namespace, vocab: int, seed: int) -> list[Sample]:
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(args.batch):
        prompt = torch.randint(0, min(vocab, 256), (args.prompt_len,), generator=gen).tolist()
        response = torch.randint(0, min(vocab, 256), (args.response_len,), generator=gen).tolist()
        samples.append(
            Sample(
                prompt_ids=tuple(prompt),
                response_ids=tuple(response),
                # Plausible behaviour-policy logprobs; ratios far from 1 only mean more clipping.
                old_logprobs=tuple([-5.5] * args.response_len),
                reward=float(torch.rand((), generator=gen) > 0.5),
                task=TASK_TYPES[i % 3],
                role=ROLES[i % 2],
            )
        )
    return samples


def bench_update(args: argparse.Namespace, device: torch.device) -> Row:
    model, tok = load_model(args.model, seed=0)
    config = _learner_config(args, str(device))
    learner = Learner(model, tok, config)
    batches = [_batch(args, len(tok), seed) for seed in range(args.steps + 1)]
    learner.step(batches[0])  # warm-up: allocator, kernels, optimiser state
    _reset_peak(device)
    tokens, t0 = 0, time.perf_counter()
    for batch in batches[1:]:
        tokens += learner.step(batch).total_tokens
    _sync(device)
    seconds = time.perf_counter() - t0
    return Row(str(device), "update", tokens / seconds, seconds, _peak_mib(device))


def _learner_config(args: argparse.Namespace, device: str) -> LearnerConfig:
    return LearnerConfig(
        lr=1e-5,
        micro_batch_size=args.micro_batch,
        device=device,
        gradient_checkpointing=args.gradient_checkpointing,
    )


def rank_worker(args: argparse.Namespace) -> None:
    """One rank of the sharded update (under torchrun); writes its numbers to --as-rank."""
    from azr.rl.distributed import FromPretrained, open_group
    from azr.rl.follower import build_learner, follow

    config = _learner_config(args, args.devices[0] if args.devices else "auto")
    with open_group(config) as group:
        device = group.device
        _reset_peak(device)
        tokens, seconds = 0, 0.0
        if group.is_leader:
            learner = build_learner(FromPretrained(args.model, seed=0), config)
            vocab = len(learner.tokenizer)
            batches = [_batch(args, vocab, seed) for seed in range(args.steps + 1)]
            learner.step(batches[0])
            t0 = time.perf_counter()
            for batch in batches[1:]:
                tokens += learner.step(batch).total_tokens
            _sync(device)
            seconds = time.perf_counter() - t0
            group.stop(timeout=60)
        else:
            follow(group)
        record = {"rank": group.rank, "tokens": tokens, "seconds": seconds}
        record["peak_mib"] = _peak_mib(device)
    Path(args.as_rank, f"rank{record['rank']}.json").write_text(json.dumps(record))


def bench_sharded(args: argparse.Namespace, device: torch.device, argv: list[str]) -> list[Row]:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc-per-node={args.nproc}", __file__, *argv, "--as-rank", out]
        cmd += ["--devices", device.type]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads or 1)}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        records = [json.loads(p.read_text()) for p in sorted(Path(out).glob("rank*.json"))]
    lead = next(r for r in records if r["rank"] == 0)
    speed = lead["tokens"] / lead["seconds"]
    return [
        Row(
            f"{device.type} x{args.nproc}",
            f"rank {r['rank']}",
            speed,
            lead["seconds"],
            r["peak_mib"],
        )
        for r in records
    ]


def bench_generate(args: argparse.Namespace, device: torch.device) -> Row:
    model, tok = load_model(args.model, seed=0)
    backend = TorchBackend(model, tok, device=device, copy_model=False)
    gen = torch.Generator().manual_seed(1)
    prompts = [
        bytes(torch.randint(97, 123, (args.prompt_len,), generator=gen).tolist()).decode()
        for _ in range(args.batch)
    ]
    params = SamplingParams(max_new_tokens=args.response_len, seed=0)
    backend.generate_blocking(prompts[:2], SamplingParams(max_new_tokens=4, seed=0))  # warm-up
    _reset_peak(device)
    t0 = time.perf_counter()
    result = backend.generate_blocking(prompts, params)
    _sync(device)
    seconds = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for r in result for c in r)
    return Row(str(device), "generate", tokens / seconds, seconds, _peak_mib(device))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="local HF model directory (default: tiny)")
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu, plus cuda")
    parser.add_argument("--batch", type=int, default=32, help="samples per step / prompts")
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--response-len", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed update steps")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--nproc", type=int, default=None, help="also shard over N ranks")
    parser.add_argument("--as-rank", default=None, help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.as_rank:
        rank_worker(args)
        return 0

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows: list[Row] = []
    passed = []  # the arguments the ranks get: all but --nproc and its value
    skip = False
    for arg in argv:
        if not skip and arg != "--nproc" and not arg.startswith("--nproc="):
            passed.append(arg)
        skip = arg == "--nproc"
    for name in devices:
        device = torch.device(name)
        rows.append(bench_update(args, device))
        if args.nproc:
            rows.extend(bench_sharded(args, device, passed))
        else:
            rows.append(bench_generate(args, device))

    model_name = args.model or "tiny byte-level Qwen2"
    print(
        f"model: {model_name}; batch {args.batch}, prompt {args.prompt_len}, "
        f"response {args.response_len}, torch threads {torch.get_num_threads()}"
    )
    header = f"{'device':<8} {'phase':<9} {'tokens/s':>12} {'seconds':>9} {'peak MiB':>10}"
    if args.nproc:
        print("update only; tokens/s of the whole job; peak memory per process (CPU: RSS)")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.device:<8} {r.phase:<9} {r.tokens_per_s:>12,.0f} {r.seconds:>9.2f} "
            f"{r.peak_mib:>10,.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
