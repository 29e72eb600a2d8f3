"""The experiments: every config runs, the figures driver runs arms, keeps them and plots, and a population
figure reports its declared outcomes (from runs faked on disk)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from statistics import fmean

import pytest

import train
from conftest import ROOT, wait_for_rows
from maddpg import experiments, plot
from maddpg.core.checkpoint import (
    Record,
    checkpoint_dir,
    list_checkpoints,
    load_checkpoint,
    rank_file,
    record_file,
    sha256,
)
from maddpg.core.config import load_config, to_yaml
from maddpg.core.errors import ConfigError
from maddpg.core.evaluation import SUITE
from maddpg.core.metrics import METRICS_FILE, SYNCS_FILE, read_rows
from maddpg.core.provenance import PROVENANCE_FILE
from maddpg.distributed.genetic import BEST_LEARNER_FILE
from maddpg.experiments import EXPERIMENTS, OPPONENTS

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


def test_the_population_budget_lays_each_arms_overrides_after_the_budgets(tmp_path):
    """The arm's overrides follow the budget's and precede the grid's and the user's; a folder holding the
    run of another arm on the same config (pbt's folder, genetic's run) is refused for that override."""
    budget = experiments.BUDGETS["population"]
    assert (budget.steps_per_learner, budget.learners, budget.seeds) == (2_000_000, 4, tuple(range(8)))
    assert (budget.eval_every, budget.last, budget.out) == (20_000, 5, "runs/population")
    grid = experiments.Grid(budget, tmp_path, ("maddpg.batch_size=64",))
    planned = grid.plan("pbt_shared", "weak_prey", 7)
    assert (planned.config, planned.total, planned.population) == (EXPERIMENTS / "genetic_weak_prey.yaml", 8_000_000, 4)
    start = planned.overrides.index("genetic.strategy=pbt")
    assert planned.overrides[start - 3 : start] == list(budget.overrides) == list(experiments.CHECKPOINTED)
    assert planned.overrides[start:] == ["genetic.strategy=pbt", "genetic.share_experience=true",
                                         "train.eval_every=80000", "train.seed=7", "maddpg.batch_size=64"]  # fmt: skip
    run_dir, config, overrides, total, population = grid.plan("pbt", "weak_prey", 0)
    run_dir.mkdir()
    asked = load_config(str(config), experiments.train_overrides(run_dir, overrides, total), world_size=population)
    (run_dir / "config.yaml").write_text(to_yaml(asked))  # as train.py writes it
    experiments.require_same_run(*grid.plan("pbt", "weak_prey", 0))
    genetic = grid.plan("genetic", "weak_prey", 0)._replace(run_dir=run_dir)
    with pytest.raises(ConfigError, match=rf"{run_dir} holds a run with other settings \(genetic.strategy pbt there"):
        experiments.require_same_run(*genetic)


def test_the_figures_default_to_the_budgets(tmp_path, capsys):
    study = ["fig3_baseline_weak_prey", "fig4_weak_prey", "fig5_strong_prey", "fig6_scratch"]
    assert experiments.default_figures("short") == experiments.default_figures("full") == study
    assert experiments.default_figures("population") == ["population_weak_prey", "population_scratch"]
    for budget, first in (("population", "population_weak_prey"), ("full", "fig3_baseline_weak_prey")):
        with pytest.raises(SystemExit):  # the first figure's report is looked for, and is not there
            experiments.main(["--budget", budget, "--retable", str(tmp_path)])
        assert f"no {first}_*.json there" in capsys.readouterr().err


def fake_checkpoint(run_dir, learners, env_steps):
    """A complete checkpoint of placeholder rank files, as list_checkpoints verifies it."""
    checkpoint = checkpoint_dir(run_dir, env_steps)
    checkpoint.mkdir(parents=True)
    for rank in range(learners):
        rank_file(checkpoint, rank).write_bytes(f"learner {rank}".encode())
    files = {rank_file(checkpoint, r).name: sha256(rank_file(checkpoint, r)) for r in range(learners)}
    Record(learners, env_steps, files).write(record_file(checkpoint))
    return checkpoint


def fake_return(run_dir, opponent, rank):
    """A made-up mean predator_return of a run's learner against an opponent, distinct for each."""
    return sum(map(ord, run_dir.name)) % 17 + 3.0 * SUITE.index(opponent) + 10.0 * rank


def fake_evaluations(monkeypatch):
    """evaluate_run replaced by fake_return -> the (run, opponent, rank) of every evaluation it is asked."""
    calls = []

    def evaluate_run(run_dir, opponent, seed, rank, episodes):
        assert (seed, episodes) == (experiments.OPPONENT_SEED, experiments.OPPONENT_EPISODES)
        calls.append((run_dir.name, opponent, rank))
        return {"predator_return": {"mean": fake_return(run_dir, opponent, rank)}}, None, None

    monkeypatch.setattr(experiments, "evaluate_run", evaluate_run)
    return calls


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def fake_population_run(run_dir, seed, best, learners=3):
    """A finished population run as the report reads it, trained by nobody: its config, evaluations, CPU
    segments (1.5 hours), provenance (two commits, one dirty), final checkpoint and best learner."""
    checkpoint = fake_checkpoint(run_dir, learners, 400 * learners)
    (run_dir / "config.yaml").write_text(f"mode: genetic\ntrain:\n  seed: {seed}\n")
    write_rows(run_dir / METRICS_FILE, [{"env_steps_per_learner": steps, "env_steps": steps * learners,
                                          "population_mean_predator_return": seed + steps / 100}
                                         for steps in (0, 200, 400)])  # fmt: skip
    write_rows(run_dir / experiments.SEGMENTS_FILE, [{"cpu_s": 3600.0}, {"cpu_s": 1800.0}])
    write_rows(run_dir / PROVENANCE_FILE, [{"commit": "a1", "dirty": False, "threads": 1},
                                           {"commit": "b2", "dirty": True, "threads": 1},
                                           {"commit": "a1", "dirty": False, "threads": 1}])  # fmt: skip
    (run_dir / BEST_LEARNER_FILE).write_text(json.dumps({"rank": best, "checkpoint": checkpoint.name}))
    return run_dir


