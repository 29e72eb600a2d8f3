"""Genetic mode: the sync schedule, winner choice and pbt plan, and syncs on real ranks under torchrun."""

from dataclasses import replace

import pytest
import torch

import train
from conftest import ROOT, fails, torchrun, toy_config, toy_learner, train_args
from maddpg import evaluate, evaluation
from maddpg.checkpoint import list_checkpoints, load_checkpoint
from maddpg.config import GeneticConfig, Mode, Schedule
from maddpg.distributed import Comm
from maddpg.envs import make_env
from maddpg.genetic import (
    Population,
    best_rank,
    fitness_measure,
    hyperparameters,
    pbt_plan,
    set_hyperparameters,
    sync_period,
)
from maddpg.learner import Maddpg
from maddpg.metrics import SYNCS_FILE, read_rows
from maddpg.networks import StackedMLP


def test_constant_schedule_syncs_every_period():
    assert [sync_period(GeneticConfig(sync_every=5000), k) for k in range(4)] == [5000] * 4


def test_adaptive_schedule_grows_geometrically_to_the_cap():
    cfg = GeneticConfig(schedule=Schedule.adaptive, sync_every=5000, growth=1.5, max_period=40_000)
    assert [sync_period(cfg, k) for k in range(8)] == [5000, 7500, 11250, 16875, 25312, 37969, 40000, 40000]


def test_adaptive_schedule_with_growth_below_one_shrinks_to_the_floor():
    cfg = GeneticConfig(schedule=Schedule.adaptive, sync_every=20_000, growth=0.5, min_period=3000)
    assert [sync_period(cfg, k) for k in range(5)] == [20000, 10000, 5000, 3000, 3000]


@pytest.mark.parametrize(
    ("fitness", "winner"),
    [([1.0, 3.0, 2.0], 1), ([3.0, 3.0, 1.0], 0), ([0.0, 2.0, 2.0, 2.0], 1), ([-5.0], 0), ([-1.0, -0.5], 1)],
)
def test_the_best_rank_wins_and_ties_go_to_the_lowest(fitness, winner):
    assert best_rank(fitness) == winner


def test_pbt_plan_copies_the_top_quantile_into_the_bottom_one():
    fitness = [10.0, 50.0, 30.0, 20.0, 40.0]  # ranking: 1, 4, 2, 3, 0
    plans = [pbt_plan(fitness, 0.25, torch.Generator().manual_seed(seed)) for seed in range(20)]
    for plan in plans:  # ceil(5 * 0.25) = 2 on each side
        assert set(plan) == {3, 0} and set(plan.values()) <= {1, 4}
    assert {plan[0] for plan in plans} == {1, 4}, "the source is drawn among the top ranks"


def test_pbt_plan_sizes_and_ties():
    generator = torch.Generator().manual_seed(0)
    assert pbt_plan([1.0], 0.25, generator) == {}  # a population of one copies nothing
    assert pbt_plan([2.0, 2.0], 0.25, generator) == {1: 0}  # tie: the lower rank counts as fitter
    assert len(pbt_plan([float(r) for r in range(8)], 0.5, generator)) == 4  # at most half the population


def test_hyperparameters_round_trip_into_the_optimizers_and_the_noise():
    learner = toy_learner()
    set_hyperparameters(learner, [2e-3, 3e-4, 1.2])
    assert hyperparameters(learner) == [2e-3, 3e-4, 1.2]
    assert learner.actor_opt.param_groups[0]["lr"] == 2e-3 and learner.critic_opt.param_groups[0]["lr"] == 3e-4


def test_fitness_is_the_mean_of_the_last_window_of_evaluations():
    population = Population(GeneticConfig(fitness_window=2), None, toy_learner(), seed=0)
    population.history.extend([10.0, 20.0, 40.0])
    assert population.fitness() == 30.0
    assert population.due(5000) and not population.due(4999)


