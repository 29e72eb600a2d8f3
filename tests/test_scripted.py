"""Scripted policies: what each one does, checked in the env, and the evaluation suite built on them."""

import json
from dataclasses import replace

import pytest
import torch

import train
from maddpg import evaluate
from maddpg.core import evaluation
from maddpg.core.config import EnvConfig
from maddpg.core.envs import make_env
from maddpg.core.metrics import read_rows
from maddpg.core.scripted import FleeingPrey, GreedyTeam, Layout, StillPrey, Team, push

ENV = EnvConfig(n_envs=200)


class Still:
    def act(self, obs):
        return StillPrey().act(obs)


def play(team, steps: int = 25, seed: int = 3) -> torch.Tensor:
    """-> every agent's position (steps + 1, E, N, 2) over the first `steps` steps of an episode."""
    env = make_env(ENV)
    obs = env.reset((seed, 0))
    positions = [obs[..., 2:4]]
    for _ in range(steps):
        obs, _, _ = env.step(team.act(obs))
        positions.append(obs[..., 2:4])
    return torch.stack(positions)


def nearest_predator(positions: torch.Tensor) -> torch.Tensor:
    """positions (..., N, 2) -> the prey's distance to its nearest predator (...)."""
    return (positions[..., :3, :] - positions[..., 3:, :]).norm(dim=-1).amin(-1)


def test_push_is_full_force_along_a_direction():
    action = push(torch.tensor([[1.0, -0.5], [0.0, 0.0]]))
    assert action.tolist() == [[0.0, 0.0, 1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]


def test_the_layout_finds_positions_in_the_observation():
    env = make_env(EnvConfig(n_envs=4))
    obs = env.reset((0, 0))
    layout = Layout(EnvConfig())
    pos = layout.position(obs)  # (E, N, 2)
    prey_seen_by_predator_0 = layout.others(obs)[:, 0, 2]  # others of predator 0: predators 1, 2, then the prey
    assert torch.allclose(prey_seen_by_predator_0, pos[:, 3] - pos[:, 0], atol=1e-6)
    assert layout.obstacles(obs).shape == (4, 4, 2, 2)


def test_the_greedy_team_closes_in_on_a_still_prey():
    positions = play(Team(GreedyTeam(ENV), StillPrey(), 3))
    distance = (positions[..., :3, :] - positions[..., 3:, :]).norm(dim=-1)  # (T, E, 3)
    assert distance[-1].mean() < 0.5 * distance[0].mean()
    assert (distance[-1] < distance[0]).float().mean() > 0.85  # the others started close and overshoot


def test_the_fleeing_prey_gets_away_from_still_predators_and_stays_in_the_arena():
    positions = play(Team(Still(), FleeingPrey(ENV), 3), steps=50)
    assert (nearest_predator(positions[-1]) > nearest_predator(positions[0])).float().mean() > 0.9
    inside = positions[10:, :, 3].abs().amax(-1) < 1.0  # after its first second, from wherever it started
    assert inside.float().mean() > 0.98


def test_fleeing_beats_standing_still_against_the_greedy_team():
    still = nearest_predator(play(Team(GreedyTeam(ENV), StillPrey(), 3), steps=50)).mean()
    fleeing = nearest_predator(play(Team(GreedyTeam(ENV), FleeingPrey(ENV), 3), steps=50)).mean()
    assert fleeing > 2 * still


def test_the_suite_plays_the_runs_predators_and_the_greedy_team_against_every_prey(tmp_path, run_args):
    train.main(run_args("run", "train.total_steps=200", "run.gif=false"))
    out = tmp_path / "suite.json"
    evaluate.main([str(tmp_path / "run"), "--suite", "--episodes", "10", "--out", str(out)])
    summary = json.loads(out.read_text())
    assert summary["episodes"] == 10
    assert list(summary["suite"]) == ["still", "random", "flee", "weak", "strong"]
    for result in summary["suite"].values():
        for team in ("predators", "greedy"):
            value = result[team]["predator_return"]
            assert value["ci95"][0] <= value["mean"] <= value["ci95"][1]
    env = evaluate.load_trained(tmp_path / "run", 0).cfg.env  # the greedy team plays the run's episodes
    greedy = evaluation.evaluate_episodes(Team(GreedyTeam(env), StillPrey(), 3), make_env(replace(env, n_envs=10)),
                                        summary["seed"], evaluate.EVAL_INDEX)  # fmt: skip
    assert summary["suite"]["still"]["greedy"]["predator_return"]["mean"] == pytest.approx(
        greedy["predator_return"].mean().item()
    )


@pytest.mark.parametrize("mode", ["still", "flee"])
def test_predators_train_against_a_scripted_prey(mode, tmp_path, run_args, capsys):
    train.main(run_args("run", f"prey.mode={mode}", "train.total_steps=400", "run.gif=false"))
    rows = read_rows(tmp_path / "run")
    assert rows[-1]["env_steps"] == 400 and "critic_loss/adversary_0" in rows[-1]
    assert "critic_loss/agent_0" not in rows[-1]  # the prey does not learn
    assert {"still": "a still prey", "flee": "the fleeing prey"}[mode] in capsys.readouterr().out
