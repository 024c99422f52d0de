"""veRL: ``compute_score`` as veRL calls it, loaded the ways veRL loads it."""

from __future__ import annotations

import importlib
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import pytest

import azr.adapters.verl as verl_adapter
from azr.adapters.verl import compute_score, compute_score_batch, make_row
from azr.tasks import AbductionTask, DeductionTask, solve_prompt

TASK = DeductionTask(program="def f(s):\n    return s[::-1]", input="'ab'", output="'ba'")
ABDUCTION = AbductionTask(program="def f(x):\n    return x * 2", input="21", output="42")
RIGHT = "<think>reverse</think><answer>'ba'</answer>"


def call_like_verl(fn: Any, row: dict[str, Any], response: str) -> Any:
    """What veRL's naive reward manager does with a row and a decoded response."""
    extra_info = dict(row["extra_info"])
    extra_info["num_turns"] = None
    extra_info["rollout_reward_scores"] = {}
    return fn(
        data_source=row["data_source"],
        solution_str=response,
        ground_truth=row["reward_model"]["ground_truth"],
        extra_info=extra_info,
    )


def test_make_row_and_compute_score() -> None:
    row = make_row(TASK, index=7)
    assert row["prompt"] == [{"role": "user", "content": solve_prompt(TASK)}]
    assert row["extra_info"] == {"split": "train", "index": 7, "task_type": "deduction"}
    # Rows survive a Parquet-like round trip as plain data.
    row = msgspec.json.decode(msgspec.json.encode(row))
    assert call_like_verl(compute_score, row, RIGHT) == {"score": 1.0, "acc": 1.0, "scored": 1.0}
    assert call_like_verl(compute_score, row, "'ba'") == {"score": -1.0, "acc": 0.0, "scored": 1.0}
    wrong = "<think>x</think><answer>'ab'</answer>"
    assert call_like_verl(compute_score, row, wrong)["score"] == -0.5
    # reward_kwargs from the veRL config arrive as keywords.
    assert (
        compute_score("azr/val", RIGHT, row["reward_model"]["ground_truth"], None, x=1)["acc"]
        == 1.0
    )


def test_batch_form_and_threads() -> None:
    rows = [make_row(TASK), make_row(ABDUCTION), make_row(TASK)]
    got = compute_score_batch(
        data_sources=[r["data_source"] for r in rows],
        solution_strs=[RIGHT, "<think>x</think><answer>21</answer>", "nope"],
        ground_truths=[r["reward_model"]["ground_truth"] for r in rows],
        extra_infos=[r["extra_info"] for r in rows],
    )
    assert [g["score"] for g in got] == [1.0, 1.0, -1.0]  # type: ignore[index]
    # veRL's reward loop runs a synchronous compute_score in a thread pool.
    row = make_row(TASK)
    with ThreadPoolExecutor(8) as pool:
        scores = list(
            pool.map(
                lambda n: call_like_verl(compute_score, row, RIGHT if n % 2 else "x"), range(32)
            )
        )
    assert [s["score"] for s in scores] == [-1.0 if n % 2 == 0 else 1.0 for n in range(32)]


def test_other_data_sources_go_to_verl() -> None:
    if importlib.util.find_spec("verl") is None:
        with pytest.raises(ValueError, match="not an azr task"):
            compute_score("openai/gsm8k", "#### 4", "4", None)
    else:  # pragma: no cover - only where veRL is installed
        assert compute_score("openai/gsm8k", "#### 4", "4", None) == 1.0


def test_loaded_by_file_path_like_verl() -> None:
    # veRL's custom_reward_function.path may be a file; it is executed as a fresh module.
    path = verl_adapter.__file__
    spec = importlib.util.spec_from_file_location("custom_module_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert call_like_verl(module.compute_score, make_row(TASK), RIGHT)["score"] == 1.0
    # ... or pkg://azr.adapters.verl, imported by name.
    by_name = importlib.import_module("azr.adapters.verl")
    assert by_name.compute_score is compute_score
