"""The SGLang client against a recorded protocol.

SGLang needs a GPU, so CI never runs it. Instead these tests replay request/response fixtures
written from SGLang's documented HTTP API (``fixtures/sglang/``) from real HTTP servers bound to
loopback in background threads: the client goes through real sockets, nothing in httpx is mocked.
The servers check what the client sends (paths, JSON bodies, the order of weight-sync calls across
workers) and count requests in flight.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import socket
import threading
import typing
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio

from azr.actors._common import PromptFormat, generate_rollouts
from azr.errors import ConfigError
from azr.generation.base import (
    BackendClosed,
    BackendUnavailable,
    CheckpointWeights,
    DistributedWeights,
    InProcessWeights,
    InvalidRequest,
    SamplingParams,
    UnsupportedWeightSource,
    WeightSyncError,
)
from azr.generation.sglang import (
    SGLangBackend,
    SGLangCacheNotFlushed,
    SGLangConfig,
    SGLangConnectionError,
    SGLangProtocolError,
    SGLangRejected,
    SGLangServerError,
    SGLangTimeout,
    launch_sglang_server,
    wait_healthy,
)
from azr.models.tokenizer import Tokenizer, build_byte_tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "sglang"
DEADLINE_S = 10.0


def load(name: str) -> typing.Any:
    return json.loads((FIXTURES / name).read_text())


# --------------------------------------------------------------------------------------------------
# A scriptable HTTP server on loopback
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Seen:
    server: str
    method: str
    path: str
    body: bytes

    def json(self) -> typing.Any:
        return json.loads(self.body) if self.body else None


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay_s: float = 0.0
    hold: threading.Event | None = None  # answer only once this is set (or the server stops)

    @staticmethod
    def recorded(response: typing.Any, **kwargs: typing.Any) -> Reply:
        """A fixture's ``response`` object ({"status", "json" | "text"}) as a Reply."""
        if "json" in response:
            body = json.dumps(response["json"]).encode()
            return Reply(response["status"], body, "application/json", **kwargs)
        return Reply(response["status"], response["text"].encode(), "text/plain", **kwargs)


Handler = Callable[[Seen], Reply]


class Journal:
    """Everything every server saw, in arrival order, plus the peak number in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self.problems: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def enter(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)

    def calls(self, server: str | None = None) -> list[tuple[str, str, str]]:
        with self._lock:
            return [
                (s.server, s.method, s.path)
                for s in self.seen
                if server is None or s.server == server
            ]

    def paths(self, server: str) -> list[str]:
        return [path for _, _, path in self.calls(server)]


class FakeServer:
    """A threaded HTTP/1.0 server on 127.0.0.1 answering through ``handler``."""

    def __init__(self, name: str, handler: Handler, journal: Journal) -> None:
        self.name = name
        self.stopping = threading.Event()
        outer = self

        class RequestHandler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(name, self.command, self.path, self.rfile.read(length))
                journal.enter(seen)
                try:
                    try:
                        reply = handler(seen)
                    except Exception as exc:  # a broken test handler must not hang the client
                        journal.problem(f"{name}: handler raised {exc!r}")
                        reply = Reply(500, repr(exc).encode(), "text/plain")
                    if reply.hold is not None:
                        while not (reply.hold.is_set() or outer.stopping.is_set()):
                            reply.hold.wait(0.01)
                    if reply.delay_s:
                        outer.stopping.wait(reply.delay_s)
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (timeout test) and closed its end
                finally:
                    journal.leave()

            def log_message(self, format: str, *args: typing.Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        # Joined on close, so no handler thread outlives its test.
        self._server.daemon_threads = False
        # A short poll interval makes shutdown() return promptly at the end of each test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class Replay:
    """Answers requests with a fixture's exchanges, in order, checking each request matches."""

    def __init__(self, exchanges: list[typing.Any], journal: Journal, **reply: typing.Any) -> None:
        self._exchanges = list(exchanges)
        self._journal = journal
        self._reply = reply
        self._lock = threading.Lock()

    def __call__(self, seen: Seen) -> Reply:
        with self._lock:
            if not self._exchanges:
                self._journal.problem(f"{seen.server}: unexpected {seen.method} {seen.path}")
                return Reply(418, b'{"error": {"message": "unexpected request"}}')
            exchange = self._exchanges.pop(0)
        expected = exchange["request"]
        actual = (seen.method, seen.path, seen.json())
        wanted = (expected["method"], expected["path"], expected.get("json"))
        if actual != wanted:
            self._journal.problem(f"{seen.server}: expected {wanted}, got {actual}")
            return Reply(418, b'{"error": {"message": "request does not match the fixture"}}')
        return Reply.recorded(exchange["response"], **self._reply)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._exchanges)


class Cluster:
    """The servers of one test and their shared journal."""

    def __init__(self) -> None:
        self.journal = Journal()
        self.servers: list[FakeServer] = []

    def serve(self, name: str, handler: Handler) -> FakeServer:
        server = FakeServer(name, handler, self.journal)
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.close()
    assert not c.journal.problems, c.journal.problems


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with trio.fail_after(DEADLINE_S):
            await test()

    trio.run(bounded)


