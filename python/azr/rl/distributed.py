"""The learner over several processes: torchrun ranks, FSDP2 sharding, and the command channel.

``torchrun --nproc-per-node N -m azr train ...`` (or ``azr train --nproc N``) starts N ranks.
Rank 0 runs the whole actor system as in one process (coordinator, generation, verifier,
buffers, the learner actor); every rank holds a shard of the learner. The other ranks only
follow (:mod:`azr.rl.follower`): rank 0 tells them each operation that needs all ranks before it
starts it itself, as one msgspec message broadcast over a gloo group of its own::

    rank 0 (learner actor)                 rank r > 0 (follower loop)
    Learner.step(batch)  -- Step(batch) -> Learner.step(batch)
                          <- FSDP collectives (all-gather, reduce-scatter) ->
    save_checkpoint      -- Save(dir)   -> write this rank's shards into dir
    export / weights()   -- Gather(...) -> take part in gathering each full tensor
    end of the run       -- Stop        -> exit 0

Commands wait on a group without a practical timeout (followers are idle while rank 0
generates, which can take many minutes); the collectives of the work itself run under
``learner.distributed.timeout_s``. A rank that dies closes its sockets: the others fail at
their next collective, and torchrun ends the job.

Every rank computes the same batch layout from the same broadcast batch and takes every W-th
micro-batch (padded with zero-weight repeats so that all ranks run the same number of forward
and backward passes, which FSDP's collectives need). The loss of each micro-batch is divided by
the whole batch's response-token count and gradients are summed over ranks (not averaged), so
the sharded update is the one-process update up to float summation order.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Final, TypeVar

import msgspec
import torch

from azr.errors import ConfigError
from azr.models.tiny import TinyModelSpec
from azr.rl.batch import TrainBatch
from azr.rl.config import DistributedConfig, LearnerConfig
from azr.rl.logprobs import register_sharded_scoring

__all__ = [
    "Build",
    "Command",
    "FromCheckpoint",
    "FromPretrained",
    "Gather",
    "LearnerGroup",
    "Save",
    "Step",
    "Stop",
    "current_group",
    "full_tensors",
    "launched",
    "leading",
    "open_group",
    "reduce_step_sums",
    "shard_model",
    "share",
    "to_float",
    "weight_buckets",
]

_T = TypeVar("_T")

# How long a follower waits for rank 0's next command: generation between two updates can take
# long, and a dead rank 0 is noticed by its closed sockets, not by this.
_COMMAND_TIMEOUT: Final = datetime.timedelta(days=7)


# --------------------------------------------------------------------------------------------
# Commands: what rank 0 tells the other ranks to do with it
# --------------------------------------------------------------------------------------------


class FromPretrained(msgspec.Struct, frozen=True, tag="pretrained"):
    """A Hugging Face directory (``path``), or the tiny model of ``spec`` and ``seed``."""

    path: str | None
    spec: TinyModelSpec | None = None
    seed: int = 0


class FromCheckpoint(msgspec.Struct, frozen=True, tag="checkpoint"):
    """A learner checkpoint directory (one-process or sharded format)."""

    path: str


class Build(msgspec.Struct, frozen=True, tag="build"):
    source: FromPretrained | FromCheckpoint
    config: LearnerConfig


class Step(msgspec.Struct, frozen=True, tag="step"):
    batch: TrainBatch


class Save(msgspec.Struct, frozen=True, tag="save"):
    """Write this rank's shards into ``path`` (a directory rank 0 created)."""

    path: str


class Gather(msgspec.Struct, frozen=True, tag="gather"):
    """Gather every full tensor, in ``dtype`` (a torch dtype name), in buckets."""

    dtype: str
    bucket_bytes: int


class Stop(msgspec.Struct, frozen=True, tag="stop"):
    pass


Command = Build | Step | Save | Gather | Stop

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(Command)


# --------------------------------------------------------------------------------------------
# The group
# --------------------------------------------------------------------------------------------


