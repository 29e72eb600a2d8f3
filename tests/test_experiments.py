"""The study's experiments: every config runs, and the figures driver runs arms, keeps them and plots."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

import train
from conftest import ROOT, wait_for_rows
from maddpg import experiments, plot
from maddpg.checkpoint import checkpoint_dir, list_checkpoints, load_checkpoint
from maddpg.errors import ConfigError
from maddpg.experiments import EXPERIMENTS
from maddpg.metrics import SYNCS_FILE, read_rows

TOY = ["maddpg.hidden=[16,16]", "maddpg.batch_size=32", "maddpg.buffer_size=2000", "maddpg.learning_starts=64",
       "env.max_cycles=25", "train.eval_episodes=2", "train.checkpoint_every=100", "run.gif=false"]  # fmt: skip


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "experiments").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_experiment_config_runs_a_few_steps(path, tmp_path):
    train.main(["--config", str(path), *TOY, "train.total_steps=150", "train.eval_every=100",
                f"run.dir={tmp_path}", "run.name=run", "run.progress=false"])  # fmt: skip
    assert [row["env_steps"] for row in read_rows(tmp_path / "run")] == [0, 100]


def test_figures_driver_runs_every_arm_at_its_budget_then_keeps_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(experiments, "OPPONENT_EPISODES", 10)
    argv = ["--steps-per-learner", "200", "--eval-every", "100", "--seeds", "0", "1", "--learners", "2",
            "--figures", "fig4_weak_prey", "--out", str(tmp_path), "--jobs", "2",
            "--set", *TOY, "genetic.sync_every=100", "train.checkpoint_buffer=true"]  # fmt: skip
    experiments.main(argv)
    budgets = {"baseline": (1, 200), "genetic": (2, 200), "nosync": (2, 200), "baseline_total": (1, 400),
               "adaptive": (2, 200)}  # arm: (learners, env steps per learner)  # fmt: skip
    for arm, (learners, steps) in budgets.items():
        for seed in (0, 1):
            run = tmp_path / f"{arm}_weak_prey_s{seed}"
            rows = read_rows(run)
            assert [row["env_steps_per_learner"] for row in rows] == list(range(0, steps + 1, 100))
            assert rows[-1]["env_steps"] == steps * learners
            assert [s["cpu_s"] > 0 for s in read_rows(run, experiments.SEGMENTS_FILE)] == [True]
            final = list_checkpoints(run, learners)[-1]
            assert all("data" not in load_checkpoint(final, r)["buffer"] for r in range(learners))  # dropped
            opponents = json.loads((run / experiments.OPPONENTS_FILE).read_text())["opponents"]
            assert [len(opponents[o]["learners"]) for o in ("weak", "strong", "random")] == [learners] * 3
    for x in ("steps_per_learner", "total_steps"):
        table = json.loads((tmp_path / f"fig4_weak_prey_{x}.json").read_text())
        assert table["axis"] == x and table["budget"]["steps_per_learner"] == 200
        assert [row["group"] for row in table["arms"]] == list(budgets) and table["cpu_hours_total"] > 0
        assert sorted(table["arms"][1]["tests"]) == ["baseline", "nosync"]  # genetic against both references
        assert sorted(table["arms"][4]["tests"]) == ["baseline", "genetic", "nosync"]  # adaptive against genetic too
    assert not (tmp_path / "fig4_weak_prey_wall_clock.json").exists()  # runs shared the cores: no wall-clock
    genetic = [read_rows(tmp_path / f"genetic_weak_prey_s{seed}") for seed in (0, 1)]
    table = json.loads((tmp_path / "fig4_weak_prey_steps_per_learner.json").read_text())
    assert table["arms"][1]["scores"] == [sum(r["population_mean_predator_return"] for r in rows[-3:]) / 3
                                          for rows in genetic]  # fmt: skip
    against = json.loads((tmp_path / "fig4_weak_prey_opponents.json").read_text())["opponents"]
    assert [row["runs"] for row in against["strong"]] == [2] * 5
    metrics = tmp_path / "baseline_weak_prey_s0" / "metrics.jsonl"
    stamp = metrics.stat().st_mtime_ns
    capsys.readouterr()
    experiments.main(argv)
    assert "training to" not in capsys.readouterr().err  # every arm was kept, none rerun
    assert not (tmp_path / "nosync_weak_prey_s0" / SYNCS_FILE).exists()  # the control never syncs
    assert (tmp_path / "genetic_weak_prey_s0" / SYNCS_FILE).exists()
    assert metrics.stat().st_mtime_ns == stamp

    # A report whose baseline and genetic runs are gone takes them from the earlier tables: the same tables.
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    names = ["fig4_weak_prey_steps_per_learner.json", "fig4_weak_prey_opponents.json"]
    for name in names:
        shutil.copy(tmp_path / name, earlier)
    for seed in (0, 1):
        shutil.rmtree(tmp_path / f"baseline_weak_prey_s{seed}")
        shutil.rmtree(tmp_path / f"genetic_weak_prey_s{seed}")
    experiments.main([*argv, "--arms", "nosync", "baseline_total", "adaptive", "--earlier", str(earlier)])
    for name in names:
        before, after = (json.loads((folder / name).read_text()) for folder in (earlier, tmp_path))
        assert after.pop("earlier") == {"from": str(earlier), "arms": ["baseline", "genetic"]}
        assert after == before


def files_of(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_finished_run_asked_for_with_other_settings_is_refused_and_kept(tmp_path, capsys, monkeypatch):
    """A finished 2-learner run, then the same grid with 4 learners (its world size and budget differ),
    or with another override: refused with one line before any run, the folder untouched."""
    monkeypatch.setattr(experiments, "OPPONENT_EPISODES", 2)
    argv = ["--steps-per-learner", "100", "--eval-every", "50", "--seeds", "0", "--figures", "fig4_weak_prey",
            "--arms", "genetic", "--out", str(tmp_path), "--set", *TOY, "genetic.sync_every=50"]  # fmt: skip
    experiments.main([*argv, "--learners", "2"])
    run = tmp_path / "genetic_weak_prey_s0"
    finished = files_of(run)
    for other, named in [
        (["--learners", "4"], ["train.total_steps 200 there, 400 here", "2 ranks there, 4 here"]),
        (["maddpg.batch_size=64", "--learners", "2"], ["maddpg.batch_size 32 there, 64 here"]),
    ]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            experiments.main([*argv, *other])
        error = capsys.readouterr().err
        assert stopped.value.code == 2 and error.count("\n") == 1 and error.startswith(f"error: {run} holds a run")
        assert all(difference in error for difference in named) and "write to another folder (--out)" in error
        assert files_of(run) == finished


def test_a_folder_with_checkpoint_files_but_no_complete_checkpoint_is_never_removed(tmp_path):
    run = tmp_path / "baseline_weak_prey_s0"
    leftover = checkpoint_dir(run, 100) / "rank0.pt"  # a save cut short before its record
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"weights")
    with pytest.raises(ConfigError, match=r"holds checkpoint files .* but no complete checkpoint: remove that folder"):
        experiments.run_or_keep(run, EXPERIMENTS / "baseline_weak_prey.yaml", list(TOY), 200)
    assert files_of(run) == {leftover.relative_to(run): b"weights"}


def test_an_earlier_report_of_another_budget_is_refused_before_any_run(tmp_path, capsys):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    for name in ("steps_per_learner", "opponents"):
        table = {"budget": experiments.Grid(experiments.BUDGETS["full"], tmp_path, ()).record(), "arms": []}
        (earlier / f"fig4_weak_prey_{name}.json").write_text(json.dumps(table))
    with pytest.raises(SystemExit) as stopped:
        experiments.main(["--figures", "fig4_weak_prey", "--out", str(tmp_path), "--earlier", str(earlier)])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "steps_per_learner 2000000 there, 50000 here" in error and "pass the flags it was run with" in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["earlier"]  # nothing ran


def test_the_full_budget_lays_the_fast_schedule_over_every_arm():
    overrides = experiments.schedule_overrides(experiments.BUDGETS["full"].schedule)
    assert "maddpg.updates_per_step=0.025" in overrides and "env.n_envs=64" in overrides
    assert not any(o.startswith("train.") for o in overrides)  # the grid sets the budget
    full = experiments.BUDGETS["full"]
    assert (full.steps_per_learner, full.learners, len(full.seeds)) == (2_000_000, 4, 5)


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


@pytest.mark.parametrize("arm", ["baseline", "genetic"])
def test_a_background_driver_stopped_by_kill_stops_its_run_and_starts_no_other(arm, tmp_path):
    """A shell starts a background job with SIGINT ignored, and `kill -INT` reaches the driver alone; a
    genetic run's torchrun then exits 1, not 130."""
    argv = [sys.executable, "-m", "maddpg.experiments", "--steps-per-learner", "100000", "--eval-every", "100",
            "--seeds", "0", "1", "--figures", "fig4_weak_prey", "--arms", arm, "--learners", "2",
            "--out", str(tmp_path), "--set", *TOY]  # fmt: skip
    job = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    run = tmp_path / f"{arm}_weak_prey_s0"
    wait_for_rows(job, run, 2)
    os.kill(job.pid, signal.SIGINT)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 1 and f"{run} stopped; rerun to resume it" in stderr, stderr[-3000:]
    assert list_checkpoints(run, 2 if arm == "genetic" else 1) and not (tmp_path / f"{arm}_weak_prey_s1").exists()