def config(url: str, **overrides: typing.Any) -> SGLangConfig:
    # Tiny backoffs and timeouts keep the suite fast; the logic is the same at any scale.
    settings: dict[str, typing.Any] = {
        "retry_backoff_s": 0.01,
        "retry_backoff_max_s": 0.02,
        "request_timeout_s": 5.0,
        "control_timeout_s": 5.0,
    }
    settings.update(overrides)
    return SGLangConfig(url=url, **settings)


N2_PARAMS = SamplingParams(
    n=2, temperature=0.7, top_p=0.95, max_new_tokens=8, stop=("\n\n", "</answer>")
)
N2_PROMPTS = ["def double(x):\n", "Q: 2+2=?\nA:"]


def synthetic_generate(delay_s: float = 0.0) -> Handler:
    """A /generate that answers any batch: one token per result whose id encodes its position."""

    def handler(seen: Seen) -> Reply:
        request = seen.json()
        params = request["sampling_params"]
        n = params.get("n", 1) if isinstance(params, dict) else 1
        results = []
        prompts = request["text"] if "text" in request else request["input_ids"]
        for index, text in enumerate(prompts):
            for sample in range(n):
                token = 1000 * index + sample
                results.append(
                    {
                        "text": f"{text}|{sample}",
                        "output_ids": [token],
                        "meta_info": {
                            "finish_reason": {"type": "length", "length": 1},
                            "output_token_logprobs": [[-0.5, token, None]],
                        },
                    }
                )
        return Reply(200, json.dumps(results).encode(), delay_s=delay_s)

    return handler


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


def test_batch_with_n_maps_prompt_major_results_back_per_prompt(cluster: Cluster) -> None:
    fixture = load("generate_n2_server.json")
    server = cluster.serve("sglang", Replay(fixture["exchanges"], cluster.journal))

    async def main() -> None:
        cfg = config(server.url, parallel_sampling="server")
        async with SGLangBackend(cfg, initial_weight_version=3) as backend:
            out = await backend.generate(N2_PROMPTS, N2_PARAMS)

        assert [len(per_prompt) for per_prompt in out] == [2, 2]
        stop_str, length = out[0]
        eos, aborted = out[1]
        # Text is cut before the stop string; ids keep the tokens that completed it.
        assert stop_str.text == "    return 2 * x"
        assert stop_str.token_ids == (262, 470, 220, 17, 353, 856, 271)
        assert stop_str.logprobs == (-0.0412, -0.0031, -0.8823, -0.2107, -0.0019, -0.0007, -1.3316)
        assert stop_str.finish_reason == "stop"
        assert length.finish_reason == "length"
        assert len(length.token_ids) == len(length.logprobs) == 8
        # The end-of-sequence token stays in the ids (the learner trains on stopping).
        assert eos.text == " 4"
        assert eos.token_ids == (220, 19, 151643)
        assert eos.logprobs == (-0.0203, -0.0001, -0.3877)
        assert eos.finish_reason == "stop"
        assert aborted.finish_reason == "abort"
        assert aborted.token_ids == (576,)
        assert {c.weight_version for per_prompt in out for c in per_prompt} == {3}

    run(main)
    assert cluster.journal.calls() == [("sglang", "POST", "/generate")]


def test_seeded_sampling_expands_prompts_with_distinct_seeds(cluster: Cluster) -> None:
    fixture = load("generate_seeded_client.json")
    info = load("server_info.json")["current"]
    server = cluster.serve("sglang", Replay([info, *fixture["exchanges"]], cluster.journal))
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=4, seed=1234)

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            out = await backend.generate(["Say hi.", "Count: 1, 2,"], params)
        assert [[c.text for c in per_prompt] for per_prompt in out] == [
            [" Hi!", " Hello"],
            [" 3, 4,", " 3"],
        ]
        assert [[c.finish_reason for c in p] for p in out] == [
            ["stop", "abort"],
            ["length", "stop"],
        ]

    run(main)
    assert cluster.journal.paths("sglang") == ["/get_server_info", "/generate"]
    request = cluster.journal.seen[1].json()
    seeds = [params["sampling_seed"] for params in request["sampling_params"]]
    assert len(set(seeds)) == 4
    assert all("n" not in params for params in request["sampling_params"])


