"""Vectorised simple_tag backends behind one interface: mpe2 copies in lockstep, or the PyTorch twin."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mpe2 import simple_tag_v3

from maddpg.core.config import Actions, Backend, EnvConfig
from maddpg.core.seeding import derive_seeds
from maddpg.core.twin import ACT_DIM, TorchTagEnv


class Mpe2VecEnv:
    """`n_envs` copies of mpe2 `simple_tag_v3` (continuous actions, or discrete ones), reset together.

    Agents follow mpe2's order: predators `adversary_*` first, then prey `agent_*`.
    Observations are zero-padded to the widest agent; `obs_dims` holds the real widths.
    Every copy truncates after `max_cycles` steps, so all copies end episodes together.
    """

    def __init__(
        self,
        cfg: EnvConfig,
        device: torch.device | str = "cpu",
        render_mode: str | None = None,
        continuous_actions: bool = True,
    ):
        self.envs = [
            simple_tag_v3.parallel_env(
                num_good=cfg.num_good,
                num_adversaries=cfg.num_adversaries,
                num_obstacles=cfg.num_obstacles,
                max_cycles=cfg.max_cycles,
                continuous_actions=continuous_actions,
                dynamic_rescaling=False,  # drawing only; its default changed between mpe2 releases
                render_mode=render_mode,
            )
            for _ in range(cfg.n_envs)
        ]
        first = self.envs[0]
        self.agent_names: list[str] = list(first.possible_agents)
        self.obs_dims: list[int] = [first.observation_space(a).shape[0] for a in self.agent_names]
        self.n_envs, self.n_agents = cfg.n_envs, len(self.agent_names)
        self.num_adversaries, self.max_cycles = cfg.num_adversaries, cfg.max_cycles
        self.obs_dim, self.act_dim = max(self.obs_dims), ACT_DIM
        self.device, self.continuous_actions = torch.device(device), continuous_actions
        self.state_dtype = torch.float64  # of get_state(): mpe2's own
        self._obs = np.zeros((self.n_envs, self.n_agents, self.obs_dim), dtype=np.float32)
        self._rew = np.zeros((self.n_envs, self.n_agents), dtype=np.float32)
        self.t = 0

    def reset(self, seed: Sequence[int]) -> torch.Tensor:
        """Start new episodes, every copy seeded from the key `seed`, e.g. (seed, stream, episode). -> obs (E, N, O)"""
        for e, (env, s) in enumerate(zip(self.envs, derive_seeds(*seed, n=self.n_envs), strict=True)):
            obs, _ = env.reset(seed=s)
            self._write_obs(e, obs)
        self.t = 0
        return torch.from_numpy(self._obs.copy()).to(self.device)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """actions (E, N, 5) in [0, 1] -> next_obs (E, N, O), reward (E, N), truncated.

        Discrete actions (`continuous_actions=False`) are (E, N) ints in 0..4, or (E, N, 5) scores
        whose argmax is played (one-hot actions, as the trainer's actors give them).
        `next_obs` is the true next observation, also on the last step of an episode;
        after `truncated` the caller calls `reset` before stepping again.
        """
        if not self.continuous_actions and actions.dim() == 3:
            actions = actions.argmax(-1)
        acts = actions.detach().to("cpu", torch.float32 if self.continuous_actions else torch.int64).numpy()
        for e, env in enumerate(self.envs):
            obs, rew, _, _, _ = env.step({name: acts[e, i] for i, name in enumerate(self.agent_names)})
            self._write_obs(e, obs)
            self._rew[e] = [rew[name] for name in self.agent_names]
        self.t += 1
        next_obs = torch.from_numpy(self._obs.copy()).to(self.device)
        reward = torch.from_numpy(self._rew.copy()).to(self.device)
        return next_obs, reward, self.t >= self.max_cycles

    def get_state(self) -> dict[str, torch.Tensor]:
        """Positions and velocities (E, N+L, 2) float64, agents then obstacles, and the step counter `t` (0-dim)."""
        worlds = [env.unwrapped.world for env in self.envs]
        pos = np.stack([[entity.state.p_pos for entity in w.entities] for w in worlds])
        vel = np.stack([[entity.state.p_vel for entity in w.entities] for w in worlds])
        return {
            "pos": torch.from_numpy(pos).to(self.device),
            "vel": torch.from_numpy(vel).to(self.device),
            "t": torch.tensor(self.t),
        }

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from `state` (as `get_state` returns it, from either backend), also after truncation."""
        pos, vel = (state[key].detach().to("cpu", torch.float64).numpy() for key in ("pos", "vel"))
        self.t = int(state["t"])
        for env, env_pos, env_vel in zip(self.envs, pos, vel, strict=True):
            env.reset()  # restarts the episode bookkeeping (agents, truncations); the state is overwritten next
            raw = env.unwrapped
            for entity, p, v in zip(raw.world.entities, env_pos, env_vel, strict=True):
                entity.state.p_pos, entity.state.p_vel = p.copy(), v.copy()
            raw.steps = self.t  # mpe2 truncates when its own counter reaches max_cycles

    def render(self, copy: int = 0) -> np.ndarray:
        """One frame (700, 700, 3) uint8 of a copy; needs render_mode='rgb_array'."""
        return self.envs[copy].render()

    def _write_obs(self, e: int, obs: dict[str, np.ndarray]) -> None:
        for i, name in enumerate(self.agent_names):
            self._obs[e, i, : self.obs_dims[i]] = obs[name]


VecEnv = Mpe2VecEnv | TorchTagEnv


def make_env(cfg: EnvConfig, device: torch.device | str = "cpu") -> VecEnv:
    """The backend `cfg.backend` with `cfg.n_envs` copies, stepping `cfg.actions`; the twin simulates in
    float32 on `device`."""
    continuous = cfg.actions == Actions.continuous
    if cfg.backend == Backend.torch:
        return TorchTagEnv(cfg, device, continuous_actions=continuous)
    return Mpe2VecEnv(cfg, device, continuous_actions=continuous)
