"""Running the reward service: in a trio program (:func:`open_reward_server`) or as a process
that stops cleanly on SIGTERM/SIGINT (:func:`serve`)."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import AsyncIterator

import trio

from azr.serve._app import RewardApp
from azr.serve._http import HttpLimits, HttpServer
from azr.serve.config import ServeConfig
from azr.serve.metrics import Metrics
from azr.verify import Verifier

__all__ = ["RewardServer", "open_reward_server", "serve", "serve_async"]

log = logging.getLogger("azr.serve")


class RewardServer:
    """A running reward service, as :func:`open_reward_server` yields it."""

    def __init__(
        self, http: HttpServer, app: RewardApp, host: str, port: int, config: ServeConfig
    ) -> None:
        self._http = http
        self._app = app
        self.host = host
        """The address it listens on."""
        self.port = port
        """The port it listens on (the one picked, when the config asked for port 0)."""
        self.config = config

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def verifier(self) -> Verifier:
        return self._app.verifier

    @property
    def metrics(self) -> Metrics:
        return self._app.metrics

    def render_metrics(self) -> str:
        """What ``GET /metrics`` would answer now."""
        return self._app.render_metrics()

    def drain(self, grace_s: float | None = None) -> None:
        """Begin a graceful shutdown: stop accepting, refuse new work, and cancel what is still
        running after ``grace_s`` (default ``config.grace_s``). Returns at once."""
        self._app.drain()
        self._http.drain(self.config.grace_s if grace_s is None else grace_s)

    async def shutdown(self, grace_s: float | None = None) -> None:
        """:meth:`drain` and wait until every connection is closed."""
        self.drain(grace_s)
        await self._http.wait_stopped()

    def abort(self) -> None:
        """Stop now, cancelling requests in progress."""
        self._app.drain()
        self._http.abort()

    async def wait_stopped(self) -> None:
        await self._http.wait_stopped()


@contextlib.asynccontextmanager
async def open_reward_server(
    config: ServeConfig | None = None, *, verifier: Verifier | None = None
) -> AsyncIterator[RewardServer]:
    """Serve rewards in the current trio run for the duration of the block.

    The block gets the running :class:`RewardServer` (``.port``, ``.url``). Leaving the block
    normally shuts down gracefully (see :meth:`RewardServer.drain`); leaving it with an
    exception or a cancellation stops at once. ``verifier`` is borrowed and left open (then the
    config's ``workers``, ``limits``, ``checks`` and ``rewards`` are not used); otherwise one is
    started from the config and closed at the end.
    """
    config = config if config is not None else ServeConfig()
    async with contextlib.AsyncExitStack() as stack:
        if verifier is None:
            verifier = await trio.to_thread.run_sync(_start_verifier, config)
            stack.push_async_callback(_close_verifier, verifier)
        listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        if config.port == 0 and len(listeners) > 1:
            # Each address family would get its own random port; keep one, so the port is one.
            for extra in listeners[1:]:
                await trio.aclose_forcefully(extra)
            listeners = listeners[:1]
        sockname = listeners[0].socket.getsockname()
        app = RewardApp(verifier, config, Metrics())
        http = HttpServer(app.handle, app.render_error, _http_limits(config))
        app.http = http
        server = RewardServer(http, app, str(sockname[0]), int(sockname[1]), config)
        error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            await nursery.start(http.serve, listeners)
            try:
                yield server
            except trio.Cancelled:
                server.abort()
                raise
            except BaseException as exc:
                # Raised again below, outside the nursery: the caller's own exception should
                # reach the caller as itself, not wrapped in an ExceptionGroup.
                server.abort()
                error = exc
            else:
                await server.shutdown()
        if error is not None:
            raise error


def _start_verifier(config: ServeConfig) -> Verifier:
    return Verifier(
        workers=config.workers, limits=config.limits, checks=config.checks, rewards=config.rewards
    )


async def _close_verifier(verifier: Verifier) -> None:
    # Shielded: the executor's worker processes must be stopped even when leaving on a cancel.
    with trio.CancelScope(shield=True):
        await trio.to_thread.run_sync(verifier.close)


def _http_limits(config: ServeConfig) -> HttpLimits:
    return HttpLimits(
        max_body_bytes=config.max_body_bytes,
        max_header_bytes=config.max_header_bytes,
        max_connections=config.max_connections,
        header_timeout_s=config.header_timeout_s,
        body_timeout_s=config.body_timeout_s,
        keepalive_timeout_s=config.keepalive_timeout_s,
        write_timeout_s=config.write_timeout_s,
    )


async def serve_async(
    config: ServeConfig,
    *,
    task_status: trio.TaskStatus[RewardServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully; a second signal stops at once.

    Must run in the main thread (signal handling).
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_reward_server(config) as server:
            log.info("listening on %s", server.url)
            task_status.started(server)
            async for signum in signals:
                log.info(
                    "%s: draining, up to %ss for requests in flight",
                    signal.Signals(signum).name,
                    config.grace_s,
                )
                server.drain()
                break

            async def on_second_signal() -> None:
                async for signum in signals:
                    log.warning("%s again: stopping now", signal.Signals(signum).name)
                    server.abort()
                    return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(on_second_signal)
                await server.wait_stopped()
                nursery.cancel_scope.cancel()
    log.info("stopped")


def serve(config: ServeConfig | None = None) -> None:
    """Run the service in this process until SIGTERM or SIGINT (see :func:`serve_async`)."""
    trio.run(serve_async, config if config is not None else ServeConfig())
