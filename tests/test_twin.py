"""The PyTorch twin against real mpe2 (via Mpe2VecEnv): same physics, observations, rewards and truncation."""

from __future__ import annotations

import math

import pytest
import torch
from pettingzoo.utils.env_logger import EnvLogger

from maddpg.core.config import EnvConfig
from maddpg.core.envs import Mpe2VecEnv
from maddpg.core.twin import TorchTagEnv

TEAMS = [
    pytest.param(dict(num_adversaries=3, num_good=1, num_obstacles=2), id="3v1+2obst"),
    pytest.param(dict(num_adversaries=4, num_good=2, num_obstacles=3), id="4v2+3obst"),
    pytest.param(dict(num_adversaries=2, num_good=2, num_obstacles=0), id="2v2+0obst"),
]
SEEDS = 10  # one env copy per seed: mpe2 seeds each copy from its own derived seed
F64_ATOL = 1e-8
# float32, one step from mpe2's float64 state: the state is rounded to float32 (relative 6e-8),
# the stiff contact force (100 per unit of penetration) and the boundary penalty (slope up to 20)
# amplify that a little, and outputs of magnitude up to ~16 carry float32 ulps of ~1e-6. The
# largest error seen over 400 episodes was 4e-6. Free-running float32 episodes are not compared:
# contacts are chaotic, and rounding errors grew there to 5e-3 in 1 episode of 100.
F32_ATOL, F32_RTOL = 1e-5, 1e-6


@pytest.fixture(autouse=True)
def quiet_clipping():
    """The actions here deliberately leave [0, 1]; pettingzoo logs a warning for every clipped one."""
    EnvLogger.suppress_output()
    yield
    EnvLogger.unsuppress_output()


def make_pair(
    teams: dict, dtype: torch.dtype, continuous: bool = True, max_cycles: int = 50, n_envs: int = SEEDS
) -> tuple[Mpe2VecEnv, TorchTagEnv]:
    cfg = EnvConfig(**teams, max_cycles=max_cycles, n_envs=n_envs)
    return Mpe2VecEnv(cfg, continuous_actions=continuous), TorchTagEnv(cfg, dtype=dtype, continuous_actions=continuous)


def random_actions(g: torch.Generator, env: TorchTagEnv) -> torch.Tensor:
    """(E, N, 5) in [-0.1, 1.1], so that clipping happens, or (E, N) ints in 0..4.

    Continuous values lie on a 1/1024 grid: mpe2 subtracts them in float32 (its Box's dtype),
    which is exact only for such values, and the float64 comparison is tight.
    """
    if not env.continuous_actions:
        return torch.randint(0, 5, (env.n_envs, env.n_agents), generator=g)
    return (torch.randint(0, 1229, (env.n_envs, env.n_agents, 5), generator=g) - 102) / 1024


def mpe2_outputs(ref: Mpe2VecEnv) -> tuple[torch.Tensor, torch.Tensor]:
    """mpe2's own float64 observations (E, N, O), zero-padded, and rewards (E, N) of the current state.

    Mpe2VecEnv returns both rounded to float32, too coarse for the float64 comparison.
    """
    obs = torch.zeros(ref.n_envs, ref.n_agents, ref.obs_dim, dtype=torch.float64)
    rew = torch.zeros(ref.n_envs, ref.n_agents, dtype=torch.float64)
    for e, env in enumerate(ref.envs):
        raw = env.unwrapped
        for i, agent in enumerate(raw.world.agents):
            agent_obs = torch.from_numpy(raw.scenario.observation(agent, raw.world))
            obs[e, i, : len(agent_obs)] = agent_obs
            rew[e, i] = raw.scenario.reward(agent, raw.world)
    return obs, rew


def assert_same_state(twin: TorchTagEnv, ref: Mpe2VecEnv, atol: float = F64_ATOL) -> None:
    state, ref_state = twin.get_state(), ref.get_state()
    for key in ("pos", "vel"):
        torch.testing.assert_close(state[key], ref_state[key].to(state[key].dtype), rtol=0, atol=atol)
    assert int(state["t"]) == int(ref_state["t"])


def constructed_state(env: TorchTagEnv, positions: list[list[tuple[float, float]]]) -> dict[str, torch.Tensor]:
    """Given positions of every entity of every copy, at rest, at the start of an episode."""
    pos = torch.tensor(positions, dtype=torch.float64)
    assert pos.shape == (env.n_envs, env.n_agents + env.num_obstacles, 2)
    return {"pos": pos, "vel": torch.zeros_like(pos), "t": torch.tensor(0)}


