"""Bad and hostile clients get clear 4xx/503 answers while everyone else is still served."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import msgspec
import pytest
import trio
from serve_support import REVERSE, answer, json_body, raw_exchange, run, status_of

from azr.serve import ServeConfig, open_reward_server
from azr.tasks import Reason
from azr.verify import Verifier

LIMITED = ServeConfig(
    port=0,
    keepalive_timeout_s=0.5,
    max_body_bytes=64 * 1024,
    max_header_bytes=4096,
    max_items=50,
    header_timeout_s=0.5,
    body_timeout_s=0.5,
)
GOOD = {
    "items": [
        {"kind": "response", "task": msgspec.to_builtins(REVERSE), "response": answer("'ba'")}
    ]
}
HOSTILE_PROGRAMS = [
    "def f(x):\n    while True:\n        pass",  # runs past its time
    "import os\ndef f(x):\n    return os.system('echo owned')",  # forbidden import
    "def f(x):\n    return __import__('os').fork()",  # forbidden builtin
    "def f(x):\n    return ' ' * (1 << 40)",  # memory
    "def f(x):\n    print('y' * 10_000_000)\n    return x",  # output flood
    "def f(x):\n    return f(x)",  # recursion
    "def f(x):\n    return ().__class__.__base__.__subclasses__()",  # introspection
    "def f(x):\n    return open('/etc/passwd').read()",  # files
    "class Liar:\n    def __eq__(self, o):\n        return True\ndef f(x):\n    return Liar()",
]


async def good_client(url: str, done: trio.Event, served: list[float]) -> None:
    """Keeps asking for a verdict until ``done``; every answer must be right."""
    async with httpx.AsyncClient(base_url=url) as client:
        while not done.is_set():
            start = trio.current_time()
            r = await client.post("/v1/verify", json=GOOD)
            assert r.status_code == 200, r.text
            assert r.json()["verdicts"][0]["reason"] == "ok"
            served.append(trio.current_time() - start)
            await trio.sleep(0.01)


async def with_good_client(url: str, attack: Callable[[], Awaitable[None]]) -> list[float]:
    """Run ``attack`` while a well-behaved client is served; returns its latencies."""
    done = trio.Event()
    served: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(good_client, url, done, served)

        async def attack_then_stop() -> None:
            try:
                await attack()
            finally:
                done.set()

        nursery.start_soon(attack_then_stop)
    return served


async def post(
    client: httpx.AsyncClient, content: bytes, ctype: str = "application/json", **kw: Any
) -> httpx.Response:
    headers = {"content-type": ctype, **kw.pop("headers", {})}
    return await client.post("/v1/verify", content=content, headers=headers, **kw)


def error_of(r: httpx.Response) -> tuple[int, str, str]:
    e = r.json()["error"]
    assert e["status"] == r.status_code
    return r.status_code, e["code"], e["message"]


def test_bad_requests_get_clear_errors_while_others_are_served(verifier: Verifier) -> None:
    results: dict[str, Any] = {}

    async def main() -> None:
        async with open_reward_server(LIMITED, verifier=verifier) as server:

            async def attack() -> None:
                async with httpx.AsyncClient(base_url=server.url) as c:
                    results["syntax"] = error_of(await post(c, b'{"items": [}'))
                    results["empty"] = error_of(await post(c, b""))
                    results["not_object"] = error_of(await post(c, b"[1, 2]"))
                    results["unknown_field"] = error_of(
                        await post(c, b'{"items": [], "priority": 1}')
                    )
                    item = {"kind": "deduction", "program": "p", "input": "1"}
                    results["missing_field"] = error_of(
                        await post(c, msgspec.json.encode({"items": [item]}))
                    )
                    item = {"kind": "deduction", "program": 1, "input": "1", "answer": "1"}
                    results["wrong_type"] = error_of(
                        await post(c, msgspec.json.encode({"items": [item]}))
                    )
                    results["bad_kind"] = error_of(
                        await post(c, b'{"items": [{"kind": "eval", "code": "1"}]}')
                    )
                    results["bad_task"] = error_of(
                        await post(
                            c,
                            b'{"items": [{"kind": "response", "response": "x",'
                            b' "task": {"type": "proof"}}]}',
                        )
                    )
                    results["deep"] = error_of(await post(c, b"[" * 30_000 + b"]" * 30_000))
                    results["media"] = error_of(await post(c, b"items=1", "text/plain"))
                    results["msgpack_garbage"] = error_of(
                        await post(
                            c,
                            b"\xc1\xc1\xc1",
                            "application/msgpack",
                            headers={"accept": "application/json"},
                        )
                    )
                    results["accept"] = error_of(
                        await post(c, msgspec.json.encode(GOOD), headers={"accept": "text/html"})
                    )
                    too_many = {"items": GOOD["items"] * 51}
                    results["items"] = error_of(await post(c, msgspec.json.encode(too_many)))
                    big = msgspec.json.encode(
                        {"items": [{**GOOD["items"][0], "response": "x" * 70_000}]}
                    )
                    results["oversize"] = error_of(await post(c, big))

                    async def chunks() -> AsyncIterator[bytes]:
                        for _ in range(20):
                            yield b" " * 8192

                    r = await c.post(
                        "/v1/verify", content=chunks(), headers={"content-type": "application/json"}
                    )
                    results["oversize_chunked"] = error_of(r)
                    results["surrogate"] = (
                        await post(
                            c,
                            b'{"items": [{"kind": "deduction", "program": "def f(x):'
                            b'\\n    return x", "input": "1", "answer": "\\ud800"}]}',
                        )
                    ).status_code

            served = await with_good_client(server.url, attack)
            assert served
            health = httpx.Response(200)
            async with httpx.AsyncClient(base_url=server.url) as c:
                health = await c.get("/health")
            assert health.json()["status"] == "ok"

    run(main)
    assert results["syntax"][:2] == (400, "bad_request")
    assert "not valid JSON" in results["syntax"][2]
    assert results["empty"][:2] == (400, "bad_request")
    assert results["not_object"][:2] == (422, "invalid_request")
    assert results["unknown_field"] == (
        422,
        "invalid_request",
        "Object contains unknown field `priority`",
    )
    assert results["missing_field"][:2] == (422, "invalid_request")
    assert "answer" in results["missing_field"][2]
    assert results["wrong_type"][2] == "Expected `str`, got `int` - at `$.items[0].program`"
    assert "$.items[0].kind" in results["bad_kind"][2]
    assert "$.items[0].task.type" in results["bad_task"][2]
    assert results["deep"][0] in (400, 422)
    assert results["media"][:2] == (415, "unsupported_media_type")
    assert results["msgpack_garbage"][:2] == (400, "bad_request")
    assert results["accept"][:2] == (406, "not_acceptable")
    assert results["items"][:2] == (413, "too_many_items")
    assert results["oversize"][:2] == (413, "body_too_large")
    assert results["oversize_chunked"][:2] == (413, "body_too_large")
    # A lone surrogate escape is refused by the JSON decoder: such text never reaches a check.
    assert results["surrogate"] == 400


def test_hostile_answers_are_scored_and_others_still_served(verifier: Verifier) -> None:
    verdicts: list[dict[str, Any]] = []

    async def main() -> None:
        async with open_reward_server(LIMITED, verifier=verifier) as server:

            async def attack() -> None:
                items = [
                    {"kind": "induction", "answer": program, "pairs": [["1", "1"]]}
                    for program in HOSTILE_PROGRAMS
                ]
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
                    r = await c.post("/v1/verify", json={"items": items})
                    assert r.status_code == 200, r.text
                    verdicts.extend(r.json()["verdicts"])

            served = await with_good_client(server.url, attack)
            assert served, "the well-behaved client was never answered"

    run(main)
    assert len(verdicts) == len(HOSTILE_PROGRAMS)
    assert not any(v["correct"] for v in verdicts)
    reasons = [v["reason"] for v in verdicts]
    assert reasons[0] == "timeout"
    assert reasons[1] == "forbidden"
    assert all(v["reward"] < 0 for v in verdicts)


def test_protocol_abuse_on_raw_sockets(verifier: Verifier) -> None:
    async def main() -> None:
        async with open_reward_server(LIMITED, verifier=verifier) as server:
            port = server.port

            async def attack() -> None:
                huge = b"GET /health HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 8000 + b"\r\n\r\n"
                raw = await raw_exchange(port, huge)
                assert status_of(raw) == 431
                assert json_body(raw)["error"]["code"] == "headers_too_large"
                raw = await raw_exchange(port, b"BREW /pot HTCPCP/1.0\r\n\r\n")
                assert status_of(raw) == 400
                raw = await raw_exchange(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
                assert status_of(raw) == 400  # a TLS hello on the plain-text port
                # Slow headers: cut off after the header timeout with a 408.
                start = trio.current_time()
                raw = await raw_exchange(port, b"POST /v1/verify HTTP/1.1\r\nhost: x\r\n")
                assert status_of(raw) == 408
                assert trio.current_time() - start < 3
                # A body that never arrives.
                raw = await raw_exchange(
                    port,
                    b"POST /v1/verify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                    b"content-length: 100\r\n\r\n{",
                )
                assert status_of(raw) == 408
                # Declared too large: refused before the body is read.
                raw = await raw_exchange(
                    port,
                    b"POST /v1/verify HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999\r\n\r\n",
                )
                assert status_of(raw) == 413
                # Ambiguous framing (a request-smuggling vector) is refused.
                raw = await raw_exchange(
                    port,
                    b"POST /v1/verify HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
                    b"content-length: 3\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                )
                assert status_of(raw) == 400
                # HTTP/1.0 without keep-alive: answered, then closed.
                raw = await raw_exchange(port, b"GET /health HTTP/1.0\r\n\r\n")
                assert status_of(raw) == 200
                # A client that connects and says nothing is closed at the keep-alive timeout.
                start = trio.current_time()
                assert await raw_exchange(port, b"") == b""
                assert 0.4 < trio.current_time() - start < 3

            served = await with_good_client(server.url, attack)
            assert served

    run(main)


def test_overload_is_a_503_with_retry_after(verifier: Verifier) -> None:
    config = ServeConfig(port=0, max_inflight=1, max_queued=1)
    slow = {"items": [{"kind": "induction", "answer": HOSTILE_PROGRAMS[0], "pairs": [["1", "1"]]}]}

    async def main() -> None:
        async with (
            open_reward_server(config, verifier=verifier) as server,
            httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        ):
            statuses: list[int] = []

            async def call() -> None:
                statuses.append((await client.post("/v1/verify", json=slow)).status_code)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)  # in flight
                await trio.sleep(0.1)
                nursery.start_soon(call)  # queued
                await trio.sleep(0.1)
                r = await client.post("/v1/verify", json=GOOD)  # refused
                assert r.status_code == 503
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["code"] == "overloaded"
                assert (await client.get("/health")).json()["queued"] == 1
            assert statuses == [200, 200]
            assert 'azr_rejected_total{code="overloaded"} 1' in server.render_metrics()

    run(main)


@pytest.mark.parametrize("content_length", [None, "4000"])
def test_expect_100_continue(verifier: Verifier, content_length: str | None) -> None:
    body = msgspec.json.encode(GOOD)

    async def main() -> None:
        async with open_reward_server(LIMITED, verifier=verifier) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                length = str(len(body)) if content_length is None else content_length
                head = (
                    "POST /v1/verify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                    f"expect: 100-continue\r\ncontent-length: {length}\r\n\r\n"
                )
                await stream.send_all(head.encode())
                interim = await stream.receive_some(4096)
                assert interim.startswith(b"HTTP/1.1 100 ")
                await stream.send_all(body.ljust(int(length), b" "))
                out = b""
                while b"\r\n\r\n" not in out or not out.rstrip().endswith(b"}"):
                    out += await stream.receive_some(65536)
                assert status_of(out) == 200
                assert json_body(out)["verdicts"][0]["correct"] is True

    run(main)


def test_pipelined_requests_on_one_connection(verifier: Verifier) -> None:
    body = msgspec.json.encode(GOOD)
    one = (
        b"POST /v1/verify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    last = b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"

    async def main() -> None:
        async with open_reward_server(LIMITED, verifier=verifier) as server:
            raw = await raw_exchange(server.port, one * 3 + last)
            assert raw.count(b"HTTP/1.1 200 OK") == 4
            assert raw.count(b'"reason":"ok"') == 3

    run(main)


def test_caller_exception_is_not_wrapped(verifier: Verifier) -> None:
    async def main() -> None:
        async with open_reward_server(LIMITED, verifier=verifier):
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        run(main)


def test_connection_limit_holds_clients_in_the_backlog(verifier: Verifier) -> None:
    config = ServeConfig(port=0, max_connections=2, keepalive_timeout_s=0.5)

    async def main() -> None:
        async with open_reward_server(config, verifier=verifier) as server:
            idle = [await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(2)]
            await trio.sleep(0.1)
            start = trio.current_time()
            raw = await raw_exchange(
                server.port, b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            )
            # Served once the idle connections were dropped at their keep-alive timeout.
            assert status_of(raw) == 200
            assert trio.current_time() - start > 0.3
            for stream in idle:
                await stream.aclose()

    run(main)


def test_a_huge_request_does_not_starve_small_ones(verifier: Verifier) -> None:
    # 1200 distinct answers, each its own sandboxed execution: a second or two of the workers'
    # time in all. Small requests arriving meanwhile take turns with its chunks.
    items = [
        {
            "kind": "deduction",
            "program": "def f(x):\n    return x",
            "input": str(n),
            "answer": str(n),
            "output": str(n),
        }
        for n in range(1200)
    ]

    async def main() -> None:
        async with open_reward_server(ServeConfig(port=0), verifier=verifier) as server:
            window: list[float] = []

            async def attack() -> None:
                async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
                    window.append(trio.current_time())
                    r = await c.post("/v1/verify", json={"items": items})
                    window.append(trio.current_time())
                    assert r.status_code == 200
                    assert all(v["correct"] for v in r.json()["verdicts"])

            done = trio.Event()
            answered: list[tuple[float, float]] = []  # (when, how long it took)

            async def small_client() -> None:
                async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
                    while not done.is_set():
                        sent = trio.current_time()
                        r = await c.post("/v1/verify", json=GOOD)
                        assert r.status_code == 200
                        answered.append((trio.current_time(), trio.current_time() - sent))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(small_client)
                await trio.sleep(0.05)
                await attack()
                done.set()
            start, end = window
            during = [took for at, took in answered if start < at < end]
            # Handed to the executor whole, the big request would hold every small one for
            # about its own duration; taking turns, each waits a few chunks.
            assert len(during) >= 5, (end - start, during)
            assert max(during) < (end - start) / 2, (end - start, during)

    run(main, timeout=60)


HEAVY_PROGRAM = (
    "def f(a):\n"
    + "".join(f"    a = a + [{i}, ({i}, {{{i}: -{i}}})][0]\n" for i in range(380))
    + "    return a"
)
"""About 15 KiB of dense code: the most expensive kind of text for the host to parse."""


def test_heavy_parsing_and_many_pairs_are_refused_before_any_work(verifier: Verifier) -> None:
    # 1,900 heavy induction answers (about 28 MiB, under the body limit): unbounded, the host
    # would parse for most of a minute. The service refuses the request at once, and a client
    # asking meanwhile is served as usual.
    heavy = {
        "items": [{"kind": "induction", "answer": HEAVY_PROGRAM, "pairs": [["1", "1"]]}] * 1900
    }
    body = msgspec.json.encode(heavy)
    assert 24 * 1024 * 1024 < len(body) < ServeConfig().max_body_bytes
    one_item_pairs = {
        "items": [
            {"kind": "induction", "answer": "def f(a):\n    return a", "pairs": [["1", "1"]] * 6000}
        ]
    }
    many_pairs = {
        "items": [
            {"kind": "induction", "answer": "def f(a):\n    return a", "pairs": [["1", "1"]] * 200}
        ]
        * 50
    }
    hidden = [[str(n), str(n)] for n in range(300)]
    response_pairs = {
        "items": [
            {
                "kind": "response",
                "task": {
                    "type": "induction",
                    "program": "def f(a):\n    return a",
                    "message": "m",
                    "shown": [],
                    "hidden": hidden,
                },
                "response": answer("def f(a):\n    return a"),
            }
        ]
    }
    results: dict[str, tuple[int, str, str]] = {}

    async def main() -> None:
        async with open_reward_server(ServeConfig(port=0), verifier=verifier) as server:

            async def attack() -> None:
                async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
                    started = trio.current_time()
                    r = await post(c, body)
                    results["heavy"] = error_of(r)
                    results["heavy_seconds"] = (0, str(trio.current_time() - started), "")
                    for name, request in (
                        ("one_item", one_item_pairs),
                        ("many", many_pairs),
                        ("response", response_pairs),
                    ):
                        results[name] = error_of(await c.post("/v1/verify", json=request))
                    metrics = (await c.get("/metrics")).text
                    results["metrics"] = (0, metrics, "")

            await with_good_client(server.url, attack)

    run(main, timeout=120)
    assert results["heavy"][:2] == (413, "too_much_code") and "split it" in results["heavy"][2]
    # Counting is a scan of the decoded body; nothing was parsed (that took ~50 s before).
    assert float(results["heavy_seconds"][1]) < 10
    assert results["one_item"][:2] == (413, "too_many_pairs")
    assert "item 0 has 6000 induction pairs; at most 256" in results["one_item"][2]
    assert results["many"][:2] == (413, "too_many_pairs") and "10000" in results["many"][2]
    assert results["response"][:2] == (413, "too_many_pairs")
    assert 'azr_rejected_total{code="too_much_code"} 1' in results["metrics"][1]


def test_the_verifier_runs_no_induction_item_past_its_pair_cap(verifier: Verifier) -> None:
    before = verifier.executor.statistics()["executions"]
    verdict = verifier.check_induction("def f(a):\n    return a", [("1", "1")] * 257)
    assert verdict.reason is Reason.INVALID_TASK and not verdict.scored
    assert "257 pairs" in verdict.detail
    assert verifier.executor.statistics()["executions"] == before
    assert verifier.check_induction("def f(a):\n    return a", [("1", "1")] * 256).correct
