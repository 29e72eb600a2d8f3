"""Genetic mode: the sync schedule, winner choice and pbt plan, and syncs on real ranks under torchrun."""

import json
from dataclasses import replace

import pytest
import torch

import train
from conftest import ROOT, fails, torchrun, toy_config, toy_learner, train_args
from maddpg import evaluate
from maddpg.core import evaluation, seeding
from maddpg.core.checkpoint import list_checkpoints, load_checkpoint
from maddpg.core.comm import Comm
from maddpg.core.config import GeneticConfig, Mode, Schedule, load_config
from maddpg.core.envs import make_env
from maddpg.core.errors import ConfigError
from maddpg.core.learner import Maddpg
from maddpg.core.metrics import SYNCS_FILE, read_rows
from maddpg.core.networks import StackedMLP
from maddpg.core.pretrained import PREDATORS_DIR, shipped_prey
from maddpg.distributed.genetic import (
    Fitness,
    Population,
    best_rank,
    hyperparameters,
    pbt_plan,
    perturbed,
    selection_opponents,
    set_hyperparameters,
    sync_period,
)
from maddpg.distributed.modes import placement


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


def test_hyperparameters_round_trip_into_the_optimizers_the_targets_and_the_noise():
    learner = toy_learner()
    set_hyperparameters(learner, [2e-3, 3e-4, 0.05, 1.2])
    assert hyperparameters(learner) == [2e-3, 3e-4, 0.05, 1.2]
    assert learner.actor_opt.param_groups[0]["lr"] == 2e-3 and learner.critic_opt.param_groups[0]["lr"] == 3e-4
    target = [p.clone() for p in learner.target_critic_params]
    learner.soft_update()  # the learner's own tau, not the config's
    expected = [t + 0.05 * (p - t) for t, p in zip(target, learner.critic_params, strict=True)]
    assert all(torch.allclose(t, e) for t, e in zip(learner.target_critic_params, expected, strict=True))
    restored = toy_learner(seed=1)
    restored.load_state_dict(learner.state_dict())
    assert restored.tau == 0.05


def test_perturbed_hyperparameters_keep_tau_a_soft_update_rate():
    factors = torch.tensor([1.2, 0.8, 1.2, 0.8], dtype=torch.float64)
    assert perturbed([1e-3, 1e-4, 0.9, 1.0], factors) == pytest.approx([1.2e-3, 0.8e-4, 1.0, 0.8])
    assert perturbed([1e-3, 1e-4, 0.5, 1.0], factors)[2] == pytest.approx(0.6)


def test_shared_experience_buffers_hold_every_learners_share_of_the_buffer():
    """With share_experience a learner's buffer holds P * maddpg.buffer_size: as far back per learner as alone."""
    sizes = []
    for share in ("false", "true"):
        cfg = toy_config("mode=genetic", f"genetic.share_experience={share}")
        sizes.append(train.build(cfg, torch.device("cpu"), placement(cfg, Comm(rank=0, world_size=3)))[3].capacity)
    assert sizes == [2000, 6000]


def test_a_sync_is_due_once_a_learner_has_taken_its_period_of_env_steps():
    population = Population(GeneticConfig(), None, toy_learner(), 0, lambda round_: 0.0)
    assert population.due(5000) and not population.due(4999)


def genetic_learner(rank: int = 0, world_size: int = 1, *overrides: str):
    """Genetic learner `rank` as train.py builds it (64x2 networks, as the shipped predators), its
    fitness measure and its population part."""
    cfg = toy_config("mode=genetic", "maddpg.hidden=[64,64]", *overrides)
    comm = Comm(rank=rank, world_size=world_size)
    _, eval_env, learner, _ = train.build(cfg, torch.device("cpu"), placement(cfg, comm))
    measure = Fitness(cfg, comm, learner, eval_env)
    return learner, measure, Population(cfg.genetic, comm, learner, cfg.train.seed, measure)


def shipped_predators(learner: Maddpg) -> None:
    """The learner's predators become the shipped ones (trained against a random prey)."""
    trained = evaluate.load_trained(PREDATORS_DIR / "random_prey_8m", 0).actors.rows()
    learner.actor.load_rows(torch.cat([trained, learner.actor.rows()[len(trained) :]]))


