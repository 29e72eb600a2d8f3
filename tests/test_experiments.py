"""The study's experiments: every config runs, and the figures driver runs arms, keeps them and plots."""

import json
import os
import signal
import subprocess
import sys

import pytest

import train
from conftest import ROOT, wait_for_rows
from maddpg import experiments
from maddpg.checkpoint import checkpoint_dir, list_checkpoints
from maddpg.metrics import SYNCS_FILE, read_rows

TOY = ["maddpg.hidden=[16,16]", "maddpg.batch_size=32", "maddpg.buffer_size=2000", "maddpg.learning_starts=64",
       "env.max_cycles=25", "train.eval_episodes=2", "train.checkpoint_every=100", "run.gif=false"]  # fmt: skip


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "experiments").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_experiment_config_runs_a_few_steps(path, tmp_path):
    train.main(["--config", str(path), *TOY, "train.total_steps=150", "train.eval_every=100",
                f"run.dir={tmp_path}", "run.name=run", "run.progress=false"])  # fmt: skip
    assert [row["env_steps"] for row in read_rows(tmp_path / "run")] == [0, 100]


def test_figures_driver_runs_every_arm_per_learner_then_keeps_them(tmp_path, capsys):
    argv = ["--steps-per-learner", "200", "--eval-every", "100", "--seeds", "0", "1", "--learners", "2",
            "--figures", "fig4_weak_prey", "--out", str(tmp_path), "--set", *TOY, "genetic.sync_every=100"]  # fmt: skip
    experiments.main(argv)
    for arm, learners in (("baseline_weak_prey", 1), ("genetic_weak_prey", 2), ("nosync_weak_prey", 2)):
        for seed in (0, 1):
            rows = read_rows(tmp_path / f"{arm}_s{seed}")
            assert [row["env_steps_per_learner"] for row in rows] == [0, 100, 200]
            assert rows[-1]["env_steps"] == 200 * learners
    for x in ("steps_per_learner", "total_steps", "wall_clock"):
        table = json.loads((tmp_path / f"fig4_weak_prey_{x}.json").read_text())
        assert [row["runs"] for row in table] == [2, 2, 2]
        assert [row["group"] for row in table] == ["baseline_weak_prey", "genetic_weak_prey", "nosync_weak_prey"]
    # equal total steps: the genetic learners are compared at 100 steps each, the baseline at 200
    at_total = json.loads((tmp_path / "fig4_weak_prey_total_steps.json").read_text())
    genetic_rows = [read_rows(tmp_path / f"genetic_weak_prey_s{seed}") for seed in (0, 1)]
    assert at_total[1]["scores"] == [sum(r["predator_return"] for r in rows[:2]) / 2 for rows in genetic_rows]
    metrics = tmp_path / "baseline_weak_prey_s0" / "metrics.jsonl"
    stamp = metrics.stat().st_mtime_ns
    capsys.readouterr()
    experiments.main(argv)
    assert "training to" not in capsys.readouterr().err  # every arm was kept, none rerun
    assert not (tmp_path / "nosync_weak_prey_s0" / SYNCS_FILE).exists()  # the control never syncs
    assert (tmp_path / "genetic_weak_prey_s0" / SYNCS_FILE).exists()
    assert metrics.stat().st_mtime_ns == stamp


def test_ctrl_c_lets_the_drivers_run_checkpoint_then_a_rerun_resumes_it(tmp_path):
    argv = [sys.executable, "-m", "maddpg.experiments", "--steps-per-learner", "100000", "--eval-every", "100",
            "--seeds", "0", "--figures", "fig3_baseline_weak_prey", "--out", str(tmp_path), "--set", *TOY]  # fmt: skip
    job = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = tmp_path / "baseline_weak_prey_s0"
    wait_for_rows(job, run, 2)
    os.killpg(job.pid, signal.SIGINT)  # Ctrl-C: the terminal signals its whole foreground process group
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 1 and f"{run} stopped; rerun to resume it" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr
    step = int(stderr.split("stopped by SIGINT at env step ")[1].split(",")[0])
    assert list_checkpoints(run, 1)[-1] == checkpoint_dir(run, step)
