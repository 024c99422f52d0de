"""Supervised child processes: readiness, termination of the whole group, restarts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from azr.errors import ConfigError
from azr.runtime import (
    ActorFailed,
    ActorState,
    ChildProcessActor,
    ChildProcessFailed,
    RestartPolicy,
    open_actor_system,
    open_child_process,
)

from ._support import process_alive, trio_test, wait_until_gone


class ReadyFile:
    """A readiness check: the child is ready once it has created ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        return self.path.exists()


def assert_reaped(pid: int) -> None:
    """``pid`` was our child, has exited and has been waited for."""
    assert not process_alive(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@trio_test(mock_clock=False)
async def test_a_cancelled_child_is_terminated_and_reaped() -> None:
    with trio.CancelScope() as scope:
        async with open_child_process(["sleep", "60"], grace_period=5) as child:
            pid = child.pid
            assert process_alive(pid)
            assert child.returncode is None
            scope.cancel()
            await trio.sleep_forever()
    assert child.returncode == -signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert_reaped(pid)


@trio_test(mock_clock=False)
async def test_the_whole_process_group_is_terminated(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {pid_file}.tmp && mv {pid_file}.tmp {pid_file}; wait"
    ready = ReadyFile(pid_file)
    async with open_child_process(["sh", "-c", script], ready=ready, poll_interval=0.01) as child:
        grandchild = int(pid_file.read_text())
        assert process_alive(grandchild)
        assert os.getpgid(grandchild) == child.pid
    assert ready.calls >= 1
    assert_reaped(child.pid)
    await wait_until_gone(grandchild)


@trio_test(mock_clock=False)
async def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    ready_file = tmp_path / "ready"
    script = f"trap '' TERM; touch {ready_file}; exec sleep 60"
    async with open_child_process(
        ["sh", "-c", script], ready=ReadyFile(ready_file), poll_interval=0.01, grace_period=0.2
    ) as child:
        pass
    assert child.returncode == -signal.SIGKILL


@trio_test(mock_clock=False)
async def test_a_child_exiting_before_it_is_ready_fails(tmp_path: Path) -> None:
    with pytest.raises(
        ChildProcessFailed, match="exited before it was ready \\(exit code 3\\)"
    ) as caught:
        async with open_child_process(
            ["sh", "-c", "exit 3"], name="quitter", ready=ReadyFile(tmp_path / "never")
        ):
            pytest.fail("never ready")
    assert (caught.value.name, caught.value.returncode) == ("quitter", 3)
    assert caught.value.pid is not None
    assert_reaped(caught.value.pid)


@trio_test(mock_clock=False)
async def test_a_child_not_ready_in_time_fails_and_is_terminated(tmp_path: Path) -> None:
    with pytest.raises(ChildProcessFailed, match=r"'sleeper' was not ready within 0\.2s") as caught:
        async with open_child_process(
            ["sleep", "60"],
            name="sleeper",
            ready=ReadyFile(tmp_path / "never"),
            ready_timeout=0.2,
            poll_interval=0.01,
        ):
            pytest.fail("never ready")
    assert caught.value.returncode is None
    assert caught.value.pid is not None
    assert_reaped(caught.value.pid)


@trio_test(mock_clock=False)
async def test_an_error_in_the_readiness_check_still_terminates_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"echo $$ > {pid_file}.tmp && mv {pid_file}.tmp {pid_file}; exec sleep 60"

    async def broken_check() -> bool:
        while not pid_file.exists():
            await trio.sleep(0.01)
        raise ConnectionRefusedError("health endpoint")

    with pytest.raises(ConnectionRefusedError):
        async with open_child_process(["sh", "-c", script], ready=broken_check):
            pytest.fail("never ready")
    assert_reaped(int(pid_file.read_text()))


@trio_test()
async def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ConfigError):
        async with open_child_process([]):
            pass
    with pytest.raises(ConfigError):
        async with open_child_process(["true"], grace_period=-1):
            pass


@trio_test(mock_clock=False)
async def test_a_child_process_actor_restarts_a_crashed_child_then_escalates() -> None:
    crashing = ChildProcessActor(["sh", "-c", "sleep 0.05; exit 7"])
    with pytest.raises(ActorFailed) as caught:
        async with open_actor_system() as system:
            await system.start_actor(
                "server", crashing, restart=RestartPolicy(max_restarts=2, backoff=0.01)
            )
            await trio.sleep_forever()
    error = caught.value
    assert error.actor == "server"
    assert isinstance(error.__cause__, ChildProcessFailed)
    assert error.__cause__.returncode == 7
    assert "child process 'server' exited unexpectedly (exit code 7)" in str(error)
    assert system.statistics().actors["server"].restarts == 2


@trio_test(mock_clock=False)
async def test_a_child_process_actor_is_ready_when_its_child_is(tmp_path: Path) -> None:
    ready_file = tmp_path / "ready"
    server = ChildProcessActor(
        ["sh", "-c", f"sleep 0.1; touch {ready_file}; exec sleep 60"],
        ready=ReadyFile(ready_file),
        poll_interval=0.01,
    )
    async with open_actor_system() as system:
        actor = await system.start_actor("server", server)
        assert ready_file.exists()
        assert actor.state is ActorState.RUNNING
        assert server.process is not None
        pid = server.process.pid
        assert process_alive(pid)
    assert server.process is None
    assert actor.state is ActorState.CANCELLED
    assert_reaped(pid)
