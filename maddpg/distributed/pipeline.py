"""Pipeline mode's traffic: rank 0 steps the envs and ships batches; ranks 1..n train a block of agents each.

Every round, rank 0 broadcasts a header (updates owed, flags, env steps, signal) and, when
updates are owed, those batches packed in one tensor; the learners run the updates and gather their
actor weights back to rank 0 alone (the learners share theirs at soft updates already). Rank 0
posts both without waiting and goes on stepping the envs: it acts with weights at most
`staleness` rounds old (0: it waits every round, and the run reproduces model mode bitwise, with
either action type: acting and the updates' Gumbel noise draw from streams of their own). Rank 0
decides when to checkpoint and stop; at every episode's end it polls its learners for a signal
they received, and reads the answer at the next episode's end, so the poll never makes it wait.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import torch
import torch.distributed as dist

from maddpg.core.buffer import ReplayBuffer, States, observe
from maddpg.core.comm import Comm, together
from maddpg.core.config import Config
from maddpg.core.learner import Maddpg
from maddpg.core.metrics import Tally
from maddpg.core.stop import StopRequest, exit_code
from maddpg.core.twin import Observer
from maddpg.distributed.modes import blocks

SAVE, DONE, POLL = 1, 2, 4  # header flags
HEADER = 4  # updates, flags, env steps, the signal the run stops on (with DONE)


def pack(batches: list[States]) -> torch.Tensor:
    """K batches of B transitions -> (K, B, D) in the states' dtype: every field flattened side by side
    (actions, rewards and flags in float32 survive a float64 trip exactly)."""
    dtype = batches[0].pos.dtype
    return torch.stack([torch.cat([(f.flatten(1) if f.dim() > 1 else f[:, None]).to(dtype) for f in b], 1)
                        for b in batches])  # fmt: skip


def layout(n_agents: int, n_obstacles: int, act_dim: int) -> list[tuple[int, ...]]:
    """Each States field's per-transition shape, in order."""
    n = n_agents
    return [(n + n_obstacles, 2), (n, 2), (n, act_dim), (n,), (n, 2), (n, 2), ()]


def unpack(packed: torch.Tensor, n_agents: int, n_obstacles: int, act_dim: int) -> list[States]:
    """(K, B, D) from `pack` -> K batches, the states in the packed dtype, the rest in float32."""
    shapes = layout(n_agents, n_obstacles, act_dim)
    widths = [math.prod(shape) for shape in shapes]
    batches = []
    for rows in packed:
        fields = [f.reshape(len(rows), *s) for f, s in zip(rows.split(widths, dim=1), shapes, strict=True)]
        batch = States(*fields)
        batches.append(batch._replace(**{k: getattr(batch, k).float() for k in ("act", "rew", "terminal")}))
    return batches