def test_seeds_are_only_sent_to_servers_that_take_them(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    info = Reply.recorded(load("server_info.json")["old"]["response"])
    generate = synthetic_generate()
    server = cluster.serve(
        "sglang", lambda seen: info if seen.path == "/get_server_info" else generate(seen)
    )
    params = SamplingParams(n=2, max_new_tokens=1, seed=7)

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            first = await backend.generate(["a"], params)
            second = await backend.generate(["b"], params)
            assert await backend.server_version() == (0, 4, 10)
        assert [c.text for c in first[0]] == ["a|0", "a|0"]  # repeated prompts, one each
        assert len(second[0]) == 2

    with caplog.at_level("WARNING", logger="azr.generation.sglang"):
        run(main)
    # Asked once per backend (plus the explicit call above), warned once, never sent a seed.
    paths = cluster.journal.paths("sglang")
    assert paths == ["/get_server_info", "/generate", "/generate", "/get_server_info"]
    for seen in cluster.journal.seen:
        if seen.path == "/generate":
            assert "sampling_seed" not in json.dumps(seen.json())
    warnings = [r for r in caplog.records if "sampling_seed" in r.getMessage()]
    assert len(warnings) == 1 and "0.4.10" in warnings[0].getMessage()


def test_repeating_the_prompt_is_the_default_for_several_samples(cluster: Cluster) -> None:
    # SGLang's docs advise against n > 1 in one request: each sample is its own request.
    assert SGLangConfig(url="http://127.0.0.1:1").parallel_sampling == "client"
    server = cluster.serve("sglang", synthetic_generate())

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            out = await backend.generate(["a", "b"], SamplingParams(n=3, max_new_tokens=1))
        # Result i*n + j is sample j of prompt i.
        assert [[c.text for c in p] for p in out] == [["a|0", "a|0", "a|0"], ["b|0", "b|0", "b|0"]]
        assert [[c.token_ids for c in p] for p in out] == [
            [(0,), (1000,), (2000,)],
            [(3000,), (4000,), (5000,)],
        ]

    run(main)
    request = cluster.journal.seen[0].json()
    assert request["text"] == ["a", "a", "a", "b", "b", "b"]
    assert isinstance(request["sampling_params"], dict)
    assert "n" not in request["sampling_params"]


def test_large_calls_are_chunked_and_concurrency_is_bounded(cluster: Cluster) -> None:
    server = cluster.serve("sglang", synthetic_generate(delay_s=0.05))
    prompts = [f"p{i}" for i in range(20)]

    async def main() -> None:
        cfg = config(
            server.url, max_batch_sequences=4, max_concurrency=2, parallel_sampling="server"
        )
        async with SGLangBackend(cfg) as backend:
            out = await backend.generate(prompts, SamplingParams(n=2, max_new_tokens=1))
        assert [[c.text for c in p] for p in out] == [[f"{p}|0", f"{p}|1"] for p in prompts]

    run(main)
    bodies = [seen.json() for seen in cluster.journal.seen]
    assert len(bodies) == 10  # 20 prompts x n=2, at most 4 sequences per request
    assert all(len(body["text"]) == 2 and body["sampling_params"]["n"] == 2 for body in bodies)
    assert cluster.journal.max_in_flight == 2


def test_empty_and_bare_string_prompts(cluster: Cluster) -> None:
    server = cluster.serve("sglang", synthetic_generate())

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            assert await backend.generate([], SamplingParams()) == []
            with pytest.raises(InvalidRequest):
                await backend.generate("one prompt", SamplingParams())

    run(main)
    assert cluster.journal.seen == []


# --------------------------------------------------------------------------------------------------
# Retries, timeouts and errors
# --------------------------------------------------------------------------------------------------


def test_503_is_retried_then_succeeds(cluster: Cluster) -> None:
    unavailable = Reply.recorded(load("errors.json")["service_unavailable"])
    replay = Replay(load("generate_n2_server.json")["exchanges"], cluster.journal)
    answers = iter([unavailable, unavailable])
    server = cluster.serve("sglang", lambda seen: next(answers, None) or replay(seen))

    async def main() -> None:
        cfg = config(server.url, max_retries=3, parallel_sampling="server")
        async with SGLangBackend(cfg) as backend:
            out = await backend.generate(N2_PROMPTS, N2_PARAMS)
        assert out[1][0].token_ids == (220, 19, 151643)

    run(main)
    assert cluster.journal.paths("sglang") == ["/generate"] * 3


def test_5xx_until_retries_run_out_is_backend_unavailable(cluster: Cluster) -> None:
    unavailable = Reply.recorded(load("errors.json")["service_unavailable"])
    server = cluster.serve("sglang", lambda seen: unavailable)

    async def main() -> None:
        async with SGLangBackend(config(server.url, max_retries=2)) as backend:
            with pytest.raises(SGLangServerError) as caught:
                await backend.generate(N2_PROMPTS, N2_PARAMS)
        assert isinstance(caught.value, BackendUnavailable)
        message = str(caught.value)
        assert "2 of 2 prompts failed" in message
        assert "HTTP 503" in message and "not ready to serve requests" in message
        assert "gave up after 3 attempts" in message

    run(main)
    assert len(cluster.journal.seen) == 3


def test_400_is_not_retried_and_carries_the_server_message(cluster: Cluster) -> None:
    rejected = Reply.recorded(load("errors.json")["generate_rejected"])
    server = cluster.serve("sglang", lambda seen: rejected)

    async def main() -> None:
        async with SGLangBackend(config(server.url, max_retries=3)) as backend:
            with pytest.raises(SGLangRejected) as caught:
                await backend.generate(N2_PROMPTS, N2_PARAMS)
        assert isinstance(caught.value, InvalidRequest)
        assert caught.value.status == 400
        assert "longer than the model's context length" in str(caught.value)
        assert "2 of 2 prompts failed" in str(caught.value)

    run(main)
    assert len(cluster.journal.seen) == 1


def test_failed_chunk_names_how_many_prompts_failed(cluster: Cluster) -> None:
    rejected = Reply.recorded(load("errors.json")["generate_rejected"])
    good = synthetic_generate()
    server = cluster.serve(
        "sglang", lambda seen: rejected if "bad" in seen.json()["text"] else good(seen)
    )

    async def main() -> None:
        async with SGLangBackend(config(server.url, max_batch_sequences=2)) as backend:
            with pytest.raises(SGLangRejected, match=r"2 of 6 prompts failed \(1 of 3 /generate"):
                await backend.generate(["a", "b", "bad", "c", "d", "e"], SamplingParams())

    run(main)
    assert len(cluster.journal.seen) == 3


def test_timeout_is_a_typed_error_and_not_retried(cluster: Cluster) -> None:
    server = cluster.serve("sglang", lambda seen: Reply(200, b"[]", delay_s=5.0))

    async def main() -> None:
        cfg = config(server.url, request_timeout_s=0.2, max_retries=3)
        async with SGLangBackend(cfg) as backend:
            with pytest.raises(SGLangTimeout) as caught:
                await backend.generate(["slow"], SamplingParams())
        assert isinstance(caught.value, BackendUnavailable)
        assert "within 0.2 s" in str(caught.value)

    run(main)
    assert len(cluster.journal.seen) == 1


def test_unreachable_server_is_retried_then_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: every attempt is refused.

    async def main() -> None:
        async with SGLangBackend(config(f"http://127.0.0.1:{port}", max_retries=2)) as backend:
            with pytest.raises(SGLangConnectionError, match="gave up after 3 attempts"):
                await backend.generate(["x"], SamplingParams())

    run(main)


def one_result(
    *,
    ids: list[int] | None = None,
    logprobs: list[typing.Any] | None = None,
    finish: typing.Any = None,
) -> bytes:
    """A one-result /generate answer, well formed unless an argument says otherwise."""
    meta: dict[str, typing.Any] = {
        "finish_reason": finish if finish is not None else {"type": "length", "length": 1},
        "output_token_logprobs": logprobs if logprobs is not None else [[-0.1, 1, None]],
    }
    return json.dumps([{"text": "x", "output_ids": ids or [1], "meta_info": meta}]).encode()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<html>502 Bad Gateway</html>", "unexpected body"),
        (b'{"text": "not a list"}', "unexpected body"),
        (b"[]", "returned 0 results for 1 prompts"),
        (one_result(ids=[1, 2]), "2 output_ids but 1 output_token_logprobs"),
        (one_result(logprobs=[[-0.1, 9, None]]), "logprob entry is for id 9"),
        (one_result(logprobs=[[None, 1, None]]), "logprob is null"),
        (one_result(logprobs=[[-0.1, 1]]), "unexpected body"),
        (one_result(finish={"type": "finished"}), "unknown finish_reason type 'finished'"),
        (
            b'[{"text": "x", "output_ids": [1], "meta_info": {"finish_reason": null}}]',
            "finish_reason is null",
        ),
        (
            b'[{"text": "x", "meta_info": {"finish_reason": {"type": "length", "length": 1}}}]',
            "output_token_logprobs is missing",
        ),
    ],
)
def test_malformed_answers_are_protocol_errors(cluster: Cluster, body: bytes, match: str) -> None:
    server = cluster.serve("sglang", lambda seen: Reply(200, body))

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            with pytest.raises(SGLangProtocolError, match=match):
                await backend.generate(["x"], SamplingParams())

    run(main)
    assert len(cluster.journal.seen) == 1


