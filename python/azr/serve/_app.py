"""The reward service's routes, over the verifier.

Routes: ``GET /`` (an index), ``GET /health``, ``GET /metrics``, ``POST /v1/verify`` (our
verdict format), ``POST /get_reward`` (OpenRLHF's remote reward protocol).

Nothing a client sends is run or evaluated here: answers, programs and inputs are parsed on the
host and every execution happens in the executor's sandbox, through the verifier.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final, TypeVar

import trio

from azr.adapters import openrlhf
from azr.errors import ExecutorClosed
from azr.serve._budget import request_cost
from azr.serve._codec import Format, TypedDecoder, encode, request_format, response_format
from azr.serve._http import HttpError, HttpServer, Request, Response
from azr.serve.config import ServeConfig
from azr.serve.metrics import Metrics
from azr.serve.schema import (
    AbductionItem,
    DeductionItem,
    ErrorBody,
    ErrorDetail,
    Health,
    InductionItem,
    Item,
    OpenRLHFReply,
    OpenRLHFRequest,
    ResponseItem,
    VerifyReply,
    VerifyRequest,
)
from azr.tasks.types import SolveTask
from azr.verify import Verdict, Verifier

__all__ = ["RewardApp"]

T = TypeVar("T")
ItemT = TypeVar("ItemT", DeductionItem, AbductionItem, InductionItem, ResponseItem)
_Check = Callable[[Verifier, Sequence[ItemT]], Awaitable[list[Verdict]]]

_VERIFY_REQUEST: Final = TypedDecoder(VerifyRequest)
_OPENRLHF_REQUEST: Final = TypedDecoder(OpenRLHFRequest)
_METRICS_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_CHUNKS_PER_WORKER: Final = 2
"""Chunks checked at once per sandbox worker: one being parsed or answered while another's
jobs run keeps the workers busy; more only lengthens the queue other requests wait behind."""


async def _deduction(v: Verifier, items: Sequence[DeductionItem]) -> list[Verdict]:
    return await v.check_deduction_batch_async(
        [i.program for i in items],
        [i.input for i in items],
        [i.answer for i in items],
        outputs=[i.output for i in items],
    )


async def _abduction(v: Verifier, items: Sequence[AbductionItem]) -> list[Verdict]:
    return await v.check_abduction_batch_async(
        [i.program for i in items], [i.output for i in items], [i.answer for i in items]
    )


async def _induction(v: Verifier, items: Sequence[InductionItem]) -> list[Verdict]:
    return await v.check_induction_batch_async([i.answer for i in items], [i.pairs for i in items])


async def _response(v: Verifier, items: Sequence[ResponseItem]) -> list[Verdict]:
    return await v.score_response_batch_async([i.task for i in items], [i.response for i in items])


class _Route:
    __slots__ = ("handler", "method", "name")

    def __init__(
        self, name: str, method: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> None:
        self.name = name
        self.method = method
        self.handler = handler


class RewardApp:
    """Routes requests to the verifier; limits how many are verified at once."""

    def __init__(
        self,
        verifier: Verifier,
        config: ServeConfig,
        metrics: Metrics,
    ) -> None:
        self.verifier = verifier
        self.config = config
        self.metrics = metrics
        self.http: HttpServer | None = None
        """The server this app is mounted on, for connection counts in health and metrics."""
        self._slots = trio.Semaphore(config.max_inflight)
        self._chunk_turns = _CHUNKS_PER_WORKER * verifier.executor.workers
        self._chunk_slots = trio.CapacityLimiter(self._chunk_turns)
        self._queued = 0
        self._draining = False
        self._isolation = dict(verifier.executor.isolation())
        self._routes = {
            "/": _Route("index", "GET", self._index),
            "/health": _Route("health", "GET", self._health),
            "/metrics": _Route("metrics", "GET", self._metrics),
            "/v1/verify": _Route("verify", "POST", self._verify),
            openrlhf.REWARD_PATH: _Route("openrlhf", "POST", self._openrlhf),
        }

    @property
    def inflight(self) -> int:
        return self.config.max_inflight - self._slots.value

    @property
    def queued(self) -> int:
        return self._queued

    def drain(self) -> None:
        """Refuse new verification work (503); what is in flight carries on."""
        self._draining = True

    # -- entry points for the HTTP layer --------------------------------------------------

    async def handle(self, request: Request) -> Response:
        route = self._routes.get(request.path)
        if route is None:
            raise HttpError(404, "not_found", f"no route {request.path!r}; see GET /")
        start = time.perf_counter()
        try:
            if request.method != route.method and not (
                route.method == "GET" and request.method == "HEAD"
            ):
                raise HttpError(
                    405,
                    "method_not_allowed",
                    f"{request.path} takes {route.method}, not {request.method}",
                    headers=[("allow", route.method)],
                )
            response = await route.handler(request)
        except HttpError as exc:
            response = self.render_error(request, exc)
        except Exception as exc:
            # A verifier closed under a running service (its owner closed it): unavailable, not
            # an internal error. It may arrive wrapped by the nurseries that check chunks.
            if not _only(exc, ExecutorClosed):
                raise
            error = HttpError(503, "shutting_down", "the verifier's executor is closed")
            response = self.render_error(request, error)
        self.metrics.observe_request(route.name, response.status, time.perf_counter() - start)
        return response

    def render_error(self, request: Request | None, error: HttpError) -> Response:
        fmt = Format.JSON
        if request is not None:
            # Answer in the client's format where it can be told; JSON otherwise.
            with contextlib.suppress(HttpError):
                fmt = response_format(request.headers, _body_format(request))
        body = ErrorBody(ErrorDetail(error.status, error.code, error.message))
        return Response(error.status, encode(body, fmt), fmt.value, error.headers)

    # -- routes ---------------------------------------------------------------------------

    async def _index(self, request: Request) -> Response:
        index = {
            "service": "azr reward service",
            "routes": {
                "GET /health": "liveness and load",
                "GET /metrics": "Prometheus metrics",
                "POST /v1/verify": "verdicts on typed items (JSON or msgpack)",
                f"POST {openrlhf.REWARD_PATH}": "OpenRLHF remote reward model protocol",
            },
        }
        fmt = response_format(request.headers, Format.JSON)
        return Response(200, encode(index, fmt), fmt.value)

    async def _health(self, request: Request) -> Response:
        health = Health(
            status="draining" if self._draining else "ok",
            inflight=self.inflight,
            queued=self._queued,
            connections=self._connections(),
            workers=self.verifier.executor.workers,
            isolation=self._isolation,
        )
        fmt = response_format(request.headers, Format.JSON)
        return Response(503 if self._draining else 200, encode(health, fmt), fmt.value)

    async def _metrics(self, request: Request) -> Response:
        return Response(200, self.render_metrics().encode(), _METRICS_TYPE)

    def _connections(self) -> int:
        return 0 if self.http is None else self.http.connections

    def render_metrics(self) -> str:
        """The Prometheus exposition text of the service's metrics."""
        http_errors = {} if self.http is None else dict(self.http.stats.errors)
        stats = self.verifier.executor.statistics()
        gauges = {
            "azr_inflight_requests": ("Requests being verified now.", float(self.inflight)),
            "azr_queued_requests": ("Requests waiting for a verification slot.", self._queued),
            "azr_open_connections": ("Open client connections.", float(self._connections())),
            "azr_executor_workers": ("Sandboxed executor workers.", self.verifier.executor.workers),
        }
        for key, value in sorted(stats.items()):
            gauges[f"azr_executor_{key}"] = (f"Executor counter {key!r} since start.", value)
        return self.metrics.render(gauges, http_errors)

    async def _verify(self, request: Request) -> Response:
        fmt_in = request_format(request.headers)
        fmt_out = response_format(request.headers, fmt_in)
        body = _VERIFY_REQUEST.decode(request.body, fmt_in)
        self._check_count(len(body.items))
        self._check_cost(body.items)
        async with self._slot():
            verdicts = await self._verdicts(body.items)
        self.metrics.observe_verdicts("verify", (v.reason for v in verdicts))
        return Response(200, encode(VerifyReply(verdicts), fmt_out), fmt_out.value)

    async def _openrlhf(self, request: Request) -> Response:
        fmt_in = request_format(request.headers)
        fmt_out = response_format(request.headers, fmt_in)
        body = _OPENRLHF_REQUEST.decode(request.body, fmt_in)
        self._check_count(len(body.query))
        try:
            batch = openrlhf.prepare(body.query, body.prompts, body.labels)
        except ValueError as exc:
            raise HttpError(422, "invalid_request", str(exc)) from None
        items = _response_items(batch.tasks, batch.responses)
        self._check_cost(items)
        async with self._slot():
            checked = await self._chunked(items, _response)
        verdicts = batch.merge(checked)
        self.metrics.observe_verdicts("openrlhf", (v.reason for v in verdicts))
        reply = OpenRLHFReply(**openrlhf.reply(verdicts))
        return Response(200, encode(reply, fmt_out), fmt_out.value)

    # -- verification ---------------------------------------------------------------------

    def _check_count(self, n: int) -> None:
        if n > self.config.max_items:
            self.metrics.rejected["too_many_items"] += 1
            raise HttpError(
                413, "too_many_items", f"{n} items in one request; at most {self.config.max_items}"
            )

    def _check_cost(self, items: Sequence[Item]) -> None:
        """Refuse, before any work, a request whose parsing or pairs would exceed the limits."""
        cost = request_cost(items, self.verifier.checks.parse)
        cap = self.verifier.checks.max_induction_pairs
        problem: tuple[str, str] | None = None
        if cost.max_item_pairs > cap:
            problem = (
                "too_many_pairs",
                f"item {cost.max_pairs_at} has {cost.max_item_pairs} induction pairs; at most "
                f"{cap} per item",
            )
        elif cost.pairs > self.config.max_pairs:
            problem = (
                "too_many_pairs",
                f"{cost.pairs} induction pairs in one request; at most {self.config.max_pairs}: "
                "split it",
            )
        elif cost.chars > self.config.max_parse_chars:
            problem = (
                "too_much_code",
                f"the answers hold {cost.chars} characters to parse; at most "
                f"{self.config.max_parse_chars} per request: split it",
            )
        if problem is not None:
            self.metrics.rejected[problem[0]] += 1
            raise HttpError(413, *problem)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._draining:
            self.metrics.rejected["shutting_down"] += 1
            raise HttpError(503, "shutting_down", "the service is shutting down")
        if self._slots.value == 0 and self._queued >= self.config.max_queued:
            self.metrics.rejected["overloaded"] += 1
            raise HttpError(
                503,
                "overloaded",
                f"{self.config.max_inflight} requests in flight and {self._queued} queued; retry",
                headers=[("retry-after", "1")],
            )
        self._queued += 1
        try:
            await self._slots.acquire()
        finally:
            self._queued -= 1
        try:
            yield
        finally:
            self._slots.release()

    async def _verdicts(self, items: Sequence[Item]) -> list[Verdict]:
        """Verdicts in item order; each kind goes to its batch method, in chunks."""
        results: list[Verdict | None] = [None] * len(items)

        async def kind(check: _Check[ItemT], cls: type[ItemT]) -> None:
            where = [n for n, item in enumerate(items) if isinstance(item, cls)]
            if not where:
                return
            picked: list[ItemT] = [items[n] for n in where]  # type: ignore[misc]
            for n, verdict in zip(where, await self._chunked(picked, check), strict=True):
                results[n] = verdict

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kind, _deduction, DeductionItem)
            nursery.start_soon(kind, _abduction, AbductionItem)
            nursery.start_soon(kind, _induction, InductionItem)
            nursery.start_soon(kind, _response, ResponseItem)
        return [v for v in results if v is not None]

    async def _chunked(self, items: Sequence[ItemT], check: _Check[ItemT]) -> list[Verdict]:
        """``check`` over ``items`` in chunks of ``chunk_items``, fairly shared between requests.

        The executor runs jobs in the order they arrive, so one request of thousands of items
        handed over whole would make every request after it wait for all of them. Instead each
        chunk takes a slot of a service-wide FIFO limiter (a few chunks per sandbox worker: enough
        to keep the workers busy), and a request has at most that many chunks waiting for one.
        When a chunk of a large request finishes, its next chunk queues behind the chunks other
        requests are already waiting with: requests take turns, a chunk at a time. Chunks also
        bound how long the host-side parsing of answers holds this thread at a stretch.
        """
        if not items:
            return []
        size = self.config.chunk_items
        parts = [items[i : i + size] for i in range(0, len(items), size)]
        out: list[list[Verdict]] = [[] for _ in parts]
        turns = trio.Semaphore(self._chunk_turns)

        async def run(n: int) -> None:
            async with turns, self._chunk_slots:
                out[n] = await check(self.verifier, parts[n])

        if len(parts) == 1:
            await run(0)
        else:
            async with trio.open_nursery() as nursery:
                for n in range(len(parts)):
                    nursery.start_soon(run, n)
        return [v for chunk in out for v in chunk]


def _response_items(tasks: Sequence[SolveTask], responses: Sequence[str]) -> list[ResponseItem]:
    return [ResponseItem(t, r) for t, r in zip(tasks, responses, strict=True)]


def _only(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` is ``kind``, or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(inner, kind) for inner in exc.exceptions)
    return isinstance(exc, kind)


def _body_format(request: Request) -> Format:
    try:
        return request_format(request.headers)
    except HttpError:
        return Format.JSON
