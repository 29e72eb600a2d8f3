"""The twin as PettingZoo environments: PettingZoo's API tests, and episodes against mpe2's simple_tag_v3
through the public API only (same options, seeds and actions)."""

from __future__ import annotations

import numpy as np
import pygame
import pytest
from mpe2 import simple_tag_v3
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test
from pettingzoo.utils.env_logger import EnvLogger

from maddpg.core import twin

# Observations are float32 roundings of float64 states. The twin's float64 states match mpe2's bit for
# bit, except where contact forces are summed in another order (~1e-16 relative), so that an
# observation can round one float32 step apart (below 1e-6 for values up to 8): 2 values in 48,184
# did, in contact-heavy episodes; all others were equal. test_world_states_match_mpe2 checks tighter.
OBS_RTOL = OBS_ATOL = 1e-6
# Rewards are float64: the boundary penalty's exp is torch's, not numpy's, which can differ by an ulp.
REWARD_REL = 1e-12
STATE_ATOL = 1e-12

OPTIONS = [
    pytest.param({}, id="defaults"),
    pytest.param(dict(continuous_actions=True), id="continuous"),
    pytest.param(
        dict(num_good=2, num_adversaries=4, num_obstacles=3, max_cycles=30, continuous_actions=True), id="4v2"
    ),
    pytest.param(dict(num_good=2, num_adversaries=2, num_obstacles=0), id="2v2+0obst"),
    pytest.param(dict(num_adversaries=0), id="prey-only"),
    pytest.param(dict(num_good=0), id="predators-only"),
    pytest.param(dict(num_agent_neighbors=2, num_landmark_neighbors=1), id="neighbours"),
    pytest.param(
        dict(num_agent_neighbors=5, num_landmark_neighbors=3, continuous_actions=True), id="padded-neighbours"
    ),
    pytest.param(dict(num_landmark_neighbors=1), id="landmark-neighbours"),
    pytest.param(dict(num_obstacles=0, num_agent_neighbors=1, num_landmark_neighbors=2), id="no-landmark-neighbours"),
    pytest.param(dict(terminate_on_success=True, curriculum=True, benchmark_data=True), id="success-curriculum"),
]
# With seed 2, four predators catch the slow prey at step 20: the episode ends by termination.
SUCCESS = dict(num_adversaries=4, max_cycles=100, terminate_on_success=True, curriculum=True, benchmark_data=True)


@pytest.fixture(autouse=True)
def quiet_clipping():
    """The actions here deliberately leave [0, 1]; pettingzoo logs a warning for every clipped one."""
    EnvLogger.suppress_output()
    yield
    EnvLogger.unsuppress_output()


def random_actions(rng: np.random.Generator, env, continuous: bool) -> dict:
    """Every live agent's action: float32 in [-0.1, 1.1] (clipped), as a policy's, or an int in 0..4."""
    if continuous:
        return {agent: rng.uniform(-0.1, 1.1, 5).astype(np.float32) for agent in env.agents}
    return {agent: int(rng.integers(5)) for agent in env.agents}


def assert_same_observations(obs: dict, ref: dict) -> None:
    assert obs.keys() == ref.keys()
    for agent, value in ref.items():
        assert obs[agent].dtype == np.float32 and obs[agent].shape == value.shape
        np.testing.assert_allclose(obs[agent], value, rtol=OBS_RTOL, atol=OBS_ATOL, err_msg=agent)