# --------------------------------------------------------------------------------------------------
# Weight sync
# --------------------------------------------------------------------------------------------------

SYNC_PATHS = [
    "/pause_generation",
    "/update_weights_from_disk",
    "/flush_cache",
    "/continue_generation",
]


def test_update_from_disk_runs_the_documented_sequence_and_bumps_the_version(
    cluster: Cluster,
) -> None:
    replay = Replay(load("update_weights_from_disk.json")["exchanges"], cluster.journal)
    generate = synthetic_generate()
    server = cluster.serve(
        "sglang", lambda seen: generate(seen) if seen.path == "/generate" else replay(seen)
    )

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            before = await backend.generate(["x"], SamplingParams())
            source = CheckpointWeights(path="/checkpoints/step-000100", version=1)
            assert await backend.update_weights(source) == 1
            assert backend.weight_version == 1
            after = await backend.generate(["x"], SamplingParams())
        assert before[0][0].weight_version == 0
        assert after[0][0].weight_version == 1

    run(main)
    assert replay.remaining == 0
    assert cluster.journal.paths("sglang") == ["/generate", *SYNC_PATHS, "/generate"]


def test_update_from_distributed_sends_the_tensor_metadata(cluster: Cluster) -> None:
    replay = Replay(load("update_weights_from_distributed.json")["exchanges"], cluster.journal)
    server = cluster.serve("sglang", replay)
    source = DistributedWeights(
        group_name="azr_weights",
        names=("model.embed_tokens.weight", "model.norm.weight"),
        dtypes=("bfloat16", "bfloat16"),
        shapes=((151936, 896), (896,)),
        version=7,
    )

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            assert await backend.update_weights(source) == 7

    run(main)
    assert replay.remaining == 0


