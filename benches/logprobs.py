"""Peak memory and time of the learner's response log-probs, chunked against unchunked.

One forward and backward pass of :func:`azr.rl.logprobs.response_scores` (log-probs, and the
entropy with ``--entropy``) on a one-layer Qwen2 model built in code with the real vocabulary
size, so that the vocabulary-sized tensors dominate as they do for a 7B model:

    python benches/logprobs.py --batch 1 --length 2048 --vocab 151936 --dtype bfloat16
    python benches/logprobs.py --chunks 0 256 1024 --entropy

Each setting runs in a fresh subprocess. On CPU the peak is the growth of the maximum resident
set size over what the model and inputs already held (``ru_maxrss`` only grows, hence one process
per setting); on CUDA it is ``torch.cuda.max_memory_allocated`` above the same baseline. The
ratio column is against ``chunk_len = 0`` (the full logits), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import transformers

from azr.rl.logprobs import response_scores


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(args: argparse.Namespace, chunk_len: int) -> dict[str, float]:
    """One setting, in this process."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    config = transformers.Qwen2Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=args.prompt + args.length,
        tie_word_embeddings=True,
    )
    model = transformers.Qwen2ForCausalLM(config).to(device=device, dtype=dtype).train()
    B, P, R = args.batch, args.prompt, args.length
    ids = torch.randint(0, args.vocab, (B, P + R), device=device)
    mask = torch.ones_like(ids)
    positions = torch.arange(P + R, device=device).expand(B, -1)
    targets = ids[:, P:]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    base = _peak_bytes(device)
    start = time.perf_counter()
    scores = response_scores(
        model, ids, mask, positions, targets, chunk_len=chunk_len, with_entropy=args.entropy
    )
    loss = scores.logprobs.mean()
    if scores.entropy is not None:
        loss = loss - 1e-3 * scores.entropy.mean()
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "chunk_len": chunk_len,
        "peak_mib": (_peak_bytes(device) - base) / 2**20,
        "seconds": seconds,
        "loss": float(loss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--length", type=int, default=2048, help="response tokens per row")
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 512])
    parser.add_argument("--entropy", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args, args.child)))
        return

    forwarded = [a for a in sys.argv[1:] if a != "--child"]
    rows = []
    for chunk_len in args.chunks:
        out = subprocess.run(
            [sys.executable, __file__, *forwarded, "--child", str(chunk_len)],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    full = next((r for r in rows if r["chunk_len"] == 0), None)
    print(
        f"B={args.batch} P={args.prompt} R={args.length} V={args.vocab} H={args.hidden} "
        f"{args.dtype} {args.device} entropy={'on' if args.entropy else 'off'}"
    )
    print(f"{'chunk_len':>9} {'peak MiB':>10} {'ratio':>6} {'seconds':>8} {'loss':>12}")
    for r in rows:
        ratio = r["peak_mib"] / full["peak_mib"] if full else float("nan")
        print(
            f"{r['chunk_len']:>9} {r['peak_mib']:>10.0f} {ratio:>6.2f} {r['seconds']:>8.2f} "
            f"{r['loss']:>12.6f}"
        )


if __name__ == "__main__":
    main()
