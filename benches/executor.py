"""Executor benchmark: azr's executor against the usual designs, side by side in one run.

(a) azr: a forked, sandboxed child per execution from pre-warmed zygotes (isolated: every
    layer of ``Executor.isolation()`` on).
(b) pebble per call: the design of the reference Absolute Zero implementation, a persistent
    ``pebble.ProcessPool`` whose long-lived workers ``exec`` one snippet per scheduled call,
    with a per-call timeout (not isolated: state leaks between programs and nothing limits what
    they do).
(c) pebble batched: the same pool, snippets sent in chunks through ``ProcessPool.map``.
(d) a fresh ``python -I`` subprocess per call, the common sandbox design (isolated, slow).
(e) the fork floor: one forked process per call from a warm interpreter holding the same
    preloaded modules as azr's zygotes (symbols bound at start, heap frozen), and nothing
    else (no namespaces, no seccomp, no limits, no new user, no fresh directory, the job read
    before the fork). Any design that gives every job a process of its own pays at least
    this; the gap between (a) and (e) is what azr's layers and protocol cost.

All run the CRUXEval programs with their inputs. Throughput uses every core; latency is
measured at low load (one call at a time). Prints one table with ratios against azr. Run it
more than once on a shared machine: only ratios within one run are comparable.

    python benches/executor.py [--jobs N] [--subprocess-jobs N] [--latency-calls N]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import marshal
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pebble

from azr.executor import Executor, Job, Status

DATA = (
    Path(os.environ.get("AZR_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    / "cruxeval"
    / "cruxeval-dev.jsonl"
)
TIMEOUT_S = 5.0

# The per-call runner of design (d): read one job as JSON on stdin, print the repr of f(inputs).
RUNNER = (
    "import json, sys\n"
    "job = json.load(sys.stdin)\n"
    "env = {}\n"
    "exec(job['code'], env)\n"
    "print(repr(eval('f(' + job['input'] + ')', env)))\n"
)


# Design (e): a forking server per core. It reads marshalled (code, input) jobs on stdin, forks
# one child per job, which runs it and writes the repr back through a pipe, and answers on stdout.
FORK_SERVER = """
import gc, marshal, os, sys
import _ast, bisect, collections, copy, datetime, functools, heapq, itertools, math, operator
import random, re, string, time, typing, unicodedata
gc.collect()
gc.freeze()
rd, wr = sys.stdin.buffer, sys.stdout.buffer
while True:
    head = rd.read(4)
    if len(head) < 4:
        break
    code, inputs = marshal.loads(rd.read(int.from_bytes(head, "little")))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            env = {}
            exec(code, env)
            out = repr(eval("f(" + inputs + ")", env)).encode()
        except BaseException as e:
            out = ("error: " + type(e).__name__).encode()
        os.write(w, out)
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    out = b"".join(chunks)
    wr.write(len(out).to_bytes(4, "little") + out)
    wr.flush()
