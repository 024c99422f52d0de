"""The generation protocol every rollout backend implements.

A backend turns prompts into sampled completions and accepts new policy weights from the learner.
Two implementations exist: an in-process torch backend (tests, CPU runs, small GPU runs) and an
SGLang server backend. Everything here that crosses a process boundary is a frozen msgspec Struct so
that actors can ship it as msgpack/JSON without bespoke serialisation.

Log-probability convention: ``Completion.logprobs`` holds, for each generated token, the
log-softmax of the policy's raw logits (temperature 1, no top-p truncation) under the weights
named by ``Completion.weight_version``. That is the quantity the learner recomputes for the PPO
ratio, so a freshly synced learner sees a ratio of 1 on its first update.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence

import msgspec

from azr.errors import AzrError

if typing.TYPE_CHECKING:
    import torch

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
    "UnsupportedWeightSource",
    "WeightSource",
    "WeightSyncError",
]

FinishReason = typing.Literal["stop", "length", "abort"]


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class GenerationError(AzrError):
    """A backend could not produce completions or accept weights."""


class InvalidRequest(GenerationError, ValueError):
    """A request cannot be served as given (e.g. an empty prompt and no beginning-of-text token)."""


class InvalidSamplingParams(InvalidRequest):
    """Sampling parameters are out of range (e.g. ``n < 1`` or ``top_p`` outside ``(0, 1]``)."""


class BackendClosed(GenerationError):
    """The backend was used after ``aclose()``."""


class BackendUnavailable(GenerationError):
    """The backend (e.g. an inference server) cannot be reached or failed mid-request."""


class WeightSyncError(GenerationError):
    """New weights could not be loaded; the backend keeps serving its previous weights."""


class UnsupportedWeightSource(WeightSyncError, TypeError):
    """This backend cannot load weights delivered this way (e.g. in-process weights to a server)."""


# --------------------------------------------------------------------------------------------------
# Requests and results
# --------------------------------------------------------------------------------------------------


class SamplingParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How to sample: ``n`` completions per prompt.

    ``temperature == 0`` means greedy decoding. ``stop`` strings end a completion (the text is cut
    before the stop string and ``finish_reason`` is ``"stop"``; the end-of-sequence token also
    stops). ``seed`` makes sampling reproducible on a given backend and device.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        # Validation lives here so a bad value fails at construction or decode time, at the
        # sender, rather than deep inside a backend.
        if self.n < 1:
            raise InvalidSamplingParams(f"n must be >= 1, got {self.n}")
        if not self.temperature >= 0.0:
            raise InvalidSamplingParams(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidSamplingParams(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise InvalidSamplingParams(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if any(not s for s in self.stop):
            raise InvalidSamplingParams("stop strings must be non-empty")
        if self.seed is not None and self.seed < 0:
            raise InvalidSamplingParams(f"seed must be >= 0, got {self.seed}")


class Completion(msgspec.Struct, frozen=True):
    """One sampled completion.

    ``token_ids`` are the generated tokens up to and including the one that ended generation: the
    token that completed a stop string, or the end-of-sequence token. They are kept so the learner
    trains on stopping. ``text`` is the decoded completion cut just before the stop string and
    without the end-of-sequence token. ``logprobs`` has one entry per ``token_ids`` entry; see the
    module docstring for the convention.
    """

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: FinishReason
    weight_version: int


class GenerationRequest(msgspec.Struct, frozen=True):
    prompts: tuple[str, ...]
    params: SamplingParams


class GenerationResult(msgspec.Struct, frozen=True):
    completions: tuple[tuple[Completion, ...], ...]  # [prompt][sample], n per prompt


# --------------------------------------------------------------------------------------------------
# Weight sources
# --------------------------------------------------------------------------------------------------


class CheckpointWeights(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="checkpoint"):
    """A Hugging Face model directory (config.json + safetensors + tokenizer files) on shared disk.

    Written by the learner; an SGLang server loads it via its update-weights-from-disk endpoint.
    """

    path: str
    version: int


class DistributedWeights(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="distributed"
):
    """Tensors broadcast over an already-initialised collective group, in the listed order.

    ``dtypes`` are torch dtype names without the ``torch.`` prefix (e.g. ``"bfloat16"``).
    """

    group_name: str
    names: tuple[str, ...]
    dtypes: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    version: int

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.dtypes) == len(self.shapes):
            raise WeightSyncError("names, dtypes and shapes must have the same length")


# The wire-level union: what an actor can send to a backend in another process.
WeightSource = CheckpointWeights | DistributedWeights


class InProcessWeights:
    """A state dict handed over inside one process, plus the version it represents.

    Deliberately not a msgspec message: it holds live tensors (possibly on a GPU, possibly shared
    with the learner's model) that have no meaning outside this process and would be far too large
    to serialise per update. Only backends that live in the learner's process accept it.
    """

    __slots__ = ("state_dict", "version")

    def __init__(self, state_dict: Mapping[str, torch.Tensor], version: int) -> None:
        self.state_dict = state_dict
        self.version = version

    def __repr__(self) -> str:
        return f"InProcessWeights(<{len(self.state_dict)} tensors>, version={self.version})"


# --------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------


class GenerationBackend(typing.Protocol):
    """A source of sampled completions whose weights the learner can replace.

    ``generate`` returns ``[prompt][sample]`` with ``params.n`` samples per prompt, in prompt order;
    ``generate_ids`` does the same for prompts given as token ids, which the backend conditions
    on exactly (no tokenization of its own, no token added), so a learner that trains on those
    ids sees the very prompt the completion was sampled from.
    ``update_weights`` returns the new ``weight_version``; after it returns, every completion that
    ``generate`` starts carries that version. ``aclose`` is idempotent; afterwards every call
    raises :class:`BackendClosed`.
    """

    weight_version: int

    async def generate(
        self, prompts: Sequence[str], params: SamplingParams
    ) -> list[list[Completion]]: ...

    async def generate_ids(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams
    ) -> list[list[Completion]]: ...

    async def update_weights(self, source: WeightSource) -> int: ...

    async def aclose(self) -> None: ...
