"""The real entry point at toy scale: run directories, determinism, resume, a fixed prey."""

import shutil
import subprocess
import sys

import pytest
import torch

import train
from conftest import ROOT, assert_same_weights, learner_state, toy_config, unmeasured
from maddpg.core.checkpoint import list_checkpoints, load_checkpoint
from maddpg.core.metrics import read_rows
from maddpg.core.provenance import PROVENANCE_FILE


@pytest.mark.parametrize("backend", ["torch", "mpe2"])
def test_entry_point_writes_a_complete_run_directory(tmp_path, backend):
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/smoke.yaml")]
    result = subprocess.run(
        [*cmd, f"run.dir={tmp_path}", f"env.backend={backend}"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("final evaluation at 600 env steps (2 noise-free episodes")
    run = tmp_path / "smoke"
    for name in ("config.yaml", "metrics.jsonl", "learning_curve.png", "episode.gif", "prey.pt"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    assert [p.name for p in list_checkpoints(run, 1)] == ["ckpt_000000000300", "ckpt_000000000600"]
    rows = read_rows(run)
    assert [r["env_steps"] for r in rows] == [0, 200, 400, 600]
    for key in ("predator_return", "capture_rate", "prey_return", "wall_clock", "critic_loss", "actor_loss"):
        assert key in rows[-1], key
    assert rows[-1]["steps_per_s"] > 0
    assert 50 < rows[-1]["peak_rss_mb"] < 4096  # torch alone takes more than 50 MiB
    state = load_checkpoint(list_checkpoints(run, 1)[-1], 0)
    assert state["progress"]["env_steps"] == 600 and state["learner"]["updates"] == 600 - 64 + 1


def test_the_summary_calls_an_evaluation_before_the_end_the_last_one_not_the_final_one():
    row = {"env_steps": 600, "predator_return": 10.0, "capture_rate": 0.5, "prey_return": -10.0}
    assert train.summary_line(row, toy_config()).startswith("final evaluation at 600 env steps (2 noise-free")
    line = train.summary_line(row, toy_config("train.total_steps=700"))
    assert line.startswith("last evaluation at 600 of 700 env steps (2 noise-free")


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, run_args):
    train.main(run_args("a"))
    train.main(run_args("b"))
    train.main(run_args("c", "train.seed=1"))
    a, b, c = (learner_state(tmp_path / n) for n in "abc")
    assert_same_weights(a, b)
    assert not torch.equal(a["actor"]["layers.0.weight"], c["actor"]["layers.0.weight"])
    assert unmeasured(read_rows(tmp_path / "a")) == unmeasured(read_rows(tmp_path / "b"))


@pytest.mark.parametrize("backend", ["torch", "mpe2"])
def test_resume_continues_exactly(tmp_path, run_args, backend):
    common = ("train.checkpoint_buffer=true", "prey.mode=random", f"env.backend={backend}")
    train.main(run_args("straight", *common))
    train.main(run_args("halves", *common, "train.total_steps=300"))
    rows_before = read_rows(tmp_path / "halves")
    train.main(["--resume", str(tmp_path / "halves"), "train.total_steps=600", "run.progress=false"])
    assert_same_weights(learner_state(tmp_path / "straight"), learner_state(tmp_path / "halves"))
    straight, halves = read_rows(tmp_path / "straight"), read_rows(tmp_path / "halves")
    assert [r["env_steps"] for r in halves] == [0, 200, 400, 600]
    assert unmeasured(halves) == unmeasured(straight)
    assert halves[: len(rows_before)] == rows_before
    segments = read_rows(tmp_path / "halves", PROVENANCE_FILE)  # what each segment ran on
    assert [row["env_steps"] for row in segments] == [0, 300]
    assert all(row["torch"] == torch.__version__ and row["threads"] == torch.get_num_threads() for row in segments)
    assert all(row["commit"] is None or len(row["commit"]) == 40 for row in segments)


def test_resume_drops_rows_logged_after_the_checkpoint(tmp_path, run_args):
    train.main(run_args("r", "train.total_steps=400"))
    run = tmp_path / "r"
    for old in list_checkpoints(run, 1)[1:]:
        shutil.rmtree(old)  # as if the run died after its step-300 checkpoint but logged the row at 400
    train.main(["--resume", str(run), "run.progress=false", "train.total_steps=600"])
    assert [r["env_steps"] for r in read_rows(run)] == [0, 200, 400, 600]


def test_fixed_prey_from_a_trained_run(tmp_path, run_args):
    train.main(run_args("teacher", "train.total_steps=100"))
    prey_file = tmp_path / "teacher" / "prey.pt"
    train.main(run_args("student", "prey.mode=fixed", f"prey.checkpoint={prey_file}", "train.total_steps=200"))
    state = learner_state(tmp_path / "student")
    assert state["actor"]["layers.0.weight"].shape[0] == 3  # only the predators learn


def test_existing_run_directory_is_not_overwritten(run_args):
    train.main(run_args("once", "train.total_steps=50"))
    with pytest.raises(SystemExit) as info:
        train.main(run_args("once", "train.total_steps=50"))
    assert info.value.code == 2


def test_the_fast_preset_loads_and_runs(tmp_path):
    """configs/fast.yaml at its own schedule, shortened: 64 copies per step, one update of every
    learning agent per 40 transitions once the buffer holds a batch, a target update after each."""
    train.main(["--config", str(ROOT / "configs/fast.yaml"), "train.total_steps=1280", "train.eval_every=640",
                "train.eval_episodes=2", f"run.dir={tmp_path}", "run.name=fast", "run.progress=false",
                "run.gif=false"])  # fmt: skip
    run = tmp_path / "fast"
    assert [r["env_steps"] for r in read_rows(run)] == [0, 640, 1280]
    state = load_checkpoint(list_checkpoints(run, 1)[-1], 0)
    # Updates start at the step that brings the buffer to 256 transitions: 17 steps of 64 copies, 1.6 each.
    assert state["learner"]["updates"] == 27
    assert state["config"]["maddpg"]["critic_lr"] == 1e-3 and state["config"]["maddpg"]["tau"] == 0.04


def test_the_predators_recipe_loads_and_runs(tmp_path):
    """configs/predators.yaml, shortened: the fast schedule against a random prey; its predators alone learn."""
    train.main(["--config", str(ROOT / "configs/predators.yaml"), "train.total_steps=640", "train.eval_every=640",
                "train.eval_episodes=2", f"run.dir={tmp_path}", "run.name=recipe", "run.progress=false",
                "run.gif=false"])  # fmt: skip
    rows = read_rows(tmp_path / "recipe")
    assert [r["env_steps"] for r in rows] == [0, 640]
    assert "critic_loss/adversary_0" in rows[-1] and "critic_loss/agent_0" not in rows[-1]


def test_every_checkpoint_is_written_once_the_final_one_too(tmp_path, run_args, monkeypatch):
    written, save = [], train.save_checkpoint
    monkeypatch.setattr(train, "save_checkpoint", lambda state, run_dir, step, *rest: [
        written.append(step), save(state, run_dir, step, *rest)])  # fmt: skip
    train.main(run_args("r", "run.gif=false"))  # total_steps 600, a checkpoint every 300
    assert written == [300, 600]
    train.main(["--resume", str(tmp_path / "r"), "run.progress=false", "run.gif=false"])  # nothing left to do
    assert written == [300, 600]
