"""The coordinator: reward assembly, and the whole actor graph driven by a scripted policy.

The loop tests run every real part (runtime, sandbox, buffers, tiny learner on CPU, checkpoints)
and replace only the sampling of responses by :class:`ScriptedBackend`, so that valid and
invalid proposals, right and wrong answers and learnability rates all occur.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from azr.actors.buffer import rng_state
from azr.actors.coordinator import (
    STATE_DECODER,
    STATE_ENCODER,
    TASK_TYPES,
    ProposalRecord,
    RunState,
    SolveRecord,
    StepData,
    build_batch,
    learnability_solves,
    proposal_reward,
    seed_counts,
    step_metrics,
)
from azr.actors.messages import ProposalVerdict, Rollout
from azr.buffer import Buffers
from azr.config import load_config
from azr.models import Tokenizer
from azr.rewards import RewardConfig
from azr.runtime import ActorFailed
from azr.tasks import SEED_TRIPLET, DeductionTask, Reason, TaskType, Triplet
from azr.train import train_async
from azr.verify import Verdict

from ._support import ScriptedBackend, tiny_config, trio_test

REWARDS = RewardConfig()
GROUPS = [f"{role}/{t}/reward" for role in ("propose", "solve") for t in TASK_TYPES]


def _rollout(tag: int, finish: str = "stop") -> Rollout:
    return Rollout((1, tag), (2, tag), (-1.0, -1.0), "", finish, 0)  # type: ignore[arg-type]


def test_proposer_rewards_follow_validity_and_learnability() -> None:
    def record(reason: Reason, learn: list[Reason] | None = None) -> ProposalRecord:
        verdict = ProposalVerdict(reason, triplet=SEED_TRIPLET if reason is Reason.OK else None)
        return ProposalRecord(rollout=_rollout(0), verdict=verdict, learnability=learn)

    ok, wrong = Reason.OK, Reason.WRONG
    assert proposal_reward(record(ok, [ok, wrong, wrong, wrong]), REWARDS) == 0.75
    assert proposal_reward(record(ok, [ok, ok]), REWARDS) == 0.0  # too easy teaches nothing
    assert proposal_reward(record(ok, [wrong, Reason.FORMAT]), REWARDS) == 0.0  # too hard
    assert proposal_reward(record(Reason.ERROR), REWARDS) == -0.5
    assert proposal_reward(record(Reason.FORMAT), REWARDS) == -1.0
    # Nothing to conclude: the executor failed, or no learnability rollout could be scored.
    assert proposal_reward(record(Reason.INTERNAL), REWARDS) is None
    assert proposal_reward(record(ok, [Reason.INTERNAL]), REWARDS) is None


def test_the_batch_is_ordered_and_leaves_out_what_cannot_be_scored() -> None:
    data = StepData(step=1)
    ok = ProposalVerdict(Reason.OK, triplet=SEED_TRIPLET)
    data.proposals[TaskType.ABDUCTION] = {
        1: ProposalRecord(rollout=_rollout(11), verdict=ok, learnability=[Reason.OK, Reason.WRONG]),
        0: ProposalRecord(rollout=_rollout(10), verdict=ProposalVerdict(Reason.TIMEOUT)),
        2: ProposalRecord(rollout=_rollout(12), verdict=ProposalVerdict(Reason.INTERNAL)),
    }
    data.solves[TaskType.DEDUCTION] = {
        1: SolveRecord(rollout=_rollout(21), verdict=Verdict(False, -1.0, Reason.FORMAT)),
        0: SolveRecord(rollout=_rollout(20), verdict=Verdict(True, 1.0, Reason.OK)),
        2: SolveRecord(rollout=_rollout(22, "abort"), verdict=Verdict(True, 1.0, Reason.OK)),
        3: SolveRecord(rollout=_rollout(23), verdict=Verdict(False, 0.0, Reason.INVALID_TASK)),
    }
    samples = build_batch(data, REWARDS).samples
    assert [(s.role, s.task, s.response_ids[1], s.reward) for s in samples] == [
        ("propose", "abduction", 10, -0.5),
        ("propose", "abduction", 11, 0.5),
        ("solve", "deduction", 20, 1.0),
        ("solve", "deduction", 21, -1.0),
    ]
    m = step_metrics(data, REWARDS)
    assert m["propose/abduction/count"] == 3 and m["propose/abduction/valid"] == 1 / 3
    assert m["propose/abduction/rejected/timeout"] == 1
    assert m["propose/abduction/solve_rate"] == 0.5
    assert m["solve/deduction/accuracy"] == 2 / 3  # the unscored one is not counted
    assert "solve/abduction/accuracy" not in m  # nothing measured is left out, not NaN


def test_learnability_rollouts_join_the_solver_group_only_when_asked() -> None:
    data = StepData(step=1)
    ok = ProposalVerdict(Reason.OK, triplet=SEED_TRIPLET)
    task = DeductionTask.from_triplet(SEED_TRIPLET)
    rolled = [
        SolveRecord(rollout=_rollout(31), verdict=Verdict(True, 1.0, Reason.OK), task=task),
        SolveRecord(rollout=_rollout(32), verdict=Verdict(False, -0.5, Reason.WRONG), task=task),
        SolveRecord(rollout=_rollout(33), verdict=Verdict(False, 0.0, Reason.INTERNAL)),
    ]
    data.proposals[TaskType.DEDUCTION] = {
        0: ProposalRecord(
            rollout=_rollout(30),
            verdict=ok,
            learnability=[v.verdict.reason for v in rolled],
            solves=rolled,
        )
    }
    data.solves[TaskType.DEDUCTION] = {
        0: SolveRecord(rollout=_rollout(20), verdict=Verdict(False, -1.0, Reason.FORMAT))
    }
    plain = [(s.role, s.response_ids[1], s.reward) for s in build_batch(data, REWARDS).samples]
    assert plain == [("propose", 30, 0.5), ("solve", 20, -1.0)]
    both = build_batch(data, REWARDS, learnability_solves=True).samples
    # The proposer's reward is unchanged; the scored rollouts follow the solver tasks, each
    # with its own reward, in the deduction solver group.
    assert [(s.role, s.task, s.response_ids[1], s.reward) for s in both] == [
        ("propose", "deduction", 30, 0.5),
        ("solve", "deduction", 20, -1.0),
        ("solve", "deduction", 31, 1.0),
        ("solve", "deduction", 32, -0.5),
    ]


def test_learnability_answers_to_a_held_out_program_are_never_trained_on() -> None:
    from azr.eval.heldout import heldout_programs

    held = heldout_programs()[0]
    rollouts = [_rollout(40), _rollout(41)]
    verdicts = [Verdict(True, 1.0, Reason.OK), Verdict(False, -0.5, Reason.WRONG)]
    seen = DeductionTask.from_triplet(SEED_TRIPLET)
    assert [r.rollout for r in learnability_solves(seen, rollouts, verdicts)] == rollouts
    unseen = DeductionTask(program=held.program, input=held.inputs[0], output="0")
    assert learnability_solves(unseen, rollouts, verdicts) == []


@trio_test(timeout=120)
async def test_a_run_trains_the_solver_on_learnability_rollouts(
    tmp_path: Path, tokenizer: Tokenizer
) -> None:
    backend = ScriptedBackend(tokenizer)
    config = tiny_config(tmp_path, "run.steps=1", "selfplay.train_learnability=true")
    result = await train_async(config, backend=backend)
    assert result.completed
    _, step = _records(Path(result.metrics))
    n = config.solver_rollouts
    responses = sum(step[f"{r}/{t.value}/count"] for r in ("propose", "solve") for t in TASK_TYPES)
    valid = sum(
        step[f"propose/{t.value}/valid"] * step[f"propose/{t.value}/count"] for t in TASK_TYPES
    )
    assert valid > 0
    # Every proposal and solver answer of the scripted run is scored, and so is each of the n
    # rollouts of every valid proposal: all of them are trained on.
    assert step["learner/samples"] == responses + n * valid


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@trio_test(timeout=120)
async def test_two_steps_with_a_scripted_policy(tmp_path: Path, tokenizer: Tokenizer) -> None:
    backend = ScriptedBackend(tokenizer)
    config = tiny_config(
        tmp_path, "run.steps=2", "selfplay.seed_buffer_size=3", "selfplay.seed_max_rounds=2"
    )
    result = await train_async(config, backend=backend)
    assert result.completed and result.last_step == 2
    assert backend.versions == [1, 2] and backend.closed

    seed, *steps = _records(Path(result.metrics))
    assert seed["step"] == 0 and seed["seed/rounds"] >= 1
    assert seed["buffer/deduction/size"] >= 3  # seeding filled it with valid proposals
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        assert all(key in record for key in GROUPS), record.keys()
        assert record["learner/grad_norm"] > 0
        assert record["executor/executions"] > 0
        assert record["actor/verifier/handled"] > 0
    both = {k: v for r in steps for k, v in r.items()}
    assert any(0 < both.get(f"propose/{t}/solve_rate", 0) < 1 for t in TaskType)
    assert any(k.endswith("rejected/error") for k in both)
    assert any(k.endswith("rejected/format") for k in both)
    assert any(both.get(f"solve/{t}/accuracy", 0) > 0 for t in TaskType)
    assert steps[-1]["buffer/induction/size"] > 1

    assert result.checkpoint is not None and Path(result.checkpoint).name == "step-000002"
    assert steps[-1]["checkpoint"] == result.checkpoint
    assert (Path(result.checkpoint) / "buffers" / "induction.msgpack").is_file()


@trio_test(timeout=120)
async def test_async_mode_bounds_staleness(tmp_path: Path, tokenizer: Tokenizer) -> None:
    backend = ScriptedBackend(tokenizer, delay_s=0.05)
    config = tiny_config(tmp_path, "run.steps=3", "run.mode=async", "run.max_staleness=1")
    result = await train_async(config, backend=backend)
    assert result.completed
    records = _records(Path(result.metrics))[1:]
    assert [r["weights/version"] for r in records] == [1, 2, 3]
    assert all(r["weights/staleness_max"] <= 1 for r in records)


@trio_test(timeout=60)
async def test_a_failing_backend_fails_the_run_by_name(
    tmp_path: Path, tokenizer: Tokenizer
) -> None:
    def respond(prompt: str, sample: int) -> str:
        raise RuntimeError("the server went away")

    backend = ScriptedBackend(tokenizer, respond)
    with pytest.raises(ActorFailed, match="proposer") as failure:
        await train_async(tiny_config(tmp_path), backend=backend)
    assert isinstance(failure.value.__cause__, RuntimeError)
    assert backend.closed  # resources are released on the way out


def test_resuming_needs_the_flag_when_checkpoints_exist(tmp_path: Path) -> None:
    from azr.errors import ConfigError
    from azr.train import train

    step = tmp_path / "checkpoints" / "step-000001"
    step.mkdir(parents=True)
    (step / "state.json").write_text("{}")
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config(tmp_path))


@trio_test(timeout=120)
async def test_error_prediction_is_a_fourth_task_type_with_its_own_groups(
    tmp_path: Path, tokenizer: Tokenizer
) -> None:
    backend = ScriptedBackend(tokenizer)
    config = tiny_config(tmp_path, "run.steps=1", "selfplay.error_prediction=true")
    finished: list[Any] = []
    result = await train_async(config, backend=backend, on_buffers=finished.append)
    assert result.completed
    seed, step = _records(Path(result.metrics))
    assert seed["seed/error_prediction/count"] > 0
    # Of the scripted programs only the one dividing by zero raises: it is the valid proposal;
    # the rest return (no_error) or are malformed (format).
    assert step["propose/error_prediction/rejected/no_error"] > 0
    assert 0 < step["propose/error_prediction/valid"] < 1
    assert "solve/error_prediction/accuracy" in step and "propose/error_prediction/reward" in step
    assert "buffer/error_prediction/size" in step
    errors = {t.output for t in finished[0].error_prediction}
    assert {"IndexError", "ZeroDivisionError"} <= errors
    checkpoint = Path(result.checkpoint or "")
    assert (checkpoint / "buffers" / "error_prediction.msgpack").is_file()


def test_error_prediction_samples_go_to_their_own_two_groups() -> None:
    from azr.rl.batch import GROUP_NAMES, group_index

    data = StepData(step=1)
    ok = ProposalVerdict(Reason.OK, triplet=SEED_TRIPLET)
    data.proposals[TaskType.ERROR_PREDICTION] = {
        0: ProposalRecord(rollout=_rollout(1), verdict=ok, learnability=[Reason.OK, Reason.WRONG])
    }
    data.solves[TaskType.ERROR_PREDICTION] = {
        0: SolveRecord(rollout=_rollout(2), verdict=Verdict(True, 1.0, Reason.OK))
    }
    samples = build_batch(data, REWARDS).samples
    assert [(s.task, s.role, s.reward) for s in samples] == [
        ("error_prediction", "propose", 0.5),
        ("error_prediction", "solve", 1.0),
    ]
    groups = {GROUP_NAMES[s.group] for s in samples}
    assert groups == {"error_prediction.propose", "error_prediction.solve"}
    assert len(GROUP_NAMES) == 8 and group_index("deduction", "propose") == 0


def test_seed_file_tasks_start_the_bonus_counts_and_the_counts_travel_in_the_state() -> None:
    buffers = Buffers(random.Random(0))
    loaded = [
        Triplet("def f(n):\n    return n * 3", "2", "6"),
        Triplet("def f(x):\n    return x * 7", "1", "7"),
        Triplet("def f(s):\n    return s[::-1]", "'ab'", "'ba'"),
    ]
    buffers.deduction.extend(loaded)
    buffers.abduction.extend(loaded[:1])
    config = load_config(preset="cpu-base")
    assert config.rewards.intrinsic.novelty.coef > 0
    counts = seed_counts(config, buffers)
    # The built-in identity triplet is not counted; the loaded ones are, by answer and shape.
    assert counts.answers == {"deduction": {"6": 1, "7": 1, "'ba'": 1}, "abduction": {"2": 1}}
    assert sorted(counts.shapes["deduction"].values()) == [1, 2]  # n * 3 and x * 7: one shape
    assert sum(counts.shapes["abduction"].values()) == 1
    off = load_config(preset="cpu-base", overrides=["rewards.intrinsic.novelty.coef=0"])
    assert seed_counts(off, buffers).shapes == {}

    state = RunState(step=3, seeded=True, buffer_rng=rng_state(random.Random(0)), counts=counts)
    assert STATE_DECODER.decode(STATE_ENCODER.encode(state)).counts == counts
    # A checkpoint written before the counts were stored still loads (they start empty).
    old = json.loads(STATE_ENCODER.encode(state))
    del old["counts"]
    assert STATE_DECODER.decode(json.dumps(old).encode()).counts is None
