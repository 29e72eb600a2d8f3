"""The wall-clock speed-up to a reference's final quality."""

import json

import pytest

from maddpg import speedup
from maddpg.core.config import load_config
from maddpg.core.metrics import read_rows


def write_run(path, returns, seconds_per_row):
    path.mkdir()
    rows = [{"env_steps": 1000 * i, "predator_return": r, "wall_clock": seconds_per_row * i}
            for i, r in enumerate(returns)]  # fmt: skip
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_runs_reach_the_reference_quality_by_a_trailing_mean(tmp_path):
    ref = write_run(tmp_path / "ref", [0, 10, 20, 30, 50, 40, 60], 100.0)  # last 3: mean 50, at 600 s
    # A lone 80 is not enough: the trailing mean first reaches 50 at row 6 (40, 50, 60), 60 s.
    fast = write_run(tmp_path / "fast", [0, 80, 0, 10, 40, 50, 60, 70], 10.0)
    slow = write_run(tmp_path / "slow", [0, 50, 50, 50, 50], 30.0)  # reaches 50 at row 3, 90 s
    never = write_run(tmp_path / "never", [0, 10, 20, 30, 40], 1.0)
    result = speedup.speedup(ref, [fast, slow, never], window=3)
    assert result["threshold"] == 50 and result["reference_wall_clock"] == 600
    assert list(result["seconds_to_threshold"].values()) == [60.0, 90.0, None]
    assert list(result["env_steps_to_threshold"].values()) == [6000, 3000, None]
    assert result["median_seconds"] == 90 and result["speedup"] == pytest.approx(600 / 90)
    two_never = speedup.speedup(ref, [fast, never, never], window=3)
    assert two_never["median_seconds"] is None and two_never["speedup"] == 0.0


def test_a_directory_without_rows_is_one_line_and_exit_2(tmp_path, capsys):
    ref = write_run(tmp_path / "ref", [0, 1, 2, 3, 4], 1.0)
    with pytest.raises(SystemExit) as exit_info:
        speedup.main(["--report", str(ref), str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_driver_runs_the_reference_and_the_fast_seeds_then_keeps_them(tmp_path):
    toy = ["maddpg.hidden=[16,16]", "maddpg.batch_size=32", "maddpg.buffer_size=2000", "env.max_cycles=20",
           "maddpg.learning_starts=64", "train.eval_every=160", "train.eval_episodes=2",
           "train.checkpoint_every=160"]  # fmt: skip
    argv = ["--out", str(tmp_path), "--steps", "320", "--fast-steps", "640", "--seeds", "0", "1", "--window", "1"]
    argv += ["--set", *toy]
    speedup.main(argv)
    assert [row["env_steps"] for row in read_rows(tmp_path / "default_s0")] == [0, 160, 320]
    for name in ("fast_s0", "fast_s1"):
        assert [row["env_steps"] for row in read_rows(tmp_path / name)] == [0, 192, 320, 512, 640]
    assert load_config(str(tmp_path / "fast_s1" / "config.yaml")).env.n_envs == 64  # the fast preset's
    assert load_config(str(tmp_path / "default_s0" / "config.yaml")).env.n_envs == 1
    result = json.loads((tmp_path / "speedup.json").read_text())
    assert result["threshold"] == read_rows(tmp_path / "default_s0")[-1]["predator_return"]
    assert len(result["seconds_to_threshold"]) == 2
    assert (tmp_path / "wall_clock.png").is_file() and (tmp_path / "total_steps.png").is_file()
    finished = {name: (tmp_path / name / "metrics.jsonl").stat().st_mtime_ns for name in ("default_s0", "fast_s0")}
    speedup.main(argv)
    assert finished == {name: (tmp_path / name / "metrics.jsonl").stat().st_mtime_ns for name in finished}
