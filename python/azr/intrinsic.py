"""Optional intrinsic rewards for the proposer: program complexity, answer diversity, and
program-shape novelty.

The authors' code offers bonuses added to the learnability reward of a valid proposal whose
learnability is positive (``r_propose + sum(bonuses)``, its ``intrinsic_combine_method =
sum``); every one is off in its reproduction scripts, and off here by default. Each bonus is
``min(coef * score, max)``:

``complexity``
    The cognitive complexity of the proposed program divided by 15 (the official code's
    normalisation of the score it gets from the ``complexipy`` package). Computed here from the
    program's syntax tree, which the host already parses, following the published definition:
    +1 for each ``if``, ``elif``, ``else``, loop, conditional expression, ``except`` and
    ``case``, each boolean operator sequence and each recursive call; structures nested inside
    others add their nesting depth. Nothing is run. (Scores can differ from ``complexipy``'s in
    details; the scale is the same.)
``diversity``
    How surprising the proposal's answer is among the answers of the tasks admitted so far of
    its type (the output of a deduction task, the input of an abduction task, the error of an
    error-prediction task): ``1 - count(answer) / total``, and 1 for an answer never seen.
``novelty``
    Not in the authors' code: how surprising the proposed program's *shape* is among the
    programs admitted so far of its type, ``1 - count(shape) / total``. A shape is the syntax
    tree with every name and constant replaced by a placeholder of its kind, so ``n * 3`` and
    ``x * 7`` are one shape. Learnability alone lets a small proposer settle on one shape whose
    answers the solver half gets (every CPU run did within 30 steps), and the solver then
    practises one kind of program; this bonus pays for leaving it.

Both are pure functions of text and counts: no trio, no torch.
"""

from __future__ import annotations

import ast
import functools
from collections import Counter
from collections.abc import Iterable, Mapping

import msgspec

__all__ = [
    "AnswerCounts",
    "Bonus",
    "CountsState",
    "IntrinsicConfig",
    "cognitive_complexity",
    "complexity_score",
    "diversity_score",
    "program_shape",
    "proposal_bonus",
]

_COMPLEXITY_SCALE = 15.0


class Bonus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One bonus: ``min(coef * score, max)``; ``coef = 0`` turns it off."""

    coef: float = 0.0
    max: float = 0.5

    def __post_init__(self) -> None:
        if self.coef < 0 or self.max < 0:
            raise ValueError("an intrinsic bonus needs coef >= 0 and max >= 0")

    def __call__(self, score: float) -> float:
        return min(self.coef * score, self.max) if self.coef > 0 else 0.0


class IntrinsicConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The proposer bonuses (see the module docstring); all off by default."""

    complexity: Bonus = Bonus()
    diversity: Bonus = Bonus()
    novelty: Bonus = Bonus()

    @property
    def enabled(self) -> bool:
        return self.complexity.coef > 0 or self.diversity.coef > 0 or self.novelty.coef > 0


def cognitive_complexity(source: str) -> int:
    """The cognitive complexity of every function in ``source``; 0 when it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return 0
    total = 0
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for function in functions:
        # Iterative walk with the nesting level of each node (hostile nesting cannot overflow).
        stack: list[tuple[ast.AST, int]] = [(child, 0) for child in function.body]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
                continue
            inner = depth
            if isinstance(node, ast.If | ast.For | ast.AsyncFor | ast.While | ast.IfExp):
                total += 1 + depth
                inner = depth + 1
                orelse = getattr(node, "orelse", [])
                if (
                    isinstance(node, ast.If)
                    and orelse
                    and not (len(orelse) == 1 and isinstance(orelse[0], ast.If))
                ):
                    total += 1  # a plain else
            elif isinstance(node, ast.ExceptHandler | ast.match_case):
                total += 1 + depth
                inner = depth + 1
            elif isinstance(node, ast.BoolOp):
                total += 1
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == function.name
            ):
                total += 1  # recursion
            for child in ast.iter_child_nodes(node):
                # An ``elif`` continues its ``if`` rather than nesting inside it.
                elif_chain = (
                    isinstance(node, ast.If) and len(node.orelse) == 1 and child is node.orelse[0]
                )
                stack.append((child, depth if elif_chain else inner))
    return total


def complexity_score(source: str) -> float:
    """The official normalisation of cognitive complexity (divided by 15)."""
    return cognitive_complexity(source) / _COMPLEXITY_SCALE


@functools.lru_cache(maxsize=4096)
def program_shape(source: str) -> str:
    """The program's syntax tree with names, arguments and attributes renamed to ``_`` and
    constants replaced by their type name; the source itself when it does not parse.

    Cached: the coordinator asks for a proposal's shape twice, when it scores the proposal and
    when it admits it to the buffer."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return source
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            node.id = "_"
        elif isinstance(node, ast.arg):
            node.arg, node.annotation = "_", None
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.name, node.returns = "_", None
        elif isinstance(node, ast.Constant):
            node.value = type(node.value).__name__
    try:
        return ast.dump(tree, annotate_fields=False)
    except (RecursionError, MemoryError):
        return source


class AnswerCounts:
    """How often each answer (or program shape) occurred among admitted tasks of one type."""

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self._counts: Counter[str] = Counter(counts or {})

    def as_dict(self) -> dict[str, int]:
        """A copy of the counts (what a checkpoint stores)."""
        return dict(self._counts)

    def observe(self, answers: Iterable[str]) -> None:
        self._counts.update(answers)

    @property
    def total(self) -> int:
        return self._counts.total()

    def surprise(self, answer: str) -> float:
        return diversity_score(self._counts.get(answer, 0), self.total)


class CountsState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The counts behind the diversity and novelty bonuses, as a checkpoint stores them: per
    task type name, each answer (``answers``) or program shape (``shapes``) with its count.

    Stored because the buffers cannot give them back: a proposal that was a duplicate of a
    buffered task counts here but never entered the buffer.
    """

    answers: dict[str, dict[str, int]] = {}
    shapes: dict[str, dict[str, int]] = {}


def diversity_score(count: int, total: int) -> float:
    """``1 - count / total``; 1 for an answer never seen (or nothing seen yet)."""
    if count <= 0 or total <= 0:
        return 1.0
    return 1.0 - count / total


def proposal_bonus(
    config: IntrinsicConfig,
    program: str,
    answer: str,
    counts: AnswerCounts,
    shapes: AnswerCounts | None = None,
) -> float:
    """The bonuses of one valid proposal: its program's complexity, how surprising its answer is
    among ``counts`` (the answers of admitted tasks of its type) and its shape among ``shapes``
    (the shapes of those tasks' programs); 0 when all are off."""
    if not config.enabled:
        return 0.0
    bonus = config.complexity(complexity_score(program)) + config.diversity(counts.surprise(answer))
    if config.novelty.coef > 0 and shapes is not None:
        bonus += config.novelty(shapes.surprise(program_shape(program)))
    return bonus
