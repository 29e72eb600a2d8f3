"""Benchmark (`make bench`): env transitions/s of both backends and end-to-end training steps/s, as JSON.

python -m maddpg.bench --out runs/bench.json [--threads N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from maddpg.config import Backend, EnvConfig
from maddpg.envs import make_env
from maddpg.metrics import read_rows

TWIN_SIZES = (1, 64, 1024, 8192)
MPE2_SIZES = (1, 64)
TRAIN_STEPS = 4000  # per end-to-end run; the first evaluation interval (buffer filling) is left out


def env_steps_per_s(backend: Backend, n_envs: int, seconds: float) -> float:
    """Transitions/s stepping `n_envs` copies with uniform random actions, resets included."""
    env = make_env(replace(EnvConfig(), backend=backend, n_envs=n_envs))
    g = torch.Generator().manual_seed(0)
    actions = torch.rand(8, n_envs, env.n_agents, env.act_dim, generator=g)  # cycled: drawing is not timed
    env.reset((0, 0, 0))
    steps, episode, start = 0, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or steps < 2 * env.max_cycles:
        _, _, truncated = env.step(actions[steps % len(actions)])
        steps += 1
        if truncated:
            episode += 1
            env.reset((0, 0, episode))
    return steps * n_envs / elapsed


def train_steps_per_s(backend: Backend, threads: int) -> float:
    """`python train.py` at the default config on `backend`: env steps/s once the buffer is warm."""
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            f"env.backend={backend}",
            f"train.total_steps={TRAIN_STEPS}",
            f"run.threads={threads}",
            f"run.dir={tmp}",
            "run.name=bench",
            "run.progress=false",
            "run.gif=false",
        ]
        subprocess.run([sys.executable, "train.py", *overrides], check=True, cwd=Path(__file__).parent.parent)
        rows = read_rows(Path(tmp) / "bench")[2:]  # rows 0 and 1 cover the untrained policy and buffer filling
    return sum(r["steps_per_s"] for r in rows) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench.json")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per env measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    env = {
        "torch": {str(n): env_steps_per_s(Backend.torch, n, args.seconds) for n in TWIN_SIZES},
        "mpe2": {str(n): env_steps_per_s(Backend.mpe2, n, args.seconds) for n in MPE2_SIZES},
    }
    best_mpe2 = max(env["mpe2"].values())
    result = {
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "threads": args.threads,
        },
        "env_steps_per_s": env,
        "twin_vs_mpe2": {
            "n_envs_1": env["torch"]["1"] / env["mpe2"]["1"],
            "largest_twin_vs_best_mpe2": env["torch"][str(TWIN_SIZES[-1])] / best_mpe2,
        },
        "train_steps_per_s": {b.value: train_steps_per_s(b, args.threads) for b in (Backend.torch, Backend.mpe2)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
