"""Shared helpers: toy-scale configs and small learners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maddpg.buffer import Batch
from maddpg.config import Config, load_config
from maddpg.learner import Maddpg
from maddpg.prey import RandomPrey

ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "configs" / "smoke.yaml")


def toy_config(*overrides: str) -> Config:
    return load_config(SMOKE, list(overrides))


def toy_learner(n_learners=4, obs_dims=(6, 6, 6, 5), act_dim=5, prey="learn", seed=0, device="cpu") -> Maddpg:
    cfg = load_config(None, ["maddpg.hidden=[8,8]", "maddpg.target_update_every=1"]).maddpg
    generator = torch.Generator(device).manual_seed(seed)
    torch.manual_seed(seed)
    prey_policy = RandomPrey(act_dim, generator) if prey == "random" else None
    return Maddpg(list(obs_dims), act_dim, n_learners, cfg, prey_policy, generator, device)


def random_batch(size: int, obs_dims, act_dim: int = 5, seed: int = 1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n, width = len(obs_dims), max(obs_dims)
    obs = torch.randn(size, n, width, generator=g)
    next_obs = torch.randn(size, n, width, generator=g)
    for i, real in enumerate(obs_dims):  # observations are zero-padded past each agent's real width
        obs[:, i, real:] = 0
        next_obs[:, i, real:] = 0
    return Batch(
        obs=obs,
        act=torch.rand(size, n, act_dim, generator=g),
        rew=torch.randn(size, n, generator=g),
        next_obs=next_obs,
        terminal=torch.zeros(size),
    )


def torchrun(nproc: int, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`torchrun --standalone` on this machine, from the project root, with tests/ and train.py importable."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def train_args(tmp_path, name: str, *overrides: str) -> list[str]:
    """train.py's arguments for a toy run under tmp_path."""
    return ["train.py", "--config", SMOKE, f"run.dir={tmp_path}", f"run.name={name}", "run.progress=false", *overrides]


@pytest.fixture
def run_args(tmp_path):
    """Command-line arguments that put a toy run under tmp_path."""

    def make(name: str, *overrides: str) -> list[str]:
        return ["--config", SMOKE, f"run.dir={tmp_path}", f"run.name={name}", "run.progress=false", *overrides]

    return make
