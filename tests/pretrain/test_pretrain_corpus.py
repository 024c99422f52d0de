"""The pretraining corpus: seeded, free of benchmark items and of the held-out set."""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from azr.eval.heldout import heldout_hashes, heldout_programs
from azr.pretrain.corpus import corpus_programs, stdlib_documents
from azr.pretrain.programs import generate, generate_warmup, program_hash
from azr.pretrain.recipe import RECIPES
from azr.tasks.normalize import normalize_program

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
RECIPE = RECIPES["cpu-base"]


def _function_hashes(source: str) -> Iterator[str]:
    """The normalised hash of every function defined anywhere in ``source`` (each on its own,
    renamed to ``f``), so a benchmark function hidden in a larger file is still found."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            normalized = normalize_program(ast.unparse(node))
            text = getattr(normalized, "source", None)
            if text is not None:
                yield hashlib.sha256(text.encode()).hexdigest()


def _jsonl(path: Path) -> list[dict[str, object]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _benchmark_sources() -> list[str]:
    sources: list[str] = []
    crux = DATA / "cruxeval" / "cruxeval-dev.jsonl"
    if crux.exists():
        sources += [str(r["code"]) for r in _jsonl(crux)]
    for name in ("HumanEvalPlus.jsonl.gz", "MbppPlus.jsonl.gz"):
        path = DATA / "eval" / "evalplus" / name
        if path.exists():
            sources += [f"{r['prompt']}{r['canonical_solution']}" for r in _jsonl(path)]
            sources += [str(r["canonical_solution"]) for r in _jsonl(path)]
    lcb = DATA / "eval" / "livecodebench" / "livecodebench_v5_public.json.gz"
    if lcb.exists():
        with gzip.open(lcb, "rt", encoding="utf-8") as f:
            sources += [str(r.get("starter_code") or "") for r in json.load(f)]
    return sources


def _corpus_function_hashes() -> set[str]:
    hashes = {program_hash(p.program) for p in corpus_programs(RECIPE.corpus, heldout_hashes())}
    for doc in stdlib_documents(RECIPE.corpus.stdlib_modules, RECIPE.corpus.stdlib_piece_chars):
        hashes.update(_function_hashes(doc.target.removesuffix("<|endoftext|>")))
    return hashes


def test_generator_is_a_pure_function_of_its_seed() -> None:
    assert generate(3, 50) == generate(3, 50)
    assert generate(3, 50) != generate(4, 50)
    for p in generate(5, 200):
        assert not hasattr(normalize_program(p.program), "reason"), p.program
        assert len(set(p.inputs)) == len(p.inputs) >= 1


def test_warmup_programs_are_a_pure_function_of_their_seed() -> None:
    assert generate_warmup(3, 50) == generate_warmup(3, 50)
    assert generate_warmup(3, 50) != generate_warmup(4, 50)
    for p in generate_warmup(5, 200):
        assert not hasattr(normalize_program(p.program), "reason"), p.program
        assert p.family == "warmup" and len(set(p.inputs)) == len(p.inputs) >= 1


def test_no_benchmark_program_is_in_the_corpus() -> None:
    sources = _benchmark_sources()
    if not sources:
        pytest.skip("the benchmark data is not present")
    benchmark = {h for s in sources for h in _function_hashes(s)}
    assert len(benchmark) > 500  # the files were really read and their functions parsed
    overlap = benchmark & _corpus_function_hashes()
    assert not overlap


def test_no_math_problem_text_is_in_the_corpus() -> None:
    math_dir = DATA / "eval" / "math"
    if not math_dir.exists():
        pytest.skip("the math sets are not present")
    texts = [d.target for d in stdlib_documents(RECIPE.corpus.stdlib_modules, 10**9)]
    texts += [p.program + p.message for p in corpus_programs(RECIPE.corpus, heldout_hashes())]
    corpus = "\n".join(texts)
    for path in sorted(math_dir.glob("*.jsonl")):
        for row in _jsonl(path):
            problem = str(row.get("problem") or row.get("question") or "")
            assert len(problem) < 40 or problem not in corpus


def test_held_out_programs_are_not_in_the_corpus() -> None:
    held = heldout_hashes(RECIPE.heldout)
    assert len(held) == len(heldout_programs(RECIPE.heldout)) > 0
    programs = corpus_programs(RECIPE.corpus, held)
    corpus = {program_hash(p.program) for p in programs}
    assert len(corpus) == len(programs)
    # At most ``programs`` distinct generated ones (the generator's space runs out first).
    assert 2000 < sum(p.family != "warmup" for p in programs) <= RECIPE.corpus.programs
    assert sum(p.family == "warmup" for p in programs) > 0
    assert not held & corpus
    # Without the exclusion the same seed would have produced some of them: the check matters.
    unfiltered = {program_hash(p.program) for p in corpus_programs(RECIPE.corpus)}
    assert held & unfiltered
