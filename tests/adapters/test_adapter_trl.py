"""TRL: GRPOTrainer trains on CPU with a tiny model, rewarded by azr, end to end."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl", reason="TRL is not installed")
pytest.importorskip("datasets", reason="datasets is not installed")

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from azr.adapters import decode_task, encode_task
from azr.adapters.trl import AzrReward, dataset_rows
from azr.models import TinyModelSpec, build_tiny_model
from azr.models.tokenizer import build_byte_tokenizer
from azr.tasks import DeductionTask, InductionTask, IOPair, solve_prompt
from azr.verify import Verifier

DOUBLE = "def f(x):\n    return x * 2"
RIGHT = DeductionTask(program=DOUBLE, input="21", output="42")
# Same program and input, but the gold output says 43: the scripted answer "42" is wrong here.
OTHER = DeductionTask(program=DOUBLE, input="21", output="43")
TINY = TinyModelSpec(
    hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64
)


class Recording(AzrReward):
    """The adapter under test, keeping what TRL passed in and what it answered."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> list[float | None]:
        rewards = super().__call__(*args, **kwargs)
        self.calls.append({**kwargs, "rewards": rewards})
        return rewards


# TRL 1.16 calls transformers' deprecated gradient-checkpointing aliases (FutureWarning from
# transformers 5.24); nothing of ours.
@pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6:FutureWarning")
def test_grpo_trainer_two_steps_on_cpu_rewarded_by_azr(tmp_path: Path) -> None:
    tokenizer = build_byte_tokenizer()
    model = build_tiny_model(
        len(tokenizer),
        TINY,
        seed=0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # The random model is steered to answer "</think><answer>42</answer>" and stop: each
    # prefix of that script biases its next token (by more than any untrained logit), so the
    # completions are known and the rewards they earn can be checked exactly.
    script = [
        *tokenizer.convert_tokens_to_ids(["</think>", "<answer>"]),
        *tokenizer.encode("42", add_special_tokens=False),
        tokenizer.convert_tokens_to_ids("</answer>"),
        tokenizer.eos_token_id,
    ]
    bias = {tuple(script[: k + 1]): 100.0 * (k + 1) for k in range(len(script))}
    dataset = Dataset.from_list(dataset_rows([RIGHT, OTHER, RIGHT, OTHER]))
    # The byte tokenizer makes the tags special tokens, which TRL's decoding drops: the
    # adapter decodes the completion ids again with them kept.
    reward = Recording(tokenizer=tokenizer)
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=12,
        max_steps=2,
        use_cpu=True,
        bf16=False,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        generation_kwargs={"sequence_bias": bias},
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()

    assert trainer.state.global_step == 2
    assert len(reward.calls) == 2  # one batched call per step
    with Verifier(workers=1) as verifier:
        for call in reward.calls:
            assert len(call["completions"]) == len(call["task"]) == 8
            assert all(c == "42" for c in call["completions"])  # what TRL itself decoded
            texts = [tokenizer.decode(ids) for ids in call["completion_ids"]]
            assert texts[0] == "</think><answer>42</answer><|endoftext|>"
            tasks = [decode_task(t) for t in call["task"]]
            assert {t.output for t in tasks} == {"42", "43"}
            expected = [v.reward for v in verifier.score_response_batch(tasks, texts)]
            assert call["rewards"] == expected
            assert sorted(call["rewards"]) == [-0.5] * 4 + [1.0] * 4
            assert callable(call["log_metric"]) and "trainer_state" in call
    steps = [h for h in trainer.state.log_history if "rewards/azr/mean" in h]
    assert len(steps) == 2
    for logged in steps:
        assert logged["rewards/azr/mean"] == pytest.approx(0.25)
        assert logged["azr/correct"] == pytest.approx(0.5)
        assert logged["azr/formatted"] == pytest.approx(1.0)


def test_reward_function_contract() -> None:
    with Verifier(workers=1) as verifier:
        reward = AzrReward(verifier, name="azr_solver")
        assert reward.__name__ == "azr_solver"
        induction = InductionTask(
            program="def f(x):\n    return x + 1",
            message="adds one",
            shown=(IOPair("1", "2"),),
            hidden=(IOPair("5", "6"),),
        )
        broken = DeductionTask(program="def f(x):\n    return 1 / 0", input="1", output="bad(")
        tasks = [encode_task(RIGHT), RIGHT, encode_task(induction), encode_task(broken)]
        completions: list[Any] = [
            "<think>x</think><answer>42</answer>",
            # A conversational completion, as TRL passes for chat datasets.
            [{"role": "assistant", "content": "<think>x</think><answer>41</answer>"}],
            "<think>x</think><answer>\n```python\ndef f(x):\n    return x + 1\n```\n</answer>",
            "<think>x</think><answer>1</answer>",
        ]
        metrics: dict[str, float] = {}
        got = reward(
            prompts=["p"] * 4,
            completions=completions,
            completion_ids=[[1]] * 4,
            task=tasks,
            log_metric=metrics.__setitem__,
        )
        # The broken gold task says nothing about the model: None, which TRL skips.
        assert got == [1.0, -0.5, 1.0, None]
        assert metrics == {"azr/correct": pytest.approx(2 / 3), "azr/formatted": 1.0}
        with pytest.raises(KeyError, match="no 'task' column"):
            reward(prompts=["p"], completions=["x"], answer=["42"])
        with pytest.raises(ValueError, match="not an azr solve task"):
            reward(prompts=["p"], completions=["x"], task=["{}"])
        # Without re-decoding, tags deleted by the trainer's decoding read as a format error.
        assert reward(prompts=["p"], completions=["42"], task=[RIGHT]) == [-1.0]
        # Picklable (for trainers that ship reward functions); the copy uses its own
        # process's shared verifier.
        copy = pickle.loads(pickle.dumps(reward))
        assert copy.__name__ == "azr_solver" and copy._verifier is None


def test_dataset_rows() -> None:
    plain, chat = dataset_rows([RIGHT]), dataset_rows([RIGHT], conversational=True)
    assert plain == [{"prompt": solve_prompt(RIGHT), "task": encode_task(RIGHT)}]
    assert chat[0]["prompt"] == [{"role": "user", "content": solve_prompt(RIGHT)}]
    assert decode_task(Dataset.from_list(plain)[0]["task"]) == RIGHT
