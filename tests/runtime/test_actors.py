"""Actors under supervision: ready handshake, failures, restarts, cancellation, accounting."""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from azr.errors import ConfigError
from azr.runtime import (
    ActorContext,
    ActorFailed,
    ActorState,
    RestartPolicy,
    SystemState,
    open_actor_system,
    open_mailbox,
)

from ._support import Job, idle, trio_test


@trio_test()
async def test_start_actor_returns_only_once_the_actor_is_ready() -> None:
    events: list[str] = []

    async def slow(ctx: ActorContext) -> None:
        events.append("slow: setting up")
        await trio.sleep(3)
        events.append("slow: ready")
        ctx.started()
        await trio.sleep_forever()

    async def ready_from_a_child_task(ctx: ActorContext) -> None:
        async def helper() -> None:
            events.append("helper: ready")
            ctx.started()
            await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(helper)

    async with open_actor_system() as system:
        actor = await system.start_actor("slow", slow)
        events.append("system: slow started")
        assert actor.state is ActorState.RUNNING
        assert trio.current_time() == pytest.approx(3)
        await system.start_actor("helped", ready_from_a_child_task)
        events.append("system: helped started")

    assert events == [
        "slow: setting up",
        "slow: ready",
        "system: slow started",
        "helper: ready",
        "system: helped started",
    ]


def explode() -> None:
    raise ValueError("boom")


@trio_test()
async def test_a_failing_actor_cancels_everything_and_is_named() -> None:
    cancelled: list[str] = []

    async def steady(ctx: ActorContext) -> None:
        ctx.started()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append("steady")
            raise

    async def fragile(ctx: ActorContext) -> None:
        ctx.started()
        await trio.sleep(1)
        explode()

    with pytest.raises(ActorFailed) as caught:
        async with open_actor_system() as system:
            await system.start_actor("steady", steady)
            await system.start_actor("fragile", fragile)
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                cancelled.append("body")
                raise

    error = caught.value
    assert error.actor == "fragile"
    assert str(error) == "actor 'fragile' failed: ValueError: boom"
    assert isinstance(error.__cause__, ValueError)
    frames = [frame.name for frame in traceback.extract_tb(error.__cause__.__traceback__)]
    assert frames[-2:] == ["fragile", "explode"]
    assert "ValueError: boom" in "".join(traceback.format_exception(error))
    assert sorted(cancelled) == ["body", "steady"]
    # Torn down at once: no graceful drain after a failure.
    assert trio.current_time() == pytest.approx(1)
    stats = system.statistics()
    assert stats.state is SystemState.FAILED
    assert stats.stop_reason == "actor 'fragile' failed"
    assert stats.actors["fragile"].state is ActorState.FAILED
    assert stats.actors["fragile"].last_error == "ValueError: boom"
    assert stats.actors["steady"].state is ActorState.CANCELLED


@trio_test()
async def test_failure_before_ready_is_raised_to_the_starter_only() -> None:
    async def broken(ctx: ActorContext) -> None:
        explode()

    async def quitter(ctx: ActorContext) -> None:
        return

    async with open_actor_system() as system:
        with pytest.raises(ActorFailed, match="'broken' failed: ValueError: boom") as caught:
            await system.start_actor("broken", broken)
        assert isinstance(caught.value.__cause__, ValueError)
        with pytest.raises(ActorFailed, match="returned before it was ready"):
            await system.start_actor("quitter", quitter)
        # The system carries on, and the name is free again.
        await system.start_actor("broken", idle)
        assert system.statistics().state is SystemState.RUNNING
    assert system.state is SystemState.STOPPED


@trio_test()
async def test_an_actor_not_ready_in_time_is_cancelled() -> None:
    cleaned_up = False

    async def never_ready(ctx: ActorContext) -> None:
        nonlocal cleaned_up
        try:
            await trio.sleep_forever()
        finally:
            cleaned_up = True

    async with open_actor_system() as system:
        with pytest.raises(ActorFailed, match="'hung' was not ready within 2s"):
            await system.start_actor("hung", never_ready, ready_timeout=2)
        assert cleaned_up
        assert trio.current_time() == pytest.approx(2)


