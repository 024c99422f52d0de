"""The learner's end of SGLang's NCCL weight sync: a collective group, and bucketed broadcasts.

SGLang documents the protocol: the trainer asks every server to join a weight-update group with
``/init_weights_update_group`` (master address and port, the server's ``rank_offset``,
``world_size``, ``group_name``, ``backend``) and joins it itself as rank 0; per update it sends
``/update_weights_from_distributed`` with the ``names``, ``dtypes`` and ``shapes`` of some
tensors while broadcasting exactly those tensors, in that order, one broadcast per tensor, from
rank 0. The servers receive into fresh tensors of the announced dtype and shape and load them by
name. The HTTP side is :class:`~azr.generation.sglang.SGLangBackend`; this module is the tensor
side, and :func:`broadcast_weights` runs both together.

The group is separate from any training group (FSDP under torchrun has its own default group):
it is built from its own rendezvous, store prefix and name, the way SGLang's servers build their
end, so both sides meet on the same store keys. Tensors go in bfloat16 (the servers' dtype for
the paper's models, half the bytes of the fp32 master weights), in buckets of about
``bucket_bytes``: one HTTP request per bucket, so that a server never holds more than one bucket
of received tensors besides its weights, and a learner never more than one bucket of converted
ones. The tensors come from an iterator of ``(name, tensor)`` (:func:`broadcast_weights`), or
as buckets already formed by another thread (:func:`broadcast_buckets`, which a run uses, see
:mod:`azr.generation.weight_sync`), so a sharded learner can gather each bucket just before
it is sent.

A broadcast cannot be cancelled from one side: if the HTTP side fails while the tensor side
waits, the group is left unusable (:attr:`WeightBroadcastGroup.broken`) and the waiting thread
returns at the group's timeout. Make a new group (new port or name) before the next update.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass

import torch
import torch.distributed as dist
import trio
from torch.distributed import distributed_c10d as c10d
from torch.distributed.rendezvous import rendezvous

from azr.generation.base import DistributedWeights, WeightSyncError

__all__ = [
    "BroadcastTiming",
    "WeightBroadcastGroup",
    "as_bucket",
    "broadcast_buckets",
    "broadcast_weights",
    "bucket_weights",
    "open_weight_update_group",
]

logger = logging.getLogger(__name__)

DEFAULT_BUCKET_BYTES = 512 * 2**20


class WeightBroadcastGroup:
    """Rank 0 of a weight-update group, built without touching the default process group."""

    def __init__(self, group: dist.ProcessGroup, name: str, world_size: int) -> None:
        self._group: dist.ProcessGroup | None = group
        self.name = name
        self.world_size = world_size
        self.broken = False

    @classmethod
    def join(
        cls,
        *,
        master_address: str,
        master_port: int,
        world_size: int,
        group_name: str,
        backend: str = "nccl",
        timeout_s: float = 600.0,
    ) -> WeightBroadcastGroup:
        """Create the group as rank 0; blocks until all ``world_size`` ranks have joined.

        The servers join through ``/init_weights_update_group``, which must be in flight at the
        same time (see :func:`open_weight_update_group`).
        """
        if world_size < 2:
            raise WeightSyncError(f"a weight-update group needs servers: world_size {world_size}")
        timeout = datetime.timedelta(seconds=timeout_s)
        url = f"tcp://{_host(master_address)}:{master_port}"
        store, _, _ = next(rendezvous(url, 0, world_size, timeout=timeout))
        # The group name as the store prefix (as SGLang's servers do) keeps this group's keys
        # apart from any other group's on a shared store.
        store = c10d.PrefixStore(group_name, store)
        group, _ = c10d._new_process_group_helper(
            world_size,
            0,
            [],
            backend,
            store,
            group_name=c10d.GroupName(group_name),
            timeout=timeout,
        )
        assert isinstance(group, dist.ProcessGroup)
        # Collectives look a group's ranks up here; the group spans ranks 0..world_size-1.
        c10d._world.pg_group_ranks[group] = {rank: rank for rank in range(world_size)}
        return cls(group, group_name, world_size)

    def broadcast(self, tensors: Iterable[torch.Tensor]) -> None:
        """Send each tensor from rank 0, one broadcast per tensor, in order; wait for all."""
        if self._group is None:
            raise WeightSyncError(f"weight-update group {self.name!r} is closed")
        if self.broken:
            raise WeightSyncError(
                f"weight-update group {self.name!r} failed during an earlier update; "
                "initialise a new group"
            )
        works = [dist.broadcast(t, src=0, group=self._group, async_op=True) for t in tensors]
        for work in works:
            assert work is not None
            work.wait()

    def close(self) -> None:
        if self._group is not None:
            dist.destroy_process_group(self._group)
            self._group = None


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


@dataclass(frozen=True, slots=True)
class Bucket:
    names: tuple[str, ...]
    tensors: tuple[torch.Tensor, ...]  # already in the wire dtype, contiguous

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors)

    def metadata(self, group_name: str, version: int) -> DistributedWeights:
        """The ``/update_weights_from_distributed`` description of this bucket."""
        return DistributedWeights(
            group_name=group_name,
            names=self.names,
            dtypes=tuple(str(t.dtype).removeprefix("torch.") for t in self.tensors),
            shapes=tuple(tuple(t.shape) for t in self.tensors),
            version=version,
        )


class _Packer:
    """Fills buckets of at most ``bucket_bytes`` one tensor at a time (shared by the
    synchronous and the asynchronous producers of weights)."""

    def __init__(self, bucket_bytes: int, dtype: torch.dtype | None) -> None:
        if bucket_bytes < 1:
            raise ValueError(f"bucket_bytes must be >= 1, got {bucket_bytes}")
        self._limit = bucket_bytes
        self._dtype = dtype
        self._names: list[str] = []
        self._tensors: list[torch.Tensor] = []
        self._size = 0

    def add(self, name: str, tensor: torch.Tensor) -> Bucket | None:
        """Take one tensor; returns the previous bucket when this one does not fit in it."""
        wire = tensor.detach()
        if self._dtype is not None and wire.is_floating_point():
            wire = wire.to(self._dtype)
        wire = wire.contiguous()
        nbytes = wire.numel() * wire.element_size()
        full = None
        if self._tensors and self._size + nbytes > self._limit:
            full = self.finish()
        self._names.append(name)
        self._tensors.append(wire)
        self._size += nbytes
        return full

    def finish(self) -> Bucket | None:
        """The bucket being filled, if it holds anything; starts a new one."""
        if not self._tensors:
            return None
        bucket = Bucket(tuple(self._names), tuple(self._tensors))
        self._names, self._tensors, self._size = [], [], 0
        return bucket


def bucket_weights(
    weights: Iterable[tuple[str, torch.Tensor]],
    *,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    dtype: torch.dtype | None = torch.bfloat16,
) -> Iterator[Bucket]:
    """Consecutive buckets of at most ``bucket_bytes`` (in ``dtype``; a larger tensor goes
    alone), in the order given. Floating-point tensors are converted to ``dtype`` (None: left
    as they are); integer buffers keep theirs. Converted lazily, one bucket at a time."""
    packer = _Packer(bucket_bytes, dtype)
    for name, tensor in weights:
        full = packer.add(name, tensor)
        if full is not None:
            yield full
    last = packer.finish()
    if last is not None:
        yield last


def as_bucket(pairs: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype | None) -> Bucket:
    """One bucket of the given tensors, whatever their size (converted as in
    :func:`bucket_weights`)."""
    packer = _Packer(2**62, dtype)
    for name, tensor in pairs:
        packer.add(name, tensor)
    bucket = packer.finish()
    if bucket is None:
        raise ValueError("a bucket needs at least one tensor")
    return bucket


@dataclass(frozen=True, slots=True)
class BroadcastTiming:
    """One weight sync: wall time in total and inside the broadcasts, bytes sent, counts."""

    seconds: float
    broadcast_seconds: float
    bytes: int
    tensors: int
    buckets: int


SendBucket = Callable[[DistributedWeights], Awaitable[object]]
"""Sends one bucket's ``/update_weights_from_distributed`` to every server and returns when they
have loaded it (e.g. a bound :meth:`SGLangWeightUpdate.load_distributed`)."""


async def broadcast_weights(
    group: WeightBroadcastGroup,
    send: SendBucket,
    weights: Iterable[tuple[str, torch.Tensor]],
    *,
    version: int,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    dtype: torch.dtype | None = torch.bfloat16,
) -> BroadcastTiming:
    """Push ``weights`` to every server: per bucket, the HTTP request and the broadcasts run
    together (each side waits for the other), and the next bucket starts once both finished.

    Run it while the servers are paused for the update (the SGLang backend's
    :meth:`~azr.generation.sglang.SGLangBackend.weight_update` context). If the request fails,
    the group is marked broken and the error is raised. ``weights`` is advanced on the event
    loop; tensors that take long to produce go through :func:`broadcast_buckets` instead.
    """
    return await _broadcast(
        group,
        send,
        _Ready(bucket_weights(weights, bucket_bytes=bucket_bytes, dtype=dtype)),
        version,
    )


async def broadcast_buckets(
    group: WeightBroadcastGroup,
    send: SendBucket,
    buckets: AsyncIterable[Sequence[tuple[str, torch.Tensor]]],
    *,
    version: int,
    dtype: torch.dtype | None = torch.bfloat16,
) -> BroadcastTiming:
    """:func:`broadcast_weights` for buckets already formed (one request each, as given),
    produced asynchronously: e.g. a sharded learner's gather in a worker thread, whose next
    bucket is gathered while this one is sent."""

    async def converted() -> AsyncGenerator[Bucket, None]:
        async for pairs in buckets:
            yield as_bucket(pairs, dtype)

    stream = converted()
    async with contextlib.aclosing(stream):
        return await _broadcast(group, send, stream, version)


class _Ready:
    """Buckets computed on the event loop, as an asynchronous iterator."""

    def __init__(self, buckets: Iterator[Bucket]) -> None:
        self._buckets = buckets

    def __aiter__(self) -> _Ready:
        return self

    async def __anext__(self) -> Bucket:
        try:
            return next(self._buckets)
        except StopIteration:
            raise StopAsyncIteration from None


async def _broadcast(
    group: WeightBroadcastGroup, send: SendBucket, buckets: AsyncIterator[Bucket], version: int
) -> BroadcastTiming:
    start = time.perf_counter()
    in_broadcast = 0.0
    sent = count = done = 0
    async for bucket in buckets:
        try:
            in_broadcast += await _send_bucket(group, send, bucket, version)
        except BaseException:
            group.broken = True
            raise
        sent += bucket.nbytes
        count += len(bucket.names)
        done += 1
    timing = BroadcastTiming(
        seconds=time.perf_counter() - start,
        broadcast_seconds=in_broadcast,
        bytes=sent,
        tensors=count,
        buckets=done,
    )
    logger.info(
        "weights v%d broadcast to group %s: %d tensors, %.1f MiB in %d buckets, %.2f s "
        "(%.2f s in broadcasts)",
        version,
        group.name,
        timing.tensors,
        timing.bytes / 2**20,
        timing.buckets,
        timing.seconds,
        timing.broadcast_seconds,
    )
    return timing


@contextlib.contextmanager
def single_errors() -> Iterator[None]:
    """Let one error raised in a nursery out as itself, not inside an exception group: callers
    of the weight sync catch :class:`WeightSyncError`."""
    try:
        yield
    except BaseExceptionGroup as group:
        exc: BaseException = group
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        if exc is group:
            raise
        # Raised inside ``except group``, it would get the group as its context and print
        # every traceback twice: keep the context it had.
        context = exc.__context__
        try:
            raise exc
        finally:
            exc.__context__ = context
            del exc, context


async def _send_bucket(
    group: WeightBroadcastGroup, send: SendBucket, bucket: Bucket, version: int
) -> float:
    """The request and the broadcasts of one bucket, together; returns the broadcast time."""
    seconds: list[float] = []

    def push() -> None:
        t0 = time.perf_counter()
        group.broadcast(bucket.tensors)
        seconds.append(time.perf_counter() - t0)

    async def run_broadcast() -> None:
        # Abandoned if the request fails: a broadcast cannot be withdrawn by one side.
        await trio.to_thread.run_sync(push, abandon_on_cancel=True)

    with single_errors():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_broadcast)
            await send(bucket.metadata(group.name, version))
    return seconds[0] if seconds else 0.0


async def open_weight_update_group(
    request: Callable[[], Awaitable[object]],
    *,
    master_address: str,
    master_port: int,
    world_size: int,
    group_name: str,
    backend: str = "nccl",
    timeout_s: float = 600.0,
) -> WeightBroadcastGroup:
    """Join the group as rank 0 while ``request`` asks the servers to join (e.g. a bound
    :meth:`~azr.generation.sglang.SGLangBackend.init_weights_update_group` with the same
    address, port, world size, group name and backend); both must be in flight together."""
    joined: list[WeightBroadcastGroup] = []

    def join() -> None:
        joined.append(
            WeightBroadcastGroup.join(
                master_address=master_address,
                master_port=master_port,
                world_size=world_size,
                group_name=group_name,
                backend=backend,
                timeout_s=timeout_s,
            )
        )

    async def run_join() -> None:
        await trio.to_thread.run_sync(join, abandon_on_cancel=True)

    with single_errors():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_join)
            await request()
    return joined[0]
