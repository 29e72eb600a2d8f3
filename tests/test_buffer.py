"""Replay buffer: ring overwrite of the oldest, seeded sampling, state round trip."""

import torch

from maddpg.buffer import Batch, ReplayBuffer


def transitions(start: int, n: int) -> Batch:
    ids = torch.arange(start, start + n, dtype=torch.float32)
    return Batch(
        obs=ids.view(n, 1, 1).expand(n, 2, 3).clone(),
        act=ids.view(n, 1, 1).expand(n, 2, 5).clone(),
        rew=ids.view(n, 1).expand(n, 2).clone(),
        next_obs=(ids + 0.5).view(n, 1, 1).expand(n, 2, 3).clone(),
        terminal=torch.zeros(n),
    )


def test_ring_overwrites_the_oldest():
    buf = ReplayBuffer(capacity=5, n_agents=2, obs_dim=3, act_dim=5, seed=0)
    buf.add(transitions(0, 3))
    assert buf.size == 3
    buf.add(transitions(3, 4))  # ids 0..6 into 5 slots: 0 and 1 are overwritten
    assert buf.size == 5
    assert sorted(buf.data["obs"][:, 0, 0].tolist()) == [2, 3, 4, 5, 6]
    assert torch.equal(buf.data["next_obs"][:, 0, 0], buf.data["obs"][:, 0, 0] + 0.5)


def test_sampling_is_seeded_uniform_and_within_the_filled_part():
    def draw(seed):
        buf = ReplayBuffer(capacity=100, n_agents=2, obs_dim=3, act_dim=5, seed=seed)
        buf.add(transitions(0, 10))
        return buf.sample(4000).obs[:, 0, 0]

    a, b, c = draw(1), draw(1), draw(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    counts = torch.bincount(a.long(), minlength=10)
    assert counts.numel() == 10 and counts.min() > 300  # every stored transition, ~400 each


def test_state_round_trip_with_and_without_contents():
    buf = ReplayBuffer(capacity=8, n_agents=2, obs_dim=3, act_dim=5, seed=0)
    buf.add(transitions(0, 6))
    buf.sample(3)
    full, empty = buf.state_dict(include_data=True), buf.state_dict(include_data=False)
    expected = buf.sample(5)

    restored = ReplayBuffer(capacity=8, n_agents=2, obs_dim=3, act_dim=5, seed=99)
    restored.load_state_dict(full)
    assert (restored.size, restored.pos) == (6, 6)
    assert torch.equal(restored.sample(5).obs, expected.obs)

    restored.load_state_dict(empty)
    assert restored.size == 0
