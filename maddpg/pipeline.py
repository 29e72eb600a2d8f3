"""Pipeline mode's traffic: rank 0 steps the envs and ships batches; ranks 1..n train one agent each.

Every round, rank 0 broadcasts a header (updates owed, flags, env steps) and, when updates
are owed, those batches packed in one tensor; the learners run the updates and all-gather
their actor weights back. Rank 0 posts both without waiting and goes on stepping the envs:
it acts with weights at most `staleness` rounds old (0: it waits every round, and the run
reproduces model mode).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import torch
import torch.distributed as dist

from maddpg.buffer import Batch
from maddpg.distributed import Comm
from maddpg.learner import Maddpg

SAVE, DONE = 1, 2  # header flags


def pack(batches: list[Batch]) -> torch.Tensor:
    """K batches of B transitions -> (K, B, D): every field flattened side by side."""
    return torch.stack([torch.cat([field.flatten(1) if field.dim() > 1 else field[:, None] for field in b], 1)
                        for b in batches])  # fmt: skip


def layout(n_agents: int, obs_dim: int, act_dim: int) -> list[tuple[int, ...]]:
    """Each Batch field's per-transition shape, in order."""
    return [(n_agents, obs_dim), (n_agents, act_dim), (n_agents,), (n_agents, obs_dim), ()]


def unpack(packed: torch.Tensor, n_agents: int, obs_dim: int, act_dim: int) -> list[Batch]:
    """(K, B, D) from `pack` -> K batches."""
    shapes = layout(n_agents, obs_dim, act_dim)
    widths = [math.prod(shape) for shape in shapes]
    batches = []
    for rows in packed:
        fields = rows.split(widths, dim=1)
        batches.append(Batch(*(f.reshape(len(rows), *s) for f, s in zip(fields, shapes, strict=True))))
    return batches


class RolloutLink:
    """Rank 0's end: ships batches, takes actor weights back into its copy of every actor.

    Batches are shipped in rounds of `round_updates`, so that a round's three collectives are
    paid once for several updates; rank 0 acts with weights at most `staleness` rounds old.
    """

    def __init__(self, learner: Maddpg, comm: Comm, staleness: int, round_updates: int):
        self.learner, self.comm, self.staleness, self.round_updates = learner, comm, staleness, round_updates
        self.size = learner.actor.rows().shape[1]  # one agent's actor
        self.pending: deque = deque()
        self.owed: list[Batch] = []

    def add(self, batches: list[Batch], env_steps: int) -> None:
        """Batches for the next updates, in order; a full round is shipped."""
        self.owed += batches
        if len(self.owed) >= self.round_updates:
            self.send(self.owed, env_steps)
            self.owed = []

    def send(self, batches: list[Batch], env_steps: int, flags: int = 0) -> None:
        start = time.perf_counter()
        device = self.learner.device
        header = torch.tensor([len(batches), flags, env_steps], device=device)
        # Posted without waiting; the handles keep the sent tensors alive until the weights come back.
        sends = [(dist.broadcast(header, 0, async_op=True), header)]
        if batches:
            packed = pack(batches)
            sends.append((dist.broadcast(packed, 0, async_op=True), packed))
            parts = [torch.empty(self.size, device=device) for _ in range(self.comm.world_size)]
            work = dist.all_gather(parts, torch.zeros(self.size, device=device), async_op=True)
            self.pending.append((sends, work, parts[1:]))
        else:
            self.pending.append((sends, None, []))
        while len(self.pending) > self.staleness:
            self._take(*self.pending.popleft())
        self.comm.seconds += time.perf_counter() - start

    def drain(self, env_steps: int) -> None:
        """Ship what is owed and wait for every round in flight: the actor copy is then current
        (before evaluating or saving)."""
        if self.owed:
            self.send(self.owed, env_steps)
            self.owed = []
        start = time.perf_counter()
        while self.pending:
            self._take(*self.pending.popleft())
        self.comm.seconds += time.perf_counter() - start

    def _take(self, sends: list, work: dist.Work | None, weights: list[torch.Tensor]) -> None:
        for send, _ in sends:
            send.wait()
        if work is None:
            return
        work.wait()
        self.learner.actor.load_rows(torch.stack(weights))


def serve_updates(
    learner: Maddpg,
    n_agents: int,
    obs_dim: int,
    act_dim: int,
    batch_size: int,
    save: Callable[[int], None],
) -> None:
    """A learner rank's loop: receive batches, update, send the actor back, until rank 0 says done."""
    device = learner.device
    width = sum(math.prod(shape) for shape in layout(n_agents, obs_dim, act_dim))
    while True:
        header = torch.zeros(3, dtype=torch.long, device=device)
        dist.broadcast(header, 0)
        updates, flags, env_steps = header.tolist()
        if updates:
            packed = torch.empty(updates, batch_size, width, device=device)
            dist.broadcast(packed, 0)
            for batch in unpack(packed, n_agents, obs_dim, act_dim):
                learner.update(batch)
            weights = learner.actor.rows()[0]  # this rank's one actor
            dist.all_gather([torch.empty_like(weights) for _ in range(dist.get_world_size())], weights)
        if flags & SAVE:
            save(env_steps)
        if flags & DONE:
            return
