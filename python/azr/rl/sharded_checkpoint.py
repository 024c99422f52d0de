"""Learner checkpoints of a sharded learner: torch.distributed.checkpoint, any world size.

A sharded learner (several torchrun ranks) writes its weights, optimiser states and reference
model as ``torch.distributed.checkpoint`` shards, every rank its own part, into the directory
rank 0 prepared (all ranks must see the same filesystem)::

    learner/learner.json         format 2, step, learner config (rank 0)
    learner/learner_state.pt     scheduler, RNG states, step (rank 0; no optimiser)
    learner/config.json ...      the model's config, generation config, tokenizer (no weights)
    learner/shards/              .metadata and one __R_0.distcp file per rank

The rest of the checkpoint machinery is unchanged: the directory is written atomically, the
run's manifest lists (and checksums) the shard files too, ``latest`` commits it.

Loading re-cuts the shards to the loading world size, so a checkpoint saved by 8 ranks resumes
on 4, or in one process, and a one-process checkpoint (a Hugging Face directory plus
``torch.save`` optimiser state) resumes on several ranks. ``azr export`` reads only the weights.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import torch

from azr.models import Tokenizer

if TYPE_CHECKING:
    from azr.rl.learner import Learner

__all__ = [
    "SHARDS_DIR",
    "empty_model",
    "is_sharded",
    "load",
    "load_model_weights",
    "save",
    "write_shards",
]

SHARDS_DIR: Final = "shards"


def is_sharded(path: str | os.PathLike[str]) -> bool:
    """Whether the learner directory ``path`` holds torch.distributed.checkpoint shards."""
    return Path(path, SHARDS_DIR).is_dir()


def empty_model(path: str | os.PathLike[str]) -> tuple[Any, Tokenizer]:
    """The model ``path``'s config describes (float32, weights not loaded yet: in a learner
    group its parameters are on the meta device, sharding allocates them; in one process they
    are allocated on the CPU, uninitialised) and its tokenizer. Reads no weight file."""
    from azr.rl.distributed import current_group
    from azr.rl.sharded_loading import empty_model as meta_model
    from azr.rl.sharded_loading import materialise

    model, tokenizer = meta_model(path)
    if current_group() is None:
        materialise(model, torch.device("cpu"))
    return model, tokenizer


def _read_shards(state: dict[str, Any], path: Path) -> None:
    """Fill ``state`` in place from ``path``'s shards, re-cut to this process's sharding."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict_loader import load as dcp_load

    if dist.is_available() and dist.is_initialized():
        dcp_load(state, checkpoint_id=path / SHARDS_DIR)
        return
    with warnings.catch_warnings():
        # Loading in one process is what is meant here, not a forgotten init_process_group.
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        dcp_load(state, checkpoint_id=path / SHARDS_DIR, no_dist=True)


def _state(learner: Learner) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    state: dict[str, Any] = {
        "model": get_model_state_dict(learner.model),
        "optimizer": get_optimizer_state_dict(learner.model, learner.optimizer),
    }
    if learner.ref_model is not None:
        state["reference"] = get_model_state_dict(learner.ref_model)
    return state


def write_shards(learner: Learner, directory: Path) -> None:
    """This rank's part of the checkpoint into ``directory`` (a collective)."""
    from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

    dcp_save(_state(learner), checkpoint_id=directory / SHARDS_DIR)


