"""mpe2's `simple_tag_v3` as PettingZoo environments, simulated by the PyTorch twin.

`maddpg.core.twin.parallel_env(**kwargs)` returns a `pettingzoo.ParallelEnv` and `maddpg.core.twin.env(**kwargs)`
its AEC form (PettingZoo's `parallel_to_aec`). Both take the keyword arguments of mpe2 1.1.1's
`simple_tag_v3.parallel_env`, with its defaults (`max_cycles=25`, discrete actions), and give the
same agents (`adversary_*`, then `agent_*`), spaces, observations (float32), rewards, terminations,
truncations and infos as mpe2 for the same `reset(seed=...)` and actions. Supported, all exactly:

- `num_good`, `num_adversaries`, `num_obstacles`, `max_cycles`, `continuous_actions`;
- `terminate_on_success`: every agent terminates once each prey touches a predator at once;
- `curriculum`: the prey at half speed and acceleration, curriculum stage 0, the only stage mpe2
  1.1.1 plays (its `advance_curriculum` and `set_curriculum_stage` do nothing: the scenario's base
  class turns the stage into a read-only 0); the twin's two methods raise a ValueError instead;
- `num_agent_neighbors`, `num_landmark_neighbors`: mpe2's partial observability, the nearest
  agents and obstacles only, zero-padded to a fixed width;
- `benchmark_data`: infos hold each predator's number of prey in contact (prey: 0);
- `render_mode` (None, "rgb_array", "human") and `dynamic_rescaling`: frames are drawn by mpe2's own
  renderer from the twin's state; "human" draws once per step (mpe2 once per agent's turn).

Refused with a one-line ValueError naming the option: negative team sizes or obstacle counts and a
game without agents (mpe2 builds odd worlds or fails), render modes mpe2 cannot draw, neighbour
counts that are not positive ints (mpe2 asserts), and curriculum stage changes (above).

Exactness: `reset(seed=s)` draws the start state with mpe2's generator (gymnasium's `np_random(s)`)
in mpe2's order, and an unseeded reset continues that stream, as mpe2's does. The world steps in
float64, mpe2's dtype, with continuous actions clipped and subtracted in their own dtype, as mpe2
does. Only contact forces are summed in another order (~1e-16 relative), so a float32 observation
can differ from mpe2's by one rounding step, rarely (and a collision or a neighbour's rank only at a
near-exact tie); the prey's boundary penalty uses torch's exp, so a reward can differ by a float64
ulp. Stepping one world takes about as long as mpe2's (~1 ms).

For speed, step many worlds at once as tensors, on CPU or CUDA, with the batched twin itself
(`max_cycles` 50 and continuous actions by default; no PettingZoo dicts):

    import torch
    from maddpg.core.config import EnvConfig
    from maddpg.core.twin import TorchTagEnv
    env = TorchTagEnv(EnvConfig(n_envs=4096), device="cuda")  # float32; num_good, num_adversaries, ...
    obs = env.reset((0,))  # (4096, 4, 16): every agent's observation, zero-padded to the widest
    obs, reward, truncated = env.step(torch.rand(4096, 4, 5))  # actions (E, N, 5) in [0, 1]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv
from pettingzoo.utils.env_logger import EnvLogger

CURRICULUM_PREY_SPEED = 0.5  # of the prey's speed and acceleration at mpe2 simple_tag's curriculum stage 0
STUCK_CURRICULUM = "mpe2 1.1.1 plays curriculum stage 0 only (its stage changes are lost), and so does the twin"
RENDER_MODES = (None, "human", "rgb_array")


def check_options(
    num_good: int,
    num_adversaries: int,
    num_obstacles: int,
    render_mode: str | None,
    num_agent_neighbors: int | None,
    num_landmark_neighbors: int | None,
) -> None:
    """Raise a one-line ValueError naming the first option the twin does not take."""
    for name, count in (("num_good", num_good), ("num_adversaries", num_adversaries), ("num_obstacles", num_obstacles)):
        if count < 0:
            raise ValueError(f"{name}={count}: team sizes and obstacle counts must be >= 0")
    if num_good + num_adversaries < 1:
        raise ValueError("num_good=0 and num_adversaries=0: the game needs at least one agent")
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode={render_mode!r}: supported are None, 'human' and 'rgb_array'")
    for name, count in (
        ("num_agent_neighbors", num_agent_neighbors),
        ("num_landmark_neighbors", num_landmark_neighbors),
    ):
        if count is not None and not (isinstance(count, int) and count > 0):
            raise ValueError(f"{name}={count!r}: must be a positive int, or None for full observability")


def nearest(rel: torch.Tensor, count: int, *aligned: torch.Tensor) -> list[torch.Tensor]:
    """The `count` entities nearest each agent, nearest first (mpe2's `nearest_entities`; ties in world
    order), flattened and zero-padded to `count` slots: of `rel` (B, N, M, 2), the entities'
    positions relative to the agent, and of every tensor (B, N, M, 2) in `aligned`. -> (B, N, 2 * count) each"""
    order = rel.square().sum(-1).sqrt().argsort(dim=-1, stable=True)[..., :count]  # (B, N, min(count, M))
    index = order[..., None].expand(*order.shape, 2)
    missing = count - order.shape[-1]
    return [F.pad(t.gather(2, index), (0, 0, 0, missing)).flatten(2) for t in (rel, *aligned)]


class Observation:
    """simple_tag's observations of every agent, (B, N, widest) zero-padded, `widths` their real widths:
    the twin's full observations, or mpe2's partial observability built from their parts.

    mpe2's layout: own velocity and position, then the obstacles' positions (all in world order, or the
    `num_landmark_neighbors` nearest), then the other agents: all their positions and the other prey's
    velocities, or the `num_agent_neighbors` nearest agents' positions and then their velocities (a
    predator's as zeros).
    """

    def __init__(self, world: Any, num_agent_neighbors: int | None, num_landmark_neighbors: int | None):
        self.full = world.observe
        n, n_obst = world.n_agents, world.num_obstacles
        self.agent_neighbors, self.landmark_neighbors = num_agent_neighbors, num_landmark_neighbors
        self._landmarks = slice(4, 4 + 2 * n_obst)
        self._others = slice(4 + 2 * n_obst, 4 + 2 * n_obst + 2 * (n - 1))
        self._prey = (torch.arange(n) >= world.num_adversaries).to(torch.float64)[:, None]  # (N, 1)
        self._off_diagonal = ~torch.eye(n, dtype=torch.bool)  # (N, N): agent i's other agents j
        landmark_width = 2 * (n_obst if num_landmark_neighbors is None else num_landmark_neighbors)
        self.widths = [
            4
            + landmark_width
            + (width - self._others.start if num_agent_neighbors is None else 4 * num_agent_neighbors)
            for width in world.obs_dims
        ]

    def __call__(self, pos: torch.Tensor, vel: torch.Tensor) -> torch.Tensor:
        """pos (B, N+L, 2) of the agents then the obstacles, vel (B, N, 2) of the agents -> obs (B, N, O)."""
        full = self.full(pos, vel)
        if self.agent_neighbors is None and self.landmark_neighbors is None:
            return full
        b, n = full.shape[:2]
        landmarks = full[..., self._landmarks]
        if self.landmark_neighbors is not None:
            (landmarks,) = nearest(landmarks.unflatten(-1, (-1, 2)), self.landmark_neighbors)
        agents = full[..., self._others.start :]
        if self.agent_neighbors is not None:
            others = full[..., self._others].unflatten(-1, (n - 1, 2))
            prey_vel = (vel * self._prey)[:, None].expand(b, n, n, 2)  # (B, N, N, 2): every agent's, per agent
            others_vel = prey_vel[:, self._off_diagonal].view(b, n, n - 1, 2)
            agents = torch.cat(nearest(others, self.agent_neighbors, others_vel), -1)
        return torch.cat([full[..., :4], landmarks, agents], -1)


class Mpe2Drawing:
    """mpe2's own renderer drawing the twin's states: an mpe2 simple_tag world whose bodies take them."""

    def __init__(self, num_good: int, num_adversaries: int, num_obstacles: int, render_mode: str, rescale: bool):
        from mpe2 import simple_tag_v3  # here: mpe2 loads pygame, which only drawing needs

        self.env = simple_tag_v3.raw_env(
            num_good=num_good,
            num_adversaries=num_adversaries,
            num_obstacles=num_obstacles,
            render_mode=render_mode,
            dynamic_rescaling=rescale,
        )

    def start(self, pos: np.ndarray) -> None:
        """A new episode from positions (N+L, 2): as mpe2's reset, the view's zoom is relative to its extent."""
        self._place(pos)
        self.env.original_cam_range = np.max(np.abs(pos))

    def draw(self, pos: np.ndarray) -> np.ndarray | None:
        """The frame (700, 700, 3) uint8 of positions (N+L, 2), or None when drawn in a window."""
        self._place(pos)
        return self.env.render()

    def close(self) -> None:
        self.env.close()

    def _place(self, pos: np.ndarray) -> None:
        for entity, p in zip(self.env.world.entities, pos, strict=True):
            entity.state.p_pos = p.copy()


class TagParallelEnv(ParallelEnv):
    """mpe2's simple_tag_v3 parallel env on one world of the twin; the module docstring lists the options.

    `make_world(num_good, num_adversaries, num_obstacles, max_cycles, continuous_actions)` builds the
    world, a `maddpg.core.twin.TorchTagEnv` of one copy that steps as mpe2 does. `maddpg.core.twin.parallel_env`
    passes it in: were it imported here, the package's modules would import each other in a cycle.
    """

    # mpe2's, name included: the same game (PettingZoo's tests key their expectations on the name).
    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["human", "rgb_array"],
        "is_parallelizable": True,
        "render_fps": 10,
        "name": "simple_tag_v3",
    }

    def __init__(
        self,
        make_world: Callable[..., Any],
        num_good: int = 1,
        num_adversaries: int = 3,
        num_obstacles: int = 2,
        max_cycles: int = 25,
        continuous_actions: bool = False,
        render_mode: str | None = None,
        dynamic_rescaling: bool = True,
        benchmark_data: bool = False,
        curriculum: bool = False,
        terminate_on_success: bool = False,
        num_agent_neighbors: int | None = None,
        num_landmark_neighbors: int | None = None,
    ):
        check_options(
            num_good, num_adversaries, num_obstacles, render_mode, num_agent_neighbors, num_landmark_neighbors
        )
        self.world = make_world(num_good, num_adversaries, num_obstacles, max_cycles, continuous_actions)
        self._observe = Observation(self.world, num_agent_neighbors, num_landmark_neighbors)
        self.possible_agents: list[str] = list(self.world.agent_names)
        self.agents: list[str] = []
        self.render_mode, self.continuous_actions = render_mode, continuous_actions
        self.benchmark_data, self.curriculum = benchmark_data, curriculum
        self.terminate_on_success = terminate_on_success
        self.np_random, _ = seeding.np_random()  # unseeded until a seeded reset, as mpe2's
        self._start_range = self.world.start_range.numpy()  # (N+L, 1): start positions are uniform in [-r, r]^2
        inf = np.float32(np.inf)
        self.observation_spaces = {
            agent: spaces.Box(-inf, inf, (width,), np.float32)
            for agent, width in zip(self.possible_agents, self._observe.widths, strict=True)
        }
        self.action_spaces = {
            agent: spaces.Box(low=0, high=1, shape=(self.world.act_dim,))
            if continuous_actions
            else spaces.Discrete(self.world.act_dim)
            for agent in self.possible_agents
        }
        self.state_space = spaces.Box(-inf, inf, (sum(self._observe.widths),), np.float32)
        self._drawing = (
            None
            if render_mode is None
            else Mpe2Drawing(num_good, num_adversaries, num_obstacles, render_mode, dynamic_rescaling)
        )

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def advance_curriculum(self) -> None:
        """Refused: mpe2 would stay at stage 0, against its documentation."""
        raise ValueError(f"advance_curriculum(): {STUCK_CURRICULUM}")

    def set_curriculum_stage(self, stage: int) -> None:
        """Refused unless `stage` is 0: mpe2 would stay at stage 0, against its documentation."""
        if stage != 0:
            raise ValueError(f"set_curriculum_stage({stage}): {STUCK_CURRICULUM}")

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        """Start an episode from mpe2's start state for `seed` (None: the next of its stream); `options` is
        unused, as in mpe2."""
        if seed is not None:
            self.np_random, _ = seeding.np_random(seed)
        if self.curriculum:
            self.world.set_prey_speed(CURRICULUM_PREY_SPEED)
        # mpe2's draws: every agent's position, then every obstacle's, two coordinates each.
        pos = self.np_random.uniform(-self._start_range, self._start_range, (len(self._start_range), 2))
        start = torch.from_numpy(pos)[None]
        self.world.set_state({"pos": start, "vel": torch.zeros_like(start), "t": torch.tensor(0)})
        if self._drawing is not None:
            self._drawing.start(pos)
        self.agents = self.possible_agents[:]
        return self._observations(), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Every live agent's action -> observations, rewards, terminations, truncations, infos.

        Once the episode is over (no agents), returns empty dicts, as mpe2 does.
        """
        if not self.agents:
            return {}, {}, {}, {}, {}
        _, reward, truncated = self.world.step(self._action_tensor(actions))
        caught = self.world.caught()[0]  # (G, A)
        # mpe2 checks success only when the episode is not truncated.
        terminated = self.terminate_on_success and not truncated and bool(caught.any(1).all())
        agents = self.agents
        rewards = dict(zip(agents, reward[0].tolist(), strict=True))
        infos = self._infos(caught)
        if terminated or truncated:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return self._observations(), rewards, dict.fromkeys(agents, terminated), dict.fromkeys(agents, truncated), infos

    def state(self) -> np.ndarray:
        """Every agent's observation, concatenated (mpe2's global state)."""
        return np.concatenate(list(self._observations().values()))

    def render(self) -> np.ndarray | None:
        """The current frame (700, 700, 3) uint8 ("rgb_array"), or drawn in a window ("human")."""
        if self._drawing is None:
            gymnasium.logger.warn("You are calling render method without specifying any render mode.")
            return None
        return self._drawing.draw(self.world.get_state()["pos"][0].numpy())

    def close(self) -> None:
        if self._drawing is not None:
            self._drawing.close()

    def _observations(self) -> dict[str, np.ndarray]:
        """Every agent's float32 observation of the current state, rounded from float64 as mpe2 does."""
        state = self.world.get_state()
        obs = self._observe(state["pos"], state["vel"][:, : self.world.n_agents])[0].numpy()
        return {
            agent: obs[i, :width].astype(np.float32)
            for i, (agent, width) in enumerate(zip(self.possible_agents, self._observe.widths, strict=True))
        }

    def _infos(self, caught: torch.Tensor) -> dict[str, dict]:
        """caught (G, A) -> infos: empty, or with `benchmark_data` each predator's prey in contact (prey: 0)."""
        if not self.benchmark_data:
            return {agent: {} for agent in self.agents}
        counts = caught.sum(0).tolist() + [0] * (len(self.agents) - caught.shape[1])
        return {agent: {"benchmark_data": count} for agent, count in zip(self.agents, counts, strict=True)}

    def _action_tensor(self, actions: dict[str, Any]) -> torch.Tensor:
        """The live agents' actions as (1, N, 5), in their own dtype, or (1, N) ints. Checked as mpe2's
        wrappers check them: continuous ones outside [0, 1] are clipped (by the twin) with mpe2's warning."""
        if not self.continuous_actions:
            for agent in self.agents:
                if not self.action_space(agent).contains(actions[agent]):
                    raise ValueError(f"{agent}: action {actions[agent]!r} is not in {self.action_space(agent)}")
            return torch.tensor([[int(actions[agent]) for agent in self.agents]])
        rows = []
        for agent in self.agents:
            action, space = np.asarray(actions[agent]), self.action_space(agent)
            if not space.contains(action):
                if action.shape != space.shape or np.isnan(action).any():
                    raise ValueError(f"{agent}: action {action!r} is not a {space.shape} array of numbers")
                EnvLogger.warn_action_out_of_bound(action=action, action_space=space, backup_policy="clipping to space")
            rows.append(action)
        return torch.from_numpy(np.stack(rows))[None]