def _sync_server(cluster: Cluster, flush_refusals: int, *, distributed: bool = False) -> FakeServer:
    """A server that replays the sync fixture but refuses ``/flush_cache`` that many times."""
    name = (
        "update_weights_from_distributed.json" if distributed else "update_weights_from_disk.json"
    )
    exchanges = load(name)["exchanges"]
    refused = Reply.recorded(load("errors.json")["flush_refused"])
    left = [flush_refusals]

    def handler(seen: Seen) -> Reply:
        if seen.path == "/flush_cache" and left[0] > 0:
            left[0] -= 1
            return refused
        match = next(e for e in exchanges if e["request"]["path"] == seen.path)
        return Reply.recorded(match["response"])

    return cluster.serve("sglang", handler)


def test_the_pause_aborts_and_the_one_flush_follows_every_load(cluster: Cluster) -> None:
    # SGLang's abort pause returns once no request is left, so the flush that follows the
    # loads finds the scheduler idle; the loads themselves do not flush (one flush per update,
    # never the server-side assert on a refused one).
    assert SGLangConfig(url="http://127.0.0.1:1").pause_mode == "abort"
    server = _sync_server(cluster, 0, distributed=True)
    buckets = [
        DistributedWeights("azr_weights", ("a",), ("bfloat16",), ((2, 3),), version=3),
        DistributedWeights("azr_weights", ("b", "c"), ("bfloat16", "int64"), ((4,), ()), 3),
    ]

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            async with backend.weight_update(3) as update:
                for bucket in buckets:
                    await update.load_distributed(bucket)
                assert backend.weight_version == 0  # not before the flush
            assert backend.weight_version == 3
            async with backend.weight_update(4):
                pass  # nothing loaded: paused and resumed, version kept
            assert backend.weight_version == 3

    run(main)
    assert cluster.journal.paths("sglang") == [
        "/pause_generation",
        "/update_weights_from_distributed",
        "/update_weights_from_distributed",
        "/flush_cache",
        "/continue_generation",
        "/pause_generation",
        "/continue_generation",
    ]
    bodies = [s.json() for s in cluster.journal.seen if s.path.startswith("/update")]
    assert [b["names"] for b in bodies] == [["a"], ["b", "c"]]
    assert [b["dtypes"] for b in bodies] == [["bfloat16"], ["bfloat16", "int64"]]
    assert [b["shapes"] for b in bodies] == [[[2, 3]], [[4], []]]
    assert all(b["flush_cache"] is False for b in bodies)
    assert cluster.journal.seen[0].json() == {"mode": "abort"}


