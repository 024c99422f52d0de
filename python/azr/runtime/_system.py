"""The actor system: one supervising nursery for actors, resources and signal handling.

The shutdown order, which matters to anything owning processes, is documented on
:func:`open_actor_system`.
"""

from __future__ import annotations

import enum
import math
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, NoReturn, TypeVar, cast

import msgspec
import trio

from azr.errors import ConfigError

from ._actor import Actor, ActorRun, ActorStatistics, RestartPolicy, _describe
from ._errors import ActorFailed
from ._mailbox import Mailbox, MailboxStatistics, open_mailbox

__all__ = ["ActorSystem", "SystemState", "SystemStatistics", "open_actor_system"]

T = TypeVar("T", bound=msgspec.Struct)
R = TypeVar("R")

_DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SystemState(enum.StrEnum):
    """Where an actor system is in its life."""

    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class SystemStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a whole actor system, ready for ``msgspec.json.encode``."""

    state: SystemState
    uptime_seconds: float
    stop_reason: str | None
    actors: dict[str, ActorStatistics]
    mailboxes: dict[str, MailboxStatistics]


class _Resource(Generic[R]):
    """One entered resource and the task holding it open."""

    __slots__ = ("done", "entered", "error", "release", "scope", "settled", "value")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.settled = trio.Event()
        self.release = trio.Event()
        self.done = trio.Event()
        self.entered = False
        self.value: R | None = None
        self.error: BaseException | None = None


class ActorSystem:
    """A set of supervised actors; get one from :func:`open_actor_system`."""

    def __init__(self, grace_period: float) -> None:
        self._grace_period = grace_period
        self._nursery: trio.Nursery | None = None
        self._started_at = trio.current_time()
        self._body_scope = trio.CancelScope()
        self._drain_scope = trio.CancelScope()
        self._service_scopes: list[trio.CancelScope] = []
        self._resources: list[_Resource[Any]] = []
        self._actors: dict[str, Actor] = {}
        self._mailboxes: dict[str, Mailbox[Any]] = {}
        self._state = SystemState.RUNNING
        self._stop_reason: str | None = None
        self._stop_requested = False
        self._forced = False
        self._failure: ActorFailed | None = None

    @property
    def state(self) -> SystemState:
        """The system's current state."""
        return self._state

    @property
    def stop_reason(self) -> str | None:
        """Why the system stopped or is stopping (``"signal SIGTERM"``, ...), None while running."""
        return self._stop_reason

    @property
    def grace_period(self) -> float:
        """Seconds a graceful stop gives the actors to drain before cancelling them."""
        return self._grace_period

    def __repr__(self) -> str:
        return f"<ActorSystem {self._state.value}, {len(self._actors)} actors>"

    def _check_open(self, what: str) -> None:
        if self._state is not SystemState.RUNNING or self._body_scope.cancel_called:
            raise RuntimeError(f"cannot {what}: the actor system is stopping")

    def _register(self, mailbox: Mailbox[Any]) -> None:
        existing = self._mailboxes.setdefault(mailbox.name, mailbox)
        if existing is not mailbox:
            raise ValueError(f"a different mailbox named {mailbox.name!r} is already registered")

    def open_mailbox(
        self, message_type: type[T], capacity: int, *, name: str | None = None
    ) -> Mailbox[T]:
        """Create a mailbox (see :func:`open_mailbox`) that the system's statistics report."""
        mailbox = open_mailbox(message_type, capacity, name=name)
        self._register(mailbox)
        return mailbox

    async def start_actor(
        self,
        name: str,
        run: ActorRun,
        *,
        mailboxes: Sequence[Mailbox[Any]] = (),
        restart: RestartPolicy | None = None,
        ready_timeout: float | None = None,
    ) -> Actor:
        """Start ``run(ctx)`` as the actor ``name`` and return once it has called ``ctx.started()``.

        ``mailboxes`` are the mailboxes the actor consumes: they are registered with the system
        and a graceful stop closes them so the actor can drain and return. With a ``restart``
        policy a failed run is run again; messages still queued survive the restart, the one
        being handled does not.

        Raises :class:`ActorFailed` if the actor fails (restarts exhausted), returns or is
        cancelled before it is ready, or is not ready within ``ready_timeout`` seconds; the
        system itself carries on and the name may be used again. Once ready, a failure of the
        actor fails the whole system instead.
        """
        # A body that was stopped but has not reached a checkpoint yet should see the stop.
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open(f"start actor {name!r}")
        if name in self._actors:
            raise ValueError(f"an actor named {name!r} already exists")
        owned = tuple(mailboxes)
        for mailbox in owned:
            self._register(mailbox)
        assert self._nursery is not None
        actor = Actor(
            name=name,
            run=run,
            mailboxes=owned,
            restart=restart,
            system=self,
            on_failure=self._actor_failed,
        )
        self._actors[name] = actor
        self._nursery.start_soon(actor._main, name=f"actor {name}")
        try:
            with trio.move_on_after(math.inf if ready_timeout is None else ready_timeout) as wait:
                await actor._settled.wait()
        except BaseException:
            actor._cancel()
            raise
        if actor._ready:
            return actor
        if wait.cancelled_caught:
            actor._cancel()
            with trio.CancelScope(shield=True):
                await actor._done.wait()
            failure = ActorFailed(name, f"actor {name!r} was not ready within {ready_timeout:g}s")
        else:
            # If we are being cancelled ourselves, that is the news, not the actor's cancellation.
            await trio.lowlevel.checkpoint_if_cancelled()
            failure = actor._startup_error or ActorFailed(
                name, f"actor {name!r} was cancelled before it was ready"
            )
        del self._actors[name]
        raise failure

    async def enter_async_context(self, manager: AbstractAsyncContextManager[R]) -> R:
        """Enter ``manager`` now and exit it when the system shuts down, after the actors.

        Use it for resources the actors share, above all those owning child processes, so that
        they are closed on every exit path. The manager is entered and exited in a task of its
        own (so any task may call this); cancelling the caller while the manager is being
        entered cancels the entering. Exceptions from entering are raised here.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open("enter a resource")
        assert self._nursery is not None
        slot: _Resource[R] = _Resource()
        self._resources.append(slot)
        self._nursery.start_soon(self._hold, manager, slot, name=f"resource {manager!r}")
        try:
            await slot.settled.wait()
        except BaseException:
            slot.scope.cancel()
            raise
        if slot.entered:
            return cast(R, slot.value)
        self._resources.remove(slot)
        if slot.error is not None:
            raise slot.error
        await trio.lowlevel.checkpoint_if_cancelled()
        raise RuntimeError(f"entering {manager!r} was cancelled")

    async def _hold(self, manager: AbstractAsyncContextManager[R], slot: _Resource[R]) -> None:
        try:
            with slot.scope:
                async with manager as value:
                    # From here on only teardown ends the resource, whatever is cancelled.
                    slot.scope.shield = True
                    slot.value = value
                    slot.entered = True
                    slot.settled.set()
                    await slot.release.wait()
        except Exception as exc:
            slot.error = exc
        finally:
            slot.done.set()
            slot.settled.set()

    async def stop_on_signals(self, *signals: int) -> None:
        """Stop the system gracefully on the first of ``signals``, cancel it on the next one.

        Defaults to SIGINT and SIGTERM, so Ctrl-C drains instead of raising KeyboardInterrupt.
        Returns once the handlers are installed; they stay until the system has shut down. Must
        be called from the main thread (where ``trio.run`` normally runs).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open("install signal handlers")
        assert self._nursery is not None
        scope = trio.CancelScope()
        self._service_scopes.append(scope)
        await self._nursery.start(self._watch_signals, scope, signals or _DEFAULT_SIGNALS)

    async def _watch_signals(
        self,
        scope: trio.CancelScope,
        signals: tuple[int, ...],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with scope, trio.open_signal_receiver(*signals) as received:
            task_status.started()
            async for signum in received:
                name = _signal_name(signum)
                if self._stop_requested or self._state is not SystemState.RUNNING:
                    self.cancel(f"signal {name} while stopping")
                else:
                    self.stop(f"signal {name}")

    def stop(self, reason: str | None = None) -> None:
        """Begin a graceful stop: cancel the body, then drain the actors (see the module docs).

        Safe to call from any task, any number of times; the first reason given is kept.
        """
        self._stop_requested = True
        if self._stop_reason is None:
            self._stop_reason = reason or "stop requested"
        self._body_scope.cancel()

    def cancel(self, reason: str | None = None) -> None:
        """Stop now: cancel the body and every actor without draining.

        Like ``stop`` the ``async with`` block then exits normally; resources are still closed.
        """
        self._forced = True
        self.stop(reason)
        self._drain_scope.cancel()

    def statistics(self) -> SystemStatistics:
        """A snapshot of the system, its actors and its mailboxes."""
        return SystemStatistics(
            state=self._state,
            uptime_seconds=trio.current_time() - self._started_at,
            stop_reason=self._stop_reason,
            actors={name: actor.statistics() for name, actor in self._actors.items()},
            mailboxes={name: mailbox.statistics() for name, mailbox in self._mailboxes.items()},
        )

    def _actor_failed(self, failure: ActorFailed) -> None:
        if self._failure is not None:
            # Often a consequence of the first failure, but never silently dropped.
            self._failure.add_note(f"also failed while stopping: {failure}")
            return
        self._failure = failure
        self._state = SystemState.FAILED
        if self._stop_reason is None:
            self._stop_reason = f"actor {failure.actor!r} failed"
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        self._drain_scope.cancel()

    async def _teardown(self, exc: BaseException | None) -> None:
        graceful = self._failure is None and not self._forced and exc is None
        if self._stop_reason is None:
            if exc is None:
                self._stop_reason = "exited"
            elif _is_cancellation(exc):
                self._stop_reason = "cancelled"
            else:
                self._stop_reason = f"error: {_describe(exc)}"
        if self._state is SystemState.RUNNING:
            self._state = SystemState.STOPPING
        try:
            await self._stop_actors(graceful=graceful)
        finally:
            try:
                for slot in reversed(self._resources):
                    slot.release.set()
                    await slot.done.wait()
            finally:
                self._abandon()
                if self._state is SystemState.STOPPING:
                    self._state = SystemState.STOPPED
        errors = [slot.error for slot in reversed(self._resources) if slot.error is not None]
        if errors:
            for other in errors[1:]:
                errors[0].add_note(f"another resource also failed to close: {_describe(other)}")
            raise errors[0]

    def _abandon(self) -> None:
        # Make sure the nursery can finish even if teardown was cut short (a second
        # KeyboardInterrupt): whatever is left is cancelled or released, all at once.
        for actor in self._actors.values():
            actor._cancel()
        for slot in self._resources:
            slot.release.set()
        for scope in self._service_scopes:
            scope.cancel()

    async def _stop_actors(self, *, graceful: bool) -> None:
        newest_first = list(reversed(self._actors.values()))
        if graceful:
            self._drain_scope.deadline = trio.current_time() + self._grace_period
            with self._drain_scope:
                for actor in newest_first:
                    if actor._done.is_set():
                        continue
                    if actor.mailboxes:
                        actor._begin_draining()
                    else:
                        actor._cancel()
                    await actor._done.wait()
        for actor in newest_first:
            actor._cancel()
        for actor in newest_first:
            await actor._done.wait()


@asynccontextmanager
async def open_actor_system(*, grace_period: float = 10.0) -> AsyncIterator[ActorSystem]:
    """Run a supervised actor system for the duration of the ``async with`` block.

    Start actors with ``await system.start_actor(...)`` inside the block. An actor failure
    cancels everything and is raised as :class:`ActorFailed`; leaving the block, or
    ``system.stop()``, shuts the system down gracefully, draining the actors for at most
    ``grace_period`` seconds.

    Shutdown order, on every exit path of ``async with open_actor_system() as system:``:

    1. The body stops: it finishes, raises, or is cancelled by ``system.stop()`` or
       ``system.cancel()`` (which is what a stop signal calls), by an actor failure, or by an
       enclosing cancel scope.
    2. The actors stop, in the reverse of the order they were started in, so that an actor
       started after the actors it feeds is stopped before them and can still hand its last
       messages on. After a normal exit or ``stop()`` the stop is graceful: each actor in turn
       has its mailboxes closed, drains what is queued and returns (an actor without mailboxes
       is cancelled), all within ``grace_period`` seconds in total; whatever is still running
       then is cancelled. After an error, an actor failure, ``cancel()`` or an outer
       cancellation every actor is cancelled at once. Either way the system waits for every
       actor task to end.
    3. Resources entered with ``system.enter_async_context`` are exited, last entered first,
       after every actor is gone, because actors use them. This is where executors close and
       child processes are terminated.
    4. Signal handlers installed by ``stop_on_signals`` are removed.
    5. The first actor failure is raised as :class:`ActorFailed` (the original exception is its
       ``__cause__``); otherwise the body's own exception is raised as itself, not wrapped in an
       exception group; otherwise the first exception a resource raised on exit. A stop by
       ``stop()``, ``cancel()`` or a signal leaves the block normally.

    Steps 2 to 4 run shielded from cancellation, so that they complete even when the system is
    torn down by a failure or an outer deadline; only the graceful drain is bounded by
    ``grace_period``. Each resource is held open by a task of its own, shielded once entered: a
    stop or a failure does not cancel what runs inside a resource (a server's watcher, an
    executor's workers) while actors may still be using it, and resources never tangle with the
    cancel scopes of the body.

    Ctrl-C without ``stop_on_signals`` is trio's KeyboardInterrupt: it is raised wherever the
    main task happens to be, tears the system down without a drain, and a second one can cut the
    teardown short. Programs that own child processes should call ``stop_on_signals``.
    """
    if not (isinstance(grace_period, int | float) and 0 <= grace_period < math.inf):
        raise ConfigError(f"grace_period must be a finite number >= 0, not {grace_period!r}")
    system = ActorSystem(float(grace_period))
    try:
        async with trio.open_nursery() as nursery:
            system._nursery = nursery
            seen: BaseException | None = None
            try:
                try:
                    # stop() cancels this scope; the Cancelled ends here and the exit is clean.
                    with system._body_scope:
                        yield system
                except BaseException as exc:
                    seen = exc
                    raise
                finally:
                    with trio.CancelScope(shield=True):
                        await system._teardown(seen)
                    del seen
            finally:
                system._abandon()
    except BaseExceptionGroup as group:
        failure = system._failure
        if failure is not None:
            _, serious = group.split(Exception)
            if serious is None or serious.split(trio.Cancelled)[1] is None:
                errors, _ = group.split(Exception)
                for error in errors.exceptions if errors is not None else ():
                    failure.add_note(f"also raised while stopping: {_describe(error)}")
                raise failure from failure.__cause__
        single = _single(group)
        if failure is not None:
            # Something graver (KeyboardInterrupt) wins, but the failure is not lost.
            single.add_note(f"meanwhile: {failure}")
        if single is group:
            raise
        _raise_alone(single)
    if system._failure is not None:
        raise system._failure from system._failure.__cause__


def _is_cancellation(exc: BaseException | None) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return False


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _raise_alone(exc: BaseException) -> NoReturn:
    # Raising inside ``except group`` would make the group the context of its own member and
    # print every traceback twice; keep whatever context the exception had.
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
