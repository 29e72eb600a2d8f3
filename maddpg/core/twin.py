"""A batched PyTorch twin of mpe2 `simple_tag_v3`: `n_envs` worlds stepped as tensors on CPU or CUDA.

`parallel_env` and `env` give one such world as mpe2's PettingZoo environments (maddpg/core/twin_env.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from maddpg.core.config import EnvConfig
from maddpg.core.seeding import generator

if TYPE_CHECKING:
    from pettingzoo import AECEnv

    from maddpg.core.twin_env import TagParallelEnv

ACT_DIM = 5  # continuous simple_tag actions: [no_action, left, right, down, up], each in [0, 1]
CONTACT_REWARD = 10.0  # every predator gets this per (predator, prey) pair in contact

# mpe2's World constants.
DT = 0.1
DAMPING = 0.25
CONTACT_FORCE = 100.0
CONTACT_MARGIN = 1e-3  # width of the softplus that smooths the contact force
# simple_tag's bodies; every mass is 1, so a force is an acceleration.
PREDATOR_SIZE, PREY_SIZE, OBSTACLE_SIZE = 0.075, 0.05, 0.2
PREDATOR_ACCEL, PREY_ACCEL = 3.0, 4.0
PREDATOR_MAX_SPEED, PREY_MAX_SPEED = 1.0, 1.3
# Discrete action -> direction of the force: no_action, left, right, down, up.
DIRECTIONS = ((0.0, 0.0), (-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0))


class Observer:
    """simple_tag's observations from world states, batched: every agent sees its own velocity and
    position, the obstacles' and the other agents' positions relative to its own (agents in world
    order), and the other prey's velocities; zero-padded to the widest agent (a prey sees one prey
    velocity fewer than a predator). Computed in the states' dtype, with mpe2's operations: from
    mpe2's float64 states, the float32 rounding of the result is mpe2's observation bit for bit."""

    def __init__(self, cfg: EnvConfig, device: torch.device | str = "cpu"):
        n_pred, n_prey = cfg.num_adversaries, cfg.num_good
        n = n_pred + n_prey
        # Gather indices (long also when a team is empty): every other agent, in world order ...
        others = [[j for j in range(n) if j != i] for i in range(n)]
        self._others = torch.tensor(others, dtype=torch.long, device=device)  # (N, N-1)
        # ... and every other prey, padded with index n_prey (a zero row) so that a prey's
        # observation ends in zeros, exactly its padding past its real width.
        prey = [[g for g in range(n_prey) if n_pred + g != i] for i in range(n)]
        padded = [row + [n_prey] * (n_prey - len(row)) for row in prey]
        self._other_prey = torch.tensor(padded, dtype=torch.long, device=device)
        self.n_agents, self.num_adversaries = n, n_pred

    def __call__(self, pos: torch.Tensor, vel: torch.Tensor) -> torch.Tensor:
        """pos (B, N+L, 2) of the agents then the obstacles, vel (B, N, 2) of the agents -> obs (B, N, O)."""
        n, b = self.n_agents, pos.shape[0]
        own = pos[:, :n]  # (B, N, 2)
        obstacles = pos[:, None, n:] - own[:, :, None]  # (B, N, L, 2)
        others = own[:, self._others] - own[:, :, None]  # (B, N, N-1, 2)
        prey_vel = torch.cat([vel[:, self.num_adversaries :], vel.new_zeros(b, 1, 2)], 1)  # (B, G+1, 2)
        other_prey_vel = prey_vel[:, self._other_prey]  # (B, N, G, 2)
        return torch.cat([vel, own, obstacles.flatten(2), others.flatten(2), other_prey_vel.flatten(2)], -1)


class TorchTagEnv:
    """`n_envs` simple_tag worlds as tensors, with the interface of `maddpg.core.envs.Mpe2VecEnv`.

    Physics, observations (full observability), rewards and truncation follow mpe2 1.1.1.
    Entities are agents (predators `adversary_*`, then prey `agent_*`), then obstacles.
    Start states are drawn from this class's own seeded stream, not mpe2's: the same key
    gives the same start states on every device and dtype, but not those of `Mpe2VecEnv`.
    Continuous actions are subtracted in the env's dtype; mpe2 subtracts them in float32
    (its Box's dtype), which differs by at most 2**-25 per force component. With
    `keep_action_dtype`, they are clipped and subtracted in their own dtype, as mpe2 does.
    Call `reset` or `set_state` before `step`.
    """

    def __init__(
        self,
        cfg: EnvConfig,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        continuous_actions: bool = True,
        keep_action_dtype: bool = False,
    ):
        n_pred, n_prey, n_obst = cfg.num_adversaries, cfg.num_good, cfg.num_obstacles
        self.agent_names: list[str] = [f"adversary_{i}" for i in range(n_pred)] + [f"agent_{i}" for i in range(n_prey)]
        self.n_envs, self.n_agents = cfg.n_envs, n_pred + n_prey
        self.num_adversaries, self.num_obstacles, self.max_cycles = n_pred, n_obst, cfg.max_cycles
        # own velocity and position, obstacles, other agents, the other prey's velocities
        self.obs_dim = 4 + 2 * n_obst + 2 * (self.n_agents - 1) + 2 * n_prey
        self.obs_dims: list[int] = [self.obs_dim] * n_pred + [self.obs_dim - 2] * n_prey
        self.act_dim = ACT_DIM
        self.device, self.dtype, self.continuous_actions = torch.device(device), dtype, continuous_actions
        self.keep_action_dtype = keep_action_dtype
        self.state_dtype = dtype  # of get_state()

        def table(values: Sequence) -> torch.Tensor:
            return torch.tensor(values, device=self.device, dtype=dtype)

        n, k = self.n_agents, self.n_agents + n_obst
        size = table([PREDATOR_SIZE] * n_pred + [PREY_SIZE] * n_prey + [OBSTACLE_SIZE] * n_obst)  # (K,)
        self._dist_min = (size[:n, None] + size[None, :])[..., None]  # (N, K, 1)
        self._self_pair = torch.eye(n, k, dtype=torch.bool, device=self.device)[..., None]  # (N, K, 1)
        self.set_prey_speed(1.0)
        self._directions = table(DIRECTIONS)  # (5, 2)
        self.observe = Observer(cfg, self.device)
        # Agents start in [-1, 1]^2, obstacles in [-0.9, 0.9]^2.
        self.start_range = torch.tensor([1.0] * n + [0.9] * n_obst, dtype=torch.float64)[:, None]  # (K, 1)
        self._pos = torch.zeros(self.n_envs, k, 2, device=self.device, dtype=dtype)
        self._vel = torch.zeros_like(self._pos)
        self.t = 0

    def reset(self, seed: Sequence[int]) -> torch.Tensor:
        """Start new episodes from the key `seed`, e.g. (seed, stream, episode). -> obs (E, N, O)"""
        # Drawn in float64 on the CPU, so the start states do not depend on the device or dtype.
        u = torch.rand(self.n_envs, len(self.start_range), 2, generator=generator(*seed), dtype=torch.float64)
        self._pos = ((2 * u - 1) * self.start_range).to(self.device, self.dtype)
        self._vel = torch.zeros_like(self._pos)
        self.t = 0
        return self.observe(self._pos, self._vel[:, : self.n_agents])

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """actions (E, N, 5) in [0, 1] -> next_obs (E, N, O), reward (E, N), truncated.

        Discrete actions (`continuous_actions=False`) are (E, N) ints in 0..4, or (E, N, 5) scores
        whose argmax is played (one-hot actions, as the trainer's actors give them). Continuous
        actions outside [0, 1] are clipped, as mpe2's ClipOutOfBoundsWrapper does.
        """
        n = self.n_agents
        force = self._action_force(actions) + self._contact_force()  # (E, N, 2)
        pos, vel = self._pos[:, :n], self._vel[:, :n]
        # mpe2's order: the position moves with the old velocity, then damping, force and the speed limit.
        pos = pos + vel * DT
        vel = vel * (1 - DAMPING) + force * DT
        speed = vel.square().sum(-1, keepdim=True).sqrt()  # (E, N, 1)
        vel = torch.where(speed > self._max_speed, vel / speed * self._max_speed, vel)
        # Obstacles never move.
        self._pos = torch.cat([pos, self._pos[:, n:]], 1)
        self._vel = torch.cat([vel, self._vel[:, n:]], 1)
        self.t += 1
        return self.observe(self._pos, vel), self._reward(), self.t >= self.max_cycles

    def get_state(self) -> dict[str, torch.Tensor]:
        """Positions and velocities (E, N+L, 2), agents then obstacles, and the step counter `t` (0-dim)."""
        return {"pos": self._pos.clone(), "vel": self._vel.clone(), "t": torch.tensor(self.t)}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from `state` (as `get_state` returns it, from either backend)."""
        shape = (self.n_envs, self.n_agents + self.num_obstacles, 2)
        if state["pos"].shape != shape or state["vel"].shape != shape:
            raise ValueError(f"state positions and velocities must be {shape}, got {tuple(state['pos'].shape)}")
        # Copies: stepping must not write into the caller's tensors.
        self._pos = state["pos"].to(self.device, self.dtype, copy=True)
        self._vel = state["vel"].to(self.device, self.dtype, copy=True)
        self.t = int(state["t"])

    def set_prey_speed(self, factor: float) -> None:
        """Scale the prey's acceleration and speed limit by `factor` from the next step on: mpe2's
        curriculum multiplies both (its stages: 0.5, 0.75, 1); predators keep theirs."""

        def per_agent(predator: float, prey: float) -> torch.Tensor:  # (N, 1)
            values = [predator] * self.num_adversaries + [prey * factor] * (self.n_agents - self.num_adversaries)
            return torch.tensor(values, device=self.device, dtype=self.dtype)[:, None]

        self._accel = per_agent(PREDATOR_ACCEL, PREY_ACCEL)
        self._max_speed = per_agent(PREDATOR_MAX_SPEED, PREY_MAX_SPEED)

    def caught(self) -> torch.Tensor:
        """-> (E, G, A) bool: prey g touches predator a (mpe2's `is_collision`), in the current state."""
        n_pred, n = self.num_adversaries, self.n_agents
        gap = self._pos[:, n_pred:n, None] - self._pos[:, None, :n_pred]  # (E, G, A, 2): prey minus predator
        return gap.square().sum(-1).sqrt() < PREDATOR_SIZE + PREY_SIZE

    def _action_force(self, actions: torch.Tensor) -> torch.Tensor:
        """actions (E, N, 5) or (E, N) -> force (E, N, 2)."""
        if self.continuous_actions:
            a = actions.to(self.device, None if self.keep_action_dtype else self.dtype).clamp(0, 1)
            direction = torch.stack([a[..., 2] - a[..., 1], a[..., 4] - a[..., 3]], -1).to(self.dtype)
        else:
            index = actions.argmax(-1) if actions.dim() == 3 else actions
            direction = self._directions[index.to(self.device, torch.long)]
        return direction * self._accel

    def _contact_force(self) -> torch.Tensor:
        """The summed contact forces (E, N, 2) on every agent from every other entity.

        Obstacles take forces too in mpe2, but never move, so only the rows of agents are needed.
        """
        n = self.n_agents
        delta = self._pos[:, :n, None] - self._pos[:, None]  # (E, N, K, 2): agent minus entity
        dist = delta.square().sum(-1, keepdim=True).sqrt()  # (E, N, K, 1)
        # Soft penetration: softplus(overlap / margin) * margin, nonzero (if tiny) even apart.
        overlap = -(dist - self._dist_min) / CONTACT_MARGIN
        penetration = torch.logaddexp(overlap, overlap.new_zeros(())) * CONTACT_MARGIN
        force = CONTACT_FORCE * delta / dist * penetration
        # An agent does not push itself (and its 0 / 0 there is NaN).
        return force.masked_fill(self._self_pair, 0).sum(2)

    def _reward(self) -> torch.Tensor:
        """-> reward (E, N): predators share +10 per (predator, prey) contact; prey pay 10 per
        contact plus mpe2's `bound` penalty for each coordinate beyond 0.9."""
        n_pred, n = self.num_adversaries, self.n_agents
        caught = self.caught().to(self.dtype)  # (E, G, A)
        predator = (CONTACT_REWARD * caught.sum((1, 2)))[:, None].expand(-1, n_pred)  # (E, A)
        x = self._pos[:, n_pred:n].abs()  # (E, G, 2)
        bound = torch.where(x < 0.9, 0, torch.where(x < 1.0, (x - 0.9) * 10, torch.exp(2 * x - 2).clamp(max=10)))
        prey = -CONTACT_REWARD * caught.sum(2) - bound[..., 0] - bound[..., 1]  # (E, G), in mpe2's order
        return torch.cat([predator, prey], 1)


def parallel_env(**kwargs) -> TagParallelEnv:
    """mpe2's `simple_tag_v3.parallel_env(**kwargs)`, simulated by one TorchTagEnv world: a PettingZoo
    ParallelEnv with mpe2's agents, spaces, observations, rewards, terminations and truncations for the
    same seed and actions (maddpg/core/twin_env.py lists the options)."""
    from maddpg.core.twin_env import TagParallelEnv  # here: importing the twin for training loads no PettingZoo

    return TagParallelEnv(_mpe2_world, **kwargs)


def _mpe2_world(
    num_good: int, num_adversaries: int, num_obstacles: int, max_cycles: int, continuous_actions: bool
) -> TorchTagEnv:
    """One world that steps as mpe2 does: in float64, continuous actions subtracted in their own dtype."""
    cfg = EnvConfig(
        num_adversaries=num_adversaries, num_good=num_good, num_obstacles=num_obstacles, max_cycles=max_cycles
    )
    return TorchTagEnv(cfg, dtype=torch.float64, continuous_actions=continuous_actions, keep_action_dtype=True)


def env(**kwargs) -> AECEnv:
    """`parallel_env(**kwargs)` in PettingZoo's AEC form (agents act in turn), as `simple_tag_v3.env`."""
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(parallel_env(**kwargs))
