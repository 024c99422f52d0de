"""The proposer: turns proposal requests into generated proposals, chunk by chunk.

Each :class:`~azr.actors.messages.ProposeChunk` becomes one backend call (``concurrency`` of
them in flight), and its rollouts go straight to the verifier, so validating one chunk overlaps
generating the next.
"""

from __future__ import annotations

import msgspec

from azr.actors._common import GenerationActor, generate_rollouts, tell
from azr.actors.messages import ProposeChunk, ValidateProposals
from azr.tasks.prompts import propose_prompt

__all__ = ["Proposer"]


class Proposer(GenerationActor[ProposeChunk]):
    """An actor run (``system.start_actor("proposer", Proposer(...), mailboxes=[inbox])``).

    ``sampling`` is the base sampling configuration; each chunk gets one response per request
    (``n = 1``) and its own seed.
    """

    async def handle(self, chunk: ProposeChunk) -> None:
        """Generate the chunk's proposals and hand them to the verifier."""
        params = msgspec.structs.replace(self._sampling, n=1, seed=chunk.seed)
        prompts = [propose_prompt(request) for request in chunk.requests]
        rollouts, stats = await generate_rollouts(
            self._backend,
            self._tokenizer,
            self._format,
            prompts,
            params,
            max_prompt_tokens=self._max_prompt_tokens,
        )
        message = ValidateProposals(
            chunk=chunk, rollouts=tuple(r[0] for r in rollouts), generation=stats
        )
        await tell(self._verifier, message)
