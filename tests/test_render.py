"""GIFs of episodes: states recorded on either backend, drawn by mpe2's renderer without a display."""

import pytest
import torch
from PIL import Image

from conftest import toy_config
from maddpg.core.envs import make_env
from maddpg.core.learner import Maddpg
from maddpg.core.render import record_episode, render_states, write_gif


@pytest.mark.parametrize("backend", ["torch", "mpe2"])
def test_an_episode_becomes_a_gif(tmp_path, backend):
    cfg = toy_config(f"env.backend={backend}", "env.max_cycles=6", "prey.mode=learn")
    env = make_env(cfg.env)
    torch.manual_seed(0)
    learner = Maddpg(env.obs_dims, env.act_dim, cfg.n_learners, cfg.maddpg, None, torch.Generator(), torch.Generator())
    states = record_episode(learner, cfg.env, seed=0)
    assert len(states) == cfg.env.max_cycles + 1
    frames = render_states(states, cfg.env)
    assert len(frames) == 7 and frames[0].shape == (700, 700, 3) and frames[0].dtype.name == "uint8"
    assert (frames[0] != frames[-1]).any()  # the agents moved
    write_gif(frames, tmp_path / "episode.gif")
    with Image.open(tmp_path / "episode.gif") as gif:
        assert gif.size == (700, 700) and gif.n_frames == len(frames)


def test_rendering_shows_the_recorded_state():
    cfg = toy_config("env.n_envs=1")
    twin = make_env(cfg.env)
    twin.reset((3, 0, 0))
    state = twin.get_state()
    moved = {**state, "pos": state["pos"].clone()}
    moved["pos"][0, 0] = torch.tensor([0.5, 0.5])  # a predator elsewhere gives another picture
    first, second = render_states([state, moved], cfg.env)
    again = render_states([state], cfg.env)[0]
    assert (first == again).all() and (first != second).any()
