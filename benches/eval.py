"""Scoring speed: azr's sandbox against the ``evalplus`` package's own evaluator, side by side
in one run, on the canonical HumanEval+ solutions with all base and plus inputs.

Both sides do the same work: compute expected outputs (and per-input times) by running the
canonical solutions, then score the canonical solutions as candidates against every input.
EvalPlus runs the reference in this process (no isolation) and each candidate in a forked
process per input set (base, plus) under its reliability guard; azr runs both in its sandbox.
The verdicts must agree (all pass).

    pip install --no-deps -r requirements/bench.txt      # evalplus without its generation stack
    python benches/eval.py [--data PATH] [--limit N] [--workers N]

Reported: seconds for reference outputs, for scoring, and in total, per side, and azr's
speed-up. Run on an otherwise idle machine; both sides get the same number of workers. A third
line is the floor: one bare pass of the canonical solutions over every input in this process
(no isolation, no timers, no comparison; EvalPlus's own reference step runs them in process
too). Any evaluator makes two such passes (references, then the candidates), so with W workers
no total can be below ``2 * floor / W``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

Timed = tuple[dict[str, bool], float, float]  # passed per task, reference s, scoring s

_DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "eval" / "evalplus"
) / "HumanEvalPlus.jsonl.gz"


def _evalplus_check(args: tuple[Any, ...]) -> tuple[str, str, str]:
    from evalplus.eval import untrusted_check

    task_id, solution, problem, expected = args
    stats = []
    for part in ("base", "plus"):
        stat, _ = untrusted_check(
            "humaneval",
            solution,
            problem[f"{part}_input"],
            problem["entry_point"],
            expected=expected[part],
            atol=problem["atol"],
            ref_time=expected[f"{part}_time"],
            fast_check=True,
        )
        stats.append(stat)
    return task_id, stats[0], stats[1]


def run_evalplus(path: Path, limit: int | None, workers: int) -> Timed:
    # The package reads its override variable at import time.
    os.environ["HUMANEVAL_OVERRIDE_PATH"] = str(path)
    from evalplus.data import get_human_eval_plus
    from evalplus.gen.util import trusted_exec

    problems = list(get_human_eval_plus().values())[:limit]
    t0 = time.perf_counter()
    expected = {}
    for p in problems:
        code = p["prompt"] + p["canonical_solution"]
        oracle: dict[str, Any] = {}
        for part in ("base", "plus"):
            oracle[part], oracle[f"{part}_time"] = trusted_exec(
                code, p[f"{part}_input"], p["entry_point"], record_time=True
            )
        expected[p["task_id"]] = oracle
    reference_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    jobs = [
        (p["task_id"], p["prompt"] + p["canonical_solution"], p, expected[p["task_id"]])
        for p in problems
    ]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_evalplus_check, jobs))
    scoring_s = time.perf_counter() - t0
    passed = {t: base == "pass" and plus == "pass" for t, base, plus in results}
    return passed, reference_s, scoring_s


def run_azr(path: Path, limit: int | None, workers: int) -> Timed:
    from azr.eval.code_scoring import EvalPlusScorer
    from azr.eval.data.evalplus import load_humaneval_plus
    from azr.eval.suite import eval_limits
    from azr.executor import Executor

    problems = load_humaneval_plus(path)[:limit]
    with Executor(workers, eval_limits()) as ex:
        scorer = EvalPlusScorer(ex)
        t0 = time.perf_counter()
        scorer.prepare(problems)
        reference_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        verdicts = scorer.score([(p, p.reference) for p in problems])
        scoring_s = time.perf_counter() - t0
    passed = {p.task_id: v.passed for p, v in zip(problems, verdicts, strict=True)}
    return passed, reference_s, scoring_s


def run_floor(path: Path, limit: int | None) -> float:
    """Seconds for one bare in-process pass of the canonical solutions over all inputs."""
    import copy
    import gzip
    import json

    with gzip.open(path, "rt") as fh:
        problems = [json.loads(line) for line in fh][:limit]
    total = 0.0
    for p in problems:
        namespace: dict[str, Any] = {}
        exec(p["prompt"] + p["canonical_solution"], namespace)  # the dataset's reference code
        fn = namespace[p["entry_point"]]
        t0 = time.perf_counter()
        for part in ("base_input", "plus_input"):
            for args in p[part]:
                fn(*copy.deepcopy(args))
        total += time.perf_counter() - t0
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=_DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    try:
        import evalplus  # noqa: F401
    except ImportError:
        print("evalplus is not installed: pip install --no-deps -r requirements/bench.txt")
        return 2
    path = args.data.resolve()
    if not path.exists():
        print(f"no data at {path}")
        return 2

    ours, our_ref, our_score = run_azr(path, args.limit, args.workers)
    theirs, their_ref, their_score = run_evalplus(path, args.limit, args.workers)
    floor = run_floor(path, args.limit)

    n = len(ours)
    same = sum(ours[t] == theirs.get(t) for t in ours)
    print(
        f"HumanEval+ canonical solutions, base + plus inputs: {n} problems, {args.workers} workers"
    )
    print(f"{'evaluator':<26}{'references s':>14}{'scoring s':>12}{'total s':>10}{'passed':>8}")
    rows = [
        ("azr sandbox (isolated)", our_ref, our_score, sum(ours.values())),
        ("evalplus (reference)", their_ref, their_score, sum(theirs.values())),
    ]
    for name, ref, score, passed in rows:
        print(f"{name:<26}{ref:>14.2f}{score:>12.2f}{ref + score:>10.2f}{passed:>8}")
    print(f"{'bare pass (floor), 1 proc':<26}{floor:>14.2f}{'':>12}{'':>10}{'':>8}")
    bound = 2 * floor / args.workers
    print(f"lower bound for any total with {args.workers} workers: {bound:.2f} s")
    print(f"same verdicts: {same}/{n}")
    print(
        f"azr speed-up: scoring {their_score / our_score:.2f}x, "
        f"total {(their_ref + their_score) / (our_ref + our_score):.2f}x"
    )
    return 0 if same == n else 1


if __name__ == "__main__":
    sys.exit(main())
