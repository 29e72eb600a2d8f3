"""The mpe2 vector env against mpe2 itself: same observations (padded), rewards and truncation."""

import numpy as np
import pytest
import torch
from mpe2 import simple_tag_v3

from maddpg.core.config import EnvConfig
from maddpg.core.envs import Mpe2VecEnv
from maddpg.core.seeding import derive_seeds


@pytest.mark.parametrize(
    "teams",
    [dict(num_adversaries=3, num_good=1, num_obstacles=2), dict(num_adversaries=2, num_good=2, num_obstacles=0)],
)
def test_matches_mpe2_stepped_directly(teams):
    cfg = EnvConfig(**teams, max_cycles=10, n_envs=3)
    vec = Mpe2VecEnv(cfg)
    seeds = derive_seeds(7, 0, 4, n=3)
    refs = []
    for s in seeds:
        ref = simple_tag_v3.parallel_env(**teams, max_cycles=10, continuous_actions=True, dynamic_rescaling=False)
        ref.reset(seed=s)
        refs.append(ref)
    obs = vec.reset((7, 0, 4))
    assert obs.shape == (3, vec.n_agents, vec.obs_dim)
    g = torch.Generator().manual_seed(0)
    for t in range(cfg.max_cycles):
        actions = torch.rand(3, vec.n_agents, 5, generator=g)
        obs, reward, truncated = vec.step(actions)
        assert truncated == (t == cfg.max_cycles - 1)
        for e, ref in enumerate(refs):
            ref_obs, ref_rew, _, ref_trunc, _ = ref.step(
                {name: actions[e, i].numpy() for i, name in enumerate(vec.agent_names)}
            )
            for i, name in enumerate(vec.agent_names):
                width = vec.obs_dims[i]
                np.testing.assert_array_equal(obs[e, i, :width].numpy(), ref_obs[name])
                assert torch.count_nonzero(obs[e, i, width:]) == 0
                assert reward[e, i].item() == pytest.approx(ref_rew[name], rel=1e-6)
            assert all(ref_trunc.values()) == truncated


def test_default_teams_and_widths():
    vec = Mpe2VecEnv(EnvConfig())
    assert vec.agent_names == ["adversary_0", "adversary_1", "adversary_2", "agent_0"]
    assert vec.obs_dims == [16, 16, 16, 14] and vec.obs_dim == 16 and vec.act_dim == 5


def test_reset_is_seeded():
    vec = Mpe2VecEnv(EnvConfig(n_envs=2))
    a, b, c = vec.reset((1, 0, 0)), vec.reset((1, 0, 0)), vec.reset((1, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # copies start from different states