def launched() -> bool:
    """Whether this process is one of several ranks started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class LearnerGroup:
    """This process's place among the learner ranks, and the command channel.

    Rank 0 wraps each operation that all ranks must run in :meth:`leading`; the followers get
    the same command from :meth:`receive`. One operation at a time: a lock keeps an update
    abandoned by a stopping actor from interleaving its collectives with the final ``Stop``.
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        device: torch.device,
        config: DistributedConfig,
        commands: Any,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.config = config
        self._commands = commands
        self._lock = threading.Lock()

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def _send(self, command: Command) -> None:
        import torch.distributed as dist

        payload = torch.frombuffer(bytearray(_ENCODER.encode(command)), dtype=torch.uint8)
        size = torch.tensor([payload.numel()], dtype=torch.int64)
        dist.broadcast(size, src=0, group=self._commands)
        dist.broadcast(payload, src=0, group=self._commands)

    def receive(self) -> Command:
        """The next command from rank 0 (followers only); blocks until it comes."""
        import torch.distributed as dist

        size = torch.zeros(1, dtype=torch.int64)
        dist.broadcast(size, src=0, group=self._commands)
        payload = torch.empty(int(size.item()), dtype=torch.uint8)
        dist.broadcast(payload, src=0, group=self._commands)
        command: Command = _DECODER.decode(payload.numpy().tobytes())
        return command

    @contextlib.contextmanager
    def leading(self, command: Command) -> Iterator[None]:
        """On rank 0: announce ``command``, then run the block as its rank-0 part, holding the
        group for it. On the other ranks (already told): just run the block."""
        if not self.is_leader:
            yield
            return
        with self._lock:
            self._send(command)
            yield

    def stop(self, timeout: float) -> bool:
        """Tell the followers to exit (rank 0). False when the group is still busy after
        ``timeout`` seconds (an operation stuck on a dead rank) or the message cannot go out."""
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            self._send(Stop())
        except (RuntimeError, ValueError):
            return False
        finally:
            self._lock.release()
        return True


_current: LearnerGroup | None = None


def current_group() -> LearnerGroup | None:
    """The group :func:`open_group` set up in this process; None in one process."""
    return _current


