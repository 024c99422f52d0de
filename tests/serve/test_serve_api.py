"""The reward service end to end: real HTTP clients on loopback, the real sandbox behind it."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import trio
from serve_support import (
    CHAT_PROMPT,
    DOUBLE_ABDUCTION,
    INCREMENT,
    REVERSE,
    answer,
    label,
    run,
)

from azr.serve import ServeConfig, open_reward_server
from azr.serve.schema import ResponseItem, VerifyReply, VerifyRequest
from azr.verify import Verifier

CONFIG = ServeConfig(port=0)
ITEMS: list[dict[str, Any]] = [
    {"kind": "deduction", "program": "def f(x):\n    return x * 2", "input": "21", "answer": "42"},
    {"kind": "deduction", "program": "def f(x):\n    return x * 2", "input": "21", "answer": "41"},
    {
        "kind": "deduction",
        "program": "def f(x):\n    return x",
        "input": "1",
        "answer": "1",
        "output": "1",
    },
    {"kind": "abduction", "program": "def f(x):\n    return x * 2", "output": "42", "answer": "21"},
    {
        "kind": "induction",
        "answer": "def f(x):\n    return x + 1",
        "pairs": [["1", "2"], ["5", "6"]],
    },
    {
        "kind": "induction",
        "answer": "import os\ndef f(x):\n    return os.getpid()",
        "pairs": [["1", "2"]],
    },
    {"kind": "response", "task": msgspec.to_builtins(REVERSE), "response": answer("'ba'")},
    {"kind": "response", "task": msgspec.to_builtins(REVERSE), "response": "'ba'"},
]
EXPECTED = ["ok", "wrong", "ok", "ok", "ok", "forbidden", "ok", "format"]


def test_verify_every_kind_in_order(verifier: Verifier) -> None:
    async def main() -> None:
        async with (
            open_reward_server(CONFIG, verifier=verifier) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            r = await client.post("/v1/verify", json={"items": ITEMS})
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "application/json"
            verdicts = r.json()["verdicts"]
            assert [v["reason"] for v in verdicts] == EXPECTED
            assert [v["reward"] for v in verdicts] == [1.0, -0.5, 1.0, 1.0, 1.0, -0.5, 1.0, -1.0]
            assert verdicts[0] == {"correct": True, "reward": 1.0, "reason": "ok", "detail": ""}
            assert "os" in verdicts[5]["detail"]

    run(main)


def test_verify_msgpack_and_negotiation(verifier: Verifier) -> None:
    request = VerifyRequest([ResponseItem(REVERSE, answer("'ba'")), ResponseItem(REVERSE, "x")])
    packed = msgspec.msgpack.encode(request)

    async def main() -> None:
        async with (
            open_reward_server(CONFIG, verifier=verifier) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            # msgpack in, no Accept: msgpack out, decodable straight into the library's types.
            r = await client.post(
                "/v1/verify", content=packed, headers={"content-type": "application/msgpack"}
            )
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/msgpack"
            reply = msgspec.msgpack.decode(r.content, type=VerifyReply)
            assert [v.correct for v in reply.verdicts] == [True, False]
            assert reply.verdicts[1].reason.value == "format"
            # JSON in, msgpack preferred by Accept.
            r = await client.post(
                "/v1/verify",
                content=msgspec.json.encode(request),
                headers={
                    "content-type": "application/json; charset=utf-8",
                    "accept": "application/json;q=0.5, application/x-msgpack",
                },
            )
            assert r.headers["content-type"] == "application/msgpack"
            assert msgspec.msgpack.decode(r.content, type=VerifyReply) == reply
            # msgpack in, JSON asked for.
            r = await client.post(
                "/v1/verify",
                content=packed,
                headers={"content-type": "application/vnd.msgpack", "accept": "application/json"},
            )
            assert msgspec.json.decode(r.content, type=VerifyReply) == reply

    run(main)


def test_large_request_is_checked_in_chunks_in_order(verifier: Verifier) -> None:
    config = ServeConfig(port=0, chunk_items=7)
    items = [
        {
            "kind": "deduction",
            "program": "def f(x):\n    return x * 3",
            "input": str(n),
            "answer": str(3 * n if n % 3 else 3 * n + 1),
        }
        for n in range(100)
    ]

    async def main() -> None:
        async with (
            open_reward_server(config, verifier=verifier) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            r = await client.post("/v1/verify", json={"items": items})
            got = [v["correct"] for v in r.json()["verdicts"]]
            assert got == [n % 3 != 0 for n in range(100)]

    run(main)


def openrlhf_payload(cases: list[tuple[object, str]], prompt: str = CHAT_PROMPT) -> dict[str, Any]:
    """The body OpenRLHF's remote reward client posts: prompt+response decoded together as
    ``query``, the prompt alone in ``prompts``, the dataset label column in ``labels``."""
    return {
        "query": [prompt + response + "<|im_end|>" for _, response in cases],
        "prompts": [prompt] * len(cases),
        "labels": [task for task, _ in cases],
    }


def test_openrlhf_remote_reward_protocol(verifier: Verifier) -> None:
    cases: list[tuple[object, str]] = [
        (label(REVERSE), answer("'ba'")),  # correct
        (label(REVERSE), answer("'ab'")),  # wrong
        (label(REVERSE), "no tags at all"),  # format: the prompt's own tags must not count
        (label(DOUBLE_ABDUCTION), answer("21")),
        (label(INCREMENT), answer("```python\ndef f(x):\n    return x + 1\n```")),
        (msgspec.to_builtins(REVERSE), answer("'ba'")),  # a label given as the task object
    ]

    async def main() -> None:
        async with (
            open_reward_server(CONFIG, verifier=verifier) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            r = await client.post("/get_reward", json=openrlhf_payload(cases))
            assert r.status_code == 200, r.text
            body = r.json()
            assert set(body) == {"rewards", "scores", "extra_logs"}
            assert body["rewards"] == [1.0, -0.5, -1.0, 1.0, 1.0, 1.0]
            assert body["scores"] == [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
            assert body["extra_logs"]["formatted"] == [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
            assert body["extra_logs"]["scored"] == [1.0] * 6

            # Current OpenRLHF posts one query per rollout, each on its own connection.
            results: dict[int, float] = {}

            async def one_rollout(n: int) -> None:
                good = n % 2 == 0
                payload = openrlhf_payload([(label(REVERSE), answer("'ba'" if good else "1"))])
                async with httpx.AsyncClient() as own:
                    reply = await own.post(f"{server.url}/get_reward", json=payload)
                results[n] = reply.json()["rewards"][0]

            async with trio.open_nursery() as nursery:
                for n in range(24):
                    nursery.start_soon(one_rollout, n)
            assert results == {n: 1.0 if n % 2 == 0 else -0.5 for n in range(24)}

            # The prompt is not the query's verbatim prefix (a detokenisation difference): the
            # response is found after the prompt's end.
            payload = openrlhf_payload([(label(REVERSE), answer("'ba'"))])
            payload["query"][0] = " " + payload["query"][0]
            assert (await client.post("/get_reward", json=payload)).json()["rewards"] == [1.0]
            # The response cannot be located at all: unscored, not a wrong answer.
            payload["query"][0] = answer("'ba'")
            body = (await client.post("/get_reward", json=payload)).json()
            assert body["rewards"] == [0.0]
            assert body["extra_logs"]["scored"] == [0.0]

    run(main)


def test_openrlhf_setup_mistakes_are_clear_422s(verifier: Verifier) -> None:
    async def main() -> None:
        async with (
            open_reward_server(CONFIG, verifier=verifier) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            # Older clients send no labels: the task is unknown.
            r = await client.post("/get_reward", json={"query": ["x"], "prompts": [""]})
            assert r.status_code == 422
            assert "labels are required" in r.json()["error"]["message"]
            r = await client.post(
                "/get_reward", json={"query": ["a", "b"], "prompts": [""], "labels": ["", ""]}
            )
            assert r.status_code == 422
            assert "differ in length" in r.json()["error"]["message"]
            r = await client.post(
                "/get_reward",
                json={"query": ["a", "b"], "labels": [label(REVERSE), "the answer is 4"]},
            )
            assert r.status_code == 422
            assert r.json()["error"]["message"].startswith("labels[1]: not an azr solve task")
            r = await client.post("/get_reward", json={"query": ["a"], "datasources": ["x"]})
            assert r.status_code == 422
            assert "datasources" in r.json()["error"]["message"]

    run(main)


def test_health_metrics_index_and_routing(verifier: Verifier) -> None:
    async def main() -> None:
        async with (
            open_reward_server(CONFIG, verifier=verifier) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            health = (await client.get("/health")).json()
            assert health["status"] == "ok"
            assert health["workers"] == verifier.executor.workers
            assert health["isolation"]["seccomp"] in (True, False)
            assert (await client.get("/")).json()["routes"]
            head = await client.head("/health")
            assert head.status_code == 200 and head.content == b""
            r = await client.get("/v2/nothing")
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
            r = await client.get("/v1/verify")
            assert r.status_code == 405 and r.headers["allow"] == "POST"
            await client.post("/v1/verify", json={"items": ITEMS})
            text = (await client.get("/metrics")).text
            assert 'azr_requests_total{route="verify",status="200"} 1' in text
            assert 'azr_requests_total{route="v2"' not in text
            assert 'azr_verdicts_total{reason="forbidden"} 1' in text
            assert 'azr_items_total{route="verify"} 8' in text
            assert 'azr_requests_total{route="verify",status="405"} 1' in text
            assert 'azr_request_duration_seconds_count{route="verify"} 2' in text
            assert "azr_executor_workers 2" in text
            assert "azr_open_connections 1" in text

    run(main)


def test_a_closed_verifier_is_a_503_not_a_crash() -> None:
    async def main() -> None:
        with Verifier(workers=1) as own:
            async with (
                open_reward_server(CONFIG, verifier=own) as server,
                httpx.AsyncClient(base_url=server.url) as client,
            ):
                own.close()
                for _ in range(2):
                    r = await client.post("/v1/verify", json={"items": ITEMS * 20})
                    assert r.status_code == 503
                    assert r.json()["error"]["code"] == "shutting_down"
                assert (await client.get("/health")).status_code == 200

    run(main)


def test_command_line_options_make_the_config() -> None:
    from azr.serve.cli import build_parser, config_from_args

    argv = "--port 0 --workers 3 --timeout 2.5 --memory-mb 256 --reward-scheme binary"
    argv += " --no-require-think --max-body-mb 1.5 --max-items 10 --max-inflight 4 --grace 7"
    args = build_parser().parse_args(argv.split())
    config = config_from_args(args)
    assert (config.port, config.workers, config.max_items, config.max_inflight) == (0, 3, 10, 4)
    assert config.limits.wall_timeout_s == 2.5
    assert config.limits.memory_bytes == 256 * 1024 * 1024
    assert config.rewards.scheme == "binary"
    assert config.checks.parse.require_think is False
    assert config.max_body_bytes == 1536 * 1024
    assert config.grace_s == 7
