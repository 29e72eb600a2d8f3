"""Prey that do not learn: a frozen pretrained actor, or uniform random actions; and the prey file format."""

from __future__ import annotations

import torch
from torch import nn

from maddpg.config import ConfigError, EnvConfig
from maddpg.networks import StackedMLP

PREY_FILE_VERSION = 1


class FrozenPrey(nn.Module):
    """A pretrained prey. It never learns, so its target actor *is* its actor: critics bootstrap
    with the loaded policy, never with a leftover random initialisation."""

    def __init__(self, actor: StackedMLP):
        super().__init__()
        self.actor = actor.requires_grad_(False)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, n_prey, O) -> actions (B, n_prey, A), noise-free."""
        return self.actor(obs.transpose(0, 1)).transpose(0, 1)

    target_act = act


class RandomPrey:
    """Uniform random actions in [0, 1]^A, drawn from the learner's exploration generator."""

    def __init__(self, act_dim: int, generator: torch.Generator):
        self.act_dim, self.generator = act_dim, generator

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, n_prey, O) -> actions (B, n_prey, A)."""
        shape = (*obs.shape[:2], self.act_dim)
        return torch.rand(shape, generator=self.generator, device=obs.device)

    target_act = act


def prey_payload(actor: StackedMLP, env: EnvConfig, obs_dim: int, act_dim: int, hidden: list[int]) -> dict:
    """What a prey file holds: the prey actors' weights and the shapes they were trained for."""
    return {
        "version": PREY_FILE_VERSION,
        "num_adversaries": env.num_adversaries,
        "num_good": env.num_good,
        "num_obstacles": env.num_obstacles,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "hidden": list(hidden),
        "actor": {k: v.detach().cpu().clone() for k, v in actor.state_dict().items()},
    }


def load_prey(path: str, env: EnvConfig, obs_dim: int, act_dim: int, device: torch.device | str) -> FrozenPrey:
    """Load a prey file written by a run with prey.mode=learn; its teams must match `env`."""
    payload = torch.load(path, map_location=device, weights_only=True)
    if payload.get("version") != PREY_FILE_VERSION:
        raise ConfigError(f"prey.checkpoint {path} is not a prey file: use a run's prey.pt")
    trained = tuple(payload[k] for k in ("num_adversaries", "num_good", "num_obstacles", "obs_dim", "act_dim"))
    wanted = (env.num_adversaries, env.num_good, env.num_obstacles, obs_dim, act_dim)
    if trained != wanted:
        raise ConfigError(
            f"prey.checkpoint {path} was trained for (adversaries, good, obstacles, obs, act) = {trained}, "
            f"this run has {wanted}: set env.* to match or train a prey for these teams"
        )
    actor = StackedMLP(env.num_good, obs_dim, payload["hidden"], act_dim, sigmoid_output=True).to(device)
    actor.load_state_dict(payload["actor"])
    return FrozenPrey(actor)
