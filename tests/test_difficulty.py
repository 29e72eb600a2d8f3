"""A prey's difficulty: measured by training fresh predators against it, and the shipped prey chosen by it."""

import pytest

import train
from maddpg import difficulty
from maddpg.core.errors import ConfigError
from maddpg.core.pretrained import manifest, sha256
from maddpg.plot import final_score, load_run


def test_difficulty_is_the_mean_final_score_of_fresh_predators_and_its_runs_are_kept(tmp_path, capsys):
    result = difficulty.measure(["weak"], [0, 1, 2], 640, tmp_path, 1, ["train.eval_every=320"])["weak"]
    runs = sorted(tmp_path.glob("weak_*_n640_*"))
    assert [run.name[-2:] for run in runs] == ["s0", "s1", "s2"]
    assert result["scores"] == [final_score(load_run(run), "predator_return", difficulty.LAST) for run in runs]
    assert result["mean"] == pytest.approx(sum(result["scores"]) / 3)
    assert result["mean_ci95"][0] <= result["mean"] <= result["mean_ci95"][1]
    assert (result["seeds"], result["env_steps"]) == ([0, 1, 2], 640)
    assert result["prey_sha256"] == sha256(difficulty.resolve_prey("weak"))
    for run in runs:
        assert load_run(run).config["prey.checkpoint"] == "weak"
        assert [row["env_steps"] for row in load_run(run).rows] == [0, 320, 640]
    capsys.readouterr()
    assert difficulty.measure(["weak"], [0, 1, 2], 640, tmp_path, 1, ["train.eval_every=320"])["weak"] == result
    assert "training to" not in capsys.readouterr().err  # measured once


def test_runs_with_other_overrides_are_other_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(difficulty, "run_or_keep", lambda run_dir, *args, **kwargs: run_dir)
    overrides = ([], ["env.actions=discrete"], ["train.eval_every=320"], ["train.eval_every=320"])
    runs = [difficulty.prey_run("weak", 1, 640, tmp_path, extra, jobs=None) for extra in overrides]
    assert runs[0].name == f"weak_{sha256(difficulty.resolve_prey('weak'))[:12]}_n640_s1"
    assert len({runs[0], runs[1], runs[2]}) == 3 and runs[2] == runs[3]


@pytest.fixture
def prey_run(tmp_path, run_args):
    """A toy run whose prey learned, with checkpoints at 100, 200, 300 and 400 env steps."""
    train.main(run_args("prey", "train.total_steps=400", "train.checkpoint_every=100", "train.keep_checkpoints=10",
                        "run.gif=false"))  # fmt: skip
    return tmp_path / "prey"


def fake_measure(screen: dict[int, float], measured: dict[int, tuple[float, float, float]], calls: list):
    """measure() with difficulties set per candidate step: `screen` for the screen's seed, `measured`
    (mean, CI) for the others."""

    def measure(preys, seeds, steps, out, jobs, extra=None):
        calls.append(list(seeds) if extra is None or extra == [] else (list(seeds), extra))
        results = {}
        for prey in preys:
            step = int(prey.split("prey_")[-1].removesuffix(".pt"))
            if seeds == [difficulty.SCREEN_SEED]:
                results[prey] = {"mean": screen[step]}
            else:
                mean, low, high = measured[step]
                results[prey] = {"mean": mean, "mean_ci95": [low, high], "seeds": list(seeds), "env_steps": steps}
        return results

    return measure


def test_ship_takes_the_first_prey_past_the_weak_steps_and_the_hardest_later_one(prey_run, tmp_path, monkeypatch):
    calls = []
    screen = {100: 5.0, 200: 40.0, 300: 10.0, 400: 30.0}
    monkeypatch.setattr(difficulty, "measure", fake_measure(screen, {200: (40, 35, 45), 300: (12, 8, 16)}, calls))
    shipped = difficulty.ship(prey_run, "make prey", 1000, tmp_path / "d", 1, weak_steps=200, prey_dir=tmp_path)
    assert calls == [[difficulty.SCREEN_SEED], list(difficulty.MEASURE_SEEDS)]  # measured on seeds the screen left
    entries = manifest(tmp_path / "manifest.json")
    assert (entries["weak"]["env_steps"], entries["strong"]["env_steps"]) == (200, 300)  # 100 is too early for weak
    assert entries["strong"]["difficulty"] == shipped["strong"] and shipped["strong"]["mean"] == 12
    assert entries["weak"]["sha256"] == sha256(tmp_path / "weak.pt") and entries["weak"]["command"] == "make prey"


def test_ship_refuses_a_strong_prey_that_is_not_clearly_harder(prey_run, tmp_path, monkeypatch):
    screen = {100: 5.0, 200: 40.0, 300: 10.0, 400: 30.0}
    monkeypatch.setattr(difficulty, "measure", fake_measure(screen, {200: (30, 20, 40), 300: (25, 15, 35)}, []))
    with pytest.raises(ConfigError, match="not clearly harder"):
        difficulty.ship(prey_run, "make prey", 1000, tmp_path / "d", 1, weak_steps=200, prey_dir=tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_a_discrete_prey_run_ships_discrete_prey_measured_by_discrete_predators(tmp_path, run_args, monkeypatch):
    train.main(run_args("prey", "train.total_steps=300", "train.checkpoint_every=100", "train.keep_checkpoints=10",
                        "run.gif=false", "env.actions=discrete"))  # fmt: skip
    calls = []
    screen = {100: 5.0, 200: 40.0, 300: 10.0}
    monkeypatch.setattr(difficulty, "measure", fake_measure(screen, {200: (40, 35, 45), 300: (12, 8, 16)}, calls))
    difficulty.ship(tmp_path / "prey", "make prey", 1000, tmp_path / "d", 1, weak_steps=200, prey_dir=tmp_path)
    discrete = ["env.actions=discrete"]
    assert calls == [([difficulty.SCREEN_SEED], discrete), (list(difficulty.MEASURE_SEEDS), discrete)]
    assert set(manifest(tmp_path / "manifest.json")) == {"weak_discrete", "strong_discrete"}
