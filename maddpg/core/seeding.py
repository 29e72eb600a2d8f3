"""Independent seeds for every random stream of a run, derived from its seed and a key through SeedSequence.

The run's `train.seed` is the entropy and the key (purpose, rank, ...) the spawn key, so distinct
keys give independent streams and no two (seed, rank) pairs share one. Never derive a seed by
adding: with `seed + rank`, seed S rank 1 would be seed S+1 rank 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Purposes: each random stream draws from its own seed. New ones go at the end, so that every
# existing stream keeps its key. EVAL_PREY: an evaluation's opponent, keyed by the evaluation's index
# (FITNESS: a genetic fitness measurement's, keyed by the sync round); UPDATE: the updates' Gumbel noise;
# SELECT: the seed of the episodes on which a genetic run names its best learner.
ENV_TRAIN, ENV_EVAL, EXPLORE, SAMPLE, INIT, PREY, PREY_TARGET, PBT, FITNESS, EVAL_PREY, UPDATE, SELECT = range(12)


def derive_seeds(seed: int, *key: int, n: int = 1) -> list[int]:
    """`n` well-mixed 63-bit seeds of the stream `key` of run seed `seed`."""
    state = np.random.SeedSequence(seed, spawn_key=key).generate_state(n, np.uint64)
    return [int(s >> np.uint64(1)) for s in state]


def generator(seed: int, *key: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seeds(seed, *key)[0])


@dataclass(frozen=True)
class Streams:
    """The random streams of one stream rank: a data or genetic replica has its own, while the ranks
    of model and pipeline mode share rank 0's, so that they draw the same numbers without a message."""

    seed: int  # train.seed
    rank: int

    def key(self, purpose: int, *more: int) -> tuple[int, ...]:
        """The full key (seed, purpose, rank, *more), e.g. for an env reset: (.., ENV_TRAIN, .., episode)."""
        return (self.seed, purpose, self.rank, *more)

    def seed_of(self, purpose: int) -> int:
        return derive_seeds(*self.key(purpose))[0]

    def generator(self, purpose: int, device: torch.device | str = "cpu") -> torch.Generator:
        return generator(*self.key(purpose), device=device)
