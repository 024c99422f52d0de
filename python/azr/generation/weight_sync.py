"""Distributed weight sync for a run: the learner's weights to every SGLang server over NCCL.

:mod:`azr.generation.weight_broadcast` has the protocol's pieces (join the group as rank 0,
broadcast buckets while the servers are asked to receive them); this module runs them the way
a training run needs: the group is opened on the first push and kept, and each push
broadcasts the learner's current weights inside :meth:`SGLangBackend.weight_update` (pause,
one request and one round of broadcasts per bucket, one flush, continue).

Threads. The weights come from the learner's ``weight_buckets`` generator, which under FSDP
gathers every tensor from all learner ranks: a collective that rank 0 announces and must drive
to its end, in order. One worker thread runs that generator from its first bucket to its last
and hands each bucket to the event loop over a channel without a buffer, so the loop never
blocks on a gather and the gather of the next bucket overlaps the broadcast of the current
one (at most two buckets of bf16 tensors are held at once). If the broadcast fails, the
thread stops handing buckets over and closes the generator, which finishes the gather on every
rank; nothing waits for a consumer that has gone.

Failures. A broadcast cannot be withdrawn by one side: when a bucket fails the group is left
unusable (:attr:`WeightBroadcastGroup.broken`) and every later push raises
:class:`WeightSyncError` at once instead of waiting on a group that will never answer.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Protocol

import torch
import trio

from azr.generation.base import WeightSyncError
from azr.generation.weight_broadcast import (
    BroadcastTiming,
    WeightBroadcastGroup,
    broadcast_buckets,
    open_weight_update_group,
    single_errors,
)

if TYPE_CHECKING:
    from azr.generation.sglang import SGLangBackend

__all__ = ["BucketedWeights", "DistributedWeightSync"]

logger = logging.getLogger(__name__)

Pairs = list[tuple[str, torch.Tensor]]


class BucketedWeights(Protocol):
    """What a push reads: the learner's full weights, bucket by bucket (``Learner``)."""

    def weight_buckets(
        self, *, dtype: torch.dtype = ..., bucket_bytes: int | None = ...
    ) -> Generator[Pairs, None, None]: ...


class DistributedWeightSync:
    """Pushes weights to every server of ``backend`` over one collective group, opened once.

    ``master_address`` (None: this host's name) and ``master_port`` (0: a free one, picked
    when the group is opened) are where the servers reach the learner's rendezvous.
    ``world_size`` None means 1 + the number of servers (tensor parallelism 1); with
    ``rank_offsets`` (server URL -> its first rank) the servers' ranks are given explicitly.
    """

    def __init__(
        self,
        backend: SGLangBackend,
        *,
        bucket_bytes: int,
        master_address: str | None = None,
        master_port: int = 0,
        group_name: str = "azr_weights",
        collective_backend: str = "nccl",
        world_size: int | None = None,
        rank_offsets: Mapping[str, int] | None = None,
        timeout_s: float = 600.0,
        dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        if bucket_bytes < 1:
            raise ValueError(f"bucket_bytes must be >= 1, got {bucket_bytes}")
        if rank_offsets is not None and world_size is None:
            raise ValueError("rank_offsets needs world_size")
        self._backend = backend
        self.bucket_bytes = bucket_bytes
        self._address = master_address
        self._port = master_port
        self.group_name = group_name
        self._collective = collective_backend
        self._world_size = world_size
        self._offsets = dict(rank_offsets) if rank_offsets is not None else None
        self._timeout_s = timeout_s
        self._dtype = dtype
        self._group: WeightBroadcastGroup | None = None
        self.groups_opened = 0
        self.last: BroadcastTiming | None = None

    async def push(self, weights: BucketedWeights, version: int) -> BroadcastTiming:
        """Broadcast ``weights`` to every server as ``version`` (opening the group first, on
        the first push); returns the timing, also kept in :attr:`last`."""
        group = self._group
        if group is not None and group.broken:
            raise WeightSyncError(
                f"weight-update group {group.name!r} broke during an earlier update (a server "
                "or the network failed mid-broadcast) and cannot be used again; restart the "
                "SGLang servers and resume the run from its last checkpoint (azr train "
                "--resume), or use generation.sglang.weight_sync = 'disk'"
            )
        if group is None:
            group = self._group = await self._open()
        async with self._backend.weight_update(version) as update:
            send, receive = trio.open_memory_channel[Pairs](0)
            with single_errors():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._gather, weights, send)
                    with receive:
                        # The learner's buckets go as formed (one request each): re-packing
                        # them would wait for the first tensor of the next bucket, i.e. its
                        # whole gather, before sending this one.
                        timing = await broadcast_buckets(
                            group,
                            update.load_distributed,
                            receive,
                            version=version,
                            dtype=self._dtype,
                        )
        self.last = timing
        return timing

    async def _gather(self, weights: BucketedWeights, send: trio.MemorySendChannel[Pairs]) -> None:
        def run() -> None:
            buckets = weights.weight_buckets(dtype=self._dtype, bucket_bytes=self.bucket_bytes)
            # Closing the generator runs the gather to its end on every rank, whatever the
            # consumer did.
            with contextlib.closing(buckets):
                for bucket in buckets:
                    try:
                        trio.from_thread.run(send.send, bucket)
                    except (trio.BrokenResourceError, trio.Cancelled):
                        return  # the broadcast failed or was cancelled: nobody takes more

        # Not abandoned: the gather is a collective the other learner ranks run to its end.
        await trio.to_thread.run_sync(run)
        # Only a complete gather ends the stream; after an error the nursery cancels the
        # broadcast instead, so a partial set of weights is never taken for the whole.
        await send.aclose()

    async def _open(self) -> WeightBroadcastGroup:
        address = self._address or socket.gethostname()
        port = self._port or _free_port()
        workers = await self._backend.worker_urls()
        world_size = self._world_size or 1 + len(workers)

        async def ask_servers() -> None:
            offsets = await self._backend.init_weights_update_group(
                master_address=address,
                master_port=port,
                world_size=world_size,
                group_name=self.group_name,
                backend=self._collective,
                rank_offsets=self._offsets,
            )
            logger.info(
                "weight-update group %s at %s:%d, world size %d, server ranks from %s",
                self.group_name,
                address,
                port,
                world_size,
                offsets,
            )

        group = await open_weight_update_group(
            ask_servers,
            master_address=address,
            master_port=port,
            world_size=world_size,
            group_name=self.group_name,
            backend=self._collective,
            timeout_s=self._timeout_s,
        )
        self.groups_opened += 1
        return group

    def close(self) -> None:
        """Leave the group (at the end of a run). A broken group is left as it is: its
        abandoned broadcast may still hold it until the group's timeout."""
        group, self._group = self._group, None
        if group is not None and not group.broken:
            group.close()


def _free_port() -> int:
    # Another process could take the port before the rendezvous binds it; the window is a
    # few milliseconds, and a clash fails the rendezvous with a clear error.
    with socket.socket() as s:
        s.bind(("", 0))
        port: int = s.getsockname()[1]
        return port
