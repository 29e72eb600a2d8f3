"""The prey a run plays when its prey does not learn (`opponent`): one, or a mix of them.

With prey.mode=mix (the prey named in prey.mix), env copy e plays prey.mix[e % K] for the whole run,
and evaluation copies likewise. A critic's target needs the action the prey *that played* would take
next, so each prey's transitions go to a replay buffer of its own (buffer_size / K each), and each
update trains on one prey's batch, the prey taking turns, bootstrapping with that prey's target
actions: MixedBuffer.sample tells MixedPrey whose turn it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from maddpg.core.buffer import rows_of
from maddpg.core.config import EnvConfig, PreyConfig, PreyMode
from maddpg.core.learner import Prey
from maddpg.core.prey import Generators, RandomPrey, prey_policy


def opponent(
    prey: PreyConfig, env: EnvConfig, obs_dim: int, act_dim: int, device: torch.device | str, generators: Generators
) -> Prey | None:
    """A run's prey when it does not learn (prey.mode: one prey, or a MixedPrey); None when it learns.
    A random prey draws from `generators` (acting, critics' targets)."""
    if prey.mode == PreyMode.learn:
        return None
    names = {PreyMode.fixed: [prey.checkpoint], PreyMode.mix: prey.mix}.get(prey.mode, [prey.mode])
    policies = [prey_policy(name, env, obs_dim, act_dim, device, generators) for name in names]
    return MixedPrey(policies) if prey.mode == PreyMode.mix else policies[0]


class MixedPrey:
    """Acts as prey e % K in env copy e; its critics' targets are those of the prey whose batch is
    being trained on (`turn`, set by MixedBuffer.sample)."""

    def __init__(self, policies: Sequence[Prey]):
        self.policies, self.turn = list(policies), 0

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (E, n_prey, O) -> actions (E, n_prey, A), copy e's from prey e % K."""
        rows = rows_of(len(obs), len(self.policies), obs.device)
        actions = [policy.act(obs[mine]) for mine, policy in zip(rows, self.policies, strict=True)]
        out = actions[0].new_empty((len(obs), *actions[0].shape[1:]))
        for mine, part in zip(rows, actions, strict=True):
            out[mine] = part
        return out

    def target_act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policies[self.turn].target_act(obs)

    def with_streams(self, generators: Generators) -> MixedPrey:
        """The same mix, each member on `generators` (a random member draws from them)."""
        return MixedPrey([policy.with_streams(generators) for policy in self.policies])

    def state_dict(self) -> dict:
        """The random prey's streams (the others hold no state that changes)."""
        return {k: p.state_dict() for k, p in enumerate(self.policies) if isinstance(p, RandomPrey)}

    def load_state_dict(self, state: dict) -> None:
        for k, random_state in state.items():
            self.policies[k].load_state_dict(random_state)
