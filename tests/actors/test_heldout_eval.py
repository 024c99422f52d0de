"""Held-out evaluation inside the loop: greedy answers, real checks, never in the buffers.

The policy is scripted: it answers every held-out task with its gold answer (and nothing else
right), and proposes only held-out programs. So the logged held-out accuracy must be exactly 1
at step 0 and after each evaluated step (the verifier really checked the answers), the solver
must have been asked greedily, and no proposal may reach the buffers.
"""

from __future__ import annotations

import json
from pathlib import Path

from azr.eval.heldout import heldout_programs, heldout_tasks, is_heldout, load_heldout_tasks
from azr.generation.base import Completion, SamplingParams
from azr.models import Tokenizer
from azr.tasks import format_blocks, format_response, solve_prompt
from azr.tasks.types import AbductionTask, DeductionTask, InductionTask
from azr.train import train_async
from azr.verify import Verifier

from ._support import INDUCTION_INPUTS, ScriptedBackend, prompt_kind, tiny_config, trio_test


class HeldOutOracle:
    def __init__(self, tasks: tuple[object, ...]) -> None:
        self.answers = {}
        for task in tasks:
            match task:
                case DeductionTask():
                    answer = task.output
                case AbductionTask():
                    answer = task.input
                case InductionTask():
                    answer = format_blocks([("python", task.program)])
            self.answers[solve_prompt(task)] = format_response(answer, think="known")
        program = heldout_programs()[0]
        self.proposal = format_response(
            format_blocks([("python", program.program), ("input", program.inputs[0])])
        )

    def __call__(self, prompt: str, sample: int) -> str:
        for text, answer in self.answers.items():
            if text in prompt:
                return answer
        kind = prompt_kind(prompt)
        if kind == "propose":
            return self.proposal
        if kind == "propose_induction":
            blocks = [*(("input", i) for i in INDUCTION_INPUTS), ("message", "m")]
            return format_response(format_blocks(blocks))
        return format_response("None")


class RecordingBackend(ScriptedBackend):
    temperatures: list[float]

    async def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        self.temperatures = [*getattr(self, "temperatures", []), params.temperature]
        return await super().generate(prompts, params)


def test_held_out_tasks_are_fixed_and_typed() -> None:
    with Verifier(workers=2) as v:
        tasks = heldout_tasks(v)
        assert tasks == heldout_tasks(v)
    kinds = [type(t).__name__ for t in tasks]
    assert kinds.count("DeductionTask") == kinds.count("AbductionTask") == 32
    assert kinds.count("InductionTask") == 32
    assert all(is_heldout(t.program) for t in tasks)
    assert not is_heldout("def f(a):\n    return a")
    # Deduction and abduction tasks share no program: one cannot leak the other's answer.
    programs = {type(t).__name__: set() for t in tasks}
    for t in tasks:
        programs[type(t).__name__].add(t.program)
    assert not programs["DeductionTask"] & programs["AbductionTask"]


@trio_test(timeout=180)
async def test_the_loop_evaluates_greedily_and_keeps_held_out_tasks_out_of_buffers(
    tmp_path: Path, tokenizer: Tokenizer
) -> None:
    config = tiny_config(
        tmp_path, "run.steps=2", "run.eval_every=2", "run.samples_per_step=1", "run.curves=true"
    )
    tasks = load_heldout_tasks(config.verifier)
    backend = RecordingBackend(tokenizer, HeldOutOracle(tasks))
    result = await train_async(config, backend=backend)
    assert result.completed

    records = [json.loads(x) for x in Path(result.metrics).read_text().splitlines()]
    evaluated = {r["step"]: r for r in records if "eval/accuracy" in r}
    assert sorted(evaluated) == [0, 2]
    for r in evaluated.values():
        for t in ("deduction", "abduction", "induction"):
            assert r[f"eval/{t}/accuracy"] == 1.0 and r[f"eval/{t}/format"] == 0.0
    assert 0.0 in backend.temperatures and 1.0 in backend.temperatures
    # Every proposal was a valid held-out program, and none was admitted.
    for r in records[1:]:
        assert r["propose/deduction/valid"] == 1.0
        assert r["buffer/deduction/size"] == 1 and r["buffer/abduction/size"] == 1

    samples = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2}
    proposals = [s for s in samples if s["role"] == "propose" and s["task_type"] == "deduction"]
    assert proposals and all(s["reason"] == "ok" and "Design" in s["prompt"] for s in proposals)
    assert (tmp_path / "curves.png").is_file()
