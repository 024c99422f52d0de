"""A veRL custom reward function: ``compute_score(data_source, solution_str, ground_truth,
extra_info)``.

veRL decodes each response (special tokens skipped) and calls the configured function with the
row's ``data_source``, the response text, ``reward_model.ground_truth`` and ``extra_info``; a
dict result must hold ``score`` (the reward), and its other keys are logged. The batch reward
manager calls the plural form with parallel lists (:func:`compute_score_batch`).

Point veRL at it by package path, or by the file path of this module::

    python -m verl.trainer.main_ppo \\
        data.train_files=azr_train.parquet data.val_files=azr_val.parquet \\
        reward.custom_reward_function.path=pkg://azr.adapters.verl \\
        reward.custom_reward_function.name=compute_score ...

(older veRL releases: ``custom_reward_function.path=$(python -c "import azr.adapters.verl as m;
print(m.__file__)")``). Rows come from :func:`make_row`::

    import pandas as pd
    from azr.adapters.verl import make_row
    rows = [make_row(task, index=i) for i, task in enumerate(tasks)]
    pd.DataFrame(rows).to_parquet("azr_train.parquet")

Rows whose ``data_source`` is neither ``azr`` nor ``azr/<anything>`` go to veRL's own
``default_compute_score``, so azr tasks can be mixed with veRL's built-in data sets.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Final

from azr.adapters._tasks import decode_task, encode_task
from azr.adapters.plain import shared_verifier
from azr.tasks.prompts import solve_prompt
from azr.tasks.types import SolveTask
from azr.verify import Verdict, Verifier

__all__ = [
    "DATA_SOURCE",
    "compute_score",
    "compute_score_batch",
    "is_azr_source",
    "make_row",
]

DATA_SOURCE: Final = "azr"


def is_azr_source(data_source: object) -> bool:
    """Whether rows of ``data_source`` are azr tasks (``azr`` or ``azr/<split or type>``)."""
    return isinstance(data_source, str) and (
        data_source == DATA_SOURCE or data_source.startswith(DATA_SOURCE + "/")
    )


def make_row(
    task: SolveTask,
    *,
    index: int = 0,
    split: str = "train",
    data_source: str = DATA_SOURCE,
) -> dict[str, Any]:
    """One veRL RL-dataset row (the layout of veRL's example preprocessing scripts): a chat
    ``prompt``, ``reward_model.ground_truth`` holding the task's JSON text."""
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": solve_prompt(task)}],
        "ability": "code",
        "reward_model": {"style": "rule", "ground_truth": encode_task(task)},
        "extra_info": {"split": split, "index": index, "task_type": task.task_type.value},
    }


def _result(verdict: Verdict) -> dict[str, float]:
    # Every row gets the same keys: veRL gathers each key into one column per batch.
    return {
        "score": verdict.reward,
        "acc": float(verdict.correct),
        "scored": float(verdict.scored),
    }


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    *,
    verifier: Verifier | None = None,
    **kwargs: Any,
) -> dict[str, float] | float:
    """veRL's per-response reward: ``{"score": reward, "acc": 0 or 1, "scored": 0 or 1}``.

    ``ground_truth`` is the task (its JSON text from :func:`make_row`, or the decoded mapping).
    ``scored`` is 0 for verdicts that say nothing about the model (``internal``,
    ``invalid_task``), whose score is 0. Extra keywords (``reward_kwargs`` in the veRL config,
    and what newer veRL passes along) are accepted and ignored.
    """
    if not is_azr_source(data_source):
        return _default_compute_score(data_source, solution_str, ground_truth, extra_info)
    task = decode_task(ground_truth)
    return _result((verifier or shared_verifier()).score_response(task, solution_str))


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[dict[str, Any] | None] | None = None,
    *,
    verifier: Verifier | None = None,
    **kwargs: Any,
) -> list[dict[str, float] | float]:
    """:func:`compute_score` over parallel lists (veRL's ``batch`` reward manager), checking
    all azr rows in one executor batch."""
    n = len(solution_strs)
    if len(data_sources) != n or len(ground_truths) != n:
        raise ValueError("data_sources, solution_strs and ground_truths differ in length")
    infos: Sequence[dict[str, Any] | None] = extra_infos if extra_infos is not None else [None] * n
    ours = [i for i in range(n) if is_azr_source(data_sources[i])]
    verdicts = (verifier or shared_verifier()).score_response_batch(
        [decode_task(ground_truths[i]) for i in ours], [solution_strs[i] for i in ours]
    )
    results: list[dict[str, float] | float | None] = [None] * n
    for i, verdict in zip(ours, verdicts, strict=True):
        results[i] = _result(verdict)
    for i in range(n):
        if results[i] is None:
            results[i] = _default_compute_score(
                data_sources[i], solution_strs[i], ground_truths[i], infos[i]
            )
    return [r for r in results if r is not None]


def _default_compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None
) -> dict[str, float] | float:
    # Imported by name at call time: veRL is the caller's dependency, not azr's.
    try:
        module = importlib.import_module("verl.utils.reward_score")
    except ImportError:
        raise ValueError(
            f"data source {data_source!r} is not an azr task ('azr' or 'azr/...'), and veRL's "
            "default_compute_score is not importable to score it"
        ) from None
    score: dict[str, float] | float = module.default_compute_score(
        data_source, solution_str, ground_truth, extra_info
    )
    return score
