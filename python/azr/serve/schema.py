"""What goes over the wire: request and response bodies of ``azr serve``, as msgspec Structs.

The same types decode JSON and msgpack. Requests forbid unknown fields, so a misspelt field is
a 422 naming it rather than a silently ignored option.

``POST /v1/verify`` takes ``{"items": [...]}``; each item has a ``kind``:

* ``deduction``: ``program``, ``input``, ``answer`` (the predicted output), optional ``output``
  (the gold output; without it the program is run);
* ``abduction``: ``program``, ``output``, ``answer`` (the predicted argument list);
* ``induction``: ``answer`` (the predicted program), ``pairs`` (``[[input, output], ...]``);
* ``response``: ``task`` (a deduction, abduction or induction task, tagged by ``type``) and
  ``response`` (the model's whole response, parsed for its ``<answer>``).

It answers ``{"verdicts": [{"correct", "reward", "reason", "detail"}, ...]}`` in item order.

``POST /get_reward`` speaks OpenRLHF's remote reward protocol (see
:mod:`azr.adapters.openrlhf`).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from azr.tasks.types import IOPair, SolveTask
from azr.verify import Verdict

__all__ = [
    "AbductionItem",
    "DeductionItem",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "InductionItem",
    "Item",
    "OpenRLHFReply",
    "OpenRLHFRequest",
    "ResponseItem",
    "VerifyReply",
    "VerifyRequest",
]


class DeductionItem(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="deduction", tag_field="kind"
):
    """Is ``answer`` what ``program`` returns on ``input``?"""

    program: str
    input: str
    answer: str
    output: str | None = None


class AbductionItem(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="abduction", tag_field="kind"
):
    """Does ``program`` return ``output`` on the argument list ``answer``?"""

    program: str
    output: str
    answer: str


class InductionItem(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="induction", tag_field="kind"
):
    """Does the program ``answer`` map every input of ``pairs`` to its output?"""

    answer: str
    pairs: list[IOPair]


class ResponseItem(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="response", tag_field="kind"
):
    """Parse a full solver ``response`` to ``task`` and check its answer."""

    task: SolveTask
    response: str


Item = DeductionItem | AbductionItem | InductionItem | ResponseItem


class VerifyRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    items: list[Item]


class VerifyReply(msgspec.Struct, frozen=True):
    verdicts: list[Verdict]


class OpenRLHFRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What OpenRLHF's remote reward client posts. ``query``: prompt and response decoded
    together; ``prompts``: the prompts alone; ``labels``: each task, as its JSON text (the
    dataset's label column) or as the task object."""

    query: list[str]
    prompts: list[str] | None = None
    labels: list[str | SolveTask] | None = None


class OpenRLHFReply(msgspec.Struct, frozen=True):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]


class ErrorDetail(msgspec.Struct, frozen=True):
    status: int
    code: str
    """Stable, machine-readable: ``bad_request``, ``invalid_request``, ``body_too_large``,
    ``too_many_items``, ``too_many_pairs``, ``too_much_code``, ``unsupported_media_type``,
    ``not_acceptable``, ``not_found``, ``method_not_allowed``, ``overloaded``,
    ``shutting_down``, ``request_timeout``, ``headers_too_large``, ``internal``."""
    message: str


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorDetail


class Health(msgspec.Struct, frozen=True):
    status: Literal["ok", "draining"]
    inflight: int
    queued: int
    connections: int
    workers: int
    isolation: dict[str, object]
