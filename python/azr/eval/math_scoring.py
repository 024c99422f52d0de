"""Math answers: extracting the final answer from a response and checking it with
``math-verify``.

``math-verify`` parses LaTeX with sympy in this process. It only ever sees answer *text* (the
benchmark's and the model's); nothing is executed. Its own time limits (signal based, so they
apply on the main thread) bound each parse and comparison, and answers longer than
:data:`MAX_ANSWER_CHARS` are rejected before parsing, so one pathological item cannot stall a
run.
"""

from __future__ import annotations

import threading

import msgspec

__all__ = [
    "MAX_ANSWER_CHARS",
    "MathVerdict",
    "answers_equivalent",
    "check_math",
    "extract_final_answer",
    "last_boxed",
]

MAX_ANSWER_CHARS = 1000
_TIMEOUT_S = 5
_BOXES = ("\\boxed", "\\fbox")


def last_boxed(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed x``) in
    ``text``, braces balanced; None if there is none."""
    start = max(text.rfind(b) for b in _BOXES)
    if start < 0:
        return None
    i = start + (len("\\boxed") if text.startswith("\\boxed", start) else len("\\fbox"))
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] != "{":
        # "\boxed 5": the answer runs to the next space or dollar sign.
        end = i
        while end < len(text) and text[end] not in " $\n":
            end += 1
        return text[i:end] or None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def _last_answer_tag(text: str) -> str | None:
    end = text.rfind("</answer>")
    if end < 0:
        return None
    start = text.rfind("<answer>", 0, end)
    if start < 0:
        return None
    return text[start + len("<answer>") : end].strip()


def extract_final_answer(response: str) -> str | None:
    """The final answer of a response: the last ``\\boxed{}``; failing that, the last
    ``<answer>...</answer>`` (whose own last ``\\boxed{}`` wins if it has one)."""
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed.strip()
    tagged = _last_answer_tag(response)
    if tagged is None:
        return None
    inner = last_boxed(tagged)
    return (inner if inner is not None else tagged).strip() or None


def _parse(answer: str) -> list[object]:
    from math_verify import parse

    # Boxed, so that LaTeX extraction takes the whole answer rather than a piece of it.
    on_main = threading.current_thread() is threading.main_thread()
    return list(parse(f"\\boxed{{{answer}}}", parsing_timeout=_TIMEOUT_S if on_main else None))


def answers_equivalent(gold: str, predicted: str) -> bool:
    """Whether two final answers are mathematically equivalent according to math-verify."""
    if len(predicted) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return False
    from math_verify import verify

    g, p = _parse(gold), _parse(predicted)
    if not g or not p:
        return False
    on_main = threading.current_thread() is threading.main_thread()
    return bool(verify(g, p, timeout_seconds=_TIMEOUT_S if on_main else None))


class MathVerdict(msgspec.Struct, frozen=True):
    passed: bool
    extracted: str | None
    reason: str
    """ok, wrong, no_answer, too_long."""


def check_math(answers: tuple[str, ...], response: str) -> MathVerdict:
    """Checks a response against the gold answer parts (several parts are one answer, e.g.
    OlympiadBench's multi-answer items, compared as a whole)."""
    extracted = extract_final_answer(response)
    if extracted is None:
        return MathVerdict(False, None, "no_answer")
    if len(extracted) > MAX_ANSWER_CHARS:
        return MathVerdict(False, extracted[:MAX_ANSWER_CHARS], "too_long")
    gold = ", ".join(answers)
    ok = answers_equivalent(gold, extracted)
    return MathVerdict(ok, extracted, "ok" if ok else "wrong")
