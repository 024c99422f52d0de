"""OpenRLHF: reward rollouts with ``azr serve`` through ``--remote_rm_url`` (or in process).

OpenRLHF's remote reward client POSTs JSON ``{"query": [...], "prompts": [...], "labels":
[...]}`` to the URL given, where each query is the prompt and the response detokenised together
(special tokens kept), each prompt is the prompt text after the chat template, and each label is
the dataset's ``--label_key`` column. It reads ``rewards`` (trained on), ``scores`` (dynamic
filtering, logging) and ``extra_logs`` (logged) from the JSON reply. ``azr serve`` answers that
protocol at ``/get_reward``: the label is the task's JSON text, and the response is what follows
the prompt in the query.

1. Write the prompt data set (JSON lines) with :func:`dataset_rows`::

       from azr.adapters.openrlhf import write_jsonl
       write_jsonl("azr_prompts.jsonl", tasks)       # {"input": prompt, "label": task JSON}

2. Start the service, then point OpenRLHF at it::

       python -m azr.serve --host 0.0.0.0 --port 5000
       python -m openrlhf.cli.train_ppo_ray ... \\
           --data.prompt_dataset azr_prompts.jsonl --data.input_key input \\
           --data.label_key label --data.apply_chat_template \\
           --reward.remote_url http://HOST:5000/get_reward

   (releases before 0.10 spell these ``--prompt_data``, ``--input_key``, ``--label_key``,
   ``--apply_chat_template`` and ``--remote_rm_url``.)

OpenRLHF also takes a Python file as ``--remote_rm_url`` and calls its
``reward_func(queries, prompts, labels)`` in process; a file holding
``from azr.adapters.openrlhf import reward_func`` does that with the shared verifier.

Replies: ``rewards`` are the solver rewards (1 / -0.5 / -1 by default), ``scores`` are 1 for a
correct answer and 0 otherwise, and ``extra_logs`` holds per-query ``correct``, ``formatted``
(the response had the required shape) and ``scored`` (0 for ``internal``/``invalid_task``
verdicts, and for a query whose response cannot be found after its prompt; their reward is 0).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec

from azr.adapters._tasks import InvalidTask, decode_task, encode_task, response_from_query
from azr.adapters.plain import shared_verifier
from azr.tasks.prompts import solve_prompt
from azr.tasks.types import Outcome, Reason, SolveTask
from azr.verify import Verdict, Verifier

__all__ = [
    "REWARD_PATH",
    "Batch",
    "dataset_rows",
    "prepare",
    "reply",
    "reward_func",
    "write_jsonl",
]

REWARD_PATH: Final = "/get_reward"
"""The path ``azr serve`` answers OpenRLHF's remote reward protocol on (the one OpenRLHF's own
``serve_rm`` uses)."""

_UNLOCATED: Final = Verdict(
    correct=False,
    reward=0.0,
    reason=Reason.INVALID_TASK,
    detail="the response could not be located: the query does not contain its prompt",
)


def dataset_rows(
    tasks: Iterable[SolveTask], *, input_key: str = "input", label_key: str = "label"
) -> list[dict[str, str]]:
    """Prompt-dataset rows: the solver prompt under ``input_key`` (apply the chat template
    with ``--data.apply_chat_template``) and the task's JSON text under ``label_key``."""
    return [{input_key: solve_prompt(t), label_key: encode_task(t)} for t in tasks]


def write_jsonl(
    path: str | os.PathLike[str],
    tasks: Iterable[SolveTask],
    *,
    input_key: str = "input",
    label_key: str = "label",
) -> None:
    """Write :func:`dataset_rows` as JSON lines, the format ``--data.prompt_dataset`` reads."""
    encoder = msgspec.json.Encoder()
    with open(path, "wb") as out:
        for row in dataset_rows(tasks, input_key=input_key, label_key=label_key):
            out.write(encoder.encode(row) + b"\n")


class Batch(msgspec.Struct, frozen=True):
    """A request taken apart: the queries to check (``indices`` into the request, with their
    ``tasks`` and ``responses``) and the verdicts already decided without checking."""

    size: int
    indices: list[int]
    tasks: list[SolveTask]
    responses: list[str]
    decided: dict[int, Verdict]

    def merge(self, verdicts: Sequence[Verdict]) -> list[Verdict]:
        """All verdicts in request order, given those of ``tasks``/``responses``."""
        merged = dict(self.decided)
        merged.update(zip(self.indices, verdicts, strict=True))
        return [merged[i] for i in range(self.size)]


def prepare(
    queries: Sequence[str],
    prompts: Sequence[str] | None,
    labels: Sequence[object] | None,
) -> Batch:
    """Take a reward request apart. Raises ValueError (naming the first bad index) when labels
    are missing, lengths differ, or a label is not an azr task: all are set-up mistakes that no
    reward should paper over."""
    n = len(queries)
    if labels is None:
        raise ValueError(
            "labels are required: each is the task's JSON text (pass the dataset's task column "
            "with --data.label_key)"
        )
    if len(labels) != n or (prompts is not None and len(prompts) != n):
        got = f"{n} queries, {len(labels)} labels"
        if prompts is not None:
            got += f", {len(prompts)} prompts"
        raise ValueError(f"query, prompts and labels differ in length ({got})")
    indices: list[int] = []
    tasks: list[SolveTask] = []
    responses: list[str] = []
    decided: dict[int, Verdict] = {}
    for i in range(n):
        try:
            task = decode_task(labels[i])
        except InvalidTask as exc:
            raise ValueError(f"labels[{i}]: {exc}") from None
        response = response_from_query(queries[i], None if prompts is None else prompts[i])
        if response is None:
            decided[i] = _UNLOCATED
            continue
        indices.append(i)
        tasks.append(task)
        responses.append(response)
    return Batch(n, indices, tasks, responses, decided)


def reply(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """The reply fields OpenRLHF reads, as plain lists."""
    return {
        "rewards": [v.reward for v in verdicts],
        "scores": [float(v.correct) for v in verdicts],
        "extra_logs": {
            "correct": [float(v.correct) for v in verdicts],
            "formatted": [float(v.reason.outcome is not Outcome.FORMAT) for v in verdicts],
            "scored": [float(v.scored) for v in verdicts],
        },
    }


def reward_func(
    queries: Sequence[str],
    prompts: Sequence[str],
    labels: Sequence[object],
    *,
    verifier: Verifier | None = None,
) -> dict[str, Any]:
    """OpenRLHF's in-process custom reward function: the same reply as ``azr serve``, with
    torch tensors as OpenRLHF's examples return them."""
    import torch

    batch = prepare(queries, prompts, labels)
    checked = (verifier or shared_verifier()).score_response_batch(batch.tasks, batch.responses)
    fields = reply(batch.merge(checked))
    return {
        "rewards": torch.tensor(fields["rewards"], dtype=torch.float32),
        "scores": torch.tensor(fields["scores"], dtype=torch.float32),
        "extra_logs": {
            k: torch.tensor(v, dtype=torch.float32) for k, v in fields["extra_logs"].items()
        },
    }
