"""``results.json``: every scored sample, the settings that produced them, and the summary
table shaped like the paper's (code average, math average, overall)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec

from azr.errors import ConfigError

from .benchmarks import BENCHMARKS
from .passk import mean_pass_at_k

__all__ = [
    "BenchmarkResult",
    "ProblemResult",
    "Results",
    "Sample",
    "Settings",
    "format_table",
    "load_results",
    "metrics",
    "save_results",
    "summary",
]


class Sample(msgspec.Struct, frozen=True):
    completion: str
    extracted: str | None
    """The program or final answer taken from the completion (None: nothing found)."""
    passed: bool
    verdict: str
    """passed, or the reason it failed (wrong@3, timeout@0, no_answer, format, ...)."""
    base_passed: bool | None = None
    """HumanEval+/MBPP+: whether the original (base) tests passed."""
    generation_s: float = 0.0
    """Generation time of the call that produced it, divided by its samples."""
    scoring_ms: float = 0.0


class ProblemResult(msgspec.Struct):
    task_id: str
    samples: list[Sample] = msgspec.field(default_factory=list)


class BenchmarkResult(msgspec.Struct):
    name: str
    label: str
    family: str
    problems: dict[str, ProblemResult] = msgspec.field(default_factory=dict)


class Settings(msgspec.Struct, frozen=True):
    """What makes two runs' samples comparable; a rerun must match to reuse them."""

    model: str
    n: int
    temperature: float
    top_p: float
    max_new_tokens: int
    template: str
    seed: int


class Results(msgspec.Struct):
    settings: Settings
    benchmarks: dict[str, BenchmarkResult] = msgspec.field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Results)


def load_results(path: Path, settings: Settings) -> Results:
    """The results so far at ``path`` (new ones if there is no file); their settings must match."""
    if not path.exists():
        return Results(settings)
    try:
        results = _decoder.decode(path.read_bytes())
    except msgspec.DecodeError as e:
        raise ConfigError(f"{path} is not a results file of this version: {e}") from None
    if results.settings != settings:
        raise ConfigError(
            f"{path} holds results of other settings ({results.settings}); "
            "use another --out folder or the same settings"
        )
    return results


def save_results(path: Path, results: Results) -> None:
    """Writes atomically: an interrupted run keeps its previous complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = msgspec.json.format(_encoder.encode(results), indent=1)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _ks(n: int) -> list[int]:
    return [k for k in (1, 5, 10, 100) if k <= n]


def metrics(bench: BenchmarkResult) -> dict[str, float]:
    """pass@k (k = 1, 5, 10, 100 up to the samples per problem), in percent; HumanEval+ and
    MBPP+ also ``base_pass@k`` (the original tests only)."""
    scored = [p.samples for p in bench.problems.values() if p.samples]
    if not scored:
        return {}
    n = min(len(s) for s in scored)
    out: dict[str, float] = {"problems": float(len(scored))}
    for k in _ks(n):
        out[f"pass@{k}"] = 100.0 * mean_pass_at_k(
            [(n, sum(x.passed for x in s[:n])) for s in scored], k
        )
        if any(x.base_passed is not None for s in scored for x in s):
            counts = [(n, sum(bool(x.base_passed) for x in s[:n])) for s in scored]
            out[f"base_pass@{k}"] = 100.0 * mean_pass_at_k(counts, k)
    return out


def summary(results: Results) -> dict[str, float]:
    """pass@1 per benchmark, and the paper's code, math and overall averages (percent)."""
    out: dict[str, float] = {}
    code, math = [], []
    for name, m in results.metrics.items():
        if "pass@1" not in m:
            continue
        out[name] = m["pass@1"]
        family = BENCHMARKS[name].family
        if family == "code":
            code.append(m["pass@1"])
        elif family == "math":
            math.append(m["pass@1"])
    if code:
        out["code_avg"] = sum(code) / len(code)
    if math:
        out["math_avg"] = sum(math) / len(math)
    if code and math:
        out["overall"] = (out["code_avg"] + out["math_avg"]) / 2
    return out


def format_table(results: Results, order: Sequence[str] | None = None) -> str:
    """A plain-text table: code benchmarks, code average, math benchmarks, math average,
    overall (the paper's layout), then CRUXEval and the base scores, all pass@1 in percent."""
    names = list(order or results.benchmarks)
    labels = {n: b.label for n, b in results.benchmarks.items()}
    s = summary(results)
    cols: list[tuple[str, float | None]] = []
    for family, avg in (("code", "code_avg"), ("math", "math_avg")):
        members = [n for n in names if BENCHMARKS[n].family == family]
        cols += [(labels.get(n, n), s.get(n)) for n in members]
        if members:
            cols.append(("Code Avg" if family == "code" else "Math Avg", s.get(avg)))
    if "overall" in s:
        cols.append(("Overall", s["overall"]))
    cols += [(labels.get(n, n), s.get(n)) for n in names if BENCHMARKS[n].family == "reasoning"]
    for n in names:
        base = results.metrics.get(n, {}).get("base_pass@1")
        if base is not None:
            cols.append((f"{labels.get(n, n)} base", base))
    widths = [max(len(h), 6) for h, _ in cols]
    head = " | ".join(h.rjust(w) for (h, _), w in zip(cols, widths, strict=True))
    rule = "-+-".join("-" * w for w in widths)
    row = " | ".join(
        ("-" if v is None else f"{v:.1f}").rjust(w) for (_, v), w in zip(cols, widths, strict=True)
    )
    return f"{head}\n{rule}\n{row}"