def save(learner: Learner, directory: Path) -> None:
    """On rank 0: have every rank write its shards into ``directory``, then add the model's
    config and tokenizer (the learner adds its state and metadata)."""
    from azr.rl.distributed import Save

    group = learner.group
    assert group is not None and group.is_leader
    with group.leading(Save(path=os.fspath(directory))):
        write_shards(learner, directory)
    learner.model.config.save_pretrained(os.fspath(directory))
    generation = getattr(learner.model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(os.fspath(directory))
    learner.tokenizer.save_pretrained(directory)


def load(
    learner: Learner,
    path: Path,
    optimizer_state: Mapping[str, Any] | None,
    reference_dir: str,
) -> None:
    """Load weights, optimiser states and reference model of either checkpoint format into
    ``learner`` (sharded or not). ``optimizer_state`` is a one-process checkpoint's
    ``optimizer.state_dict()`` (None for a sharded one)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    if is_sharded(path):
        state = _state(learner)
        _read_shards(state, path)
        set_model_state_dict(learner.model, state["model"])
        set_optimizer_state_dict(learner.model, learner.optimizer, state["optimizer"])
        if learner.ref_model is not None and "reference" in state:
            set_model_state_dict(learner.ref_model, state["reference"])
        return
    # A one-process checkpoint: rank 0 reads the full tensors and sends each rank its shards.
    group = learner.group
    leader = group is None or group.is_leader
    if leader and optimizer_state is None:
        raise ValueError(f"{path}: a one-process checkpoint without optimiser state")
    broadcast = StateDictOptions(full_state_dict=True, broadcast_from_rank0=group is not None)
    weights = _full_weights(learner.model, path) if leader else {}
    set_model_state_dict(learner.model, weights, options=broadcast)
    del weights
    if learner.ref_model is not None and (path / reference_dir).is_dir():
        weights = _full_weights(learner.ref_model, path / reference_dir) if leader else {}
        set_model_state_dict(learner.ref_model, weights, options=broadcast)
        del weights
    if not leader:
        set_optimizer_state_dict(learner.model, learner.optimizer, {}, options=broadcast)
        return
    assert optimizer_state is not None
    named = _by_name(learner, optimizer_state)
    set_optimizer_state_dict(learner.model, learner.optimizer, named, options=broadcast)


def load_model_weights(model: Any, path: Path) -> None:
    """Only the policy's weights of a sharded checkpoint, into an unsharded ``model``."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    state = {"model": get_model_state_dict(model)}
    _read_shards(state, path)
    set_model_state_dict(model, state["model"])


def _full_weights(model: Any, path: Path) -> dict[str, Any]:
    """The safetensors weights of a model directory, with every name ``model`` has: a tied
    tensor written once comes back under each of its names."""
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors files in {os.fspath(path)!r}")
    weights: dict[str, Any] = {}
    for f in files:
        weights.update(load_file(os.fspath(f), device="cpu"))
    own = model.state_dict(keep_vars=True)
    first_name: dict[int, str] = {}
    for name, tensor in own.items():
        first_name.setdefault(id(tensor), name)
    for name, tensor in own.items():
        if name not in weights:
            alias = first_name[id(tensor)]
            if alias in weights:
                weights[name] = weights[alias]
            else:
                raise ValueError(f"{path}: no weight for {name}")
    return weights


def _by_name(learner: Learner, state: Mapping[str, Any]) -> dict[str, Any]:
    """A one-process ``optimizer.state_dict()`` (parameters numbered across the groups in
    order) keyed by parameter name, as the distributed state-dict API takes it. Both learners
    build their groups from ``model.parameters()`` in the same order."""
    names = {id(p): n for n, p in learner.model.named_parameters()}
    ordered = [names[id(p)] for g in learner.optimizer.param_groups for p in g["params"]]
    saved_groups = state["param_groups"]
    counts = [len(g["params"]) for g in saved_groups]
    if sum(counts) != len(ordered):
        raise ValueError(
            f"the checkpoint's optimiser has {sum(counts)} parameters, this model {len(ordered)}"
        )
    index_to_name = {
        i: ordered[pos] for pos, i in enumerate(i for g in saved_groups for i in g["params"])
    }
    return {
        "state": {index_to_name[int(i)]: v for i, v in state["state"].items()},
        "param_groups": [
            {**g, "params": [index_to_name[i] for i in g["params"]]} for g in saved_groups
        ],
    }
