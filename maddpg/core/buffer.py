"""Replay buffer of world states: preallocated tensors, ring overwrite of the oldest, seeded uniform
sampling, observations computed when a batch is sampled.

simple_tag is fully observable: every agent's observation is a function of the world state (each
agent's position and velocity, the obstacles' positions). Storing states instead of observations
takes O(N) floats per transition for N agents instead of every agent's O(N) observation, O(N^2).
A sampled batch's observations are computed from its states by the env's own observation function
(twin.Observer), batched, in the states' dtype (float64 for mpe2, whose observations are float64
rounded to float32), so they are the observations the env returned, bit for bit (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import torch

from maddpg.core.errors import ConfigError


class Observer(Protocol):
    """The env's observation function, twin.Observer (typed here, not imported: checkpoint.py and
    pretrained.py read buffers' states, and their import chains stay short)."""

    n_agents: int

    def __call__(self, pos: torch.Tensor, vel: torch.Tensor) -> torch.Tensor:
        """World states: pos (B, N+L, 2), vel (B, N, 2) -> every agent's observation (B, N, O)."""


class Batch(NamedTuple):
    obs: torch.Tensor  # (B, N, O)
    act: torch.Tensor  # (B, N, A)
    rew: torch.Tensor  # (B, N)
    next_obs: torch.Tensor  # (B, N, O)
    terminal: torch.Tensor  # (B,) 1.0 where the episode really ended; time-limit truncation is not terminal


class States(NamedTuple):
    """Transitions as world states, what the buffer stores (and pipeline mode ships)."""

    pos: torch.Tensor  # (B, N+L, 2) agents, then obstacles, before the step
    vel: torch.Tensor  # (B, N, 2) agents
    act: torch.Tensor  # (B, N, A)
    rew: torch.Tensor  # (B, N)
    next_pos: torch.Tensor  # (B, N, 2) agents after the step (obstacles never move)
    next_vel: torch.Tensor  # (B, N, 2)
    terminal: torch.Tensor  # (B,)


def states(state: dict, act: torch.Tensor, rew: torch.Tensor, next_state: dict, terminal: torch.Tensor) -> States:
    """E transitions from the env's `get_state()` before and after a step -> States."""
    n = act.shape[1]
    return States(state["pos"], state["vel"][:, :n], act, rew, next_state["pos"][:, :n], next_state["vel"][:, :n],
                  terminal)  # fmt: skip


def observe(observer: Observer, batch: States) -> Batch:
    """A batch of states -> the batch of observations (float32) the learner trains on."""
    n = batch.act.shape[1]
    next_pos = torch.cat([batch.next_pos, batch.pos[:, n:]], 1)
    obs = observer(batch.pos, batch.vel).float()
    next_obs = observer(next_pos, batch.next_vel).float()
    return Batch(obs, batch.act, batch.rew, next_obs, batch.terminal)


