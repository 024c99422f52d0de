"""The learner end to end on the tiny model: on-policy ratios, learning, micro-batching, resume."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import msgspec
import pytest
import torch
import trio

from azr.errors import ConfigError
from azr.generation import Completion, SamplingParams, TorchBackend
from azr.models import TinyModelSpec, load_model
from azr.rl import (
    ROLES,
    TASK_TYPES,
    Learner,
    LearnerConfig,
    Sample,
    TrainBatch,
    atomic_directory,
    resolve_checkpoint,
    trr_advantages,
)

PROMPTS = [f"<|user|>Write word {i}.<|assistant|>" for i in range(8)]


def _is_lowercase_start(c: Completion) -> float:
    return 1.0 if c.token_ids and 97 <= c.token_ids[0] <= 122 else 0.0


def _samples(
    learner: Learner, completions: list[list[Completion]], reward_fn: object = None
) -> list[Sample]:
    out = []
    for i, (prompt, comps) in enumerate(zip(PROMPTS, completions, strict=True)):
        ids = tuple(learner.tokenizer.encode(prompt))
        for j, c in enumerate(comps):
            reward = _is_lowercase_start(c) if reward_fn is None else float((i + j) % 3)
            out.append(
                Sample(
                    prompt_ids=ids,
                    response_ids=c.token_ids,
                    old_logprobs=c.logprobs,
                    reward=reward,
                    task=TASK_TYPES[i % 3],
                    role=ROLES[(i // 3) % 2],
                    weight_version=c.weight_version,
                )
            )
    return out


def _rollout(learner: Learner, params: SamplingParams, reward_fn: object = None) -> list[Sample]:
    backend = TorchBackend(learner.model, learner.tokenizer, device="cpu")

    async def go() -> list[list[Completion]]:
        await backend.update_weights(learner.weights())
        return await backend.generate(PROMPTS, params)

    return _samples(learner, trio.run(go), reward_fn)


def _learner(spec: TinyModelSpec, **overrides: object) -> Learner:
    model, tok = load_model(None, spec=spec, seed=0)
    return Learner(model, tok, LearnerConfig.tiny_cpu(**overrides))


def test_generator_logprobs_match_the_learner(tiny_spec: TinyModelSpec) -> None:
    learner = _learner(tiny_spec, micro_batch_size=5)
    samples = _rollout(learner, SamplingParams(n=3, max_new_tokens=12, seed=0), reward_fn=True)
    recomputed = learner.compute_logprobs(samples)
    for s, lp in zip(samples, recomputed, strict=True):
        assert len(lp) == len(s.response_ids)
        assert max(abs(a - b) for a, b in zip(s.old_logprobs, lp, strict=True)) < 1e-4
    metrics = learner.step(samples)
    assert metrics.ratio_max_dev < 1e-4
    assert abs(metrics.ratio_mean - 1) < 1e-5
    assert metrics.clip_frac == 0.0
    assert metrics.grad_norm > 0 and not metrics.skipped
    assert metrics.step == learner.step_count == 1
    assert metrics.tokens == sum(len(s.response_ids) for s in samples)
    assert set(metrics.reward_mean) <= {f"{t}.{r}" for t in TASK_TYPES for r in ROLES}


def test_policy_learns_a_synthetic_reward(tiny_spec: TinyModelSpec) -> None:
    """Reward 1 when the response starts with a lowercase ASCII letter (about 10% at init)."""
    learner = _learner(tiny_spec, lr=1e-2)
    backend = TorchBackend(learner.model, learner.tokenizer, device="cpu")
    probe = SamplingParams(n=32, max_new_tokens=1, seed=12345)

    async def success_rate() -> float:
        res = await backend.generate(PROMPTS, probe)
        return sum(_is_lowercase_start(c) for cs in res for c in cs) / (len(PROMPTS) * probe.n)

    async def train() -> tuple[float, float]:
        before = await success_rate()
        for step in range(25):
            res = await backend.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=3, seed=step))
            metrics = learner.step(_samples(learner, res))
            assert metrics.ratio_max_dev < 1e-3  # the backend is synced every step
            assert await backend.update_weights(learner.weights()) == learner.step_count
        return before, await success_rate()

    before, after = trio.run(train)
    assert before < 0.2
    assert after > before + 0.4


def test_micro_batching_does_not_change_the_update(tiny_spec: TinyModelSpec) -> None:
    whole = _learner(tiny_spec, micro_batch_size=64)
    samples = _rollout(whole, SamplingParams(n=2, max_new_tokens=6, seed=1), reward_fn=True)
    pieces = _learner(tiny_spec, micro_batch_size=3)
    m_whole, m_pieces = whole.step(samples), pieces.step(samples)
    assert m_whole.loss == pytest.approx(m_pieces.loss, abs=1e-6)
    assert m_whole.grad_norm == pytest.approx(m_pieces.grad_norm, rel=1e-4)
    # Compare the accumulated (clipped) gradients, which the step leaves in place: Adam's first
    # update is about lr * sign(grad), so parameters would amplify rounding in near-zero grads.
    for a, b in zip(whole.model.parameters(), pieces.model.parameters(), strict=True):
        assert a.grad is not None and b.grad is not None
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-7)


def test_update_epochs_are_optimiser_steps_on_the_same_batch(tiny_spec: TinyModelSpec) -> None:
    """Three epochs on one batch move the weights exactly as three one-epoch steps on it would
    (pi_old is the sampling policy throughout), but count as one version of the policy."""
    probe = _learner(tiny_spec)
    samples = _rollout(probe, SamplingParams(n=2, max_new_tokens=6, seed=4), reward_fn=True)
    epochs = _learner(tiny_spec, update_epochs=3, lr=3e-2)
    repeated = _learner(tiny_spec, lr=3e-2)
    metrics = epochs.step(samples)
    singles = [repeated.step(samples) for _ in range(3)]
    for a, b in zip(epochs.model.parameters(), repeated.model.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert metrics.step == epochs.step_count == epochs.weight_version == 1
    assert repeated.step_count == 3
    # First-epoch numbers are the on-policy ones; the clip and ratio figures cover all epochs.
    assert metrics.loss == pytest.approx(singles[0].loss, abs=1e-6)
    assert metrics.grad_norm == pytest.approx(singles[0].grad_norm, rel=1e-5)
    assert metrics.ratio_max_dev == pytest.approx(max(m.ratio_max_dev for m in singles), rel=1e-4)
    assert metrics.ratio_max_dev > 0.05  # the later epochs really were off-policy
    assert metrics.clip_frac == pytest.approx(sum(m.clip_frac for m in singles) / 3, abs=1e-6)
    with pytest.raises(ConfigError, match="update_epochs"):
        LearnerConfig(update_epochs=0)


def test_a_non_finite_gradient_skips_the_whole_step(tiny_spec: TinyModelSpec) -> None:
    learner = _learner(tiny_spec, update_epochs=3)
    samples = _rollout(learner, SamplingParams(n=2, max_new_tokens=6, seed=5), reward_fn=True)
    # pi_old = 0 for one token makes its ratio infinite, and the gradient with it.
    bad = msgspec.structs.replace(
        samples[0], old_logprobs=(float("-inf"), *samples[0].old_logprobs[1:])
    )
    before = [p.detach().clone() for p in learner.model.parameters()]
    metrics = learner.step([bad, *samples[1:]])
    assert metrics.skipped and not math.isfinite(metrics.grad_norm)
    assert learner.step_count == metrics.step == 0
    for a, b in zip(before, learner.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not learner.step(samples).skipped and learner.step_count == 1


def test_sequence_aggregation_weighs_every_response_the_same(tiny_spec: TinyModelSpec) -> None:
    probe = _learner(tiny_spec)
    drawn = _rollout(probe, SamplingParams(n=2, max_new_tokens=8, seed=3), reward_fn=True)
    # Prefixes of different lengths (a prefix's sampling log-probs are its own).
    samples = [
        msgspec.structs.replace(
            s, response_ids=s.response_ids[: 1 + i % 8], old_logprobs=s.old_logprobs[: 1 + i % 8]
        )
        for i, s in enumerate(drawn)
    ]
    lengths = torch.tensor([len(s.response_ids) for s in samples])
    groups = torch.tensor([s.group for s in samples])
    rewards = torch.tensor([s.reward for s in samples])
    adv = trr_advantages(rewards, groups, lengths)  # token-weighted: zero mean per token
    # On-policy (ratio 1) the loss is minus the mean advantage: over tokens it vanishes; over
    # responses each one counts once, whatever its length.
    by_token = _learner(tiny_spec).step(samples)
    assert by_token.loss == pytest.approx(0.0, abs=1e-6)
    whole = _learner(tiny_spec, loss_aggregation="sequence", micro_batch_size=64)
    pieces = _learner(tiny_spec, loss_aggregation="sequence", micro_batch_size=3)
    m_whole, m_pieces = whole.step(samples), pieces.step(samples)
    assert m_whole.loss == pytest.approx(-float(adv.mean()), abs=1e-5)
    assert abs(m_whole.loss) > 1e-3
    assert m_pieces.loss == pytest.approx(m_whole.loss, abs=1e-6)
    for a, b in zip(whole.model.parameters(), pieces.model.parameters(), strict=True):
        assert a.grad is not None and b.grad is not None
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-7)


def test_recomputed_old_logprobs_match_the_torch_generator_and_keep_the_update(
    tiny_spec: TinyModelSpec,
) -> None:
    trusting = _learner(tiny_spec, micro_batch_size=5)
    samples = _rollout(trusting, SamplingParams(n=2, max_new_tokens=8, seed=4), reward_fn=True)
    recomputing = _learner(tiny_spec, micro_batch_size=5, old_logprobs="learner")
    a, b = trusting.step(samples), recomputing.step(samples)
    assert a.old_logprob_diff_mean is None and a.old_logprob_diff_max is None
    assert a.entropy is None and b.entropy is None  # entropy_coef 0: never computed
    # The torch backend computes the learner's numbers: the server-vs-learner drift is ~0.
    assert b.old_logprob_diff_mean is not None and b.old_logprob_diff_max is not None
    assert 0 <= b.old_logprob_diff_mean <= b.old_logprob_diff_max < 1e-4
    assert b.ratio_max_dev < 1e-6  # pi_old and pi come from the same code on the same weights
    assert a.loss == pytest.approx(b.loss, abs=1e-6)
    for p, q in zip(trusting.model.parameters(), recomputing.model.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-7)

    # Off-by-0.1 server numbers are measured, then replaced: the update is the same again.
    shifted = [
        msgspec.structs.replace(s, old_logprobs=tuple(x - 0.1 for x in s.old_logprobs))
        for s in samples
    ]
    fixed = _learner(tiny_spec, micro_batch_size=5, old_logprobs="learner")
    c = fixed.step(shifted)
    assert c.old_logprob_diff_mean == pytest.approx(0.1, abs=1e-4)
    assert c.old_logprob_diff_max == pytest.approx(0.1, abs=1e-4)
    for p, q in zip(recomputing.model.parameters(), fixed.model.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-7)


def test_old_logprobs_auto_follows_the_backend() -> None:
    auto = LearnerConfig()
    assert auto.old_logprobs == "auto"
    assert auto.for_backend("sglang").old_logprobs == "learner"
    assert auto.for_backend("torch").old_logprobs == "generator"
    pinned = LearnerConfig(old_logprobs="generator")
    assert pinned.for_backend("sglang").old_logprobs == "generator"
    with pytest.raises(ConfigError):
        LearnerConfig(old_logprobs="server")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        LearnerConfig(logprob_chunk_len=-1)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_spec: TinyModelSpec) -> None:
    plain = _learner(tiny_spec)
    samples = _rollout(plain, SamplingParams(n=2, max_new_tokens=5, seed=2), reward_fn=True)
    ckpt = _learner(tiny_spec, gradient_checkpointing=True)
    a, b = plain.step(samples), ckpt.step(samples)
    assert a.loss == pytest.approx(b.loss, abs=1e-6)
    assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-4)


def test_kl_and_entropy_terms(tiny_spec: TinyModelSpec) -> None:
    learner = _learner(tiny_spec, kl_coef=0.1, kl_estimator="k3", entropy_coef=0.01)
    samples = _rollout(learner, SamplingParams(n=2, max_new_tokens=5, seed=3), reward_fn=True)
    first = learner.step(samples)
    assert first.kl == pytest.approx(0.0, abs=1e-6)  # the reference is the initial policy
    assert first.entropy > 0
    # After moving, the policy differs from its reference.
    for _ in range(3):
        last = learner.step(samples)
    assert last.kl > 0


def test_checkpoint_resume_is_exact(tmp_path: Path, tiny_spec: TinyModelSpec) -> None:
    learner = _learner(tiny_spec, warmup_steps=3, micro_batch_size=7, kl_coef=0.05)
    samples = _rollout(learner, SamplingParams(n=2, max_new_tokens=6, seed=4), reward_fn=True)
    for _ in range(2):
        learner.step(samples)
    path = tmp_path / "ckpt"
    learner.save_checkpoint(path)
    # The draws that follow the save point: a resumed run must see the same ones.
    rng_at_save = torch.get_rng_state()
    expected = (torch.rand(2), random.random())
    torch.set_rng_state(rng_at_save)

    continued = learner.step(samples)
    resumed = Learner.from_checkpoint(path)
    assert resumed.step_count == 2
    assert resumed.config == learner.config
    again = resumed.step(samples)

    assert again.loss == continued.loss
    assert again.lr == continued.lr
    for a, b in zip(learner.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)

    fresh = _learner(tiny_spec, warmup_steps=3, micro_batch_size=7, kl_coef=0.05)
    torch.manual_seed(99)
    random.seed(99)
    fresh.load_checkpoint(path)
    assert fresh.step_count == 2
    draws = (torch.rand(2), random.random())
    assert torch.equal(draws[0], expected[0]) and draws[1] == expected[1]


def test_checkpoint_writes_are_atomic(tmp_path: Path, tiny_spec: TinyModelSpec) -> None:
    learner = _learner(tiny_spec)
    path = tmp_path / "ckpt"
    learner.save_checkpoint(path)
    files = sorted(p.name for p in path.iterdir())

    class Crash(Exception):
        pass

    with pytest.raises(Crash), atomic_directory(path) as tmp:
        (tmp / "half-written").write_text("x")
        raise Crash
    assert sorted(p.name for p in path.iterdir()) == files
    assert os.listdir(tmp_path) == ["ckpt"]  # no temporary directory left behind

    # A crash between the two renames of a replace leaves only the backup: it is found.
    os.rename(path, tmp_path / ".ckpt.old")
    assert resolve_checkpoint(path) == tmp_path / ".ckpt.old"
    assert Learner.from_checkpoint(path).step_count == 0
    learner.save_checkpoint(path)
    assert os.listdir(tmp_path) == ["ckpt"]
    assert {"config.json", "model.safetensors", "learner_state.pt"} <= set(os.listdir(path))


def test_export_weights_is_a_loadable_model_dir(tmp_path: Path, tiny_spec: TinyModelSpec) -> None:
    learner = _learner(tiny_spec)
    source = learner.export_weights(tmp_path / "export")
    assert source.version == 0
    model, _ = load_model(source.path)
    # Weights leave the learner in bfloat16, what servers compute in (half the bytes per sync).
    for a, b in zip(learner.model.parameters(), model.parameters(), strict=True):
        assert torch.equal(a.detach().to(torch.bfloat16).float(), b)


def test_messages_round_trip_and_validate() -> None:
    sample = Sample((1, 2), (3,), (-0.5,), 1.0, "induction", "propose", weight_version=4)
    batch = TrainBatch((sample,))
    wire = msgspec.msgpack.encode(batch)
    assert msgspec.msgpack.decode(wire, type=TrainBatch) == batch
    with pytest.raises(ValueError):
        Sample((1,), (3, 4), (-0.5,), 1.0, "induction", "propose")
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(
            msgspec.msgpack.encode({**msgspec.to_builtins(sample), "task": "riddle"}), type=Sample
        )
    with pytest.raises(ConfigError):
        LearnerConfig(clip_low=1.5)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"learning_rate": 1.0}', type=LearnerConfig)


def test_batches_without_tokens_are_rejected(tiny_spec: TinyModelSpec) -> None:
    learner = _learner(tiny_spec)
    with pytest.raises(ValueError):
        learner.step([])
    with pytest.raises(ValueError):
        learner.step([Sample((1,), (), (), 1.0, "deduction", "solve")])
