"""Where the training loop's updates run: here (LocalUpdates), or on pipeline mode's learner ranks
(pipeline.RolloutLink). The loop talks to either through `Updates` and holds no mode of its own."""

from __future__ import annotations

from typing import Protocol

from maddpg.core.buffer import MixedBuffer, ReplayBuffer
from maddpg.core.comm import Comm
from maddpg.core.guard import stop_on_nonfinite_loss
from maddpg.core.learner import Maddpg
from maddpg.core.metrics import Tally


class Updates(Protocol):
    def add(self, updates: int, env_steps: int) -> None:
        """Run (or hand over) `updates` updates of every learning agent, each on a batch of the buffer."""

    def drain(self, env_steps: int) -> None:
        """Wait until every update handed over has run and the acting actors are current."""

    def save(self, env_steps: int) -> None:
        """Before this rank checkpoints: drain, and have every other holder of networks save its part."""

    def finish(self, env_steps: int, signum: int) -> None:
        """The loop is over: it reached train.total_steps (signum 0) or stopped on signal `signum`."""

    def agree(self, votes: list[int]) -> list[int]:
        """Each vote's maximum over the ranks (a signal received, checkpoint now), so that every rank
        acts on it together."""

    def check(self, row: dict, env_steps: int) -> None:
        """Stop every rank if a metrics row shows a non-finite loss."""


class LocalUpdates:
    """Every update runs on this rank, on batches of its own buffer; ranks agree by collectives."""

    def __init__(self, learner: Maddpg, buffer: ReplayBuffer | MixedBuffer, tally: Tally, comm: Comm, batch_size: int):
        self.learner, self.buffer, self.tally, self.comm, self.batch_size = learner, buffer, tally, comm, batch_size

    def add(self, updates: int, env_steps: int) -> None:
        for _ in range(updates):
            self.tally.add_update(*self.learner.update(self.buffer.sample(self.batch_size)))

    def drain(self, env_steps: int) -> None:
        pass  # every update has run

    def save(self, env_steps: int) -> None:
        pass  # every rank saves its own part

    def finish(self, env_steps: int, signum: int) -> None:
        pass

    def agree(self, votes: list[int]) -> list[int]:
        return self.comm.max(votes)

    def check(self, row: dict, env_steps: int) -> None:
        stop_on_nonfinite_loss(row, self.tally.agent_names, env_steps, self.comm)
