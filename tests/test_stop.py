"""Clean stops: SIGINT and SIGTERM end a run at an episode end with a checkpoint, one line and 130/143."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import train
from conftest import (
    ROOT,
    assert_same_weights,
    children,
    learner_state,
    torchrun,
    torchrun_command,
    train_args,
    unmeasured,
    wait_for_rows,
)
from maddpg.core.checkpoint import checkpoint_dir, list_checkpoints, load_checkpoint, rank_file
from maddpg.core.metrics import read_rows

LONG = ("train.total_steps=3000", "train.checkpoint_buffer=true", "run.gif=false")


def stopped_at(stderr: str, signame: str, run_dir, launch: str) -> int:
    """The env step in the one line a stopped run prints, checked to name the signal and the resume command."""
    lines = [line for line in stderr.splitlines() if line.startswith("stopped by")]
    assert len(lines) == 1, stderr[-3000:]
    words = lines[0].split()
    assert words[2] == signame and lines[0].endswith(f"resume with {launch} train.py --resume {run_dir}")
    return int(words[6].rstrip(","))


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_run_at_an_episode_end_and_the_resumed_run_equals_an_uninterrupted_one(
    tmp_path, run_args, sig, code
):
    job = subprocess.Popen(
        [sys.executable, "train.py", *run_args("stopped", *LONG)], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    wait_for_rows(job, tmp_path / "stopped", 2)
    job.send_signal(sig)
    job.send_signal(sig)  # Ctrl-C reaches every process of a job, and torchrun forwards it too: once is enough
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == code and "Traceback" not in stderr, stderr[-3000:]
    run = tmp_path / "stopped"
    step = stopped_at(stderr, sig.name, run, "python")
    assert 200 <= step < 3000 and step % 25 == 0  # at the end of an episode (smoke: 25 steps)
    assert list_checkpoints(run, 1)[-1] == checkpoint_dir(run, step)
    assert load_checkpoint(checkpoint_dir(run, step), 0)["progress"]["env_steps"] == step
    assert not (run / "episode.gif").exists()  # a stopped run leaves its final outputs to the resumed one

    train.main(["--resume", str(run), "run.progress=false"])
    train.main(run_args("uninterrupted", *LONG))
    assert_same_weights(learner_state(run), learner_state(tmp_path / "uninterrupted"))
    assert unmeasured(read_rows(run)) == unmeasured(read_rows(tmp_path / "uninterrupted"))


def worker(job_pid: int, rank: int) -> int:
    """The pid of torchrun's worker of `rank` (from the RANK in its environment)."""
    for pid in children(job_pid):
        if f"RANK={rank}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            return pid
    raise AssertionError(f"torchrun {job_pid} has no worker of rank {rank}")


RANKS = {"data": 2, "model": 2, "pipeline": 3, "genetic": 2}  # model: a predator each; pipeline: + rank 0


@pytest.mark.parametrize(
    ("target", "mode"),
    [("torchrun", "genetic"), ("torchrun", "pipeline"), *(("rank 1", mode) for mode in RANKS)],
)
def test_under_torchrun_every_rank_checkpoints_and_exits_with_the_signals_code(tmp_path, target, mode):
    """torchrun forwards a signal it receives to every worker (target torchrun), then raises its own
    SignalException, whose traceback is torchrun's. A signal to one worker alone (rank 1, as a batch
    scheduler, `timeout` or the OOM killer may send) stops every rank all the same, at one env step,
    each with its checkpoint and the signal's exit code (shown in torchrun's failure report), and
    none runs the end of a finished run. In pipeline mode rank 0 tells its learners, and hears from them."""
    teams = ["env.num_adversaries=2", "prey.mode=random"]
    args = train_args(tmp_path, "gen", "--mode", mode, *teams, "train.total_steps=100000", "run.gif=false")
    ranks = RANKS[mode]
    job = subprocess.Popen(**torchrun_command(ranks, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = tmp_path / "gen"
    wait_for_rows(job, run, 2)
    os.kill(job.pid if target == "torchrun" else worker(job.pid, 1), signal.SIGTERM)
    stdout, stderr = job.communicate(timeout=90)
    assert 'train.py", line' not in stderr, stderr[-3000:]  # no worker printed a traceback
    step = stopped_at(stderr, "SIGTERM", run, f"torchrun --standalone --nproc_per_node={ranks}")
    # Every rank's file in the checkpoint of the step rank 0 names: each rank stopped there.
    assert all(rank_file(checkpoint_dir(run, step), rank).is_file() for rank in range(ranks))
    assert not (run / "learning_curve.png").exists() and "evaluation at" not in stdout  # finish() did not run
    if target != "torchrun":
        assert stderr.count("exitcode  : 143 (pid") == ranks, stderr[-3000:]
        return
    resumed = torchrun(ranks, "train.py", "--resume", str(run), f"train.total_steps={step + 200}", "run.progress=false")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(list_checkpoints(run, ranks)[-1], 0)["progress"]["env_steps"] == step + 200
