"""Supervised child processes: spawn, wait until ready, and always terminate the whole group.

The child runs in a session (and so a process group) of its own. That keeps a terminal's Ctrl-C,
which goes to the foreground process group, away from it, so that the parent decides how it stops;
and it lets the parent signal everything the child spawned at once, which matters for servers that
fork workers of their own. On exit from :func:`open_child_process`, whatever the reason, the group
gets SIGTERM, then SIGKILL if the leader has not exited after ``grace_period`` seconds, and the
leader is reaped, so no child outlives the block.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import IO, NoReturn

import trio

from azr.errors import ConfigError

from ._actor import ActorContext
from ._errors import ChildProcessFailed

__all__ = ["ChildProcess", "ChildProcessActor", "ReadyCheck", "open_child_process"]

ReadyCheck = Callable[[], Awaitable[bool]]
"""Returns whether the child is ready (e.g. a health endpoint answered); False to poll again."""

Output = int | IO[bytes] | IO[str] | None
"""Where a child's output goes: inherited (None), ``subprocess.DEVNULL`` or a file."""


class ChildProcess:
    """A running child started by :func:`open_child_process`."""

    def __init__(self, name: str, command: tuple[str, ...], process: trio.Process) -> None:
        self._name = name
        self._command = command
        self._process = process

    @property
    def name(self) -> str:
        """The name errors report the child under."""
        return self._name

    @property
    def command(self) -> tuple[str, ...]:
        """The command line the child was started with."""
        return self._command

    @property
    def pid(self) -> int:
        """The child's process id, which is also its process group id."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the child has exited (negative: killed by that signal)."""
        return self._process.returncode

    def __repr__(self) -> str:
        return f"<ChildProcess {self._name!r} pid {self.pid}, {_status(self.returncode)}>"

    async def wait(self) -> int:
        """Wait for the child to exit and return its exit status."""
        return await self._process.wait()

    async def watch(self) -> NoReturn:
        """Wait for the child to exit, then raise :class:`ChildProcessFailed`.

        For an actor that keeps a child up: any exit while it is wanted is a failure, which the
        actor's restart policy can then deal with.
        """
        code = await self._process.wait()
        raise ChildProcessFailed(
            self._name,
            f"child process {self._name!r} exited unexpectedly ({_status(code)})",
            code,
            self.pid,
        )


@asynccontextmanager
async def open_child_process(
    command: Sequence[str],
    *,
    name: str | None = None,
    ready: ReadyCheck | None = None,
    ready_timeout: float = 60.0,
    poll_interval: float = 0.5,
    grace_period: float = 5.0,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: Output = None,
    stderr: Output = None,
) -> AsyncIterator[ChildProcess]:
    """Run ``command`` as a supervised child for the duration of the ``async with`` block.

    With ``ready``, entering the block waits until ``await ready()`` returns True, calling it
    every ``poll_interval`` seconds; it should return False, not raise, while the child is still
    coming up (exceptions propagate). Raises :class:`ChildProcessFailed` if the child exits first
    or is not ready within ``ready_timeout`` seconds. The child's stdin is /dev/null; its output
    is inherited unless redirected. Leaving the block (normally, by an error or by cancellation)
    terminates the child's whole process group, see the module documentation.
    """
    argv = tuple(command)
    if not argv:
        raise ConfigError("a child process needs a command")
    for label, value in (
        ("ready_timeout", ready_timeout),
        ("poll_interval", poll_interval),
        ("grace_period", grace_period),
    ):
        if not 0 <= value < math.inf:
            raise ConfigError(f"{label} must be a finite number >= 0, not {value!r}")
    label = name if name is not None else os.path.basename(argv[0])
    process = await trio.lowlevel.open_process(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    # Nothing may await between the spawn and this try, or a cancellation could leak the child.
    try:
        child = ChildProcess(label, argv, process)
        if ready is not None:
            await _wait_ready(child, ready, ready_timeout, poll_interval)
        yield child
    finally:
        await _terminate(process, grace_period)


async def _wait_ready(
    child: ChildProcess, ready: ReadyCheck, timeout: float, poll_interval: float
) -> None:
    with trio.move_on_after(timeout):
        while True:
            _raise_if_exited(child, "before it was ready")
            if await ready():
                # A health check can be answered by a stale server on the same port while ours
                # died on start-up; believe it only if our child is still alive.
                _raise_if_exited(child, "before it was ready")
                return
            with trio.move_on_after(poll_interval):
                await child.wait()
    _raise_if_exited(child, "before it was ready")
    raise ChildProcessFailed(
        child.name,
        f"child process {child.name!r} was not ready within {timeout:g}s",
        None,
        child.pid,
    )


def _raise_if_exited(child: ChildProcess, when: str) -> None:
    code = child.returncode
    if code is not None:
        raise ChildProcessFailed(
            child.name,
            f"child process {child.name!r} exited {when} ({_status(code)})",
            code,
            child.pid,
        )


async def _terminate(process: trio.Process, grace_period: float) -> None:
    # Shielded: this runs on the way out of cancellations too, and must not leave the child.
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            with trio.move_on_after(grace_period):
                await process.wait()
        # Sweep the group even when the leader has gone: what it forked may still be there, and
        # while any member is, the group id cannot have been reused.
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    # No member left, or (for an empty group whose id was reused) not ours to signal.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _status(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class ChildProcessActor:
    """An actor run that keeps one child process up; start it with ``system.start_actor``.

    Each run starts the child, waits for ``ready``, calls ``ctx.started()`` and then fails with
    :class:`ChildProcessFailed` if the child exits; give the actor a ``RestartPolicy`` to start
    a fresh child instead of failing the system. Stopping or cancelling the actor terminates the
    child. The arguments are those of :func:`open_child_process`; ``name`` defaults to the actor's.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str | None = None,
        ready: ReadyCheck | None = None,
        ready_timeout: float = 60.0,
        poll_interval: float = 0.5,
        grace_period: float = 5.0,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stdout: Output = None,
        stderr: Output = None,
    ) -> None:
        self._command = tuple(command)
        self._name = name
        self._ready = ready
        self._ready_timeout = ready_timeout
        self._poll_interval = poll_interval
        self._grace_period = grace_period
        self._env = env
        self._cwd = cwd
        self._stdout = stdout
        self._stderr = stderr
        self._process: ChildProcess | None = None

    @property
    def process(self) -> ChildProcess | None:
        """The current child, or None between runs."""
        return self._process

    async def __call__(self, ctx: ActorContext) -> None:
        """Run one child until it exits (a failure) or the actor is stopped."""
        async with open_child_process(
            self._command,
            name=self._name if self._name is not None else ctx.name,
            ready=self._ready,
            ready_timeout=self._ready_timeout,
            poll_interval=self._poll_interval,
            grace_period=self._grace_period,
            env=self._env,
            cwd=self._cwd,
            stdout=self._stdout,
            stderr=self._stderr,
        ) as child:
            self._process = child
            try:
                ctx.started()
                await child.watch()
            finally:
                self._process = None
