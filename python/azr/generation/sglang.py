"""A :class:`~azr.generation.base.GenerationBackend` that talks to SGLang over HTTP.

This module is a client only: it speaks SGLang's native HTTP API and never imports SGLang, torch
or CUDA. The server (``python -m sglang.launch_server``) or an ``sglang-router`` in front of
several servers runs elsewhere; :func:`launch_sglang_server` only builds its command line and
:func:`wait_healthy` only probes it. SGLang needs a GPU, so CI tests this client against a
recorded protocol: request/response fixtures written from SGLang's documented API and served by a
real HTTP server on loopback (``tests/generation/test_sglang.py``).

Generation
    :meth:`SGLangBackend.generate_ids` sends prompts as token ids (``input_ids``), so the server
    conditions on exactly the tokens the learner later trains on, whatever the tokenizer (one
    that adds a beginning-of-sequence token included); self-play uses it. :meth:`generate`
    sends text (``text``), which the server tokenizes itself. Either goes to ``POST /generate``
    as a list, with ``return_logprob: true``.
    Large calls are split into requests of at most ``max_batch_sequences`` sequences that run
    concurrently, at most ``max_concurrency`` at a time. ``n > 1`` is sent, by default
    (``parallel_sampling="client"``), by repeating each prompt ``n`` times, as SGLang's docs
    advise over ``sampling_params.n``: every sample is its own request that the server schedules
    on its own, and can carry its own ``sampling_seed`` derived from ``(seed, prompt index,
    sample index)`` (SGLang copies one ``sampling_seed`` to all ``n`` parallel samples, which
    would make them identical). ``parallel_sampling="server"`` sends ``n`` instead (SGLang then
    returns ``len(text) * n`` results, prompt-major), unless a seed is given.
    ``sampling_seed`` exists from SGLang 0.5.3 on; before the first seeded request the client
    reads the version from ``GET /get_server_info`` once, and an older server (or one that does
    not say) gets no seeds and one warning, rather than a request it would reject.

    Every knob SGLang could otherwise take from the model's ``generation_config.json`` (its
    default ``--sampling-defaults model``) is sent explicitly: ``top_k=-1``, ``min_p=0`` and
    neutral penalties, so the server samples exactly what :class:`SamplingParams` says.
    Seeds only make sampling reproducible on servers started with
    ``--enable-deterministic-inference``.

Log-probabilities
    SGLang reports ``meta_info.output_token_logprobs`` as ``[logprob, token_id, text]`` per
    generated token. By default those are taken after temperature scaling; the protocol wants the
    log-softmax of the raw logits, which SGLang returns when the server runs with
    ``SGLANG_RETURN_ORIGINAL_LOGPROB=1`` (:func:`launch_sglang_server` sets it). At temperature 1
    both agree. ``output_ids`` already follows the protocol: it keeps the token that completed a
    stop string or the end-of-sequence token, while ``text`` is cut before the stop string.

Weight versions
    Each completion is stamped with the version this client believed the server held when the
    HTTP request that produced it was sent. Requests are held back while a weight update runs,
    so a request sent after an update carries the new version. A request already running when
    an update starts is paused with it: with the default ``pause_mode="abort"`` it comes back
    early with ``finish_reason="abort"`` and the tokens it had so far (the actors never train
    on those). ``pause_mode="retract"`` would keep it queued on the server instead, to be
    recomputed on the new weights, but see below: SGLang cannot flush its cache then.

Weight sync
    ``update_weights`` (or, for a bucketed NCCL sync, :meth:`SGLangBackend.weight_update`)
    follows this order on every worker: ``/pause_generation``; then
    ``/update_weights_from_disk`` (a checkpoint directory the learner wrote) or one
    ``/update_weights_from_distributed`` per bucket (tensors the learner broadcasts over a
    collective group set up with :meth:`SGLangBackend.init_weights_update_group`; the tensor
    side is :mod:`azr.generation.weight_broadcast`), each sent with ``flush_cache: false``;
    then one ``/flush_cache``; then ``/continue_generation``. Each phase goes to all workers at
    once and finishes everywhere before the next begins; the collective calls would deadlock if
    sent one worker at a time.
    Why this order: the prefix cache must not outlive the weights that computed it, and SGLang
    flushes only when it holds no request (it answers 400 otherwise, and a flush requested
    inside an update that fails makes it assert). An ``abort`` pause returns once no request
    is left, so the flush finds the server idle; a ``retract`` pause puts running requests
    back in the queue, where they block the flush. So the flush comes once, last, as its own
    request: a refusal (the tail of an abort) is retried ``flush_attempts`` times with backoff,
    counted in ``SGLangBackend.flush_refusals`` and logged, and a worker that still refuses
    raises :class:`SGLangCacheNotFlushed` after the workers are resumed (the weights are
    loaded and the version advanced; what may be stale is named). A disk update under
    ``retract`` is refused up front: SGLang flushes after a disk load whatever the request
    says, and asserts that it worked.

Router
    With ``router=True`` generation goes through the router URL, and control calls go to every
    worker, discovered from the router's ``GET /workers`` (``sgl-model-gateway``) or, on older
    routers, ``GET /list_workers``. ``worker_urls`` names the workers explicitly instead.

Errors
    Connection failures, 5xx and 429 are retried with exponential backoff; other 4xx are not.
    Everything raised derives from :class:`~azr.generation.base.GenerationError` and carries the
    server's own message. A failed ``generate`` raises for the whole call and says how many of its
    prompts failed; nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import sys
import typing
from collections.abc import Mapping, Sequence

import httpx
import msgspec
import trio

from azr.errors import ConfigError
from azr.generation.base import (
    BackendClosed,
    BackendUnavailable,
    CheckpointWeights,
    Completion,
    DistributedWeights,
    FinishReason,
    GenerationError,
    InvalidRequest,
    SamplingParams,
    UnsupportedWeightSource,
    WeightSource,
    WeightSyncError,
)

__all__ = [
    "SGLangBackend",
    "SGLangCacheNotFlushed",
    "SGLangConfig",
    "SGLangConnectionError",
    "SGLangError",
    "SGLangLaunch",
    "SGLangModelInfo",
    "SGLangProtocolError",
    "SGLangRejected",
    "SGLangServerError",
    "SGLangTimeout",
    "SGLangWeightUpdate",
    "launch_sglang_server",
    "wait_healthy",
]

logger = logging.getLogger(__name__)

# SGLang's third mode, "in_place", keeps running requests on their KV cache, so the cache cannot be
# flushed, and SGLang asserts that the flush accompanying a weight update succeeds.
PauseMode = typing.Literal["abort", "retract"]
ParallelSampling = typing.Literal["server", "client"]

# SGLang and sglang-router retry these themselves; 429 is the router's "queue full, come back".
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Seeds stay below 2**31 so that no server-side int32 path can overflow them.
_SEED_MASK = (1 << 31) - 1
# How much of an unparseable body to quote in an error message.
_SNIPPET = 300


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class SGLangError(GenerationError):
    """Base of the errors this client raises; ``url`` and ``status`` say where it happened."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status

    def with_message(self, message: str) -> SGLangError:
        """The same kind of error with a new message (used to add context such as counts)."""
        return type(self)(message, url=self.url, status=self.status)


