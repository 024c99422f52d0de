"""Actors: named trio tasks with mailboxes, a ready handshake, accounting and restarts.

An actor is a ``run(ctx)`` coroutine function. The system calls it in a task of its own, passing an
:class:`ActorContext`; the actor calls ``ctx.started()`` once it can do its job, and the system
does not go on until it has. A run that returns has stopped (normally because its mailbox was
closed and drained); a run that raises has failed, and is either restarted under its
:class:`RestartPolicy` or takes the whole system down.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec
import trio

from azr.errors import ConfigError

from ._errors import ActorFailed
from ._mailbox import Mailbox

if TYPE_CHECKING:
    from ._system import ActorSystem

__all__ = [
    "Actor",
    "ActorContext",
    "ActorRun",
    "ActorState",
    "ActorStatistics",
    "RestartPolicy",
]

T = TypeVar("T", bound=msgspec.Struct)

ActorRun = Callable[["ActorContext"], Awaitable[None]]
"""What an actor runs: an async function taking its context."""


class ActorState(enum.StrEnum):
    """Where an actor is in its life."""

    STARTING = "starting"
    """Running, but has not called ``ctx.started()`` yet (also after each restart)."""
    RUNNING = "running"
    RESTARTING = "restarting"
    """Failed and waiting out its backoff before running again."""
    DRAINING = "draining"
    """Its mailboxes were closed by a graceful stop; it is finishing what is queued."""
    STOPPED = "stopped"
    """Its run returned."""
    FAILED = "failed"
    CANCELLED = "cancelled"


_FINAL = frozenset({ActorState.STOPPED, ActorState.FAILED, ActorState.CANCELLED})


class ActorStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one actor, cheap to take and ready to encode."""

    name: str
    state: ActorState
    messages_handled: int
    busy_seconds: float
    """Time during which at least one message was being handled (see ``ActorContext``)."""
    waiting_seconds: float
    """Time during which at least one of the actor's tasks was waiting in ``ctx.receive``.

    With one task per actor, busy and waiting time never overlap; an actor that consumes several
    mailboxes from several tasks can be busy and waiting at once.
    """
    restarts: int
    mailboxes: tuple[str, ...]
    last_error: str | None
    """The most recent exception the actor's run raised, as ``Type: message``."""


class RestartPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When a failed actor is run again instead of failing the system.

    An actor may restart ``max_restarts`` times within any ``window`` seconds; the failure after
    that escalates. Before the n-th restart of a window (counting from 0) it waits
    ``min(backoff * backoff_factor ** n, max_backoff)`` seconds, so that a crash loop slows down
    instead of spinning. Only ``Exception`` subclasses are restarted; cancellation and
    ``KeyboardInterrupt`` always propagate.
    """

    max_restarts: int = 3
    window: float = 60.0
    backoff: float = 0.5
    backoff_factor: float = 2.0
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ConfigError(f"max_restarts must be >= 0, not {self.max_restarts}")
        if not self.window > 0:
            raise ConfigError(f"window must be > 0, not {self.window}")
        if not (self.backoff >= 0 and self.max_backoff >= 0 and math.isfinite(self.max_backoff)):
            raise ConfigError("backoff and max_backoff must be finite and >= 0")
        if not self.backoff_factor >= 1:
            raise ConfigError(f"backoff_factor must be >= 1, not {self.backoff_factor}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number ``attempt`` (0-based) within the window."""
        if self.backoff == 0:
            return 0.0
        # Compare exponents, not powers, so a long crash loop cannot overflow the float.
        limit = math.log(self.max_backoff / self.backoff) if self.max_backoff > 0 else -math.inf
        if attempt * math.log(self.backoff_factor) >= limit:
            return self.max_backoff
        return float(self.backoff * self.backoff_factor**attempt)


