"""Scripted policies: yardsticks for trained predators, computed from the observations alone.

- **Greedy team** (predators). Every predator accelerates at full force straight at the nearest
  prey, ignoring its teammates and the obstacles. Nobody cuts the prey off, so a prey that flees
  is caught only when it is cornered by the arena or blocked by an obstacle; beating this team
  against a fleeing prey takes the cooperation MADDPG is for.
- **Still prey.** Never pushes: it stays where it starts unless a collision moves it.
- **Random prey.** Each action component uniform in [0, 1] at every step (`maddpg.core.prey.RandomPrey`),
  so its pushes average to zero and it jitters around its start.
- **Fleeing prey.** Pushes at full force along a sum of repulsions: away from each predator with
  weight 1 / distance (the nearest matters most), away from each obstacle it is within
  OBSTACLE_REACH of its edge with weight 1 / gap (it slides round obstacles instead of pinning
  itself on one), and back towards the centre, per coordinate, past EDGE (mpe2 charges a prey
  for every step beyond 0.9). It neither plans nor anticipates, so predators that come at it from
  several sides corner it.

An action is the 5-vector [no_action, left, right, down, up] in [0, 1]; the force along x is
right - left and along y up - down. A scripted policy turns a direction d into the action whose
force is d / max(|d_x|, |d_y|): full force along the larger coordinate.
"""

from __future__ import annotations

import torch

from maddpg.core.config import EnvConfig
from maddpg.core.twin import ACT_DIM, OBSTACLE_SIZE, PREY_SIZE

OBSTACLE_REACH = 0.15  # the fleeing prey avoids an obstacle whose edge is nearer than this
EDGE = 0.7  # the fleeing prey turns back towards the centre beyond this coordinate ...
LOOKAHEAD = 0.3  # seconds: the fleeing prey judges the edge by where its velocity takes it this soon
PENALTY_EDGE = 0.9  # ... before mpe2 starts charging it for being out, beyond this one
TINY = 1e-6


def push(direction: torch.Tensor) -> torch.Tensor:
    """direction (..., 2) -> action (..., 5): full force along it (none for a zero direction)."""
    scale = direction.abs().amax(-1, keepdim=True).clamp(min=TINY)
    d = direction / scale
    zero = torch.zeros_like(d[..., :1])
    return torch.cat([zero, (-d[..., :1]).clamp(min=0), d[..., :1].clamp(min=0),
                      (-d[..., 1:]).clamp(min=0), d[..., 1:].clamp(min=0)], -1)  # fmt: skip


class Layout:
    """Where things are in an agent's observation: own velocity, own position, the obstacles'
    positions relative to it, every other agent's relative position (in the env's order:
    predators, then prey), the other prey's velocities."""

    def __init__(self, env: EnvConfig):
        self.num_adversaries, self.num_good, self.num_obstacles = env.num_adversaries, env.num_good, env.num_obstacles

    def velocity(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (..., O) -> own velocity (..., 2)."""
        return obs[..., :2]

    def position(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (..., O) -> own position (..., 2)."""
        return obs[..., 2:4]

    def obstacles(self, obs: torch.Tensor) -> torch.Tensor:
        """-> the obstacles' positions relative to the agent (..., L, 2)."""
        return obs[..., 4 : 4 + 2 * self.num_obstacles].unflatten(-1, (self.num_obstacles, 2))

    def others(self, obs: torch.Tensor) -> torch.Tensor:
        """-> every other agent's position relative to the agent (..., N - 1, 2)."""
        start, n = 4 + 2 * self.num_obstacles, self.num_adversaries + self.num_good
        return obs[..., start : start + 2 * (n - 1)].unflatten(-1, (n - 1, 2))


class Scripted:
    """A deterministic policy: its target action (for critics learning against it) is its action."""

    def target_act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.act(obs)

    def with_streams(self, generators: tuple[torch.Generator, torch.Generator]) -> Scripted:
        """Itself: it draws nothing."""
        return self

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class GreedyTeam(Scripted):
    """The greedy chasing team: obs (B, predators, O) -> actions (B, predators, 5)."""

    def __init__(self, env: EnvConfig):
        self.layout = Layout(env)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        prey = self.layout.others(obs)[..., self.layout.num_adversaries - 1 :, :]  # (B, A, G, 2)
        nearest = prey.norm(dim=-1).argmin(-1)  # (B, A)
        target = prey.gather(-2, nearest[..., None, None].expand(*nearest.shape, 1, 2)).squeeze(-2)
        return push(target)


class StillPrey(Scripted):
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, prey, O) -> actions (B, prey, 5): no force."""
        return obs.new_zeros(*obs.shape[:-1], ACT_DIM)


class FleeingPrey(Scripted):
    """The fleeing prey: obs (B, prey, O) -> actions (B, prey, 5)."""

    def __init__(self, env: EnvConfig):
        self.layout = Layout(env)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        predators = self.layout.others(obs)[..., : self.layout.num_adversaries, :]  # (B, G, A, 2)
        away = -repulsion(predators, predators.norm(dim=-1)).sum(-2)
        obstacles = self.layout.obstacles(obs)  # (B, G, L, 2)
        gap = obstacles.norm(dim=-1) - OBSTACLE_SIZE - PREY_SIZE  # between the edges
        near = (gap < OBSTACLE_REACH).to(obs.dtype)
        away = away - (near[..., None] * repulsion(obstacles, gap)).sum(-2)
        position = self.layout.position(obs) + LOOKAHEAD * self.layout.velocity(obs)  # where it is heading
        # Per coordinate past EDGE, a pull back that matches the push away at PENALTY_EDGE and doubles it at 1.
        back = -torch.sign(position) * (position.abs() - EDGE).clamp(min=0) / (PENALTY_EDGE - EDGE)
        return push(away + back * away.norm(dim=-1, keepdim=True).clamp(min=1))


def repulsion(offsets: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """offsets (..., K, 2) of things, `distance` (..., K) to weigh them by -> unit vectors towards
    each thing, each weighted by 1 / distance (..., K, 2)."""
    unit = offsets / offsets.norm(dim=-1, keepdim=True).clamp(min=TINY)
    return unit / distance.clamp(min=TINY)[..., None]


class Team:
    """Predators and prey each played by a policy, as one: obs (B, N, O) -> actions (B, N, 5). As in
    Maddpg.act, `prey` plays the prey in place of `self.prey` (an evaluation's copy of it)."""

    def __init__(self, predators: Scripted, prey, num_adversaries: int):
        self.predators, self.prey, self.num_adversaries = predators, prey, num_adversaries

    def act(self, obs: torch.Tensor, prey=None) -> torch.Tensor:
        k, prey = self.num_adversaries, self.prey if prey is None else prey
        return torch.cat([self.predators.act(obs[:, :k]), prey.act(obs[:, k:])], 1)
