"""Score solver responses from plain Python, with one verifier shared by the whole process.

Example::

    from azr.adapters.plain import score, score_batch
    from azr.tasks import DeductionTask, solve_prompt

    task = DeductionTask(program="def f(s):\\n    return s[::-1]", input="'ab'", output="'ba'")
    prompt = solve_prompt(task)                     # what the model is asked
    verdict = score(task, "<think>reversed</think><answer>'ba'</answer>")
    verdict.correct, verdict.reward, verdict.reason  # (True, 1.0, <Reason.OK: 'ok'>)

Trainers load reward functions by module path and call them with no way to hand over an
object, so the adapters default to :func:`shared_verifier`: created on first use, one per
process (a forked child makes its own, since the executor's worker pool belongs to the parent),
safe to use from several threads at once, closed at interpreter exit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import NamedTuple

from azr.executor import Limits
from azr.rewards import DEFAULT_REWARDS, RewardConfig
from azr.tasks.checking import DEFAULT_CHECKS, CheckConfig
from azr.tasks.types import SolveTask
from azr.verify import Verdict, Verifier

__all__ = ["configure_shared_verifier", "rewards", "score", "score_batch", "shared_verifier"]

_lock = threading.Lock()
_shared: tuple[int, Verifier] | None = None


class _Settings(NamedTuple):
    workers: int | None = None
    limits: Limits | None = None
    checks: CheckConfig = DEFAULT_CHECKS
    rewards: RewardConfig = DEFAULT_REWARDS


_settings = _Settings()


def configure_shared_verifier(
    *,
    workers: int | None = None,
    limits: Limits | None = None,
    checks: CheckConfig = DEFAULT_CHECKS,
    rewards: RewardConfig = DEFAULT_REWARDS,
) -> None:
    """Set how :func:`shared_verifier` builds its verifier. Call before its first use."""
    global _settings
    with _lock:
        if _shared is not None and _shared[0] == os.getpid():
            raise RuntimeError("the shared verifier is already running; configure it earlier")
        _settings = _Settings(workers, limits, checks, rewards)


def shared_verifier() -> Verifier:
    """This process's verifier, started on first call."""
    global _shared
    pid = os.getpid()
    current = _shared
    if current is not None and current[0] == pid:
        return current[1]
    with _lock:
        if _shared is None or _shared[0] != pid:
            # A parent's verifier is left alone: its worker pool is the parent's to close.
            s = _settings
            verifier = Verifier(
                workers=s.workers, limits=s.limits, checks=s.checks, rewards=s.rewards
            )
            _shared = (pid, verifier)
        return _shared[1]


def score(task: SolveTask, response: str, *, verifier: Verifier | None = None) -> Verdict:
    """The verdict on one full solver ``response`` to ``task``."""
    return (verifier or shared_verifier()).score_response(task, response)


def score_batch(
    tasks: Sequence[SolveTask], responses: Sequence[str], *, verifier: Verifier | None = None
) -> list[Verdict]:
    """Verdicts on parallel lists of tasks and responses, checked as one executor batch."""
    return (verifier or shared_verifier()).score_response_batch(tasks, responses)


def rewards(
    tasks: Sequence[SolveTask], responses: Sequence[str], *, verifier: Verifier | None = None
) -> list[float | None]:
    """Solver rewards, None where the verdict says nothing about the model (``internal``,
    ``invalid_task``): drop or retry those samples rather than train on them."""
    return [
        v.reward if v.scored else None for v in score_batch(tasks, responses, verifier=verifier)
    ]
