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

from typing import NamedTuple

import torch

from maddpg.errors import ConfigError
from maddpg.twin import Observer


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
