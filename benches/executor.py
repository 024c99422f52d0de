"""Executor benchmark: azr's executor against the two usual designs, side by side in one run.

(a) azr: a forked, sandboxed child per execution from pre-warmed zygotes (isolated).
(b) a fresh ``python -I`` subprocess per call, the common sandbox design (isolated, slow).
(c) a reused-worker process pool that ``exec``-s every program in the same long-lived workers,
    the design of the reference Absolute Zero implementation (fast, not isolated: state leaks
    between programs and nothing limits what they do).

All three run the CRUXEval programs with their inputs. Throughput uses every core; latency is
measured at low load (one call at a time). Prints one table with ratios against azr.

    python benches/executor.py [--jobs N] [--subprocess-jobs N] [--latency-calls N]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from azr.executor import Executor, Job, Status

DATA = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "cruxeval"
    / "cruxeval-dev.jsonl"
)

# The per-call runner of design (b): read one job as JSON on stdin, print the repr of f(inputs).
RUNNER = (
    "import json, sys\n"
    "job = json.load(sys.stdin)\n"
    "env = {}\n"
    "exec(job['code'], env)\n"
    "print(repr(eval('f(' + job['input'] + ')', env)))\n"
)


def _reused_worker_run(code: str, inputs: str) -> str:
    # Design (c): runs in a long-lived pool worker, sharing its interpreter with every other job.
    env: dict[str, object] = {}
    exec(code, env)
    return repr(eval("f(" + inputs + ")", env))


def load_rows() -> list[dict[str, str]]:
    with DATA.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_azr(rows: list[dict[str, str]], n: int, calls: int, cores: int) -> dict[str, float]:
    jobs = [Job(r["code"], r["input"]) for r in rows]
    batch = [jobs[i % len(jobs)] for i in range(n)]
    with Executor(workers=cores) as ex:
        ex.run_batch(batch[: 2 * cores])  # warm
        t = time.perf_counter()
        out = ex.run_batch(batch)
        dt = time.perf_counter() - t
        assert all(r.status is Status.OK for r in out), [r for r in out if not r.ok][:2]
        lat = []
        for i in range(calls):
            j = jobs[i % len(jobs)]
            t0 = time.perf_counter()
            ex.run(j.program, j.inputs)
            lat.append((time.perf_counter() - t0) * 1e3)
    return {"rate": n / dt, "p50": statistics.median(lat), "p99": pct(lat, 0.99)}


def _subprocess_once(row: dict[str, str]) -> str:
    p = subprocess.run(
        [sys.executable, "-I", "-c", RUNNER],
        input=json.dumps(row),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return p.stdout


def bench_subprocess(
    rows: list[dict[str, str]], n: int, calls: int, cores: int
) -> dict[str, float]:
    batch = [rows[i % len(rows)] for i in range(n)]
    with cf.ThreadPoolExecutor(cores) as pool:
        t = time.perf_counter()
        list(pool.map(_subprocess_once, batch))
        dt = time.perf_counter() - t
    lat = []
    for i in range(calls):
        t0 = time.perf_counter()
        _subprocess_once(rows[i % len(rows)])
        lat.append((time.perf_counter() - t0) * 1e3)
    return {"rate": n / dt, "p50": statistics.median(lat), "p99": pct(lat, 0.99)}


def bench_reused(rows: list[dict[str, str]], n: int, calls: int, cores: int) -> dict[str, float]:
    batch = [rows[i % len(rows)] for i in range(n)]
    with cf.ProcessPoolExecutor(cores) as pool:
        list(pool.map(_reused_worker_run, ["def f():\n return 1"] * cores, [""] * cores))
        t = time.perf_counter()
        codes = [r["code"] for r in batch]
        inputs = [r["input"] for r in batch]
        list(pool.map(_reused_worker_run, codes, inputs, chunksize=16))
        dt = time.perf_counter() - t
        lat = []
        for i in range(calls):
            r = rows[i % len(rows)]
            t0 = time.perf_counter()
            pool.submit(_reused_worker_run, r["code"], r["input"]).result()
            lat.append((time.perf_counter() - t0) * 1e3)
    return {"rate": n / dt, "p50": statistics.median(lat), "p99": pct(lat, 0.99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=4000, help="executions for throughput (a, c)")
    ap.add_argument("--subprocess-jobs", type=int, default=200, help="executions for (b)")
    ap.add_argument("--latency-calls", type=int, default=400, help="sequential calls for latency")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows = load_rows()
    print(f"CRUXEval programs: {len(rows)}; cores: {cores}; python {sys.version.split()[0]}")
    results = {
        "azr executor (isolated)": bench_azr(rows, args.jobs, args.latency_calls, cores),
        "python -I per call (isolated)": bench_subprocess(
            rows, args.subprocess_jobs, max(20, args.latency_calls // 10), cores
        ),
        "reused workers (not isolated)": bench_reused(rows, args.jobs, args.latency_calls, cores),
    }
    base = results["azr executor (isolated)"]["rate"]
    print()
    print("| design | executions/s | p50 ms | p99 ms | azr speed-up |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        cells = f"{r['rate']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {base / r['rate']:.2f}x"
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