class SGLangRejected(SGLangError, InvalidRequest):
    """The server answered 4xx: the request cannot be served as sent. Never retried."""


class SGLangServerError(SGLangError, BackendUnavailable):
    """The server kept answering 5xx (or 429) until the retries ran out."""


class SGLangConnectionError(SGLangError, BackendUnavailable):
    """The server could not be reached, or dropped the connection, until the retries ran out."""


class SGLangTimeout(SGLangError, BackendUnavailable):
    """A request took longer than its timeout. Not retried: it would most likely time out again."""


class SGLangProtocolError(SGLangError):
    """The server's answer is not what SGLang's documented protocol says (bad JSON, wrong shape)."""


class SGLangCacheNotFlushed(SGLangError, WeightSyncError):
    """New weights loaded, but a worker kept refusing to flush its cache, which may still hold
    prefixes computed with the previous weights."""


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


class SGLangConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where the server is and how to talk to it.

    ``url`` is one SGLang server, or an ``sglang-router`` when ``router`` is true. Control calls
    (weight sync) go to ``worker_urls`` when given, else to the router's workers, else to ``url``.
    ``max_batch_sequences`` bounds one ``/generate`` request (prompts times samples);
    ``max_concurrency`` bounds the ``/generate`` requests in flight from this client.
    """

    url: str
    router: bool = False
    worker_urls: tuple[str, ...] = ()
    max_concurrency: int = 8
    max_batch_sequences: int = 256
    parallel_sampling: ParallelSampling = "client"
    pause_mode: PauseMode = "abort"
    flush_attempts: int = 3
    request_timeout_s: float = 900.0
    control_timeout_s: float = 900.0
    connect_timeout_s: float = 10.0
    max_retries: int = 3
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 10.0
    api_key: str | None = None

    def __post_init__(self) -> None:
        for url in (self.url, *self.worker_urls):
            _check_url(url)
        if self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_batch_sequences < 1:
            raise ConfigError(f"max_batch_sequences must be >= 1, got {self.max_batch_sequences}")
        for name in ("request_timeout_s", "control_timeout_s", "connect_timeout_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.flush_attempts < 1:
            raise ConfigError(f"flush_attempts must be >= 1, got {self.flush_attempts}")
        if not 0 <= self.retry_backoff_s <= self.retry_backoff_max_s:
            raise ConfigError("need 0 <= retry_backoff_s <= retry_backoff_max_s")
        # msgspec checks Literal fields when decoding, not when constructing.
        if self.parallel_sampling not in typing.get_args(ParallelSampling):
            raise ConfigError(f"unknown parallel_sampling {self.parallel_sampling!r}")
        if self.pause_mode not in typing.get_args(PauseMode):
            raise ConfigError(f"unknown pause_mode {self.pause_mode!r}")


def _check_url(url: str) -> None:
    if not url.startswith(("http://", "https://")) or len(url.rstrip("/")) <= len("https://"):
        raise ConfigError(f"expected an http(s):// URL, got {url!r}")


# --------------------------------------------------------------------------------------------------
# Wire format (SGLang's native API). Field names are SGLang's; see the module docstring.
# --------------------------------------------------------------------------------------------------


class _WireSamplingParams(msgspec.Struct, omit_defaults=True):
    temperature: float
    top_p: float
    top_k: int  # -1: the whole vocabulary
    min_p: float
    repetition_penalty: float
    frequency_penalty: float
    presence_penalty: float
    max_new_tokens: int
    n: int = 1
    stop: list[str] | None = None
    sampling_seed: int | None = None


class _GenerateRequest(msgspec.Struct, omit_defaults=True):
    sampling_params: _WireSamplingParams | list[_WireSamplingParams]
    return_logprob: bool
    # Exactly one of the two is sent: SGLang tokenizes ``text`` itself, takes ``input_ids`` as is.
    text: list[str] | None = None
    input_ids: list[list[int]] | None = None


class _FinishReason(msgspec.Struct):
    type: str
    matched: int | str | None = None
    message: str | None = None


class _MetaInfo(msgspec.Struct):
    finish_reason: _FinishReason | None = None
    output_token_logprobs: list[tuple[float | None, int, str | None]] | None = None


class _GenerateItem(msgspec.Struct, kw_only=True):
    text: str
    output_ids: list[int] | None = None
    meta_info: _MetaInfo


class _PauseRequest(msgspec.Struct):
    mode: str


class _UpdateFromDiskRequest(msgspec.Struct):
    model_path: str
    weight_version: str
    flush_cache: bool


class _UpdateFromDistributedRequest(msgspec.Struct):
    names: list[str]
    dtypes: list[str]
    shapes: list[list[int]]
    group_name: str
    weight_version: str
    flush_cache: bool


class _InitGroupRequest(msgspec.Struct):
    master_address: str
    master_port: int
    rank_offset: int
    world_size: int
    group_name: str
    backend: str


class _ControlResult(msgspec.Struct):
    # update_weights_* and init_weights_update_group answer {"success": ..., "message": ...}.
    success: bool = True
    message: str = ""


class _GatewayWorker(msgspec.Struct):
    url: str


class _GatewayWorkers(msgspec.Struct):
    workers: list[_GatewayWorker]


class _RouterWorkers(msgspec.Struct):
    urls: list[str]


class _ServerInfo(msgspec.Struct):
    # /get_server_info answers with the server arguments and more; only the version matters.
    version: str | None = None


# The first SGLang release whose sampling parameters include sampling_seed (September 2025).
_SAMPLING_SEED_SINCE = (0, 5, 3)
_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def _parse_version(text: str | None) -> tuple[int, int, int] | None:
    match = _VERSION.match(text or "")
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


class SGLangModelInfo(msgspec.Struct, frozen=True):
    """What ``GET /get_model_info`` reports (fields older servers lack are ``None``)."""

    model_path: str
    tokenizer_path: str | None = None
    is_generation: bool | None = None
    weight_version: str | None = None


class _ErrorDetail(msgspec.Struct):
    message: str | None = None


class _ErrorBody(msgspec.Struct):
    # SGLang answers {"error": {"message": ...}} from /generate, {"message": ...} from its
    # exception handlers and control endpoints, and FastAPI itself {"detail": ...}.
    error: _ErrorDetail | str | None = None
    message: str | None = None
    detail: str | None = None


_encoder = msgspec.json.Encoder()
_generate_decoder = msgspec.json.Decoder(list[_GenerateItem])
_control_decoder = msgspec.json.Decoder(_ControlResult)
_gateway_decoder = msgspec.json.Decoder(_GatewayWorkers)
_router_decoder = msgspec.json.Decoder(_RouterWorkers)
_model_info_decoder = msgspec.json.Decoder(SGLangModelInfo)
_server_info_decoder = msgspec.json.Decoder(_ServerInfo)
_error_decoder = msgspec.json.Decoder(_ErrorBody)
_EMPTY_OBJECT = b"{}"


def _server_message(body: bytes) -> str:
    """The server's own explanation from an error response, whatever shape it came in."""
    try:
        parsed = _error_decoder.decode(body)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:_SNIPPET] or "<empty body>"
    if isinstance(parsed.error, _ErrorDetail) and parsed.error.message:
        return parsed.error.message
    for candidate in (parsed.error, parsed.message, parsed.detail):
        if isinstance(candidate, str) and candidate:
            return candidate
    return body.decode("utf-8", "replace").strip()[:_SNIPPET]


