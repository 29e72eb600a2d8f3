"""The comparison command on synthetic runs with known means: groups, bands and verdicts."""

import json

import numpy as np
import pytest
import scipy.stats

from conftest import toy_config
from maddpg import plot, stats
from maddpg.core.config import to_yaml
from maddpg.stats import bootstrap_ci

STEPS = list(range(0, 1001, 100))


def write_run(root, name: str, level: float, seed: int, *overrides: str):
    """A run directory whose predator_return is `level` plus seed-dependent noise of std 1."""
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text(to_yaml(toy_config(f"train.seed={seed}", *overrides)))
    noise = np.random.default_rng(seed).normal(0, 1, len(STEPS))
    rows = [{"env_steps": s, "env_steps_per_learner": s, "wall_clock": s / 50 * (1 + seed / 10),
             "predator_return": level + n} for s, n in zip(STEPS, noise, strict=True)]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run


@pytest.fixture
def runs(tmp_path):
    low = [write_run(tmp_path, f"low_s{seed}", 10.0, seed) for seed in range(5)]
    high = [write_run(tmp_path, f"high_s{seed}", 30.0, seed + 5, "maddpg.batch_size=64") for seed in range(5)]
    same = [write_run(tmp_path, f"same_s{seed}", 10.0, seed + 10, "maddpg.actor_lr=0.002") for seed in range(5)]
    return low, high, same


def test_runs_group_by_config_with_seeds_together(runs):
    low, high, same = runs
    groups = plot.group([plot.load_run(r) for r in [*low, *high, *same]])
    assert [len(members) for members in groups.values()] == [5, 5, 5]
    assert list(groups) == [
        "maddpg.actor_lr=0.001, maddpg.batch_size=32",
        "maddpg.actor_lr=0.001, maddpg.batch_size=64",
        "maddpg.actor_lr=0.002, maddpg.batch_size=32",
    ]


def test_arms_can_be_labelled_by_chosen_keys_but_never_merged(runs, tmp_path):
    low, high, same = runs
    groups = plot.group([plot.load_run(r) for r in [*low, *high]], ["maddpg.batch_size"])
    assert list(groups) == ["maddpg.batch_size=32", "maddpg.batch_size=64"]
    with pytest.raises(plot.ConfigError, match="--label"):
        plot.group([plot.load_run(r) for r in [*low, *same]], ["maddpg.batch_size"])


def test_bands_cover_the_true_mean_and_shrink_with_more_seeds(runs):
    low, _, _ = runs
    x, values = plot.curve([plot.load_run(r) for r in low], "steps_per_learner", "predator_return")
    assert list(x) == STEPS and values.shape == (5, len(STEPS))
    lower, upper = bootstrap_ci(values.T)
    assert np.mean((lower <= 10.0) & (upper >= 10.0)) >= 0.8  # a 95% band misses the truth now and then
    assert np.all(upper - lower < 4.0)


def test_wall_clock_curves_are_cut_to_the_time_every_run_reached(runs):
    low, _, _ = runs
    x, values = plot.curve([plot.load_run(r) for r in low], "wall_clock", "predator_return")
    assert x[-1] <= 1000 / 50 and values.shape[0] == 5


def plotted(argv: list[str], out) -> list[dict]:
    """`python -m maddpg.plot ARGV --out OUT` -> the table it wrote beside the figure."""
    plot.main([*argv, "--out", str(out)])
    return json.loads(out.with_suffix(".json").read_text())


def test_verdicts_tell_a_real_difference_from_noise(runs, tmp_path):
    low, high, same = runs
    out = tmp_path / "fig.png"
    rows = plotted([*map(str, [*low, *high, *same])], out)
    assert out.is_file()
    first, higher, equal = rows
    assert first["mean"] == pytest.approx(10.0, abs=1.0) and first["tests"] == {}
    against_first = higher["tests"][first["group"]]
    assert against_first["differs"] and against_first["difference"] == pytest.approx(20.0, abs=1.5)
    assert against_first["probability_of_improvement"] == 1.0  # every high run beats every low one
    assert not equal["tests"][first["group"]]["differs"]
    assert 0.2 < equal["tests"][first["group"]]["probability_of_improvement"] < 0.8
    for row in rows:
        assert row["mean_ci95"][0] <= row["mean"] <= row["mean_ci95"][1]
        assert row["iqm_ci95"][0] <= row["iqm"] <= row["iqm_ci95"][1]


def test_every_group_is_tested_against_each_against_group(runs, tmp_path):
    low, high, same = runs
    names = ["low", "high", "same"]
    rows = plotted([*map(str, [*low, *high, *same]), "--names", *names, "--against", "low", "same"], tmp_path / "f.png")
    assert [sorted(row["tests"]) for row in rows] == [["same"], ["low", "same"], ["low"]]
    assert rows[1]["tests"]["same"]["differs"] and not rows[0]["tests"]["same"]["differs"]


