"""The solver: turns solver tasks into ``n`` generated answers each, chunk by chunk.

It serves both uses of the solver role: learnability rollouts that score fresh proposals and
solve rollouts that are trained on; the chunk's stage says which, and only the coordinator
cares. Each chunk is one backend call (``concurrency`` in flight); its rollouts go straight to
the verifier.
"""

from __future__ import annotations

import msgspec

from azr.actors._common import GenerationActor, generate_rollouts, tell
from azr.actors.messages import CheckSolutions, SolveChunk
from azr.tasks.prompts import solve_prompt

__all__ = ["Solver"]


class Solver(GenerationActor[SolveChunk]):
    """An actor run (``system.start_actor("solver", Solver(...), mailboxes=[inbox])``)."""

    async def handle(self, chunk: SolveChunk) -> None:
        """Generate ``chunk.n`` answers per task and hand them to the verifier."""
        params = msgspec.structs.replace(self._sampling, n=chunk.n, seed=chunk.seed)
        if chunk.greedy:
            params = msgspec.structs.replace(params, temperature=0.0)
        prompts = [solve_prompt(task) for task in chunk.tasks]
        rollouts, stats = await generate_rollouts(
            self._backend,
            self._tokenizer,
            self._format,
            prompts,
            params,
            max_prompt_tokens=self._max_prompt_tokens,
        )
        flat = tuple(r for per_task in rollouts for r in per_task)
        await tell(self._verifier, CheckSolutions(chunk=chunk, rollouts=flat, generation=stats))