def test_retable_redoes_a_reports_tests_from_its_scores_and_runs_nothing(tmp_path, capsys):
    scores = {"baseline": [1.0, 2.0, 3.0], "genetic": [11.0, 12.0, 13.0], "nosync": [2.0, 3.0, 4.0]}
    stale = [
        {"group": arm, "scores": values, "tests": {"baseline": {"welch_p": 0.5}}} for arm, values in scores.items()
    ]
    report = {"figure": "fig4_weak_prey", "cpu_hours": {"baseline": 1.0}, "arms": stale}
    (tmp_path / "fig4_weak_prey_steps_per_learner.json").write_text(json.dumps(report))
    opponents = report | {"opponents": {"weak": stale, "random": stale}}
    del opponents["arms"]
    (tmp_path / "fig4_weak_prey_opponents.json").write_text(json.dumps(opponents))
    experiments.main(["--retable", str(tmp_path), "--figures", "fig4_weak_prey"])
    expected = plot.score_table(scores, ["baseline", "nosync", "genetic"])
    tables = json.loads((tmp_path / "fig4_weak_prey_steps_per_learner.json").read_text())
    assert tables["arms"] == json.loads(json.dumps(expected)) and tables["cpu_hours"] == {"baseline": 1.0}
    retabled = json.loads((tmp_path / "fig4_weak_prey_opponents.json").read_text())["opponents"]
    assert retabled == {"weak": tables["arms"], "random": tables["arms"]}
    assert "Holm" in capsys.readouterr().out  # the tables, printed
    assert len(list(tmp_path.iterdir())) == 2  # no run folder: nothing ran
