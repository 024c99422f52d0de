"""Errors raised by the actor runtime."""

from __future__ import annotations

from azr.errors import AzrError

__all__ = ["ActorFailed", "ActorSystemError", "ChildProcessFailed"]


class ActorSystemError(AzrError):
    """Base class of the errors the actor runtime raises deliberately."""


class ActorFailed(ActorSystemError):
    """An actor raised, or could not start; the original exception is the ``__cause__``.

    ``actor`` names the actor. Raised out of ``open_actor_system`` when a running actor fails (the
    whole system has been cancelled by then) and out of ``ActorSystem.start_actor`` when an actor
    fails before signalling that it is ready.
    """

    def __init__(self, actor: str, message: str) -> None:
        super().__init__(message)
        self.actor = actor

    def __reduce__(self) -> tuple[type[ActorFailed], tuple[str, str]]:
        # The default reduction replays ``args`` (the message only), which __init__ cannot accept.
        return (type(self), (self.actor, str(self)))


class ChildProcessFailed(ActorSystemError):
    """A supervised child process exited, or did not become ready in time.

    ``returncode`` is the exit status when the child has exited (negative: killed by that signal),
    ``None`` when it was still running. ``pid`` is the child's process id.
    """

    def __init__(
        self, name: str, message: str, returncode: int | None = None, pid: int | None = None
    ) -> None:
        super().__init__(message)
        self.name = name
        self.returncode = returncode
        self.pid = pid

    def __reduce__(
        self,
    ) -> tuple[type[ChildProcessFailed], tuple[str, str, int | None, int | None]]:
        return (type(self), (self.name, str(self), self.returncode, self.pid))