def test_a_refused_flush_is_retried_and_counted(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    server = _sync_server(cluster, 2)

    async def main() -> None:
        async with SGLangBackend(config(server.url, flush_attempts=3)) as backend:
            await backend.update_weights(
                CheckpointWeights(path="/checkpoints/step-000100", version=1)
            )
            assert backend.weight_version == 1
            assert backend.flush_refusals == 2

    with caplog.at_level("WARNING", logger="azr.generation.sglang"):
        run(main)
    assert cluster.journal.paths("sglang") == [
        "/pause_generation",
        "/update_weights_from_disk",
        "/flush_cache",
        "/flush_cache",
        "/flush_cache",
        "/continue_generation",
    ]
    assert sum("flush_cache refused" in r.getMessage() for r in caplog.records) == 2


def test_a_flush_refused_to_the_end_is_a_typed_error_not_a_stale_cache(cluster: Cluster) -> None:
    server = _sync_server(cluster, 100)

    async def main() -> None:
        async with SGLangBackend(config(server.url, flush_attempts=2)) as backend:
            with pytest.raises(SGLangCacheNotFlushed) as caught:
                await backend.update_weights(
                    CheckpointWeights(path="/checkpoints/step-000100", version=1)
                )
            assert isinstance(caught.value, WeightSyncError)
            assert "previous weights" in str(caught.value)
            # The weights did load; the error says the cache may not match them.
            assert backend.weight_version == 1 and backend.flush_refusals == 2

    run(main)
    assert cluster.journal.paths("sglang")[-1] == "/continue_generation"


def test_a_disk_update_refuses_the_retract_pause(cluster: Cluster) -> None:
    server = _sync_server(cluster, 0)

    async def main() -> None:
        async with SGLangBackend(config(server.url, pause_mode="retract")) as backend:
            with pytest.raises(WeightSyncError, match="pause_mode='abort'"):
                await backend.update_weights(CheckpointWeights(path="/checkpoints/a", version=1))
            assert backend.weight_version == 0

    run(main)
    assert cluster.journal.paths("sglang") == ["/pause_generation", "/continue_generation"]
    assert cluster.journal.seen[0].json() == {"mode": "retract"}


def test_failed_update_keeps_the_version_and_still_resumes(cluster: Cluster) -> None:
    exchanges = load("update_weights_from_disk.json")["exchanges"]
    failed = Reply.recorded(load("errors.json")["update_from_disk_failed"])

    def handler(seen: Seen) -> Reply:
        if seen.path == "/update_weights_from_disk":
            return failed
        match = next(e for e in exchanges if e["request"]["path"] == seen.path)
        return Reply.recorded(match["response"])

    server = cluster.serve("sglang", handler)

    async def main() -> None:
        async with SGLangBackend(config(server.url), initial_weight_version=4) as backend:
            with pytest.raises(WeightSyncError) as caught:
                await backend.update_weights(CheckpointWeights(path="/checkpoints/x", version=5))
            assert backend.weight_version == 4
        assert "repository not found" in str(caught.value)
        assert "1 of 1 workers" in str(caught.value)

    run(main)
    # A 400 is not retried; generation is resumed; no flush after a failed load.
    assert cluster.journal.paths("sglang") == [
        "/pause_generation",
        "/update_weights_from_disk",
        "/continue_generation",
    ]


def test_distributed_update_is_never_retried(cluster: Cluster) -> None:
    unavailable = Reply.recorded(load("errors.json")["service_unavailable"])
    ok = Reply(200, b'{"message": "ok", "status": "ok"}')
    server = cluster.serve("sglang", lambda seen: unavailable if "distributed" in seen.path else ok)
    source = DistributedWeights(
        group_name="g", names=("w",), dtypes=("float32",), shapes=((2,),), version=1
    )

    async def main() -> None:
        async with SGLangBackend(config(server.url, max_retries=3)) as backend:
            with pytest.raises(WeightSyncError, match="HTTP 503"):
                await backend.update_weights(source)
            assert backend.weight_version == 0

    run(main)
    assert cluster.journal.paths("sglang") == [
        "/pause_generation",
        "/update_weights_from_distributed",
        "/continue_generation",
    ]


def test_generation_waits_for_a_running_weight_sync(cluster: Cluster) -> None:
    replay_hold = threading.Event()
    exchanges = load("update_weights_from_disk.json")["exchanges"]
    generate = synthetic_generate()

    def handler(seen: Seen) -> Reply:
        if seen.path == "/generate":
            return generate(seen)
        match = next(e for e in exchanges if e["request"]["path"] == seen.path)
        hold = replay_hold if seen.path == "/update_weights_from_disk" else None
        return Reply.recorded(match["response"], hold=hold)

    server = cluster.serve("sglang", handler)

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            results: list[int] = []

            async def sample() -> None:
                out = await backend.generate(["x"], SamplingParams())
                results.append(out[0][0].weight_version)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    backend.update_weights, CheckpointWeights(path="/checkpoints/a", version=1)
                )
                while "/update_weights_from_disk" not in cluster.journal.paths("sglang"):
                    await trio.sleep(0.005)
                nursery.start_soon(sample)
                await trio.sleep(0.1)
                # The update is still loading: the generate request must not have been sent.
                assert "/generate" not in cluster.journal.paths("sglang")
                replay_hold.set()
            assert results == [1]

    run(main)
    assert cluster.journal.paths("sglang") == [*SYNC_PATHS, "/generate"]


def test_failed_resume_after_a_good_load_is_raised_with_the_new_version(
    cluster: Cluster,
) -> None:
    exchanges = load("update_weights_from_disk.json")["exchanges"]
    unavailable = Reply.recorded(load("errors.json")["service_unavailable"])

    def handler(seen: Seen) -> Reply:
        if seen.path == "/continue_generation":
            return unavailable
        match = next(e for e in exchanges if e["request"]["path"] == seen.path)
        return Reply.recorded(match["response"])

    server = cluster.serve("sglang", handler)

    async def main() -> None:
        async with SGLangBackend(config(server.url, max_retries=1)) as backend:
            with pytest.raises(SGLangServerError, match="stay paused"):
                await backend.update_weights(CheckpointWeights(path="/checkpoints/a", version=2))
            # The weights did load, so the version says so.
            assert backend.weight_version == 2

    run(main)
    assert cluster.journal.paths("sglang") == [*SYNC_PATHS, "/continue_generation"]


def test_cancelled_update_still_resumes_generation(cluster: Cluster) -> None:
    exchanges = load("update_weights_from_disk.json")["exchanges"]
    never = threading.Event()

    def handler(seen: Seen) -> Reply:
        match = next(e for e in exchanges if e["request"]["path"] == seen.path)
        hold = never if seen.path == "/update_weights_from_disk" else None
        return Reply.recorded(match["response"], hold=hold)

    server = cluster.serve("sglang", handler)

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            with trio.move_on_after(0.2):
                await backend.update_weights(CheckpointWeights(path="/checkpoints/a", version=1))
            assert backend.weight_version == 0

    run(main)
    assert cluster.journal.paths("sglang") == [
        "/pause_generation",
        "/update_weights_from_disk",
        "/continue_generation",
    ]


