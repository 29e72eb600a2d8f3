"""Noise-free evaluation episodes and the study's metric: the predator return, with the capture rate
and the prey's return beside it. The training loop, genetic fitness and `python -m maddpg.evaluate`
all score a policy here."""

from __future__ import annotations

import torch

from maddpg.envs import VecEnv
from maddpg.learner import Maddpg
from maddpg.seeding import ENV_EVAL


@torch.no_grad()
def evaluate_episodes(learner: Maddpg, env: VecEnv, seed: int) -> dict[str, torch.Tensor]:
    """Play one noise-free episode in each of `env`'s copies, from the same start states every call.

    -> per episode (E,): predator_return, the sum over predators of their episode rewards;
    capture_rate, the fraction of steps on which some predator touches some prey; prey_return,
    the sum over prey of their episode rewards.
    """
    obs = env.reset((seed, ENV_EVAL))
    returns = torch.zeros(env.n_envs, env.n_agents)
    captures = torch.zeros(env.n_envs)
    truncated = False
    while not truncated:
        obs, reward, truncated = env.step(learner.act(obs))
        returns += reward.cpu()
        # Every predator earns +10 per predator-prey contact, so a positive predator reward means a contact.
        captures += (reward[:, 0] > 0).float().cpu()
    k = env.num_adversaries
    return {
        "predator_return": returns[:, :k].sum(1),
        "capture_rate": captures / env.max_cycles,
        "prey_return": returns[:, k:].sum(1),
    }


def evaluate(learner: Maddpg, env: VecEnv, seed: int) -> dict[str, float]:
    """The means over episodes of `evaluate_episodes`."""
    return {key: value.mean().item() for key, value in evaluate_episodes(learner, env, seed).items()}
