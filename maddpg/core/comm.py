"""torch.distributed set-up and the few collectives the modes use, timed; no-ops on one process."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from maddpg.core.errors import ConfigError, NonFiniteError, exit_on_error

T = TypeVar("T")


@dataclass
class Comm:
    """This process's place in the job, and its collectives.

    Every collective adds its wall time to `seconds`, so a metrics row can report the
    share of time spent communicating. With world_size 1 nothing is sent.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where collectives' tensors live
    seconds: float = field(default=0.0, repr=False)
    group: dist.ProcessGroup | None = field(default=None, repr=False)  # None: every rank of the job

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_mean_(self, tensors: list[torch.Tensor]) -> None:
        """Average `tensors` over ranks in place with ONE all-reduce of their concatenation."""
        if self.world_size == 1:
            return
        start = time.perf_counter()
        flat = _flatten_dense_tensors(tensors)
        dist.all_reduce(flat, group=self.group)
        flat /= self.world_size
        for tensor, reduced in zip(tensors, _unflatten_dense_tensors(flat, tensors), strict=True):
            tensor.copy_(reduced)
        self.seconds += time.perf_counter() - start

    def all_gather_agents(self, local: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
        """(B, n_local, ...) from every rank -> (B, sum of n_local, ...), in rank order. `sizes`: every
        rank's n_local, when they differ; the blocks then travel padded to the largest."""
        if self.world_size == 1:
            return local
        start = time.perf_counter()
        widest = max(sizes) if sizes else local.shape[1]
        padding = local.new_zeros(local.shape[0], widest - local.shape[1], *local.shape[2:])
        padded = torch.cat([local, padding], 1) if padding.shape[1] else local.contiguous()
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded, group=self.group)
        gathered = torch.cat(
            [part[:, :size] for part, size in zip(parts, sizes or [widest] * len(parts), strict=True)], 1
        )
        self.seconds += time.perf_counter() - start
        return gathered

    def subgroup(self, ranks: list[int]) -> Comm | None:
        """A Comm over `ranks` alone for the members, None for the others. Every rank must call it."""
        group = dist.new_group(ranks)
        if self.rank not in ranks:
            return None
        return Comm(ranks.index(self.rank), len(ranks), self.local_rank, self.device, group=group)

    def broadcast_object(self, obj: object, src: int = 0) -> object:
        if self.world_size == 1:
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=src)
        return holder[0]

    def first(self, value: object | None) -> object | None:
        """The lowest rank's value that is not None, on every rank (None if all are None): how ranks
        agree to stop together on an error that only some of them met. Every rank must call it."""
        return next((v for v in self.all_gather_object(value) if v is not None), None)

    def max(self, values: list[int]) -> list[int]:
        """Each value's maximum over the ranks, in one small all-reduce. Every rank must call it."""
        if self.world_size == 1:
            return values
        start = time.perf_counter()
        votes = torch.tensor(values, dtype=torch.int64, device=self.device)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX, group=self.group)
        self.seconds += time.perf_counter() - start
        return votes.tolist()

    def all_gather_object(self, obj: object) -> list[object]:
        """Every rank's `obj`, in rank order, on every rank. Every rank must call it."""
        if self.world_size == 1:
            return [obj]
        values = [None] * self.world_size
        dist.all_gather_object(values, obj, group=self.group)
        return values

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def on_main(comm: Comm, decide: Callable[[], T]) -> T:
    """`decide()` run on rank 0 and broadcast to every rank; its ConfigError is raised on every rank."""
    outcome = None
    if comm.is_main:
        try:
            outcome = (decide(), None)
        except ConfigError as error:
            outcome = (None, str(error))
    value, error = comm.broadcast_object(outcome)
    if error is not None:
        raise ConfigError(error)
    return value


def stop_together(comm: Comm, error: ConfigError | NonFiniteError | None) -> None:
    """If any rank met an error, every rank exits with the lowest such rank's (code 2, or 3 for a
    non-finite value), rank 0 printing its one line. Every rank must call it."""
    error = comm.first(error)
    if error is not None:
        # Rank 0 speaks before any rank leaves: torchrun stops every worker once one has exited.
        exit_on_error(error, speak=comm.is_main, before_exit=comm.barrier)


def together(comm: Comm, action: Callable[[], T]) -> T:
    """`action()` on every rank; a ConfigError on any rank stops them all (see stop_together)."""
    try:
        result, error = action(), None
    except ConfigError as e:
        result, error = None, e
    stop_together(comm, error)
    return result


def world_size_from_env() -> int:
    """The job's size as torchrun announces it, before any process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> Comm:
    """Join the job torchrun started (gloo on CPU, NCCL on CUDA); a plain `python` run is rank 0 of 1."""
    world_size = world_size_from_env()
    if world_size == 1:
        return Comm(device=device)
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Comm(rank=dist.get_rank(), world_size=world_size, local_rank=local_rank, device=device)


def exit_process(code: int = 0) -> None:
    """End a rank that has torn down, skipping interpreter finalisation: now and then a gloo
    worker thread aborted it ("terminate called without an active exception") after all work
    was done and every rank had passed the final barrier, turning a finished job into a failed one."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def teardown(wait_for_peers: bool = True) -> None:
    """Leave the job. After success, wait for every rank first, so none tears down while a peer
    still talks to it; after an error, leave at once (a barrier could wait forever)."""
    if dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        dist.destroy_process_group()
