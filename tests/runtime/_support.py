"""Helpers shared by the runtime tests: running async tests under trio, and process checks."""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from typing import ParamSpec

import msgspec
import trio
import trio.testing

from azr.runtime import ActorContext

P = ParamSpec("P")


class Job(msgspec.Struct, frozen=True):
    n: int


class Result(msgspec.Struct, frozen=True):
    value: int


def trio_test(
    *, timeout: float = 10.0, mock_clock: bool = True
) -> Callable[[Callable[P, Awaitable[None]]], Callable[P, None]]:
    """Run an ``async def`` test with ``trio.run`` under ``trio.fail_after(timeout)``.

    With ``mock_clock`` (the default) time is virtual and jumps whenever every task is blocked,
    so sleeps cost nothing, timings are exact, and a deadlock fails at once instead of hanging.
    Tests that wait on real processes or signals need the real clock.
    """

    def decorate(test: Callable[P, Awaitable[None]]) -> Callable[P, None]:
        @functools.wraps(test)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            async def main() -> None:
                with trio.fail_after(timeout):
                    await test(*args, **kwargs)

            clock = trio.testing.MockClock(autojump_threshold=0) if mock_clock else None
            trio.run(main, clock=clock)

        return run

    return decorate


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie nobody has reaped yet counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def wait_until_gone(pid: int) -> None:
    """Wait for ``pid`` to die; a process killed by signal may take a moment to be torn down."""
    while process_alive(pid):
        await trio.sleep(0.01)


async def idle(ctx: ActorContext) -> None:
    """An actor that is ready at once and then does nothing until cancelled."""
    ctx.started()
    await trio.sleep_forever()