class _Stopwatch:
    """Wall time during which at least one of possibly overlapping spans was open."""

    __slots__ = ("_depth", "_since", "_total")

    def __init__(self) -> None:
        self._depth = 0
        self._since = 0.0
        self._total = 0.0

    def start(self) -> None:
        if self._depth == 0:
            self._since = trio.current_time()
        self._depth += 1

    def stop(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._total += trio.current_time() - self._since

    def total(self) -> float:
        if self._depth:
            return self._total + trio.current_time() - self._since
        return self._total


class _Handling:
    __slots__ = ("_context",)

    def __init__(self, context: ActorContext) -> None:
        self._context = context

    def __enter__(self) -> None:
        self._context._busy_start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._context._busy_stop(handled=exc_type is None)


class _Messages(Generic[T]):
    """Iterates a mailbox, counting a message as handled when the next one is asked for."""

    __slots__ = ("_context", "_in_hand", "_mailbox")

    def __init__(self, context: ActorContext, mailbox: Mailbox[T]) -> None:
        self._context = context
        self._mailbox = mailbox
        self._in_hand = False

    def __aiter__(self) -> _Messages[T]:
        return self

    async def __anext__(self) -> T:
        if self._in_hand:
            self._in_hand = False
            self._context._busy_stop(handled=True)
        try:
            message = await self._context.receive(self._mailbox)
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        self._context._busy_start()
        self._in_hand = True
        return message


class ActorContext:
    """What an actor's run gets: its identity, the ready handshake and accounting helpers.

    Busy and waiting time are measured around ``messages``, ``receive`` and ``handling``; an actor
    that reads its mailboxes directly still works but reports no handled messages. A fresh context
    is passed on every restart.
    """

    def __init__(self, actor: Actor, system: ActorSystem) -> None:
        self._actor = actor
        self._system = system
        self._busy_open = 0

    @property
    def name(self) -> str:
        """The actor's name."""
        return self._actor.name

    @property
    def mailboxes(self) -> tuple[Mailbox[Any], ...]:
        """The mailboxes given to ``start_actor``, in order."""
        return self._actor.mailboxes

    @property
    def restarts(self) -> int:
        """How many times this actor has been restarted before this run."""
        return self._actor._restarts

    @property
    def system(self) -> ActorSystem:
        """The system the actor runs in (to start actors, or to stop the system)."""
        return self._system

    def started(self) -> None:
        """Signal that the actor is ready; ``start_actor`` returns once this is called.

        May be called from any task of the actor. Later calls, and calls after a restart once the
        actor was ready before, only mark it as running again.
        """
        self._actor._mark_ready()

    def handling(self) -> _Handling:
        """A ``with`` block during which the actor counts as busy; a clean exit counts a message."""
        return _Handling(self)

    async def receive(self, mailbox: Mailbox[T]) -> T:
        """``mailbox.receive()``, with the wait counted as waiting time."""
        waiting = self._actor._waiting
        waiting.start()
        try:
            return await mailbox.receive()
        finally:
            waiting.stop()

    def messages(self, mailbox: Mailbox[T]) -> _Messages[T]:
        """Iterate ``mailbox`` until it is closed and drained, accounting each message.

        The time between receiving a message and asking for the next counts as busy, and a
        message counts as handled when the loop comes back for the next one; a message whose
        handling raised is not counted. Use it as ``async for message in ctx.messages(inbox):``.
        """
        return _Messages(self, mailbox)

    def _busy_start(self) -> None:
        self._busy_open += 1
        self._actor._busy.start()

    def _busy_stop(self, *, handled: bool) -> None:
        self._busy_open -= 1
        self._actor._busy.stop()
        if handled:
            self._actor._handled += 1

    def _close(self) -> None:
        # A run that ended mid-message (it raised, or left its loop) leaves spans open.
        while self._busy_open:
            self._busy_stop(handled=False)


class Actor:
    """A handle on a running actor, returned by ``ActorSystem.start_actor``."""

    def __init__(
        self,
        *,
        name: str,
        run: ActorRun,
        mailboxes: tuple[Mailbox[Any], ...],
        restart: RestartPolicy | None,
        system: ActorSystem,
        on_failure: Callable[[ActorFailed], None],
    ) -> None:
        self._name = name
        self._run = run
        self._mailboxes = mailboxes
        self._restart = restart
        self._system = system
        self._on_failure = on_failure
        self._scope = trio.CancelScope()
        self._settled = trio.Event()
        self._done = trio.Event()
        self._ready = False
        self._draining = False
        self._startup_error: ActorFailed | None = None
        self._state = ActorState.STARTING
        self._handled = 0
        self._restarts = 0
        self._last_error: str | None = None
        self._busy = _Stopwatch()
        self._waiting = _Stopwatch()

    @property
    def name(self) -> str:
        """The actor's name, unique within its system."""
        return self._name

    @property
    def mailboxes(self) -> tuple[Mailbox[Any], ...]:
        """The mailboxes the actor consumes; a graceful stop closes them."""
        return self._mailboxes

    @property
    def state(self) -> ActorState:
        """The actor's current state."""
        if self._state not in _FINAL and self._draining:
            return ActorState.DRAINING
        return self._state

    def __repr__(self) -> str:
        return f"<Actor {self._name!r} {self.state.value}>"

    def statistics(self) -> ActorStatistics:
        """A snapshot of the actor's state and work so far."""
        return ActorStatistics(
            name=self._name,
            state=self.state,
            messages_handled=self._handled,
            busy_seconds=self._busy.total(),
            waiting_seconds=self._waiting.total(),
            restarts=self._restarts,
            mailboxes=tuple(mailbox.name for mailbox in self._mailboxes),
            last_error=self._last_error,
        )

    def _mark_ready(self) -> None:
        if self._state is ActorState.STARTING:
            self._state = ActorState.RUNNING
        self._ready = True
        self._settled.set()

    def _begin_draining(self) -> None:
        self._draining = True
        for mailbox in self._mailboxes:
            mailbox.close()

    def _cancel(self) -> None:
        self._scope.cancel()

    async def _main(self) -> None:
        try:
            with self._scope:
                await self._supervise()
        finally:
            if self._state not in _FINAL:
                self._state = ActorState.CANCELLED
            self._done.set()
            self._settled.set()

    async def _supervise(self) -> None:
        recent: deque[float] = deque()
        while True:
            context = ActorContext(self, self._system)
            self._state = ActorState.STARTING
            error: Exception | None = None
            try:
                await self._run(context)
            except trio.EndOfChannel as exc:
                # Running off the end of an own, closed mailbox is how a draining actor stops.
                if not any(mailbox.closed for mailbox in self._mailboxes):
                    error = exc
            except Exception as exc:
                error = exc
            finally:
                context._close()
            if error is None:
                if self._ready:
                    self._state = ActorState.STOPPED
                else:
                    message = f"actor {self._name!r} returned before it was ready"
                    self._fail(ActorFailed(self._name, message))
                return
            self._last_error = _describe(error)
            policy = self._restart
            now = trio.current_time()
            if policy is not None:
                while recent and recent[0] <= now - policy.window:
                    recent.popleft()
            if policy is None or len(recent) >= policy.max_restarts:
                message = f"actor {self._name!r} failed: {_describe(error)}"
                if policy is not None:
                    message += (
                        f" (restart budget exhausted: {policy.max_restarts} restarts "
                        f"within {policy.window:g}s)"
                    )
                failure = ActorFailed(self._name, message)
                failure.__cause__ = error
                self._fail(failure)
                return
            delay = policy.delay(len(recent))
            recent.append(now)
            self._restarts += 1
            self._state = ActorState.RESTARTING
            del error
            await trio.sleep(delay)

    def _fail(self, failure: ActorFailed) -> None:
        self._state = ActorState.FAILED
        if self._ready:
            self._on_failure(failure)
        else:
            # Nobody is running alongside a starting actor but its starter: report it there.
            self._startup_error = failure


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