def test_a_population_mean_metric_scores_a_one_learner_run_by_its_own(runs, tmp_path):
    low, _, _ = runs
    rows = plotted([*map(str, low), "--metric", "population_mean_predator_return"], tmp_path / "f.png")
    own = plotted([*map(str, low)], tmp_path / "g.png")
    assert rows[0]["scores"] == own[0]["scores"]


def test_until_compares_the_arms_at_that_x(runs, tmp_path):
    low, high, _ = runs
    rows = plotted([*map(str, [*low, *high]), "--until", "500", "--last", "1"], tmp_path / "f.png")
    expected = [[plot.load_run(r).rows[5]["predator_return"] for r in arm] for arm in (low, high)]
    assert [row["scores"] for row in rows] == expected  # the evaluation at x = 500, not the last one


def test_a_missing_metric_or_run_exits_with_one_line(runs, tmp_path, capsys):
    low, _, _ = runs
    bad = ([str(low[0]), "--metric", "no_such_key"], [str(tmp_path / "nothing")], [str(low[0]), "--until", "-1"],
           [str(low[0]), "--against", "no_such_group"])  # fmt: skip
    for argv in bad:
        with pytest.raises(SystemExit) as info:
            plot.main([*argv, "--out", str(tmp_path / "fig.png")])
        assert info.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_summaries_and_improvements_are_the_same_call_after_call():
    a, b = [136.8, 144.9, 92.4, 116.1, 158.4], [120.7, 196.2, 143.5, 134.4, 101.4]
    np.random.seed(1)
    untouched = np.random.random()
    np.random.seed(1)
    first = stats.summarise(a), stats.improvement(a, b)
    assert (stats.summarise(a), stats.improvement(a, b)) == first
    assert np.random.random() == untouched  # the caller's global stream is left where it was


def test_holm_adjusts_p_values_read_together():
    # sorted 0.01, 0.03, 0.04, nan (as 1): 4 x 0.01, then max(0.04, 3 x 0.03), max(0.09, 2 x 0.04), 1
    assert stats.holm([0.01, 0.04, 0.03, float("nan")]) == pytest.approx([0.04, 0.09, 0.09, 1.0])
    assert stats.holm([]) == []


def test_compare_gives_the_welch_interval_an_exact_permutation_p_and_hedges_g():
    low, high = [1.0, 2.0, 3.0, 4.0, 5.0], [11.0, 12.0, 13.0, 14.0, 15.0]
    test = stats.compare(high, low)
    assert test["difference"] == 10.0 and test["permutation_p"] == pytest.approx(2 / 252)  # 2 of C(10, 5) splits
    half = scipy.stats.t.ppf(0.975, 8) * np.sqrt(2.5 / 5 + 2.5 / 5)  # equal variances: Welch's df is 8
    assert test["difference_ci95_t"] == pytest.approx([10.0 - half, 10.0 + half])
    # pooled sd 1, difference -3, Hedges' correction 1 - 3 / (4 * 6 - 9)
    assert stats.hedges_g(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])) == pytest.approx(-3 * 0.8)


def test_the_t_interval_covers_the_mean_where_a_percentile_bootstrap_falls_short_at_5_seeds():
    samples = np.random.default_rng(0).normal(10.0, 3.0, size=(2000, 5))
    t = np.array([stats.t_interval(sample) for sample in samples])
    boot_low, boot_high = bootstrap_ci(samples, resamples=2000)
    t_cover = np.mean((t[:, 0] <= 10.0) & (t[:, 1] >= 10.0))
    boot_cover = np.mean((boot_low <= 10.0) & (boot_high >= 10.0))
    assert 0.93 < t_cover < 0.97 and 0.78 < boot_cover < 0.88


def test_a_group_differs_only_when_both_corrected_p_values_say_so():
    """At 3 seeds a side Welch's p can be tiny while the permutation test cannot go below 0.1."""
    rows = plot.score_table({"a": [1.0, 1.1, 0.9], "b": [5.0, 5.1, 4.9], "c": [1.0, 1.2, 0.8]})
    b, c = rows[1]["tests"]["a"], rows[2]["tests"]["a"]
    assert b["welch_p"] < 0.001 and b["permutation_p"] == pytest.approx(0.1) and not b["differs"]
    # b and c against a are one family of two: Holm doubles the smaller p and leaves the larger (1)
    assert b["welch_p_holm"] == pytest.approx(2 * b["welch_p"]) and c["welch_p_holm"] == pytest.approx(c["welch_p"])
    assert rows[0]["mean_ci95_t"][0] < 1.0 < rows[0]["mean_ci95_t"][1]