@pytest.mark.parametrize("teams", TEAMS)
def test_interface_matches_mpe2_backend(teams):
    ref, twin = make_pair(teams, torch.float32, max_cycles=3, n_envs=2)
    for attr in (
        "agent_names",
        "obs_dims",
        "n_envs",
        "n_agents",
        "num_adversaries",
        "max_cycles",
        "obs_dim",
        "act_dim",
    ):
        assert getattr(twin, attr) == getattr(ref, attr), attr
    obs = twin.reset((0, 0, 0))
    assert obs.shape == (2, twin.n_agents, twin.obs_dim) and obs.dtype == torch.float32 and twin.t == 0
    state = twin.get_state()
    assert state["pos"].shape == state["vel"].shape == (2, twin.n_agents + twin.num_obstacles, 2)
    for t in range(twin.max_cycles):
        obs, reward, truncated = twin.step(torch.rand(2, twin.n_agents, 5))
        assert obs.shape == (2, twin.n_agents, twin.obs_dim) and reward.shape == (2, twin.n_agents)
        assert obs.dtype == reward.dtype == torch.float32 and twin.t == t + 1
        assert truncated == (t == twin.max_cycles - 1)
        for i, width in enumerate(twin.obs_dims):
            assert torch.count_nonzero(obs[:, i, width:]) == 0


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "discrete"])
@pytest.mark.parametrize("teams", TEAMS)
def test_float64_matches_mpe2_over_full_episodes(teams, continuous):
    ref, twin = make_pair(teams, torch.float64, continuous)
    ref.reset((3, 0, 0))
    twin.set_state(ref.get_state())
    g = torch.Generator().manual_seed(0)
    for _ in range(ref.max_cycles):
        actions = random_actions(g, twin)
        _, _, ref_truncated = ref.step(actions)
        obs, reward, truncated = twin.step(actions)
        ref_obs, ref_reward = mpe2_outputs(ref)
        torch.testing.assert_close(obs, ref_obs, rtol=0, atol=F64_ATOL)
        torch.testing.assert_close(reward, ref_reward, rtol=0, atol=F64_ATOL)
        assert_same_state(twin, ref)
        assert truncated == ref_truncated
    assert truncated


@pytest.mark.parametrize("teams", TEAMS)
def test_float32_matches_mpe2_step_by_step(teams):
    ref, twin = make_pair(teams, torch.float32)
    ref.reset((4, 0, 0))
    g = torch.Generator().manual_seed(1)
    for _ in range(ref.max_cycles):
        twin.set_state(ref.get_state())  # every step from mpe2's state: see F32_ATOL
        actions = random_actions(g, twin)
        ref_obs, ref_reward, ref_truncated = ref.step(actions)
        obs, reward, truncated = twin.step(actions)
        torch.testing.assert_close(obs, ref_obs, rtol=F32_RTOL, atol=F32_ATOL)
        torch.testing.assert_close(reward, ref_reward, rtol=F32_RTOL, atol=F32_ATOL)
        assert truncated == ref_truncated


