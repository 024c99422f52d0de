"""A small HTTP/1.1 server over trio and h11: keep-alive, pipelining, limits, graceful drain.

h11 does the protocol (framing, header validation, keep-alive rules); this module does the I/O
and the policy: how many connections, how large and how slow a request may be, and how to stop.
The application sees whole requests (body read and size-checked) and returns whole responses;
everything here is about never letting one client hold up the rest.

Timeouts, per connection: ``keepalive`` while idle between requests, ``header`` from a
request's first byte to the end of its headers, ``body`` for the body, ``write`` for the
response. An error response sent before the body was read (413) is followed by a *lingering
close*: the write side is shut and what the client still sends is read and dropped for a
moment, so that the client reads the response instead of a connection reset.

Shutdown (:meth:`HttpServer.drain`): the listeners close at once, idle connections are closed,
requests in progress finish and get ``Connection: close``; at the grace deadline whatever is
left is cancelled.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import h11
import trio

__all__ = ["HttpError", "HttpLimits", "HttpServer", "HttpStats", "Request", "Response"]

log = logging.getLogger("azr.serve")

_RECEIVE_BYTES: Final = 65_536
_LINGER_S: Final = 2.0
_LINGER_MAX_BYTES: Final = 64 * 1024 * 1024
# accept() fails with these when the process or the host is out of descriptors or buffers;
# waiting a little lets finishing connections free some, where raising would stop the server.
_ACCEPT_RETRY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_REASONS: Final[Mapping[int, bytes]] = {
    100: b"Continue",
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    406: b"Not Acceptable",
    408: b"Request Timeout",
    413: b"Content Too Large",
    415: b"Unsupported Media Type",
    422: b"Unprocessable Content",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Request:
    """A whole request. Header names are lower-case; repeated headers are joined by ``, ``."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: Sequence[tuple[str, str]] = ()


