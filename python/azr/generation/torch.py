"""In-process generation with a Hugging Face causal LM (CPU or GPU).

Decoding runs in a worker thread (``trio.to_thread.run_sync``) so the trio loop stays responsive.
Prompts are left-padded and decoded together with a KV cache; rows that finish are dropped from
the cache so later steps only compute live rows. The backend holds its own copy of the model, so
the learner can train while it generates; weight sync copies a state dict into that copy.

Returned logprobs are ``log_softmax`` of the raw logits (temperature 1, before top-p), the
quantity the learner recomputes; see ``azr.generation.base``.

Reproducibility: the same prompts, parameters, seed and weights give the same completions on the
same device. Rows are sampled together from one generator, so changing the batch (other prompts,
``n`` or ``max_batch_size``) changes which random numbers each row sees.
"""

from __future__ import annotations

import copy
import inspect
import os
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
import trio

from azr.generation.base import (
    BackendClosed,
    CheckpointWeights,
    Completion,
    FinishReason,
    InProcessWeights,
    InvalidRequest,
    SamplingParams,
    UnsupportedWeightSource,
    WeightSource,
    WeightSyncError,
)
from azr.models import Tokenizer, load_model, load_state_dict_into, load_weights_into

__all__ = ["TorchBackend"]


def _sample(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator
) -> torch.Tensor:
    """Next tokens ``(b,)`` from float32 logits ``(b, V)`` at the requested temperature/top-p."""
    if params.temperature == 0.0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)  # (b, V)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)  # (b, V)
        # Drop a token once the mass before it already reaches top_p; the top token always stays.
        drop = (sorted_p.cumsum(-1) - sorted_p) >= params.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        choice = torch.multinomial(sorted_p, 1, generator=generator)  # (b, 1)
        return order.gather(-1, choice).squeeze(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class _Row:
    """Decoding state of one (prompt, sample) pair."""

    __slots__ = ("finish", "logprobs", "text", "tokens")

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self.finish: FinishReason | None = None
        self.text: str | None = None


class TorchBackend:
    """A :class:`~azr.generation.base.GenerationBackend` running a torch model in this process.

    ``model`` is copied (unless ``copy_model=False``, which shares it: then generation and
    training must not overlap), moved to ``device`` (default: CUDA when present) and ``dtype``
    (default: unchanged). At most ``max_batch_size`` rows (prompt x sample) decode together.
    Extra end-of-sequence ids are taken from the model's generation config (instruct models often
    have several).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Tokenizer,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        max_batch_size: int = 64,
        weight_version: int = 0,
        copy_model: bool = True,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        model = copy.deepcopy(model) if copy_model else model
        model = model.to(device=self.device, dtype=dtype) if dtype else model.to(self.device)
        self._model: Any = model.eval()
        if copy_model:
            self._model.requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.weight_version = weight_version

        eos = {tokenizer.eos_token_id}
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if isinstance(configured, int):
            eos.add(configured)
        elif isinstance(configured, list | tuple):
            eos.update(int(i) for i in configured)
        self.eos_token_ids: frozenset[int] = frozenset(eos)

        # The cache keyword was renamed across transformers versions; look it up once.
        params = inspect.signature(self._model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

        self._lock = trio.Lock()  # one decode or weight update at a time
        self._closing = threading.Event()  # read by the decoding thread to abort early
        self._closed = False

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None, **kwargs: Any) -> TorchBackend:
        """A backend on a Hugging Face model directory, or the tiny model when ``path`` is None."""
        model, tokenizer = load_model(path)
        return cls(model, tokenizer, copy_model=False, **kwargs)

    # ----------------------------------------------------------------------------------------
    # Protocol
    # ----------------------------------------------------------------------------------------

    async def generate(
        self, prompts: Sequence[str], params: SamplingParams
    ) -> list[list[Completion]]:
        self._check_open()
        return await self.generate_ids(self._encode_prompts(prompts), params)

    async def generate_ids(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        self._check_open()
        prompt_ids = self._check_ids(prompt_ids)
        async with self._lock:
            self._check_open()

            def should_abort() -> bool:
                # Raises trio.Cancelled in this thread if the awaiting task is cancelled, so
                # cancellation takes effect within one decoding step.
                trio.from_thread.check_cancelled()
                return self._closing.is_set()

            return await trio.to_thread.run_sync(
                self._generate_ids, prompt_ids, params, should_abort
            )

    async def update_weights(self, source: WeightSource | InProcessWeights) -> int:
        """Copy new weights into the model; returns (and adopts) ``source.version``.

        Accepts :class:`InProcessWeights` (a state dict) and :class:`CheckpointWeights` (a model
        directory). Names and shapes are validated before any copy, so a failed update leaves the
        previous weights and version in place.
        """
        self._check_open()
        if isinstance(source, InProcessWeights):
            state = source.state_dict

            def load() -> None:
                load_state_dict_into(self._model, state)

        elif isinstance(source, CheckpointWeights):
            path = source.path

            def load() -> None:
                load_weights_into(self._model, path)

        else:
            raise UnsupportedWeightSource(
                f"{type(source).__name__} needs a collective group; the torch backend shares a "
                "process with the learner and takes InProcessWeights instead"
            )
        async with self._lock:
            self._check_open()
            try:
                await trio.to_thread.run_sync(load)
            except (ValueError, OSError, RuntimeError) as e:
                raise WeightSyncError(f"could not load weights version {source.version}") from e
            self.weight_version = source.version
        return self.weight_version

    async def aclose(self) -> None:
        """Abort any running decode (its completions end with ``"abort"``) and free the model."""
        if self._closed:
            return
        self._closing.set()
        async with self._lock:
            self._closed = True
            self._model = None

    # ----------------------------------------------------------------------------------------
    # Blocking API (benchmarks, scripts); not safe to overlap with the async methods
    # ----------------------------------------------------------------------------------------

    def generate_blocking(
        self, prompts: Sequence[str], params: SamplingParams
    ) -> list[list[Completion]]:
        self._check_open()
        return self._generate_ids(self._encode_prompts(prompts), params, self._closing.is_set)

    # ----------------------------------------------------------------------------------------
    # Decoding
    # ----------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._closing.is_set():
            raise BackendClosed("the torch backend is closed")

    def _encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        if isinstance(prompts, str):
            raise InvalidRequest("prompts must be a sequence of strings, not one string")
        encoded = []
        for p in prompts:
            ids = self.tokenizer.encode(p)
            if not ids:
                raise InvalidRequest("empty prompt: a causal LM needs at least one token")
            encoded.append(ids)
        return encoded

    def _check_ids(self, prompt_ids: Sequence[Sequence[int]]) -> list[list[int]]:
        vocab = self._model.get_input_embeddings().num_embeddings
        out = []
        for n, ids in enumerate(prompt_ids):
            row = list(ids)
            if not row:
                raise InvalidRequest(f"prompt {n} has no tokens: a causal LM needs at least one")
            if not all(type(t) is int and 0 <= t < vocab for t in row):
                raise InvalidRequest(f"prompt {n}: token ids must be integers in [0, {vocab})")
            out.append(row)
        return out

    def _generate_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        params: SamplingParams,
        should_abort: Callable[[], bool],
    ) -> list[list[Completion]]:
        seed = params.seed if params.seed is not None else random.SystemRandom().getrandbits(63)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        version = self.weight_version
        rows = [(i, j) for i in range(len(prompt_ids)) for j in range(params.n)]
        result: list[list[Completion]] = [[] for _ in prompt_ids]
        for start in range(0, len(rows), self.max_batch_size):
            chunk = rows[start : start + self.max_batch_size]
            done = self._decode([prompt_ids[i] for i, _ in chunk], params, generator, should_abort)
            for (i, _), row in zip(chunk, done, strict=True):
                assert row.finish is not None and row.text is not None
                result[i].append(
                    Completion(
                        text=row.text,
                        token_ids=tuple(row.tokens),
                        logprobs=tuple(row.logprobs),
                        finish_reason=row.finish,
                        weight_version=version,
                    )
                )
        return result

    def _finish_text(self, row: _Row, reason: FinishReason) -> None:
        tokens = row.tokens
        if reason == "stop" and tokens and tokens[-1] in self.eos_token_ids:
            tokens = tokens[:-1]
        row.finish = reason
        row.text = self.tokenizer.decode(tokens)

    @torch.no_grad()
    def _decode(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        generator: torch.Generator,
        should_abort: Callable[[], bool],
    ) -> list[_Row]:
        model, tok = self._model, self.tokenizer
        B = len(prompts)
        L = max(len(p) for p in prompts)
        ids = torch.full((B, L), tok.pad_token_id, dtype=torch.long)  # (B, L)
        attn = torch.zeros((B, L), dtype=torch.long)  # (B, L)
        for i, p in enumerate(prompts):
            ids[i, L - len(p) :] = torch.tensor(p, dtype=torch.long)
            attn[i, L - len(p) :] = 1
        pos = (attn.cumsum(-1) - 1).clamp(min=0)  # (B, L)
        ids, attn, pos = ids.to(self.device), attn.to(self.device), pos.to(self.device)

        out = model(
            input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1
        )
        cache = out.get(self._cache_kw)
        logits = out.logits[:, -1].float()  # (b, V)
        next_pos = pos[:, -1:] + 1  # (b, 1)

        rows = [_Row() for _ in range(B)]
        live = list(range(B))  # rows[live[k]] is row k of the cache
        stops = params.stop
        for step in range(params.max_new_tokens):
            if should_abort():
                for r in live:
                    self._finish_text(rows[r], "abort")
                break
            logp = torch.log_softmax(logits, dim=-1)  # (b, V)
            nxt = _sample(logits, params, generator)  # (b,)
            nxt_lp = logp.gather(-1, nxt[:, None]).squeeze(-1)  # (b,)
            keep: list[int] = []
            for k, (t, lp) in enumerate(zip(nxt.tolist(), nxt_lp.tolist(), strict=True)):
                row = rows[live[k]]
                row.tokens.append(t)
                row.logprobs.append(lp)
                if t in self.eos_token_ids:
                    self._finish_text(row, "stop")
                    continue
                if stops:
                    text = tok.decode(row.tokens)
                    cut = min((i for s in stops if (i := text.find(s)) >= 0), default=-1)
                    if cut >= 0:
                        row.finish, row.text = "stop", text[:cut]
                        continue
                if step + 1 == params.max_new_tokens:
                    self._finish_text(row, "length")
                    continue
                keep.append(k)
            if not keep:
                break
            if len(keep) < len(live):
                # Drop finished rows from the cache and all per-row tensors.
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                attn, next_pos, nxt = attn[index], next_pos[index], nxt[index]
                live = [live[k] for k in keep]
            attn = torch.cat([attn, attn.new_ones((len(live), 1))], dim=-1)  # (b, L + step + 1)
            out = model(
                input_ids=nxt[:, None],
                attention_mask=attn,
                position_ids=next_pos,
                use_cache=True,
                **{self._cache_kw: cache},
            )
            cache = out.get(self._cache_kw)
            logits = out.logits[:, -1].float()
            next_pos = next_pos + 1
        return rows
