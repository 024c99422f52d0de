"""Parsing model responses. Nothing here raises on model text: every failure is a value.

The response format, for every role and task type::

    <think> free reasoning </think>
    <answer> the answer </answer>

Solvers put their answer straight inside ``<answer>`` (optionally in one fenced block).
Proposers put fenced blocks inside it, one per part::

    ```python      the program (deduction and abduction proposals)
    ```input       an argument list (one for deduction/abduction, several for induction)
    ```message     a hint describing the function (induction proposals)

Parsing is by plain string search and line scanning, never regular expressions with
backtracking, so its cost is linear in the length of the text, which is bounded first.
Failures carry :attr:`Reason.FORMAT` or :attr:`Reason.TOO_LARGE`, both in the format-penalty
class of the composite reward.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Final

import msgspec

from azr.tasks.ast_checks import Rejected, utf8_size
from azr.tasks.types import Reason, TaskType

__all__ = [
    "FencedBlock",
    "InductionProposal",
    "ParseConfig",
    "Proposal",
    "extract_answer",
    "fenced_blocks",
    "format_blocks",
    "format_response",
    "parse_proposal",
    "parse_solution",
]

THINK_OPEN: Final = "<think>"
THINK_CLOSE: Final = "</think>"
ANSWER_OPEN: Final = "<answer>"
ANSWER_CLOSE: Final = "</answer>"
FENCE: Final = "```"
PYTHON_TAGS: Final = frozenset({"python", "py", "python3"})


class ParseConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How strictly responses are parsed.

    ``max_response_chars`` bounds the text before any scanning. ``require_think`` demands a
    ``</think>`` before the answer (the opening ``<think>`` is optional because chat templates
    often put it in the prompt); turn it off for models that answer without reasoning.
    """

    max_response_chars: int = 200_000
    require_think: bool = True


DEFAULT_PARSE: Final = ParseConfig()


class FencedBlock(msgspec.Struct, frozen=True):
    """One fenced block: its language tag (lower-cased, may be empty) and its content."""

    tag: str
    content: str


class Proposal(msgspec.Struct, frozen=True):
    """A deduction or abduction proposal: a program and one input for it (both unvalidated)."""

    program: str
    input: str


class InductionProposal(msgspec.Struct, frozen=True):
    """An induction proposal: inputs for a given program and a message for the solver."""

    inputs: tuple[str, ...]
    message: str


def _fail(detail: str, reason: Reason = Reason.FORMAT) -> Rejected:
    return Rejected(reason, detail)


def extract_answer(
    text: str, config: ParseConfig = DEFAULT_PARSE, *, allow_empty: bool = False
) -> str | Rejected:
    """The content of the single ``<answer>`` block of a response.

    The answer must come after the first ``</think>`` when ``config.require_think`` is set (and
    after it in any case when one is present). Exactly one complete ``<answer>...</answer>`` must
    follow; text after it is ignored (end-of-turn markers and the like). An empty (or blank)
    answer is a format error unless ``allow_empty``.
    """
    if not isinstance(text, str):
        return _fail("response is not a string")
    if len(text) > config.max_response_chars:
        return _fail(
            f"response has {len(text)} characters, over {config.max_response_chars}",
            Reason.TOO_LARGE,
        )
    if utf8_size(text) is None:
        return _fail("response is not valid UTF-8")
    start = 0
    think_end = text.find(THINK_CLOSE)
    if think_end >= 0:
        start = think_end + len(THINK_CLOSE)
    elif config.require_think:
        return _fail("no </think> before the answer")
    open_at = text.find(ANSWER_OPEN, start)
    if open_at < 0:
        return _fail("no <answer> tag")
    body_at = open_at + len(ANSWER_OPEN)
    close_at = text.find(ANSWER_CLOSE, body_at)
    if close_at < 0:
        return _fail("<answer> is not closed")
    inner = text[body_at:close_at]
    if ANSWER_OPEN in inner:
        return _fail("nested <answer> tags")
    if text.find(ANSWER_OPEN, close_at) >= 0:
        return _fail("more than one <answer> block")
    if not inner.strip() and not allow_empty:
        return _fail("empty answer")
    return inner


def fenced_blocks(text: str) -> list[FencedBlock]:
    """All complete fenced blocks in ``text``, in order. An unclosed block is dropped.

    An opening fence is a line holding three backticks and an optional tag; a closing fence is a
    line holding only three backticks. Indentation around fences is ignored.
    """
    blocks: list[FencedBlock] = []
    tag: str | None = None
    lines: list[str] = []
    # Split on "\n" only: ``splitlines`` would also split on characters such as U+2028 that may
    # sit inside a string literal of the program.
    for line in text.split("\n"):
        stripped = line.strip()
        if tag is None:
            if stripped.startswith(FENCE):
                rest = stripped[len(FENCE) :].strip()
                if FENCE not in rest and (not rest or rest.replace("_", "").isalnum()):
                    tag = rest.lower()
                    lines = []
        elif stripped == FENCE:
            blocks.append(FencedBlock(tag, "\n".join(lines)))
            tag = None
        else:
            lines.append(line)
    return blocks