def compare_episode(env, ref, seed: int | None, rng: np.random.Generator, continuous: bool) -> tuple[int, bool]:
    """Reset both with `seed` and play one episode with the same actions, comparing every output.

    -> (steps, whether the episode ended by termination)."""
    obs, infos = env.reset(seed=seed)
    ref_obs, ref_infos = ref.reset(seed=seed)
    assert_same_observations(obs, ref_obs)
    assert infos == ref_infos and env.agents == ref.agents
    np.testing.assert_allclose(env.state(), ref.state(), rtol=OBS_RTOL, atol=OBS_ATOL)
    steps, terminated = 0, False
    while ref.agents:
        actions = random_actions(rng, ref, continuous)
        obs, rewards, terminations, truncations, infos = env.step(actions)
        ref_obs, ref_rewards, ref_terminations, ref_truncations, ref_infos = ref.step(actions)
        assert_same_observations(obs, ref_obs)
        assert rewards == pytest.approx(dict(ref_rewards), rel=REWARD_REL)
        assert terminations == ref_terminations and truncations == ref_truncations and infos == ref_infos
        assert env.agents == ref.agents
        steps, terminated = steps + 1, any(terminations.values())
    return steps, terminated


def make_pair(options: dict):
    return twin.parallel_env(**options), simple_tag_v3.parallel_env(**options)


@pytest.mark.parametrize("options", OPTIONS)
def test_episodes_match_mpe2(options):
    env, ref = make_pair(options)
    assert env.possible_agents == ref.possible_agents and env.state_space == ref.state_space
    for agent in ref.possible_agents:
        assert env.observation_space(agent) == ref.observation_space(agent)
        assert env.action_space(agent) == ref.action_space(agent)
    continuous = options.get("continuous_actions", False)
    rng = np.random.default_rng(0)
    steps, _ = compare_episode(env, ref, 7, rng, continuous)
    assert steps == options.get("max_cycles", 25)
    compare_episode(env, ref, None, rng, continuous)  # an unseeded reset continues the seeded stream


def test_world_states_match_mpe2():
    """The float64 world states themselves, every step: what the float32 observations round away."""
    options = dict(num_good=2, num_adversaries=4, num_obstacles=3, max_cycles=40, continuous_actions=True)
    env, ref = make_pair(options)
    env.reset(seed=8)
    ref.reset(seed=8)
    world, ref_world = env.unwrapped.world, ref.unwrapped.world
    rng = np.random.default_rng(8)
    while ref.agents:
        state = world.get_state()
        for key, attr in (("pos", "p_pos"), ("vel", "p_vel")):
            ref_state = np.stack([getattr(entity.state, attr) for entity in ref_world.entities])
            np.testing.assert_allclose(state[key][0].numpy(), ref_state, rtol=0, atol=STATE_ATOL)
        actions = random_actions(rng, ref, continuous=True)
        env.step(actions)
        ref.step(actions)


def test_success_terminates_as_in_mpe2():
    env, ref = make_pair(SUCCESS)
    assert compare_episode(env, ref, 2, np.random.default_rng(2), continuous=False) == (20, True)


def test_curriculum_stage_changes_are_refused_as_mpe2_loses_them():
    env, ref = make_pair(dict(curriculum=True, continuous_actions=True))
    ref.unwrapped.set_curriculum_stage(2)
    ref.unwrapped.advance_curriculum()
    assert ref.unwrapped.curriculum_stage == 0  # when mpe2 plays other stages, the twin should too
    env.unwrapped.set_curriculum_stage(0)
    for change, name in (
        (lambda e: e.set_curriculum_stage(1), "set_curriculum_stage"),
        (lambda e: e.advance_curriculum(), "advance_curriculum"),
    ):
        with pytest.raises(ValueError, match=f"^{name}"):
            change(env.unwrapped)
    compare_episode(env, ref, 3, np.random.default_rng(1), continuous=True)  # stage 0: the prey at half speed


@pytest.mark.parametrize("rescale", [True, False], ids=["dynamic_rescaling", "fixed_scale"])
def test_frames_match_mpe2(rescale):
    env, ref = make_pair(dict(render_mode="rgb_array", dynamic_rescaling=rescale, max_cycles=4))
    env.reset(seed=5)
    ref.reset(seed=5)
    rng = np.random.default_rng(5)
    frames = []
    while ref.agents:
        frame = env.render()
        assert frame.shape == (700, 700, 3) and frame.dtype == np.uint8
        np.testing.assert_array_equal(frame, ref.render())
        frames.append(frame)
        actions = random_actions(rng, ref, continuous=False)
        env.step(actions)
        ref.step(actions)
    assert (frames[0] != frames[-1]).any()
    env.close()
    ref.close()


