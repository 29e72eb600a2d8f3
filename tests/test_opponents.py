"""Training against a mix of prey: who plays where, whose transitions go where, whose targets are used."""

import pytest
import torch

import train
from conftest import assert_same_weights, learner_state, unmeasured
from maddpg.core.buffer import MixedBuffer, ReplayBuffer, States
from maddpg.core.config import ConfigError, EnvConfig, load_config
from maddpg.core.learner import Maddpg
from maddpg.core.metrics import read_rows
from maddpg.core.opponents import MixedPrey
from maddpg.core.twin import Observer

ENV = EnvConfig()  # 3 predators, 1 prey, 2 obstacles: observations of 16 (predators) and 14 (prey)


class Constant:
    """A prey that always pushes with `value`, acting and for its critics' targets (twice that)."""

    def __init__(self, value: float):
        self.value = value

    def act(self, obs):
        return torch.full((*obs.shape[:2], 5), self.value)

    def target_act(self, obs):
        return 2 * self.act(obs)


def transitions(e: int) -> States:
    """E transitions whose rewards number the env copies 0..E-1."""
    g = torch.Generator().manual_seed(0)
    return States(torch.rand(e, 6, 2, generator=g), torch.rand(e, 4, 2, generator=g), torch.rand(e, 4, 5, generator=g),
                  torch.arange(e, dtype=torch.float32)[:, None].expand(e, 4), torch.rand(e, 4, 2, generator=g),
                  torch.rand(e, 4, 2, generator=g), torch.zeros(e))  # fmt: skip


def mixture(k: int = 3) -> tuple[MixedPrey, MixedBuffer]:
    prey = MixedPrey([Constant(0.1 * (i + 1)) for i in range(k)])
    buffers = [ReplayBuffer(100, Observer(ENV), 2, 5, seed=i) for i in range(k)]
    return prey, MixedBuffer(prey, buffers)


def test_env_copy_e_plays_prey_e_mod_k():
    prey, _ = mixture()
    actions = prey.act(torch.zeros(7, 1, 14))
    torch.testing.assert_close(actions[:, 0, 0], torch.tensor([0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1]))


def test_each_prey_transitions_go_to_its_own_buffer_and_batches_take_turns():
    prey, buffer = mixture()
    buffer.add(transitions(8))
    assert buffer.size == 8 and [b.size for b in buffer.buffers] == [3, 3, 2]
    for k, b in enumerate(buffer.buffers):
        assert set(b.data["rew"][: b.size, 0].tolist()) == {float(e) for e in range(8) if e % 3 == k}
    turns = []
    for _ in range(4):
        batch = buffer.sample(16)
        turns.append(prey.turn)
        assert {int(r) % 3 for r in batch.rew[:, 0]} == {prey.turn}  # the batch is that prey's
    assert turns == [1, 2, 0, 1]


def test_critic_targets_bootstrap_with_the_prey_whose_batch_it_is():
    prey, buffer = mixture()
    buffer.add(transitions(9))
    cfg = load_config(None, ["maddpg.hidden=[8,8]"]).maddpg
    learner = Maddpg([16, 16, 16, 14], 5, 3, cfg, prey, torch.Generator(), torch.Generator())
    for _ in range(3):
        batch = buffer.sample(4)
        expected = 2 * 0.1 * (prey.turn + 1)
        torch.testing.assert_close(learner.target_actions(batch.next_obs)[:, 3], torch.full((4, 5), expected))


def test_a_resumed_mix_run_continues_exactly(tmp_path, run_args):
    common = ("prey.mode=mix", "prey.mix=[still,random,flee,random]", "env.n_envs=4", "train.eval_episodes=4",
              "train.checkpoint_buffer=true", "train.total_steps=1200", "train.eval_every=400",
              "train.checkpoint_every=600", "run.gif=false")  # fmt: skip
    train.main(run_args("straight", *common))
    train.main(run_args("halves", *common[:-3], "train.total_steps=600", *common[-3:-1]))
    train.main(["--resume", str(tmp_path / "halves"), "train.total_steps=1200", "run.progress=false"])
    assert_same_weights(learner_state(tmp_path / "straight"), learner_state(tmp_path / "halves"))
    assert unmeasured(read_rows(tmp_path / "halves")) == unmeasured(read_rows(tmp_path / "straight"))


@pytest.mark.parametrize(
    "overrides, names",
    [
        (["prey.mix=[flee]"], "two or more"),
        (["prey.mix=[flee,learn]"], "not learn"),
        (["prey.mix=[flee,no/such.pt]"], "no/such.pt"),
        (["env.n_envs=2"], "env.n_envs=2"),
        (["mode=genetic"], "mode genetic does not"),
        (["mode=pipeline"], "mode pipeline does not"),
    ],
)
def test_a_mix_that_cannot_train_names_the_fix(overrides, names):
    ranks = 3 if overrides[0].startswith("mode=") else 1
    with pytest.raises(ConfigError, match=names):
        load_config(None, ["prey.mode=mix", "env.n_envs=3", *overrides], world_size=ranks)
