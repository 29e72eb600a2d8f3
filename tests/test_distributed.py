"""The distributed modes under real `torchrun --standalone` on gloo, at toy scale."""

import os
import signal
import subprocess
import sys

import pytest
import torch

import train
from conftest import ROOT, children, evaluated, torchrun, train_args, wait_for_rows
from maddpg.core.checkpoint import list_checkpoints, load_checkpoint
from maddpg.core.metrics import read_rows

NETWORKS = ("actor", "critic", "target_actor", "target_critic")
MODEL_ATOL = 1e-6  # float32 rounding differs between a 1-agent and a 3-agent batched matmul


def learner(run_dir, rank: int = 0, world_size: int = 1) -> dict:
    return load_checkpoint(list_checkpoints(run_dir, world_size)[-1], rank)["learner"]


@pytest.mark.parametrize("team", [("3", "1"), ("12", "4")], ids=["3v1", "12v4"])
def test_data_mode_gradients_equal_single_process_gradients_on_the_union_batch(team):
    result = torchrun(2, str(ROOT / "tests" / "dist_data_gradients.py"), *team)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("gradients and parameters match") == 2


def test_data_mode_trains_identical_replicas(tmp_path):
    every_episode = ("train.checkpoint_minutes=1e-9", "train.keep_checkpoints=20")  # rank 0's clock decides
    result = torchrun(2, *train_args(tmp_path, "data", "--mode", "data", "run.gif=false", *every_episode))
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "data"
    # A checkpoint at every episode boundary (25 steps of 2 ranks), each written by both ranks.
    assert [c.name for c in sorted((run / "checkpoints").iterdir())] == [c.name for c in list_checkpoints(run, 2)]
    assert [int(c.name[5:]) for c in list_checkpoints(run, 2)] == list(range(50, 601, 50))
    rank0, rank1 = learner(run, 0, 2), learner(run, 1, 2)
    for net in NETWORKS:
        for key, value in rank0[net].items():
            assert torch.equal(value, rank1[net][key]), f"{net}.{key} differs between ranks"
    rows = read_rows(run)
    assert [r["env_steps"] for r in rows] == [0, 200, 400, 600]
    assert rows[-1]["env_steps_per_rank"] == 300
    assert 0 < rows[-1]["comm_share"] < 1


MIX = ("prey.mode=mix", "prey.mix=[random,flee]", "env.n_envs=2")  # each prey's batches in turn, on every rank


@pytest.mark.parametrize("actions, prey", [("continuous", ("prey.mode=random",)), ("discrete", ("prey.mode=random",)),
                                           ("continuous", MIX)])  # fmt: skip
def test_model_mode_reproduces_single_mode(tmp_path, actions, prey):
    # 37 updates; discrete: every rank draws the Gumbel noise of every learner, as one process does
    common = (*prey, "train.total_steps=100", "run.gif=false", f"env.actions={actions}")
    result = torchrun(3, *train_args(tmp_path, "model", "--mode", "model", *common))
    assert result.returncode == 0, result.stderr[-3000:]
    single = subprocess.run([sys.executable, *train_args(tmp_path, "single", *common)], cwd=ROOT, capture_output=True)
    assert single.returncode == 0, single.stderr[-3000:]
    reference = learner(tmp_path / "single")
    for rank in range(3):
        mine = learner(tmp_path / "model", rank, 3)
        for net in NETWORKS:
            for key, value in mine[net].items():
                # Each rank holds its own agent's networks, and every learner's target actor.
                expected = reference[net][key] if net == "target_actor" else reference[net][key][rank : rank + 1]
                torch.testing.assert_close(value, expected, rtol=0, atol=MODEL_ATOL)
    assert [r["predator_return"] for r in read_rows(tmp_path / "model")] == pytest.approx(
        [r["predator_return"] for r in read_rows(tmp_path / "single")]
    )
    # The evaluation command assembles model mode's actors from every rank's file.
    out = ["--episodes", "4", "--out", str(tmp_path / "evaluation.json")]
    model, single = (evaluated([str(tmp_path / name), *out]) for name in ("model", "single"))
    assert model["predator_return"]["mean"] == pytest.approx(single["predator_return"]["mean"])