class RolloutLink:
    """Rank 0's end, the loop's `Updates` in pipeline mode: ships batches (as world states: O(N) floats
    per transition, where the learners' observations would take O(N^2)), takes actor weights back
    into its copy of every actor.

    Batches are shipped in rounds of `round_updates`, so that a round's three collectives are
    paid once for several updates; rank 0 acts with weights at most `staleness` rounds old. Rank 0
    decides when to stop or checkpoint, on its own signals and those its learners answered to the
    last poll, and says so in a round's header; its learner ranks check their parameters when they
    save (rank 0's metrics rows hold no losses).
    """

    def __init__(self, learner: Maddpg, comm: Comm, cfg: Config, buffer: ReplayBuffer, tally: Tally, batch_size: int):
        self.learner, self.comm, self.buffer, self.tally, self.batch_size = learner, comm, buffer, tally, batch_size
        self.staleness, self.round_updates = cfg.dist.staleness, cfg.dist.round_updates
        self.blocks = [len(block) for block in blocks(cfg.n_learners, comm.world_size - 1)]  # of the learner ranks
        self.shape = (max(self.blocks), learner.actor.rows().shape[1])  # a learner rank's actors, padded
        self.pending: deque = deque()
        self.owed: list[States] = []
        self.poll: tuple[list[dist.Work], torch.Tensor, torch.Tensor] | None = None  # under way: works, header, answer

    def add(self, updates: int, env_steps: int) -> None:
        """Batches for the next updates, in order; a full round is shipped."""
        self.owed += [self.buffer.sample_states(self.batch_size) for _ in range(updates)]
        if len(self.owed) >= self.round_updates:
            self.send(self.owed, env_steps)
            self.owed = []

    def drain(self, env_steps: int) -> None:
        """Ship what is owed and wait for every round in flight: the actor copy is then current. The
        wait is the learners' update time, and counted as such."""
        with self.tally.timer("update"):
            if self.owed:
                self.send(self.owed, env_steps)
                self.owed = []
            start = time.perf_counter()
            while self.pending:
                self._take(*self.pending.popleft())
            self.comm.seconds += time.perf_counter() - start

    def save(self, env_steps: int) -> None:
        self.drain(env_steps)
        self.send([], env_steps, flags=SAVE)  # the learner ranks save their part

    def finish(self, env_steps: int, signum: int) -> None:
        self._answer()  # nothing left in flight
        self.send([], env_steps, flags=DONE, signum=signum)

    def agree(self, votes: list[int]) -> list[int]:
        """Rank 0's votes, with the signal its learners answered to the previous poll; then the next
        poll (a header, and an all-reduce of the learners' signals), read at the next call. A signal
        that reaches only learner ranks stops the run an episode later than one that reaches rank 0."""
        heard = self._answer()
        device = self.learner.device
        header = torch.tensor([0, POLL, 0, 0], device=device)
        answer = torch.zeros(1, dtype=torch.long, device=device)  # rank 0's part: its own votes count above
        works = [dist.broadcast(header, 0, async_op=True), dist.all_reduce(answer, dist.ReduceOp.MAX, async_op=True)]
        self.poll = (works, header, answer)
        return [max(votes[0], heard), *votes[1:]]

    def check(self, row: dict, env_steps: int) -> None:
        pass  # rank 0's rows hold no losses; its learners check their parameters at saves

    def send(self, batches: list[States], env_steps: int, flags: int = 0, signum: int = 0) -> None:
        start = time.perf_counter()
        device = self.learner.device
        header = torch.tensor([len(batches), flags, env_steps, signum], device=device)
        # Posted without waiting; the handles keep the sent tensors alive until the weights come back.
        sends = [(dist.broadcast(header, 0, async_op=True), header)]
        if batches:
            packed = pack(batches)
            sends.append((dist.broadcast(packed, 0, async_op=True), packed))
            parts = [torch.empty(self.shape, device=device) for _ in range(self.comm.world_size)]
            # Only rank 0 needs the actors: a gather (rank 0's own slot, a placeholder, never leaves it).
            work = dist.gather(torch.zeros(self.shape, device=device), parts, dst=0, async_op=True)
            self.pending.append((sends, work, parts[1:]))
        else:
            self.pending.append((sends, None, []))
        while len(self.pending) > self.staleness:
            self._take(*self.pending.popleft())
        self.comm.seconds += time.perf_counter() - start

    def _answer(self) -> int:
        """The signal the learners answered to the poll under way, waiting for it (0: none, or no poll)."""
        if self.poll is None:
            return 0
        start = time.perf_counter()
        works, _, answer = self.poll
        for work in works:
            work.wait()
        self.poll = None
        self.comm.seconds += time.perf_counter() - start
        return int(answer)

    def _take(self, sends: list, work: dist.Work | None, weights: list[torch.Tensor]) -> None:
        for send, _ in sends:
            send.wait()
        if work is None:
            return
        work.wait()
        self.learner.actor.load_rows(torch.cat([part[:n] for part, n in zip(weights, self.blocks, strict=True)]))


def serve_updates(
    learner: Maddpg, cfg: Config, state_dtype: torch.dtype, batch_size: int, save: Callable[[int], None],
    stop: StopRequest,
) -> int:  # fmt: skip
    """A learner rank's loop: receive batches (world states in `state_dtype`), observe them, update, send
    its actors back (padded to the widest block), answer polls with `stop`'s signal, until rank 0 says
    done -> the signal the run stopped on (0: it finished)."""
    device, n_obstacles, act_dim = learner.device, cfg.env.num_obstacles, learner.act_dim
    observer = Observer(cfg.env, device)
    widest = max(len(block) for block in blocks(cfg.n_learners, dist.get_world_size() - 1))
    width = sum(math.prod(shape) for shape in layout(observer.n_agents, n_obstacles, act_dim))
    while True:
        header = torch.zeros(HEADER, dtype=torch.long, device=device)
        dist.broadcast(header, 0)
        updates, flags, env_steps, signum = header.tolist()
        if updates:
            packed = torch.empty(updates, batch_size, width, device=device, dtype=state_dtype)
            dist.broadcast(packed, 0)
            for batch in unpack(packed, observer.n_agents, n_obstacles, act_dim):
                learner.update(observe(observer, batch))
            rows = learner.actor.rows()  # this rank's actors (n_local, P)
            weights = torch.cat([rows, rows.new_zeros(widest - len(rows), rows.shape[1])])
            dist.gather(weights, dst=0)
        if flags & POLL:
            dist.all_reduce(torch.tensor([stop.signum], device=device), dist.ReduceOp.MAX)
        if flags & SAVE:
            save(env_steps)
        if flags & DONE:
            return signum


def serve(
    learner: Maddpg, cfg: Config, comm: Comm, state_dtype: torch.dtype, batch_size: int,
    restore: Callable[[], None] | None, save: Callable[[int], None],
) -> int:  # fmt: skip
    """A learner rank's run: `restore` its part (None: a new run), then serve updates until rank 0 says
    done, calling `save(env_steps)` when rank 0 says save -> the exit code (rank 0 decides when to stop,
    and says on which signal)."""
    if restore is not None:
        together(comm, restore)
    comm.barrier()  # rank 0 creates the run directory
    with StopRequest() as stop:
        signum = serve_updates(learner, cfg, state_dtype, batch_size, save, stop)
    return exit_code(signum) if signum else 0
