"""``azr plan``: the learner's memory per rank for a model, a world size and a configuration.

Computed from the model's config alone: the model is built on the meta device (no weights, no
memory) to count its parameters, and the rest follows from FSDP2 with fully sharded float32
master weights (:mod:`azr.rl.distributed`). Per rank, in GiB:

``weights``      float32 master weights, 4 bytes x P / N
``gradients``    float32 sharded gradients, 4 x P / N
``optimizer``    AdamW's two float32 moments, 8 x P / N (the master weights are the weights)
``gathered``     a layer's parameters all-gathered in the compute dtype, twice (the layer in use
                 and the one prefetched), the root's embeddings and head (kept gathered through
                 the step), and one layer's unsharded float32 gradients before reduce-scatter
``activations``  what the decoder layers keep for the backward, for ``micro_batch_size``
                 sequences of ``prompt_tokens + max_new_tokens``; without activation
                 checkpointing per token and layer the tensors a Qwen2/Llama block saves
                 (``2 x (7 H + 3 H_kv + 4 I)`` bytes in bf16: norms' inputs and outputs, q/k/v
                 before and after rotary, attention output, the MLP's four ``I``-wide
                 tensors); with it, each layer's input (``2 H``) plus one layer recomputed
``logits``       the response positions' logits (bf16) and their float32 log-softmax and
                 gradient: 10 bytes x micro_batch x max_new_tokens x vocab
``overhead``     CUDA context and allocator slack: an assumed 2 GiB

These are estimates of the largest terms, not a measurement: fragmentation and temporary
buffers of particular kernels are not modelled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import msgspec

__all__ = ["KNOWN_MODELS", "MemoryPlan", "ModelShape", "model_shape", "plan_memory", "render"]

GIB: Final = 1 << 30
OVERHEAD_BYTES: Final = 2 * GIB


class ModelShape(msgspec.Struct, frozen=True, kw_only=True):
    """What the plan needs of a decoder-only model."""

    name: str
    parameters: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    tie_word_embeddings: bool
    layer_parameters: int  # one decoder layer
    root_parameters: int  # embeddings, final norm and head (once if tied)


# From the published config.json files of the Qwen2.5 models (the paper trains the base and
# coder variants: the coder models share these shapes).
_QWEN25: Final[dict[str, dict[str, Any]]] = {
    "Qwen/Qwen2.5-3B": {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "Qwen/Qwen2.5-7B": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    "Qwen/Qwen2.5-14B": {
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_hidden_layers": 48,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
}
KNOWN_MODELS: Final[dict[str, dict[str, Any]]] = {
    **_QWEN25,
    **{name.replace("Qwen2.5-", "Qwen2.5-Coder-"): cfg for name, cfg in _QWEN25.items()},
}


def _hf_config(model: str) -> Any:
    from transformers import AutoConfig, Qwen2Config

    if model in KNOWN_MODELS:
        return Qwen2Config(**KNOWN_MODELS[model])
    path = Path(model)
    if path.is_file() and path.name.endswith(".json"):
        path = path.parent
    if not (path / "config.json").is_file():
        known = ", ".join(sorted(KNOWN_MODELS))
        raise ValueError(
            f"{model!r} is neither a directory with a config.json nor a known model ({known})"
        )
    # Only the config is read: no weights are needed (nor, here, any network).
    return AutoConfig.from_pretrained(os.fspath(path), local_files_only=True)


def model_shape(model: str) -> ModelShape:
    """The shape of ``model`` (a Hugging Face directory or config.json, or a name of
    :data:`KNOWN_MODELS`), its parameters counted on the meta device."""
    import torch
    from transformers import AutoModelForCausalLM

    config = _hf_config(model)
    auto: Any = AutoModelForCausalLM
    with torch.device("meta"):
        built = auto.from_config(config)
    unique = {id(p): p.numel() for p in built.parameters()}
    layer = sum(p.numel() for p in built.model.layers[0].parameters())
    layers = len(built.model.layers)
    total = sum(unique.values())
    return ModelShape(
        name=model,
        parameters=total,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_layers=layers,
        num_heads=config.num_attention_heads,
        num_kv_heads=config.num_key_value_heads,
        vocab_size=config.vocab_size,
        tie_word_embeddings=bool(config.tie_word_embeddings),
        layer_parameters=layer,
        root_parameters=total - layers * layer,
    )


class MemoryPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Bytes per rank (see the module docstring for each term)."""

    nproc: int
    micro_batch_size: int
    sequence_tokens: int
    response_tokens: int
    activation_checkpointing: bool
    weights: int
    gradients: int
    optimizer: int
    gathered: int
    activations: int
    logits: int
    overhead: int

    @property
    def total(self) -> int:
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.gathered
            + self.activations
            + self.logits
            + self.overhead
        )