@pytest.mark.parametrize("mode", ["data", "pipeline", "genetic"])
def test_the_other_modes_train_with_discrete_actions(tmp_path, mode):
    result = torchrun(2, *train_args(tmp_path, mode, "--mode", mode, "env.actions=discrete", "run.gif=false"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_rows(tmp_path / mode)[-1]["env_steps"] == 600
    actions = load_checkpoint(list_checkpoints(tmp_path / mode, 2)[-1], 0)["config"]["env"]["actions"]
    assert actions == "discrete"


def test_a_world_size_that_does_not_fit_the_mode_stops_every_rank(tmp_path):
    result = torchrun(4, *train_args(tmp_path, "bad", "--mode", "model", "prey.mode=random"), timeout=60)
    assert result.returncode != 0
    assert result.stderr.count("error: mode model puts a block of one or more learning agents on each rank") == 1
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_config_error_is_said_by_rank_0_and_by_another_rank_only_after_a_wait(tmp_path, monkeypatch, capsys, rank):
    waits = []
    monkeypatch.setattr(train.time, "sleep", waits.append)
    monkeypatch.setenv("RANK", rank)
    with pytest.raises(SystemExit) as stop:
        train.main([f"run.dir={tmp_path}", "run.name=x", "maddpg.gamma=2"])
    assert stop.value.code == 2 and capsys.readouterr().err.count("error: ") == 1
    assert waits == ([] if rank == "0" else [train.SILENT_RANK_WAIT_S])


LARGE = ("env.num_adversaries=12", "env.num_good=3", "env.num_obstacles=1", "maddpg.hidden=[16,16]",
         "train.total_steps=100", "train.eval_every=50", "run.gif=false")  # fmt: skip


def test_model_mode_with_blocks_of_agents_reproduces_single_mode_at_a_large_team(tmp_path):
    """12 predators and 3 learning prey on 2 ranks: blocks of 8 and 7 agents."""
    result = torchrun(2, *train_args(tmp_path, "model", "--mode", "model", *LARGE))
    assert result.returncode == 0, result.stderr[-3000:]
    single = subprocess.run([sys.executable, *train_args(tmp_path, "single", *LARGE)], cwd=ROOT, capture_output=True)
    assert single.returncode == 0, single.stderr[-3000:]
    reference = learner(tmp_path / "single")
    for rank, block in enumerate((slice(0, 8), slice(8, 15))):
        mine = learner(tmp_path / "model", rank, 2)
        for net in NETWORKS:
            for key, value in mine[net].items():
                expected = reference[net][key] if net == "target_actor" else reference[net][key][block]
                torch.testing.assert_close(value, expected, rtol=0, atol=MODEL_ATOL)
    prey, expected = (torch.load(tmp_path / run / "prey.pt", weights_only=True)["actor"] for run in ("model", "single"))
    torch.testing.assert_close(prey, expected, rtol=0, atol=MODEL_ATOL)  # gathered from both blocks
    out = ["--episodes", "4", "--out", str(tmp_path / "evaluation.json")]
    model, single = (evaluated([str(tmp_path / name), *out]) for name in ("model", "single"))
    assert model["predator_return"]["mean"] == pytest.approx(single["predator_return"]["mean"])


def test_pipeline_with_blocks_of_agents_reproduces_model_mode_at_a_large_team(tmp_path):
    """The same team on 2 learner ranks, without staleness, against model mode on 2 ranks: to model
    mode's tolerance, since rank 0 acts with a stack of 15 actors, where model mode's ranks act with 8
    and 7, and float32 rounding differs between those batched matmuls."""
    lockstep = ("dist.staleness=0", "dist.round_updates=1")
    pipeline = torchrun(3, *train_args(tmp_path, "pipeline", "--mode", "pipeline", *lockstep, *LARGE))
    assert pipeline.returncode == 0, pipeline.stderr[-3000:]
    model = torchrun(2, *train_args(tmp_path, "model", "--mode", "model", *LARGE))
    assert model.returncode == 0, model.stderr[-3000:]
    for rank in range(2):
        theirs, mine = learner(tmp_path / "model", rank, 2), learner(tmp_path / "pipeline", rank + 1, 3)
        for net in NETWORKS:
            for key, value in mine[net].items():
                torch.testing.assert_close(value, theirs[net][key], rtol=0, atol=MODEL_ATOL)
    assert [r["predator_return"] for r in read_rows(tmp_path / "pipeline")] == pytest.approx(
        [r["predator_return"] for r in read_rows(tmp_path / "model")]
    )


@pytest.mark.parametrize("mode", ["single", "pipeline"])
def test_other_world_sizes_that_do_not_fit_stop_every_rank(tmp_path, mode):
    one_learner = ("env.num_adversaries=1", "prey.mode=random")  # pipeline: at most 2 ranks
    result = torchrun(3, *train_args(tmp_path, "bad", "--mode", mode, *one_learner), timeout=60)
    assert result.returncode != 0
    assert result.stderr.count(f"error: mode {mode}") == 1


def test_a_crashed_rank_ends_the_whole_job(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    job = subprocess.Popen(
        [*command, *train_args(tmp_path, "crash", "--mode", "data", "train.total_steps=10000000")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_rows(job, tmp_path / "crash", 2)
        workers = children(job.pid)
        assert len(workers) == 2
        os.kill(workers[1], signal.SIGKILL)
        assert job.wait(timeout=60) != 0
    finally:
        job.kill()


@pytest.mark.parametrize("prey, actions", [("learn", "continuous"), ("random", "continuous"), ("random", "discrete")])
def test_pipeline_without_staleness_reproduces_model_mode(tmp_path, prey, actions):
    """Bitwise, whatever the prey and the action type: a random prey draws its actions and its target
    actions from two streams of its own, and the learners their exploration and their updates' Gumbel
    noise, so rank 0 acting and the learner ranks updating draw what model mode's ranks do."""
    learners = 3 if prey == "learn" else 2  # 2 predators, and the prey when it learns
    common = ("env.num_adversaries=2", f"prey.mode={prey}", f"env.actions={actions}", "train.total_steps=200",
              "run.gif=false")  # fmt: skip
    model = torchrun(learners, *train_args(tmp_path, "model", "--mode", "model", *common))
    assert model.returncode == 0, model.stderr[-3000:]
    lockstep = ("dist.staleness=0", "dist.round_updates=1")  # rank 0 waits for every update's weights
    pipeline = torchrun(learners + 1, *train_args(tmp_path, "pipe", "--mode", "pipeline", *lockstep, *common))
    assert pipeline.returncode == 0, pipeline.stderr[-3000:]
    for rank in range(learners):
        mine, reference = (
            learner(tmp_path / "pipe", rank + 1, learners + 1),
            learner(tmp_path / "model", rank, learners),
        )
        assert mine["updates"] == reference["updates"] == 200 - 64 + 1
        for net in NETWORKS:
            for key, value in mine[net].items():
                assert torch.equal(value, reference[net][key]), f"agent {rank}: {net}.{key} differs"
    assert [r["predator_return"] for r in read_rows(tmp_path / "pipe")] == [
        r["predator_return"] for r in read_rows(tmp_path / "model")
    ]


def test_model_mode_with_several_prey_writes_every_prey_to_prey_pt(tmp_path):
    teams = ("env.num_adversaries=1", "env.num_good=2", "train.total_steps=100")  # a rank per agent
    result = torchrun(3, *train_args(tmp_path, "model", "--mode", "model", *teams))
    assert result.returncode == 0, result.stderr[-3000:]
    prey = torch.load(tmp_path / "model" / "prey.pt", weights_only=True)
    assert (prey["num_adversaries"], prey["num_good"]) == (1, 2)
    for agent in (1, 2):
        trained = learner(tmp_path / "model", agent, 3)["actor"]
        for key, value in prey["actor"].items():
            assert torch.equal(value[agent - 1], trained[key][0]), f"prey {agent - 1}: {key} differs"


def test_pipeline_with_staleness_trains_and_ends_with_current_actors(tmp_path):
    overrides = ("env.num_adversaries=2", "prey.mode=random", "dist.staleness=2", "train.total_steps=300")
    result = torchrun(3, *train_args(tmp_path, "pipe", "--mode", "pipeline", *overrides))
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "pipe"
    rollout = learner(run, 0, 3)["actor"]
    for agent in range(2):
        trained = learner(run, agent + 1, 3)
        assert trained["updates"] == 300 - 64 + 1
        for key, value in trained["actor"].items():
            assert torch.equal(rollout[key][agent], value[0]), "rank 0 acts with other weights than the learner's"
    assert (run / "episode.gif").is_file() and [r["env_steps"] for r in read_rows(run)] == [0, 200]