@trio_test()
async def test_restarts_back_off_until_the_actor_comes_up() -> None:
    starts: list[float] = []

    async def flaky(ctx: ActorContext) -> None:
        starts.append(trio.current_time())
        assert ctx.restarts == len(starts) - 1
        if len(starts) <= 2:
            raise ConnectionError("refused")
        ctx.started()
        await trio.sleep_forever()

    policy = RestartPolicy(max_restarts=3, window=60, backoff=1, backoff_factor=2)
    async with open_actor_system() as system:
        actor = await system.start_actor("flaky", flaky, restart=policy)
        assert starts == pytest.approx([0, 1, 3])
        stats = actor.statistics()
        assert (stats.state, stats.restarts) == (ActorState.RUNNING, 2)
        assert stats.last_error == "ConnectionError: refused"


@trio_test()
async def test_queued_messages_survive_a_restart() -> None:
    seen: list[int] = []

    async with open_actor_system() as system:
        inbox = system.open_mailbox(Job, 8, name="jobs")

        async def worker(ctx: ActorContext) -> None:
            ctx.started()
            async for job in ctx.messages(inbox):
                if job.n == 1 and ctx.restarts == 0:
                    raise RuntimeError("crashed on job 1")
                seen.append(job.n)

        actor = await system.start_actor(
            "worker", worker, mailboxes=[inbox], restart=RestartPolicy(backoff=0.5)
        )
        for n in range(4):
            await inbox.send(Job(n))

    # Job 1 was being handled when the worker crashed; the rest were queued and kept.
    assert seen == [0, 2, 3]
    stats = actor.statistics()
    assert (stats.state, stats.restarts, stats.messages_handled) == (ActorState.STOPPED, 1, 3)


@trio_test()
async def test_exhausting_the_restart_budget_fails_the_system() -> None:
    attempts = 0

    async def doomed(ctx: ActorContext) -> None:
        nonlocal attempts
        attempts += 1
        ctx.started()
        raise RuntimeError(f"attempt {attempts}")

    policy = RestartPolicy(max_restarts=2, window=60, backoff=1, backoff_factor=2)
    with pytest.raises(ActorFailed) as caught:
        async with open_actor_system() as system:
            await system.start_actor("doomed", doomed, restart=policy)
            await trio.sleep_forever()

    error = caught.value
    assert "RuntimeError: attempt 3" in str(error)
    assert "restart budget exhausted: 2 restarts within 60s" in str(error)
    assert isinstance(error.__cause__, RuntimeError)
    assert str(error.__cause__) == "attempt 3"
    assert system.statistics().actors["doomed"].restarts == 2
    assert trio.current_time() == pytest.approx(1 + 2)


@trio_test(timeout=100)
async def test_failures_outside_the_window_do_not_use_up_the_budget() -> None:
    async def crashes_every_20s(ctx: ActorContext) -> None:
        ctx.started()
        await trio.sleep(20)
        raise RuntimeError("periodic")

    policy = RestartPolicy(max_restarts=1, window=10, backoff=0)
    async with open_actor_system() as system:
        actor = await system.start_actor("periodic", crashes_every_20s, restart=policy)
        await trio.sleep(85)
        assert actor.statistics().restarts == 4
    assert actor.state is ActorState.CANCELLED


def test_restart_policy_validates_and_caps_backoff() -> None:
    policy = RestartPolicy(backoff=0.5, backoff_factor=2, max_backoff=30)
    assert [policy.delay(n) for n in range(4)] == [0.5, 1, 2, 4]
    assert policy.delay(10_000) == 30
    assert RestartPolicy(backoff=0).delay(5) == 0
    for bad in (
        {"max_restarts": -1},
        {"window": 0},
        {"backoff": -1},
        {"backoff_factor": 0.5},
        {"max_backoff": float("inf")},
    ):
        with pytest.raises(ConfigError):
            RestartPolicy(**bad)


