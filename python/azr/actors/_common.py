"""What the actors share: prompt templates, rollouts from a backend, sends, seeds, and the
records of ``samples.jsonl``."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Generic, Literal, Protocol, TypeVar

import msgspec
import trio

from azr.actors.messages import GenerationStats, Rollout, SampleRecord, VerifierWork, WorkId
from azr.generation.base import Completion, SamplingParams
from azr.models.tokenizer import Tokenizer
from azr.runtime import ActorContext, Mailbox
from azr.tasks.parsing import extract_answer
from azr.tasks.prompts import propose_prompt, solve_prompt
from azr.tasks.types import ProposeRequest, Reason, SolveTask, TaskType

__all__ = [
    "ANSWER_STOP",
    "GenerationActor",
    "Generator",
    "PromptFormat",
    "SampleSource",
    "derive_seed",
    "generate_rollouts",
    "sample_records",
    "serve",
    "tell",
]

T = TypeVar("T", bound=msgspec.Struct)

ANSWER_STOP: Final = "</answer>"
"""Nothing after the closing answer tag is ever read, so generation may stop there."""

Template = Literal["markers", "plain", "chat"]

_PLAIN_PREAMBLE: Final = (
    "The user gives the assistant a task. The assistant thinks it through step by step, writes "
    "that reasoning between <think> and </think>, and then gives its final answer between "
    "<answer> and </answer>."
)


class Generator(Protocol):
    """The part of :class:`~azr.generation.base.GenerationBackend` the generating actors use:
    prompts go as token ids, so the backend and the learner condition on the same tokens."""

    async def generate_ids(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams
    ) -> list[list[Completion]]: ...


async def tell(mailbox: Mailbox[T], message: T) -> bool:
    """Send ``message``; False (and nothing sent) if ``mailbox`` is closed.

    A mailbox only closes when the system stops, and then whatever was in flight is abandoned
    on purpose: an actor finishing its last piece of work must not fail the stop.
    """
    try:
        await mailbox.send(message)
    except trio.ClosedResourceError:
        return False
    return True


async def serve(
    ctx: ActorContext,
    inbox: Mailbox[T],
    handle: Callable[[T], Awaitable[None]],
    concurrency: int = 1,
) -> None:
    """Handle ``inbox``'s messages, up to ``concurrency`` at once, until it is closed.

    Once the mailbox is closed (the system is stopping) whatever is still queued is dropped
    rather than drained: it is work for a step that will not finish. Messages being handled
    run to their end (or until the stop's grace period cancels them).
    """
    limiter = trio.CapacityLimiter(concurrency)
    failures: list[Exception] = []

    async def run(message: T, token: object, scope: trio.CancelScope) -> None:
        try:
            with ctx.handling():
                await handle(message)
        except Exception as exc:
            # The first failure is the actor's failure, reported as itself rather than wrapped
            # in an exception group with the cancellations it causes.
            failures.append(exc)
            scope.cancel()
        finally:
            limiter.release_on_behalf_of(token)

    async with trio.open_nursery() as nursery:
        while True:
            try:
                message = await ctx.receive(inbox)
            except trio.EndOfChannel:
                break
            if inbox.closed:
                continue
            # Taking the slot before the next receive is the backpressure: at most
            # ``concurrency`` messages are out of the mailbox and not yet handled.
            token = object()
            await limiter.acquire_on_behalf_of(token)
            nursery.start_soon(run, message, token, nursery.cancel_scope)
    if failures:
        raise failures[0]


def derive_seed(run_seed: int, work: WorkId) -> int:
    """A sampling seed that depends only on the run's seed and the work's identity, so that a
    run (and a resumed run) samples the same responses whatever order the work is done in."""
    key = f"{run_seed}/{work.step}/{work.stage}/{work.task_type.value}/{work.chunk}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**31 - 1)


class PromptFormat:
    """Wraps a task prompt into one model turn, ending where the model's reasoning begins.

    ``markers`` spells the turn with the byte tokenizer's special tokens; ``plain`` is a short
    plain-text exchange for base models; ``chat`` applies the tokenizer's chat template. All
    three end in ``<think>``, so the response is the reasoning, ``</think>``, then the answer.
    """

    def __init__(self, template: Template, tokenizer: Tokenizer) -> None:
        if template == "chat" and not getattr(tokenizer.hf, "chat_template", None):
            raise ValueError("template 'chat' needs a tokenizer with a chat template")
        self.template = template
        self.tokenizer = tokenizer

    def __call__(self, prompt: str) -> str:
        match self.template:
            case "markers":
                return f"<|user|>{prompt}<|end|><|assistant|><think>"
            case "plain":
                return f"{_PLAIN_PREAMBLE}\n\nUser: {prompt}\n\nAssistant: <think>"
            case "chat":
                messages = [{"role": "user", "content": prompt}]
                text: Any = self.tokenizer.hf.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
                return f"{text}<think>"


def _response_text(completion: Completion, tokenizer: Tokenizer, stop: str | None) -> str:
    # Backends cut the text before a stop string but keep its tokens. Put the string back, so
    # that the verifier sees the closing tag the model actually wrote; a response that ended on
    # the end-of-sequence token instead is left as it is.
    text = completion.text
    if stop is None or completion.finish_reason != "stop":
        return text
    full = tokenizer.decode(completion.token_ids)
    if full.startswith(text) and full[len(text) :].startswith(stop):
        return text + stop
    return text


async def generate_rollouts(
    backend: Generator,
    tokenizer: Tokenizer,
    fmt: PromptFormat,
    prompts: Sequence[str],
    params: SamplingParams,
    *,
    max_prompt_tokens: int | None = None,
) -> tuple[list[list[Rollout]], GenerationStats]:
    """``params.n`` rollouts per prompt (prompt-major) and what the call cost.

    Each prompt is tokenized once, here; the backend generates from those ids and the rollout
    keeps the same ids for the learner. A prompt longer than ``max_prompt_tokens`` is not sent
    (one over-long prompt would fail the whole backend call, or crowd out the response): its
    rollouts are empty, and ``GenerationStats.too_long`` lists its index so the verifier gives
    them the unscored reason ``prompt_too_long``."""
    start = time.perf_counter()
    texts = [fmt(p) for p in prompts]
    encoded = [tuple(tokenizer.encode_prompt(text)) for text in texts]
    limit = max_prompt_tokens
    too_long = tuple(i for i, ids in enumerate(encoded) if limit is not None and len(ids) > limit)
    sent = [ids for i, ids in enumerate(encoded) if i not in too_long]
    completions = iter(await backend.generate_ids(sent, params) if sent else [])
    stop = params.stop[0] if len(params.stop) == 1 else None
    out: list[list[Rollout]] = []
    prompt_tokens = generated = 0
    for i, ids in enumerate(encoded):
        if i in too_long:
            out.append([_not_generated(ids) for _ in range(params.n)])
            continue
        samples = next(completions)
        prompt_tokens += len(ids)
        row = []
        for c in samples:
            generated += len(c.token_ids)
            row.append(
                Rollout(
                    prompt_ids=ids,
                    response_ids=c.token_ids,
                    logprobs=c.logprobs,
                    text=_response_text(c, tokenizer, stop),
                    finish_reason=c.finish_reason,
                    weight_version=c.weight_version,
                )
            )
        out.append(row)
    stats = GenerationStats(
        seconds=time.perf_counter() - start,
        prompts=len(sent),
        prompt_tokens=prompt_tokens,
        generated_tokens=generated,
        too_long=too_long,
    )
    return out, stats


def _not_generated(prompt_ids: tuple[int, ...]) -> Rollout:
    # Never trained on (its verdict is unscored), so no weight version applies.
    return Rollout(
        prompt_ids=prompt_ids,
        response_ids=(),
        logprobs=(),
        text="",
        finish_reason="abort",
        weight_version=0,
    )


ChunkT = TypeVar("ChunkT", bound=msgspec.Struct)


class GenerationActor(Generic[ChunkT]):
    """What the proposer and the solver share: a backend, how prompts are framed, base
    sampling, an inbox of chunks served ``concurrency`` at a time, the verifier's mailbox, and
    the longest prompt sent (``max_prompt_tokens``; longer ones are dropped, see
    :func:`generate_rollouts`). Subclasses say what one chunk becomes in :meth:`handle`."""

    def __init__(
        self,
        *,
        backend: Generator,
        tokenizer: Tokenizer,
        prompt_format: PromptFormat,
        sampling: SamplingParams,
        inbox: Mailbox[ChunkT],
        verifier: Mailbox[VerifierWork],
        concurrency: int = 1,
        max_prompt_tokens: int | None = None,
    ) -> None:
        self._backend = backend
        self._max_prompt_tokens = max_prompt_tokens
        self._tokenizer = tokenizer
        self._format = prompt_format
        self._sampling = sampling
        self._inbox = inbox
        self._verifier = verifier
        self._concurrency = concurrency

    async def __call__(self, ctx: ActorContext) -> None:
        ctx.started()
        await serve(ctx, self._inbox, self.handle, self._concurrency)

    async def handle(self, chunk: ChunkT) -> None:
        raise NotImplementedError


# -- samples.jsonl: what people read when a run misbehaves ---------------------------------

SampleRole = Literal["propose", "solve"]
SampleSource = tuple[
    TaskType, SampleRole, ProposeRequest | SolveTask | None, str, Reason, float | None
]
"""(task type, role, request or task, response text, reason code, reward or None)."""


def _prompt(source: ProposeRequest | SolveTask | None) -> str:
    if source is None:
        return ""
    if isinstance(source, ProposeRequest):
        return propose_prompt(source)
    return solve_prompt(source)


def sample_records(step: int, sources: Iterable[SampleSource]) -> tuple[SampleRecord, ...]:
    """One record per source, in order."""
    out = []
    for task_type, role, source, text, reason, reward in sources:
        answer = extract_answer(text)
        out.append(
            SampleRecord(
                step=step,
                stage=role,
                task_type=task_type,
                role=role,
                prompt=_prompt(source),
                response=text,
                answer=answer if isinstance(answer, str) else "",
                reason=reason,
                reward=reward,
            )
        )
    return tuple(out)
