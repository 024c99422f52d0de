"""``azr train`` on several processes: torchrun starts the ranks, this decides what each runs.

``azr train --nproc N ...`` is a shortcut for ``torchrun --standalone --nproc-per-node N -m azr
train ...`` on this machine (it replaces itself with that command); across machines torchrun is
called directly, with ``--nnodes`` and a rendezvous endpoint (see the README). Under torchrun,
rank 0 runs the run exactly as one process would (output folder, actors, generation,
checkpoints) with its learner sharded, and every other rank follows its learner
(:mod:`azr.rl.follower`).

Stopping: torchrun passes a stop signal (SIGTERM, Ctrl-C) on to every rank, once. It starts
each rank in a session of its own, so Ctrl-C at a terminal (sent to the whole foreground
process group) reaches the ranks only through torchrun, never twice: a second signal is
"stop now" to rank 0, which would then skip the graceful stop (tested). Rank 0 stops the
run as in one process, finishing a checkpoint being written, and then releases the followers,
which do nothing on a signal themselves: a checkpoint's shards are written by all ranks
together. When a rank dies, torchrun stops the others and exits non-zero; a rank waiting on a
dead one fails at its next collective (``learner.distributed.timeout_s`` at most).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from azr.rl.distributed import launched

if TYPE_CHECKING:
    from azr.config import Config

__all__ = ["exec_torchrun", "launched", "run_rank", "torchrun_argv"]

_EXIT_FAILED = 1


def torchrun_argv(nproc: int, azr_args: Sequence[str]) -> list[str]:
    """The command that runs ``azr AZR_ARGS`` as ``nproc`` ranks on this machine (a free
    rendezvous port is picked by torchrun itself)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "azr",
        *azr_args,
    ]


def exec_torchrun(nproc: int, azr_args: Sequence[str]) -> NoReturn:
    """Replace this process with torchrun running ``azr AZR_ARGS`` on ``nproc`` ranks."""
    argv = torchrun_argv(nproc, azr_args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def run_rank(config: Config, leader: Callable[[], int]) -> int:
    """Join the torchrun job; rank 0 runs ``leader`` (the whole run) and then releases the
    others, which follow its learner until then. Returns the exit status."""
    from azr.rl.distributed import open_group
    from azr.rl.follower import follow

    with contextlib.ExitStack() as stack:
        try:
            group = stack.enter_context(open_group(config.learner))
        except RuntimeError as exc:  # the rendezvous or the backend failed
            print(f"azr: cannot join the learner group: {exc}", file=sys.stderr)
            return _EXIT_FAILED
        if not group.is_leader:
            try:
                follow(group)
            except Exception as exc:  # a peer died, or rank 0 failed in the middle of a collective
                print(f"azr: learner rank {group.rank}: {exc}", file=sys.stderr)
                return _EXIT_FAILED
            return 0
        try:
            return leader()
        finally:
            if not group.stop(timeout=config.learner.distributed.timeout_s):
                print("azr: the other learner ranks could not be told to stop", file=sys.stderr)
