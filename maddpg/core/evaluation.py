"""Noise-free evaluation episodes and the study's metric: the predator return, with the capture rate
and the prey's return beside it. The training loop, genetic fitness and `python -m maddpg.evaluate`
all score a policy here."""

from __future__ import annotations

import torch

from maddpg.core import seeding
from maddpg.core.envs import VecEnv
from maddpg.core.learner import Maddpg, Prey
from maddpg.core.scripted import Team

# What an evaluation's numbers depend on besides its inputs; cached results (experiments'
# opponents.json) are measured again when it changes. 2: the opponent draws from streams of the
# evaluation's own (1: from the training prey's streams).
PROTOCOL = 2
# The common opponents a run's predators are judged against: the scripted still, random and fleeing
# prey (maddpg/core/scripted.py) and the shipped weak and strong prey (maddpg/core/pretrained.py).
SUITE = ("still", "random", "flee", "weak", "strong")


@torch.no_grad()
def evaluate_episodes(
    player: Maddpg | Team,
    env: VecEnv,
    seed: int,
    index: int,
    opponent: Prey | None = None,
    purpose: int = seeding.EVAL_PREY,
) -> dict[str, torch.Tensor]:
    """Play one noise-free episode in each of `env`'s copies against `opponent` (default: the player's
    own prey; its own prey actors when the prey learns): a pure function of the actors, the opponent
    and the evaluation's `index` (the training loop's: its env steps). The start states are the same
    every call, (seed, ENV_EVAL); the opponent plays a copy of itself whose random streams are keyed
    by (seed, purpose, index), so an evaluation draws nothing from the training streams and two
    players evaluated with the same index meet the same draws.

    -> per episode (E,): predator_return, the sum over predators of their episode rewards;
    capture_rate, the fraction of steps on which some predator touches some prey; prey_return,
    the sum over prey of their episode rewards.
    """
    obs = env.reset((seed, seeding.ENV_EVAL))
    prey = player.prey if opponent is None else opponent
    if prey is not None:
        draws = seeding.generator(seed, purpose, index, device=obs.device)
        prey = prey.with_streams((draws, draws))  # an evaluation acts only: no target is drawn
    returns = torch.zeros(env.n_envs, env.n_agents)
    captures = torch.zeros(env.n_envs)
    truncated = False
    while not truncated:
        obs, reward, truncated = env.step(player.act(obs, prey=prey))
        returns += reward.cpu()
        # Every predator earns +10 per predator-prey contact, so a positive predator reward means a contact.
        captures += (reward[:, 0] > 0).float().cpu()
    k = env.num_adversaries
    return {
        "predator_return": returns[:, :k].sum(1),
        "capture_rate": captures / env.max_cycles,
        "prey_return": returns[:, k:].sum(1),
    }


def evaluate(
    player: Maddpg | Team,
    env: VecEnv,
    seed: int,
    index: int,
    opponent: Prey | None = None,
    purpose: int = seeding.EVAL_PREY,
) -> dict[str, float]:
    """The means over episodes of `evaluate_episodes`."""
    episodes = evaluate_episodes(player, env, seed, index, opponent, purpose)
    return {key: value.mean().item() for key, value in episodes.items()}
