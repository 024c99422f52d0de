"""Typed, bounded mailboxes: trio memory channels with accounting.

A mailbox is one queue of msgspec Structs shared by any number of senders and receivers. Its
capacity bounds the queue so that a slow consumer pushes back on its producers instead of letting
memory grow: ``send`` blocks while the mailbox is full, and the time senders spend blocked is
recorded, because that number is what tells an operator which stage of a pipeline is the
bottleneck.

Closing a mailbox stops it accepting messages. What was already queued can still be received;
once it is drained, receivers get ``trio.EndOfChannel`` (which ends ``async for``). Senders blocked
at the moment of closing, and any later send, get ``trio.ClosedResourceError``.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec
import trio

from azr.errors import ConfigError

__all__ = ["Mailbox", "MailboxStatistics", "open_mailbox"]

T = TypeVar("T", bound=msgspec.Struct)


class MailboxStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one mailbox, cheap to take and ready to encode."""

    name: str
    message_type: str
    capacity: int
    depth: int
    """Messages queued now."""
    peak_depth: int
    """The deepest the queue has been."""
    sent: int
    received: int
    blocked_senders: int
    """Tasks waiting in ``send`` because the mailbox is full."""
    blocked_receivers: int
    """Tasks waiting in ``receive`` because the mailbox is empty."""
    send_blocked_seconds: float
    """Total time senders have spent blocked, including waits still in progress."""
    closed: bool


class Mailbox(Generic[T]):
    """A bounded FIFO of ``T`` messages; create one with :func:`open_mailbox`."""

    def __init__(self, message_type: type[T], capacity: int, name: str) -> None:
        self._message_type = message_type
        self._capacity = capacity
        self._name = name
        self._send_channel, self._receive_channel = trio.open_memory_channel[T](capacity)
        self._closed = False
        self._sent = 0
        self._received = 0
        self._peak_depth = 0
        self._blocked_senders = 0
        # Blocked time in progress is n * now - sum(starts); keeping the sum makes it O(1).
        self._blocked_start_sum = 0.0
        self._blocked_seconds = 0.0

    @property
    def name(self) -> str:
        """The name statistics report this mailbox under."""
        return self._name

    @property
    def message_type(self) -> type[T]:
        """The Struct type every message must be an instance of."""
        return self._message_type

    @property
    def capacity(self) -> int:
        """How many messages may be queued before ``send`` blocks."""
        return self._capacity

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def __repr__(self) -> str:
        return (
            f"<Mailbox {self._name!r} of {self._message_type.__name__}, "
            f"capacity {self._capacity}{', closed' if self._closed else ''}>"
        )

    def _check(self, message: T) -> None:
        if not isinstance(message, self._message_type):
            raise TypeError(
                f"mailbox {self._name!r} takes {self._message_type.__name__}, "
                f"not {type(message).__name__}"
            )

    def _accepted(self) -> None:
        self._sent += 1
        depth = self._send_channel.statistics().current_buffer_used
        if depth > self._peak_depth:
            self._peak_depth = depth

    def send_nowait(self, message: T) -> None:
        """Queue ``message`` or raise ``trio.WouldBlock`` if the mailbox is full.

        Raises ``trio.ClosedResourceError`` once the mailbox is closed and ``TypeError`` for a
        message of the wrong type.
        """
        self._check(message)
        self._send_channel.send_nowait(message)
        self._accepted()

    async def send(self, message: T) -> None:
        """Queue ``message``, waiting while the mailbox is full.

        Raises ``trio.ClosedResourceError`` if the mailbox is closed before or while waiting. If
        cancelled, the message was not queued.
        """
        self._check(message)
        # Keep trio's checkpoint contract: a send is always a cancellation point and a schedule
        # point, whether or not it had to wait.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._send_channel.send_nowait(message)
        except trio.WouldBlock:
            pass
        else:
            self._accepted()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        start = trio.current_time()
        self._blocked_senders += 1
        self._blocked_start_sum += start
        try:
            await self._send_channel.send(message)
        finally:
            self._blocked_senders -= 1
            self._blocked_start_sum -= start
            self._blocked_seconds += trio.current_time() - start
        self._accepted()

    def receive_nowait(self) -> T:
        """Take the oldest message or raise ``trio.WouldBlock`` if there is none.

        Raises ``trio.EndOfChannel`` once the mailbox is closed and drained.
        """
        message = self._receive_channel.receive_nowait()
        self._received += 1
        return message

    async def receive(self) -> T:
        """Take the oldest message, waiting for one to arrive.

        Raises ``trio.EndOfChannel`` once the mailbox is closed and drained.
        """
        message = await self._receive_channel.receive()
        self._received += 1
        return message

    def __aiter__(self) -> Mailbox[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Stop accepting messages; queued ones can still be received. Idempotent."""
        self._closed = True
        self._send_channel.close()

    async def aclose(self) -> None:
        """Like :meth:`close`, as an async resource (a checkpoint, like every trio ``aclose``)."""
        self.close()
        await trio.lowlevel.checkpoint()

    def statistics(self) -> MailboxStatistics:
        """A snapshot of the queue and of its traffic so far."""
        channel = self._send_channel.statistics()
        blocked = self._blocked_seconds
        if self._blocked_senders:
            blocked += self._blocked_senders * trio.current_time() - self._blocked_start_sum
        return MailboxStatistics(
            name=self._name,
            message_type=self._message_type.__name__,
            capacity=self._capacity,
            depth=channel.current_buffer_used,
            peak_depth=self._peak_depth,
            sent=self._sent,
            received=self._received,
            blocked_senders=channel.tasks_waiting_send,
            blocked_receivers=channel.tasks_waiting_receive,
            send_blocked_seconds=blocked,
            closed=self._closed,
        )


def open_mailbox(message_type: type[T], capacity: int, *, name: str | None = None) -> Mailbox[T]:
    """Create a mailbox for ``message_type`` messages holding at most ``capacity`` of them.

    ``capacity`` 0 makes every send wait for a receiver (a rendezvous). ``name`` defaults to the
    message type's name; an actor system requires the names of its mailboxes to be unique.
    """
    if not (isinstance(message_type, type) and issubclass(message_type, msgspec.Struct)):
        raise TypeError(f"mailbox messages must be a msgspec.Struct type, not {message_type!r}")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
        raise ConfigError(f"mailbox capacity must be an int >= 0, not {capacity!r}")
    return Mailbox(message_type, capacity, message_type.__name__ if name is None else name)
