"""A reward function for TRL's ``GRPOTrainer`` (and the other TRL trainers that take
``reward_funcs``).

TRL calls each reward function with ``prompts``, ``completions`` and ``completion_ids`` as
keywords, plus every other dataset column as a keyword holding one value per completion, and
expects one float per completion back (None for "no reward from this function"). The task a
completion answers travels in a dataset column (``task`` by default) as the JSON text that
:func:`dataset_rows` writes.

Example::

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    from azr.adapters.trl import AzrReward, dataset_rows
    from azr.tasks import DeductionTask

    tasks = [DeductionTask(program="def f(x):\\n    return x * 2", input="21", output="42")]
    dataset = Dataset.from_list(dataset_rows(tasks))      # columns: prompt, task
    reward = AzrReward()                                  # one verifier, batched per call
    trainer = GRPOTrainer(
        model="Qwen/Qwen2.5-0.5B-Instruct",
        reward_funcs=reward,
        args=GRPOConfig(output_dir="out", num_generations=8),
        train_dataset=dataset,
    )
    trainer.train()

Each call checks the whole batch of completions in one executor batch (identical answers to
the same task run once). Completions that say nothing about the model (``internal``,
``invalid_task``) get None, which TRL leaves out of the group statistics.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from azr.adapters._tasks import completion_text, decode_task, encode_task
from azr.adapters.plain import shared_verifier
from azr.tasks.prompts import solve_prompt
from azr.tasks.types import Outcome, SolveTask
from azr.verify import Verdict, Verifier

__all__ = ["AzrReward", "dataset_rows"]


def dataset_rows(
    tasks: Iterable[SolveTask], *, conversational: bool = False, task_key: str = "task"
) -> list[dict[str, Any]]:
    """Rows for a TRL prompt dataset: ``prompt`` (the solver prompt; a one-message chat when
    ``conversational``, so TRL applies the model's chat template) and ``task_key``."""
    rows: list[dict[str, Any]] = []
    for task in tasks:
        text = solve_prompt(task)
        prompt: object = [{"role": "user", "content": text}] if conversational else text
        rows.append({"prompt": prompt, task_key: encode_task(task)})
    return rows


class AzrReward:
    """A TRL reward function over the azr verifier (see the module docstring).

    Args:
        verifier: the verifier to check with; by default the process-wide
            :func:`~azr.adapters.plain.shared_verifier`, started on first call.
        task_key: the dataset column holding each completion's task.
        name: the name TRL logs the reward under (``rewards/<name>/mean``).
        log_metrics: also log the fraction of correct and of well-formed completions
            (``azr/correct``, ``azr/formatted``) through TRL's ``log_metric`` hook.
        tokenizer: when given, each completion is decoded again from its ``completion_ids``
            with special tokens kept. TRL decodes completions with special tokens skipped,
            which deletes the ``<think>``/``<answer>`` tags of a vocabulary that makes them
            special tokens (azr's byte-level tokenizer does); text after ``</answer>``, such
            as an end-of-sequence token, is ignored when the response is parsed.
    """

    def __init__(
        self,
        verifier: Verifier | None = None,
        *,
        task_key: str = "task",
        name: str = "azr",
        log_metrics: bool = True,
        tokenizer: Any = None,
    ) -> None:
        self._verifier = verifier
        self.tokenizer = tokenizer
        self._lock = threading.Lock()
        self.task_key = task_key
        self.log_metrics = log_metrics
        # TRL names a callable by its __name__, falling back to the class name.
        self.__name__ = name

    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            with self._lock:
                if self._verifier is None:
                    self._verifier = shared_verifier()
        return self._verifier

    def verdicts(self, completions: Sequence[object], tasks: Sequence[object]) -> list[Verdict]:
        """The verdict on each completion (text or conversation) to its task (any form
        :func:`~azr.adapters.decode_task` accepts)."""
        if len(completions) != len(tasks):
            raise ValueError(f"{len(completions)} completions but {len(tasks)} tasks")
        decoded = [decode_task(t) for t in tasks]
        responses = [completion_text(c) for c in completions]
        return self.verifier.score_response_batch(decoded, responses)

    def __call__(
        self,
        prompts: Sequence[object] | None = None,
        completions: Sequence[object] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        if completions is None:
            raise TypeError("a reward function is called with completions=")
        if self.task_key not in columns:
            present = sorted(k for k in columns if not callable(columns[k]))
            raise KeyError(
                f"the dataset has no {self.task_key!r} column (columns passed: {present}); "
                "build it with azr.adapters.trl.dataset_rows"
            )
        if self.tokenizer is not None and completion_ids is not None:
            completions = [
                self.tokenizer.decode(list(ids), skip_special_tokens=False)
                for ids in completion_ids
            ]
        verdicts = self.verdicts(completions, columns[self.task_key])
        log_metric = columns.get("log_metric")
        if self.log_metrics and verdicts and callable(log_metric):
            _log(log_metric, verdicts)
        return [v.reward if v.scored else None for v in verdicts]

    def __getstate__(self) -> Mapping[str, object]:
        # Picklable for trainers that ship reward functions to other processes: the verifier's
        # worker pool cannot travel, so the copy uses its own process's shared verifier.
        state = dict(self.__dict__)
        state["_verifier"] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: Mapping[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _log(log_metric: Callable[[str, float], object], verdicts: Sequence[Verdict]) -> None:
    scored = [v for v in verdicts if v.scored]
    if not scored:
        return
    log_metric("azr/correct", sum(v.correct for v in scored) / len(scored))
    formatted = sum(v.reason.outcome is not Outcome.FORMAT for v in scored)
    log_metric("azr/formatted", formatted / len(scored))