def test_in_process_weights_are_unsupported(cluster: Cluster) -> None:
    server = cluster.serve("sglang", synthetic_generate())

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            source: typing.Any = InProcessWeights({}, version=1)
            with pytest.raises(UnsupportedWeightSource):
                await backend.update_weights(source)

    run(main)
    assert cluster.journal.seen == []


# --------------------------------------------------------------------------------------------------
# Router mode
# --------------------------------------------------------------------------------------------------


def start_router(cluster: Cluster, *, gateway: bool) -> tuple[FakeServer, list[Replay]]:
    """A router with two workers, each replaying the disk-update sequence."""
    exchanges = load("update_weights_from_disk.json")["exchanges"]
    replays = [Replay(exchanges, cluster.journal) for _ in range(2)]
    workers = [cluster.serve(f"worker{i}", replay) for i, replay in enumerate(replays)]
    listing = load("router.json")
    generate = Replay(load("generate_n2_server.json")["exchanges"], cluster.journal)

    def substitute(response: typing.Any) -> Reply:
        text = json.dumps(response)
        for i, worker in enumerate(workers):
            text = text.replace(f"{{worker{i}}}", worker.url)
        return Reply.recorded(json.loads(text))

    def router(seen: Seen) -> Reply:
        if seen.path == "/generate":
            return generate(seen)
        if seen.path == "/workers":
            key = "gateway_workers" if gateway else "gateway_not_found"
            return substitute(listing[key]["response"])
        if seen.path == "/list_workers" and not gateway:
            return substitute(listing["router_list_workers"]["response"])
        cluster.journal.problem(f"router got {seen.method} {seen.path}")
        return Reply(404, b'{"detail": "Not Found"}')

    return cluster.serve("router", router), replays


@pytest.mark.parametrize("gateway", [True, False], ids=["workers", "list_workers"])
def test_router_mode_fans_control_calls_out_to_every_worker(
    cluster: Cluster, gateway: bool
) -> None:
    router, replays = start_router(cluster, gateway=gateway)

    async def main() -> None:
        cfg = config(router.url, router=True, parallel_sampling="server")
        async with SGLangBackend(cfg) as backend:
            out = await backend.generate(N2_PROMPTS, N2_PARAMS)
            assert out[0][0].weight_version == 0
            source = CheckpointWeights(path="/checkpoints/step-000100", version=1)
            assert await backend.update_weights(source) == 1

    run(main)
    assert all(replay.remaining == 0 for replay in replays)
    discovery = ["/workers"] if gateway else ["/workers", "/list_workers"]
    assert cluster.journal.paths("router") == ["/generate", *discovery]
    for worker in ("worker0", "worker1"):
        assert cluster.journal.paths(worker) == SYNC_PATHS
    # Each phase finishes on every worker before the next one starts anywhere.
    phases = [
        SYNC_PATHS.index(path) for server, _, path in cluster.journal.calls() if server != "router"
    ]
    assert phases == sorted(phases)


def test_init_weights_update_group_assigns_rank_offsets_per_worker(cluster: Cluster) -> None:
    fixture = load("init_weights_update_group.json")["exchanges"]
    replays = [Replay([e for e in fixture if e["worker"] == i], cluster.journal) for i in range(2)]
    workers = [cluster.serve(f"worker{i}", replay) for i, replay in enumerate(replays)]

    async def main() -> None:
        cfg = config("http://127.0.0.1:9", worker_urls=tuple(w.url for w in workers))
        async with SGLangBackend(cfg) as backend:
            offsets = await backend.init_weights_update_group(
                master_address="10.0.0.5", master_port=29555, world_size=5, group_name="azr_weights"
            )
            assert offsets == {workers[0].url: 1, workers[1].url: 3}
            with pytest.raises(ConfigError):
                await backend.init_weights_update_group(
                    master_address="10.0.0.5", master_port=29555, world_size=4
                )

    run(main)
    assert all(replay.remaining == 0 for replay in replays)


def test_model_info(cluster: Cluster) -> None:
    server = cluster.serve("sglang", Replay(load("model_info.json")["exchanges"], cluster.journal))

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            info = await backend.model_info()
        assert info.model_path == "Qwen/Qwen2.5-0.5B-Instruct"
        assert info.weight_version == "default"

    run(main)


# --------------------------------------------------------------------------------------------------
# Lifecycle, launching, configuration
# --------------------------------------------------------------------------------------------------


def test_closed_backend_refuses_work(cluster: Cluster) -> None:
    server = cluster.serve("sglang", synthetic_generate())

    async def main() -> None:
        backend = SGLangBackend(config(server.url))
        await backend.aclose()
        await backend.aclose()  # idempotent
        with pytest.raises(BackendClosed):
            await backend.generate(["x"], SamplingParams())
        with pytest.raises(BackendClosed):
            await backend.update_weights(CheckpointWeights(path="/c", version=1))

    run(main)
    assert cluster.journal.seen == []


