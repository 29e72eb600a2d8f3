"""Shared helpers: toy-scale configs and small learners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from maddpg import evaluate
from maddpg.core import seeding
from maddpg.core.buffer import Batch
from maddpg.core.checkpoint import list_checkpoints, load_checkpoint
from maddpg.core.config import Config, load_config
from maddpg.core.learner import Maddpg
from maddpg.core.metrics import read_rows
from maddpg.core.prey import RandomPrey

ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "configs" / "smoke.yaml")


# What depends on the machine and the moment, not on the seed.
MEASURED_FIELDS = {"wall_clock", "steps_per_s", "update_time_share", "comm_share", "update_ms", "peak_rss_mb"}


def learner_state(run_dir, rank=0, world_size=1):
    return load_checkpoint(list_checkpoints(run_dir, world_size)[-1], rank)["learner"]


def assert_same_weights(a, b):
    for net in ("actor", "critic", "target_actor", "target_critic"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs"


def unmeasured(rows):
    return [{k: v for k, v in row.items() if k not in MEASURED_FIELDS} for row in rows]


def fails(args, capsys, code=2) -> str:
    """train.main(args) stops with exit code `code` and one line on stderr (no traceback): that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        train.main(args)
    assert info.value.code == code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: "), err
    return err


def toy_config(*overrides: str) -> Config:
    return load_config(SMOKE, list(overrides))


def toy_learner(
    n_learners=4, obs_dims=(6, 6, 6, 5), act_dim=5, prey="learn", seed=0, device="cpu", discrete=False, *overrides: str
) -> Maddpg:
    cfg = load_config(None, ["maddpg.hidden=[8,8]", "maddpg.target_update_every=1", *overrides]).maddpg
    generator = torch.Generator(device).manual_seed(seed)
    updates = seeding.generator(seed, seeding.UPDATE, device=device)  # the updates' Gumbel noise
    torch.manual_seed(seed)
    prey_policy = RandomPrey(act_dim, generator) if prey == "random" else None
    return Maddpg(list(obs_dims), act_dim, n_learners, cfg, prey_policy, generator, updates, device, discrete=discrete)


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


def torchrun_command(nproc: int, *args: str) -> dict:
    """`torchrun --standalone` on this machine, from the project root, with tests/ and train.py importable,
    as keyword arguments of subprocess.run or Popen."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    return {"args": command, "cwd": ROOT, "env": env, "text": True}


def torchrun(nproc: int, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(**torchrun_command(nproc, *args), capture_output=True, timeout=timeout)


def children(pid: int) -> list[int]:
    """The processes `pid` started (torchrun's workers), from /proc: no procps needed."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_for_rows(job: subprocess.Popen, run_dir: Path, rows: int, timeout: float = 60) -> None:
    """Wait until `job` has logged `rows` metrics rows in `run_dir`: training is under way."""
    deadline = time.monotonic() + timeout
    while len(read_rows(run_dir)) < rows:
        assert time.monotonic() < deadline and job.poll() is None, "the job did not start training"
        time.sleep(0.1)


def train_args(tmp_path, name: str, *overrides: str) -> list[str]:
    """train.py's arguments for a toy run under tmp_path."""
    return ["train.py", "--config", SMOKE, f"run.dir={tmp_path}", f"run.name={name}", "run.progress=false", *overrides]


@pytest.fixture
def run_args(tmp_path):
    """Command-line arguments that put a toy run under tmp_path."""

    def make(name: str, *overrides: str) -> list[str]:
        return ["--config", SMOKE, f"run.dir={tmp_path}", f"run.name={name}", "run.progress=false", *overrides]

    return make


def evaluated(argv: list[str]) -> dict:
    """`python -m maddpg.evaluate ARGV` -> the summary it wrote (--out, else evaluation.json in the run)."""
    evaluate.main(argv)
    out = argv[argv.index("--out") + 1] if "--out" in argv else Path(argv[0]) / "evaluation.json"
    return json.loads(Path(out).read_text())
