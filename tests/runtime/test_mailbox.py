"""Mailboxes: FIFO delivery, backpressure, close semantics, type checks and statistics."""

from __future__ import annotations

from collections import deque

import msgspec
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from azr.errors import ConfigError
from azr.runtime import Mailbox, MailboxStatistics, open_mailbox

from ._support import Job, Result, trio_test


@trio_test()
async def test_messages_arrive_in_order_and_are_counted() -> None:
    mailbox = open_mailbox(Job, 4, name="jobs")
    for n in range(3):
        await mailbox.send(Job(n))
    mailbox.send_nowait(Job(3))
    assert [(await mailbox.receive()).n for _ in range(2)] == [0, 1]
    assert mailbox.receive_nowait() == Job(2)

    stats = mailbox.statistics()
    assert (stats.name, stats.message_type, stats.capacity) == ("jobs", "Job", 4)
    assert (stats.sent, stats.received, stats.depth, stats.peak_depth) == (4, 3, 1, 4)
    assert not stats.closed


@trio_test()
async def test_nowait_variants_raise_would_block() -> None:
    mailbox = open_mailbox(Job, 1)
    with pytest.raises(trio.WouldBlock):
        mailbox.receive_nowait()
    mailbox.send_nowait(Job(0))
    with pytest.raises(trio.WouldBlock):
        mailbox.send_nowait(Job(1))
    assert mailbox.statistics().sent == 1


@trio_test()
async def test_full_mailbox_blocks_the_sender_and_statistics_show_it() -> None:
    mailbox = open_mailbox(Job, 1)
    await mailbox.send(Job(0))
    delivered = trio.Event()

    async def producer() -> None:
        await mailbox.send(Job(1))
        delivered.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.sleep(5)
        stats = mailbox.statistics()
        assert not delivered.is_set()
        assert (stats.blocked_senders, stats.depth, stats.sent) == (1, 1, 1)
        # A wait still in progress already counts.
        assert stats.send_blocked_seconds == pytest.approx(5)

        assert await mailbox.receive() == Job(0)
        await delivered.wait()

    stats = mailbox.statistics()
    assert (stats.blocked_senders, stats.sent, stats.received, stats.depth) == (0, 2, 1, 1)
    assert stats.send_blocked_seconds == pytest.approx(5)
    assert await mailbox.receive() == Job(1)


@trio_test()
async def test_empty_mailbox_reports_blocked_receivers() -> None:
    mailbox = open_mailbox(Job, 2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mailbox.receive)
        await trio.sleep(1)
        assert mailbox.statistics().blocked_receivers == 1
        await mailbox.send(Job(0))
    assert mailbox.statistics().blocked_receivers == 0


@trio_test()
async def test_rendezvous_mailbox_hands_over_directly() -> None:
    mailbox = open_mailbox(Job, 0)
    with pytest.raises(trio.WouldBlock):
        mailbox.send_nowait(Job(0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mailbox.send, Job(1))
        assert await mailbox.receive() == Job(1)
    assert mailbox.statistics().depth == 0


@trio_test()
async def test_closed_mailbox_refuses_sends_and_drains_then_ends() -> None:
    mailbox = open_mailbox(Job, 4)
    await mailbox.send(Job(0))
    await mailbox.send(Job(1))
    mailbox.close()
    mailbox.close()  # idempotent
    with pytest.raises(trio.ClosedResourceError):
        await mailbox.send(Job(2))
    with pytest.raises(trio.ClosedResourceError):
        mailbox.send_nowait(Job(2))
    assert [job.n async for job in mailbox] == [0, 1]
    with pytest.raises(trio.EndOfChannel):
        await mailbox.receive()
    with pytest.raises(trio.EndOfChannel):
        mailbox.receive_nowait()
    assert mailbox.closed
    assert mailbox.statistics().closed


@trio_test()
async def test_closing_wakes_blocked_senders_and_receivers() -> None:
    full = open_mailbox(Job, 1)
    full.send_nowait(Job(0))
    empty = open_mailbox(Job, 1)
    outcomes: list[str] = []

    async def blocked_sender() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await full.send(Job(1))
        outcomes.append("sender")

    async def blocked_receiver() -> None:
        with pytest.raises(trio.EndOfChannel):
            await empty.receive()
        outcomes.append("receiver")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocked_sender)
        nursery.start_soon(blocked_receiver)
        await trio.sleep(1)
        await full.aclose()
        await empty.aclose()
    assert sorted(outcomes) == ["receiver", "sender"]
    # The message queued before closing is still there for the consumer.
    assert full.receive_nowait() == Job(0)


@trio_test()
async def test_cancelled_send_queues_nothing() -> None:
    mailbox = open_mailbox(Job, 1)
    mailbox.send_nowait(Job(0))
    with trio.move_on_after(1):
        await mailbox.send(Job(1))
    assert mailbox.statistics().sent == 1
    assert mailbox.receive_nowait() == Job(0)
    with pytest.raises(trio.WouldBlock):
        mailbox.receive_nowait()


@trio_test()
async def test_messages_of_the_wrong_type_are_refused() -> None:
    mailbox = open_mailbox(Job, 1)
    with pytest.raises(TypeError, match="takes Job, not Result"):
        mailbox.send_nowait(Result(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await mailbox.send(Result(1))  # type: ignore[arg-type]
    assert mailbox.statistics().sent == 0


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ConfigError):
        open_mailbox(Job, -1)
    with pytest.raises(ConfigError):
        open_mailbox(Job, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        open_mailbox(dict, 1)  # type: ignore[type-var]


@trio_test()
async def test_statistics_encode_to_json() -> None:
    mailbox = open_mailbox(Job, 2, name="jobs")
    await mailbox.send(Job(0))
    stats = mailbox.statistics()
    encoded = msgspec.json.encode(stats)
    assert msgspec.json.decode(encoded, type=MailboxStatistics) == stats
    assert msgspec.json.decode(encoded)["depth"] == 1


_operations = st.lists(
    st.one_of(st.tuples(st.just("send"), st.integers(0, 99)), st.just(("receive", 0))),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(0, 4), operations=_operations, close_at=st.integers(0, 40))
def test_nowait_operations_match_a_bounded_queue(
    capacity: int, operations: list[tuple[str, int]], close_at: int
) -> None:
    async def main() -> None:
        with trio.fail_after(5):
            await check()

    async def check() -> None:
        mailbox: Mailbox[Job] = open_mailbox(Job, capacity)
        model: deque[int] = deque()
        for step, (operation, n) in enumerate(operations):
            if step == close_at:
                mailbox.close()
            closed = step >= close_at
            if operation == "send":
                if closed:
                    with pytest.raises(trio.ClosedResourceError):
                        mailbox.send_nowait(Job(n))
                elif len(model) < capacity:
                    mailbox.send_nowait(Job(n))
                    model.append(n)
                else:
                    with pytest.raises(trio.WouldBlock):
                        mailbox.send_nowait(Job(n))
            elif model:
                assert mailbox.receive_nowait().n == model.popleft()
            else:
                with pytest.raises(trio.EndOfChannel if closed else trio.WouldBlock):
                    mailbox.receive_nowait()
            stats = mailbox.statistics()
            assert stats.depth == len(model) <= stats.peak_depth <= capacity
            assert stats.sent - stats.received == len(model)

    trio.run(main)