@pytest.mark.parametrize("opponent, prey", [("own", "learn"), ("own", "random"), ("pool", "flee")])
def test_fitness_is_measured_afresh_at_every_sync(opponent, prey):
    """Two syncs with no evaluation between them: the second scores the predators the learner holds then."""
    learner, _, population = genetic_learner(0, 1, f"genetic.fitness_opponent={opponent}", f"prey.mode={prey}")
    untrained = population.sync(env_steps=5000, steps_per_learner=5000)
    shipped_predators(learner)
    trained = population.sync(env_steps=10000, steps_per_learner=10000)
    assert trained["fitness"][0] > untrained["fitness"][0] + 50, (untrained["fitness"], trained["fitness"])
    assert (untrained["fitness_env_steps"], trained["fitness_env_steps"]) == ([5000], [10000])


@pytest.mark.parametrize("opponent", ["own", "random"])
def test_every_learner_of_a_round_meets_the_same_draws_and_training_streams_stay_apart(opponent):
    """Learners with the same predators but training streams of their own (genetic ranks 0 and 1, the
    same initial weights) get the same fitness against a random prey, and measuring draws nothing from
    their training streams."""
    overrides = ("genetic.diverse_init=false", "prey.mode=random", f"genetic.fitness_opponent={opponent}")
    learners = [genetic_learner(rank, 2, *overrides) for rank in (0, 1)]
    streams = [str(learner.prey.state_dict()) for learner, _, _ in learners]
    fitness = [[measure(round_) for round_ in (0, 1)] for _, measure, _ in learners]
    assert fitness[0] == fitness[1] and fitness[0][0] != fitness[0][1], fitness  # keyed by the round
    assert [str(learner.prey.state_dict()) for learner, _, _ in learners] == streams


def test_with_a_prey_that_does_not_learn_pool_is_own():
    """Every learner faces the same prey: pool measures each learner against it, as own does."""
    fitness = []
    for opponent in ("pool", "own"):
        learner, measure, _ = genetic_learner(0, 1, "prey.mode=random", f"genetic.fitness_opponent={opponent}")
        shipped_predators(learner)
        fitness.append(measure(3))
    assert fitness[0] == fitness[1] > 0


def test_a_saved_config_with_the_retired_fitness_window_still_loads_but_a_new_one_may_not_set_it():
    assert load_config(base={"genetic": {"fitness_window": 3, "sync_every": 700}}).genetic.sync_every == 700
    with pytest.raises(ConfigError, match=r"genetic\.fitness_window"):
        load_config(None, ["genetic.fitness_window=3"])


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
        assert sync["fitness_env_steps"] == [sync["env_steps"]] * 3  # measured at the sync, by every learner
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
    learner = Maddpg(env.obs_dims, env.act_dim, cfg.n_learners, cfg.maddpg, None, torch.Generator(), torch.Generator(),
                     discrete=cfg.env.discrete)  # fmt: skip
    learner.load_state_dict(load_checkpoint(list_checkpoints(tmp_path / "one", 1)[-1], 0)["learner"])
    return cfg, env, learner


@pytest.mark.parametrize(
    "opponent, actions",
    [("weak", "continuous"), ("strong", "continuous"), ("random", "continuous"), ("own", "continuous"),
     ("weak", "discrete"), ("strong", "discrete")],
)  # fmt: skip
def test_fitness_scores_the_predators_against_the_chosen_opponent(tmp_path, opponent, actions):
    """As the evaluation command plays the run's predators against that prey (discrete runs: the discrete
    shipped prey), on the round's streams."""
    cfg, env, learner = trained_learner(tmp_path, f"genetic.fitness_opponent={opponent}", f"env.actions={actions}")
    measure = Fitness(cfg, Comm(), learner, env)
    fitness = measure(3)
    assert measure(3) == fitness  # the same start states, and a random prey's same draws, for a round
    prey = {"own": "learned", "random": "random"}.get(opponent) or shipped_prey(opponent, actions)
    actors = evaluate.trained_actors(list_checkpoints(tmp_path / "one", 1)[-1], cfg, Mode.genetic, 0, env)
    judge = evaluate.build_learner(cfg, actors, prey, env)
    expected = evaluation.evaluate(judge, env, cfg.train.seed, 3, purpose=seeding.FITNESS)["predator_return"]
    assert fitness == pytest.approx(expected)


