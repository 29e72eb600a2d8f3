"""The benchmark's own arithmetic: buffer size, the profile summary, the comparison of two results and the
thread policy section's runs."""

import os
import sys
import time
from pathlib import Path

import pytest

from conftest import children
from maddpg import bench
from maddpg.core.config import Backend, load_config


def test_the_default_buffer_is_each_transition_once_in_float32():
    # simple_tag, 3 predators, a prey, 2 obstacles: positions of all 6 entities and the agents' velocities
    # before the step, the agents' positions and velocities after it, 5 actions and a reward each, a flag.
    floats = 6 * 2 + 4 * 2 + 4 * 2 * 2 + 4 * 5 + 4 + 1
    assert bench.buffer_mb() == 500_000 * floats * 4 / 2**20


def test_storing_world_states_grows_with_the_team_where_observations_grew_with_its_square():
    def sizes(predators, prey):
        cfg = load_config(None, [f"env.num_adversaries={predators}", f"env.num_good={prey}"])
        return bench.buffer_mb(cfg), bench.observations_buffer_mb(cfg)

    (small, small_before), (large, large_before) = sizes(3, 1), sizes(24, 8)
    assert small_before == 500_000 * (2 * 4 * 16 + 4 * 6 + 1) * 4 / 2**20  # the buffer before world states
    assert small < small_before and large < 1024 < 10_000 < large_before
    assert large / small < 9 and large_before / small_before > 30  # 8x the agents


def test_the_update_profile_ranks_operators_by_their_own_time():
    ops = bench.update_profile(threads=1, updates=5, top=4)
    assert len(ops) == 4
    assert [op["ms_per_update"] for op in ops] == sorted((op["ms_per_update"] for op in ops), reverse=True)
    assert 0 < sum(op["share"] for op in ops) <= 1
    assert any("mm" in op["op"] for op in ops)  # the matmuls lead a default update


def test_compare_prints_every_shared_figure_as_a_ratio():
    old = {"update": [{"ms": 4.0}], "gone": 1.0}
    new = {"update": [{"ms": 3.0}], "added": 2.0}
    assert bench.compare(old, new) == ["update.0.ms: 4 -> 3 (0.75x)"]


def spinning_children(wait_for: int = 0, timeout: float = 30.0) -> int:
    """This process's children running the bench's busy loop. A child just started shows this
    process's command line until it has exec'd (long on a busy machine): wait up to `timeout` for
    `wait_for` of them."""
    deadline = time.monotonic() + timeout
    while True:
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children(os.getpid())]
        count = sum(b"while True: pass" in command for command in commands)
        if count >= wait_for or time.monotonic() > deadline:
            return count
        time.sleep(0.01)


def test_the_thread_policy_times_the_configs_threads_and_torchs_idle_then_the_configs_beside_a_busy_process(
    monkeypatch,
):
    # train_speed (the `train` section's timed train.py runs) is stood in for, so the test takes no run.
    monkeypatch.setitem(bench.PRESETS, "toy", ["--config", "configs/smoke.yaml", "run.threads=1"])
    calls = []

    def train_speed(preset, backend, threads):
        calls.append((preset, backend, threads, spinning_children(wait_for=1 if len(calls) == 2 else 0)))
        return {"steps_per_s": [100.0, 125.0, 60.0][len(calls) - 1]}

    monkeypatch.setattr(bench, "train_speed", train_speed)
    result = bench.thread_policy("toy")
    # The config's threads idle, PyTorch's (run.threads=0) idle, the config's beside one spinning process.
    assert calls == [("toy", Backend.torch, 1, 0), ("toy", Backend.torch, 0, 0), ("toy", Backend.torch, 1, 1)]
    assert spinning_children() == 0  # stopped afterwards
    assert result["run_threads"] == result["torch_threads"] == 1 and result["mode"] == "single"
    assert result["busy_over_idle"] == 0.6 and result["idle_over_torch_default_idle"] == 0.8


def test_population_cost_is_each_populations_cpu_over_its_rounds_baselines(monkeypatch):
    calls = []

    def cpu_seconds(commands):
        calls.append(commands)
        if len(commands) == 4:  # the baselines, side by side
            return [10.0, 10.0, 10.0, 10.0 if len(calls) == 1 else 70.0]
        strategy = " ".join(commands[0])
        return [40.0 if "strategy=none" in strategy else 60.0 if "share_experience" in strategy else 50.0]

    monkeypatch.setattr(bench, "cpu_seconds", cpu_seconds)
    result = bench.population_cost(1000, rounds=2)
    assert result["baselines_cpu_s"] == [40.0, 100.0]  # the rounds' baselines: the 1st call, then the 6th
    assert result["vs_baselines"]["none"] == [1.0, 0.4] and result["vs_baselines"]["pbt_shared"] == [1.5, 0.6]
    assert result["median_vs_baselines"]["critic"] == pytest.approx(0.5)  # torch's median: the lower middle
    population = calls[1][0]
    assert "--nproc_per_node=4" in population and "train.total_steps=4000" in population
    assert "train.total_steps=1000" in calls[0][0] and "mode=genetic" not in calls[0][0]


def test_cpu_seconds_counts_a_runs_own_cpu():
    smoke = [sys.executable, "train.py", "--config", "configs/smoke.yaml", "train.total_steps=200"]
    (seconds,) = bench.cpu_seconds([smoke])
    assert seconds > 0.5  # importing torch alone takes more