def test_human_mode_shows_every_step_in_a_window(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # a window without a display
    env = twin.parallel_env(render_mode="human", max_cycles=2)
    frames = twin.parallel_env(render_mode="rgb_array", max_cycles=2)
    env.reset(seed=4)
    frames.reset(seed=4)
    while env.agents:
        actions = {agent: 4 for agent in env.agents}
        env.step(actions)
        frames.step(actions)
        window = pygame.surfarray.array3d(pygame.display.get_surface()).transpose(1, 0, 2)
        np.testing.assert_array_equal(window, frames.render())
    env.close()
    frames.close()


def test_aec_form_matches_mpe2():
    options = dict(num_good=2, num_adversaries=2, max_cycles=10, continuous_actions=True)
    env, ref = twin.env(**options), simple_tag_v3.env(**options)
    env.reset(seed=6)
    ref.reset(seed=6)
    rng = np.random.default_rng(6)
    for agent, ref_agent in zip(env.agent_iter(), ref.agent_iter(), strict=True):
        obs, reward, terminated, truncated, info = env.last()
        ref_obs, ref_reward, *ref_rest = ref.last()
        assert agent == ref_agent and [terminated, truncated, info] == ref_rest
        np.testing.assert_allclose(obs, ref_obs, rtol=OBS_RTOL, atol=OBS_ATOL)
        assert reward == pytest.approx(ref_reward, rel=REWARD_REL)
        action = None if terminated or truncated else rng.uniform(-0.1, 1.1, 5).astype(np.float32)
        env.step(action)
        ref.step(action)
    assert env.agents == ref.agents == []


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="defaults"),
        pytest.param(
            dict(num_good=2, num_adversaries=4, num_obstacles=3, continuous_actions=True), id="4v2-continuous"
        ),
        pytest.param(dict(num_agent_neighbors=2, num_landmark_neighbors=1, benchmark_data=True), id="neighbours"),
        pytest.param(SUCCESS, id="success"),
    ],
)
def test_pettingzoo_api(options):
    parallel_api_test(twin.parallel_env(**options), num_cycles=100)
    api_test(twin.env(**options), num_cycles=100)


def test_pettingzoo_seeding():
    parallel_seed_test(lambda: twin.parallel_env(continuous_actions=True))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("num_good", -1),
        ("num_adversaries", -2),
        ("num_obstacles", -1),
        ("render_mode", "ansi"),
        ("num_agent_neighbors", 0),
        ("num_landmark_neighbors", 1.5),
    ],
)
def test_refused_options_name_themselves(option, value):
    with pytest.raises(ValueError, match=f"^{option}=") as info:
        twin.parallel_env(**{option: value})
    assert "\n" not in str(info.value)


def test_a_game_without_agents_is_refused():
    with pytest.raises(ValueError, match="num_good=0 and num_adversaries=0") as info:
        twin.parallel_env(num_good=0, num_adversaries=0)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("continuous", "action"),
    [(False, 5), (False, -1), (True, np.zeros(4, np.float32)), (True, np.full(5, np.nan, np.float32))],
    ids=["discrete-5", "discrete-negative", "short", "nan"],
)
def test_actions_outside_the_space_are_refused(continuous, action):
    env = twin.parallel_env(continuous_actions=continuous)
    env.reset(seed=0)
    actions = {agent: env.action_space(agent).sample() for agent in env.agents}
    with pytest.raises(ValueError, match="adversary_1: action"):
        env.step(actions | {"adversary_1": action})