class HttpError(Exception):
    """An error answered with ``status``; ``code`` is a stable machine-readable name."""

    def __init__(
        self, status: int, code: str, message: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = tuple(headers)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_body_bytes: int
    max_header_bytes: int
    max_connections: int
    header_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float
    write_timeout_s: float


@dataclass(slots=True)
class HttpStats:
    """Counters since start, for the metrics endpoint."""

    accepted: int = 0
    requests: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    """Responses the HTTP layer itself sent (malformed, too large, too slow), by status."""


Handler = Callable[[Request], Awaitable[Response]]
ErrorRenderer = Callable[[Request | None, HttpError], Response]


class _Closed(Exception):
    """The connection is over: the peer left, went idle past its time, or we are draining."""


@dataclass(eq=False, slots=True)
class _Connection:
    stream: trio.SocketStream
    protocol: h11.Connection
    idle_scope: trio.CancelScope | None = None


class HttpServer:
    """Serves ``handler`` on listeners until drained. Errors the handler raises as
    :class:`HttpError`, and those of the HTTP layer, are rendered by ``render_error``."""

    def __init__(self, handler: Handler, render_error: ErrorRenderer, limits: HttpLimits) -> None:
        self._handler = handler
        self._render_error = render_error
        self._limits = limits
        self._slots = trio.Semaphore(limits.max_connections)
        self._connections: set[_Connection] = set()
        self._accept_scope = trio.CancelScope()
        self._connections_scope = trio.CancelScope()
        self._grace_scope = trio.CancelScope()
        self._draining = False
        self._all_closed = trio.Event()
        self._stopped = trio.Event()
        self.stats = HttpStats()

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def serve(
        self,
        listeners: Sequence[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept and serve until :meth:`drain` (or cancellation); closes the listeners."""
        try:
            with self._connections_scope:
                async with trio.open_nursery() as connections:
                    with self._accept_scope:
                        async with trio.open_nursery() as accepters:
                            for listener in listeners:
                                accepters.start_soon(self._accept_loop, listener, connections)
                            task_status.started()
                    # Draining: refuse new clients now rather than leave them in the backlog.
                    for listener in listeners:
                        await trio.aclose_forcefully(listener)
                    self._close_idle()
                    with self._grace_scope:
                        if self._connections:
                            await self._all_closed.wait()
                    connections.cancel_scope.cancel()
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
            self._stopped.set()

    def drain(self, grace_s: float) -> None:
        """Stop accepting; give requests in progress ``grace_s`` seconds, then cancel them."""
        deadline = trio.current_time() + grace_s
        self._draining = True
        # A later, shorter grace (a second shutdown call) takes effect; a longer one does not.
        self._grace_scope.deadline = min(self._grace_scope.deadline, deadline)
        self._accept_scope.cancel()
        self._close_idle()
        if not self._connections:
            self._all_closed.set()

    def abort(self) -> None:
        """Stop at once: close the listeners and cancel every connection."""
        self._draining = True
        self._accept_scope.cancel()
        self._connections_scope.cancel()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def _close_idle(self) -> None:
        for connection in self._connections:
            if connection.idle_scope is not None:
                connection.idle_scope.cancel()

    # -- accepting ------------------------------------------------------------------------

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            # Take a connection slot before accepting: past the limit, clients wait in the
            # kernel's backlog instead of costing a task and a buffer each.
            await self._slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:
                self._slots.release()
                if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                    raise
                log.warning("accept failed (%s); retrying", exc)
                await trio.sleep(0.1)
                continue
            except BaseException:
                self._slots.release()
                raise
            self.stats.accepted += 1
            nursery.start_soon(self._run_connection, stream)

    async def _run_connection(self, stream: trio.SocketStream) -> None:
        connection = _Connection(
            stream,
            h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_header_bytes),
        )
        self._connections.add(connection)
        try:
            await self._converse(connection)
        except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            log.exception("connection failed")
        finally:
            self._connections.discard(connection)
            self._slots.release()
            await trio.aclose_forcefully(stream)
            if self._draining and not self._connections:
                self._all_closed.set()

    # -- one connection -------------------------------------------------------------------

    async def _converse(self, connection: _Connection) -> None:
        while True:
            request: Request | None = None
            try:
                head = await self._receive_head(connection)
                request = _request(head)
                request = await self._receive_body(connection, head, request)
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                code = "headers_too_large" if status == 431 else "bad_request"
                message = str(exc)[:200]  # h11 may quote the offending bytes
                await self._send_error(connection, None, HttpError(status, code, message))
                return
            except HttpError as exc:
                await self._send_error(connection, request, exc)
                return
            self.stats.requests += 1
            response = await self._respond(request)
            if not await self._send(connection, response, head_only=request.method == "HEAD"):
                return
            connection.protocol.start_next_cycle()

    async def _receive(self, connection: _Connection, deadline: float, *, idle: bool) -> bytes:
        with trio.CancelScope(deadline=deadline) as scope:
            if idle:
                connection.idle_scope = scope
            try:
                return await connection.stream.receive_some(_RECEIVE_BYTES)
            finally:
                connection.idle_scope = None
        if idle:
            raise _Closed  # idle past keep-alive, or closed by a drain
        raise HttpError(408, "request_timeout", "the request took too long to arrive")

    async def _receive_head(self, connection: _Connection) -> h11.Request:
        protocol = connection.protocol
        deadline = trio.current_time() + self._limits.keepalive_timeout_s
        idle = True
        while True:
            event = protocol.next_event()
            if isinstance(event, h11.Request):
                # h11 bounds only a head still incomplete in its buffer; one that arrived whole
                # in a single read is measured here.
                size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
                if size > self._limits.max_header_bytes:
                    raise HttpError(
                        431,
                        "headers_too_large",
                        f"the request head is larger than {self._limits.max_header_bytes} bytes",
                    )
                return event
            if event is not h11.NEED_DATA:
                raise _Closed  # ConnectionClosed (or a state a server never reaches here)
            if idle and self._draining:
                raise _Closed
            data = await self._receive(connection, deadline, idle=idle)
            if idle and data:
                idle = False
                deadline = trio.current_time() + self._limits.header_timeout_s
            protocol.receive_data(data)

    async def _receive_body(
        self, connection: _Connection, head: h11.Request, request: Request
    ) -> Request:
        protocol = connection.protocol
        limit = self._limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and "transfer-encoding" in request.headers:
            # Framing that intermediaries may read differently (request smuggling): refuse.
            raise HttpError(
                400,
                "bad_request",
                "a request may not have both Content-Length and Transfer-Encoding",
            )
        if declared is not None and int(declared) > limit:  # h11 has checked it is a number
            raise _too_large(limit)
        if protocol.they_are_waiting_for_100_continue:
            await self._write(
                connection, protocol.send(h11.InformationalResponse(status_code=100, headers=[]))
            )
        body = bytearray()
        deadline = trio.current_time() + self._limits.body_timeout_s
        while True:
            event = protocol.next_event()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    raise _too_large(limit)
            elif isinstance(event, h11.EndOfMessage):
                return Request(
                    request.method, request.path, request.query, request.headers, bytes(body)
                )
            elif event is h11.NEED_DATA:
                protocol.receive_data(await self._receive(connection, deadline, idle=False))
            else:
                raise _Closed

    async def _respond(self, request: Request) -> Response:
        try:
            return await self._handler(request)
        except HttpError as exc:
            return self._render_error(request, exc)
        except Exception:
            log.exception("handler failed on %s %s", request.method, request.path)
            error = HttpError(500, "internal", "internal server error")
            return self._render_error(request, error)

    async def _send_error(
        self, connection: _Connection, request: Request | None, error: HttpError
    ) -> None:
        """Answer an error from the HTTP layer and close, lingering if the body is unread."""
        self.stats.errors[error.status] = self.stats.errors.get(error.status, 0) + 1
        # Before a whole request head has arrived we are IDLE, and h11 still lets an error
        # response be sent; in any later state one has been (partly) sent already.
        if connection.protocol.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = self._render_error(request, error)
        unread = connection.protocol.their_state is not h11.DONE
        with trio.move_on_after(self._limits.write_timeout_s):
            try:
                await self._send(connection, response, close=True)
            except (h11.LocalProtocolError, _Closed):
                return
        if unread:
            await self._linger(connection)

    async def _send(
        self,
        connection: _Connection,
        response: Response,
        *,
        close: bool = False,
        head_only: bool = False,
    ) -> bool:
        """Send ``response``; True when the connection may carry another request."""
        protocol = connection.protocol
        headers = [("server", "azr")]
        if response.content_type is not None:
            headers.append(("content-type", response.content_type))
        headers.append(("content-length", str(len(response.body))))
        headers.extend(response.headers)
        if close or self._draining:
            headers.append(("connection", "close"))
        head = h11.Response(
            status_code=response.status,
            headers=headers,
            reason=_REASONS.get(response.status, b""),
        )
        data = protocol.send(head)
        # A response to HEAD declares the body's length but carries none.
        if response.body and not head_only:
            data += protocol.send(h11.Data(data=response.body))
        data += protocol.send(h11.EndOfMessage())
        await self._write(connection, data)
        return protocol.our_state is h11.DONE and protocol.their_state is h11.DONE

    async def _write(self, connection: _Connection, data: bytes) -> None:
        with trio.move_on_after(self._limits.write_timeout_s):
            await connection.stream.send_all(data)
            return
        connection.protocol.send_failed()
        raise _Closed

    async def _linger(self, connection: _Connection) -> None:
        with trio.move_on_after(_LINGER_S):
            try:
                await connection.stream.send_eof()
                drained = 0
                while drained < _LINGER_MAX_BYTES:
                    data = await connection.stream.receive_some(_RECEIVE_BYTES)
                    if not data:
                        return
                    drained += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return


def _too_large(limit: int) -> HttpError:
    return HttpError(413, "body_too_large", f"the request body is larger than {limit} bytes")


def _request(head: h11.Request) -> Request:
    headers: dict[str, str] = {}
    for name, value in head.headers:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    target = head.target.decode("latin-1")
    path, _, query = target.partition("?")
    return Request(head.method.decode("latin-1"), path, query, headers)
