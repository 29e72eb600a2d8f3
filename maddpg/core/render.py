"""A run's pictures: episodes as GIFs (world states recorded on either backend, replayed through mpe2's
renderer, headless) and the learning curve."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from maddpg.core.config import EnvConfig
from maddpg.core.envs import Mpe2VecEnv, make_env
from maddpg.core.learner import Maddpg
from maddpg.core.seeding import ENV_EVAL

FRAME_MS = 100  # mpe2 renders at 10 frames per second


@torch.no_grad()
def record_episode(learner: Maddpg, cfg: EnvConfig, seed: int) -> list[dict[str, torch.Tensor]]:
    """Play one noise-free episode (the first evaluation start state) on `cfg.backend`.

    -> max_cycles + 1 world states: the start, then the state after every step.
    """
    env = make_env(replace(cfg, n_envs=1), learner.device)
    obs = env.reset((seed, ENV_EVAL))
    states, truncated = [env.get_state()], False
    while not truncated:
        obs, _, truncated = env.step(learner.act(obs))
        states.append(env.get_state())
    return states


def render_states(states: list[dict[str, torch.Tensor]], cfg: EnvConfig) -> list[np.ndarray]:
    """Each world state as an mpe2 `rgb_array` frame (700, 700, 3) uint8."""
    viewer = Mpe2VecEnv(replace(cfg, n_envs=1), render_mode="rgb_array")
    frames = []
    for state in states:
        viewer.set_state(state)
        frames.append(viewer.render())
    return frames


def write_gif(frames: list[np.ndarray], path: Path) -> None:
    """One GIF frame per world state, each labelled with its step (which also keeps Pillow from
    merging a frame into an identical predecessor: the GIF has exactly len(frames) frames)."""
    images = [Image.fromarray(frame) for frame in frames]
    for step, image in enumerate(images):
        ImageDraw.Draw(image).text((10, 10), f"step {step}/{len(images) - 1}", fill=(0, 0, 0))
    images[0].save(path, save_all=True, append_images=images[1:], duration=FRAME_MS, loop=0)


def plot_learning_curve(rows: list[dict], path: Path) -> None:
    """Predator return and prey return against env steps, from the metrics rows."""
    from matplotlib.figure import Figure  # imported here: at the top, every process's start paid 0.4 s

    steps = [row["env_steps"] for row in rows]
    fig = Figure(figsize=(7, 4))  # no pyplot: headless, and no figure left open
    ax = fig.subplots()
    ax.plot(steps, [row["predator_return"] for row in rows], label="predator return (sum over predators)")
    ax.plot(steps, [row["prey_return"] for row in rows], label="prey return")
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean evaluation return")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
