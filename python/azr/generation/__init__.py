"""Rollout generation: the backend protocol and its in-process torch implementation.

``TorchBackend`` is imported lazily so that users of the protocol alone (e.g. an SGLang client)
do not pay for importing torch.
"""

from __future__ import annotations

import typing

from azr.generation.base import (
    BackendClosed,
    BackendUnavailable,
    CheckpointWeights,
    Completion,
    DistributedWeights,
    FinishReason,
    GenerationBackend,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    InProcessWeights,
    InvalidRequest,
    InvalidSamplingParams,
    SamplingParams,
    UnsupportedWeightSource,
    WeightSource,
    WeightSyncError,
)

if typing.TYPE_CHECKING:
    from azr.generation.torch import TorchBackend

__all__ = [
    "BackendClosed",
    "BackendUnavailable",
    "CheckpointWeights",
    "Completion",
    "DistributedWeights",
    "FinishReason",
    "GenerationBackend",
    "GenerationError",
    "GenerationRequest",
    "GenerationResult",
    "InProcessWeights",
    "InvalidRequest",
    "InvalidSamplingParams",
    "SamplingParams",
    "TorchBackend",
    "UnsupportedWeightSource",
    "WeightSource",
    "WeightSyncError",
]


def __getattr__(name: str) -> typing.Any:
    if name == "TorchBackend":
        from azr.generation.torch import TorchBackend

        return TorchBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
