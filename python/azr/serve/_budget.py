"""What a request costs before any of it runs: host-side parsing and induction pairs.

Every answer is parsed on the host (into a syntax tree, never run) before anything goes to the
sandbox, and parsing dense code costs about 2 s of host CPU per MiB. Without a bound a single
32 MiB body of heavy induction answers held the service's thread for most of a minute. The
service therefore counts, before verifying anything, the characters it would parse (answers,
and for whole responses the answer inside them) and the induction pairs it would run, and
refuses a request over ``ServeConfig.max_parse_chars`` or ``max_pairs`` (or with an item over
``CheckConfig.max_induction_pairs``) with 413 and a message saying what to split.
"""

from __future__ import annotations

from collections.abc import Sequence

from azr.serve.schema import AbductionItem, DeductionItem, InductionItem, Item, ResponseItem
from azr.tasks.ast_checks import Rejected
from azr.tasks.parsing import ParseConfig, extract_answer
from azr.tasks.types import AbductionTask, InductionTask

__all__ = ["Cost", "request_cost"]


class Cost:
    """Characters to parse and induction pairs to run, with the largest item's pair count."""

    __slots__ = ("chars", "max_item_pairs", "max_pairs_at", "pairs")

    def __init__(self) -> None:
        self.chars = 0
        self.pairs = 0
        self.max_item_pairs = 0
        self.max_pairs_at = -1

    def add_pairs(self, index: int, n: int) -> None:
        self.pairs += n
        if n > self.max_item_pairs:
            self.max_item_pairs, self.max_pairs_at = n, index


def _answer_chars(response: str, parse: ParseConfig) -> int:
    # Finding the answer is a linear scan (C speed); only what is inside it gets parsed.
    answer = extract_answer(response, parse, allow_empty=True)
    return 0 if isinstance(answer, Rejected) else len(answer)


def request_cost(items: Sequence[Item], parse: ParseConfig) -> Cost:
    """The host parsing and pair work ``items`` would cause."""
    cost = Cost()
    for index, item in enumerate(items):
        match item:
            case DeductionItem():
                cost.chars += len(item.answer)
            case AbductionItem():
                # A blank answer makes the program itself be parsed (is it callable without
                # arguments?).
                cost.chars += len(item.answer) if item.answer.strip() else len(item.program)
            case InductionItem():
                cost.chars += len(item.answer)
                cost.add_pairs(index, len(item.pairs))
            case ResponseItem():
                chars = _answer_chars(item.response, parse)
                task = item.task
                if isinstance(task, AbductionTask) and chars == 0:
                    chars = len(task.program)
                cost.chars += chars
                if isinstance(task, InductionTask):
                    cost.add_pairs(index, len(task.hidden))
    return cost
