"""`azr plan` against a hand computation, and `azr export` read back by transformers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from azr.cli import main
from azr.models import TinyModelSpec
from azr.plan import GIB, model_shape, plan_memory
from azr.rl import Learner, LearnerConfig

SPEC = TinyModelSpec(
    hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    learner = Learner.from_pretrained(None, LearnerConfig.tiny_cpu(), spec=SPEC, seed=3)
    learner.model.config.save_pretrained(out)  # the config alone: plan reads nothing else
    return out


def test_plan_matches_a_hand_computation(tiny_dir: Path) -> None:
    shape = model_shape(str(tiny_dir))
    # Byte tokenizer: 256 bytes + 11 specials. One layer: q 64x64+64, k and v 64x32+32 each,
    # o 64x64, gate/up/down 64x128 each, two norms of 64. Root: tied embedding + final norm.
    layer = (64 * 64 + 64) + 2 * (64 * 32 + 32) + 64 * 64 + 3 * 64 * 128 + 2 * 64
    root = 267 * 64 + 64
    assert (shape.layer_parameters, shape.root_parameters) == (layer, root) == (37120, 17152)
    assert shape.parameters == 2 * layer + root == 91392
    plan = plan_memory(
        shape,
        nproc=2,
        micro_batch_size=3,
        prompt_tokens=5,
        response_tokens=7,
        activation_checkpointing=False,
    )
    assert (plan.weights, plan.gradients, plan.optimizer) == (182784, 182784, 365568)
    assert plan.gathered == 2 * 2 * layer + 2 * root + 4 * layer == 331264
    per_token_layer = 2 * (7 * 64 + 3 * 32 + 4 * 128)  # 2112 bytes
    assert plan.activations == 36 * 2 * per_token_layer == 152064
    assert plan.logits == 10 * 3 * 7 * 267 == 56070
    ckpt = plan_memory(
        shape,
        nproc=2,
        micro_batch_size=3,
        prompt_tokens=5,
        response_tokens=7,
        activation_checkpointing=True,
    )
    assert ckpt.activations == 36 * (2 * 2 * 64 + per_token_layer) == 85248
    assert plan.total - ckpt.total == 152064 - 85248


def test_plan_command_for_a_known_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--model", "Qwen/Qwen2.5-7B", "--nproc", "8", "--preset", "paper"]) == 0
    out = capsys.readouterr().out
    assert "Qwen/Qwen2.5-7B: 7.62B parameters, 28 layers, hidden 3584" in out
    assert out.splitlines()[-1].split()[-2:] == ["no", "fits"]  # needs checkpointing
    shape = model_shape("Qwen/Qwen2.5-14B")
    one = plan_memory(
        shape,
        nproc=1,
        micro_batch_size=1,
        prompt_tokens=0,
        response_tokens=1,
        activation_checkpointing=True,
    )
    # 16 bytes per parameter in one process: about 220 GiB before activations.
    assert 215 < (one.weights + one.gradients + one.optimizer) / GIB < 225
    assert main(["plan", "--model", "nowhere/at-all", "--nproc", "2"]) == 2


def test_export_round_trip_gives_the_same_logits(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    learner = Learner.from_pretrained(None, LearnerConfig.tiny_cpu(), spec=SPEC, seed=5)
    learner.save_checkpoint(tmp_path / "ckpt")
    assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "hf")]) == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert exported.dtype == torch.bfloat16  # as written
    # Computed in float32, the export is exactly the policy with its weights rounded to bf16.
    exported = AutoModelForCausalLM.from_pretrained(
        tmp_path / "hf", local_files_only=True, dtype=torch.float32
    ).eval()
    rounded = copy.deepcopy(learner.model).eval()
    with torch.no_grad():
        for param in rounded.parameters():
            param.copy_(param.to(torch.bfloat16).float())
    ids = torch.tensor([[5, 17, 99, 200, 31, 7]])
    with torch.no_grad():
        got = exported(input_ids=ids).logits
        assert torch.equal(got, rounded(input_ids=ids).logits)
        exact = learner.model.eval()(input_ids=ids).logits
    assert 0 < float((got - exact).abs().max()) < 1e-2
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "x")]) == 1