def _device(setting: str, local_rank: int) -> torch.device:
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if setting in ("auto", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("learner.device = 'cuda' but no CUDA device is visible")
        return torch.device("cuda", local_rank)
    return torch.device(setting)


@contextlib.contextmanager
def open_group(config: LearnerConfig) -> Iterator[LearnerGroup]:
    """Join the torchrun job this process belongs to (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
    and the rendezvous in the environment); leave it at the end of the block.

    CPU tensors go over gloo, CUDA tensors over NCCL. Collectives of the work time out after
    ``config.distributed.timeout_s``.
    """
    import torch.distributed as dist

    global _current
    if _current is not None:
        raise RuntimeError("this process already belongs to a learner group")
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(config.device, local_rank)
    timeout = datetime.timedelta(seconds=config.distributed.timeout_s)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("cpu:gloo,cuda:nccl", timeout=timeout, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    try:
        commands = dist.new_group(backend="gloo", timeout=_COMMAND_TIMEOUT)
        _current = LearnerGroup(rank, world_size, device, config.distributed, commands)
        yield _current
    finally:
        _current = None
        with contextlib.suppress(RuntimeError, ValueError):
            dist.destroy_process_group()


@contextlib.contextmanager
def leading(group: LearnerGroup | None, command: Command) -> Iterator[None]:
    """:meth:`LearnerGroup.leading`, or nothing in one process."""
    if group is None:
        yield
    else:
        with group.leading(command):
            yield


# --------------------------------------------------------------------------------------------
# Sharding and the parts of a step that differ across ranks
# --------------------------------------------------------------------------------------------


def shard_model(model: Any, group: LearnerGroup) -> None:
    """Shard ``model`` in place with FSDP2: one unit per decoder layer, then the root (the
    embeddings, the final norm and the head). Gradients are summed over ranks, not averaged:
    each rank's loss is already normalised by the whole batch's token count."""
    from torch.distributed.fsdp import (
        CPUOffloadPolicy,
        MixedPrecisionPolicy,
        OffloadPolicy,
        fully_shard,
    )

    cfg = group.config
    cuda = group.device.type == "cuda"
    if cfg.cpu_offload and not cuda:
        raise ConfigError("learner.distributed.cpu_offload needs CUDA devices")
    mp = MixedPrecisionPolicy()
    if cfg.mixed_precision and cuda:
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    offload: OffloadPolicy = CPUOffloadPolicy() if cfg.cpu_offload else OffloadPolicy()
    layers = _decoder_layers(model)
    units = []
    for layer in layers:
        units.append(
            fully_shard(
                layer,
                reshard_after_forward=cfg.reshard_after_forward,
                mp_policy=mp,
                offload_policy=offload,
            )
        )
    # The root's parameters are needed again right after the forward (the head's backward).
    units.append(
        fully_shard(model, reshard_after_forward=False, mp_policy=mp, offload_policy=offload)
    )
    register_sharded_scoring(model)
    for unit in units:
        unit.set_gradient_divide_factor(1.0)
        # Gloo has no pre-scaled sum; a factor of 1 is a plain sum anyway.
        unit.set_force_sum_reduction_for_comms(True)


def _decoder_layers(model: Any) -> Sequence[torch.nn.Module]:
    base = getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ConfigError(
            f"cannot shard {type(model).__name__}: expected decoder layers at model.model.layers "
            "(the layout of Qwen2, Llama and most causal LMs in transformers)"
        )
    return list(layers)


def share(items: Sequence[_T], group: LearnerGroup | None) -> Iterator[tuple[_T, bool]]:
    """This rank's share of ``items``: every W-th one, then zero-weight repeats (flag False)
    up to the count of the busiest rank. In one process: all of them, all counted."""
    if group is None:
        for item in items:
            yield item, True
        return
    mine = list(items[group.rank :: group.world_size])
    rounds = math.ceil(len(items) / group.world_size)
    for item in mine:
        yield item, True
    for _ in range(rounds - len(mine)):
        yield items[0], False


def reduce_step_sums(
    group: LearnerGroup | None, sums: dict[str, float], total_tokens: int, max_dev: float
) -> tuple[dict[str, float], int, float]:
    """The step's metric sums over all ranks (each rank saw only its micro-batches)."""
    if group is None:
        return sums, total_tokens, max_dev
    import torch.distributed as dist

    keys = sorted(sums)
    summed = torch.tensor([sums[k] for k in keys] + [float(total_tokens)], dtype=torch.float64)
    dist.all_reduce(summed)
    top = torch.tensor([max_dev], dtype=torch.float64)
    dist.all_reduce(top, op=dist.ReduceOp.MAX)
    values = summed.tolist()
    return dict(zip(keys, values[:-1], strict=True)), int(values[-1]), float(top.item())


def to_float(value: Any) -> float:
    """A scalar tensor (a replicated DTensor under FSDP) as a Python float."""
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        value = value.full_tensor()
    return float(value)


# --------------------------------------------------------------------------------------------
# Full tensors out of a sharded model
# --------------------------------------------------------------------------------------------


def full_tensors(
    model: Any, *, dtype: torch.dtype | None = None, device: torch.device | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """Every weight of ``model`` as ``(name, full tensor)``, in state-dict order.

    Under FSDP each tensor is gathered from all ranks (a collective: every rank must run this
    to the end, in step). Floating tensors are cast to ``dtype`` first, so a bfloat16 gather
    moves half the bytes of a float32 one. A tensor shared under two names (tied embeddings)
    is given once, under its first name; ``transformers`` ties it again on load.
    """
    from torch.distributed.tensor import DTensor

    seen: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        t = tensor.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(device=device, dtype=dtype) if device is not None else t.to(dtype)
        elif device is not None:
            t = t.to(device)
        if isinstance(t, DTensor):
            t = t.full_tensor()
        yield name, t


def weight_buckets(
    tensors: Iterator[tuple[str, torch.Tensor]], bucket_bytes: int
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """``tensors`` grouped into lists of about ``bucket_bytes`` (a tensor larger than that is
    a bucket of its own). What a broadcast to inference servers sends one message at a time."""
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, t in tensors:
        nbytes = t.numel() * t.element_size()
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, t))
        size += nbytes
    if bucket:
        yield bucket
