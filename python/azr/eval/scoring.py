"""One entry point for scoring responses of any benchmark: extraction, then the family's
checker (code in the sandbox, math with math-verify)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from azr.executor import Executor

from .code_scoring import (
    CodeVerdict,
    EvalPlusScorer,
    TimeLimits,
    score_cruxeval,
    score_lcb,
)
from .data.problems import CodeProblem, CruxProblem, LcbProblem, MathProblem, Problem
from .math_scoring import check_math
from .results import Sample

__all__ = ["Scorer", "extract_prediction", "extract_program"]

_MAX_PROGRAM_CHARS = 200_000


def _answer_region(response: str) -> str:
    end = response.rfind("</answer>")
    if end >= 0:
        start = response.rfind("<answer>", 0, end)
        if start >= 0:
            return response[start + len("<answer>") : end]
    return response


def _fenced(text: str) -> list[tuple[str, str]]:
    """(language, body) of each complete ```fenced``` block, in order."""
    blocks = []
    pos = 0
    while True:
        start = text.find("```", pos)
        if start < 0:
            break
        line_end = text.find("\n", start)
        if line_end < 0:
            break
        end = text.find("```", line_end)
        if end < 0:
            break
        blocks.append((text[start + 3 : line_end].strip().lower(), text[line_end + 1 : end]))
        pos = end + 3
    return blocks


def extract_program(response: str) -> str | None:
    """The program in a response: the last ```python block of the answer (any fenced block if
    none is marked python), else the answer text itself if it looks like code."""
    region = _answer_region(response)
    blocks = _fenced(region) or _fenced(response)
    python = [b for lang, b in blocks if lang in ("python", "py", "python3")]
    chosen = python[-1] if python else (blocks[-1][1] if blocks else None)
    if chosen is None and ("def " in region or "import " in region or "print(" in region):
        chosen = region
    if chosen is None or not chosen.strip() or len(chosen) > _MAX_PROGRAM_CHARS:
        return None
    return chosen.strip("\n") + "\n"


def extract_prediction(response: str) -> str | None:
    """A CRUXEval answer: the answer region, without fences, backticks or an ``assert`` form."""
    text = _answer_region(response)
    blocks = _fenced(text)
    if blocks:
        text = blocks[-1][1]
    text = text.strip().strip("`").strip()
    if text.startswith("assert ") and "==" in text:
        # "assert f(x) == y": the side that is not the call is the answer.
        left, _, right = text[len("assert ") :].partition("==")
        text = right if left.strip().startswith("f(") else left
        text = text.strip()
    return text or None


def _sample(v: CodeVerdict, completion: str, extracted: str | None, gen_s: float) -> Sample:
    verdict = "passed" if v.passed else (v.first_failure or v.error or "failed")
    if v.internal:
        verdict = "internal"
    return Sample(
        completion=completion,
        extracted=extracted,
        passed=v.passed,
        verdict=verdict,
        base_passed=v.base_passed,
        generation_s=gen_s,
        scoring_ms=v.wall_ms,
    )


class Scorer:
    """Scores responses with a borrowed scoring executor (see :func:`azr.eval.suite.eval_limits`;
    reference outputs of EvalPlus problems are kept between calls). CRUXEval programs run under
    the executor's ordinary limits, in a small executor started on first use and closed by
    :meth:`close`."""

    def __init__(self, executor: Executor, limits: TimeLimits | None = None) -> None:
        self.executor = executor
        self.evalplus = EvalPlusScorer(executor, limits)
        self._crux_executor: Executor | None = None

    def close(self) -> None:
        if self._crux_executor is not None:
            self._crux_executor.close()
            self._crux_executor = None

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _crux(self) -> Executor:
        if self._crux_executor is None:
            self._crux_executor = Executor(self.executor.workers)
        return self._crux_executor

    def score(
        self,
        benchmark: str,
        items: Sequence[tuple[Problem, str]],
        generation_s: Sequence[float] | None = None,
    ) -> list[Sample]:
        """One :class:`Sample` per ``(problem, response)``, in order. Blocking (the sandbox
        runs with the GIL released; call it from a worker thread under trio)."""
        gen = list(generation_s) if generation_s is not None else [0.0] * len(items)
        out: list[Sample | None] = [None] * len(items)
        code: list[tuple[int, CodeProblem, str]] = []
        lcb: list[tuple[int, LcbProblem, str]] = []
        crux: list[tuple[int, CruxProblem, str]] = []
        for i, (p, response) in enumerate(items):
            match p:
                case MathProblem():
                    t = time.perf_counter()
                    m = check_math(p.answers, response)
                    ms = 1000 * (time.perf_counter() - t)
                    verdict = "passed" if m.passed else m.reason
                    out[i] = Sample(response, m.extracted, m.passed, verdict, None, gen[i], ms)
                case CodeProblem():
                    program = extract_program(response)
                    if program is None:
                        out[i] = Sample(response, None, False, "no_program", False, gen[i])
                    else:
                        if f"def {p.entry_point}" not in program:
                            # A body-only completion continues the prompt, as in EvalPlus.
                            program = p.prompt + program
                        code.append((i, p, program))
                case LcbProblem():
                    program = extract_program(response)
                    if program is None:
                        out[i] = Sample(response, None, False, "no_program", None, gen[i])
                    else:
                        lcb.append((i, p, program))
                case CruxProblem():
                    answer = extract_prediction(response)
                    if answer is None:
                        out[i] = Sample(response, None, False, "no_answer", None, gen[i])
                    else:
                        crux.append((i, p, answer))
        if code:
            verdicts = self.evalplus.score([(p, s) for _, p, s in code])
            for (i, _, s), v in zip(code, verdicts, strict=True):
                out[i] = _sample(v, items[i][1], s, gen[i])
        if lcb:
            verdicts = score_lcb(self.executor, [(p, s) for _, p, s in lcb])
            for (i, _, s), v in zip(lcb, verdicts, strict=True):
                out[i] = _sample(v, items[i][1], s, gen[i])
        if crux:
            mode = "input" if benchmark == "cruxeval-i" else "output"
            verdicts = score_cruxeval(self._crux(), [(p, a) for _, p, a in crux], mode)
            for (i, _, a), v in zip(crux, verdicts, strict=True):
                out[i] = _sample(v, items[i][1], a, gen[i])
        assert all(s is not None for s in out)
        return [s for s in out if s is not None]
