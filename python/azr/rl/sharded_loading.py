"""Building a sharded learner's models with rank 0 the only rank that reads the weights.

Every rank loading the full float32 model before sharding it needs N full copies of host memory
(about 8 x 28 GiB for a 7B model on 8 ranks). Instead::

    rank 0                                 rank r > 0
    full model from the files (fp32)       the same model from its config: parameters on the
                                           meta device (no memory), buffers computed for real
    fully_shard                            fully_shard, then allocate the (empty) shards
    -- each full tensor in turn, broadcast; every rank keeps its own slice of it -->

so a rank other than 0 holds its shards plus one full tensor at a time (the largest: the
embedding). The KL reference model is the policy's twin on the meta device on every rank and
takes the same broadcast (rank 0 keeps its full state dict until both are loaded). A model whose
weights come later (a checkpoint being resumed) is only allocated here; the checkpoint's loader
fills it (:mod:`azr.rl.sharded_checkpoint`, which likewise broadcasts a one-process checkpoint
from rank 0).

Non-persistent buffers (rotary ``inv_freq``) are no weights: they are not in a state dict, so
nothing would load them. Parameters alone go to the meta device while the model is built, so
each rank computes those buffers from the config as a one-process build does; they are kept
across the allocation of the shards.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from azr.models import TinyModelSpec, Tokenizer, load_model

if TYPE_CHECKING:
    from azr.rl.distributed import LearnerGroup

__all__ = [
    "empty_model",
    "has_meta_parameters",
    "materialise",
    "meta_twin",
    "parameters_on_meta",
    "rank_model",
    "shard_and_load",
]


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Inside the block, every parameter a module registers moves to the meta device (its
    initialisation then costs nothing); buffers stay real. A parameter already on the meta
    device is registered as it is, so tied weights stay tied."""
    register = torch.nn.Module.register_parameter

    def on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = torch.nn.Parameter(param.detach().to("meta"), param.requires_grad)
        register(module, name, param)

    torch.nn.Module.register_parameter = on_meta  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]


def has_meta_parameters(model: Any) -> bool:
    return any(p.is_meta for p in model.parameters())


def empty_model(
    path: str | os.PathLike[str] | None, *, spec: TinyModelSpec | None = None
) -> tuple[Any, Tokenizer]:
    """The float32 model of a Hugging Face directory's config (or the tiny model of ``spec``)
    with its parameters on the meta device, and its tokenizer. Reads no weight file."""
    with parameters_on_meta():
        if path is None:
            return load_model(None, spec=spec)
        from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

        path = os.fspath(path)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        auto: Any = AutoModelForCausalLM
        model = auto.from_config(config, dtype=torch.float32)
    if Path(path, "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(path, local_files_only=True)
    return model, Tokenizer.from_pretrained(path)


def rank_model(
    path: str | os.PathLike[str] | None,
    group: LearnerGroup | None,
    *,
    spec: TinyModelSpec | None = None,
    seed: int = 0,
) -> tuple[Any, Tokenizer]:
    """What this rank builds a learner on: the loaded model on rank 0 (or in one process), an
    empty one (:func:`empty_model`) on the other ranks, which receive their shards."""
    if group is None or group.is_leader:
        return load_model(path, spec=spec, seed=seed)
    return empty_model(path, spec=spec)


def meta_twin(model: Any) -> Any:
    """A copy of ``model`` sharing nothing with it, its parameters on the meta device (no
    memory: the weights are loaded into it later) and its buffers copied."""
    memo: dict[int, Any] = {
        id(p): torch.nn.Parameter(p.detach().to("meta"), p.requires_grad)
        for p in model.parameters()
    }
    return copy.deepcopy(model, memo)


def materialise(model: Any, device: torch.device) -> Any:
    """Allocate ``model``'s meta parameters on ``device`` (sharded: only this rank's shards),
    uninitialised, keeping the buffers' values (``to_empty`` alone would not)."""
    buffers = {name: b for name, b in model.named_buffers() if not b.is_meta}
    # ``to_empty`` gives each module its own new tensor, which would untie tied weights.
    first: dict[int, str] = {}
    aliases: list[tuple[str, str]] = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases.append((name, first[id(p)]))
        else:
            first[id(p)] = name
    model.to_empty(device=device)
    for name, target in aliases:
        shared = model.get_parameter(target)
        if model.get_parameter(name) is not shared:
            owner, _, attr = name.rpartition(".")
            setattr(model.get_submodule(owner), attr, shared)
    with torch.no_grad():
        for name, value in buffers.items():
            model.get_buffer(name).copy_(value)
    return model


def shard_and_load(model: Any, ref_model: Any, group: LearnerGroup) -> None:
    """Shard the policy (and the reference model, if any) in place on every rank and give each
    rank its shards of rank 0's weights (a collective). Rank 0's models carry the weights, or
    are empty when a checkpoint will fill them; the other ranks' are empty."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    from azr.rl.distributed import shard_model

    models = [m for m in (model, ref_model) if m is not None]
    sources: list[dict[str, Any] | None] = [None] * len(models)
    if group.is_leader:
        # Taken before sharding: the full tensors, which stay alive until every rank has its
        # part. A reference twin (meta parameters) is loaded from the policy's.
        policy = None if has_meta_parameters(model) else model.state_dict()
        for i, m in enumerate(models):
            sources[i] = policy if has_meta_parameters(m) else m.state_dict()
    flags = torch.tensor([s is not None for s in sources], dtype=torch.uint8)
    dist.broadcast(flags, src=0)
    broadcast = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    for m, source, loaded in zip(models, sources, flags.tolist(), strict=True):
        shard_model(m, group)
        if has_meta_parameters(m):
            materialise(m, group.device)
        if loaded:
            # The state dict is updated in place with the shards: each model gets its own.
            set_model_state_dict(m, dict(source) if source is not None else {}, options=broadcast)
