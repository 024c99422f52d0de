"""OpenRLHF: prompt data sets and labels, and the in-process ``reward_func`` form."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from azr.adapters import decode_task
from azr.adapters.openrlhf import dataset_rows, prepare, reward_func, write_jsonl
from azr.models.tokenizer import build_byte_tokenizer
from azr.tasks import DeductionTask, InductionTask, IOPair, solve_prompt

TASK = DeductionTask(program="def f(s):\n    return s[::-1]", input="'ab'", output="'ba'")
INDUCTION = InductionTask(
    program="def f(x):\n    return x + 1",
    message="adds one",
    shown=(IOPair("1", "2"),),
    hidden=(IOPair("5", "6"),),
)


def test_prompt_dataset_file(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, [TASK, INDUCTION])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == dataset_rows([TASK, INDUCTION])
    assert rows[0]["input"] == solve_prompt(TASK)
    assert [decode_task(r["label"]) for r in rows] == [TASK, INDUCTION]


def test_reward_func_on_queries_decoded_like_openrlhf(tmp_path: Path) -> None:
    tokenizer = build_byte_tokenizer()
    prompt = f"<|user|>{solve_prompt(TASK)}<|end|><|assistant|>"
    responses = [
        "<think>reverse it</think><answer>'ba'</answer>",
        "<think>hmm</think><answer>'ab'</answer>",
        "'ba'",
    ]
    # OpenRLHF decodes prompt and response ids together, special tokens kept.
    queries = [
        tokenizer.decode(
            tokenizer.encode(prompt, add_special_tokens=False)
            + tokenizer.encode(r, add_special_tokens=False)
            + [tokenizer.eos_token_id],
            skip_special_tokens=False,
        )
        for r in responses
    ]
    label = dataset_rows([TASK])[0]["label"]
    # OpenRLHF loads a Python file given as --remote_rm_url and calls its reward_func.
    module_file = tmp_path / "azr_reward.py"
    module_file.write_text("from azr.adapters.openrlhf import reward_func\n")
    spec = importlib.util.spec_from_file_location("reward_func", module_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.reward_func is reward_func

    out = module.reward_func(queries, [prompt] * 3, [label] * 3)
    assert torch.equal(out["rewards"], torch.tensor([1.0, -0.5, -1.0]))
    assert torch.equal(out["scores"], torch.tensor([1.0, 0.0, 0.0]))
    assert set(out["extra_logs"]) == {"correct", "formatted", "scored"}
    assert out["extra_logs"]["formatted"].tolist() == [1.0, 1.0, 0.0]


def test_prepare_rejects_setup_mistakes() -> None:
    with pytest.raises(ValueError, match="labels are required"):
        prepare(["q"], ["p"], None)
    with pytest.raises(ValueError, match="differ in length"):
        prepare(["q", "r"], ["p"], ["", ""])
    with pytest.raises(ValueError, match=r"labels\[0\]"):
        prepare(["q"], ["p"], [""])
    batch = prepare(["pX", "zz"], ["p", "p"], [TASK, TASK])
    assert batch.responses == ["X"] and list(batch.decided) == [1]
    assert not batch.decided[1].scored