def plan_memory(
    shape: ModelShape,
    *,
    nproc: int,
    micro_batch_size: int,
    prompt_tokens: int,
    response_tokens: int,
    activation_checkpointing: bool,
    compute_bytes: int = 2,
) -> MemoryPlan:
    """Per-rank memory of the sharded learner (``compute_bytes`` 2: bf16 mixed precision)."""
    if nproc < 1 or micro_batch_size < 1 or prompt_tokens < 0 or response_tokens < 1:
        raise ValueError("nproc, micro_batch_size and response_tokens must be >= 1")
    p = shape.parameters
    h, kv = shape.hidden_size, shape.num_kv_heads * (shape.hidden_size // shape.num_heads)
    tokens = micro_batch_size * (prompt_tokens + response_tokens)
    per_layer_token = compute_bytes * (7 * h + 3 * kv + 4 * shape.intermediate_size)
    if activation_checkpointing:
        activations = tokens * (shape.num_layers * compute_bytes * h + per_layer_token)
    else:
        activations = tokens * shape.num_layers * per_layer_token
    gathered = (
        2 * compute_bytes * shape.layer_parameters
        + compute_bytes * shape.root_parameters
        + 4 * shape.layer_parameters
    )
    return MemoryPlan(
        nproc=nproc,
        micro_batch_size=micro_batch_size,
        sequence_tokens=prompt_tokens + response_tokens,
        response_tokens=response_tokens,
        activation_checkpointing=activation_checkpointing,
        weights=-(-4 * p // nproc),
        gradients=-(-4 * p // nproc),
        optimizer=-(-8 * p // nproc),
        gathered=gathered,
        activations=activations,
        logits=10 * micro_batch_size * response_tokens * shape.vocab_size,
        overhead=OVERHEAD_BYTES,
    )


def _gib(n: int) -> str:
    return f"{n / GIB:7.1f}"


def render(shape: ModelShape, plans: list[MemoryPlan], gpu_mem_gib: float) -> str:
    """A table of the plans (one column each) and whether each fits ``gpu_mem_gib``."""
    rows = ["weights", "gradients", "optimizer", "gathered", "activations", "logits", "overhead"]
    heads = [("ckpt on" if p.activation_checkpointing else "ckpt off") for p in plans]
    first = plans[0]
    lines = [
        f"{shape.name}: {shape.parameters / 1e9:.2f}B parameters, {shape.num_layers} layers, "
        f"hidden {shape.hidden_size}, vocab {shape.vocab_size}",
        f"per rank of {first.nproc}, micro-batch {first.micro_batch_size} x "
        f"{first.sequence_tokens} tokens ({first.response_tokens} response), GiB:",
        f"{'':12s}" + "".join(f"{h:>10s}" for h in heads),
    ]
    for row in rows:
        lines.append(f"{row:12s}" + "".join(f"{_gib(getattr(p, row)):>10s}" for p in plans))
    lines.append(f"{'total':12s}" + "".join(f"{_gib(p.total):>10s}" for p in plans))
    verdicts = ["fits" if p.total <= gpu_mem_gib * GIB else "no" for p in plans]
    lines.append(f"{f'<= {gpu_mem_gib:g}':12s}" + "".join(f"{v:>10s}" for v in verdicts))
    return "\n".join(lines)
