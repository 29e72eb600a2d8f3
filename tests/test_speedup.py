"""The wall-clock speed-up to a reference's final quality."""

import json

import pytest

from maddpg import speedup


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
    assert result["median_seconds"] == 90 and result["speedup"] == pytest.approx(600 / 90)
    two_never = speedup.speedup(ref, [fast, never, never], window=3)
    assert two_never["median_seconds"] is None and two_never["speedup"] == 0.0


def test_a_directory_without_rows_is_one_line_and_exit_2(tmp_path, capsys):
    ref = write_run(tmp_path / "ref", [0, 1, 2, 3, 4], 1.0)
    with pytest.raises(SystemExit) as exit_info:
        speedup.main([str(ref), str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
