"""Evaluation is a pure function of (actors, opponent, evaluation index): it draws from streams of its
own, and training is bitwise the same whatever the evaluation settings."""

import pytest
import torch

import train
from conftest import toy_config
from maddpg.core.checkpoint import list_checkpoints, load_checkpoint
from maddpg.core.comm import Comm
from maddpg.core.evaluation import evaluate, evaluate_episodes
from maddpg.core.prey import RandomPrey
from maddpg.core.scripted import GreedyTeam, Team
from maddpg.distributed.modes import placement

# Every kind of prey: learning, random, scripted, a shipped prey, and a mix with a random prey in it.
PREY = {
    "learn": ("prey.mode=learn",),
    "random": ("prey.mode=random",),
    "still": ("prey.mode=still",),
    "flee": ("prey.mode=flee",),
    "weak": ("prey.mode=fixed", "prey.checkpoint=weak"),
    "mix": ("prey.mode=mix", "prey.mix=[random,flee]", "env.n_envs=2"),
}


def built(*overrides: str):
    cfg = toy_config(*overrides, "train.eval_episodes=4")
    env, eval_env, learner, _ = train.build(cfg, torch.device("cpu"), placement(cfg, Comm()))
    return cfg, env, eval_env, learner


def explore(learner, env, steps: int) -> None:
    """Act with exploration, as training does: the training streams (exploration, a random prey's) move on."""
    obs = env.reset((0, 0, 0))
    for _ in range(steps):
        obs, _, _ = env.step(learner.act(obs, 0.1, 0.1))


@pytest.mark.parametrize("prey", PREY)
def test_back_to_back_evaluations_are_equal_and_leave_the_training_streams_alone(prey):
    cfg, env, eval_env, learner = built(*PREY[prey])
    first = evaluate(learner, eval_env, cfg.train.seed, 200)
    streams = learner.prey.state_dict() if hasattr(learner.prey, "state_dict") else None
    assert evaluate(learner, eval_env, cfg.train.seed, 200) == first
    if streams is not None:  # a random prey's, or a mix's random member's
        assert str(learner.prey.state_dict()) == str(streams), "the evaluation drew from the training prey"
    explore(learner, env, 5)
    assert evaluate(learner, eval_env, cfg.train.seed, 200) == first, "the evaluation depends on the training streams"


def test_a_random_prey_draws_by_the_evaluation_index():
    cfg, _, eval_env, learner = built(*PREY["random"])
    episodes = [evaluate_episodes(learner, eval_env, cfg.train.seed, index)["prey_return"] for index in (0, 0, 1)]
    assert torch.equal(episodes[0], episodes[1]) and not torch.equal(episodes[0], episodes[2])


class Recording:
    """A random prey that records the actions it plays; an evaluation's copy records into the same list."""

    def __init__(self, prey: RandomPrey, actions: list):
        self.prey, self.actions = prey, actions

    def act(self, obs):
        self.actions.append(self.prey.act(obs))
        return self.actions[-1]

    def with_streams(self, generators):
        return Recording(self.prey.with_streams(generators), self.actions)


def test_players_evaluated_with_the_same_index_meet_the_same_draws():
    """The suite's greedy team meets a random prey's draws that the run's predators met."""
    cfg, _, eval_env, learner = built(*PREY["random"])
    predators, greedy = [], []
    evaluate_episodes(learner, eval_env, cfg.train.seed, 0, Recording(learner.prey, predators))
    team = Team(GreedyTeam(cfg.env), Recording(learner.prey, greedy), cfg.env.num_adversaries)
    evaluate_episodes(team, eval_env, cfg.train.seed, 0)
    assert len(predators) == cfg.env.max_cycles and all(map(torch.equal, predators, greedy))


SETTINGS = (("train.eval_every=100", "train.eval_episodes=2"), ("train.eval_every=300", "train.eval_episodes=3"))


def final_state(run_dir) -> dict:
    return load_checkpoint(list_checkpoints(run_dir, 1)[-1], 0)


def assert_equal_trees(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_equal_trees(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_trees(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    else:
        assert a == b, f"{where} differs"


@pytest.mark.parametrize("prey", PREY)
def test_training_is_bitwise_the_same_whatever_the_evaluation_settings(tmp_path, run_args, prey):
    common = (*PREY[prey], "train.total_steps=300", "train.checkpoint_buffer=true", "run.gif=false")
    for name, settings in zip("ab", SETTINGS, strict=True):
        train.main(run_args(name, *common, *settings))
    a, b = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    assert a["progress"]["env_steps"] == 300 and a["learner"]["updates"] > 200
    # The weights, optimizers and streams; the replay buffer; a random prey's streams.
    for part in ("learner", "buffer", "prey"):
        if part in a:
            assert_equal_trees(a[part], b[part], part)
