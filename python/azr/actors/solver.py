"""The solver: turns solver tasks into ``n`` generated answers each, chunk by chunk.

It serves both uses of the solver role: learnability rollouts that score fresh proposals and
solve rollouts that are trained on; the chunk's stage says which, and only the coordinator
cares. Each chunk is one backend call (``concurrency`` in flight); its rollouts go straight to
the verifier.
"""

from __future__ import annotations

import msgspec

from azr.actors._common import Generator, PromptFormat, generate_rollouts, serve, tell
from azr.actors.messages import CheckSolutions, SolveChunk, VerifierWork
from azr.generation.base import SamplingParams
from azr.models.tokenizer import Tokenizer
from azr.runtime import ActorContext, Mailbox
from azr.tasks.prompts import solve_prompt

__all__ = ["Solver"]


class Solver:
    """An actor run (``system.start_actor("solver", Solver(...), mailboxes=[inbox])``)."""

    def __init__(
        self,
        *,
        backend: Generator,
        tokenizer: Tokenizer,
        prompt_format: PromptFormat,
        sampling: SamplingParams,
        inbox: Mailbox[SolveChunk],
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

    async def handle(self, chunk: SolveChunk) -> None:
        """Generate ``chunk.n`` answers per task and hand them to the verifier."""
        params = msgspec.structs.replace(self._sampling, n=chunk.n, seed=chunk.seed)
        prompts = [solve_prompt(task) for task in chunk.tasks]
        rollouts, stats = await generate_rollouts(
            self._backend, self._tokenizer, self._format, prompts, params
        )
        flat = tuple(r for per_task in rollouts for r in per_task)
        await tell(self._verifier, CheckSolutions(chunk=chunk, rollouts=flat, generation=stats))