def test_contacts_with_obstacles_and_agents_match_mpe2():
    teams = dict(num_adversaries=3, num_good=1, num_obstacles=2)
    ref, twin = make_pair(teams, torch.float64, n_envs=2, max_cycles=12)
    # Entities: predators 0-2, the prey, obstacles 0-1. Copy 0: predator 0 inside obstacle 0, predator 1
    # on the prey, predator 2 alone. Copy 1: predators 0 and 1 overlap; the prey is squeezed between
    # predator 2 and obstacle 0, which overlap too.
    state = constructed_state(
        twin,
        [
            [(0.0, 0.0), (0.5, 0.5), (-0.6, -0.6), (0.55, 0.52), (0.1, 0.05), (-0.7, 0.7)],
            [(0.0, 0.0), (0.1, 0.0), (-0.55, -0.55), (-0.5, -0.5), (-0.35, -0.45), (0.7, 0.7)],
        ],
    )
    ref.set_state(state)
    twin.set_state(state)
    # At rest and without action forces, only contact forces can set agents moving.
    _, reward, _ = twin.step(torch.zeros(2, 4, 5))
    ref.step(torch.zeros(2, 4, 5))
    assert_same_state(twin, ref)
    torch.testing.assert_close(reward, mpe2_outputs(ref)[1], rtol=0, atol=F64_ATOL)
    speed = twin.get_state()["vel"][:, :4].norm(dim=-1)  # (E, N)
    in_contact = torch.tensor([[True, True, False, True], [True, True, True, True]])
    assert (speed[in_contact] > 0.1).all() and (speed[~in_contact] < 1e-12).all()
    assert twin.get_state()["vel"][0, 0, 0] < 0  # predator 0 is pushed away from the obstacle on its right
    assert reward.tolist() == [[10.0, 10.0, 10.0, -10.0], [10.0, 10.0, 10.0, -10.0]]
    torch.testing.assert_close(twin.get_state()["pos"][:, 4:], state["pos"][:, 4:], rtol=0, atol=0)
    g = torch.Generator().manual_seed(2)
    for _ in range(ref.max_cycles - 1):  # the bodies push apart while they act
        actions = random_actions(g, twin)
        ref.step(actions)
        obs, reward, _ = twin.step(actions)
        ref_obs, ref_reward = mpe2_outputs(ref)
        torch.testing.assert_close(obs, ref_obs, rtol=0, atol=F64_ATOL)
        torch.testing.assert_close(reward, ref_reward, rtol=0, atol=F64_ATOL)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_boundary_penalty_branches_match_mpe2(dtype):
    teams = dict(num_adversaries=3, num_good=1, num_obstacles=2)
    # The prey's (x, y) per copy: inside; in [0.9, 1); beyond 1; beyond the cap of 10; on the edges 0.9 and 1.
    prey = [(0.5, -0.3), (0.95, -0.92), (1.2, -1.5), (3.0, 0.0), (0.9, -1.0)]
    expected = [0.0, 0.5 + 0.2, math.exp(0.4) + math.exp(1.0), 10.0, 1.0]
    ref, twin = make_pair(teams, dtype, n_envs=len(prey))
    others = [(-0.5, 0.5), (0.0, 0.5), (0.5, 0.5)], [(-0.5, -0.5), (-0.8, 0.0)]  # predators; obstacles
    state = constructed_state(twin, [[*others[0], p, *others[1]] for p in prey])
    ref.set_state(state)
    twin.set_state(state)
    # At rest nothing moves in the first step, so the rewards are those of the positions above.
    actions = torch.zeros(len(prey), 4, 5)
    _, ref_reward, _ = ref.step(actions)
    _, reward, _ = twin.step(actions)
    assert reward.dtype == dtype
    if dtype == torch.float64:
        tol = dict(rtol=0.0, atol=F64_ATOL)
        torch.testing.assert_close(reward, mpe2_outputs(ref)[1], **tol)
    else:
        tol = dict(rtol=F32_RTOL, atol=F32_ATOL)
        torch.testing.assert_close(reward, ref_reward, **tol)
    torch.testing.assert_close(reward[:, 3], -torch.tensor(expected, dtype=dtype), **tol)
    assert (reward[:, :3] == 0).all()


def test_set_state_carries_the_step_counter_to_both_backends():
    ref, twin = make_pair(dict(num_adversaries=3, num_good=1, num_obstacles=2), torch.float64, max_cycles=5, n_envs=2)
    ref.reset((5, 0, 0))
    state = ref.get_state()
    state["t"] = torch.tensor(3)
    for _ in range(2):  # mpe2 also takes a state after its episode was truncated
        ref.set_state(state)
        twin.set_state(state)
        actions = torch.rand(2, 4, 5)
        assert ref.step(actions)[2] is twin.step(actions)[2] is False
        assert ref.step(actions)[2] is twin.step(actions)[2] is True
        assert_same_state(twin, ref)


def test_reset_is_seeded_and_in_range():
    cfg = EnvConfig(num_adversaries=4, num_good=2, num_obstacles=3, n_envs=64)
    twin, twin32 = TorchTagEnv(cfg, dtype=torch.float64), TorchTagEnv(cfg)
    a = twin.reset((1, 0, 0))
    first = twin.get_state()
    b = twin.reset((1, 0, 0))
    c = twin.reset((1, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # copies start from different states
    pos = first["pos"]
    assert pos[:, :6].abs().max() <= 1 and pos[:, 6:].abs().max() <= 0.9 and pos[:, :6].abs().max() > 0.9
    assert torch.count_nonzero(first["vel"]) == 0 and int(first["t"]) == 0
    twin32.reset((1, 0, 0))
    assert torch.equal(twin32.get_state()["pos"], pos.float())  # the same start states in every dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    cfg = EnvConfig(num_adversaries=4, num_good=2, num_obstacles=3, max_cycles=50, n_envs=256)
    cpu, cuda = TorchTagEnv(cfg, dtype=torch.float64), TorchTagEnv(cfg, device="cuda", dtype=torch.float64)
    torch.testing.assert_close(cuda.reset((6, 0, 0)).cpu(), cpu.reset((6, 0, 0)), rtol=0, atol=0)
    g = torch.Generator().manual_seed(3)
    for _ in range(cfg.max_cycles):
        actions = random_actions(g, cpu)
        obs, reward, _ = cpu.step(actions)
        cuda_obs, cuda_reward, _ = cuda.step(actions.cuda())
        assert cuda_obs.device.type == "cuda"
        torch.testing.assert_close(cuda_obs.cpu(), obs, rtol=0, atol=F64_ATOL)
        torch.testing.assert_close(cuda_reward.cpu(), reward, rtol=0, atol=F64_ATOL)
