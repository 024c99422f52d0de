"""Stub for the compiled executor core (Rust, PyO3). Use :mod:`azr.executor` instead."""

from collections.abc import Callable
from os import PathLike
from typing import Self, final

_LimitsTuple = tuple[float, float, int, int, int, int, int, int, bool]
# (kind, program, inputs, expected, hash_seed, random_seed, clock_offset_s, time_limit_s, atol,
#  rtol, entry)
_JobTuple = tuple[int, str, str, str | None, int, int, float, float | None, float, float, str]
_ResultTuple = tuple[str, str | None, str | None, str, float, float, int, bool | None, bytes | None]

__all__ = [
    "ZYGOTE_SOURCE",
    "CancelToken",
    "Pool",
    "_zygote_prepare",
    "_zygote_serve",
    "values_equal",
]

ZYGOTE_SOURCE: str

@final
class CancelToken:
    def __new__(cls) -> Self: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

@final
class Pool:
    def __new__(
        cls,
        workers: int,
        python: str | PathLike[str],
        extension: str | PathLike[str],
        limits: _LimitsTuple,
    ) -> Self: ...
    def run_batch(self, jobs: list[_JobTuple]) -> list[_ResultTuple]: ...
    def submit(
        self,
        job: _JobTuple,
        callback: Callable[[_ResultTuple], object],
        cancel: CancelToken | None = None,
    ) -> None: ...
    def validate(self, job: _JobTuple) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def workers(self) -> int: ...
    def isolation(self) -> dict[str, object]: ...
    def stats(self) -> dict[str, int]: ...

def values_equal(a: bytes, b: bytes, atol: float = 0.0, rtol: float = 0.0) -> bool: ...
def _zygote_prepare(read_paths: list[str], staging: str, config: str) -> str: ...
def _zygote_serve(python: str) -> tuple[int, str, str, int, int, int, int, int, str] | None: ...
