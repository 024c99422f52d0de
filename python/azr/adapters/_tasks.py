"""What every adapter shares: tasks carried as text through a trainer's dataset, and the
solver's response recovered from what a trainer hands a reward function.

Trainers move per-example metadata through Arrow or Parquet columns (TRL, veRL) or JSON
datasets (OpenRLHF). The three task types have different fields, so a column holding them as
objects would be widened to a union of all fields with nulls; one JSON string per task keeps
every row exact and round-trips through any of these formats.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from azr.tasks.types import SolveTask

__all__ = [
    "InvalidTask",
    "completion_text",
    "decode_task",
    "encode_task",
    "response_from_query",
]

_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final[msgspec.json.Decoder[SolveTask]] = msgspec.json.Decoder(SolveTask)
_ANCHOR_CHARS: Final = 256
"""How much of a prompt's end locates the response when a query does not start with the prompt
verbatim (see :func:`response_from_query`)."""


class InvalidTask(ValueError):
    """A task column (label, ground truth) that does not describe an azr solve task."""


def encode_task(task: SolveTask) -> str:
    """The JSON text of ``task`` (with its ``type`` tag), for a dataset column."""
    return _ENCODER.encode(task).decode()


@functools.lru_cache(maxsize=4096)
def _decode_text(text: str) -> SolveTask:
    # Every rollout of a prompt carries the same task text (GRPO repeats each prompt G times,
    # and the same prompts come back every epoch): decode each distinct text once.
    return _DECODER.decode(text)


def decode_task(value: object) -> SolveTask:
    """A solve task from a dataset cell: a task, its JSON text (:func:`encode_task`), its JSON
    bytes, or the mapping that JSON text decodes to.

    Raises :class:`InvalidTask` with the reason when ``value`` is none of these.
    """
    try:
        if isinstance(value, str):
            return _decode_text(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return _decode_text(bytes(value).decode())
        if isinstance(value, Mapping):
            task: SolveTask = msgspec.convert(dict(value), SolveTask)
            return task
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise InvalidTask(f"not an azr solve task: {exc}") from None
    if isinstance(value, SolveTask):
        return value
    raise InvalidTask(f"not an azr solve task: a {type(value).__name__}")


def completion_text(completion: object) -> str:
    """The text of one completion as a trainer passes it: a string, or a conversation (a list of
    ``{"role", "content"}`` messages, whose assistant turns are joined).

    Content given as a list of parts (``[{"type": "text", "text": ...}]``) is flattened.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence):
        turns = [m for m in completion if isinstance(m, Mapping)]
        assistant = [m for m in turns if m.get("role", "assistant") == "assistant"]
        return "".join(_content_text(m.get("content")) for m in assistant)
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    raise TypeError(f"a completion is a string or a list of messages, not {type(completion)!r}")


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return str(content)


def response_from_query(query: str, prompt: str | None) -> str | None:
    """The response part of ``query``, a prompt and its response decoded together.

    OpenRLHF sends the whole sequence (prompt and response detokenised as one, special tokens
    kept). The prompt has to go: every azr prompt spells out the ``<think>``/``<answer>`` tags
    it asks for, and those would be read as the model's own. When the query starts with the
    prompt verbatim, the rest is the response. Detokenising the prompt's ids does not always
    reproduce the prompt text exactly (whitespace or normalisation around special tokens), so
    otherwise the response starts after the first occurrence of the prompt's last characters,
    which end with the chat template's assistant header. None when neither locates it.
    """
    if prompt is None:
        return None
    if query.startswith(prompt):
        return query[len(prompt) :]
    anchor = prompt[-_ANCHOR_CHARS:].strip()
    if not anchor:
        return None
    at = query.find(anchor)
    if at < 0:
        return None
    rest = query[at + len(anchor) :]
    trailing = prompt[len(prompt.rstrip()) :]  # the prompt's own final whitespace, if kept
    return rest[len(trailing) :] if trailing and rest.startswith(trailing) else rest