def _snippet(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def _derive_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """A per-sample seed: splitmix64 over the inputs, so nearby seeds give unrelated streams."""
    mask = (1 << 64) - 1
    x = 0
    for part in (seed, prompt_index, sample_index):
        # Mixing after every input keeps (seed + 1, prompt 0) apart from (seed, prompt 1).
        x = ((x ^ (part & mask)) + 0x9E3779B97F4A7C15) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        x ^= x >> 31
    return x & _SEED_MASK


def _wire_params(
    params: SamplingParams, *, n: int, sampling_seed: int | None
) -> _WireSamplingParams:
    return _WireSamplingParams(
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=-1,
        min_p=0.0,
        repetition_penalty=1.0,
        frequency_penalty=0.0,
        presence_penalty=0.0,
        max_new_tokens=params.max_new_tokens,
        n=n,
        stop=list(params.stop) or None,
        sampling_seed=sampling_seed,
    )


def _finish_reason(reason: _FinishReason | None) -> FinishReason:
    if reason is None:
        raise ValueError("meta_info.finish_reason is null (the request did not finish)")
    if reason.type == "stop":
        return "stop"
    if reason.type == "length":
        return "length"
    if reason.type == "abort":
        return "abort"
    raise ValueError(f"unknown finish_reason type {reason.type!r}")


def _completion(item: _GenerateItem, weight_version: int) -> Completion:
    """One SGLang result as a Completion; raises ValueError on anything inconsistent."""
    finish = _finish_reason(item.meta_info.finish_reason)
    entries = item.meta_info.output_token_logprobs
    if entries is None:
        raise ValueError("meta_info.output_token_logprobs is missing")
    ids = item.output_ids if item.output_ids is not None else [e[1] for e in entries]
    if len(ids) != len(entries):
        raise ValueError(f"{len(ids)} output_ids but {len(entries)} output_token_logprobs entries")
    logprobs: list[float] = []
    for position, ((logprob, token_id, _), output_id) in enumerate(zip(entries, ids, strict=True)):
        if token_id != output_id:
            raise ValueError(
                f"token {position}: logprob entry is for id {token_id} but output_ids has "
                f"{output_id}"
            )
        if logprob is None:
            # JSON cannot carry -inf or NaN; SGLang's encoder turns them into null.
            raise ValueError(f"token {position}: logprob is null (non-finite on the server)")
        logprobs.append(logprob)
    return Completion(
        text=item.text,
        token_ids=tuple(ids),
        logprobs=tuple(logprobs),
        finish_reason=finish,
        weight_version=weight_version,
    )


def _worker_base_url(url: str) -> str:
    # In data-parallel-aware mode the router lists each worker as "http://host:port@<rank>".
    base, sep, rank = url.rpartition("@")
    if sep and rank.isdigit() and "://" in base:
        url = base
    return url.rstrip("/")


# --------------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------------


class _Transient(Exception):
    """Internal: a failure worth retrying, with the error to raise if the retries run out."""

    def __init__(self, error: SGLangError) -> None:
        super().__init__(str(error))
        self.error = error


class _Chunk(msgspec.Struct, frozen=True):
    start: int  # index of the chunk's first prompt within the generate call
    num_prompts: int
    body: bytes


class SGLangBackend:
    """Generation through an SGLang server or router; see the module docstring.

    Use as ``async with SGLangBackend(config) as backend:`` inside a trio run, or call
    :meth:`aclose` when done. ``weight_version`` starts at ``initial_weight_version`` (the
    version of the weights the server was launched with) and follows :meth:`update_weights`.
    """

    weight_version: int

    def __init__(
        self,
        config: SGLangConfig,
        *,
        initial_weight_version: int = 0,
    ) -> None:
        self._config = config
        self.weight_version = initial_weight_version
        self._url = config.url.rstrip("/")
        headers = {"Content-Type": "application/json"}
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key}"
        # trust_env=False: a cluster-wide HTTP_PROXY must not capture calls to the inference
        # servers. Our own limiter bounds concurrency, so the pool itself is unbounded.
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(config.request_timeout_s, connect=config.connect_timeout_s),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            trust_env=False,
        )
        self._limiter = trio.CapacityLimiter(config.max_concurrency)
        self._sync_lock = trio.Lock()
        self._sync_idle = trio.Event()
        self._sync_idle.set()
        self._random = random.Random()
        self._closed = False
        # Refused /flush_cache answers after weight updates (each retried; see _flush).
        self.flush_refusals = 0
        # Whether the server understands sampling_params.sampling_seed: asked once, on the
        # first seeded call (see _seeds_supported).
        self._seed_support: bool | None = None
        self._seed_check = trio.Lock()

    async def __aenter__(self) -> SGLangBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def config(self) -> SGLangConfig:
        return self._config

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._http.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendClosed("the SGLang backend was used after aclose()")

    # ---------------------------------------------------------------------------------- generate

    async def generate(
        self, prompts: Sequence[str], params: SamplingParams
    ) -> list[list[Completion]]:
        """``params.n`` completions per text prompt, in prompt order; the server tokenizes."""
        self._check_open()
        if isinstance(prompts, str):
            raise InvalidRequest("prompts must be a sequence of strings, not one string")
        if not all(isinstance(p, str) for p in prompts):
            raise InvalidRequest("prompts must be strings; send token ids with generate_ids")
        return await self._generate(list(prompts), params)

    async def generate_ids(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        """``params.n`` completions per prompt given as token ids (sent as ``input_ids``)."""
        self._check_open()
        ids = [list(p) for p in prompt_ids]
        for n, p in enumerate(ids):
            if not p:
                raise InvalidRequest(f"prompt {n} has no tokens")
            if not all(type(t) is int and t >= 0 for t in p):
                raise InvalidRequest(f"prompt {n}: token ids must be non-negative integers")
        return await self._generate(ids, params)

    async def _generate(
        self, prompts: list[str] | list[list[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        if not prompts:
            return []
        seeded = params.seed is not None and await self._seeds_supported()
        chunks = self._plan(prompts, params, seeded=seeded)
        results: list[list[Completion] | None] = [None] * len(prompts)
        failures: list[tuple[_Chunk, SGLangError]] = []
        closed: list[BackendClosed] = []

        async def run(chunk: _Chunk) -> None:
            try:
                completions = await self._generate_chunk(chunk, params.n)
            except SGLangError as exc:
                failures.append((chunk, exc))
                return
            except BackendClosed as exc:
                closed.append(exc)
                return
            for offset, per_prompt in enumerate(completions):
                results[chunk.start + offset] = per_prompt

        # Every chunk runs to the end even if another fails, so the error can say exactly how
        # many prompts were lost.
        async with trio.open_nursery() as nursery:
            for chunk in chunks:
                nursery.start_soon(run, chunk)

        if closed:
            raise closed[0]
        if failures:
            failures.sort(key=lambda failure: failure[0].start)
            failed = sum(chunk.num_prompts for chunk, _ in failures)
            first = failures[0][1]
            raise first.with_message(
                f"{failed} of {len(prompts)} prompts failed ({len(failures)} of {len(chunks)} "
                f"/generate requests); first error: {first}"
            ) from first
        missing = [index for index, per_prompt in enumerate(results) if per_prompt is None]
        if missing:  # cannot happen unless a chunk was planned wrongly; never drop prompts
            raise SGLangProtocolError(f"no results for prompts {missing}", url=self._url)
        return typing.cast(list[list[Completion]], results)

    def _plan(
        self, prompts: list[str] | list[list[int]], params: SamplingParams, *, seeded: bool
    ) -> list[_Chunk]:
        n = params.n
        per_chunk = max(1, self._config.max_batch_sequences // n)
        expand = seeded or (n > 1 and self._config.parallel_sampling == "client")
        chunks: list[_Chunk] = []
        for start in range(0, len(prompts), per_chunk):
            texts: list[typing.Any] = list(prompts[start : start + per_chunk])
            sampling: _WireSamplingParams | list[_WireSamplingParams]
            if not expand:
                sampling = _wire_params(params, n=n, sampling_seed=None)
                batch = texts
            else:
                # Prompt-major repetition, the same order SGLang uses for its own n > 1.
                batch = [text for text in texts for _ in range(n)]
                if not seeded or params.seed is None:
                    sampling = _wire_params(params, n=1, sampling_seed=None)
                else:
                    seed = params.seed
                    sampling = [
                        _wire_params(params, n=1, sampling_seed=_derive_seed(seed, index, sample))
                        for index in range(start, start + len(texts))
                        for sample in range(n)
                    ]
            if texts and isinstance(texts[0], str):
                request = _GenerateRequest(sampling, True, text=batch)
            else:
                request = _GenerateRequest(sampling, True, input_ids=batch)
            chunks.append(
                _Chunk(start=start, num_prompts=len(texts), body=_encoder.encode(request))
            )
        return chunks

    async def _seeds_supported(self) -> bool:
        """Whether the server takes ``sampling_seed`` (SGLang >= 0.5.3), from the version that
        ``GET /get_server_info`` reports; asked once. An older server, or one that does not
        say, gets no seeds (it would reject the unknown field) and one warning."""
        async with self._seed_check:
            if self._seed_support is None:
                version = await self.server_version()
                supported = version is not None and version >= _SAMPLING_SEED_SINCE
                if not supported:
                    shown = ".".join(map(str, version)) if version else "an unknown version"
                    logger.warning(
                        "the SGLang server runs %s; sampling_seed needs %s or later, so seeded "
                        "requests are sent without seeds and are not reproducible",
                        shown,
                        ".".join(map(str, _SAMPLING_SEED_SINCE)),
                    )
                self._seed_support = supported
            return self._seed_support

    async def server_version(self) -> tuple[int, int, int] | None:
        """The SGLang version a worker reports in ``GET /get_server_info`` (None if it does
        not say). Asked of the first worker, as a router need not forward the call."""
        self._check_open()
        url = f"{(await self.worker_urls())[0]}/get_server_info"
        try:
            response, _ = await self._call(
                "GET", url, None, timeout=self._config.control_timeout_s, retry=True
            )
        except SGLangRejected as exc:
            if exc.status in (404, 405):
                return None
            raise
        return _parse_version(_decode(_server_info_decoder, response, url).version)

    async def _generate_chunk(self, chunk: _Chunk, n: int) -> list[list[Completion]]:
        url = f"{self._url}/generate"
        async with self._limiter:
            response, version = await self._call(
                "POST",
                url,
                chunk.body,
                timeout=self._config.request_timeout_s,
                retry=True,
                hold_during_sync=True,
            )
        try:
            items = _generate_decoder.decode(response.content)
        except msgspec.DecodeError as exc:
            raise SGLangProtocolError(
                f"POST {url} answered with an unexpected body ({exc}): "
                f"{_snippet(response.content)}",
                url=url,
                status=response.status_code,
            ) from None
        expected = chunk.num_prompts * n
        if len(items) != expected:
            raise SGLangProtocolError(
                f"POST {url} returned {len(items)} results for {chunk.num_prompts} prompts "
                f"x n={n} (expected {expected})",
                url=url,
                status=response.status_code,
            )
        grouped: list[list[Completion]] = []
        for prompt in range(chunk.num_prompts):
            samples: list[Completion] = []
            for sample in range(n):
                index = prompt * n + sample
                try:
                    samples.append(_completion(items[index], version))
                except ValueError as exc:
                    raise SGLangProtocolError(
                        f"POST {url}: result {index} (prompt {chunk.start + prompt}, sample "
                        f"{sample}): {exc}",
                        url=url,
                        status=response.status_code,
                    ) from None
            grouped.append(samples)
        return grouped

    # ------------------------------------------------------------------------------- weight sync

    async def update_weights(self, source: WeightSource) -> int:
        """Load new weights on every worker; returns the new ``weight_version``.

        Raises :class:`WeightSyncError` (the version is unchanged) when pausing or loading fails
        on any worker; the message names the workers and quotes their answers. Generation is
        resumed on every worker whatever happens, even if this call is cancelled. If the cache
        flush or resuming fails after the weights loaded, the version is advanced and that
        error is raised (:class:`SGLangCacheNotFlushed`, or a :class:`BackendUnavailable` or
        :class:`SGLangRejected` from resuming).
        """
        self._check_open()
        if not isinstance(source, CheckpointWeights | DistributedWeights):
            raise UnsupportedWeightSource(
                f"an SGLang server cannot load {type(source).__name__}; send CheckpointWeights "
                "or DistributedWeights"
            )
        async with self.weight_update(source.version) as update:
            if isinstance(source, CheckpointWeights):
                await update.load_checkpoint(source)
            else:
                await update.load_distributed(source)
        return self.weight_version

    @contextlib.asynccontextmanager
    async def weight_update(self, version: int) -> typing.AsyncIterator[SGLangWeightUpdate]:
        """Pause every worker, let the body load weights, then flush the cache and resume.

        The body calls :meth:`SGLangWeightUpdate.load_distributed` once per bucket of a
        bucketed NCCL sync (see :mod:`azr.generation.weight_broadcast`), or
        :meth:`~SGLangWeightUpdate.load_checkpoint` once. Generation requests are held back
        meanwhile, so none runs on half-loaded weights. On success ``weight_version`` becomes
        ``version``; the cache is flushed after the last load (see the module docstring for the
        order and for what a refused flush does); workers are resumed whatever happens.
        """
        self._check_open()
        async with self._sync_lock:
            idle = trio.Event()
            self._sync_idle = idle
            try:
                try:
                    workers = await self.worker_urls()
                except SGLangError as exc:
                    raise WeightSyncError(f"cannot find the workers to update: {exc}") from exc
                async with self._paused(workers):
                    update = SGLangWeightUpdate(self, workers)
                    yield update
                    if update.loads == 0:
                        return
                    # The weights are in place on every worker from here on.
                    self.weight_version = version
                    await self._flush(workers)
            finally:
                idle.set()

    @contextlib.asynccontextmanager
    async def _paused(self, workers: Sequence[str]) -> typing.AsyncIterator[None]:
        pause = _encoder.encode(_PauseRequest(mode=self._config.pause_mode))
        problem: BaseException | None = None
        try:
            failures = await self._fan_out(workers, "/pause_generation", pause, retry=True)
            if failures:
                raise _sync_error("/pause_generation", workers, failures)
            yield
        except BaseException as exc:
            problem = exc
            raise
        finally:
            # Resume even when cancelled: a worker left paused would hang every later request.
            with trio.CancelScope(shield=True):
                resume = await self._fan_out(
                    workers, "/continue_generation", _EMPTY_OBJECT, retry=True
                )
            if resume:
                url, error = resume[0]
                message = (
                    f"/continue_generation failed on {len(resume)} of {len(workers)} workers, "
                    f"which stay paused; first: {url}: {error}"
                )
                if problem is None:
                    raise error.with_message(message) from error
                logger.error("%s (while handling: %s)", message, problem)

    async def _flush(self, workers: Sequence[str]) -> None:
        """``/flush_cache`` on every worker, once all loads are done and while still paused.

        SGLang refuses (HTTP 400) to flush while it holds requests: after an ``abort`` pause
        that can only be the tail of the abort, so a refusal is retried ``flush_attempts``
        times with backoff, each counted in ``flush_refusals`` and logged. A worker still
        refusing raises :class:`SGLangCacheNotFlushed`: its prefix cache may hold entries
        computed with the previous weights, which must not pass silently.
        """
        pending = list(workers)
        delay = self._config.retry_backoff_s
        for attempt in range(1, self._config.flush_attempts + 1):
            failures = await self._fan_out(pending, "/flush_cache", _EMPTY_OBJECT, retry=True)
            refused = [(url, e) for url, e in failures if isinstance(e, SGLangRejected)]
            if len(refused) < len(failures):
                raise _sync_error("/flush_cache", workers, failures)
            if not refused:
                return
            self.flush_refusals += len(refused)
            pending = [url for url, _ in refused]
            logger.warning(
                "/flush_cache refused by %d of %d workers after a weight update (attempt %d of "
                "%d): %s",
                len(refused),
                len(workers),
                attempt,
                self._config.flush_attempts,
                refused[0][1],
            )
            if attempt < self._config.flush_attempts:
                await trio.sleep(delay)
                delay = min(delay * 2, self._config.retry_backoff_max_s)
        error = SGLangCacheNotFlushed(
            f"/flush_cache still refused by {len(pending)} of {len(workers)} workers after "
            f"{self._config.flush_attempts} attempts (pause_mode={self._config.pause_mode!r}): "
            "the new weights are loaded but those workers' prefix caches may hold entries of "
            f"the previous weights; first: {pending[0]}",
            url=pending[0],
            status=400,
        )
        raise error

    async def init_weights_update_group(
        self,
        *,
        master_address: str,
        master_port: int,
        world_size: int,
        group_name: str = "weight_update_group",
        backend: str = "nccl",
        rank_offsets: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        """Ask every worker to join the learner's collective group for weight broadcasts.

        The learner is rank 0 and must join (``init_process_group`` with the same address, port,
        world size and group name) while this call is in flight: each worker's request returns
        only once the group is formed. Worker ``i`` (in :meth:`worker_urls` order) gets
        ``rank_offset = 1 + i * ranks_per_worker`` with ``ranks_per_worker = (world_size - 1) /
        workers`` (a worker's tensor-parallel ranks follow its offset), unless ``rank_offsets``
        maps each worker URL to its offset. Returns the offsets used.
        """
        self._check_open()
        async with self._sync_lock:
            try:
                workers = await self.worker_urls()
            except SGLangError as exc:
                raise WeightSyncError(f"cannot find the workers to initialise: {exc}") from exc
            if rank_offsets is None:
                ranks_per_worker, remainder = divmod(world_size - 1, len(workers))
                if ranks_per_worker < 1 or remainder:
                    raise ConfigError(
                        f"world_size {world_size} does not split into rank 0 plus equal shares "
                        f"for {len(workers)} workers; pass rank_offsets"
                    )
                offsets = {url: 1 + i * ranks_per_worker for i, url in enumerate(workers)}
            else:
                normalised = {_worker_base_url(url): offset for url, offset in rank_offsets.items()}
                missing = [url for url in workers if url not in normalised]
                if missing:
                    raise ConfigError(f"rank_offsets has no entry for workers {missing}")
                offsets = {url: normalised[url] for url in workers}
            bodies = {
                url: _encoder.encode(
                    _InitGroupRequest(
                        master_address=master_address,
                        master_port=master_port,
                        rank_offset=offset,
                        world_size=world_size,
                        group_name=group_name,
                        backend=backend,
                    )
                )
                for url, offset in offsets.items()
            }
            # A collective rendezvous cannot be repeated by one side alone: no retries.
            failures = await self._fan_out(
                workers, "/init_weights_update_group", bodies, retry=False, check_success=True
            )
            if failures:
                raise _sync_error("/init_weights_update_group", workers, failures)
            return offsets

    async def worker_urls(self) -> list[str]:
        """The servers control calls go to (see :class:`SGLangConfig`), asked afresh each time."""
        self._check_open()
        if self._config.worker_urls:
            return _unique(self._config.worker_urls)
        if not self._config.router:
            return [self._url]
        # The current gateway lists workers at /workers; older routers at /list_workers.
        gateway_url = f"{self._url}/workers"
        try:
            response, _ = await self._call(
                "GET", gateway_url, None, timeout=self._config.control_timeout_s, retry=True
            )
        except SGLangRejected as exc:
            if exc.status not in (404, 405):
                raise
            router_url = f"{self._url}/list_workers"
            response, _ = await self._call(
                "GET", router_url, None, timeout=self._config.control_timeout_s, retry=True
            )
            urls = _decode(_router_decoder, response, router_url).urls
        else:
            urls = [
                worker.url for worker in _decode(_gateway_decoder, response, gateway_url).workers
            ]
        workers = _unique(urls)
        if not workers:
            raise SGLangProtocolError(f"the router at {self._url} lists no workers", url=self._url)
        return workers

    async def model_info(self) -> SGLangModelInfo:
        """``GET /get_model_info`` from the generation URL (a router forwards it to a worker)."""
        self._check_open()
        url = f"{self._url}/get_model_info"
        response, _ = await self._call(
            "GET", url, None, timeout=self._config.control_timeout_s, retry=True
        )
        return _decode(_model_info_decoder, response, url)

    async def _fan_out(
        self,
        workers: Sequence[str],
        path: str,
        body: bytes | Mapping[str, bytes],
        *,
        retry: bool,
        check_success: bool = False,
    ) -> list[tuple[str, SGLangError]]:
        """POST ``path`` to every worker at once; returns the failures, in worker order."""
        failures: dict[str, SGLangError] = {}
        closed: list[BackendClosed] = []

        async def one(worker: str) -> None:
            url = f"{worker}{path}"
            payload = body if isinstance(body, bytes) else body[worker]
            try:
                response, _ = await self._call(
                    "POST", url, payload, timeout=self._config.control_timeout_s, retry=retry
                )
                if check_success:
                    result = _decode(_control_decoder, response, url)
                    if not result.success:
                        raise SGLangRejected(
                            f"POST {url} reported failure: {result.message}",
                            url=url,
                            status=response.status_code,
                        )
            except SGLangError as exc:
                failures[worker] = exc
            except BackendClosed as exc:
                closed.append(exc)

        async with trio.open_nursery() as nursery:
            for worker in workers:
                nursery.start_soon(one, worker)
        if closed:
            raise closed[0]
        return [(worker, failures[worker]) for worker in workers if worker in failures]

    # ------------------------------------------------------------------------------------- HTTP

    async def _wait_until_synced(self) -> int:
        # Re-read the event after each wait: another update may have started meanwhile.
        while not self._sync_idle.is_set():
            await self._sync_idle.wait()
        return self.weight_version

    async def _call(
        self,
        method: str,
        url: str,
        body: bytes | None,
        *,
        timeout: float,
        retry: bool,
        hold_during_sync: bool = False,
    ) -> tuple[httpx.Response, int]:
        """Send with retries; returns the 2xx response and the weight version it was sent under."""
        attempts = 1 + (self._config.max_retries if retry else 0)
        delay = self._config.retry_backoff_s
        last: SGLangError | None = None
        for attempt in range(1, attempts + 1):
            version = await self._wait_until_synced() if hold_during_sync else self.weight_version
            self._check_open()
            try:
                return await self._send_once(method, url, body, timeout), version
            except _Transient as transient:
                last = transient.error
            if attempt < attempts:
                # Full jitter keeps many clients from retrying in lockstep.
                await trio.sleep(delay * (0.5 + self._random.random() / 2))
                delay = min(delay * 2, self._config.retry_backoff_max_s)
        assert last is not None
        if attempts == 1:
            raise last
        raise last.with_message(f"{last} (gave up after {attempts} attempts)")

    async def _send_once(
        self, method: str, url: str, body: bytes | None, timeout: float
    ) -> httpx.Response:
        try:
            with trio.fail_after(timeout):
                response = await self._http.request(
                    method,
                    url,
                    content=body,
                    timeout=httpx.Timeout(timeout, connect=self._config.connect_timeout_s),
                )
        except (trio.TooSlowError, httpx.ReadTimeout, httpx.WriteTimeout) as exc:
            raise SGLangTimeout(
                f"{method} {url} got no answer within {timeout:g} s", url=url
            ) from exc
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Transient(
                SGLangConnectionError(f"{method} {url}: cannot connect ({exc!r})", url=url)
            ) from exc
        except httpx.TransportError as exc:
            # Refused, reset or closed without an answer: the server is down or restarting.
            raise _Transient(
                SGLangConnectionError(f"{method} {url}: connection failed ({exc!r})", url=url)
            ) from exc
        status = response.status_code
        if status < 300:
            return response
        message = f"{method} {url} returned HTTP {status}: {_server_message(response.content)}"
        if status in _RETRY_STATUSES or status >= 500:
            raise _Transient(SGLangServerError(message, url=url, status=status))
        raise SGLangRejected(message, url=url, status=status)


_T = typing.TypeVar("_T")


def _decode(decoder: msgspec.json.Decoder[_T], response: httpx.Response, url: str) -> _T:
    try:
        return decoder.decode(response.content)
    except msgspec.DecodeError as exc:
        raise SGLangProtocolError(
            f"{url} answered with an unexpected body ({exc}): {_snippet(response.content)}",
            url=url,
            status=response.status_code,
        ) from None


def _unique(urls: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for url in urls:
        seen.setdefault(_worker_base_url(url), None)
    return list(seen)


def _sync_error(
    path: str, workers: Sequence[str], failures: Sequence[tuple[str, SGLangError]]
) -> WeightSyncError:
    details = "; ".join(f"{url}: {error}" for url, error in failures)
    error = WeightSyncError(
        f"{path} failed on {len(failures)} of {len(workers)} workers: {details}"
    )
    error.__cause__ = failures[0][1]
    return error


class SGLangWeightUpdate:
    """What the body of :meth:`SGLangBackend.weight_update` loads weights with."""

    def __init__(self, backend: SGLangBackend, workers: Sequence[str]) -> None:
        self._backend = backend
        self._workers = list(workers)
        self.loads = 0

    async def load_checkpoint(self, source: CheckpointWeights) -> None:
        """``/update_weights_from_disk`` on every worker."""
        if self._backend.config.pause_mode == "retract":
            # SGLang flushes after a disk update unconditionally and asserts that the flush
            # worked, which it cannot while retracted requests wait in its queue.
            raise WeightSyncError(
                "a disk update needs pause_mode='abort': SGLang flushes its cache after loading "
                "from disk and fails while retracted requests are queued"
            )
        body = _encoder.encode(
            _UpdateFromDiskRequest(
                model_path=source.path, weight_version=str(source.version), flush_cache=False
            )
        )
        # Loading the same checkpoint twice is harmless, so this request may be retried.
        await self._load("/update_weights_from_disk", body, retry=True)

    async def load_distributed(self, source: DistributedWeights) -> None:
        """``/update_weights_from_distributed`` on every worker, for tensors the learner
        broadcasts concurrently over ``source.group_name`` in the listed order."""
        body = _encoder.encode(
            _UpdateFromDistributedRequest(
                names=list(source.names),
                dtypes=list(source.dtypes),
                shapes=[list(shape) for shape in source.shapes],
                group_name=source.group_name,
                weight_version=str(source.version),
                # One flush after the last bucket (SGLangBackend._flush), not one per bucket.
                flush_cache=False,
            )
        )
        # Each request pairs with one broadcast from the learner: never repeated.
        await self._load("/update_weights_from_distributed", body, retry=False)

    async def _load(self, path: str, body: bytes, *, retry: bool) -> None:
        failures = await self._backend._fan_out(
            self._workers, path, body, retry=retry, check_success=True
        )
        if failures:
            raise _sync_error(path, self._workers, failures)
        self.loads += 1


# --------------------------------------------------------------------------------------------------
# Launching (the command line only; supervising the process is the runtime's job)
# --------------------------------------------------------------------------------------------------


class SGLangLaunch(msgspec.Struct, frozen=True):
    """How to start one SGLang server: run ``argv`` with ``env`` added to the environment."""

    argv: tuple[str, ...]
    env: dict[str, str]
    url: str

    async def wait_ready(self, timeout_s: float, *, poll_interval_s: float = 1.0) -> None:
        """Wait until the server answers ``GET /health`` with 200; see :func:`wait_healthy`."""
        await wait_healthy(self.url, timeout_s, poll_interval_s=poll_interval_s)


_OWNED_FLAGS = ("--model-path", "--model", "--host", "--port")


def launch_sglang_server(
    model_path: str,
    port: int,
    extra_args: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    python: str = sys.executable,
) -> SGLangLaunch:
    """The command line for ``python -m sglang.launch_server`` serving ``model_path`` on ``port``.

    ``extra_args`` are appended (e.g. ``["--tp-size", "2", "--enable-deterministic-inference"]``)
    and must not repeat the model path, host or port. ``env`` makes the server report
    log-probabilities of the raw logits, the convention of :mod:`azr.generation.base`.
    """
    if not model_path:
        raise ConfigError("model_path must not be empty")
    if not 0 < port < 65536:
        raise ConfigError(f"port must be in 1..65535, got {port}")
    for arg in extra_args:
        if arg.split("=", 1)[0] in _OWNED_FLAGS:
            raise ConfigError(f"extra_args must not set {arg.split('=', 1)[0]}; it is a parameter")
    argv = (
        python,
        "-m",
        "sglang.launch_server",
        "--model-path",
        model_path,
        "--host",
        host,
        "--port",
        str(port),
        *extra_args,
    )
    # Older SGLang releases read the variable without the prefix.
    env = {"SGLANG_RETURN_ORIGINAL_LOGPROB": "1", "RETURN_ORIGINAL_LOGPROB": "1"}
    url_host = f"[{host}]" if ":" in host else host
    return SGLangLaunch(argv=argv, env=env, url=f"http://{url_host}:{port}")


async def wait_healthy(
    url: str,
    timeout_s: float,
    *,
    poll_interval_s: float = 1.0,
) -> None:
    """Poll ``GET {url}/health`` until it answers 200; raise :class:`BackendUnavailable` at timeout.

    SGLang answers 503 while it loads the model and warms up, and its health check runs a
    one-token generation, so a probe may itself take seconds.
    """
    _check_url(url)
    probe = f"{url.rstrip('/')}/health"
    last = "no answer yet"
    async with httpx.AsyncClient(trust_env=False) as client:
        with trio.move_on_after(timeout_s):
            while True:
                try:
                    response = await client.get(probe, timeout=max(poll_interval_s, 30.0))
                except httpx.TransportError as exc:
                    last = repr(exc)
                else:
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}: {_server_message(response.content)}"
                await trio.sleep(poll_interval_s)
    raise BackendUnavailable(f"{probe} not healthy after {timeout_s:g} s (last: {last})")


if typing.TYPE_CHECKING:
    from azr.generation.base import GenerationBackend

    # mypy checks here that SGLangBackend satisfies the protocol.
    _protocol_check: type[GenerationBackend] = SGLangBackend
