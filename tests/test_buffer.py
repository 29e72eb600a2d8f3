"""Replay buffer of world states: ring overwrite of the oldest, seeded sampling, state round trip, and
batches equal, bit for bit, to those of a buffer that stores the env's observations."""

from dataclasses import replace

import pytest
import torch

from maddpg.core.buffer import Batch, MixedBuffer, ReplayBuffer, States, buffer_class, observe, states
from maddpg.core.checkpoint import buffered_transitions, without_buffer_data
from maddpg.core.config import Backend, EnvConfig
from maddpg.core.envs import make_env
from maddpg.core.errors import ConfigError
from maddpg.core.opponents import MixedPrey
from maddpg.core.scripted import StillPrey
from maddpg.core.twin import Observer

ENV = EnvConfig(num_adversaries=2, num_good=1, num_obstacles=1)


def transitions(start: int, n: int, env: EnvConfig = ENV) -> States:
    """n transitions whose every value is its id (next positions: id + 0.5)."""
    agents, obstacles = env.num_adversaries + env.num_good, env.num_obstacles
    ids = torch.arange(start, start + n, dtype=torch.float32)

    def fill(*shape, offset=0.0):
        return (ids + offset).view(n, *[1] * len(shape)).expand(n, *shape).clone()

    after = fill(agents, 2, offset=0.5)
    return States(fill(agents + obstacles, 2), fill(agents, 2), fill(agents, 5), fill(agents), after, after.clone(),
                  torch.zeros(n))  # fmt: skip


def buffer(capacity: int, seed: int = 0, env: EnvConfig = ENV, state_dtype=torch.float32) -> ReplayBuffer:
    return ReplayBuffer(capacity, Observer(env), env.num_obstacles, 5, seed=seed, state_dtype=state_dtype)


def test_ring_overwrites_the_oldest():
    buf = buffer(5)
    buf.add(transitions(0, 3))
    assert buf.size == 3
    buf.add(transitions(3, 4))  # ids 0..6 into 5 slots: 0 and 1 are overwritten
    assert buf.size == 5
    assert sorted(buf.data["pos"][:, 0, 0].tolist()) == [2, 3, 4, 5, 6]
    assert torch.equal(buf.data["next_pos"][:, 0, 0], buf.data["pos"][:, 0, 0] + 0.5)


