"""``azr eval``: generate with a backend, score in the sandbox, write ``results.json``, print
the table. Reruns into the same ``--out`` skip every problem already scored."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
import trio

from azr.errors import ConfigError
from azr.executor import Executor
from azr.generation.base import Completion, SamplingParams

from .benchmarks import BENCHMARKS, label, load_benchmark, parse_benchmarks
from .code_scoring import TimeLimits
from .data.problems import Problem
from .prompts import Template, question, render
from .results import (
    BenchmarkResult,
    ProblemResult,
    Results,
    Settings,
    load_results,
    metrics,
    save_results,
)
from .scoring import Scorer
from .suite import eval_limits

__all__ = ["EvalOptions", "evaluate", "run_eval"]

_ANSWER_STOP = "</answer>"


class EvalOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``azr eval`` takes (see ``azr eval -h``)."""

    model: str | None = None
    """A local Hugging Face model folder or checkpoint; None is the built-in tiny model."""
    benchmarks: tuple[str, ...] = ("humaneval+",)
    backend: Literal["torch", "sglang"] = "torch"
    sglang_url: str | None = None
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 4096
    limit: int | None = None
    data_dir: str = "data/eval"
    out: str = "eval-out"
    template: Literal["auto", "plain", "chat", "markers"] = "auto"
    seed: int = 0
    batch_size: int = 32
    """Prompts per generation call (each with n samples)."""
    workers: int | None = None
    """Sandbox workers (None: one per CPU)."""
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError("n must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit must be >= 1")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        if self.backend == "sglang" and not self.sglang_url:
            raise ConfigError("the sglang backend needs --sglang-url (a running server)")
        parse_benchmarks(self.benchmarks)

    def template_name(self) -> Template:
        if self.template == "auto":
            return "markers" if self.model is None else "plain"
        return self.template

    def settings(self) -> Settings:
        return Settings(
            model=self.model or "tiny",
            n=self.n,
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            template=self.template_name(),
            seed=self.seed,
        )


def _response(c: Completion) -> str:
    # The backend cuts the text before the stop string; put the closing tag back so the
    # answer region is complete.
    return c.text + _ANSWER_STOP if c.finish_reason == "stop" else c.text


async def evaluate(
    backend: Any,
    tokenizer: Any,
    options: EvalOptions,
    scorer: Scorer,
    *,
    out_path: Path | None = None,
) -> Results:
    """Runs the benchmarks of ``options`` with ``backend`` (any generation backend) and scores
    them with ``scorer``; saves after every batch when ``out_path`` is given."""
    results = (
        load_results(out_path, options.settings())
        if out_path is not None
        else Results(options.settings())
    )
    template = options.template_name()
    params = SamplingParams(
        n=options.n,
        temperature=options.temperature,
        top_p=options.top_p,
        max_new_tokens=options.max_new_tokens,
        stop=(_ANSWER_STOP,),
        seed=options.seed,
    )
    data_dir = Path(options.data_dir)
    for name in parse_benchmarks(options.benchmarks):
        problems = load_benchmark(name, data_dir, options.limit)
        bench = results.benchmarks.setdefault(
            name, BenchmarkResult(name, label(name, problems), BENCHMARKS[name].family)
        )
        todo = [
            p
            for p in problems
            if len((bench.problems.get(p.task_id) or ProblemResult(p.task_id)).samples) < options.n
        ]
        bar = _progress(options.progress, len(problems), len(problems) - len(todo), bench.label)
        try:
            for start in range(0, len(todo), options.batch_size):
                chunk = todo[start : start + options.batch_size]
                await _run_chunk(backend, tokenizer, template, params, name, chunk, bench, scorer)
                results.metrics[name] = metrics(bench)
                if out_path is not None:
                    save_results(out_path, results)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        results.metrics[name] = metrics(bench)
    if out_path is not None:
        save_results(out_path, results)
    return results


async def _run_chunk(
    backend: Any,
    tokenizer: Any,
    template: Template,
    params: SamplingParams,
    name: str,
    chunk: Sequence[Problem],
    bench: BenchmarkResult,
    scorer: Scorer,
) -> None:
    prompts = [render(question(p, name), template, tokenizer) for p in chunk]
    t0 = time.perf_counter()
    completions = await backend.generate(prompts, params)
    per_sample = (time.perf_counter() - t0) / max(1, len(chunk) * params.n)
    items = [(p, _response(c)) for p, cs in zip(chunk, completions, strict=True) for c in cs]
    samples = await trio.to_thread.run_sync(
        lambda: scorer.score(name, items, [per_sample] * len(items))
    )
    for j, p in enumerate(chunk):
        mine = samples[j * params.n : (j + 1) * params.n]
        bench.problems[p.task_id] = ProblemResult(p.task_id, list(mine))


def _progress(enabled: bool, total: int, done: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=desc, unit="problem", file=sys.stderr)


async def _open_backend(options: EvalOptions) -> tuple[Any, Any]:
    if options.backend == "sglang":
        from azr.generation.sglang import SGLangBackend, SGLangConfig
        from azr.models import Tokenizer

        assert options.sglang_url is not None
        tokenizer = None
        if options.template_name() == "chat":
            if options.model is None:
                raise ConfigError("the chat template needs --model (its tokenizer)")
            tokenizer = Tokenizer.from_pretrained(options.model)
        return SGLangBackend(SGLangConfig(url=options.sglang_url)), tokenizer
    from azr.generation.torch import TorchBackend

    backend = await trio.to_thread.run_sync(
        lambda: TorchBackend.from_pretrained(options.model, device=options.device)
    )
    return backend, backend.tokenizer


def run_eval(options: EvalOptions, *, time_limits: TimeLimits | None = None) -> Results:
    """The whole command: open the backend and the sandbox, evaluate, write
    ``<out>/results.json``."""
    out_path = Path(options.out) / "results.json"

    async def main() -> Results:
        backend, tokenizer = await _open_backend(options)
        try:
            with (
                Executor(options.workers, eval_limits()) as executor,
                Scorer(executor, time_limits) as scorer,
            ):
                return await evaluate(backend, tokenizer, options, scorer, out_path=out_path)
        finally:
            with trio.CancelScope(shield=True):
                await backend.aclose()

    return trio.run(main)
