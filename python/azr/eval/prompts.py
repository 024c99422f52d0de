"""Evaluation prompts.

The paper evaluates with the same reasoning format it trains with: the model thinks inside
``<think>`` and gives its final answer inside ``<answer>`` (math answers additionally in
``\\boxed{}``, code in a fenced block). ``plain`` writes that instruction as raw text for base
models; ``chat`` puts the same request through the tokenizer's chat template; ``markers`` uses
the built-in byte tokenizer's turn tokens (the tiny model).
"""

from __future__ import annotations

from typing import Any, Literal

from .data.problems import CodeProblem, CruxProblem, LcbProblem, MathProblem, Problem

__all__ = ["Template", "question", "render"]

Template = Literal["plain", "chat", "markers"]

_PREAMBLE = (
    "The user gives a task and the assistant solves it. The assistant reasons step by step "
    "inside <think> </think> and then writes its final answer inside <answer> </answer>."
)


def question(problem: Problem, benchmark: str) -> str:
    """The task text for one problem (without any turn formatting)."""
    match problem:
        case MathProblem():
            return (
                f"{problem.problem}\n\nGive the final answer in \\boxed{{}} inside the answer tags."
            )
        case CodeProblem():
            return (
                "Complete the following Python function. Answer with the whole program "
                "(imports included) in one ```python block.\n\n"
                f"```python\n{problem.prompt.strip()}\n```"
            )
        case LcbProblem():
            if problem.mode == "stdio":
                how = (
                    "Write a Python program that reads the input from standard input and "
                    "prints the answer to standard output."
                )
            else:
                how = (
                    "Complete the class below; it is called as Solution()."
                    f"{problem.entry_point}(...).\n\n```python\n{problem.starter_code}\n```"
                )
            return f"{problem.question}\n\n{how} Answer with one ```python block."
        case CruxProblem():
            if benchmark == "cruxeval-i":
                return (
                    f"```python\n{problem.code}\n```\n\nFind an input such that f returns "
                    f"{problem.output}. Answer with the arguments only, e.g. `1, 'a'`."
                )
            return (
                f"```python\n{problem.code}\n```\n\nWhat does f({problem.input}) return? "
                "Answer with the value only, as a Python literal."
            )
    raise TypeError(f"not a problem: {type(problem).__name__}")


def render(text: str, template: Template, tokenizer: Any = None) -> str:
    """One model turn asking ``text``, ending where the model's reasoning begins."""
    match template:
        case "plain":
            return f"{_PREAMBLE}\n\nUser: {text}\n\nAssistant: <think>"
        case "markers":
            return f"<|user|>{_PREAMBLE}\n\n{text}<|end|><|assistant|><think>"
        case "chat":
            hf = getattr(tokenizer, "hf", tokenizer)
            if hf is None or not getattr(hf, "chat_template", None):
                raise ValueError("the chat template option needs a tokenizer with a chat template")
            messages = [
                {"role": "system", "content": _PREAMBLE},
                {"role": "user", "content": text},
            ]
            rendered: str = hf.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            return rendered + "<think>"
    raise ValueError(f"unknown template {template!r}")
