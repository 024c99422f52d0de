"""The pretraining corpus: real Python source, generated programs with their outputs, and
self-play conversations, all a pure function of the recipe's seed.

Three kinds of document, interleaved in a seeded order:

* **Python source**: the interpreter's own standard library (a fixed list of pure-Python modules,
  cut at blank lines into pieces). License: the Python Software Foundation License (PSF-2.0), as
  recorded in :data:`STDLIB_LICENSE`; the recipe records each file's SHA-256, so a different
  interpreter version is seen as a different corpus rather than silently used.
* **Programs with outputs**: functions from :mod:`.programs`, each followed by ``assert f(...) ==
  ...`` lines whose values the project's sandboxed executor computed.
* **Conversations** in the exact turn format of self-play (``markers`` template) for all six
  (task type x role) prompts of :mod:`azr.tasks.prompts`. Proposer answers are generated programs
  (validated by the verifier as a proposal would be); solver answers are the executor's values.
  The answer is the target; the prompt is context, trained on at a lower weight (see
  :class:`~azr.pretrain.training.TrainSpec`).

Programs whose normalised hash is in the held-out evaluation set are skipped, so no held-out task
is ever in the corpus; a test checks the same for the public benchmarks.
"""

from __future__ import annotations

import hashlib
import random
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec
from msgspec.structs import replace as dataclass_replace

from azr.pretrain.programs import GeneratedProgram, generate, generate_warmup, program_hash
from azr.tasks.parsing import format_blocks, format_response
from azr.tasks.prompts import (
    propose_abduction_prompt,
    propose_deduction_prompt,
    propose_induction_prompt,
    solve_abduction_prompt,
    solve_deduction_prompt,
    solve_induction_prompt,
)
from azr.tasks.types import SEED_TRIPLET, InductionTask, ProposeRequest, TaskType, Triplet
from azr.verify import Verifier

__all__ = [
    "STDLIB_LICENSE",
    "STDLIB_MODULES",
    "CorpusSpec",
    "Document",
    "build_corpus",
    "conversation",
    "corpus_programs",
    "stdlib_documents",
    "stdlib_fingerprint",
]

STDLIB_LICENSE: Final = (
    "Python standard library source: Python Software Foundation License Version 2 (PSF-2.0), "
    "see LICENSE.txt in the interpreter's library directory"
)

STDLIB_MODULES: Final = (
    "bisect.py", "heapq.py", "textwrap.py", "string.py", "fractions.py", "statistics.py",
    "colorsys.py", "shlex.py", "difflib.py", "fnmatch.py", "glob.py", "posixpath.py",
    "keyword.py", "graphlib.py", "calendar.py", "base64.py", "operator.py", "functools.py",
    "reprlib.py", "copy.py", "numbers.py", "dataclasses.py", "enum.py", "ipaddress.py",
)  # fmt: skip
"""Pure-Python standard-library modules used as real source (present in every CPython 3.11+)."""

_THINK: Final = {
    ("solve", "deduction"): "I follow f step by step on this input.",
    ("solve", "abduction"): "I look for an argument that makes f return this value.",
    ("solve", "induction"): "I write f to match every example and the description.",
    ("propose", "deduction"): "A short function whose result needs some tracing.",
    ("propose", "abduction"): "A short function whose input is not just its output.",
    ("propose", "induction"): "Inputs that cover typical and edge cases, and a hint.",
}

TURN_OPEN: Final = "<|user|>"
TURN_CLOSE: Final = "<|end|><|assistant|><think>"
END: Final = "<|endoftext|>"


class Document(msgspec.Struct, frozen=True, array_like=True):
    """``target`` is trained on (ends with EOS); ``context`` at ``TrainSpec.context_weight``."""

    context: str
    target: str
    kind: str


class CorpusSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the corpus is made of (part of the pretraining recipe)."""

    seed: int = 0
    # At most this many distinct programs from the first ``3 * programs`` the generator draws
    # (its space of distinct programs is finite: 2,400 asked for gives 2,201).
    programs: int = 1200
    inputs_per_program: int = 6
    references: int = 2
    induction_inputs: int = 4
    stdlib_modules: tuple[str, ...] = STDLIB_MODULES
    stdlib_piece_chars: int = 1200
    # Solver conversations per program and type (deduction, abduction): the answers are a few
    # tokens each, so they are the scarce part of the corpus.
    solve_per_program: int = 2
    # Proposer conversations (all three types) for every n-th program only: they are long and
    # the format is learnt from a few hundred of them.
    propose_every: int = 1
    # One-line copy-and-transform programs (:func:`.programs.generate_warmup`) with their
    # asserts and solver conversations.
    warmup_programs: int = 0


def conversation(prompt: str, answer: str, role: str, task_type: str) -> tuple[str, str]:
    """``(context, target)`` of one self-play turn in the ``markers`` template."""
    response = format_response(answer, _THINK[(role, task_type)])
    assert response.startswith("<think>")
    return f"{TURN_OPEN}{prompt}{TURN_CLOSE}", response[len("<think>") :] + END


def _stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_fingerprint(modules: Sequence[str]) -> dict[str, str]:
    """SHA-256 of each standard-library file the corpus reads (recorded in the recipe)."""
    root = _stdlib_dir()
    return {m: hashlib.sha256((root / m).read_bytes()).hexdigest() for m in modules}


def stdlib_documents(modules: Sequence[str], piece_chars: int) -> list[Document]:
    """The modules' source, cut at blank lines into pieces of about ``piece_chars``."""
    docs: list[Document] = []
    root = _stdlib_dir()
    for name in modules:
        text = (root / name).read_text(encoding="utf-8")
        piece: list[str] = []
        size = 0
        for block in text.split("\n\n"):
            piece.append(block)
            size += len(block) + 2
            if size >= piece_chars:
                docs.append(Document("", "\n\n".join(piece) + "\n" + END, "python"))
                piece, size = [], 0
        if piece:
            docs.append(Document("", "\n\n".join(piece) + "\n" + END, "python"))
    return docs


def _asserts(triplets: Sequence[Triplet]) -> str:
    program = triplets[0].program
    lines = [f"assert f({t.input}) == {t.output}" for t in triplets]
    return f"{program}\n\n\n" + "\n".join(lines) + "\n" + END


def corpus_programs(
    spec: CorpusSpec, exclude: frozenset[str] = frozenset()
) -> list[GeneratedProgram]:
    """The distinct generated programs of the corpus (no sandbox needed): every program a
    corpus document contains, besides the identity seed triplet and the standard library."""
    programs: list[GeneratedProgram] = []
    seen: set[str] = set()
    for p in generate(spec.seed, spec.programs * 3, spec.inputs_per_program):
        h = program_hash(p.program)
        if h in exclude or h in seen:
            continue
        seen.add(h)
        programs.append(p)
        if len(programs) == spec.programs:
            break
    for p in _warmup_programs(spec, exclude):
        h = program_hash(p.program)
        if h not in seen:
            seen.add(h)
            programs.append(p)
    return programs


def _warmup_programs(spec: CorpusSpec, exclude: frozenset[str]) -> list[GeneratedProgram]:
    # Repeats are kept (their inputs differ): the one-line families have few distinct programs.
    drawn = generate_warmup(spec.seed + 1, spec.warmup_programs, spec.inputs_per_program)
    return [p for p in drawn if program_hash(p.program) not in exclude]


