"""Shared by the actor tests: a trio runner with a deadline, a scripted generation backend, and
the tiny configuration.

``ScriptedBackend`` is a real :class:`~azr.generation.base.GenerationBackend` whose responses
are chosen by prompt kind from a fixed script rather than sampled, so that a test can drive
every path of the loop (valid and invalid proposals, right and wrong answers, learnability)
through the real verifier, buffers and learner. Only the policy is replaced; the tiny random
model produces nothing but format errors, which exercise little.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec

import trio

from azr.config import Config, load_config
from azr.generation.base import Completion, SamplingParams
from azr.models.tokenizer import Tokenizer
from azr.tasks.parsing import format_blocks, format_response

P = ParamSpec("P")


def trio_test(timeout: float = 60.0) -> Callable[[Callable[P, Awaitable[None]]], Callable[P, None]]:
    """Run an ``async def`` test with ``trio.run`` under ``trio.fail_after(timeout)`` (real
    clock: these tests wait on threads and sandbox processes)."""

    def decorate(test: Callable[P, Awaitable[None]]) -> Callable[P, None]:
        @functools.wraps(test)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            async def main() -> None:
                with trio.fail_after(timeout):
                    await test(*args, **kwargs)

            trio.run(main)

        return run

    return decorate


def tiny_config(output_dir: Path, *overrides: str) -> Config:
    return load_config(
        preset="tiny-cpu",
        overrides=[f"run.output_dir={output_dir}", "run.progress=false", *overrides],
    )


# -- the script --------------------------------------------------------------------------------

PROGRAMS: tuple[tuple[str, str], ...] = (
    ("def f(a):\n    return a", "'Hello world'"),  # the seed again: valid, a duplicate
    ("def f(x):\n    return x * 2", "3"),
    ("def f(s):\n    return s[::-1]", "'abc'"),
    ("def f(a, b):\n    return [a, b, a + b]", "1, 2"),
    ("def f(x):\n    return 1 // (x - x)", "5"),  # raises: an invalid proposal
    ("", ""),  # no blocks at all: a format error
)
"""Deduction and abduction proposals, cycled: four valid, one that raises, one malformed."""

INDUCTION_INPUTS = ("'a'", "'bb'", "[1, 2]", "(3,)")

SOLVER_ANSWERS = {
    "deduction": ("'Hello world'", "42"),
    "abduction": ("'Hello world'", "1, 2"),
    "induction": ("def f(a):\n    return a", "def f(a):\n    return None"),
    "error_prediction": ("IndexError", "ZeroDivisionError"),
}
"""Sample j answers with entry ``j % 2``: right, then wrong, for the identity seed task; so a
task built on the identity program is solved at rate 1/2, and others (almost) never."""


def prompt_kind(prompt: str) -> str:
    """Which of the six prompts this is, from phrases of :mod:`azr.tasks.prompts`."""
    if "Design a new code-reasoning puzzle" in prompt:
        return "propose"
    if "different inputs for `f`" in prompt:
        return "propose_induction"
    if "What does this Python function return" in prompt:
        return "deduction"
    if "Find an input for which" in prompt:
        return "abduction"
    if "Write a Python function `f` that behaves" in prompt:
        return "induction"
    if "raises an exception. Which type?" in prompt:
        return "error_prediction"
    raise AssertionError(f"unknown prompt: {prompt[:200]!r}")


class Script:
    """Chooses responses; proposals cycle through :data:`PROGRAMS` in call order."""

    def __init__(self) -> None:
        self._programs = itertools.cycle(PROGRAMS)

    def __call__(self, prompt: str, sample: int) -> str:
        kind = prompt_kind(prompt)
        if kind == "propose":
            program, inputs = next(self._programs)
            if not program:
                return "I would rather not."
            blocks = format_blocks([("python", program), ("input", inputs)])
            return format_response(blocks, think="something small")
        if kind == "propose_induction":
            blocks = format_blocks(
                [*(("input", i) for i in INDUCTION_INPUTS), ("message", "Look at the examples.")]
            )
            return format_response(blocks, think="varied inputs")
        answer = SOLVER_ANSWERS[kind][sample % 2]
        if kind == "induction":
            answer = format_blocks([("python", answer)])
        return format_response(answer, think="let me see")


class ScriptedBackend:
    """A generation backend answering from a script (see the module docstring).

    Responses are tokenised like real ones and end with the end-of-sequence token; their
    logprobs are a constant. ``delay_s`` is slept per call (a checkpoint even when 0).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        respond: Callable[[str, int], str] | None = None,
        *,
        delay_s: float = 0.0,
    ) -> None:
        self.tokenizer = tokenizer
        self.respond = respond if respond is not None else Script()
        self.delay_s = delay_s
        self.weight_version = 0
        self.versions: list[int] = []
        self.calls: list[tuple[int, int]] = []  # (prompts, n)
        self.closed = False

    async def generate(
        self, prompts: Sequence[str], params: SamplingParams
    ) -> list[list[Completion]]:
        assert not self.closed
        version = self.weight_version
        out = []
        for prompt in prompts:
            row = []
            for j in range(params.n):
                text = self.respond(prompt, j)
                ids = (*self.tokenizer.encode(text), self.tokenizer.eos_token_id)
                row.append(Completion(text, tuple(ids), (-1.0,) * len(ids), "stop", version))
            out.append(row)
        self.calls.append((len(prompts), params.n))
        await trio.sleep(self.delay_s)
        return out

    async def generate_ids(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        return await self.generate([self.tokenizer.decode(ids) for ids in prompt_ids], params)

    async def update_weights(self, source: Any) -> int:
        self.weight_version = source.version
        self.versions.append(source.version)
        return self.weight_version

    async def aclose(self) -> None:
        self.closed = True