"""


class _ForkServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-S", "-c", FORK_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # As azr's zygotes: symbols bound once, before the forks.
            env={**os.environ, "LD_BIND_NOW": "1"},
        )

    def call(self, code: str, inputs: str) -> bytes:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        job = marshal.dumps((code, inputs))
        self.proc.stdin.write(len(job).to_bytes(4, "little") + job)
        self.proc.stdin.flush()
        size = int.from_bytes(self.proc.stdout.read(4), "little")
        return self.proc.stdout.read(size)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def bench_fork_floor(
    rows: list[dict[str, str]], n: int, calls: int, cores: int
) -> dict[str, float]:
    batch = [(r["code"], r["input"]) for r in (rows[i % len(rows)] for i in range(n))]
    servers = [_ForkServer() for _ in range(cores)]
    try:

        def drive(k: int) -> None:
            for code, inputs in batch[k::cores]:
                out = servers[k].call(code, inputs)
                assert not out.startswith(b"error: "), out

        for k in range(cores):
            servers[k].call(*batch[k])  # warm
        with cf.ThreadPoolExecutor(cores) as pool:
            t = time.perf_counter()
            list(pool.map(drive, range(cores)))
            dt = time.perf_counter() - t
        lat = []
        for i in range(calls):
            t0 = time.perf_counter()
            servers[0].call(*batch[i % len(batch)])
            lat.append((time.perf_counter() - t0) * 1e3)
    finally:
        for s in servers:
            s.close()
    return summary(n, dt, lat)


def _snippet(code: str, inputs: str) -> str:
    # Designs (b), (c): run in a long-lived pool worker, sharing its interpreter with every other
    # job, as the reference implementation does.
    env: dict[str, object] = {}
    exec(code, env)
    return repr(eval("f(" + inputs + ")", env))


def _snippets(chunk: list[tuple[str, str]]) -> list[str]:
    return [_snippet(c, i) for c, i in chunk]


def load_rows() -> list[dict[str, str]]:
    with DATA.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def cpu_seconds() -> float:
    # This process and every reaped descendant (zygotes, pool workers, forked children): each
    # design's processes are gone when its function returns, so the difference is its CPU.
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measured(run: Callable[[], dict[str, float]], executions: int) -> dict[str, float]:
    """Runs one design and adds its CPU per execution (start-up and latency calls included),
    which a loaded machine distorts less than throughput."""
    before = cpu_seconds()
    r = run()
    r["cpu_ms"] = (cpu_seconds() - before) / executions * 1e3
    return r


def summary(n: int, dt: float, lat: list[float]) -> dict[str, float]:
    return {"rate": n / dt, "p50": statistics.median(lat), "p99": pct(lat, 0.99)}


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
    return summary(n, dt, lat)


def bench_pebble(
    rows: list[dict[str, str]], n: int, calls: int, cores: int, chunk: int
) -> dict[str, float]:
    batch = [(r["code"], r["input"]) for r in (rows[i % len(rows)] for i in range(n))]
    with pebble.ProcessPool(max_workers=cores) as pool:
        warm = [pool.schedule(_snippet, args=batch[i], timeout=TIMEOUT_S) for i in range(cores)]
        for f in warm:
            f.result()
        t = time.perf_counter()
        if chunk == 1:
            futures = [pool.schedule(_snippet, args=a, timeout=TIMEOUT_S) for a in batch]
            for f in futures:
                f.result()
        else:
            chunks = [batch[i : i + chunk] for i in range(0, n, chunk)]
            for _ in pool.map(_snippets, chunks, timeout=TIMEOUT_S).result():
                pass
        dt = time.perf_counter() - t
        lat = []
        for i in range(calls):
            t0 = time.perf_counter()
            pool.schedule(_snippet, args=batch[i % len(batch)], timeout=TIMEOUT_S).result()
            lat.append((time.perf_counter() - t0) * 1e3)
    return summary(n, dt, lat)


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
    return summary(n, dt, lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=4000, help="executions for throughput")
    ap.add_argument("--subprocess-jobs", type=int, default=200, help="executions for (d)")
    ap.add_argument("--latency-calls", type=int, default=400, help="sequential calls for latency")
    ap.add_argument("--chunk", type=int, default=64, help="snippets per call in (c)")
    ap.add_argument("--skip-subprocess", action="store_true", help="leave out (d)")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows = load_rows()
    print(f"CRUXEval programs: {len(rows)}; cores: {cores}; python {sys.version.split()[0]}")
    with Executor(workers=1) as ex:
        iso = ex.isolation()
    off = sorted(iso.get("unavailable", {}) or {})  # type: ignore[call-overload]
    print(f"azr isolation layers unavailable on this host: {off or 'none'}")
    n, calls = args.jobs, args.latency_calls
    total = n + calls
    results = {
        "azr executor (isolated)": measured(lambda: bench_azr(rows, n, calls, cores), total),
        "fork floor: a bare forked child per call (not sandboxed)": measured(
            lambda: bench_fork_floor(rows, n, calls, cores), total
        ),
        "pebble, one snippet per call (not isolated)": measured(
            lambda: bench_pebble(rows, n, calls, cores, 1), total
        ),
        f"pebble, {args.chunk} snippets per call (not isolated)": measured(
            lambda: bench_pebble(rows, n, calls, cores, args.chunk), total
        ),
    }
    if not args.skip_subprocess:
        sub_calls = max(20, calls // 10)
        results["python -I per call (isolated)"] = measured(
            lambda: bench_subprocess(rows, args.subprocess_jobs, sub_calls, cores),
            args.subprocess_jobs + sub_calls,
        )
    base = results["azr executor (isolated)"]["rate"]
    print()
    print("| design | executions/s | p50 ms | p99 ms | CPU ms per execution | azr / design |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        cells = f"{r['rate']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['cpu_ms']:.2f}"
        cells += f" | {base / r['rate']:.2f}x"
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
