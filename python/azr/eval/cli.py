"""``azr eval``: score a model on the paper's benchmarks, every program in the sandbox.

    azr eval [--model PATH] --benchmarks humaneval+,mbpp+,lcb,cruxeval-o,cruxeval-i,aime24,
             aime25,amc23,math500,minerva,olympiadbench [--backend torch|sglang]
             [--sglang-url URL] [--n N --temperature T] [--limit K] [--data-dir DIR] [--out DIR]
             [--template auto|plain|chat|markers]

Exit status: 0 done, 2 bad arguments or data (nothing scored), 130 interrupted (what was
scored is kept; a rerun continues).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from azr.errors import AzrError

__all__ = ["main"]


def _parser(prog: str) -> argparse.ArgumentParser:
    from .benchmarks import BENCHMARKS

    p = argparse.ArgumentParser(
        prog=prog,
        description="Evaluate a model on code and math benchmarks; generated programs run in "
        "azr's sandbox. Results go to OUT/results.json; a rerun skips what is scored.",
    )
    p.add_argument("--model", help="local model folder or checkpoint (default: the tiny model)")
    p.add_argument(
        "--benchmarks",
        default="humaneval+",
        help=f"comma-separated, from: {','.join(BENCHMARKS)}",
    )
    p.add_argument("--backend", choices=["torch", "sglang"], default="torch")
    p.add_argument("--sglang-url", help="a running SGLang server or router (with --backend sglang)")
    p.add_argument("--n", type=int, default=1, help="samples per problem (pass@k for k <= n)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=4096)
    p.add_argument("--limit", type=int, help="only the first K problems of each benchmark")
    p.add_argument("--data-dir", default="data/eval", help="benchmark files (see README layout)")
    p.add_argument("--out", default="eval-out", help="output folder (results.json)")
    p.add_argument("--template", choices=["auto", "plain", "chat", "markers"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32, help="prompts per generation call")
    p.add_argument("--workers", type=int, help="sandbox workers (default: one per CPU)")
    p.add_argument("--device", help="torch device (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "azr eval") -> int:
    args = _parser(prog).parse_args(argv)
    from .benchmarks import parse_benchmarks
    from .results import format_table
    from .runner import EvalOptions, run_eval

    try:
        options = EvalOptions(
            model=args.model,
            benchmarks=tuple(parse_benchmarks(args.benchmarks)),
            backend=args.backend,
            sglang_url=args.sglang_url,
            n=args.n,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            limit=args.limit,
            data_dir=args.data_dir,
            out=args.out,
            template=args.template,
            seed=args.seed,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            progress=not args.no_progress,
        )
        results = run_eval(options)
    except (AzrError, ValueError) as exc:
        print(f"azr eval: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("azr eval: interrupted (scored problems are kept)", file=sys.stderr)
        return 130
    print(format_table(results, options.benchmarks))
    print(f"results: {options.out}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