def test_the_final_evaluation_measures_what_its_cache_lacks(tmp_path, monkeypatch):
    """Asked for other opponents, the cache of a run's final evaluation measures those it lacks and keeps
    the others; a newer checkpoint is measured anew."""
    run = tmp_path / "genetic_weak_prey_s0"
    fake_checkpoint(run, 2, 100)
    calls = fake_evaluations(monkeypatch)
    study = experiments.final_evaluation(run, OPPONENTS)
    assert list(study) == list(OPPONENTS) and len(calls) == 6
    assert study["weak"] == {"learners": [fake_return(run, "weak", r) for r in (0, 1)],
                             "mean": fmean(fake_return(run, "weak", r) for r in (0, 1))}  # fmt: skip
    calls.clear()
    suite = experiments.final_evaluation(run, SUITE)
    assert list(suite) == list(SUITE) and {name: suite[name] for name in OPPONENTS} == study
    assert sorted(calls) == [(run.name, opponent, rank) for opponent in ("flee", "still") for rank in (0, 1)]
    calls.clear()
    assert experiments.final_evaluation(run, OPPONENTS) == study and experiments.final_evaluation(run, SUITE) == suite
    assert calls == []  # both from the cache
    fake_checkpoint(run, 2, 200)
    experiments.final_evaluation(run, OPPONENTS)
    assert len(calls) == 6


def test_a_population_figure_reports_its_best_learner_and_the_populations_mean(tmp_path, monkeypatch, capsys):
    """Primary: the best learner's (named in its best_learner.json) mean over SUITE; secondary: the mean
    over learners of each one's; the best learner's table against each opponent; and per run its record.
    A run without its best learner is then refused by name."""
    calls = fake_evaluations(monkeypatch)
    runs = {arm: [fake_population_run(tmp_path / f"{arm}_weak_prey_s{seed}", seed, best=1 + seed) for seed in (0, 1)]
            for arm in ("nosync", "pbt")}  # fmt: skip
    grid = experiments.Grid(experiments.BUDGETS["population"], tmp_path, ())
    experiments.report(grid, "population_weak_prey", runs, wall_clock=False, earlier=experiments.Earlier.none())
    assert len(calls) == 4 * 3 * len(SUITE)  # every learner of every run against each opponent, once

    def mean_over_suite(run, rank):
        return fmean(fake_return(run, opponent, rank) for opponent in SUITE)

    primary = {arm: [mean_over_suite(run, 1 + seed) for seed, run in enumerate(group)] for arm, group in runs.items()}
    secondary = {arm: [fmean(mean_over_suite(run, rank) for rank in range(3)) for run in group]
                 for arm, group in runs.items()}  # fmt: skip
    outcomes = json.loads((tmp_path / "population_weak_prey_outcomes.json").read_text())
    for name, expected in (("primary", primary), ("secondary", secondary)):
        assert outcomes["outcomes"][name] == json.loads(json.dumps(plot.score_table(expected, ["nosync"])))
        assert list(outcomes["outcomes"][name][1]["tests"]) == ["nosync"]  # the strategy against the control alone
    record = outcomes["runs"]["pbt"][1]
    assert (record["run"], record["seed"], record["best_rank"], record["cpu_hours"]) == ("pbt_weak_prey_s1", 1, 2, 1.5)
    assert record["learners"][0] == {opponent: fake_return(runs["pbt"][1], opponent, 0) for opponent in SUITE}
    assert record["provenance"] == [{"commit": "a1", "dirty": False}, {"commit": "b2", "dirty": True}]
    assert outcomes["prey"] == list(SUITE) and outcomes["cpu_hours"] == {"nosync": 3.0, "pbt": 3.0}
    best = json.loads((tmp_path / "population_weak_prey_opponents.json").read_text())["opponents"]
    assert list(best) == list(SUITE)
    assert best["flee"][1]["scores"] == [fake_return(run, "flee", 1 + seed) for seed, run in enumerate(runs["pbt"])]
    printed = capsys.readouterr().out
    assert "the primary outcome" in printed and "the best learner against the still prey" in printed

    (runs["pbt"][0] / BEST_LEARNER_FILE).unlink()
    with pytest.raises(ConfigError, match=rf"{runs['pbt'][0]} has no best_learner.json.* or delete it"):
        experiments.report(grid, "population_weak_prey", runs, wall_clock=False, earlier=experiments.Earlier.none())


def test_a_best_learner_chosen_at_another_checkpoint_is_refused(tmp_path):
    run = fake_population_run(tmp_path / "shared_scratch_s0", seed=0, best=1)
    assert experiments.best_rank(run) == 1
    fake_checkpoint(run, 3, 5000)  # trained on after its choice
    with pytest.raises(ConfigError, match=r"has a best_learner.json of ckpt_000000001200, none of its final .*"
                                          r"--nproc_per_node=3 train.py --resume"):  # fmt: skip
        experiments.best_rank(run)
