"""Shared by the service tests: running trio code under a deadline, tasks, and raw sockets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import trio

from azr.adapters import encode_task
from azr.tasks import AbductionTask, DeductionTask, InductionTask, IOPair

REVERSE: Final = DeductionTask(program="def f(s):\n    return s[::-1]", input="'ab'", output="'ba'")
DOUBLE_ABDUCTION: Final = AbductionTask(
    program="def f(x):\n    return x * 2", input="21", output="42"
)
INCREMENT: Final = InductionTask(
    program="def f(x):\n    return x + 1",
    message="adds one",
    shown=(IOPair("1", "2"),),
    hidden=(IOPair("5", "6"), IOPair("-1", "0")),
)
CHAT_PROMPT: Final = (
    "<|im_start|>user\nWhat does f return? Put it in <answer> </answer>.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
"""A prompt after a chat template, as OpenRLHF sends it (note the tags the prompt itself holds)."""


def answer(text: str) -> str:
    return f"<think>worked it out</think><answer>{text}</answer>"


def label(task: Any) -> str:
    return encode_task(task)


def run(fn: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """Run ``fn`` in a fresh trio loop under a hard deadline."""

    async def main() -> Any:
        with trio.fail_after(timeout):
            return await fn()

    return trio.run(main)


async def raw_exchange(port: int, data: bytes, *, read_until_close: bool = True) -> bytes:
    """Send raw bytes on a new connection and read until the server closes it."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        out = bytearray()
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return bytes(out)
            out += chunk
            if not read_until_close and b"\r\n\r\n" in out:
                return bytes(out)


def json_body(raw: bytes) -> Any:
    """The JSON body of the first response in ``raw``."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return msgspec.json.decode(rest[:length])


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])
