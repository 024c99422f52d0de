"""Graceful shutdown: in process (drain, grace expiry) and as a process (SIGTERM, SIGINT)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from serve_support import run

from azr.serve import ServeConfig, open_reward_server
from azr.verify import Verifier

ROOT = Path(__file__).resolve().parents[2]
LOOP = "def f(x):\n    while True:\n        pass"
SLOW = {"items": [{"kind": "induction", "answer": LOOP, "pairs": [["1", "1"]]}]}
"""Runs until the sandbox's wall-clock limit (1 s for the test verifier, --timeout as a
process), then is judged ``timeout``: a request that is reliably in flight for that long."""


def test_drain_finishes_in_flight_requests_and_refuses_new_ones(verifier: Verifier) -> None:
    async def main() -> None:
        async with open_reward_server(ServeConfig(port=0, grace_s=20), verifier=verifier) as server:
            url = server.url
            replies: list[httpx.Response] = []
            async with (
                httpx.AsyncClient(base_url=url, timeout=20) as busy,
                httpx.AsyncClient(base_url=url, timeout=20) as idle,
            ):
                assert (await idle.get("/health")).status_code == 200  # now idle, kept alive

                async def slow() -> None:
                    replies.append(await busy.post("/v1/verify", json=SLOW))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(slow)
                    await trio.sleep(0.3)
                    start = trio.current_time()
                    server.drain()
                    await trio.sleep(0.05)
                    # The listener is closed: a new client is refused outright.
                    with pytest.raises(httpx.ConnectError):
                        await idle.get("/health")
                    await server.wait_stopped()
                    stopped_after = trio.current_time() - start
            (reply,) = replies
            assert reply.status_code == 200
            assert reply.json()["verdicts"][0]["reason"] == "timeout"
            assert reply.headers["connection"] == "close"
            assert stopped_after < 5

    run(main)


def test_grace_expiry_cancels_what_is_left(verifier: Verifier) -> None:
    async def main() -> None:
        async with open_reward_server(ServeConfig(port=0), verifier=verifier) as server:
            errors: list[BaseException] = []

            async def slow() -> None:
                async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
                    try:
                        await client.post("/v1/verify", json={"items": SLOW["items"] * 4})
                    except httpx.HTTPError as exc:
                        errors.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow)
                await trio.sleep(0.2)
                server.drain()  # the configured grace: 30 s
                await trio.sleep(0.1)
                start = trio.current_time()
                await server.shutdown(grace_s=0.2)  # a shorter one takes over
                assert trio.current_time() - start < 2
            assert len(errors) == 1 and isinstance(errors[0], httpx.RemoteProtocolError)
        # The borrowed verifier is intact after its jobs were cancelled.
        verdict = await verifier.check_deduction_async("def f(x):\n    return x", "1", "1")
        assert verdict.correct

    run(main)


async def start_service(*args: str) -> tuple[trio.Process, int, bytearray]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "azr.serve", "--port", "0", "--workers", "1", *args],
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert process.stderr is not None
    log = bytearray()
    while (found := re.search(rb"listening on http://127\.0\.0\.1:(\d+)", log)) is None:
        chunk = await process.stderr.receive_some(4096)
        assert chunk, f"the service exited: {log.decode(errors='replace')}"
        log += chunk
    return process, int(found.group(1)), log


async def read_rest(process: trio.Process, log: bytearray) -> str:
    assert process.stderr is not None
    while chunk := await process.stderr.receive_some(4096):
        log += chunk
    return log.decode(errors="replace")


def test_sigterm_drains_then_exits_cleanly() -> None:
    async def main() -> None:
        process, port, log = await start_service("--timeout", "1", "--grace", "20")
        replies: list[Any] = []

        async def slow() -> None:
            async with httpx.AsyncClient(timeout=20) as client:
                r = await client.post(f"http://127.0.0.1:{port}/v1/verify", json=SLOW)
                replies.append((r.status_code, r.json()["verdicts"][0]["reason"]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)
            await trio.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            text = await read_rest(process, log)
        assert await process.wait() == 0, text
        assert replies == [(200, "timeout")]
        assert "SIGTERM: draining" in text and "stopped" in text

    run(main, timeout=30)


def test_second_sigint_stops_at_once() -> None:
    async def main() -> None:
        process, port, log = await start_service("--timeout", "5", "--grace", "20")
        errors: list[BaseException] = []

        async def slow() -> None:
            async with httpx.AsyncClient(timeout=20) as client:
                try:
                    await client.post(f"http://127.0.0.1:{port}/v1/verify", json=SLOW)
                except httpx.HTTPError as exc:
                    errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)
            await trio.sleep(0.3)
            start = trio.current_time()
            process.send_signal(signal.SIGINT)
            await trio.sleep(0.2)
            process.send_signal(signal.SIGINT)
            text = await read_rest(process, log)
            assert await process.wait() == 0, text
            assert trio.current_time() - start < 3
        assert len(errors) == 1
        assert "SIGINT again: stopping now" in text

    run(main, timeout=30)
