"""Independent seeds for every random stream of a run, derived from (seed, rank, purpose, ...)."""

from __future__ import annotations

import numpy as np
import torch

# Purposes: each random stream of a rank draws from its own seed.
ENV_TRAIN, ENV_EVAL, EXPLORE, SAMPLE = range(4)


def derive_seeds(*key: int, n: int = 1) -> list[int]:
    """`n` well-mixed 63-bit seeds from an integer key, via numpy's SeedSequence."""
    state = np.random.SeedSequence(list(key)).generate_state(n, np.uint64)
    return [int(s >> np.uint64(1)) for s in state]


def generator(*key: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seeds(*key)[0])
