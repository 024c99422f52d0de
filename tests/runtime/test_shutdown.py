"""Shutdown: graceful drain, deadlines, resource hooks, stop requests, signals, statistics."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import pytest
import trio

from azr.runtime import (
    ActorContext,
    ActorFailed,
    ActorState,
    ActorSystem,
    ChildProcessActor,
    SystemState,
    SystemStatistics,
    open_actor_system,
)

from ._support import Job, Result, idle, process_alive, trio_test


@trio_test(timeout=100)
async def test_leaving_the_block_drains_a_pipeline_newest_actor_first() -> None:
    totals: list[int] = []
    finished: list[str] = []

    async with open_actor_system() as system:
        jobs = system.open_mailbox(Job, 2, name="jobs")
        results = system.open_mailbox(Result, 2, name="results")

        async def squarer(ctx: ActorContext) -> None:
            ctx.started()
            async for job in ctx.messages(jobs):
                await trio.sleep(1)
                await results.send(Result(job.n * job.n))
            finished.append("squarer")

        async def collector(ctx: ActorContext) -> None:
            ctx.started()
            async for result in ctx.messages(results):
                totals.append(result.value)
            finished.append("collector")

        # Consumers first, so that stopping in reverse lets each producer flush downstream.
        await system.start_actor("collector", collector, mailboxes=[results])
        await system.start_actor("squarer", squarer, mailboxes=[jobs])
        for n in range(10):
            await jobs.send(Job(n))
        # Backpressure: the body got ahead of the squarer by at most the mailbox capacities.
        assert system.statistics().mailboxes["jobs"].send_blocked_seconds > 0

    assert totals == [n * n for n in range(10)]
    assert finished == ["squarer", "collector"]
    stats = system.statistics()
    assert (stats.state, stats.stop_reason) == (SystemState.STOPPED, "exited")
    assert {name: actor.state for name, actor in stats.actors.items()} == {
        "collector": ActorState.STOPPED,
        "squarer": ActorState.STOPPED,
    }
    assert stats.actors["squarer"].messages_handled == 10
    assert all(mailbox.closed and mailbox.depth == 0 for mailbox in stats.mailboxes.values())


@trio_test(timeout=100)
async def test_actors_still_draining_at_the_deadline_are_cancelled() -> None:
    async with open_actor_system(grace_period=3) as system:
        inbox = system.open_mailbox(Job, 4)

        async def stuck(ctx: ActorContext) -> None:
            ctx.started()
            async for _ in ctx.messages(inbox):
                await trio.sleep_forever()

        actor = await system.start_actor("stuck", stuck, mailboxes=[inbox])
        await inbox.send(Job(0))
        await trio.sleep(1)
        assert actor.statistics().state is ActorState.RUNNING
    assert trio.current_time() == pytest.approx(1 + 3)
    assert actor.state is ActorState.CANCELLED
    # Busy from taking job 0 at t=0 until cancelled.
    assert actor.statistics().busy_seconds == pytest.approx(4)


@pytest.mark.parametrize("ending", ["normal", "stop", "body error", "actor failure"])
@trio_test()
async def test_resources_close_after_the_actors_and_in_reverse(ending: str) -> None:
    log: list[str] = []
    system_ref: list[ActorSystem] = []

    @asynccontextmanager
    async def resource(name: str) -> AsyncIterator[str]:
        log.append(f"open {name}")
        try:
            yield name
        finally:
            # Runs shielded even when the system was cancelled, so it may still await.
            await trio.sleep(1)
            states = {actor.state for actor in system_ref[0].statistics().actors.values()}
            log.append(f"close {name} ({', '.join(sorted(states))})")

    async def fails_later(ctx: ActorContext) -> None:
        ctx.started()
        await trio.sleep(1)
        raise OSError("lost connection")

    async def run() -> None:
        async with open_actor_system() as system:
            system_ref.append(system)
            assert await system.enter_async_context(resource("server")) == "server"
            await system.enter_async_context(resource("executor"))
            await system.start_actor("idle", idle)
            if ending == "stop":
                system.stop()
                await trio.sleep_forever()
            elif ending == "body error":
                raise LookupError("body")
            elif ending == "actor failure":
                await system.start_actor("failing", fails_later)
                await trio.sleep_forever()

    if ending == "body error":
        with pytest.raises(LookupError):
            await run()
    elif ending == "actor failure":
        with pytest.raises(ActorFailed):
            await run()
    else:
        await run()
    final = "cancelled" if ending != "actor failure" else "cancelled, failed"
    assert log == [
        "open server",
        "open executor",
        f"close executor ({final})",
        f"close server ({final})",
    ]


@trio_test()
async def test_an_actor_can_stop_the_system() -> None:
    async with open_actor_system() as system:
        inbox = system.open_mailbox(Job, 4)

        async def worker(ctx: ActorContext) -> None:
            ctx.started()
            async for job in ctx.messages(inbox):
                if job.n == 2:
                    ctx.system.stop("job 2 says so")

        actor = await system.start_actor("worker", worker, mailboxes=[inbox])
        # No checkpoint in between: all four are queued before the worker sees job 2.
        for n in range(4):
            inbox.send_nowait(Job(n))
        await trio.sleep_forever()
        pytest.fail("stop() cancels the body")
    # The stop was graceful: job 3, queued behind job 2, was still handled.
    assert actor.statistics().messages_handled == 4
    assert actor.state is ActorState.STOPPED
    assert system.stop_reason == "job 2 says so"
    with pytest.raises(RuntimeError, match="stopping"):
        await system.start_actor("late", idle)


@trio_test()
async def test_cancel_stops_without_draining() -> None:
    async with open_actor_system(grace_period=100) as system:
        inbox = system.open_mailbox(Job, 4)

        async def worker(ctx: ActorContext) -> None:
            ctx.started()
            async for _ in ctx.messages(inbox):
                await trio.sleep(10)

        actor = await system.start_actor("worker", worker, mailboxes=[inbox])
        for n in range(3):
            await inbox.send(Job(n))
        system.cancel("abort")
        await trio.sleep_forever()
    assert trio.current_time() == pytest.approx(0)
    assert actor.state is ActorState.CANCELLED
    assert inbox.statistics().depth == 2
    assert system.stop_reason == "abort"


@trio_test()
async def test_an_actor_can_enter_a_resource_that_outlives_it() -> None:
    log: list[str] = []

    @asynccontextmanager
    async def resource() -> AsyncIterator[str]:
        log.append("open")
        yield "handle"
        log.append("close")

    async with open_actor_system() as system:

        async def opener(ctx: ActorContext) -> None:
            assert await ctx.system.enter_async_context(resource()) == "handle"
            ctx.started()

        actor = await system.start_actor("opener", opener)
        assert actor.state is ActorState.STOPPED
        assert log == ["open"]
    assert log == ["open", "close"]


@trio_test()
async def test_a_failing_or_cancelled_resource_entry_is_raised_to_the_caller() -> None:
    @asynccontextmanager
    async def broken() -> AsyncIterator[None]:
        raise FileNotFoundError("config")
        yield

    @asynccontextmanager
    async def slow() -> AsyncIterator[None]:
        await trio.sleep(100)
        yield

    async with open_actor_system() as system:
        with pytest.raises(FileNotFoundError, match="config"):
            await system.enter_async_context(broken())
        with trio.move_on_after(1) as scope:
            await system.enter_async_context(slow())
        assert scope.cancelled_caught
    assert trio.current_time() == pytest.approx(1)


@trio_test()
async def test_an_error_closing_a_resource_is_raised() -> None:
    @asynccontextmanager
    async def leaky() -> AsyncIterator[None]:
        yield
        raise OSError("could not flush")

    with pytest.raises(OSError, match="could not flush"):
        async with open_actor_system() as system:
            await system.enter_async_context(leaky())


@trio_test(timeout=10, mock_clock=False)
async def test_sigterm_stops_everything_in_order() -> None:
    handled: list[int] = []
    child = ChildProcessActor(["sleep", "60"], grace_period=2)

    async with open_actor_system(grace_period=5) as system:
        await system.stop_on_signals()
        inbox = system.open_mailbox(Job, 8)

        async def worker(ctx: ActorContext) -> None:
            ctx.started()
            async for job in ctx.messages(inbox):
                await trio.sleep(0.01)
                handled.append(job.n)

        await system.start_actor("server", child)
        assert child.process is not None
        pid = child.process.pid
        assert process_alive(pid)
        await system.start_actor("worker", worker, mailboxes=[inbox])
        for n in range(5):
            await inbox.send(Job(n))
        os.kill(os.getpid(), signal.SIGTERM)
        await trio.sleep_forever()
        pytest.fail("the signal stops the body")

    assert system.stop_reason == "signal SIGTERM"
    # The worker drained its queue; the server, started first, went last and took its child.
    assert handled == list(range(5))
    stats = system.statistics()
    assert stats.state is SystemState.STOPPED
    assert stats.actors["worker"].state is ActorState.STOPPED
    assert stats.actors["server"].state is ActorState.CANCELLED
    assert not process_alive(pid)


@trio_test(timeout=10, mock_clock=False)
async def test_a_second_signal_cancels_a_drain_in_progress() -> None:
    async with open_actor_system(grace_period=60) as system:
        await system.stop_on_signals(signal.SIGTERM)
        inbox = system.open_mailbox(Job, 4)

        async def nagger(ctx: ActorContext) -> None:
            ctx.started()
            while ctx.system.state is SystemState.RUNNING:
                await trio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)
            await trio.sleep_forever()

        async def stuck(ctx: ActorContext) -> None:
            ctx.started()
            async for _ in ctx.messages(inbox):
                await trio.sleep_forever()

        await system.start_actor("nagger", nagger)
        stuck_actor = await system.start_actor("stuck", stuck, mailboxes=[inbox])
        await inbox.send(Job(0))
        os.kill(os.getpid(), signal.SIGTERM)
        await trio.sleep_forever()

    # Well within the 60 s grace period (the test's deadline is 10 s).
    assert stuck_actor.state is ActorState.CANCELLED
    assert system.stop_reason == "signal SIGTERM"


@trio_test()
async def test_system_statistics_encode_to_json() -> None:
    async with open_actor_system() as system:
        inbox = system.open_mailbox(Job, 4, name="jobs")

        async def worker(ctx: ActorContext) -> None:
            ctx.started()
            async for _ in ctx.messages(inbox):
                await trio.sleep(1)

        await system.start_actor("worker", worker, mailboxes=[inbox], ready_timeout=5)
        await inbox.send(Job(1))
        await trio.sleep(0.5)
        stats = system.statistics()

    encoded = msgspec.json.encode(stats)
    assert msgspec.json.decode(encoded, type=SystemStatistics) == stats
    plain = msgspec.json.decode(encoded)
    assert plain["state"] == "running"
    assert plain["actors"]["worker"]["state"] == "running"
    assert plain["actors"]["worker"]["mailboxes"] == ["jobs"]
    assert plain["mailboxes"]["jobs"]["received"] == 1
    assert plain["uptime_seconds"] == pytest.approx(0.5)


@trio_test(timeout=100)
async def test_a_failure_during_the_drain_cancels_the_rest() -> None:
    drained: list[int] = []

    with pytest.raises(ActorFailed, match="'sulky' failed: RuntimeError: not now") as caught:
        async with open_actor_system(grace_period=50) as system:
            first = system.open_mailbox(Job, 4, name="first")
            last = system.open_mailbox(Job, 4, name="last")

            async def patient(ctx: ActorContext) -> None:
                ctx.started()
                async for job in ctx.messages(first):
                    await trio.sleep(10)
                    drained.append(job.n)

            async def sulky(ctx: ActorContext) -> None:
                ctx.started()
                async for _ in ctx.messages(last):
                    pass
                raise RuntimeError("not now")

            patient_actor = await system.start_actor("patient", patient, mailboxes=[first])
            await system.start_actor("sulky", sulky, mailboxes=[last])
            await first.send(Job(0))
            await first.send(Job(1))
    assert isinstance(caught.value.__cause__, RuntimeError)
    # "sulky" is drained first (newest first) and fails; "patient" is cancelled, not drained.
    assert drained == []
    assert patient_actor.state is ActorState.CANCELLED
    assert trio.current_time() == pytest.approx(0)
    assert system.state is SystemState.FAILED


@pytest.mark.parametrize("ending", ["stop", "actor failure"])
@trio_test()
async def test_resources_keep_running_until_the_actors_are_gone(ending: str) -> None:
    beats: list[float] = []
    log: list[str] = []

    @asynccontextmanager
    async def heartbeat() -> AsyncIterator[None]:
        async def beat() -> None:
            while True:
                beats.append(trio.current_time())
                await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(beat)
            yield
            log.append(f"heartbeat stopping at {trio.current_time():g}")
            nursery.cancel_scope.cancel()

    async def fails_at_3_5(ctx: ActorContext) -> None:
        ctx.started()
        await trio.sleep(3.5)
        raise OSError("gone")

    async def run() -> None:
        async with open_actor_system() as system:
            inbox = system.open_mailbox(Job, 1)

            async def worker(ctx: ActorContext) -> None:
                ctx.started()
                async for _ in ctx.messages(inbox):
                    await trio.sleep(5.5)

            await system.enter_async_context(heartbeat())
            await system.start_actor("worker", worker, mailboxes=[inbox])
            await inbox.send(Job(0))
            if ending == "stop":
                await trio.sleep(1)
                system.stop()
            else:
                await system.start_actor("fails", fails_at_3_5)
            await trio.sleep_forever()

    if ending == "stop":
        # The stop at t=1 drains the worker until t=5.5; the heartbeat beats on meanwhile.
        await run()
        assert beats == pytest.approx([0, 1, 2, 3, 4, 5])
        assert log == ["heartbeat stopping at 5.5"]
    else:
        # The failure cancels the worker at once, and then the resource closes.
        with pytest.raises(ActorFailed):
            await run()
        assert beats == pytest.approx([0, 1, 2, 3])
        assert log == ["heartbeat stopping at 3.5"]


def test_ctrl_c_without_signal_handling_still_tears_down() -> None:
    server = ChildProcessActor(["sleep", "60"])
    pids: list[int] = []

    async def main() -> None:
        with trio.fail_after(10):
            async with open_actor_system() as system:
                await system.start_actor("server", server)
                assert server.process is not None
                pids.append(server.process.pid)
                signal.raise_signal(signal.SIGINT)
                await trio.sleep_forever()

    with pytest.raises(KeyboardInterrupt):
        trio.run(main)
    assert pids
    assert not process_alive(pids[0])