def build_corpus(
    spec: CorpusSpec, verifier: Verifier, exclude: frozenset[str] = frozenset()
) -> list[Document]:
    """Every document of the corpus, in its seeded training order.

    ``exclude`` holds normalised-program hashes (the held-out set) that must not appear.
    """
    rng = random.Random(spec.seed)
    programs = corpus_programs(dataclass_replace(spec, warmup_programs=0), exclude)
    warmup = _warmup_programs(spec, exclude)

    # The sandbox computes every output; the validation is the one a proposal goes through,
    # so every program and input in the corpus is one self-play would accept.
    flat = [(p, i) for p in [*programs, *warmup] for i in p.inputs]
    checked = verifier.validate_batch([p.program for p, _ in flat], [i for _, i in flat])
    by_program: dict[str, list[Triplet]] = {}
    for (p, _), v in zip(flat, checked, strict=True):
        if v.valid and v.triplet is not None:
            by_program.setdefault(p.program, []).append(v.triplet)

    docs: list[Document] = []
    pool: list[Triplet] = [SEED_TRIPLET]
    induction_requests: list[tuple[ProposeRequest, str, bool]] = []

    def solver_documents(triplets: list[Triplet]) -> None:
        docs.append(Document("", _asserts(triplets), "asserts"))
        k = min(len(triplets), spec.solve_per_program)
        for t in rng.sample(triplets, k):
            ctx, tgt = conversation(solve_deduction_prompt(t.program, t.input), t.output,
                                    "solve", "deduction")  # fmt: skip
            docs.append(Document(ctx, tgt, "solve/deduction"))
        for t in rng.sample(triplets, k):
            ctx, tgt = conversation(solve_abduction_prompt(t.program, t.output), t.input,
                                    "solve", "abduction")  # fmt: skip
            docs.append(Document(ctx, tgt, "solve/abduction"))

    for p in warmup:
        triplets = by_program.get(p.program, [])
        if len(triplets) >= 2:
            solver_documents(triplets)
    for index, p in enumerate(programs):
        triplets = by_program.get(p.program, [])
        if len(triplets) < 2:
            continue
        solver_documents(triplets)
        propose = index % spec.propose_every == 0
        t = rng.choice(triplets)
        for task_type, make in (
            ("deduction", propose_deduction_prompt),
            ("abduction", propose_abduction_prompt),
        ):
            refs = rng.sample(pool, min(len(pool), rng.randint(0, spec.references)))
            answer = format_blocks([("python", t.program), ("input", t.input)])
            ctx, tgt = conversation(make(refs), answer, "propose", task_type)
            if propose:
                docs.append(Document(ctx, tgt, f"propose/{task_type}"))
        pool.append(t)
        if len(pool) > 64:
            pool.pop(rng.randrange(1, len(pool)))
        n = spec.induction_inputs
        inputs = [x.input for x in triplets][:n]
        if len(inputs) == n:
            blocks = [("input", i) for i in inputs] + [("message", p.message)]
            request = ProposeRequest(TaskType.INDUCTION, program=t.program, n_inputs=n)
            induction_requests.append((request, format_response(format_blocks(blocks)), propose))

    # Induction: the proposer's answer goes through the real parser and validation, whose
    # task (shown and hidden pairs) is what the solver conversation shows.
    results = verifier.score_proposal_batch(
        [r for r, _, _ in induction_requests], [text for _, text, _ in induction_requests]
    )
    for (request, text, propose), result in zip(induction_requests, results, strict=True):
        task = getattr(result, "task", None)
        if not result.valid or not isinstance(task, InductionTask):
            continue
        assert request.program is not None
        answer = text[text.index("<answer>\n") + len("<answer>\n") : text.rindex("\n</answer>")]
        ctx, tgt = conversation(
            propose_induction_prompt(request.program, request.n_inputs), answer, "propose",
            "induction",
        )  # fmt: skip
        if propose:
            docs.append(Document(ctx, tgt, "propose/induction"))
        shown = [(x.input, x.output) for x in task.shown]
        ctx, tgt = conversation(
            solve_induction_prompt(task.message, shown),
            format_blocks([("python", task.program)]),
            "solve",
            "induction",
        )
        docs.append(Document(ctx, tgt, "solve/induction"))

    docs.extend(stdlib_documents(spec.stdlib_modules, spec.stdlib_piece_chars))
    rng.shuffle(docs)
    return docs
