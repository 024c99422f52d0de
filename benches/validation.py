"""Validation benchmark: what the shifted clocks of the determinism check cost.

Proposal validation runs each program once per seed of the determinism check; since the runs
must see different clocks (see ``azr.tasks.clock``), the repeated runs carry the executor's
``clock_offset_s``, which the child applies before the program runs. This runs the CRUXEval
programs through the check's jobs (run 0 unshifted, run 1 shifted) and through the same jobs
without any shift, on the same executor in the same process, and prints executions per second,
the ratio and the children's CPU time.

    python benches/validation.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from azr.executor import Executor, Job
from azr.tasks.validation import ValidationConfig, determinism_jobs

DATA = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "cruxeval"
    / "cruxeval-dev.jsonl"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each kind")
    args = parser.parse_args()
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    config = ValidationConfig()
    clocked = [job for r in rows for job in determinism_jobs(r["code"], r["input"], config)]
    plain = [
        Job(r["code"], r["input"], hash_seed=h, random_seed=s)
        for r in rows
        for h, s in config.seeds
    ]
    timings: dict[str, list[float]] = {"plain": [], "clocked": []}
    cpu: dict[str, list[float]] = {"plain": [], "clocked": []}
    with Executor() as ex:
        ex.run_batch(plain[:50])  # warm the workers
        for _ in range(args.rounds):
            for name, jobs in (("plain", plain), ("clocked", clocked)):
                start = time.perf_counter()
                results = ex.run_batch(jobs)
                timings[name].append(len(jobs) / (time.perf_counter() - start))
                cpu[name].append(statistics.median(r.cpu_ms for r in results))
                assert sum(r.ok for r in results) >= len(rows) * 0.9 * len(config.seeds)
        workers = ex.workers
    best = {name: max(rates) for name, rates in timings.items()}
    print(f"{len(plain)} executions per round, {workers} workers, best of {args.rounds}")
    print(f"{'jobs':<28}{'executions/s':>14}{'ratio':>8}{'child CPU ms (median)':>24}")
    for name, label in (("plain", "without shifted clocks"), ("clocked", "with shifted clocks")):
        ratio = best[name] / best["plain"]
        child = statistics.median(cpu[name])
        print(f"{label:<28}{best[name]:>14.0f}{ratio:>8.2f}{child:>24.3f}")


if __name__ == "__main__":
    main()
