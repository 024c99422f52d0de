"""A small actor runtime on trio: mailboxes, supervised actors, child processes, statistics.

It knows nothing about what the actors do. An actor is an async function run in a task of its own,
consuming typed, bounded mailboxes of msgspec Structs; an actor system supervises a set of them
under one nursery, so a failure anywhere stops everything and is reported by name::

    class Job(msgspec.Struct):
        n: int

    async def square(ctx: ActorContext, inbox: Mailbox[Job]) -> None:
        ctx.started()
        async for job in ctx.messages(inbox):
            print(job.n * job.n)

    async def main() -> None:
        async with open_actor_system(grace_period=5) as system:
            await system.stop_on_signals()
            inbox = system.open_mailbox(Job, capacity=16)
            await system.start_actor("square", partial(square, inbox=inbox), mailboxes=[inbox])
            for n in range(100):
                await inbox.send(Job(n))  # blocks while "square" is 16 jobs behind
        # leaving the block drained the mailbox, stopped the actor and closed every resource

A server the actors talk to runs as a supervised child process, kept up by an actor of its own
(started first, so that it is stopped last) and terminated with its whole process group on exit::

    async def healthy() -> bool:
        ...  # e.g. GET /health; False while the server is still coming up

    server = ChildProcessActor([sys.executable, "-m", "some.server"], ready=healthy)
    await system.start_actor("server", server, restart=RestartPolicy(max_restarts=2))

``open_actor_system`` documents the shutdown order.
"""

from ._actor import Actor as Actor
from ._actor import ActorContext as ActorContext
from ._actor import ActorRun as ActorRun
from ._actor import ActorState as ActorState
from ._actor import ActorStatistics as ActorStatistics
from ._actor import RestartPolicy as RestartPolicy
from ._errors import ActorFailed as ActorFailed
from ._errors import ActorSystemError as ActorSystemError
from ._errors import ChildProcessFailed as ChildProcessFailed
from ._mailbox import Mailbox as Mailbox
from ._mailbox import MailboxStatistics as MailboxStatistics
from ._mailbox import open_mailbox as open_mailbox
from ._process import ChildProcess as ChildProcess
from ._process import ChildProcessActor as ChildProcessActor
from ._process import ReadyCheck as ReadyCheck
from ._process import open_child_process as open_child_process
from ._system import ActorSystem as ActorSystem
from ._system import SystemState as SystemState
from ._system import SystemStatistics as SystemStatistics
from ._system import open_actor_system as open_actor_system

__all__ = [
    "Actor",
    "ActorContext",
    "ActorFailed",
    "ActorRun",
    "ActorState",
    "ActorStatistics",
    "ActorSystem",
    "ActorSystemError",
    "ChildProcess",
    "ChildProcessActor",
    "ChildProcessFailed",
    "Mailbox",
    "MailboxStatistics",
    "ReadyCheck",
    "RestartPolicy",
    "SystemState",
    "SystemStatistics",
    "open_actor_system",
    "open_child_process",
    "open_mailbox",
]
