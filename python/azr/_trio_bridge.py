"""Completion of executor jobs into a trio event loop, without a thread per job.

Worker threads in Rust call back with each result; the callback hands it to the trio loop with
``run_sync_soon``, the one thread-safe entry point into trio.
"""

from __future__ import annotations

import contextlib
from typing import Any

import trio

from . import _executor


async def run_batch_async(pool: _executor.Pool, raw: list[Any]) -> list[Any]:
    n = len(raw)
    results: list[Any] = [None] * n
    if n == 0:
        return results
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    remaining = [n]
    cancel = _executor.CancelToken()

    def deliver(i: int, t: Any) -> None:
        results[i] = t
        remaining[0] -= 1
        if remaining[0] == 0:
            done.set()

    def callback_for(i: int) -> Any:
        def callback(t: Any) -> None:
            # If the loop is gone, nobody is waiting for this result.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(deliver, i, t)

        return callback

    try:
        for i, job in enumerate(raw):
            pool.submit(job, callback_for(i), cancel)
        await done.wait()
    except BaseException:
        cancel.cancel()
        raise
    return results
