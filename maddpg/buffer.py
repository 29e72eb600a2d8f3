"""Replay buffer: preallocated tensors, ring overwrite of the oldest, seeded uniform sampling."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    obs: torch.Tensor  # (B, N, O)
    act: torch.Tensor  # (B, N, A)
    rew: torch.Tensor  # (B, N)
    next_obs: torch.Tensor  # (B, N, O)
    terminal: torch.Tensor  # (B,) 1.0 where the episode really ended; time-limit truncation is not terminal


class ReplayBuffer:
    def __init__(self, capacity: int, n_agents: int, obs_dim: int, act_dim: int, seed: int, device="cpu"):
        self.capacity, self.size, self.pos = capacity, 0, 0
        shapes = {
            "obs": (n_agents, obs_dim),
            "act": (n_agents, act_dim),
            "rew": (n_agents,),
            "next_obs": (n_agents, obs_dim),
            "terminal": (),
        }
        self.data = {k: torch.zeros((capacity, *s), dtype=torch.float32, device=device) for k, s in shapes.items()}
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def add(self, batch: Batch) -> None:
        """Store E transitions at once (every field has a leading dimension E)."""
        n = batch.obs.shape[0]
        idx = (self.pos + torch.arange(n, device=batch.obs.device)) % self.capacity
        for key, value in batch._asdict().items():
            self.data[key][idx] = value
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(self.size, (batch_size,), generator=self.generator, device=self.generator.device)
        return Batch(**{k: v[idx] for k, v in self.data.items()})

    def state_dict(self, include_data: bool) -> dict:
        state = {"size": self.size, "pos": self.pos, "generator": self.generator.get_state()}
        if include_data:
            state["data"] = {k: v[: self.size] for k, v in self.data.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore counters and sampling RNG, and the contents when the state holds them (else start empty)."""
        self.generator.set_state(state["generator"])
        if "data" in state:
            self.size, self.pos = state["size"], state["pos"]
            for k, v in state["data"].items():
                self.data[k][: self.size] = v
        else:
            self.size = self.pos = 0
