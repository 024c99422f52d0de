"""The proposer: turns proposal requests into generated proposals, chunk by chunk.

Each :class:`~azr.actors.messages.ProposeChunk` becomes one backend call (``concurrency`` of
them in flight), and its rollouts go straight to the verifier, so validating one chunk overlaps
generating the next.
"""

from __future__ import annotations

import msgspec

from azr.actors._common import Generator, PromptFormat, generate_rollouts, serve, tell
from azr.actors.messages import ProposeChunk, ValidateProposals, VerifierWork
from azr.generation.base import SamplingParams
from azr.models.tokenizer import Tokenizer
from azr.runtime import ActorContext, Mailbox
from azr.tasks.prompts import propose_prompt

__all__ = ["Proposer"]


class Proposer:
    """An actor run (``system.start_actor("proposer", Proposer(...), mailboxes=[inbox])``).

    ``sampling`` is the base sampling configuration; each chunk gets one response per request
    (``n = 1``) and its own seed.
    """

    def __init__(
        self,
        *,
        backend: Generator,
        tokenizer: Tokenizer,
        prompt_format: PromptFormat,
        sampling: SamplingParams,
        inbox: Mailbox[ProposeChunk],
        verifier: Mailbox[VerifierWork],
        concurrency: int = 1,
    ) -> None:
        self._backend = backend
        self._tokenizer = tokenizer
        self._format = prompt_format
        self._sampling = sampling
        self._inbox = inbox
        self._verifier = verifier
        self._concurrency = concurrency

    async def __call__(self, ctx: ActorContext) -> None:
        ctx.started()
        await serve(ctx, self._inbox, self.handle, self._concurrency)

    async def handle(self, chunk: ProposeChunk) -> None:
        """Generate the chunk's proposals and hand them to the verifier."""
        params = msgspec.structs.replace(self._sampling, n=1, seed=chunk.seed)
        prompts = [propose_prompt(request) for request in chunk.requests]
        rollouts, stats = await generate_rollouts(
            self._backend, self._tokenizer, self._format, prompts, params
        )
        message = ValidateProposals(
            chunk=chunk, rollouts=tuple(r[0] for r in rollouts), generation=stats
        )
        await tell(self._verifier, message)