def test_critic_sync_and_pbt_round_on_three_ranks():
    result = torchrun(3, str(ROOT / "tests" / "dist_genetic.py"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("genetic syncs behave") == 3


def test_a_three_learner_genetic_run_logs_its_sync_rounds(tmp_path):
    overrides = ("genetic.sync_every=90", "train.total_steps=900", "train.eval_every=300", "explore.decay=1e-4")
    result = torchrun(3, *train_args(tmp_path, "gen", "--mode", "genetic", *overrides, "run.gif=false"))
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "gen"
    syncs = read_rows(run, SYNCS_FILE)
    assert [s["env_steps_per_learner"] for s in syncs] == [90, 180, 270]  # 300 steps per learner
    assert [s["round"] for s in syncs] == [0, 1, 2] and [s["next_sync"] for s in syncs] == [180, 270, 360]
    for sync in syncs:
        assert sync["winner"] == best_rank(sync["fitness"]) and len(sync["fitness"]) == 3
        assert sync["bytes_sent"] > 0 and sync["seconds"] > 0
    rows = read_rows(run)
    assert [r["env_steps"] for r in rows] == [0, 300, 600, 900]
    assert [r["env_steps_per_learner"] for r in rows] == [0, 100, 200, 300]
    # Each learner explores by its own clock: 0.1 - 1e-4 per own transition, down to 0.05.
    assert [r["epsilon"] for r in rows] == pytest.approx([0.1, 0.09, 0.08, 0.07])
    assert [r["noise_std"] for r in rows] == pytest.approx([0.1, 0.09, 0.08, 0.07])
    last = rows[-1]
    population = [last[f"predator_return/rank{rank}"] for rank in range(3)]
    assert last["predator_return"] == population[0]
    assert last["population_best_predator_return"] == max(population)


def test_a_resumed_genetic_run_continues_its_sync_rounds_with_its_world_size_only(tmp_path, capsys):
    first = torchrun(2, *train_args(tmp_path, "gen", "--mode", "genetic", "genetic.sync_every=100", "run.gif=false"))
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = torchrun(2, "train.py", "--resume", str(tmp_path / "gen"), "train.total_steps=1200", "run.progress=false")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    syncs = read_rows(tmp_path / "gen", SYNCS_FILE)
    assert [(s["round"], s["env_steps_per_learner"]) for s in syncs] == [(r, 100 * (r + 1)) for r in range(6)]
    assert [r["env_steps"] for r in read_rows(tmp_path / "gen")] == list(range(0, 1201, 200))
    err = fails(["--resume", str(tmp_path / "gen"), "train.total_steps=1800"], capsys)  # one process, not two
    assert "was written by 2 rank(s) in mode genetic, this job is 1 in mode genetic" in err
    assert "torchrun --nproc_per_node=2 train.py" in err
    assert [r["env_steps"] for r in read_rows(tmp_path / "gen")] == list(range(0, 1201, 200))


def trained_learner(tmp_path, *overrides):
    """A genetic rank's learner after a toy single-rank run, with the config and evaluation env it ran with."""
    train.main(
        train_args(tmp_path, "one", "--mode", "genetic", "train.total_steps=100", "run.gif=false", *overrides)[1:]
    )
    cfg = toy_config("mode=genetic", *overrides)
    env = make_env(replace(cfg.env, n_envs=cfg.train.eval_episodes))
    learner = Maddpg(env.obs_dims, env.act_dim, cfg.n_learners, cfg.maddpg, None, torch.Generator())
    learner.load_state_dict(load_checkpoint(list_checkpoints(tmp_path / "one", 1)[-1], 0)["learner"])
    return cfg, env, learner


@pytest.mark.parametrize("opponent", ["weak", "strong", "random", "own"])
def test_fitness_scores_the_predators_against_the_chosen_opponent(tmp_path, opponent):
    cfg, env, learner = trained_learner(tmp_path, f"genetic.fitness_opponent={opponent}")
    measure = fitness_measure(cfg, Comm(), learner, env)
    if opponent == "own":
        assert measure is None  # the learner's own evaluation rows
        return
    population = Population(cfg.genetic, Comm(), learner, cfg.train.seed, measure)
    fitness = population.fitness()
    assert population.fitness() == fitness  # the same start states, and a random prey's same draws, every sync
    if opponent != "random":  # the evaluation command's own path: the run's predators against that prey
        actors = evaluate.trained_actors(list_checkpoints(tmp_path / "one", 1)[-1], cfg, Mode.genetic, 0, env)
        judge = evaluate.build_learner(cfg, actors, opponent, env, cfg.train.seed)
        assert fitness == pytest.approx(evaluation.evaluate(judge, env, cfg.train.seed)["predator_return"])


def test_with_a_prey_that_does_not_learn_the_pool_is_each_learners_own_evaluations(tmp_path):
    cfg = toy_config("mode=genetic", "prey.mode=random")
    assert cfg.genetic.fitness_opponent == "pool"  # the default
    assert fitness_measure(cfg, Comm(), None, None) is None


def test_pool_fitness_is_each_learners_predators_against_every_learners_prey(tmp_path):
    """Two learners, one sync at the last step: its fitness must equal the evaluations of each rank's
    final predators against each rank's final prey, averaged (syncs move critics, not actors)."""
    overrides = ("genetic.sync_every=100", "train.total_steps=200", "run.gif=false")
    result = torchrun(2, *train_args(tmp_path, "gen", "--mode", "genetic", *overrides))
    assert result.returncode == 0, result.stderr[-3000:]
    (sync,) = read_rows(tmp_path / "gen", SYNCS_FILE)
    assert sync["fitness_opponent"] == "pool" and read_rows(tmp_path / "gen")[-1]["fitness_opponent"] == "pool"
    cfg = toy_config("mode=genetic")
    env = make_env(replace(cfg.env, n_envs=cfg.train.eval_episodes))
    checkpoint = list_checkpoints(tmp_path / "gen", 2)[-1]
    actors = [evaluate.trained_actors(checkpoint, cfg, Mode.genetic, rank, env) for rank in (0, 1)]
    k = cfg.env.num_adversaries
    for rank in (0, 1):
        returns = []
        for prey_rank in (0, 1):
            mixed = StackedMLP(cfg.n_learners, env.obs_dim, cfg.maddpg.hidden, env.act_dim, sigmoid_output=True)
            mixed.load_state_dict({key: torch.cat([actors[rank].state_dict()[key][:k],
                                                   actors[prey_rank].state_dict()[key][k:]])
                                   for key in mixed.state_dict()})  # fmt: skip
            judge = evaluate.build_learner(cfg, mixed, "learned", env, cfg.train.seed)
            returns.append(evaluation.evaluate(judge, env, cfg.train.seed)["predator_return"])
        assert sync["fitness"][rank] == pytest.approx(sum(returns) / 2)


def test_the_no_sync_control_never_syncs_and_its_learners_keep_their_own_critics(tmp_path):
    overrides = ("genetic.strategy=none", "genetic.sync_every=50", "train.total_steps=200", "run.gif=false")
    result = torchrun(2, *train_args(tmp_path, "gen", "--mode", "genetic", *overrides))
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "gen"
    assert not (run / SYNCS_FILE).exists() and "predator_return/rank1" in read_rows(run)[-1]
    critics = [load_checkpoint(list_checkpoints(run, 2)[-1], rank)["learner"]["critic"] for rank in (0, 1)]
    assert not torch.equal(critics[0]["layers.0.weight"], critics[1]["layers.0.weight"])