def _unfence(answer: str, allow_empty: bool = False) -> str | Rejected:
    """An answer's content with one enclosing fenced block (if any) removed, stripped."""
    stripped = answer.strip()
    if stripped.startswith(FENCE):
        blocks = fenced_blocks(stripped)
        if len(blocks) != 1:
            return _fail("expected exactly one fenced block in the answer")
        stripped = blocks[0].content.strip()
    elif len(stripped) >= 2 and stripped[0] == stripped[-1] == "`" and "`" not in stripped[1:-1]:
        stripped = stripped[1:-1].strip()
    if not stripped and not allow_empty:
        return _fail("empty answer")
    return stripped


def parse_solution(
    text: str,
    task_type: TaskType,
    config: ParseConfig = DEFAULT_PARSE,
    *,
    allow_empty: bool = False,
) -> str | Rejected:
    """The solver's answer text: an output (deduction), an argument list (abduction) or a
    program (induction). Only the shape is checked here; the content is checked by the verifier.

    For induction the program may be bare or in a fenced block; with several fenced blocks
    exactly one must be tagged as Python. ``allow_empty`` accepts an empty deduction or
    abduction answer (the empty argument list of a function that takes no arguments).
    """
    empty_ok = allow_empty and task_type is not TaskType.INDUCTION
    answer = extract_answer(text, config, allow_empty=empty_ok)
    if isinstance(answer, Rejected):
        return answer
    if task_type is not TaskType.INDUCTION:
        return _unfence(answer, empty_ok)
    blocks = fenced_blocks(answer)
    if not blocks:
        program = textwrap.dedent(answer).strip()
    else:
        code = [b for b in blocks if b.tag in PYTHON_TAGS or not b.tag]
        if len(blocks) > 1 and len(code) != 1:
            return _fail("expected exactly one ```python block")
        # A fence indented inside a list or a quote indents its content too.
        program = textwrap.dedent((code or blocks)[0].content)
    if not program.strip():
        return _fail("empty program")
    return program


def parse_proposal(
    text: str,
    task_type: TaskType,
    *,
    n_inputs: int = 10,
    config: ParseConfig = DEFAULT_PARSE,
) -> Proposal | InductionProposal | Rejected:
    """Split a proposer's response into its parts (unvalidated).

    Deduction and abduction: exactly one ```` ```python ```` block and one ```` ```input ````
    block (which may be empty for a function without parameters). Induction: at least one
    ```` ```input ```` block (the first ``n_inputs`` are kept) and exactly one ```` ```message ````
    block. Blocks with other tags are ignored.
    """
    answer = extract_answer(text, config)
    if isinstance(answer, Rejected):
        return answer
    blocks = fenced_blocks(answer)
    inputs = [b.content.strip() for b in blocks if b.tag == "input"]
    if task_type is TaskType.INDUCTION:
        messages = [b.content.strip() for b in blocks if b.tag == "message"]
        if len(messages) != 1:
            return _fail(f"expected one ```message block, found {len(messages)}")
        if not messages[0]:
            return _fail("empty message")
        kept = tuple(i for i in inputs if i)[: max(n_inputs, 0)]
        if not kept:
            return _fail("no ```input blocks")
        return InductionProposal(kept, messages[0])
    programs = [b.content for b in blocks if b.tag in PYTHON_TAGS]
    if len(programs) != 1:
        return _fail(f"expected one ```python block, found {len(programs)}")
    if len(inputs) != 1:
        return _fail(f"expected one ```input block, found {len(inputs)}")
    if not programs[0].strip():
        return _fail("empty program")
    # An empty input block is the argument list of a function that takes none; validation
    # decides whether the program is one (and calls an empty input a format error otherwise).
    return Proposal(textwrap.dedent(programs[0]).strip("\n"), inputs[0])


def format_blocks(blocks: Iterable[tuple[str, str]]) -> str:
    """Render ``(tag, content)`` pairs as fenced blocks (used by prompts and tests)."""
    return "\n\n".join(f"{FENCE}{tag}\n{content}\n{FENCE}" for tag, content in blocks)


def format_response(answer: str, think: str = "") -> str:
    """A response in the expected format (used by prompts' examples and tests)."""
    return f"{THINK_OPEN}{think}{THINK_CLOSE}\n{ANSWER_OPEN}\n{answer}\n{ANSWER_CLOSE}"
