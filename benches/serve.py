"""Reward service load test on loopback: verdicts per second and latency under concurrency.

Starts ``python -m azr.serve`` on 127.0.0.1 (a free port) and drives it from this process with
1, 8 and 64 concurrent keep-alive clients, for three request shapes:

* ``verify x1``: ``POST /v1/verify`` with one full solver response (parse + one sandboxed
  check), the shape of a per-rollout reward call;
* ``verify x64``: the same with 64 responses per request, the shape of a batched trainer call;
* ``openrlhf``: ``POST /get_reward`` with one query, exactly as OpenRLHF posts it.

Every answer differs (the task's input changes with each request), so nothing is served from
the verifier's de-duplication. Clients are a few lines of raw HTTP/1.1 over trio sockets, so
that the client side costs little of the CPU the server needs. Each cell runs for at most
``--seconds`` and ``--max-requests``; everything stops by itself.

    python benches/serve.py [--seconds 3] [--max-requests 5000] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import trio

from azr.adapters import encode_task
from azr.tasks import DeductionTask, solve_prompt

PROGRAM = "def f(x):\n    return [x * 2, str(x)[::-1]]"
CONCURRENCY = (1, 8, 64)


def task(n: int) -> DeductionTask:
    return DeductionTask(program=PROGRAM, input=str(n), output=repr([n * 2, str(n)[::-1]]))


def response(n: int) -> str:
    # Every fifth answer is wrong, so both outcomes are exercised.
    value = [n * 2, str(n)[::-1]] if n % 5 else [n, ""]
    return f"<think>double it, reverse the digits</think><answer>{value!r}</answer>"


def verify_body(start: int, count: int) -> bytes:
    items = [
        {"kind": "response", "task": msgspec.to_builtins(task(n)), "response": response(n)}
        for n in range(start, start + count)
    ]
    return msgspec.json.encode({"items": items})


def openrlhf_body(n: int) -> bytes:
    prompt = f"<|im_start|>user\n{solve_prompt(task(n))}<|im_end|>\n<|im_start|>assistant\n"
    return msgspec.json.encode(
        {
            "query": [prompt + response(n) + "<|im_end|>"],
            "prompts": [prompt],
            "labels": [encode_task(task(n))],
        }
    )


def http_request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass(frozen=True)
class Shape:
    name: str
    items: int
    build: Callable[[int], bytes]
    """Request bytes for sequence number ``n`` (answers differ between numbers)."""


SHAPES = (
    Shape("verify x1", 1, lambda n: http_request("/v1/verify", verify_body(n, 1))),
    Shape("verify x64", 64, lambda n: http_request("/v1/verify", verify_body(n * 64, 64))),
    Shape("openrlhf", 1, lambda n: http_request("/get_reward", openrlhf_body(n))),
)


class Client:
    """One keep-alive connection: send a request, read one whole response."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def call(self, request: bytes) -> int:
        await self.stream.send_all(request)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            await self._fill()
        head = bytes(self.buffer[:end])
        found = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
        length = int(found.group(1)) if found else 0
        total = end + 4 + length
        while len(self.buffer) < total:
            await self._fill()
        del self.buffer[:total]
        return int(head.split(b" ", 2)[1])

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk


@dataclass
class Result:
    shape: str
    clients: int
    requests: int
    verdicts: int
    errors: int
    seconds: float
    latencies: list[float]

    def row(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1e3 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3 if lat else float("nan")
        rate = self.verdicts / self.seconds if self.seconds else 0.0
        return (
            f"| {self.shape:<10} | {self.clients:>7} | {self.requests:>8} | {rate:>10.0f} "
            f"| {p50:>8.1f} | {p99:>8.1f} | {self.errors:>6} |"
        )


async def load(port: int, shape: Shape, clients: int, seconds: float, max_requests: int) -> Result:
    # Requests are built before the clock starts: encoding is the client's cost, not the
    # service's.
    requests = [shape.build(n) for n in range(max_requests)]
    latencies: list[float] = []
    errors = 0
    next_index = 0
    deadline = trio.current_time() + seconds

    async def one_client() -> None:
        nonlocal next_index, errors
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            client = Client(stream)
            while next_index < len(requests) and trio.current_time() < deadline:
                request = requests[next_index]
                next_index += 1
                start = time.perf_counter()
                status = await client.call(request)
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    errors += 1

    start = time.perf_counter()
    with trio.fail_after(seconds + 60):
        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(one_client)
    elapsed = time.perf_counter() - start
    done = len(latencies)
    return Result(shape.name, clients, done, done * shape.items, errors, elapsed, latencies)


async def warm_up(port: int) -> None:
    # The first seconds of a fresh service are slower (the sandbox's spare children, caches,
    # CPU clocks): run every shape under load for a moment before measuring anything.
    for shape in SHAPES:
        await load(port, shape, 8, 1.0, 200)


def start_service(workers: int | None) -> tuple[subprocess.Popen[bytes], int]:
    command = [sys.executable, "-m", "azr.serve", "--port", "0", "--log-level", "INFO"]
    if workers is not None:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    assert process.stderr is not None
    started = time.monotonic()
    log = b""
    while (found := re.search(rb"listening on http://127\.0\.0\.1:(\d+)", log)) is None:
        line = process.stderr.readline()
        if not line or time.monotonic() - started > 30:
            process.kill()
            raise SystemExit(f"the service did not start:\n{log.decode(errors='replace')}")
        log += line
    return process, int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per cell (default 3)")
    parser.add_argument("--max-requests", type=int, default=5000, help="per cell (default 5000)")
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers of the service")
    args = parser.parse_args()

    process, port = start_service(args.workers)
    try:
        trio.run(warm_up, port)
        results = []
        for shape in SHAPES:
            # Fewer requests for the batch shape: each is 64 verdicts.
            cap = args.max_requests if shape.items == 1 else max(1, args.max_requests // 16)
            for clients in CONCURRENCY:
                results.append(trio.run(load, port, shape, clients, args.seconds, cap))
    finally:
        process.terminate()
        process.wait(timeout=60)

    cpus = len(os.sched_getaffinity(0))
    workers = args.workers if args.workers is not None else cpus
    print(f"azr serve on 127.0.0.1, {workers} sandbox workers, {cpus} CPUs, {args.seconds}s a cell")
    print("| request    | clients | requests | verdicts/s |  p50 ms |  p99 ms | errors |")
    print("|------------|---------|----------|------------|---------|---------|--------|")
    for result in results:
        print(result.row())


if __name__ == "__main__":
    main()