def test_pool_fitness_is_each_learners_predators_against_every_learners_prey(tmp_path):
    """Two learners, one sync at the last step: its fitness must equal the evaluations of each rank's
    final predators against each rank's final prey, averaged (syncs move critics, not actors)."""
    overrides = ("genetic.sync_every=100", "train.total_steps=200", "run.gif=false")
    result = torchrun(2, *train_args(tmp_path, "gen", "--mode", "genetic", *overrides))
    assert result.returncode == 0, result.stderr[-3000:]
    (sync,) = read_rows(tmp_path / "gen", SYNCS_FILE)
    assert sync["fitness_opponent"] == "pool" and read_rows(tmp_path / "gen")[-1]["fitness_opponent"] == "pool"
    assert sync["fitness_env_steps"] == [200, 200]
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
            judge = evaluate.build_learner(cfg, mixed, "learned", env)
            returns.append(evaluation.evaluate(judge, env, cfg.train.seed, 0)["predator_return"])
        assert sync["fitness"][rank] == pytest.approx(sum(returns) / 2)


def test_the_no_sync_control_never_syncs_and_its_learners_keep_their_own_critics(tmp_path):
    overrides = ("genetic.strategy=none", "genetic.sync_every=50", "train.total_steps=200", "run.gif=false")
    result = torchrun(2, *train_args(tmp_path, "gen", "--mode", "genetic", *overrides))
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "gen"
    assert not (run / SYNCS_FILE).exists() and "predator_return/rank1" in read_rows(run)[-1]
    critics = [load_checkpoint(list_checkpoints(run, 2)[-1], rank)["learner"]["critic"] for rank in (0, 1)]
    assert not torch.equal(critics[0]["layers.0.weight"], critics[1]["layers.0.weight"])


def test_a_population_that_shares_experience_names_its_best_learner_on_episodes_of_its_own(tmp_path):
    """pbt with shared experience on 2 ranks: every buffer holds both learners' transitions (the other's
    as it collected them), and best_learner.json names the learner whose predators score best against
    the suite, on start states of its own that the evaluation command replays; it plays that learner
    by default."""
    overrides = ("genetic.strategy=pbt", "genetic.share_experience=true", "genetic.sync_every=100",
                 "genetic.select_episodes=8", "train.total_steps=400", "train.checkpoint_buffer=true",
                 "run.gif=false")  # fmt: skip
    result = torchrun(2, *train_args(tmp_path, "gen", "--mode", "genetic", *overrides))
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "gen"
    checkpoint = list_checkpoints(run, 2)[-1]
    buffers = [load_checkpoint(checkpoint, rank)["buffer"] for rank in (0, 1)]
    assert [buffer["size"] for buffer in buffers] == [400, 400]  # 200 env steps per learner, both learners'
    episode = toy_config().env.max_cycles
    for key, mine in buffers[0]["data"].items():  # episode by episode: rank 0's own, then rank 1's
        theirs = buffers[1]["data"][key]
        assert torch.equal(mine[episode : 2 * episode], theirs[:episode]), key
        assert torch.equal(theirs[episode : 2 * episode], mine[:episode]), key
    assert all("tau" in hypers for hypers in read_rows(run, SYNCS_FILE)[0]["hyperparameters"])

    best = json.loads((run / "best_learner.json").read_text())
    assert best["checkpoint"] == checkpoint.name and best["env_steps"] == 400 and best["episodes"] == 8
    assert best["opponents"] == list(evaluation.SUITE) and best["seed"] != toy_config().train.seed
    means = [learner["mean"] for learner in best["learners"]]
    assert best["rank"] == best_rank(means)
    for rank, learner in enumerate(best["learners"]):
        assert learner["mean"] == pytest.approx(sum(learner[prey] for prey in evaluation.SUITE) / 5)
        for prey in ("still", "flee", "weak", "strong"):  # deterministic prey: the same episodes, the same scores
            summary, _, _ = evaluate.evaluate_run(run, prey, best["seed"], rank, episodes=8)
            assert learner[prey] == pytest.approx(summary["predator_return"]["mean"]), (rank, prey)
    assert evaluate.evaluate_run(run, "still", episodes=2)[0]["rank"] == best["rank"]
    assert evaluate.evaluate_run(run, "still", rank=1 - best["rank"], episodes=2)[0]["rank"] == 1 - best["rank"]


def test_the_best_learner_meets_the_shipped_prey_only_with_the_teams_they_were_trained_for():
    assert selection_opponents(toy_config().env) == evaluation.SUITE
    assert selection_opponents(toy_config("env.num_adversaries=2").env) == ("still", "random", "flee")
