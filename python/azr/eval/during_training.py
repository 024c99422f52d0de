"""Benchmarks during training: the same evaluator as ``azr eval``, on the policy the run is
generating with, logged as ``eval/<benchmark>`` (pass@1, percent) plus ``eval/code_avg``,
``eval/math_avg`` and ``eval/overall``.

The coordinator knows nothing of benchmarks: it takes any ``async (step) -> metrics`` hook and
calls it every ``run.eval_every`` steps. :func:`benchmark_hook` builds that hook over the run's
generation backend (greedy, one sample per problem).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from azr.executor import Executor

from .prompts import Template
from .results import Results, summary
from .runner import EvalOptions, evaluate
from .scoring import Scorer
from .suite import eval_limits

__all__ = ["BenchmarkEvaluator", "EvalHook", "benchmark_hook"]

EvalHook = Callable[[int], Awaitable[dict[str, float]]]


def _flat(results: Results) -> dict[str, float]:
    return {f"eval/{k}": v for k, v in summary(results).items()}


class BenchmarkEvaluator:
    """Owns a scoring sandbox for the length of a run; :meth:`evaluate` scores the backend's
    current weights on the configured benchmarks."""

    def __init__(
        self,
        benchmarks: Sequence[str],
        *,
        data_dir: str,
        limit: int | None = None,
        max_new_tokens: int = 1024,
        template: Template = "plain",
        workers: int | None = None,
    ) -> None:
        self.options = EvalOptions(
            benchmarks=tuple(benchmarks),
            data_dir=data_dir,
            limit=limit,
            max_new_tokens=max_new_tokens,
            template=template,
            progress=False,
        )
        self._executor = Executor(workers, eval_limits())
        self._scorer = Scorer(self._executor)

    async def evaluate(self, backend: Any, tokenizer: Any) -> dict[str, float]:
        results = await evaluate(backend, tokenizer, self.options, self._scorer)
        return _flat(results)

    def close(self) -> None:
        self._scorer.close()
        self._executor.close()


def benchmark_hook(evaluator: BenchmarkEvaluator, backend: Any, tokenizer: Any) -> EvalHook:
    """The coordinator's hook: evaluate the backend as it is at that step."""

    async def hook(step: int) -> dict[str, float]:
        return await evaluator.evaluate(backend, tokenizer)

    return hook