class ReplayBuffer:
    def __init__(
        self, capacity: int, observer: Observer, n_obstacles: int, act_dim: int, seed: int, device="cpu",
        state_dtype: torch.dtype = torch.float32, checkpoint_data: bool = False,
    ):  # fmt: skip
        """`checkpoint_data`: state_dict holds the contents by default (train.checkpoint_buffer)."""
        n = observer.n_agents
        self.capacity, self.size, self.pos, self.observer = capacity, 0, 0, observer
        self.checkpoint_data = checkpoint_data
        shapes = {  # field: (per-transition shape, dtype)
            "pos": ((n + n_obstacles, 2), state_dtype),
            "vel": ((n, 2), state_dtype),
            "act": ((n, act_dim), torch.float32),
            "rew": ((n,), torch.float32),
            "next_pos": ((n, 2), state_dtype),
            "next_vel": ((n, 2), state_dtype),
            "terminal": ((), torch.float32),
        }
        self.data = {k: torch.zeros((capacity, *s), dtype=t, device=device) for k, (s, t) in shapes.items()}
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def add(self, batch: States) -> None:
        """Store E transitions at once (every field has a leading dimension E)."""
        n = batch.act.shape[0]
        idx = (self.pos + torch.arange(n, device=batch.act.device)) % self.capacity
        for key, value in batch._asdict().items():
            self.data[key][idx] = value
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample_states(self, batch_size: int) -> States:
        idx = torch.randint(self.size, (batch_size,), generator=self.generator, device=self.generator.device)
        return States(**{k: v[idx] for k, v in self.data.items()})

    def sample(self, batch_size: int) -> Batch:
        return observe(self.observer, self.sample_states(batch_size))

    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.data.values())

    def state_dict(self, include_data: bool | None = None) -> dict:
        """Counters and sampling RNG, and the contents when `include_data` (default: checkpoint_data)."""
        state = {"size": self.size, "pos": self.pos, "generator": self.generator.get_state()}
        if self.checkpoint_data if include_data is None else include_data:
            state["data"] = {k: v[: self.size] for k, v in self.data.items()}
        return state

    @staticmethod
    def drop_data(state: dict) -> None:
        """Drop the contents from a state this class wrote, in place; it then loads as an empty buffer."""
        state.pop("data", None)

    @staticmethod
    def transitions(state: dict) -> int:
        """The transitions a state this class wrote holds (0 without its contents)."""
        return max((len(field) for field in state.get("data", {}).values()), default=0)

    def load_state_dict(self, state: dict) -> None:
        """Restore counters and sampling RNG, and the contents when the state holds them (else start empty)."""
        self.generator.set_state(state["generator"])
        if "data" in state:
            if set(state["data"]) != set(self.data):
                raise ConfigError(
                    "the checkpoint's replay buffer holds observations, written by an older version: resume it "
                    "with that version, or from a checkpoint without its buffer (train.checkpoint_buffer=false)"
                )
            self.size, self.pos = state["size"], state["pos"]
            for k, v in state["data"].items():
                self.data[k][: self.size] = v
        else:
            self.size = self.pos = 0


def rows_of(n: int, k: int, device: torch.device) -> list[torch.Tensor]:
    """Which of `n` env copies each of `k` prey plays: copy e plays prey e % k -> k boolean masks (n,)."""
    of = torch.arange(n, device=device) % k
    return [of == prey for prey in range(k)]


class Turns(Protocol):
    """The mix of prey a MixedBuffer samples for, opponents.MixedPrey (typed here: opponents.py imports
    this module): `turn` is the prey whose batch is trained on, whose target actions the critics' targets
    take."""

    turn: int


class MixedBuffer:
    """One replay buffer per prey of `prey` (prey.mode=mix); batches come from each in turn."""

    def __init__(self, prey: Turns, buffers: Sequence[ReplayBuffer]):
        self.prey, self.buffers = prey, list(buffers)

    @property
    def size(self) -> int:
        return sum(buffer.size for buffer in self.buffers)

    def add(self, batch: States) -> None:
        """E transitions, copy e's into buffer e % K."""
        rows = rows_of(len(batch.act), len(self.buffers), batch.act.device)
        for mine, buffer in zip(rows, self.buffers, strict=True):
            buffer.add(States(*(field[mine] for field in batch)))

    def sample(self, batch_size: int) -> Batch:
        """The next prey's batch; its target actions are the critics' targets until the next sample."""
        self.prey.turn = (self.prey.turn + 1) % len(self.buffers)
        return self.buffers[self.prey.turn].sample(batch_size)

    def nbytes(self) -> int:
        return sum(buffer.nbytes() for buffer in self.buffers)

    def state_dict(self, include_data: bool | None = None) -> dict:
        return {"turn": self.prey.turn, "buffers": [b.state_dict(include_data) for b in self.buffers]}

    def load_state_dict(self, state: dict) -> None:
        self.prey.turn = state["turn"]
        for buffer, buffer_state in zip(self.buffers, state["buffers"], strict=True):
            buffer.load_state_dict(buffer_state)

    @staticmethod
    def drop_data(state: dict) -> None:
        """Drop every prey's buffer contents from a state this class wrote, in place."""
        for buffer_state in state["buffers"]:
            ReplayBuffer.drop_data(buffer_state)

    @staticmethod
    def transitions(state: dict) -> int:
        """The transitions a state this class wrote holds, every prey's buffer together."""
        return sum(ReplayBuffer.transitions(buffer_state) for buffer_state in state["buffers"])


def buffer_class(state: dict) -> type[ReplayBuffer] | type[MixedBuffer]:
    """The class that wrote a buffer's state: a MixedBuffer's holds one state per prey under "buffers"."""
    return MixedBuffer if "buffers" in state else ReplayBuffer