def test_sampling_is_seeded_uniform_and_within_the_filled_part():
    def draw(seed):
        buf = buffer(100, seed)
        buf.add(transitions(0, 10))
        return buf.sample_states(4000).act[:, 0, 0]

    a, b, c = draw(1), draw(1), draw(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    counts = torch.bincount(a.long(), minlength=10)
    assert counts.numel() == 10 and counts.min() > 300  # every stored transition, ~400 each


def test_state_round_trip_with_and_without_contents():
    buf = buffer(8)
    buf.add(transitions(0, 6))
    buf.sample(3)
    full, empty = buf.state_dict(include_data=True), buf.state_dict(include_data=False)
    expected = buf.sample(5)

    restored = buffer(8, seed=99)
    restored.load_state_dict(full)
    assert (restored.size, restored.pos) == (6, 6)
    assert torch.equal(restored.sample(5).obs, expected.obs)

    restored.load_state_dict(empty)
    assert restored.size == 0
    full["data"] = {"obs": full["data"]["pos"]}  # written by a version that stored observations
    with pytest.raises(ConfigError, match="older version"):
        restored.load_state_dict(full)


def test_each_buffer_kind_drops_and_counts_the_transitions_of_its_own_states():
    """A checkpoint without its buffer's data holds no transitions, whichever kind of buffer wrote it
    (prey.mode=mix: a MixedBuffer, one buffer per prey)."""
    single = buffer(8)
    single.add(transitions(0, 6))
    mixed = MixedBuffer(MixedPrey([StillPrey(), StillPrey()]), [buffer(8, seed=1), buffer(8, seed=2)])
    mixed.add(transitions(0, 5))  # 3 to the first prey's buffer, 2 to the second's
    for kind, buf, held in ((ReplayBuffer, single, 6), (MixedBuffer, mixed, 5)):
        assert kind.transitions(buf.state_dict(include_data=False)) == 0
        rank_state = {"buffer": buf.state_dict(include_data=True)}
        assert buffer_class(rank_state["buffer"]) is kind and kind.transitions(rank_state["buffer"]) == held
        assert buffered_transitions(rank_state) == held
        without_buffer_data(rank_state)
        assert buffered_transitions(rank_state) == 0
        buf.load_state_dict(rank_state["buffer"])
        assert buf.size == 0  # it loads as an empty buffer
    assert buffered_transitions({"learner": {}}) == 0  # a pipeline learner's state holds no buffer


def test_memory_grows_with_the_team_not_its_square():
    def per_transition(n):
        env = EnvConfig(num_adversaries=n - n // 4, num_good=n // 4)
        return buffer(1, env=env).nbytes()

    assert per_transition(32) < 9 * per_transition(4)  # 8x the agents: the observations' buffer took ~40x


class ObservationBuffer:
    """The reference: a buffer that stores the observations the env returned, with the same sampling."""

    def __init__(self, capacity: int, seed: int):
        self.data: list[Batch] = []
        self.generator = torch.Generator().manual_seed(seed)

    def add(self, batch: Batch) -> None:
        self.data.append(batch)

    def sample(self, batch_size: int) -> Batch:
        every = Batch(*(torch.cat(field) for field in zip(*self.data, strict=True)))
        idx = torch.randint(len(every.obs), (batch_size,), generator=self.generator)
        return Batch(*(field[idx] for field in every))


@pytest.mark.parametrize("backend", [Backend.torch, Backend.mpe2])
@pytest.mark.parametrize("teams", [(1, 1, 0), (3, 1, 2), (6, 2, 3)], ids=lambda t: f"{t[0]}v{t[1]}+{t[2]}")
def test_batches_equal_those_of_a_buffer_of_observations(backend, teams):
    cfg = EnvConfig(backend=backend, num_adversaries=teams[0], num_good=teams[1], num_obstacles=teams[2], n_envs=3,
                    max_cycles=10)  # fmt: skip
    env = make_env(cfg)
    ours = buffer(1000, seed=4, env=cfg, state_dtype=env.state_dtype)
    reference = ObservationBuffer(1000, seed=4)
    actions = torch.Generator().manual_seed(0)
    for episode in range(2):
        obs = env.reset((0, 0, episode))
        state = env.get_state()
        for _ in range(cfg.max_cycles):
            act = torch.rand(cfg.n_envs, env.n_agents, 5, generator=actions)
            next_obs, rew, _ = env.step(act)
            next_state = env.get_state()
            terminal = torch.zeros(cfg.n_envs)
            ours.add(states(state, act, rew, next_state, terminal))
            reference.add(Batch(obs, act, rew, next_obs, terminal))
            obs, state = next_obs, next_state
    for _ in range(3):
        for field, expected in zip(ours.sample(64), reference.sample(64), strict=True):
            assert field.dtype == torch.float32 and torch.equal(field, expected)


def test_a_pipeline_round_trip_keeps_the_states_exact():
    from maddpg.distributed.pipeline import pack, unpack

    cfg = replace(ENV, backend=Backend.mpe2, n_envs=2)
    env = make_env(cfg)
    env.reset((0, 0, 0))
    state = env.get_state()
    act = torch.rand(2, env.n_agents, 5)
    env.step(act)
    batch = states(state, act, torch.randn(2, env.n_agents), env.get_state(), torch.zeros(2))
    (back,) = unpack(pack([batch]), env.n_agents, cfg.num_obstacles, 5)
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(batch, back, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(observe(Observer(cfg), batch), observe(Observer(cfg), back),
                                                  strict=True))  # fmt: skip