@trio_test()
async def test_an_error_in_the_body_is_raised_as_itself() -> None:
    closed: list[str] = []

    @asynccontextmanager
    async def resource() -> AsyncIterator[None]:
        try:
            yield
        finally:
            closed.append("resource")

    with pytest.raises(KeyError, match="missing"):
        async with open_actor_system() as system:
            await system.enter_async_context(resource())
            actor = await system.start_actor("idle", idle)
            raise KeyError("missing")
    assert actor.state is ActorState.CANCELLED
    assert closed == ["resource"]
    assert system.stop_reason == "error: KeyError: 'missing'"


@trio_test()
async def test_outer_cancellation_cancels_actors_without_draining() -> None:
    handled: list[int] = []
    inbox = open_mailbox(Job, 8)

    async def slow_worker(ctx: ActorContext) -> None:
        ctx.started()
        async for job in ctx.messages(inbox):
            await trio.sleep(10)
            handled.append(job.n)

    with trio.move_on_after(5) as outer:
        async with open_actor_system(grace_period=100) as system:
            actor = await system.start_actor("slow", slow_worker, mailboxes=[inbox])
            for n in range(3):
                await inbox.send(Job(n))
            await trio.sleep_forever()
    assert outer.cancelled_caught
    assert trio.current_time() == pytest.approx(5)
    assert handled == []
    assert actor.state is ActorState.CANCELLED
    assert system.stop_reason == "cancelled"
    assert inbox.statistics().depth == 2


@trio_test(timeout=100)
async def test_busy_and_waiting_time_are_measured() -> None:
    async with open_actor_system() as system:
        inbox = system.open_mailbox(Job, 4)

        async def worker(ctx: ActorContext) -> None:
            ctx.started()
            async for _ in ctx.messages(inbox):
                await trio.sleep(2)

        actor = await system.start_actor("worker", worker, mailboxes=[inbox])
        for _ in range(3):
            await trio.sleep(1)
            await inbox.send(Job(0))
            await trio.sleep(9)
        stats = actor.statistics()
        assert trio.current_time() == pytest.approx(30)
        assert stats.messages_handled == 3
        assert stats.busy_seconds == pytest.approx(6)
        assert stats.waiting_seconds == pytest.approx(24)


@trio_test(timeout=100)
async def test_handling_blocks_count_messages_and_failures_do_not() -> None:
    async with open_actor_system() as system:
        inbox = system.open_mailbox(Job, 4)

        async def worker(ctx: ActorContext) -> None:
            ctx.started()
            while True:
                job = await ctx.receive(inbox)
                with ctx.handling():
                    await trio.sleep(1)
                    if job.n < 0:
                        raise ValueError("negative job")

        actor = await system.start_actor(
            "worker", worker, mailboxes=[inbox], restart=RestartPolicy(backoff=0)
        )
        for n in (1, -1, 2):
            await inbox.send(Job(n))
        await trio.sleep(10)
        stats = actor.statistics()
        assert (stats.messages_handled, stats.restarts) == (2, 1)
        assert stats.busy_seconds == pytest.approx(3)
    # Running off the end of its own closed mailbox is a normal stop, not a failure.
    assert actor.state is ActorState.STOPPED


@trio_test()
async def test_names_must_be_unique() -> None:
    async with open_actor_system() as system:
        await system.start_actor("a", idle)
        with pytest.raises(ValueError, match="actor named 'a'"):
            await system.start_actor("a", idle)
        system.open_mailbox(Job, 1, name="jobs")
        with pytest.raises(ValueError, match="mailbox named 'jobs'"):
            system.open_mailbox(Job, 1, name="jobs")
        with pytest.raises(ValueError, match="mailbox named 'jobs'"):
            await system.start_actor("b", idle, mailboxes=[open_mailbox(Job, 1, name="jobs")])
