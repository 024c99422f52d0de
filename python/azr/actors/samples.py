"""What of a step goes to ``samples.jsonl``: what people read when a run misbehaves.

The coordinator hands over, per task type and role, its first ``k`` responses in index order (so
the choice does not depend on timing); each becomes a :class:`SampleRecord` with its prompt (as
the prompt builders write it, without the turn template), response, extracted answer, reason
code and reward.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from azr.actors.messages import SampleRecord
from azr.tasks.parsing import extract_answer
from azr.tasks.prompts import propose_prompt, solve_prompt
from azr.tasks.types import ProposeRequest, Reason, SolveTask, TaskType

__all__ = ["SampleSource", "sample_records"]

Role = Literal["propose", "solve"]
SampleSource = tuple[TaskType, Role, ProposeRequest | SolveTask | None, str, Reason, float | None]
"""(task type, role, request or task, response text, reason code, reward or None)."""


def _prompt(source: ProposeRequest | SolveTask | None) -> str:
    if source is None:
        return ""
    if isinstance(source, ProposeRequest):
        return propose_prompt(source)
    return solve_prompt(source)


def sample_records(step: int, sources: Iterable[SampleSource]) -> tuple[SampleRecord, ...]:
    """One record per source, in order."""
    out = []
    for task_type, role, source, text, reason, reward in sources:
        answer = extract_answer(text)
        out.append(
            SampleRecord(
                step=step,
                stage=role,
                task_type=task_type,
                role=role,
                prompt=_prompt(source),
                response=text,
                answer=answer if isinstance(answer, str) else "",
                reason=reason,
                reward=reward,
            )
        )
    return tuple(out)
