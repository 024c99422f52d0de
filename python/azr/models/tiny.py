"""A tiny randomly initialised Qwen2-style causal LM for tests, CPU runs and benchmarks.

It has the same architecture class as the Qwen2.5 models the paper trains, so everything that
works on it (checkpoint format, KV-cache generation, server weight loading) works on those.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["TinyModelSpec", "build_tiny_model"]


class TinyModelSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Shape of the tiny model. The defaults give about 3M parameters with the byte tokenizer."""

    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 704
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = True
    rope_theta: float = 10000.0


def build_tiny_model(
    vocab_size: int,
    spec: TinyModelSpec | None = None,
    seed: int = 0,
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> Any:
    """A freshly initialised ``Qwen2ForCausalLM`` in float32; the same seed gives the same weights.

    The global torch RNG is left as it was, so building a model never perturbs a caller's sampling.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    spec = spec or TinyModelSpec()
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
        # Recorded so that servers loading the saved checkpoint stop on the right token.
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: Any = Qwen2ForCausalLM(config)
    model.generation_config.bos_token_id = bos_token_id
    model.generation_config.eos_token_id = eos_token_id
    model.generation_config.pad_token_id = pad_token_id
    return model.float()
