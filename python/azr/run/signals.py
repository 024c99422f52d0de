"""Stop signals seen before the actor system watches for them.

A process's default reaction to SIGTERM is to die on the spot, and a trainer's start-up (imports,
checks, loading a model) takes seconds. :func:`capture_stop_signals` is the first thing the
command line does: from then on SIGINT and SIGTERM are only recorded, never acted on half-way
through an import or a write. Start-up looks at :func:`pending_stop` between its stages and ends
cleanly (exit status 128 + the signal) when one arrived; once trio runs, its own signal receivers
take over, and a signal recorded before them still stops the run.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Final

from azr.errors import AzrError

if TYPE_CHECKING:
    import trio

__all__ = [
    "STOP_SIGNALS",
    "StartupStop",
    "StopRequested",
    "capture_stop_signals",
    "open_startup_stop",
    "pending_stop",
    "raise_if_stop_pending",
]

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

_pending: list[int] = []


class StopRequested(AzrError):
    """A stop signal arrived during start-up; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"signal {signal.Signals(signum).name}")


def _record(signum: int, frame: FrameType | None) -> None:
    if not _pending:
        _pending.append(signum)


@contextlib.contextmanager
def capture_stop_signals() -> Iterator[None]:
    """Record SIGINT and SIGTERM inside the block instead of acting on them (main thread only);
    the previous handlers are back afterwards."""
    _pending.clear()
    previous = {signum: signal.signal(signum, _record) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _pending.clear()


def pending_stop() -> int | None:
    """The first stop signal recorded since :func:`capture_stop_signals`, if any."""
    return _pending[0] if _pending else None


def raise_if_stop_pending() -> None:
    """:class:`StopRequested` if a stop signal was recorded."""
    signum = pending_stop()
    if signum is not None:
        raise StopRequested(signum)


class StartupStop:
    """What :func:`open_startup_stop` saw: the reason the start-up was stopped, if it was."""

    def __init__(self) -> None:
        self.reason: str | None = None


@contextlib.asynccontextmanager
async def open_startup_stop() -> AsyncIterator[StartupStop]:
    """Cancel the block on the first SIGINT or SIGTERM (or one recorded before it began), and
    say why in the yielded :class:`StartupStop`; the Cancelled ends at the block's edge.

    Meant for set-up that precedes an actor system: once the system's own receiver is
    installed it gets the signals, and this one only sees those after the system is gone.
    """
    import trio  # here, not at the top: recording signals must not wait for an import

    stop = StartupStop()

    async def watch(received: AsyncIterator[int], scope: trio.CancelScope) -> None:
        async for signum in received:
            if stop.reason is None:
                stop.reason = f"signal {signal.Signals(signum).name}"
            scope.cancel()

    with trio.open_signal_receiver(*STOP_SIGNALS) as received:
        try:
            async with trio.open_nursery() as nursery:
                with trio.CancelScope() as body:
                    signum = pending_stop()
                    if signum is not None:
                        stop.reason = f"signal {signal.Signals(signum).name}"
                        body.cancel()
                    nursery.start_soon(watch, received, body)
                    yield stop
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The block's own error, not a group of one: callers catch it by its type.
            if len(group.exceptions) != 1:
                raise
            error = group.exceptions[0]
        else:
            return
        context = error.__context__
        try:
            raise error
        finally:
            error.__context__ = context
            del error, context