def test_wait_healthy_polls_until_ready(cluster: Cluster) -> None:
    starting = Reply.recorded(load("errors.json")["health_starting"])
    answers = iter([starting, starting])
    ready = cluster.serve("ready", lambda seen: next(answers, None) or Reply(200))
    never = cluster.serve("never", lambda seen: starting)

    async def main() -> None:
        await wait_healthy(ready.url, 5.0, poll_interval_s=0.01)
        with pytest.raises(BackendUnavailable, match="HTTP 503"):
            await wait_healthy(never.url, 0.2, poll_interval_s=0.01)

    run(main)
    assert cluster.journal.paths("ready") == ["/health"] * 3


def test_launch_command_line() -> None:
    launch = launch_sglang_server(
        "/models/policy", 30001, ["--tp-size", "2"], python="/usr/bin/python3"
    )
    assert launch.argv == (
        "/usr/bin/python3",
        "-m",
        "sglang.launch_server",
        "--model-path",
        "/models/policy",
        "--host",
        "127.0.0.1",
        "--port",
        "30001",
        "--tp-size",
        "2",
    )
    assert launch.env["SGLANG_RETURN_ORIGINAL_LOGPROB"] == "1"
    assert launch.url == "http://127.0.0.1:30001"
    with pytest.raises(ConfigError):
        launch_sglang_server("/models/policy", 30001, ["--port=1"])
    with pytest.raises(ConfigError):
        launch_sglang_server("/models/policy", 0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"url": "localhost:30000"},
        {"max_concurrency": 0},
        {"max_batch_sequences": 0},
        {"request_timeout_s": 0.0},
        {"max_retries": -1},
        {"worker_urls": ("ftp://x",)},
        {"pause_mode": "in_place"},
        {"parallel_sampling": "both"},
        {"flush_attempts": 0},
    ],
)
def test_config_is_validated(overrides: dict[str, typing.Any]) -> None:
    settings: dict[str, typing.Any] = {"url": "http://127.0.0.1:30000", **overrides}
    with pytest.raises(ConfigError):
        SGLangConfig(**settings)


# --------------------------------------------------------------------------------------------------
# Token-id prompts: the server and the learner condition on the same tokens
# --------------------------------------------------------------------------------------------------


def test_token_id_prompts_are_sent_as_input_ids(cluster: Cluster) -> None:
    fixture = load("generate_input_ids.json")
    server = cluster.serve("sglang", Replay(fixture["exchanges"], cluster.journal))
    prompt_ids = [[1, 3439, 17352, 29901, 13], [1, 660, 29901, 29871, 29906]]

    async def main() -> None:
        async with SGLangBackend(config(server.url)) as backend:
            out = await backend.generate_ids(prompt_ids, SamplingParams(max_new_tokens=4))
            with pytest.raises(InvalidRequest, match="no tokens"):
                await backend.generate_ids([[]], SamplingParams())
            with pytest.raises(InvalidRequest, match="non-negative"):
                await backend.generate_ids([[1, -2]], SamplingParams())
            with pytest.raises(InvalidRequest, match="generate_ids"):
                await backend.generate([[1, 2]], SamplingParams())  # type: ignore[list-item]
        (first,), (second,) = out
        assert first.token_ids == (736, 921, 2) and first.finish_reason == "stop"
        assert first.logprobs == (-0.713, -0.052, -1.906)
        assert second.text == " 4, 5, 6" and second.finish_reason == "length"

    run(main)
    request = cluster.journal.seen[0].json()
    assert "text" not in request and request["input_ids"] == prompt_ids


def _bos_tokenizer() -> Tokenizer:
    """The byte tokenizer, made to put its BOS token in front of every text as Llama's do."""
    from tokenizers import processors

    hf = build_byte_tokenizer()
    bos = hf.bos_token_id
    hf.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", special_tokens=[("<|bos|>", bos)]
    )
    return Tokenizer(hf)


def test_rollouts_train_on_exactly_the_ids_the_server_generated_from(cluster: Cluster) -> None:
    # A tokenizer that adds BOS: the server tokenizing text itself would condition on a BOS the
    # learner never saw (or the other way round). Sent as ids, both see the same tokens.
    tokenizer = _bos_tokenizer()
    assert tokenizer.adds_bos and tokenizer.bos_token_id is not None
    server = cluster.serve("sglang", synthetic_generate())
    fmt = PromptFormat("plain", tokenizer)
    prompts = ["What is 2 + 2?", "Name a prime."]
    rollouts: list[typing.Any] = []

    async def main() -> None:
        async with SGLangBackend(config(server.url, parallel_sampling="server")) as backend:
            out, stats = await generate_rollouts(
                backend, tokenizer, fmt, prompts, SamplingParams(n=2, max_new_tokens=1)
            )
        rollouts.extend(out)
        assert stats.prompt_tokens == sum(len(r[0].prompt_ids) for r in out)

    run(main)
    sent = cluster.journal.seen[0].json()["input_ids"]
    assert [list(r[0].prompt_ids) for r in rollouts] == sent
    assert all(
        ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1 for ids in sent
    )
    assert tokenizer.decode(sent[0][1:]) == fmt(prompts[0])
    # The two samples of a prompt share its ids; each got its own result back.
    assert [[r.response_ids for r in row] for row in rollouts] == [[(0,), (1,)], [(1000,), (1001,)]]
